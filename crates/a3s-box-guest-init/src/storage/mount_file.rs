//! Single-file bind mounts (`-v /host/file:/box/file`).
//!
//! virtio-fs shares directories; the host's daemon serves a single file as
//! the only entry ([`SHARED_FILE_NAME`]) of a read-only one-file view. Here
//! the share is mounted on a staging directory of guest-init's own
//! filesystem (never inside the box), that one file is bind-mounted on the
//! target inside the box, and the staging mount is detached again: the box
//! sees the file and nothing of the share around it.
//!
//! The target is resolved inside the box root with `RESOLVE_IN_ROOT`, so a
//! symlink in the image (`/etc/resolv.conf -> ../run/resolv.conf`) is
//! followed as the box would see it and can never leave the box. A missing
//! target is created as an empty file (and its parents as directories).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use a3s_box_core::guest::message::{MountSpec, SHARED_FILE_NAME};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Context, InitError};
use crate::storage::mount_flags;
use crate::storage::resolve::{make_dir_in_root, open_path_in_root};

/// Mount the one file of the virtio-fs share `tag` at `m.target` in `root`;
/// the share is mounted for a moment under `staging` (the container's own).
pub fn mount_file(root: &str, staging: &str, tag: &str, m: &MountSpec) -> Result<(), InitError> {
    let target = file_in_root(root, &m.target)?;
    let stage = format!("{staging}/file-{tag}");
    std::fs::create_dir_all(&stage).context(|| format!("create {stage}"))?;
    // A bind mount starts with the flags of its source: set them here.
    let flags = mount_flags(m);
    mount(
        Some(tag),
        stage.as_str(),
        Some("virtiofs"),
        flags,
        None::<&str>,
    )
    .context(|| format!("mount virtiofs {tag} on {stage}"))?;
    let at = format!("/proc/self/fd/{}", target.as_raw_fd());
    let result = mount(
        Some(format!("{stage}/{SHARED_FILE_NAME}").as_str()),
        at.as_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .context(|| format!("mount the shared file on {} in the box", m.target));
    let _ = umount2(stage.as_str(), MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(&stage);
    result
}

/// Open (`O_PATH`) the regular file `path` inside the box root `root`,
/// creating it empty, mode 0644, when it does not exist.
pub(crate) fn file_in_root(root: &str, path: &str) -> Result<OwnedFd, InitError> {
    let what = || format!("the file mount point {path} in the box");
    let root_fd = make_dir_in_root(root, "/")?;
    let found = match open_path_in_root(&root_fd, path, 0) {
        Err(Errno::ENOENT) => {
            let (parent, name) = split(path).ok_or(Errno::EINVAL).context(what)?;
            let dir = make_dir_in_root(root, parent)?;
            let name = CString::new(name)
                .map_err(|_| Errno::EINVAL)
                .context(what)?;
            // SAFETY: `dir` is an open directory descriptor and `name` is
            // NUL-terminated; both outlive the call.
            let fd = unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o644 as libc::c_uint,
                )
            };
            if fd < 0 {
                return Err(Errno::last()).context(what);
            }
            // SAFETY: the kernel returned a new descriptor that nothing else owns.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
            open_path_in_root(&root_fd, path, 0)
        }
        other => other,
    }
    .context(what)?;
    let stat = nix::sys::stat::fstat(found.as_raw_fd()).context(what)?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Errno::EISDIR).context(|| {
            format!("{path} in the box is not a regular file: a host file can only be mounted on a file")
        });
    }
    Ok(found)
}

/// `/a/b/c` → (`/a/b`, `c`); `None` for `/` or an empty name.
fn split(path: &str) -> Option<(&str, &str)> {
    let trimmed = path.trim_end_matches('/');
    let (parent, name) = trimmed.rsplit_once('/')?;
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    Some((if parent.is_empty() { "/" } else { parent }, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_parent_and_name() {
        assert_eq!(split("/a/b/c"), Some(("/a/b", "c")));
        assert_eq!(split("/c"), Some(("/", "c")));
        assert_eq!(split("/a/b/"), Some(("/a", "b")));
        assert_eq!(split("/"), None);
        assert_eq!(split("/a/.."), None);
    }

    #[test]
    fn mount_points_are_made_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), root.path().join("link")).unwrap();
        let r = root.path().to_str().unwrap();
        file_in_root(r, "/etc/conf").unwrap();
        assert!(root.path().join("etc/conf").is_file());
        // A dangling absolute link resolves inside the root: creating
        // through it must not touch the outside.
        let _ = file_in_root(r, "/link");
        assert!(!outside.path().join("f").exists());
        std::fs::create_dir(root.path().join("dir")).unwrap();
        let err = file_in_root(r, "/dir").unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }
}
