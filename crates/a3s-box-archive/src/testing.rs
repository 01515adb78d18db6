//! Test support (feature `testing`): archives no honest writer makes.

#![allow(clippy::unwrap_used)]

use tar::{Builder, EntryType, Header};

/// Append an entry whose name and link name are written as raw bytes (the
/// `tar` crate's own setters refuse `..`), mode 0644, owned by root.
pub fn append_raw(
    builder: &mut Builder<Vec<u8>>,
    name: &str,
    kind: EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(data.len() as u64);
    h.set_mtime(1);
    h.set_cksum();
    builder.append(&h, data).unwrap();
}
