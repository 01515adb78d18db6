//! A minimal QMP client: one command at a time, replies matched by id.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use a3s_box_core::{BoxError, Result};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A connected QMP session (capabilities negotiated).
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Qmp {
    /// Connect to QEMU's QMP socket and leave capabilities negotiation mode.
    pub fn connect(path: &Path) -> Result<Self> {
        let stream = UnixStream::connect(path)
            .map_err(|e| BoxError::io(format!("connect to QMP at {}", path.display()), e))?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .map_err(|e| BoxError::io("QMP timeout", e))?;
        let writer = stream
            .try_clone()
            .map_err(|e| BoxError::io("QMP socket", e))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
        };
        let greeting = qmp.read_value()?;
        if greeting.get("QMP").is_none() {
            return Err(BoxError::Vmm {
                message: format!("unexpected QMP greeting: {greeting}"),
                console_tail: None,
            });
        }
        qmp.execute("qmp_capabilities")?;
        Ok(qmp)
    }

    fn read_value(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| BoxError::io("read from QMP", e))?;
        if n == 0 {
            return Err(BoxError::Vmm {
                message: "QEMU closed its QMP socket".into(),
                console_tail: None,
            });
        }
        serde_json::from_str(&line).map_err(|e| BoxError::Vmm {
            message: format!("bad QMP message: {e}"),
            console_tail: None,
        })
    }

    /// Run `command`; its `return` value. Events in between are skipped.
    pub fn execute(&mut self, command: &str) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id }).to_string();
        msg.push('\n');
        self.writer
            .write_all(msg.as_bytes())
            .map_err(|e| BoxError::io("write to QMP", e))?;
        loop {
            let v = self.read_value()?;
            if v.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(err) = v.get("error") {
                return Err(BoxError::Vmm {
                    message: format!("QMP {command} failed: {err}"),
                    console_tail: None,
                });
            }
            return Ok(v.get("return").cloned().unwrap_or(Value::Null));
        }
    }
}
