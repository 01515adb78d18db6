//! `tar-extract DIR`: extract the tar stream on stdin under DIR, keeping
//! modes (setuid, setgid, sticky), numeric owners (when root), mtimes,
//! symlinks, hardlinks, FIFOs, device nodes and extended attributes (PAX
//! `SCHILY.xattr.*`; dropped where the filesystem has none, `EOPNOTSUPP`).
//! The stream is read with `a3s_box_archive::read` (bounded headers, PAX
//! records read by length). Existing files and symlinks are replaced (never
//! written through); a directory is never replaced by a non-directory or the
//! reverse.
//!
//! Nothing is written outside DIR. When the helper may, it `chroot`s into DIR
//! first, so the kernel confines every path even if processes of the box
//! change the tree meanwhile (the race of CVE-2018-15664). In any case entry
//! names with `..` are refused, absolute names are taken relative to DIR, a
//! symlink on the way to an entry must resolve inside DIR, and a hardlink
//! must point at something already inside DIR.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use a3s_box_archive::read::{self, Member};
use nix::errno::Errno;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use super::tar_place as place;
use super::HelperError;

/// What [`extract`] wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Entries extracted.
    pub entries: u64,
}

/// Extract stdin (`input`) under `dir`, which must be an existing directory.
pub fn run(dir: &Path, input: impl Read) -> Result<Extracted, HelperError> {
    let meta = fs::metadata(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => HelperError::NotFound(dir.to_owned()),
        _ => HelperError::io("stat", dir)(e),
    })?;
    if !meta.is_dir() {
        return Err(HelperError::NotADirectory(dir.to_owned()));
    }
    let root = confine(dir)?;
    extract(input, &root)
}

/// Make `dir` the process root when permitted and return the path to extract
/// under (`/`); else return `dir` made canonical, for the path checks alone.
fn confine(dir: &Path) -> Result<PathBuf, HelperError> {
    match nix::unistd::chroot(dir) {
        Ok(()) => {
            nix::unistd::chdir("/").map_err(|e| HelperError::io("chdir", "/")(e.into()))?;
            Ok(PathBuf::from("/"))
        }
        // Not root, or the box dropped CAP_SYS_CHROOT.
        Err(Errno::EPERM) => dir.canonicalize().map_err(HelperError::io("resolve", dir)),
        Err(e) => Err(HelperError::io("chroot", dir)(e.into())),
    }
}

/// Extract `input` under `root`, which must be canonical (no symlinks).
pub fn extract(input: impl Read, root: &Path) -> Result<Extracted, HelperError> {
    let is_root = nix::unistd::geteuid().is_root();
    let mut extracted = Extracted::default();
    // Directory mtimes are set last: adding children changes them.
    let mut dir_times = Vec::new();
    read::for_each(input, |member, data| {
        let comps = clean(&member.name)?;
        let Some((last, parents)) = comps.split_last() else {
            return Ok(()); // DIR itself: keep it as it is
        };
        let target = walk(root, parents, &member.name, true)?.join(last);
        match member.kind {
            EntryType::Link => {
                return hardlink(&member, root, &target).map(|()| extracted.entries += 1)
            }
            EntryType::Regular | EntryType::Continuous => place::file(&member, data, &target)?,
            EntryType::Directory => {
                place::dir(&member, &target)?;
                dir_times.push((target.clone(), member.mtime));
            }
            EntryType::Symlink => place::symlink(&member, &target)?,
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                place::special(&member, &target)?
            }
            _ => return Ok(()), // nothing this reader can make
        }
        place::owner_mode_xattrs(&member, &target, is_root)?;
        if member.kind != EntryType::Directory {
            set_mtime(&target, member.mtime)?;
        }
        extracted.entries += 1;
        Ok::<(), HelperError>(())
    })?;
    for (dir, mtime) in dir_times.iter().rev() {
        set_mtime(dir, *mtime)?;
    }
    Ok(extracted)
}

/// The normal components of an entry name; `..` is refused, `/` and `.`
/// dropped (absolute names are relative to the destination).
fn clean(name: &Path) -> Result<Vec<OsString>, HelperError> {
    let mut out = Vec::new();
    for comp in name.components() {
        match comp {
            Component::Normal(c) => out.push(c.to_owned()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(HelperError::Refused {
                    entry: name.to_owned(),
                    reason: "its name has a '..' component",
                })
            }
        }
    }
    Ok(out)
}

/// The canonical directory `root/comps...`, following symlinks only where
/// they resolve inside `root`; missing directories are created when `create`.
fn walk(
    root: &Path,
    comps: &[OsString],
    entry: &Path,
    create: bool,
) -> Result<PathBuf, HelperError> {
    let refused = |reason| HelperError::Refused {
        entry: entry.to_owned(),
        reason,
    };
    let mut dir = root.to_path_buf();
    for comp in comps {
        let next = dir.join(comp);
        match fs::symlink_metadata(&next) {
            Ok(meta) if meta.is_dir() => dir = next,
            Ok(meta) if meta.file_type().is_symlink() => {
                let real = next
                    .canonicalize()
                    .map_err(|_| refused("a symlink in its path does not resolve"))?;
                if !real.starts_with(root) {
                    return Err(refused(
                        "a symlink in its path leads outside the destination",
                    ));
                }
                if !real.is_dir() {
                    return Err(refused("a symlink in its path is not a directory"));
                }
                dir = real;
            }
            Ok(_) => return Err(refused("a component of its path is not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                match fs::create_dir(&next) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && next.is_dir() => {}
                    Err(e) => return Err(HelperError::io("create directory", &next)(e)),
                }
                dir = next;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(refused("a directory in its path does not exist"))
            }
            Err(e) => return Err(HelperError::io("stat", &next)(e)),
        }
    }
    Ok(dir)
}

fn hardlink(member: &Member, root: &Path, target: &Path) -> Result<(), HelperError> {
    let refused = |reason| HelperError::Refused {
        entry: member.name.clone(),
        reason,
    };
    let link = member
        .link
        .as_ref()
        .ok_or_else(|| refused("a hardlink without a target"))?;
    let comps = clean(link)?;
    let (last, parents) = comps
        .split_last()
        .ok_or_else(|| refused("a hardlink to the destination directory"))?;
    let source = walk(root, parents, &member.name, false)?.join(last);
    match fs::symlink_metadata(&source) {
        Ok(meta) if !meta.is_dir() => {}
        _ => {
            return Err(refused(
                "its hardlink target is not a file already extracted",
            ))
        }
    }
    replace_non_dir(target)?;
    fs::hard_link(&source, target).map_err(HelperError::io("hardlink", target))
}

/// Remove a file, symlink or node at `path` so an entry can take its place;
/// a directory there is an error.
pub(super) fn replace_non_dir(path: &Path) -> Result<(), HelperError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(HelperError::Io {
            op: "replace",
            path: path.to_owned(),
            source: io::Error::from_raw_os_error(libc::EISDIR),
        }),
        Ok(_) => fs::remove_file(path).map_err(HelperError::io("remove", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(HelperError::io("stat", path)(e)),
    }
}

fn set_mtime(path: &Path, mtime: i64) -> Result<(), HelperError> {
    let ts = TimeSpec::new(mtime, 0);
    utimensat(None, path, &ts, &ts, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| HelperError::io("set mtime", path)(e.into()))
}

#[cfg(test)]
#[path = "tar_tests.rs"]
mod tests;
