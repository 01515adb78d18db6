//! Extracting an untrusted tar stream from a box under a host directory.
//!
//! Entry names are cleaned and their parents resolved with the layer
//! unpacker's [`resolve`](crate::image::unpack::resolve) rules: `..` is
//! refused, absolute names and absolute symlink targets are taken relative
//! to the destination, and a symlink that climbs above it is refused. The
//! last component is never followed. Every non-directory is written under a
//! temporary name beside its place and renamed over it once complete, so it
//! replaces a file or symlink there instead of writing through it, and an
//! error leaves no half-written file. Directories are created at once and
//! get their mode, owner and mtime at the end (so a read-only directory can
//! still be filled). Owners are kept only when running as root; device
//! nodes and FIFOs are skipped and counted.
//!
//! A hardlink is made only to a regular file this archive already wrote,
//! looked up by the exact name the archive gave it (renamed, never resolved
//! again): `../x`, `/etc/shadow`, a path through a symlink or anything the
//! destination held before are refused. Extended attributes are restored
//! only in the `user.*` namespace, and `security.capability` when running
//! as root (as setuid bits are); the box cannot set the host's `trusted.*`,
//! `security.*` (SELinux labels) or ACLs. Others, and filesystems without
//! attributes, are counted in [`Unpacked::skipped_xattrs`].

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{futimens, utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use a3s_box_archive::read::{self, Member};
use a3s_box_archive::xattrs;

use super::pack::check_root_name;
use super::CopyError;
use crate::image::unpack::resolve::{clean, resolve_dir};

pub use a3s_box_archive::read::{MAX_LONG_NAME_BYTES, MAX_PAX_HEADER_BYTES};

/// Skipped entries named in [`Unpacked::skipped_names`]; the rest are only
/// counted.
const MAX_REPORTED_SKIPS: usize = 16;
/// The extended attribute namespace any user may set, restored from a box.
const USER_XATTR_PREFIX: &[u8] = b"user.";
/// File capabilities: restored from a box only when running as root.
const FILE_CAPABILITY_XATTR: &[u8] = b"security.capability";
/// Copy buffer for file contents.
const COPY_BUF_BYTES: usize = 256 * 1024;

/// What [`unpack`] wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Entries extracted.
    pub entries: u64,
    /// Bytes of file contents written.
    pub file_bytes: u64,
    /// Entries skipped: device nodes, FIFOs and unknown entry types.
    pub skipped: u64,
    /// The names of the first skipped entries, to show the user.
    pub skipped_names: Vec<PathBuf>,
    /// Extended attributes not restored (not `user.*`, or not supported
    /// by the destination's filesystem).
    pub skipped_xattrs: u64,
}

/// Extract `input` under the existing directory `dest_dir`. With
/// `rename_root = Some((from, to))`, every entry must be `from` or under it,
/// and `from` is renamed `to`; `from = "."` puts every entry under `to`, and
/// `to = "."` puts what is under `from` straight into `dest_dir`.
pub fn unpack(
    input: impl Read,
    dest_dir: &Path,
    rename_root: Option<(&str, &str)>,
) -> Result<Unpacked, CopyError> {
    if let Some((from, to)) = rename_root {
        check_root_name(from)?;
        check_root_name(to)?;
    }
    let no_dir = || CopyError::NoDestDir {
        path: dest_dir.to_owned(),
    };
    let root = dest_dir.canonicalize().map_err(|_| no_dir())?;
    if !root.is_dir() {
        return Err(no_dir());
    }
    let mut state = State {
        root,
        rename: rename_root,
        is_root: nix::unistd::geteuid().is_root(),
        files: HashMap::new(),
        dirs: Vec::new(),
        unpacked: Unpacked::default(),
        next_temp: 0,
        buf: vec![0; COPY_BUF_BYTES],
    };
    let result = read::for_each(input, |member, data| state.apply(member, data));
    // Directories made so far are complete: give them their metadata even
    // after an error, and report the first error.
    let dirs = state.finish_dirs();
    result.and(dirs).map(|()| state.unpacked)
}

struct State<'a> {
    /// The destination directory, canonical.
    root: PathBuf,
    rename: Option<(&'a str, &'a str)>,
    is_root: bool,
    /// Regular files this archive wrote: their cleaned, renamed archive
    /// name → where they are (relative to `root`). The only valid hardlink
    /// targets, looked up by name, never resolved again.
    files: HashMap<PathBuf, PathBuf>,
    /// Directories to give their metadata at the end, in archive order.
    dirs: Vec<(PathBuf, Member)>,
    unpacked: Unpacked,
    next_temp: u64,
    buf: Vec<u8>,
}

