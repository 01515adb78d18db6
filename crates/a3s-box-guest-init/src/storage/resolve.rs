//! Resolving paths inside a box root with `openat2`: `RESOLVE_IN_ROOT`
//! makes symlinks resolve as if the root were `/` (an image's
//! `/data -> /` stays in the box), `RESOLVE_BENEATH` with no symlinks and no
//! mount crossings walks a tree guest-init copies.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

use crate::error::{Context, InitError};

/// `openat2(root, path, O_PATH | O_DIRECTORY, RESOLVE_IN_ROOT)`.
fn open_in_root(root: &OwnedFd, path: &str) -> Result<OwnedFd, Errno> {
    open_path_in_root(root, path, libc::O_DIRECTORY)
}

/// `openat2(root, path, O_PATH | flags, RESOLVE_IN_ROOT)`: symlinks resolve
/// as if `root` were `/`, and never through magic links.
pub(crate) fn open_path_in_root(
    root: &OwnedFd,
    path: &str,
    flags: libc::c_int,
) -> Result<OwnedFd, Errno> {
    open_at(
        root.as_raw_fd(),
        Path::new(path),
        libc::O_PATH | flags,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// Directory `path` beneath `dir`, through no symlink and no mount point.
pub fn open_beneath(dir: RawFd, path: &Path) -> Result<OwnedFd, Errno> {
    open_at(
        dir,
        path,
        libc::O_PATH | libc::O_DIRECTORY,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV,
    )
}

/// Open the file `path` beneath directory `dir` for reading; symlinks
/// resolve as if `dir` were `/`, never through magic links.
pub fn open_file_in(dir: &str, path: &str) -> Result<std::fs::File, InitError> {
    let what = || format!("open {path} in {dir}");
    let dir_fd = open_root(dir)?;
    let fd = open_at(
        dir_fd.as_raw_fd(),
        Path::new(path),
        libc::O_RDONLY,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
    .context(what)?;
    Ok(std::fs::File::from(fd))
}

/// `openat2(dir, path, flags | O_CLOEXEC, resolve)`.
fn open_at(dir: RawFd, path: &Path, flags: libc::c_int, resolve: u64) -> Result<OwnedFd, Errno> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `open_how` is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: the path is NUL-terminated and `how` is a valid open_how of the
    // size passed; both outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            c_path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The components of an absolute box path, without `.` and empty ones.
pub(crate) fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// Open the directory `root` (`O_PATH`).
fn open_root(root: &str) -> Result<OwnedFd, InitError> {
    let root_fd = nix::fcntl::open(
        root,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .context(|| format!("open {root}"))?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(root_fd) })
}

/// The directory `path` inside the box root `root` if there is one there
/// (symlinks resolve within the box).
pub fn existing_dir_in_root(root: &str, path: &str) -> Result<Option<OwnedFd>, InitError> {
    let root_fd = open_root(root)?;
    let rel = components(path).join("/");
    let rel = if rel.is_empty() { ".".to_string() } else { rel };
    match open_in_root(&root_fd, &rel) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(None),
        Err(e) => Err(e).context(|| format!("open {path} in the box")),
    }
}

/// Create `path` (and its parents) inside the box root `root`, owned by
/// root with mode 0755, and open it. Symlinks resolve within the box.
pub fn make_dir_in_root(root: &str, path: &str) -> Result<OwnedFd, InitError> {
    let what = || format!("create {path} in the box");
    let root_fd = open_root(root)?;
    let parts = components(path);
    for i in 0..parts.len() {
        let parent = if i == 0 {
            ".".to_string()
        } else {
            parts[..i].join("/")
        };
        let dir = open_in_root(&root_fd, &parent).context(what)?;
        let name = CString::new(parts[i]).map_err(|_| InitError::Sys {
            what: what(),
            errno: Errno::EINVAL,
        })?;
        // SAFETY: `dir` is an open directory descriptor and `name` is
        // NUL-terminated; both outlive the call.
        let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) };
        if rc < 0 && Errno::last() != Errno::EEXIST {
            return Err(Errno::last()).context(what);
        }
    }
    let rel = if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    };
    open_in_root(&root_fd, &rel).context(what)
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};

    use super::*;

    #[test]
    fn image_directories_are_found_inside_the_root_only() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).unwrap();
        fs::create_dir(root.path().join("data")).unwrap();
        fs::write(root.path().join("file"), "").unwrap();
        let r = root.path().to_str().unwrap();
        assert!(existing_dir_in_root(r, "/data/").unwrap().is_some());
        assert!(existing_dir_in_root(r, "/missing").unwrap().is_none());
        assert!(existing_dir_in_root(r, "/file").unwrap().is_none());
        // `outside` exists on this machine, but not inside the root.
        assert!(existing_dir_in_root(r, "/escape").unwrap().is_none());
        let beneath = open_beneath(
            File::open(root.path()).unwrap().as_raw_fd(),
            Path::new("escape"),
        );
        assert_eq!(beneath.unwrap_err(), Errno::ELOOP, "no symlinks beneath");
    }

    #[test]
    fn mountpoints_are_created_inside_the_root_even_through_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        // An absolute symlink: inside the box it means <root>/<outside>.
        std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("../../..", root.path().join("up")).unwrap();
        let inside = root.path().join(outside.path().strip_prefix("/").unwrap());
        fs::create_dir_all(&inside).unwrap();
        let r = root.path().to_str().unwrap();
        make_dir_in_root(r, "/a/b/./c").unwrap();
        assert!(root.path().join("a/b/c").is_dir());
        make_dir_in_root(r, "/escape/x").unwrap();
        assert!(!outside.path().join("x").exists());
        assert!(inside.join("x").is_dir());
        make_dir_in_root(r, "/up/y").unwrap();
        assert!(root.path().join("y").is_dir());
        assert_eq!(components("//a/./b/"), vec!["a", "b"]);
    }
}
