//! The filesystems and /dev layout the child creates inside the box,
//! after it pivots into the box root (Docker's layout: proc, a tmpfs /dev
//! with the standard nodes and links, devpts, /dev/shm, read-only sysfs).

use std::ffi::CStr;

use libc::c_ulong;
use nix::errno::Errno;

use super::plan::Stage;
use super::sys::{check, mkdir_mount};

/// A filesystem the child mounts in the box (after creating its mountpoint).
pub(super) struct BoxMount {
    stage: Stage,
    target: &'static CStr,
    mode: libc::mode_t,
    fstype: &'static CStr,
    flags: c_ulong,
    data: Option<&'static CStr>,
}

const NOSUID_NODEV_NOEXEC: c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// /proc and the /dev tmpfs, mounted before the /dev nodes are made.
pub(super) const BASE_MOUNTS: [BoxMount; 2] = [
    BoxMount {
        stage: Stage::MountProc,
        target: c"/proc",
        mode: 0o755,
        fstype: c"proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    BoxMount {
        stage: Stage::MountDev,
        target: c"/dev",
        mode: 0o755,
        fstype: c"tmpfs",
        flags: libc::MS_NOSUID | libc::MS_STRICTATIME,
        data: Some(c"mode=755,size=65536k"),
    },
];

/// Mounted after the /dev nodes, as Docker lays them out.
pub(super) const LATE_MOUNTS: [BoxMount; 3] = [
    BoxMount {
        stage: Stage::MountDevpts,
        target: c"/dev/pts",
        mode: 0o755,
        fstype: c"devpts",
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: Some(c"newinstance,ptmxmode=0666,mode=0620,gid=5"),
    },
    BoxMount {
        stage: Stage::MountShm,
        target: c"/dev/shm",
        mode: 0o1777,
        fstype: c"tmpfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some(c"mode=1777,size=65536k"),
    },
    BoxMount {
        stage: Stage::MountSys,
        target: c"/sys",
        mode: 0o755,
        fstype: c"sysfs",
        flags: libc::MS_RDONLY | NOSUID_NODEV_NOEXEC,
        data: None,
    },
];

pub(super) fn mount_all(mounts: &[BoxMount]) -> Result<(), (Stage, Errno)> {
    for m in mounts {
        let res = mkdir_mount(m.target, m.mode, m.fstype, m.flags, m.data);
        res.map_err(|e| (m.stage, e))?;
    }
    Ok(())
}

const DEVICES: [(&CStr, u32, u32); 6] = [
    (c"/dev/null", 1, 3),
    (c"/dev/zero", 1, 5),
    (c"/dev/full", 1, 7),
    (c"/dev/random", 1, 8),
    (c"/dev/urandom", 1, 9),
    (c"/dev/tty", 5, 0),
];

const DEV_LINKS: [(&CStr, &CStr); 5] = [
    (c"pts/ptmx", c"/dev/ptmx"),
    (c"/proc/self/fd", c"/dev/fd"),
    (c"/proc/self/fd/0", c"/dev/stdin"),
    (c"/proc/self/fd/1", c"/dev/stdout"),
    (c"/proc/self/fd/2", c"/dev/stderr"),
];

pub(super) fn dev_nodes() -> Result<(), Errno> {
    for (path, major, minor) in DEVICES {
        let dev = libc::makedev(major, minor);
        // SAFETY: `path` is a NUL-terminated string literal.
        check(unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, dev) })?;
    }
    for (target, link) in DEV_LINKS {
        // SAFETY: both are NUL-terminated string literals.
        check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })?;
    }
    Ok(())
}
