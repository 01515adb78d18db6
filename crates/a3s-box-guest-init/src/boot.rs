//! Early boot: the re-root that lets workloads `pivot_root`, the kernel
//! filesystems, finding the agent port, and assembling the box root
//! (read-only image + the box's writable layer, joined by overlayfs).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use a3s_box_core::guest::message::BootSpec;
use a3s_box_core::guest::AGENT_PORT_NAME;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, chroot, mkdir};

use crate::error::{Context, InitError};
use crate::storage;

/// Where the assembled box root is mounted (the workload pivots into it).
pub const BOX_ROOT: &str = "/a3s/root";
/// The image, read-only.
pub const LOWER: &str = "/a3s/lower";
/// Where the writable layer (disk or tmpfs) is mounted.
pub const RW: &str = "/a3s/rw";
/// The overlay's upper directory: the box's changes.
pub const UPPER: &str = "/a3s/rw/upper";
const WORK: &str = "/a3s/rw/work";
/// Temporary mountpoint of the re-root bind mount.
const REROOT: &str = "/.a3s-reroot";

const VIRTIO_PORTS: &str = "/sys/class/virtio-ports";
/// How long to wait for the agent port to appear (virtio-serial adds ports
/// asynchronously, when the host side announces them).
const PORT_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for the root block device node to appear.
const ROOT_DEVICE_WAIT: Duration = Duration::from_secs(2);
const DEVICE_POLL: Duration = Duration::from_millis(10);

fn mkdir_ok(path: &str) -> Result<(), InitError> {
    match mkdir(path, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e).context(|| format!("mkdir {path}")),
    }
}

fn mount_fs(fstype: &str, target: &str, flags: MsFlags, data: &str) -> Result<(), InitError> {
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
    fs::read_to_string("/proc/cmdline").is_ok_and(|c| crate::log::cmdline_wants_debug(&c))
}

