//! The depth-first walk behind [`pack`](crate::pack) and
//! [`pack_contents`](crate::pack_contents): one tar entry per file, preceded
//! by its extended attributes as PAX records.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header};

use crate::xattrs::{self, Xattrs};
use crate::{Layout, PackError, Packed};

/// The OCI whiteout prefix: `.wh.NAME` deletes NAME of the layers below.
const WHITEOUT_PREFIX: &str = ".wh.";
/// The OCI opaque marker: the directory hides what the layers below had.
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Mode of the empty files that stand for whiteouts and opaque markers.
const MARKER_MODE: u32 = 0o644;

/// A path still to archive: where it is, its archive name, and its `lstat`
/// when already known.
type Pending = (PathBuf, PathBuf, Option<Metadata>);

pub(crate) struct Walk<W: Write> {
    builder: Builder<W>,
    layout: Layout,
    stack: Vec<Pending>,
    /// (device, inode) of multiply-linked files → the name archived first.
    first_names: HashMap<(u64, u64), PathBuf>,
    packed: Packed,
}

impl<W: Write> Walk<W> {
    pub(crate) fn new(out: W, layout: Layout) -> Self {
        Walk {
            builder: Builder::new(out),
            layout,
            stack: Vec::new(),
            first_names: HashMap::new(),
            packed: Packed::default(),
        }
    }

    /// Queue `path` to be archived as `name`.
    pub(crate) fn push(&mut self, path: PathBuf, name: PathBuf, meta: Option<Metadata>) {
        self.stack.push((path, name, meta));
    }

    /// Queue the children of the directory `path` (archived as `name`), so
    /// that they are archived in name order.
    pub(crate) fn push_children(&mut self, path: &Path, name: &Path) -> Result<(), PackError> {
        let mut children = Vec::new();
        for child in fs::read_dir(path).map_err(PackError::io("read dir", path))? {
            children.push(child.map_err(PackError::io("read dir", path))?.file_name());
        }
        children.sort();
        for child in children.into_iter().rev() {
            self.push(path.join(&child), child_name(name, &child), None);
        }
        Ok(())
    }

