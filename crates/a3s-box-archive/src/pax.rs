//! PAX extended header records (`LEN KEY=VALUE\n`, LEN counting the whole
//! record), read by their length. The `tar` crate's reader splits records at
//! newlines instead, so it cannot read a value that holds one, which binary
//! attribute values (`security.capability`) may.

use std::io;

/// Longest decimal length field accepted.
const MAX_LEN_DIGITS: usize = 20;

/// The records of one PAX header, as `(key, value)` byte slices. A malformed
/// record is an error and ends the iteration.
#[derive(Debug, Clone)]
pub struct PaxRecords<'a> {
    rest: &'a [u8],
}

impl<'a> PaxRecords<'a> {
    /// Iterate over the records of a PAX header's data.
    pub fn new(data: &'a [u8]) -> Self {
        PaxRecords { rest: data }
    }

    fn record(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        let space = self
            .rest
            .iter()
            .take(MAX_LEN_DIGITS + 1)
            .position(|b| *b == b' ')?;
        let digits = &self.rest[..space];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let len: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
        if len < space + 3 || len > self.rest.len() {
            return None;
        }
        let (record, rest) = self.rest.split_at(len);
        let body = record.strip_suffix(b"\n")?.get(space + 1..)?;
        let equals = body.iter().position(|b| *b == b'=')?;
        self.rest = rest;
        Some((&body[..equals], &body[equals + 1..]))
    }
}

impl<'a> Iterator for PaxRecords<'a> {
    type Item = io::Result<(&'a [u8], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        // Some writers pad the header's data with NULs.
        if self.rest.first().is_none_or(|b| *b == 0) {
            return None;
        }
        match self.record() {
            Some(record) => Some(Ok(record)),
            None => {
                self.rest = &[];
                Some(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed PAX extended header record",
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn records(data: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        PaxRecords::new(data)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect()
    }

    #[test]
    fn values_may_hold_newlines_and_equals_signs() {
        let mut b = tar::Builder::new(Vec::new());
        let value = b"\x01\n\x00=\n";
        b.append_pax_extensions([
            ("SCHILY.xattr.security.capability", &value[..]),
            ("path", b"a=b"),
        ])
        .unwrap();
        let data = &b.into_inner().unwrap()[512..];
        let got = records(data).unwrap();
        assert_eq!(
            got[0],
            (b"SCHILY.xattr.security.capability".to_vec(), value.to_vec())
        );
        assert_eq!(got[1], (b"path".to_vec(), b"a=b".to_vec()));
        assert_eq!(got.len(), 2, "the padding ends the records");
    }

    #[test]
    fn malformed_records_are_errors() {
        for bad in [
            &b"5 a=b\n"[..],
            b"x a=b\n",
            b"99 a=b\n",
            b"7 ab\n\n\n",
            b"6 a=b\nxx",
        ] {
            assert!(records(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            records(b"6 a=b\n").unwrap(),
            [(b"a".to_vec(), b"b".to_vec())]
        );
    }
}
