//! Applying one layer's tar entries to the unpack root.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use a3s_box_archive::xattrs;
use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::{Archive, Entry, EntryType};

use super::resolve::{clean, resolve_dir};
use super::UnpackError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Copy buffer for regular file contents.
const COPY_BUF_BYTES: usize = 256 * 1024;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> UnpackError + 'a {
    move |source| UnpackError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

struct Layer<'a> {
    root: &'a Path,
    /// Paths (relative to root) created by this layer; opaque markers keep them.
    created: HashSet<PathBuf>,
    /// Directory mtimes, set once the layer is done (adding children changes them).
    dir_times: Vec<(PathBuf, i64)>,
    is_root: bool,
    buf: Vec<u8>,
    /// Members seen so far (not counting PAX headers): the index of the
    /// current one.
    members: usize,
    /// Members whose PAX records the `tar` crate could not parse (it splits
    /// records at newlines, so a binary attribute value holding a 0x0a byte
    /// reads as malformed): their attributes come from a second, raw read.
    reread_xattrs: HashSet<usize>,
}

/// Apply one uncompressed tar stream to `root`. `layer` names it in errors.
pub fn apply_layer(reader: impl Read, root: &Path, layer: &Path) -> Result<(), UnpackError> {
    let tar_err = |source| UnpackError::Tar {
        layer: layer.to_owned(),
        source,
    };
    let mut state = Layer {
        root,
        created: HashSet::new(),
        dir_times: Vec::new(),
        is_root: nix::unistd::geteuid().is_root(),
        buf: vec![0; COPY_BUF_BYTES],
        members: 0,
        reread_xattrs: HashSet::new(),
    };
    let mut archive = Archive::new(reader);
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        state.apply(&mut entry).map_err(|e| match e {
            ApplyError::Unpack(u) => u,
            ApplyError::Tar(source) => tar_err(source),
        })?;
    }
    if !state.reread_xattrs.is_empty() {
        state.reapply_xattrs(layer);
    }
    for (path, mtime) in state.dir_times.iter().rev() {
        set_mtime(path, *mtime)?;
    }
    Ok(())
}

enum ApplyError {
    Unpack(UnpackError),
    Tar(io::Error),
}

impl From<UnpackError> for ApplyError {
    fn from(e: UnpackError) -> Self {
        Self::Unpack(e)
    }
}

impl Layer<'_> {
    fn apply<R: Read>(&mut self, entry: &mut Entry<'_, R>) -> Result<(), ApplyError> {
        let name = entry.path().map_err(ApplyError::Tar)?.into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        self.members += 1;
        let mut comps = clean(&name)?;
        let Some(last) = comps.pop() else {
            return Ok(()); // the root itself: keep ours
        };
        let parent_rel = resolve_dir(self.root, &comps, &name)?;
        let parent = self.root.join(&parent_rel);
        fs::create_dir_all(&parent).map_err(io_err("create", &parent))?;
        if last == OsStr::new(OPAQUE_MARKER) {
            return Ok(self.make_opaque(&parent, &parent_rel)?);
        }
        if let Some(hidden) = last.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let victim = parent.join(OsStr::from_bytes(hidden));
            return Ok(remove_any(&victim)?);
        }
        let path = parent.join(&last);
        self.created.insert(parent_rel.join(&last));
        let existing = fs::symlink_metadata(&path).ok();
        let keep_dir =
            kind == EntryType::Directory && existing.as_ref().is_some_and(|m| m.is_dir());
        if existing.is_some() && !keep_dir {
            remove_any(&path)?;
        }
        let header = entry.header();
        let mode = header.mode().map_err(ApplyError::Tar)? & 0o7777;
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.write_file(entry, &path)?
            }
            EntryType::Directory => {
                if !keep_dir {
                    fs::create_dir(&path).map_err(io_err("mkdir", &path))?;
                }
            }
            EntryType::Symlink => {
                let target = link_name(entry, &name)?;
                std::os::unix::fs::symlink(&target, &path).map_err(io_err("symlink", &path))?;
            }
            EntryType::Link => {
                let target = link_name(entry, &name)?;
                let mut tcomps = clean(&target)?;
                let Some(tlast) = tcomps.pop() else {
                    return Err(UnpackError::MissingLinkTarget {
                        entry: name,
                        target,
                    }
                    .into());
                };
                let src = self
                    .root
                    .join(resolve_dir(self.root, &tcomps, &name)?)
                    .join(tlast);
                if fs::symlink_metadata(&src).is_err() {
                    return Err(UnpackError::MissingLinkTarget {
                        entry: name,
                        target,
                    }
                    .into());
                }
                fs::hard_link(&src, &path).map_err(io_err("hardlink", &path))?;
                return Ok(()); // shares the target's inode and metadata
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let perm = Mode::from_bits_truncate(mode);
                mknod(&path, sflag, perm, makedev(major.into(), minor.into())).map_err(|e| {
                    UnpackError::Io {
                        op: "mknod",
                        path: path.clone(),
                        source: e.into(),
                    }
                })?;
            }
            other => {
                return Err(UnpackError::UnsupportedEntry {
                    entry: name,
                    kind: other.as_byte() as char,
                }
                .into())
            }
        }
        self.set_metadata(entry, &path, kind, mode)?;
        Ok(())
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &mut Entry<'_, R>,
        path: &Path,
    ) -> Result<(), ApplyError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io_err("create", path))?;
        loop {
            let n = entry.read(&mut self.buf).map_err(ApplyError::Tar)?;
            if n == 0 {
                return Ok(());
            }
            file.write_all(&self.buf[..n])
                .map_err(io_err("write", path))?;
        }
    }

    fn set_metadata<R: Read>(
        &mut self,
        entry: &mut Entry<'_, R>,
        path: &Path,
        kind: EntryType,
        mode: u32,
    ) -> Result<(), ApplyError> {
        let header = entry.header();
        if self.is_root {
            let uid = header.uid().map_err(ApplyError::Tar)?;
            let gid = header.gid().map_err(ApplyError::Tar)?;
            let (uid, gid) = (u32::try_from(uid).ok(), u32::try_from(gid).ok());
            std::os::unix::fs::lchown(path, uid, gid).map_err(io_err("chown", path))?;
        }
        let mtime = header.mtime().map_err(ApplyError::Tar)?;
        let mtime = i64::try_from(mtime).unwrap_or(i64::MAX);
        if let Some(exts) = entry.pax_extensions().map_err(ApplyError::Tar)? {
            for ext in exts {
                match ext {
                    Ok(ext) => {
                        if let Some(name) = xattrs::name_from_pax_key(ext.key_bytes()) {
                            set_xattr(path, name, ext.value_bytes());
                        }
                    }
                    // A value with a newline: see `reapply_xattrs`.
                    Err(_) => {
                        self.reread_xattrs.insert(self.members - 1);
                    }
                }
            }
        }
        if kind != EntryType::Symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(io_err("chmod", path))?;
        }
        if kind == EntryType::Directory {
            self.dir_times.push((path.to_owned(), mtime));
        } else {
            set_mtime(path, mtime)?;
        }
        Ok(())
    }

    fn make_opaque(&self, dir: &Path, dir_rel: &Path) -> Result<(), UnpackError> {
        for child in fs::read_dir(dir).map_err(io_err("read dir", dir))? {
            let child = child.map_err(io_err("read dir", dir))?;
            if !self.created.contains(&dir_rel.join(child.file_name())) {
                remove_any(&child.path())?;
            }
        }
        Ok(())
    }
}

