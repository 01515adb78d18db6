//! The box log: the workload's output as JSON lines, Docker's json-file shape
//! (`{"log": "...\n", "stream": "stdout", "time": "..."}`).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use a3s_box_core::guest::StdStream;
use a3s_box_core::time::now_rfc3339;
use a3s_box_core::{BoxError, Result};
use serde::{Deserialize, Serialize};

/// One log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// The text, with its newline when it had one.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When it was written (RFC 3339).
    pub time: String,
}

/// Appends output to a box log, a line per record.
#[derive(Debug)]
pub struct LogWriter {
    file: File,
    partial: [Vec<u8>; 2],
}

/// Longest partial line kept before it is written out as is.
const MAX_PARTIAL_BYTES: usize = 16 * 1024;

impl LogWriter {
    /// Open (append) the log at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| BoxError::io(format!("open {}", path.display()), e))?;
        Ok(LogWriter {
            file,
            partial: [Vec::new(), Vec::new()],
        })
    }

    fn emit(&mut self, stream: StdStream, line: &[u8]) {
        let record = LogLine {
            log: String::from_utf8_lossy(line).into_owned(),
            stream: if stream == StdStream::Stderr {
                "stderr"
            } else {
                "stdout"
            }
            .into(),
            time: now_rfc3339(),
        };
        if let Ok(mut json) = serde_json::to_vec(&record) {
            json.push(b'\n');
            let _ = self.file.write_all(&json);
        }
    }

    /// Output bytes of `stream`.
    pub fn write(&mut self, stream: StdStream, bytes: &[u8]) {
        let slot = usize::from(stream == StdStream::Stderr);
        let mut buf = std::mem::take(&mut self.partial[slot]);
        buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            self.emit(stream, &buf[start..start + pos + 1]);
            start += pos + 1;
        }
        buf.drain(..start);
        if buf.len() > MAX_PARTIAL_BYTES {
            self.emit(stream, &buf);
            buf.clear();
        }
        self.partial[slot] = buf;
    }

    /// Write out unterminated last lines.
    pub fn flush(&mut self) {
        for (slot, stream) in [(0, StdStream::Stdout), (1, StdStream::Stderr)] {
            let buf = std::mem::take(&mut self.partial[slot]);
            if !buf.is_empty() {
                self.emit(stream, &buf);
            }
        }
        let _ = self.file.flush();
    }
}

/// Read every line of a log (missing log: none).
pub fn read_log(path: &Path) -> Result<Vec<LogLine>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BoxError::io(format!("read {}", path.display()), e)),
    };
    Ok(BufReader::new(file)
        .lines()
        .map_while(std::result::Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_per_stream_and_flushes_partials() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.jsonl");
        let mut w = LogWriter::open(&p).unwrap();
        w.write(StdStream::Stdout, b"a\nb");
        w.write(StdStream::Stderr, b"err\n");
        w.write(StdStream::Stdout, b"c\nd");
        w.flush();
        let lines = read_log(&p).unwrap();
        let got: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (l.stream.as_str(), l.log.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("stdout", "a\n"),
                ("stderr", "err\n"),
                ("stdout", "bc\n"),
                ("stdout", "d")
            ]
        );
    }
}