/// The kernel release (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The entry of `ports_dir` (`/sys/class/virtio-ports`) whose `name` is
/// `wanted`, e.g. `vport0p1`.
pub fn find_port(ports_dir: &Path, wanted: &str) -> io::Result<Option<String>> {
    let entries = match fs::read_dir(ports_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = fs::read_to_string(entry.path().join("name")) else {
            continue;
        };
        if name.trim_end_matches('\n') == wanted {
            return Ok(Some(entry.file_name().to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

/// Find and open the agent port, waiting up to [`PORT_WAIT`] for it.
pub fn open_port() -> Result<(File, String), InitError> {
    let deadline = Instant::now() + PORT_WAIT;
    loop {
        let found = find_port(Path::new(VIRTIO_PORTS), AGENT_PORT_NAME)
            .context(|| format!("scan {VIRTIO_PORTS}"))?;
        if let Some(dev) = found {
            let path = format!("/dev/{dev}");
            match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(file) => return Ok((file, path)),
                Err(e) if e.kind() == io::ErrorKind::NotFound && Instant::now() < deadline => {}
                Err(e) => return Err(e).context(|| format!("open {path}")),
            }
        } else if Instant::now() >= deadline {
            return Err(InitError::Sys {
                what: format!("no virtio port named {AGENT_PORT_NAME} in {VIRTIO_PORTS}"),
                errno: Errno::ENODEV,
            });
        }
        thread::sleep(DEVICE_POLL);
    }
}

/// Where the box's merged root is also bound without its submounts, so
/// guest-init's storage helpers (export) see the box's own files only.
pub const MERGED: &str = "/a3s/merged";

/// Assemble the box root on [`BOX_ROOT`]: the image read-only, the box's
/// writable layer (its own ext4 disk, or a tmpfs) as the overlay's upper
/// layer, then the mounts the host asked for; read-only at the end with
/// `--read-only` (mountpoints and the working directory made first).
pub fn assemble_root(spec: &BootSpec) -> Result<(), InitError> {
    let root = &spec.root;
    let storage = spec.storage.as_deref().cloned().unwrap_or_default();
    for dir in ["/a3s", LOWER, RW, BOX_ROOT, MERGED] {
        mkdir_ok(dir)?;
    }
    // Block devices are probed before /init runs; wait briefly anyway (and
    // quietly: a failing mount logs to the console each time).
    let deadline = Instant::now() + ROOT_DEVICE_WAIT;
    while !Path::new(&root.device).exists() && Instant::now() < deadline {
        thread::sleep(DEVICE_POLL);
    }
    set_readahead(&root.device);
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NODEV;
    mount(
        Some(root.device.as_str()),
        LOWER,
        Some(root.fstype.as_str()),
        flags,
        None::<&str>,
    )
    .context(|| format!("mount {} ({}) on {LOWER}", root.device, root.fstype))?;
    match &storage.writable {
        Some(disk) => {
            let device = storage::find_disk(&disk.serial)?;
            // The inode tables of a fresh layer are left uninitialised (the
            // host file stays sparse); `noinit_itable` keeps the kernel from
            // zeroing them in the background.
            mount(
                Some(device.as_str()),
                RW,
                Some(disk.fstype.as_str()),
                MsFlags::MS_NODEV,
                Some("noinit_itable"),
            )
            .context(|| format!("mount the writable layer {device} on {RW}"))?;
        }
        None => {
            let data = match storage.tmpfs_upper_bytes {
                Some(bytes) => format!("mode=0755,size={bytes}"),
                None => "mode=0755".to_string(),
            };
            mount_fs("tmpfs", RW, MsFlags::MS_NODEV, &data)?;
        }
    }
    mkdir_ok(UPPER)?;
    mkdir_ok(WORK)?;
    let opts = format!("lowerdir={LOWER},upperdir={UPPER},workdir={WORK}");
    mount(
        Some("overlay"),
        BOX_ROOT,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .context(|| format!("mount overlay on {BOX_ROOT} ({opts})"))?;
    mount(
        Some(BOX_ROOT),
        MERGED,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .context(|| format!("bind {BOX_ROOT} on {MERGED}"))?;
    for m in &storage.mounts {
        storage::mount_into(BOX_ROOT, MERGED, m)?;
    }
    if storage.read_only {
        // What the workload's start needs must exist before the root is
        // read-only; the child mounts /proc, /dev and /sys over these.
        for dir in ["/proc", "/dev", "/sys", spec.main.workdir.as_str()] {
            storage::make_dir_in_root(BOX_ROOT, dir)?;
        }
        storage::remount_read_only(BOX_ROOT)?;
    }
    Ok(())
}

/// Read ahead generously on the root disk: under emulation each request is
/// costly, and a workload's first page faults otherwise read its binary in
/// small pieces. A hint: failures are ignored.
fn set_readahead(device: &str) {
    if let Some(name) = device.strip_prefix("/dev/") {
        let _ = fs::write(
            format!("/sys/block/{name}/queue/read_ahead_kb"),
            READAHEAD_KB,
        );
    }
}

/// Readahead of the root disk, in KiB.
const READAHEAD_KB: &str = "2048";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_port_by_name() {
        let dir = std::env::temp_dir().join(format!("a3s-ports-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (port, name) in [("vport0p0", "other\n"), ("vport0p1", "a3s.agent\n")] {
            fs::create_dir_all(dir.join(port)).unwrap();
            fs::write(dir.join(port).join("name"), name).unwrap();
        }
        fs::create_dir_all(dir.join("vport0p2")).unwrap(); // no name file
        assert_eq!(
            find_port(&dir, AGENT_PORT_NAME).unwrap().as_deref(),
            Some("vport0p1")
        );
        assert_eq!(find_port(&dir, "nope").unwrap(), None);
        assert_eq!(find_port(&dir.join("missing"), "x").unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
