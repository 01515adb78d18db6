//! Reading a tar stream member by member, with a bound on every header that
//! is buffered: the reader of both ends of `a3s-box cp` (the host unpacks
//! what comes out of a box, guest-init's `tar-extract` what goes in).
//!
//! The `tar` crate reads GNU long names and PAX records into memory whatever
//! their size, and splits PAX records at newlines, so the stream is read raw
//! and those are applied here: a long name or link of more than
//! [`MAX_LONG_NAME_BYTES`], or a PAX record set of more than
//! [`MAX_PAX_HEADER_BYTES`], ends the read. PAX `SCHILY.xattr.NAME` records
//! become [`Member::xattrs`]; what to restore is the caller's choice.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use tar::{Archive, Header};

/// The kind of a [`Member`] (the `tar` crate's type).
pub use tar::EntryType;

use crate::pax::PaxRecords;
use crate::xattrs;

/// Longest GNU long name or long link name accepted (Linux paths are at
/// most 4 KiB; this leaves room for names that are only then refused).
pub const MAX_LONG_NAME_BYTES: u64 = 64 * 1024;
/// Largest PAX extended header accepted (Go's `archive/tar` limit too).
pub const MAX_PAX_HEADER_BYTES: u64 = 1024 * 1024;

/// One archive member with long names and PAX records applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The entry name as the archive gives it.
    pub name: PathBuf,
    /// The link target, for symlinks and hardlinks.
    pub link: Option<PathBuf>,
    /// The entry type.
    pub kind: EntryType,
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Bytes of data that follow the header.
    pub size: u64,
    /// Device major and minor numbers (character and block devices).
    pub device: (u32, u32),
    /// Extended attributes, name and value, in archive order.
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

