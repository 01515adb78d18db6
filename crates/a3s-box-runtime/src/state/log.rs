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

/// Appends output to a box log, a line per record. When the log passes
/// its size limit it is renamed to `<log>.1` (replacing the previous one)
/// and a new log begins, so a box keeps at most about twice the limit.
#[derive(Debug)]
pub struct LogWriter {
    file: File,
    path: std::path::PathBuf,
    written: u64,
    max_bytes: u64,
    partial: [Vec<u8>; 2],
}

/// The rotated log beside `path`.
pub fn rotated(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    name.into()
}

/// Longest partial line kept before it is written out as is.
const MAX_PARTIAL_BYTES: usize = 16 * 1024;

impl LogWriter {
    /// Open (append) the log at `path`, rotated past `max_bytes`.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| BoxError::io(format!("open {}", path.display()), e))?;
        Ok(LogWriter {
            written: file.metadata().map(|m| m.len()).unwrap_or(0),
            file,
            path: path.to_path_buf(),
            max_bytes,
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
            if self.written > 0 && self.written + json.len() as u64 > self.max_bytes {
                self.rotate();
            }
            if self.file.write_all(&json).is_ok() {
                self.written += json.len() as u64;
            }
        }
    }

    fn rotate(&mut self) {
        if std::fs::rename(&self.path, rotated(&self.path)).is_err() {
            return;
        }
        if let Ok(file) = File::options().create(true).append(true).open(&self.path) {
            self.file = file;
            self.written = 0;
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

/// Read every line of a log, its rotated part first (missing log: none).
pub fn read_log(path: &Path) -> Result<Vec<LogLine>> {
    let mut lines = read_one(&rotated(path))?;
    lines.extend(read_one(path)?);
    Ok(lines)
}

fn read_one(path: &Path) -> Result<Vec<LogLine>> {
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
    fn rotates_by_size_and_reads_both_parts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.jsonl");
        let mut w = LogWriter::open(&p, 1 << 20).unwrap();
        w.max_bytes = 400;
        for i in 0..20 {
            w.write(StdStream::Stdout, format!("line {i}\n").as_bytes());
        }
        assert!(rotated(&p).exists());
        assert!(std::fs::metadata(&p).unwrap().len() <= 400);
        let lines = read_log(&p).unwrap();
        // The oldest lines went with an earlier rotation; the newest are all there, in order.
        assert_eq!(lines.last().unwrap().log, "line 19\n");
        let nums: Vec<u32> = lines
            .iter()
            .map(|l| l.log.trim().trim_start_matches("line ").parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    }

    #[test]
    fn splits_lines_per_stream_and_flushes_partials() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.jsonl");
        let mut w = LogWriter::open(&p, 1 << 20).unwrap();
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
