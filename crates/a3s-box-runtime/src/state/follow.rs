//! Following a file of JSON lines as it grows: the box log (`logs -f`) and
//! the events log (`events`). A file that shrank was rotated or trimmed: it
//! is read again from its start.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::de::DeserializeOwned;

/// Reads the records appended to a JSON-lines file since the last poll.
#[derive(Debug)]
pub struct JsonLinesFollower<T> {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    _records: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> JsonLinesFollower<T> {
    /// Follow `path` from byte `offset` on.
    pub fn new(path: PathBuf, offset: u64) -> Self {
        JsonLinesFollower {
            path,
            offset,
            partial: Vec::new(),
            _records: PhantomData,
        }
    }

    /// Where the next read starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Complete records appended since the last call; lines that do not
    /// parse are skipped.
    pub fn poll(&mut self) -> Vec<T> {
        let Ok(mut file) = File::open(&self.path) else {
            return Vec::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
        }
        let mut buf = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        complete
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn partial_lines_wait_and_a_shrunk_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        let mut f = JsonLinesFollower::<u32>::new(path.clone(), 0);
        assert!(f.poll().is_empty(), "no file yet");
        let mut w = File::create(&path).unwrap();
        w.write_all(b"1\n2\n3").unwrap();
        assert_eq!(f.poll(), [1, 2]);
        w.write_all(b"\nx\n4\n").unwrap();
        assert_eq!(f.poll(), [3, 4]);
        std::fs::write(&path, b"9\n").unwrap();
        assert_eq!(f.poll(), [9]);
    }
}