fn link_name<R: Read>(entry: &Entry<'_, R>, name: &Path) -> Result<PathBuf, ApplyError> {
    match entry.link_name().map_err(ApplyError::Tar)? {
        Some(target) => Ok(target.into_owned()),
        None => Err(UnpackError::MissingLinkTarget {
            entry: name.to_owned(),
            target: PathBuf::new(),
        }
        .into()),
    }
}

/// Remove a file, symlink or whole directory; a missing path is fine.
fn remove_any(path: &Path) -> Result<(), UnpackError> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(io_err("remove", path))
}

fn set_mtime(path: &Path, mtime: i64) -> Result<(), UnpackError> {
    let ts = TimeSpec::new(mtime, 0);
    utimensat(None, path, &ts, &ts, UtimensatFlags::NoFollowSymlink).map_err(|e| UnpackError::Io {
        op: "set mtime",
        path: path.to_owned(),
        source: e.into(),
    })
}

impl Layer<'_> {
    /// Read `layer` again with our own PAX parser (records by length) and set
    /// the attributes of the members in `reread_xattrs`, at their path as
    /// resolved inside the root now. Best effort, like every attribute: a
    /// layer this reader refuses (a GNU sparse file) keeps what it has.
    fn reapply_xattrs(&self, layer: &Path) {
        let reader = match super::open_layer(layer) {
            Ok(r) => super::PadToBlock::new(r),
            Err(e) => {
                tracing::warn!(layer = %layer.display(), "attributes with newlines not kept: {e}");
                return;
            }
        };
        let mut index = 0;
        let result = a3s_box_archive::read::for_each(reader, |member, _data| {
            index += 1;
            if !self.reread_xattrs.contains(&(index - 1)) {
                return Ok::<_, a3s_box_archive::read::ReadError>(());
            }
            if let Some(path) = self.member_path(&member.name) {
                for (name, value) in &member.xattrs {
                    set_xattr(&path, name, value);
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!(layer = %layer.display(), "attributes with newlines not kept: {e}");
        }
    }

    /// Where member `name` is in the root, resolved inside it.
    fn member_path(&self, name: &Path) -> Option<PathBuf> {
        let mut comps = clean(name).ok()?;
        let last = comps.pop()?;
        let parent = resolve_dir(self.root, &comps, name).ok()?;
        Some(self.root.join(parent).join(last))
    }
}

/// Best effort: filesystems without xattr support (or a non-root unpack of
/// `trusted.*`) simply lose them, as Docker does with a warning.
fn set_xattr(path: &Path, name: &OsStr, value: &[u8]) {
    match xattrs::set(path, name, value) {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(path = %path.display(), name = %name.to_string_lossy(), "xattr not kept: not supported here")
        }
        Err(e) => {
            tracing::debug!(path = %path.display(), name = %name.to_string_lossy(), "xattr not kept: {e}")
        }
    }
}