impl State<'_> {
    fn apply(&mut self, member: Member, data: &mut dyn Read) -> Result<(), CopyError> {
        let comps = self.components(&member.name)?;
        let Some((last, parents)) = comps.split_last() else {
            if member.kind == EntryType::Directory {
                return Ok(()); // the destination itself: keep it as it is
            }
            return Err(CopyError::Refused {
                entry: member.name,
                reason: "a non-directory named like the destination directory",
            });
        };
        let parent_rel = resolve_dir(&self.root, parents, &member.name)?;
        let parent = self.root.join(&parent_rel);
        fs::create_dir_all(&parent).map_err(CopyError::io("create directory", &parent))?;
        let rel = parent_rel.join(last);
        let path = parent.join(last);
        let name: PathBuf = comps.iter().collect();
        let is_file = match member.kind {
            EntryType::Directory => return self.dir(path, member),
            EntryType::Regular | EntryType::Continuous => {
                let bytes =
                    self.place(&parent, &path, "file", |s, tmp| s.file(tmp, &member, data))?;
                self.unpacked.file_bytes += bytes;
                true
            }
            EntryType::Symlink => {
                self.place(&parent, &path, "symlink", |s, tmp| s.symlink(tmp, &member))?;
                false
            }
            EntryType::Link => {
                let source = self.link_source(&member)?;
                self.place(&parent, &path, "hardlink", |_, tmp| {
                    fs::hard_link(&source, tmp).map_err(CopyError::io("hardlink", tmp))?;
                    Ok(0)
                })?;
                true
            }
            _ => {
                self.unpacked.skipped += 1;
                if self.unpacked.skipped_names.len() < MAX_REPORTED_SKIPS {
                    self.unpacked.skipped_names.push(member.name);
                }
                return Ok(());
            }
        };
        // A name now held by a symlink is no longer a hardlink target.
        if is_file {
            self.files.insert(name, rel);
        } else {
            self.files.remove(&name);
        }
        self.unpacked.entries += 1;
        Ok(())
    }

    /// The cleaned, renamed components of an entry or hardlink target name.
    fn components(&self, name: &Path) -> Result<Vec<OsString>, CopyError> {
        let comps = clean(name)?;
        let Some((from, to)) = self.rename else {
            return Ok(comps);
        };
        rename_components(comps, from, to, name)
    }

    fn dir(&mut self, path: PathBuf, member: Member) -> Result<(), CopyError> {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(CopyError::Conflict {
                    path,
                    existing: "the non-directory",
                    incoming: "directory",
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(CopyError::io("create directory", &path))?;
            }
            Err(e) => return Err(CopyError::io("stat", path)(e)),
        }
        self.restore_xattrs(&path, &member)?;
        self.dirs.push((path, member));
        self.unpacked.entries += 1;
        Ok(())
    }

    /// Create a non-directory at a temporary name in `parent` with `make`,
    /// then rename it to `path`. Returns what `make` returns.
    fn place(
        &mut self,
        parent: &Path,
        path: &Path,
        incoming: &'static str,
        make: impl FnOnce(&mut Self, &Path) -> Result<u64, CopyError>,
    ) -> Result<u64, CopyError> {
        if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(CopyError::Conflict {
                path: path.to_owned(),
                existing: "the directory",
                incoming,
            });
        }
        let tmp = parent.join(format!(".a3s-cp-{}-{}", std::process::id(), self.next_temp));
        self.next_temp += 1;
        let result = make(self, &tmp).and_then(|n| {
            fs::rename(&tmp, path).map_err(CopyError::io("rename into place", path))?;
            Ok(n)
        });
        // Left behind by an error, or by a rename onto another link to the
        // same file (which does nothing).
        let _ = fs::remove_file(&tmp);
        result
    }

    fn file(&mut self, tmp: &Path, member: &Member, data: &mut dyn Read) -> Result<u64, CopyError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(tmp)
            .map_err(CopyError::io("create", tmp))?;
        let mut bytes = 0;
        loop {
            let n = data.read(&mut self.buf).map_err(CopyError::Tar)?;
            if n == 0 {
                break;
            }
            file.write_all(&self.buf[..n])
                .map_err(CopyError::io("write", tmp))?;
            bytes += n as u64;
        }
        if bytes != member.size {
            // The tar reader ends an entry quietly at the end of the stream.
            return Err(CopyError::Tar(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{:?} ends after {bytes} of its {} bytes",
                    member.name, member.size
                ),
            )));
        }
        if self.is_root {
            let (uid, gid) = owner(member);
            std::os::unix::fs::fchown(&file, uid, gid).map_err(CopyError::io("chown", tmp))?;
        }
        // After chown, which clears file capabilities, and before a
        // read-only mode.
        self.restore_xattrs(tmp, member)?;
        // After chown, which clears setuid and setgid.
        file.set_permissions(fs::Permissions::from_mode(member.mode))
            .map_err(CopyError::io("chmod", tmp))?;
        let ts = TimeSpec::new(member.mtime, 0);
        futimens(file.as_raw_fd(), &ts, &ts)
            .map_err(|e| CopyError::io("set mtime", tmp)(e.into()))?;
        Ok(bytes)
    }

    fn symlink(&mut self, tmp: &Path, member: &Member) -> Result<u64, CopyError> {
        let Some(target) = &member.link else {
            return Err(CopyError::Refused {
                entry: member.name.clone(),
                reason: "a symlink without a target",
            });
        };
        std::os::unix::fs::symlink(target, tmp).map_err(CopyError::io("symlink", tmp))?;
        if self.is_root {
            let (uid, gid) = owner(member);
            std::os::unix::fs::lchown(tmp, uid, gid).map_err(CopyError::io("chown", tmp))?;
        }
        set_mtime(tmp, member.mtime)?;
        Ok(0)
    }

    /// The path a hardlink entry links to: a regular file this archive
    /// wrote under exactly that (cleaned, renamed) name, and still there.
    fn link_source(&self, member: &Member) -> Result<PathBuf, CopyError> {
        let target = member.link.clone().unwrap_or_default();
        let refused = || CopyError::HardlinkTarget {
            entry: member.name.clone(),
            target: target.clone(),
        };
        let name: PathBuf = self.components(&target)?.into_iter().collect();
        let rel = self.files.get(&name).ok_or_else(refused)?;
        let source = self.root.join(rel);
        // `rel` has no symlinks; the last component must not be one now.
        match fs::symlink_metadata(&source) {
            Ok(meta) if meta.is_file() => Ok(source),
            _ => Err(refused()),
        }
    }

    /// Set the member's extended attributes that the host accepts from a
    /// box on `path` (see the module documentation); count the others.
    fn restore_xattrs(&mut self, path: &Path, member: &Member) -> Result<(), CopyError> {
        for (name, value) in &member.xattrs {
            let bytes = name.as_bytes();
            let accepted = bytes.starts_with(USER_XATTR_PREFIX)
                || (self.is_root && bytes == FILE_CAPABILITY_XATTR);
            let set = accepted
                && xattrs::set(path, name, value).map_err(|e| {
                    let what = format!("{}: {e}", name.to_string_lossy());
                    CopyError::io("set extended attribute", path)(io::Error::new(e.kind(), what))
                })?;
            if !set {
                self.unpacked.skipped_xattrs += 1;
            }
        }
        Ok(())
    }

    /// Give the directories their mode, owner and mtime, deepest last-made
    /// first, so setting one does not disturb another's mtime.
    fn finish_dirs(&mut self) -> Result<(), CopyError> {
        for (path, member) in self.dirs.iter().rev() {
            if !fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            if self.is_root {
                let (uid, gid) = owner(member);
                std::os::unix::fs::lchown(path, uid, gid).map_err(CopyError::io("chown", path))?;
            }
            fs::set_permissions(path, fs::Permissions::from_mode(member.mode))
                .map_err(CopyError::io("chmod", path))?;
            set_mtime(path, member.mtime)?;
        }
        Ok(())
    }
}

/// Apply a root rename to an entry's cleaned components (see [`unpack`]).
pub(super) fn rename_components(
    mut comps: Vec<OsString>,
    from: &str,
    to: &str,
    entry: &Path,
) -> Result<Vec<OsString>, CopyError> {
    if from != "." {
        match comps.first() {
            None => return Ok(comps), // `./`: the destination itself
            Some(first) if first.as_os_str() == OsStr::new(from) => {
                comps.remove(0);
            }
            Some(_) => {
                return Err(CopyError::UnexpectedRoot {
                    entry: entry.to_owned(),
                    expected: from.to_owned(),
                })
            }
        }
    }
    if to != "." {
        comps.insert(0, to.into());
    }
    Ok(comps)
}

fn owner(member: &Member) -> (Option<u32>, Option<u32>) {
    (
        u32::try_from(member.uid).ok(),
        u32::try_from(member.gid).ok(),
    )
}

fn set_mtime(path: &Path, mtime: i64) -> Result<(), CopyError> {
    let ts = TimeSpec::new(mtime, 0);
    utimensat(None, path, &ts, &ts, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| CopyError::io("set mtime", path)(e.into()))
}
