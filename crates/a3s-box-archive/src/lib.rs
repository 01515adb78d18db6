//! Packing a file, directory or symlink as a tar stream: the one walk both
//! ends of `a3s-box cp` use (the host packs what goes into a box, guest-init
//! packs what comes out of one).
//!
//! The root entry gets the name the caller chooses; a directory is followed
//! by everything under it in name order; symlinks stay links; files with
//! several links inside the tree become hardlinks to the first one archived;
//! FIFOs and device nodes are kept and sockets skipped. Mode bits (setuid,
//! setgid, sticky), numeric owners and mtimes are kept. GNU headers, so long
//! names and large ids and sizes work. A tree that changes while it is read
//! gives a consistent stream: files are read for exactly the size archived,
//! entries that vanish are left out.

use std::collections::HashMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header};

/// What [`pack`] archived.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Packed {
    /// Entries written (hardlinks included).
    pub entries: u64,
    /// Bytes of file contents.
    pub file_bytes: u64,
    /// Sockets left out (tar cannot hold them).
    pub skipped_sockets: u64,
}

/// Why packing stopped.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The source does not exist.
    #[error("no such file or directory: {}", .0.display())]
    Missing(PathBuf),
    /// A file of the tree could not be read.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// To which path.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// The output could not be written.
    #[error("write the archive: {0}")]
    Write(io::Error),
}

impl PackError {
    fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| PackError::Io { op, path, source }
    }
}

/// Write `src` to `out` as a tar stream whose root entry is `root_name`
/// (`.` makes the entries `src`'s contents). The caller vets the name.
pub fn pack(src: &Path, root_name: &Path, out: impl Write) -> Result<Packed, PackError> {
    let meta = fs::symlink_metadata(src).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => PackError::Missing(src.to_owned()),
        _ => PackError::io("stat", src)(e),
    })?;
    let mut walk = Walk {
        builder: Builder::new(out),
        first_names: HashMap::new(),
        packed: Packed::default(),
    };
    walk.tree(src, root_name.to_owned(), meta)?;
    walk.builder
        .into_inner()
        .and_then(|mut out| out.flush())
        .map_err(PackError::Write)?;
    Ok(walk.packed)
}

struct Walk<W: Write> {
    builder: Builder<W>,
    /// (device, inode) of multiply-linked files → the name archived first.
    first_names: HashMap<(u64, u64), PathBuf>,
    packed: Packed,
}

impl<W: Write> Walk<W> {
    /// Archive `root` (whose `lstat` is `meta`) as `name`, depth first.
    fn tree(&mut self, root: &Path, name: PathBuf, meta: Metadata) -> Result<(), PackError> {
        let mut stack = vec![(root.to_owned(), name, Some(meta))];
        while let Some((path, name, meta)) = stack.pop() {
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
            let mut children = Vec::new();
            for child in fs::read_dir(&path).map_err(PackError::io("read dir", &path))? {
                children.push(child.map_err(PackError::io("read dir", &path))?.file_name());
            }
            children.sort();
            for child in children.into_iter().rev() {
                stack.push((path.join(&child), child_name(&name, &child), None));
            }
        }
        Ok(())
    }

    /// Append one entry; false when it was skipped.
    fn entry(&mut self, path: &Path, name: &Path, meta: &Metadata) -> Result<bool, PackError> {
        let ft = meta.file_type();
        if ft.is_socket() {
            self.packed.skipped_sockets += 1;
            return Ok(false);
        }
        let mut header = header_for(meta);
        let link_key = (!ft.is_dir() && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
        if let Some(first) = link_key.and_then(|key| self.first_names.get(&key)) {
            header.set_entry_type(EntryType::Link);
            self.builder
                .append_link(&mut header, name, first)
                .map_err(PackError::Write)?;
            self.packed.entries += 1;
            return Ok(true);
        }
        let result = if ft.is_file() {
            let Some((file, size)) = open_file(path)? else {
                return Ok(false);
            };
            header.set_entry_type(EntryType::Regular);
            header.set_size(size);
            self.packed.file_bytes += size;
            // Exactly `size` bytes even if the file changes while read.
            let data = file.take(size).chain(io::repeat(0)).take(size);
            self.builder.append_data(&mut header, name, data)
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(PackError::io("readlink", path))?;
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
            self.builder.append_data(&mut header, name, io::empty())
        };
        result.map_err(PackError::Write)?;
        if let Some(key) = link_key {
            self.first_names.insert(key, name.to_owned());
        }
        self.packed.entries += 1;
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
