//! Early boot: the re-root that lets workloads `pivot_root`, and the kernel
//! filesystems PID 1 needs (/proc, /sys, /dev, /dev/pts, /run).

use std::fs::{self, OpenOptions};
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, chroot, mkdir};

use crate::error::{Context, InitError};

/// Temporary mountpoint of the re-root bind mount.
const REROOT: &str = "/.a3s-reroot";

/// `mkdir path` (mode 0755); an existing one is fine.
pub(crate) fn mkdir_ok(path: &str) -> Result<(), InitError> {
    match mkdir(path, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e).context(|| format!("mkdir {path}")),
    }
}

/// Mount a fresh `fstype` (its own name as the source) on `target`,
/// creating the mountpoint.
pub(crate) fn mount_fs(
    fstype: &str,
    target: &str,
    flags: MsFlags,
    data: &str,
) -> Result<(), InitError> {
    mkdir_ok(target)?;
    mount(Some(fstype), target, Some(fstype), flags, Some(data))
        .context(|| format!("mount {fstype} on {target}"))
}

/// Move the initramfs under a bind mount of itself. `pivot_root` refuses a
/// root that is the initial rootfs; a bind mount on top of it has a parent,
/// so the workload's mount namespace can pivot away from it.
fn reroot() -> Result<(), InitError> {
    mkdir_ok(REROOT)?;
    mount(
        Some("/"),
        REROOT,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .context(|| format!("bind / on {REROOT}"))?;
    chdir(REROOT).context(|| format!("chdir {REROOT}"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .context(|| format!("move {REROOT} to /"))?;
    chroot(".").context(|| "chroot to the re-rooted initramfs".into())?;
    chdir("/").context(|| "chdir /".into())?;
    let _ = fs::remove_dir(REROOT);
    Ok(())
}

/// Mount what PID 1 needs: /proc, /sys, /dev, /dev/pts, /run.
pub fn early_mounts() -> Result<(), InitError> {
    reroot()?;
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs("proc", "/proc", nosuid_nodev_noexec, "")?;
    mount_fs("sysfs", "/sys", nosuid_nodev_noexec, "")?;
    match mount_fs("devtmpfs", "/dev", MsFlags::MS_NOSUID, "mode=0755") {
        // The kernel may have mounted it already (CONFIG_DEVTMPFS_MOUNT).
        Err(InitError::Sys {
            errno: Errno::EBUSY,
            ..
        })
        | Ok(()) => {}
        Err(e) => return Err(e),
    }
    mount_fs(
        "devpts",
        "/dev/pts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        "mode=0620,ptmxmode=0666",
    )?;
    mount_fs(
        "tmpfs",
        "/run",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=0755",
    )?;
    ensure_stdio();
    Ok(())
}

/// Make sure fds 0–2 are open, so no later file lands on them by accident.
fn ensure_stdio() {
    for fd in 0..3 {
        if fcntl(fd, FcntlArg::F_GETFD) == Err(Errno::EBADF) {
            // Opening assigns the lowest free fd, which is `fd`; keep it open.
            if let Ok(f) = OpenOptions::new().read(true).write(true).open("/dev/null") {
                debug_assert_eq!(f.as_raw_fd(), fd);
                std::mem::forget(f);
            }
        }
    }
}

/// Whether `/proc/cmdline` asks for milestone logging.
pub fn debug_requested() -> bool {
    fs::read_to_string("/proc/cmdline").is_ok_and(|c| super::log::cmdline_wants_debug(&c))
}

/// The kernel release (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}
