//! `tar-extract DIR`: extract the tar stream on stdin under DIR, keeping
//! modes (setuid, setgid, sticky), numeric owners (when root), mtimes,
//! symlinks, hardlinks, FIFOs and device nodes. Existing files and symlinks
//! are replaced (never written through); a directory is never replaced by a
//! non-directory or the reverse.
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

use nix::errno::Errno;
use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::{Archive, Entry, EntryType};

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
    let mut archive = Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(is_root);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut extracted = Extracted::default();
    // Directory mtimes are set last: adding children changes them.
    let mut dir_times = Vec::new();
    for entry in archive.entries().map_err(HelperError::Tar)? {
        let mut entry = entry.map_err(HelperError::Tar)?;
        let name = entry.path().map_err(HelperError::Tar)?.into_owned();
        let comps = clean(&name)?;
        let Some((last, parents)) = comps.split_last() else {
            continue; // DIR itself: keep it as it is
        };
        let target = walk(root, parents, &name, true)?.join(last);
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Link => hardlink(&entry, root, &name, &target)?,
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                special(&entry, kind, &target, is_root)?
            }
            _ => {
                entry
                    .unpack(&target)
                    .map_err(HelperError::io("extract", &target))?;
            }
        }
        if kind == EntryType::Directory {
            let mtime = entry.header().mtime().map_err(HelperError::Tar)?;
            dir_times.push((target, mtime));
        }
        extracted.entries += 1;
    }
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

fn hardlink<R: Read>(
    entry: &Entry<'_, R>,
    root: &Path,
    name: &Path,
    target: &Path,
) -> Result<(), HelperError> {
    let refused = |reason| HelperError::Refused {
        entry: name.to_owned(),
        reason,
    };
    let link = entry
        .link_name()
        .map_err(HelperError::Tar)?
        .ok_or_else(|| refused("a hardlink without a target"))?;
    let comps = clean(&link)?;
    let (last, parents) = comps
        .split_last()
        .ok_or_else(|| refused("a hardlink to the destination directory"))?;
    let source = walk(root, parents, name, false)?.join(last);
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

fn special<R: Read>(
    entry: &Entry<'_, R>,
    kind: EntryType,
    target: &Path,
    is_root: bool,
) -> Result<(), HelperError> {
    let header = entry.header();
    let sflag = match kind {
        EntryType::Char => SFlag::S_IFCHR,
        EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    let mode = header.mode().map_err(HelperError::Tar)? & 0o7777;
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    replace_non_dir(target)?;
    let sys = |op| move |e: Errno| HelperError::io(op, target)(e.into());
    mknod(
        target,
        sflag,
        Mode::from_bits_truncate(mode),
        makedev(major.into(), minor.into()),
    )
    .map_err(sys("mknod"))?;
    if is_root {
        let uid = u32::try_from(header.uid().map_err(HelperError::Tar)?).ok();
        let gid = u32::try_from(header.gid().map_err(HelperError::Tar)?).ok();
        std::os::unix::fs::lchown(target, uid, gid).map_err(HelperError::io("chown", target))?;
    }
    // After chown, which clears setuid and setgid.
    nix::sys::stat::fchmodat(
        None,
        target,
        Mode::from_bits_truncate(mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(sys("chmod"))?;
    set_mtime(target, header.mtime().map_err(HelperError::Tar)?)
}

/// Remove a file, symlink or node at `path` so an entry can take its place;
/// a directory there is an error.
fn replace_non_dir(path: &Path) -> Result<(), HelperError> {
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

fn set_mtime(path: &Path, mtime: u64) -> Result<(), HelperError> {
    let ts = TimeSpec::new(i64::try_from(mtime).unwrap_or(i64::MAX), 0);
    utimensat(None, path, &ts, &ts, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| HelperError::io("set mtime", path)(e.into()))
}

#[cfg(test)]
#[path = "tar_tests.rs"]
mod tests;
