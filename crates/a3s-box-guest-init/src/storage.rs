//! The box's storage in the guest, beyond the read-only image: the writable
//! layer's disk (found by its virtio-blk serial), the mounts the host asks
//! for (`-v`, `--mount`, `--tmpfs`) and the read-only root (`--read-only`).
//!
//! Mount targets are resolved *inside* the box root with
//! `openat2(RESOLVE_IN_ROOT)`: a symlink in the image (`/data -> /`) stays
//! within the box and can never point a mount at guest-init's own files.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use a3s_box_core::guest::message::{MountSource, MountSpec};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

use crate::error::{Context, InitError};
use crate::log::warning;
use crate::populate;

const SYS_BLOCK: &str = "/sys/block";
/// How long to wait for a disk to appear.
const DISK_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

/// The `/dev` node of the virtio-blk disk whose serial is `serial`.
pub fn find_disk(serial: &str) -> Result<String, InitError> {
    let deadline = Instant::now() + DISK_WAIT;
    loop {
        if let Some(name) = disk_by_serial(Path::new(SYS_BLOCK), serial) {
            let dev = format!("/dev/{name}");
            if Path::new(&dev).exists() {
                return Ok(dev);
            }
        }
        if Instant::now() >= deadline {
            return Err(InitError::Sys {
                what: format!("no disk with serial {serial:?} in {SYS_BLOCK}"),
                errno: Errno::ENODEV,
            });
        }
        thread::sleep(POLL);
    }
}

/// The entry of `sys_block` whose `serial` file holds `serial`.
fn disk_by_serial(sys_block: &Path, serial: &str) -> Option<String> {
    fs::read_dir(sys_block).ok()?.flatten().find_map(|entry| {
        let found = fs::read_to_string(entry.path().join("serial")).ok()?;
        (found.trim_end_matches('\n') == serial)
            .then(|| entry.file_name().to_string_lossy().into_owned())
    })
}

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
        flags,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// Directory `path` beneath `dir`, through no symlink and no mount point.
pub fn open_beneath(dir: RawFd, path: &Path) -> Result<OwnedFd, Errno> {
    open_at(
        dir,
        path,
        libc::O_DIRECTORY,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV,
    )
}

/// `openat2(dir, path, O_PATH | flags, resolve)`.
fn open_at(dir: RawFd, path: &Path, flags: libc::c_int, resolve: u64) -> Result<OwnedFd, Errno> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `open_how` is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | flags | libc::O_CLOEXEC) as u64;
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
fn components(path: &str) -> Vec<&str> {
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

/// The mount flags `m` asks for.
pub(crate) fn mount_flags(m: &MountSpec) -> MsFlags {
    [
        (m.read_only, MsFlags::MS_RDONLY),
        (m.noexec, MsFlags::MS_NOEXEC),
        (m.nosuid, MsFlags::MS_NOSUID),
        (m.nodev, MsFlags::MS_NODEV),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .fold(MsFlags::empty(), |all, (_, flag)| all | flag)
}

/// Where a share is mounted while it is filled from the image, out of the
/// box's sight, before it is moved to its target.
const FILL_AT: &str = "/a3s/fill";

/// Mount `m` into the box assembled at `root`; `image` is the same root
/// without its mounts, where a volume to populate is filled from.
pub fn mount_into(root: &str, image: &str, m: &MountSpec) -> Result<(), InitError> {
    if let MountSource::Virtiofs { tag, file: true } = &m.source {
        return crate::mount_file::mount_file(root, tag, m);
    }
    let fill_from = match m.source {
        MountSource::Virtiofs { .. } if m.populate => existing_dir_in_root(image, &m.target)?,
        _ => None,
    };
    let target = make_dir_in_root(root, &m.target)?;
    let at = format!("/proc/self/fd/{}", target.as_raw_fd());
    let flags = mount_flags(m);
    let (source, fstype, data) = match &m.source {
        MountSource::Virtiofs { tag, .. } => (tag.clone(), "virtiofs", String::new()),
        MountSource::Tmpfs { size_bytes, mode } => {
            let mut data = format!("mode={:o}", mode.unwrap_or(0o1777));
            if let Some(size) = size_bytes {
                data.push_str(&format!(",size={size}"));
            }
            ("tmpfs".to_string(), "tmpfs", data)
        }
    };
    let what = || format!("mount {fstype} {source} on {} in the box", m.target);
    let Some(from) = fill_from else {
        return mount(
            Some(source.as_str()),
            at.as_str(),
            Some(fstype),
            flags,
            Some(data.as_str()),
        )
        .context(what);
    };
    match nix::unistd::mkdir(FILL_AT, nix::sys::stat::Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e).context(|| format!("mkdir {FILL_AT}")),
    }
    // A read-only volume is filled writable, sealed, then made read-only.
    mount(
        Some(source.as_str()),
        FILL_AT,
        Some(fstype),
        flags - MsFlags::MS_RDONLY,
        Some(data.as_str()),
    )
    .context(what)?;
    if let Err(e) = fill_and_seal(&from, m, flags) {
        let _ = nix::mount::umount2(FILL_AT, nix::mount::MntFlags::MNT_DETACH);
        return Err(e);
    }
    mount(
        Some(FILL_AT),
        at.as_str(),
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .context(|| format!("move {FILL_AT} to {} in the box", m.target))
}

/// Fill the share mounted at [`FILL_AT`] from the image's directory `from`;
/// seal it and make it read-only if `m` is. `flags`: the mount's own.
fn fill_and_seal(from: &OwnedFd, m: &MountSpec, flags: MsFlags) -> Result<(), InitError> {
    let share = OwnedFd::from(std::fs::File::open(FILL_AT).context(|| format!("open {FILL_AT}"))?);
    match populate::fill(from, &share, &m.target) {
        Ok(_) => {}
        // Another box found the same new volume empty and is filling it
        // from its image at this moment: its copy wins, this box goes on.
        Err(InitError::Sys {
            what,
            errno: Errno::EEXIST,
        }) => warning!(
            "volume at {} is being filled by another box: {what}",
            m.target
        ),
        Err(e) => return Err(e),
    }
    if !m.read_only {
        return Ok(());
    }
    populate::seal(&share, &m.target)?;
    mount(
        None::<&str>,
        FILL_AT,
        None::<&str>,
        flags | MsFlags::MS_REMOUNT | MsFlags::MS_BIND,
        None::<&str>,
    )
    .context(|| format!("remount the volume at {} read-only", m.target))
}

/// Make the mount at `root` read-only (its submounts keep their own flags).
pub fn remount_read_only(root: &str) -> Result<(), InitError> {
    mount(
        None::<&str>,
        root,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .context(|| format!("remount {root} read-only"))
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    #[test]
    fn finds_disks_by_serial() {
        let dir = tempfile::tempdir().unwrap();
        for (disk, serial) in [("vda", "a3s-root\n"), ("vdb", "a3s-rw\n")] {
            fs::create_dir_all(dir.path().join(disk)).unwrap();
            fs::write(dir.path().join(disk).join("serial"), serial).unwrap();
        }
        fs::create_dir_all(dir.path().join("loop0")).unwrap();
        assert_eq!(disk_by_serial(dir.path(), "a3s-rw").as_deref(), Some("vdb"));
        assert_eq!(disk_by_serial(dir.path(), "nope"), None);
    }

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