    /// Archive everything queued, depth first.
    pub(crate) fn run(&mut self) -> Result<(), PackError> {
        while let Some((path, name, meta)) = self.stack.pop() {
            let meta = match meta {
                Some(meta) => meta,
                None => match fs::symlink_metadata(&path) {
                    Ok(meta) => meta,
                    // Removed since its directory was listed.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(PackError::io("stat", path)(e)),
                },
            };
            if !self.entry(&path, &name, &meta)? || !meta.is_dir() {
                continue;
            }
            match self.push_children(&path, &name) {
                // Removed since it was archived: its contents go with it.
                Err(PackError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// End the archive and flush it.
    pub(crate) fn finish(self) -> Result<Packed, PackError> {
        self.builder
            .into_inner()
            .and_then(|mut out| out.flush())
            .map_err(PackError::Write)?;
        Ok(self.packed)
    }

    /// Append one entry; false when it was skipped.
    fn entry(&mut self, path: &Path, name: &Path, meta: &Metadata) -> Result<bool, PackError> {
        let ft = meta.file_type();
        if ft.is_socket() {
            self.packed.skipped_sockets += 1;
            return Ok(false);
        }
        if self.layout == Layout::OverlayUpper && is_whiteout(meta) {
            let mut hidden = OsString::from(WHITEOUT_PREFIX);
            hidden.push(name.file_name().unwrap_or_default());
            self.marker(&name.with_file_name(hidden), meta)?;
            return Ok(false);
        }
        let mut header = header_for(meta);
        let link_key = (ft.is_file() && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
        if let Some(first) = link_key.and_then(|key| self.first_names.get(&key)) {
            // The first name carries the contents and the attributes.
            header.set_entry_type(EntryType::Link);
            self.builder
                .append_link(&mut header, name, first)
                .map_err(PackError::Write)?;
            self.packed.entries += 1;
            self.packed.hardlinks += 1;
            return Ok(true);
        }
        // Everything that can vanish is opened or read before the PAX
        // records, which would otherwise describe the next entry.
        let result = if ft.is_file() {
            let Some((file, size)) = open_file(path)? else {
                return Ok(false);
            };
            self.xattrs(path)?;
            header.set_entry_type(EntryType::Regular);
            header.set_size(size);
            self.packed.file_bytes += size;
            // Exactly `size` bytes even if the file changes while read.
            let data = file.take(size).chain(io::repeat(0)).take(size);
            self.builder.append_data(&mut header, name, data)
        } else if ft.is_symlink() {
            let target = match fs::read_link(path) {
                Ok(target) => target,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(PackError::io("readlink", path)(e)),
            };
            self.xattrs(path)?;
            header.set_entry_type(EntryType::Symlink);
            self.builder.append_link(&mut header, name, target)
        } else {
            let kind = if ft.is_dir() {
                EntryType::Directory
            } else if ft.is_fifo() {
                EntryType::Fifo
            } else if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            };
            header.set_entry_type(kind);
            if matches!(kind, EntryType::Char | EntryType::Block) {
                let rdev = meta.rdev();
                header
                    .set_device_major(libc::major(rdev))
                    .and_then(|()| header.set_device_minor(libc::minor(rdev)))
                    .map_err(PackError::io("archive device", path))?;
            }
            let xattrs = self.xattrs(path)?;
            self.builder
                .append_data(&mut header, name, io::empty())
                .map_err(PackError::Write)?;
            if kind == EntryType::Directory && self.layout == Layout::OverlayUpper && xattrs.opaque
            {
                self.marker(&name.join(OPAQUE_MARKER), meta)?;
            }
            Ok(())
        };
        result.map_err(PackError::Write)?;
        if let Some(key) = link_key {
            self.first_names.insert(key, name.to_owned());
        }
        self.packed.entries += 1;
        Ok(true)
    }

    /// Read `path`'s extended attributes and append them as PAX records
    /// for the entry that follows.
    fn xattrs(&mut self, path: &Path) -> Result<Xattrs, PackError> {
        let xattrs = xattrs::read(path);
        self.packed.skipped_xattrs += xattrs.unreadable;
        let keys = xattrs.pax_keys();
        let records = keys
            .iter()
            .map(String::as_str)
            .zip(xattrs.records.iter().map(|(_, value)| value.as_slice()));
        self.builder
            .append_pax_extensions(records)
            .map_err(PackError::Write)?;
        Ok(xattrs)
    }

    /// An empty root-owned file named `name` (a whiteout or opaque marker).
    fn marker(&mut self, name: &Path, like: &Metadata) -> Result<(), PackError> {
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(MARKER_MODE);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(u64::try_from(like.mtime()).unwrap_or(0));
        header.set_size(0);
        self.builder
            .append_data(&mut header, name, io::empty())
            .map_err(PackError::Write)?;
        self.packed.entries += 1;
        Ok(())
    }
}

/// An overlayfs whiteout: a character device 0/0.
fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// The archive name of `child` in the directory archived as `name` (`x`,
/// not `./x`, under a `.` root, so hardlink targets match entry names).
fn child_name(name: &Path, child: &OsStr) -> PathBuf {
    if name == Path::new(".") {
        PathBuf::from(child)
    } else {
        name.join(child)
    }
}

/// A GNU header with `meta`'s permission bits, numeric owner and mtime.
fn header_for(meta: &Metadata) -> Header {
    let mut header = Header::new_gnu();
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(meta.uid().into());
    header.set_gid(meta.gid().into());
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    header.set_size(0);
    header
}

/// Open a regular file without following a symlink swapped in since `lstat`;
/// `None` when it is gone or is no longer a regular file.
fn open_file(path: &Path) -> Result<Option<(File, u64)>, PackError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ELOOP)) => return Ok(None),
        Err(e) => return Err(PackError::io("open", path)(e)),
    };
    let meta = file.metadata().map_err(PackError::io("stat", path))?;
    Ok(meta.is_file().then_some((file, meta.len())))
}
