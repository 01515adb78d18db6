//! `tar-create PATH`: PATH as a tar stream, the way `docker cp BOX:PATH -`
//! writes it. Entry names start with PATH's basename (`.` for `/`); a
//! directory is followed by everything under it, in name order. Symlinks
//! (PATH itself included) are archived as links, files with several links
//! inside the tree as hardlinks to the first one archived; FIFOs and device
//! nodes are kept, sockets skipped. Mode bits (setuid, setgid, sticky),
//! numeric owners and mtimes are kept. GNU headers, so long names and large
//! ids and sizes work.
//!
//! The host's `a3s_box_runtime::copy::pack` is the same walk over the host's
//! files; keep the two in step.

use std::collections::HashMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header};

use super::HelperError;

/// What [`create`] archived.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Created {
    /// Entries written (hardlinks included).
    pub entries: u64,
    /// Sockets left out (tar cannot hold them).
    pub skipped_sockets: u64,
}

/// Write `path` as a tar stream to `out`.
pub fn create(path: &Path, out: impl Write) -> Result<Created, HelperError> {
    let meta = fs::symlink_metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => HelperError::NotFound(path.to_owned()),
        _ => HelperError::Io {
            op: "stat",
            path: path.to_owned(),
            source: e,
        },
    })?;
    let name = archive_name(path);
    let mut walk = Walk {
        builder: Builder::new(out),
        first_names: HashMap::new(),
        created: Created::default(),
    };
    walk.tree(path.to_owned(), name, meta)?;
    walk.builder
        .into_inner()
        .and_then(|mut out| out.flush())
        .map_err(HelperError::io("write", "stdout"))?;
    Ok(walk.created)
}

/// The name of the archive root: PATH's last component (`/etc/.` and `/etc/`
/// give `etc`), or `.` when it has none (`/`).
pub fn archive_name(path: &Path) -> PathBuf {
    path.file_name()
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}

struct Walk<W: Write> {
    builder: Builder<W>,
    /// (device, inode) of multiply-linked files → the name archived first.
    first_names: HashMap<(u64, u64), PathBuf>,
    created: Created,
}

impl<W: Write> Walk<W> {
    /// Archive `root` (whose `lstat` is `meta`) as `name`, depth first.
    fn tree(&mut self, root: PathBuf, name: PathBuf, meta: Metadata) -> Result<(), HelperError> {
        let mut stack = vec![(root, name, Some(meta))];
        while let Some((path, name, meta)) = stack.pop() {
            let meta = match meta {
                Some(meta) => meta,
                None => match fs::symlink_metadata(&path) {
                    Ok(meta) => meta,
                    // Gone since its directory was listed: the box is live.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(HelperError::io("stat", path)(e)),
                },
            };
            if !self.entry(&path, &name, &meta)? || !meta.is_dir() {
                continue;
            }
            let mut children = Vec::new();
            for child in fs::read_dir(&path).map_err(HelperError::io("read dir", &path))? {
                let child = child.map_err(HelperError::io("read dir", &path))?;
                children.push(child.file_name());
            }
            children.sort();
            for child in children.into_iter().rev() {
                stack.push((path.join(&child), child_name(&name, &child), None));
            }
        }
        Ok(())
    }

    /// Append one entry; false when it was skipped.
    fn entry(&mut self, path: &Path, name: &Path, meta: &Metadata) -> Result<bool, HelperError> {
        let ft = meta.file_type();
        if ft.is_socket() {
            self.created.skipped_sockets += 1;
            return Ok(false);
        }
        let mut header = header_for(meta);
        let write_err = HelperError::io("write", "stdout");
        let link_key = (!ft.is_dir() && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
        if let Some(first) = link_key.and_then(|key| self.first_names.get(&key)) {
            header.set_entry_type(EntryType::Link);
            header.set_size(0);
            self.builder
                .append_link(&mut header, name, first)
                .map_err(write_err)?;
            self.created.entries += 1;
            return Ok(true);
        }
        let result = if ft.is_file() {
            let Some((file, size)) = open_file(path)? else {
                return Ok(false);
            };
            header.set_entry_type(EntryType::Regular);
            header.set_size(size);
            // Exactly `size` bytes even if the file changes while read.
            let data = file.take(size).chain(io::repeat(0)).take(size);
            self.builder.append_data(&mut header, name, data)
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(HelperError::io("readlink", path))?;
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
                    .set_device_major(nix::sys::stat::major(rdev) as u32)
                    .and_then(|()| header.set_device_minor(nix::sys::stat::minor(rdev) as u32))
                    .map_err(HelperError::io("archive device", path))?;
            }
            self.builder.append_data(&mut header, name, io::empty())
        };
        result.map_err(write_err)?;
        if let Some(key) = link_key {
            self.first_names.insert(key, name.to_owned());
        }
        self.created.entries += 1;
        Ok(true)
    }
}

/// The archive name of `child` in the directory archived as `name` (`x`,
/// not `./x`, under a `.` root, so hardlink targets match entry names).
fn child_name(name: &Path, child: &std::ffi::OsStr) -> PathBuf {
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
fn open_file(path: &Path) -> Result<Option<(File, u64)>, HelperError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ELOOP)) => return Ok(None),
        Err(e) => return Err(HelperError::io("open", path)(e)),
    };
    let meta = file.metadata().map_err(HelperError::io("stat", path))?;
    Ok(meta.is_file().then_some((file, meta.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_are_the_basename() {
        assert_eq!(archive_name(Path::new("/etc/hosts")), Path::new("hosts"));
        assert_eq!(archive_name(Path::new("/etc/")), Path::new("etc"));
        assert_eq!(archive_name(Path::new("/etc/.")), Path::new("etc"));
        assert_eq!(archive_name(Path::new("/")), Path::new("."));
    }

    #[test]
    fn a_missing_path_is_reported_by_name() {
        let err = create(Path::new("/no/such/a3s"), io::sink()).expect_err("missing");
        assert_eq!(err.to_string(), "no such file or directory: /no/such/a3s");
    }
}
