//! Reading an untrusted tar stream member by member, with a bound on every
//! header that is buffered. The `tar` crate reads GNU long names and PAX
//! records into memory whatever their size, so the stream is read raw and
//! those are applied here: a long name or link of more than
//! [`MAX_LONG_NAME_BYTES`], or a PAX record set of more than
//! [`MAX_PAX_HEADER_BYTES`], ends the copy.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use tar::{Archive, EntryType, Header, PaxExtensions};

use super::CopyError;

/// Longest GNU long name or long link name accepted (Linux paths are at
/// most 4 KiB; this leaves room for names that are only then refused).
pub const MAX_LONG_NAME_BYTES: u64 = 64 * 1024;
/// Largest PAX extended header accepted.
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
}

/// Headers that describe the next member.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

/// Call `apply` with each member of `input` and a reader of its data.
pub fn for_each<R: Read>(
    input: R,
    mut apply: impl FnMut(Member, &mut dyn Read) -> Result<(), CopyError>,
) -> Result<(), CopyError> {
    let mut archive = Archive::new(input);
    let mut pending = Pending::default();
    for entry in archive.entries().map_err(CopyError::Tar)?.raw(true) {
        let mut entry = entry.map_err(CopyError::Tar)?;
        let kind = entry.header().entry_type();
        let size = entry.header().entry_size().map_err(CopyError::Tar)?;
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
            return Err(CopyError::Unsupported {
                entry: member.name,
                feature: "a GNU sparse file",
            });
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
) -> Result<Vec<u8>, CopyError> {
    if size > limit {
        return Err(CopyError::HeaderTooLarge { what, size, limit });
    }
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry.read_to_end(&mut buf).map_err(CopyError::Tar)?;
    Ok(buf)
}

fn member(header: &Header, path: &[u8], size: u64, pending: Pending) -> Result<Member, CopyError> {
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
    let mut uid = header.uid().map_err(CopyError::Tar)?;
    let mut gid = header.gid().map_err(CopyError::Tar)?;
    let mtime = header.mtime().map_err(CopyError::Tar)?;
    let mut mtime = i64::try_from(mtime).unwrap_or(i64::MAX);
    let mode = header.mode().map_err(CopyError::Tar)? & 0o7777;
    if let Some(pax) = pending.pax {
        for ext in PaxExtensions::new(&pax) {
            let ext = ext.map_err(CopyError::Tar)?;
            let value = ext.value_bytes();
            let number = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
            };
            match ext.key_bytes() {
                b"path" => name = value.to_vec(),
                b"linkpath" => link = Some(value.to_vec()),
                b"uid" => uid = number().unwrap_or(uid),
                b"gid" => gid = number().unwrap_or(gid),
                b"mtime" => mtime = parse_pax_time(value).unwrap_or(mtime),
                b"size" if number() != Some(size) => {
                    return Err(CopyError::Unsupported {
                        entry: PathBuf::from(OsStr::from_bytes(&name)),
                        feature: "a PAX size record",
                    })
                }
                _ => {}
            }
        }
    }
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

    fn members(tar: &[u8]) -> Result<Vec<Member>, CopyError> {
        let mut out = Vec::new();
        for_each(tar, |m, _| {
            out.push(m);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn long_names_and_pax_records_apply() {
        let mut b = Builder::new(Vec::new());
        let long = "d/".repeat(80) + "file";
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o104755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, &long, std::io::empty()).unwrap();
        b.append_pax_extensions([
            ("path", &b"pax/name"[..]),
            ("uid", b"70000"),
            ("mtime", b"12.5"),
        ])
        .unwrap();
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_link(&mut h, "short", "target").unwrap();
        let got = members(&b.into_inner().unwrap()).unwrap();
        assert_eq!(got[0].name, PathBuf::from(&long));
        assert_eq!(got[0].mode, 0o4755);
        assert_eq!(got[1].name, PathBuf::from("pax/name"));
        assert_eq!((got[1].uid, got[1].mtime), (70_000, 12));
        assert_eq!(got[1].link, Some(PathBuf::from("target")));
    }

    #[test]
    fn oversized_headers_are_refused_before_they_are_read() {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::GNULongName);
        h.set_size(MAX_LONG_NAME_BYTES + 1);
        h.set_cksum();
        // Only the header: the refusal must not need the (absent) data.
        let err = members(h.as_bytes()).unwrap_err();
        assert!(matches!(err, CopyError::HeaderTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("long name"), "{err}");
    }
}
