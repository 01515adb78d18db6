//! Making one `tar-extract` member at its (already vetted) place: files,
//! directories, symlinks and nodes, then their owner, extended attributes
//! and mode. A file, symlink or node already there is replaced, never
//! written through.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use a3s_box_archive::read::Member;
use a3s_box_archive::xattrs;
use nix::errno::Errno;
use nix::sys::stat::{fchmodat, makedev, mknod, FchmodatFlags, Mode, SFlag};
use tar::EntryType;

use super::tar_extract::replace_non_dir;
use super::HelperError;

/// A regular file with `data` as its contents.
pub(super) fn file(member: &Member, data: &mut dyn Read, target: &Path) -> Result<(), HelperError> {
    replace_non_dir(target)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(target)
        .map_err(HelperError::io("create", target))?;
    let written = io::copy(data, &mut file).map_err(HelperError::Tar)?;
    if written != member.size {
        // The tar reader ends an entry quietly at the end of the stream.
        return Err(HelperError::Tar(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{} ends after {written} of its {} bytes",
                member.name.display(),
                member.size
            ),
        )));
    }
    Ok(())
}

/// A directory, unless one is there already; a non-directory there is an
/// error (it is not replaced).
pub(super) fn dir(member: &Member, target: &Path) -> Result<(), HelperError> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(HelperError::Refused {
            entry: member.name.clone(),
            reason: "a non-directory is in the place of the directory",
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir(target).map_err(HelperError::io("create directory", target))
        }
        Err(e) => Err(HelperError::io("stat", target)(e)),
    }
}

pub(super) fn symlink(member: &Member, target: &Path) -> Result<(), HelperError> {
    let Some(link) = &member.link else {
        return Err(HelperError::Refused {
            entry: member.name.clone(),
            reason: "a symlink without a target",
        });
    };
    replace_non_dir(target)?;
    std::os::unix::fs::symlink(link, target).map_err(HelperError::io("symlink", target))
}

/// A FIFO or device node.
pub(super) fn special(member: &Member, target: &Path) -> Result<(), HelperError> {
    let sflag = match member.kind {
        EntryType::Char => SFlag::S_IFCHR,
        EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    replace_non_dir(target)?;
    let (major, minor) = member.device;
    mknod(
        target,
        sflag,
        Mode::from_bits_truncate(member.mode),
        makedev(major.into(), minor.into()),
    )
    .map_err(|e| HelperError::io("mknod", target)(e.into()))
}

/// Give `target` the member's owner (when root), extended attributes and
/// mode, in that order: chown clears setuid, setgid and file capabilities,
/// and a read-only mode would stop a non-root caller setting attributes.
pub(super) fn owner_mode_xattrs(
    member: &Member,
    target: &Path,
    is_root: bool,
) -> Result<(), HelperError> {
    if is_root {
        let uid = u32::try_from(member.uid).ok();
        let gid = u32::try_from(member.gid).ok();
        std::os::unix::fs::lchown(target, uid, gid).map_err(HelperError::io("chown", target))?;
    }
    let is_symlink = member.kind == EntryType::Symlink;
    for (name, value) in &member.xattrs {
        match xattrs::set(target, name, value) {
            // Ok(false): the filesystem keeps no attributes.
            Ok(_) => {}
            // Not ours to set (trusted.* as non-root, user.* on a symlink).
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && (!is_root || is_symlink) => {}
            Err(e) => {
                let source = io::Error::new(e.kind(), format!("{}: {e}", name.to_string_lossy()));
                return Err(HelperError::io("set extended attribute", target)(source));
            }
        }
    }
    if is_symlink {
        return Ok(()); // symlinks have no mode of their own
    }
    fchmodat(
        None,
        target,
        Mode::from_bits_truncate(member.mode),
        FchmodatFlags::FollowSymlink,
    )
    .map_err(|e: Errno| HelperError::io("chmod", target)(e.into()))
}