/// Why a tar stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The stream is not a readable tar archive.
    #[error("reading the tar stream: {0}")]
    Tar(#[source] io::Error),
    /// A header the archive asks us to buffer is over its limit.
    #[error("a {what} of {size} bytes is over the {limit}-byte limit")]
    HeaderTooLarge {
        /// What kind of header.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// An archive feature this reader does not implement.
    #[error("archive entry {entry:?} uses {feature}, which is not supported")]
    Unsupported {
        /// The entry name.
        entry: PathBuf,
        /// What it uses.
        feature: &'static str,
    },
}

/// Headers that describe the next member.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

/// Call `apply` with each member of `input` and a reader of its data.
pub fn for_each<R: Read, E: From<ReadError>>(
    input: R,
    mut apply: impl FnMut(Member, &mut dyn Read) -> Result<(), E>,
) -> Result<(), E> {
    let mut archive = Archive::new(input);
    let mut pending = Pending::default();
    for entry in archive.entries().map_err(ReadError::Tar)?.raw(true) {
        let mut entry = entry.map_err(ReadError::Tar)?;
        let kind = entry.header().entry_type();
        let size = entry.header().entry_size().map_err(ReadError::Tar)?;
        match kind {
            EntryType::GNULongName => {
                let name = read_bounded(&mut entry, size, "long name", MAX_LONG_NAME_BYTES)?;
                pending.long_name = Some(name);
                continue;
            }
            EntryType::GNULongLink => {
                let link = read_bounded(&mut entry, size, "long link name", MAX_LONG_NAME_BYTES)?;
                pending.long_link = Some(link);
                continue;
            }
            EntryType::XHeader => {
                let pax = read_bounded(&mut entry, size, "PAX header", MAX_PAX_HEADER_BYTES)?;
                pending.pax = Some(pax);
                continue;
            }
            // Global PAX records (comments, mostly): their data is skipped.
            EntryType::XGlobalHeader => continue,
            _ => {}
        }
        let pending = std::mem::take(&mut pending);
        let member = member(entry.header(), &entry.path_bytes(), size, pending)?;
        if kind == EntryType::GNUSparse {
            return Err(ReadError::Unsupported {
                entry: member.name,
                feature: "a GNU sparse file",
            }
            .into());
        }
        apply(member, &mut entry)?;
    }
    Ok(())
}

fn read_bounded(
    entry: &mut impl Read,
    size: u64,
    what: &'static str,
    limit: u64,
) -> Result<Vec<u8>, ReadError> {
    if size > limit {
        return Err(ReadError::HeaderTooLarge { what, size, limit });
    }
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry.read_to_end(&mut buf).map_err(ReadError::Tar)?;
    Ok(buf)
}

fn member(header: &Header, path: &[u8], size: u64, pending: Pending) -> Result<Member, ReadError> {
    let trim = |mut v: Vec<u8>| {
        while v.last() == Some(&0) {
            v.pop();
        }
        v
    };
    let mut name = pending.long_name.map_or_else(|| path.to_vec(), trim);
    let mut link = pending
        .long_link
        .map(trim)
        .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
    let mut uid = header.uid().map_err(ReadError::Tar)?;
    let mut gid = header.gid().map_err(ReadError::Tar)?;
    let mtime = header.mtime().map_err(ReadError::Tar)?;
    let mut mtime = i64::try_from(mtime).unwrap_or(i64::MAX);
    let mode = header.mode().map_err(ReadError::Tar)? & 0o7777;
    let mut xattrs = Vec::new();
    let unsupported = |name: &[u8], feature| ReadError::Unsupported {
        entry: PathBuf::from(OsStr::from_bytes(name)),
        feature,
    };
    for record in PaxRecords::new(pending.pax.as_deref().unwrap_or_default()) {
        let (key, value) = record.map_err(ReadError::Tar)?;
        let number = || {
            std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
        };
        match key {
            b"path" => name = value.to_vec(),
            b"linkpath" => link = Some(value.to_vec()),
            b"uid" => uid = number().unwrap_or(uid),
            b"gid" => gid = number().unwrap_or(gid),
            b"mtime" => mtime = parse_pax_time(value).unwrap_or(mtime),
            b"size" if number() != Some(size) => {
                return Err(unsupported(&name, "a PAX size record"))
            }
            _ if key.starts_with(b"GNU.sparse.") => {
                return Err(unsupported(&name, "a PAX sparse file"))
            }
            _ => {
                if let Some(attr) = xattrs::name_from_pax_key(key) {
                    xattrs.push((attr.to_owned(), value.to_vec()));
                }
            }
        }
    }
    let device = (
        header.device_major().ok().flatten().unwrap_or(0),
        header.device_minor().ok().flatten().unwrap_or(0),
    );
    Ok(Member {
        name: PathBuf::from(OsStr::from_bytes(&name)),
        link: link
            .filter(|l| !l.is_empty())
            .map(|l| PathBuf::from(OsStr::from_bytes(&l))),
        kind: header.entry_type(),
        mode,
        uid,
        gid,
        mtime,
        size,
        device,
        xattrs,
    })
}

/// A PAX time (`1600000000` or `1600000000.25`), whole seconds.
fn parse_pax_time(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let whole = text.split('.').next()?;
    whole.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tar::Builder;

    use super::*;

    fn members(tar: &[u8]) -> Result<Vec<Member>, ReadError> {
        let mut out = Vec::new();
        for_each(tar, |m, _| {
            out.push(m);
            Ok::<_, ReadError>(())
        })?;
        Ok(out)
    }

    /// `h` for an empty entry of `kind` with `mode`, owned by root, time 0.
    fn empty_entry(mut h: Header, kind: EntryType, mode: u32) -> Header {
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }

    #[test]
    fn long_names_and_pax_records_apply() {
        let mut b = Builder::new(Vec::new());
        let long = "d/".repeat(80) + "file";
        let mut h = empty_entry(Header::new_gnu(), EntryType::Regular, 0o104755);
        b.append_data(&mut h, &long, std::io::empty()).unwrap();
        b.append_pax_extensions([
            ("path", &b"pax/name"[..]),
            ("uid", b"70000"),
            ("mtime", b"12.5"),
            ("SCHILY.xattr.security.capability", b"\x01\n\x00"),
            ("SCHILY.xattr.user.x", b"y"),
        ])
        .unwrap();
        let mut h = empty_entry(Header::new_ustar(), EntryType::Symlink, 0o777);
        b.append_link(&mut h, "short", "target").unwrap();
        let got = members(&b.into_inner().unwrap()).unwrap();
        assert_eq!(got[0].name, PathBuf::from(&long));
        assert_eq!(got[0].mode, 0o4755);
        assert!(got[0].xattrs.is_empty());
        assert_eq!(got[1].name, PathBuf::from("pax/name"));
        assert_eq!((got[1].uid, got[1].mtime), (70_000, 12));
        assert_eq!(got[1].link, Some(PathBuf::from("target")));
        let attrs: Vec<_> = got[1]
            .xattrs
            .iter()
            .map(|(n, v)| (n.to_str().unwrap(), &v[..]))
            .collect();
        assert_eq!(
            attrs,
            [
                ("security.capability", &b"\x01\n\x00"[..]),
                ("user.x", b"y")
            ]
        );
    }

    #[test]
    fn oversized_headers_are_refused_before_they_are_read() {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::GNULongName);
        h.set_size(MAX_LONG_NAME_BYTES + 1);
        h.set_cksum();
        // Only the header: the refusal must not need the (absent) data.
        let err = members(h.as_bytes()).unwrap_err();
        assert!(matches!(err, ReadError::HeaderTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("long name"), "{err}");
    }
}
