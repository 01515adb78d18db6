//! Assembling the box root: the image read-only, the box's writable layer
//! (its own ext4 disk, or a tmpfs) as the overlay's upper layer, then the
//! mounts the host asked for, and `--read-only` last.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use a3s_box_core::guest::message::BootSpec;
use nix::mount::{mount, MsFlags};

use crate::error::{Context, InitError};
use crate::pid1::mounts::{mkdir_ok, mount_fs};

/// Where the assembled box root is mounted (the workload pivots into it).
pub const BOX_ROOT: &str = "/a3s/root";
/// The image, read-only.
pub const LOWER: &str = "/a3s/lower";
/// Where the writable layer (disk or tmpfs) is mounted.
pub const RW: &str = "/a3s/rw";
/// The overlay's upper directory: the box's changes.
pub const UPPER: &str = "/a3s/rw/upper";
const WORK: &str = "/a3s/rw/work";

/// How long to wait for the root block device node to appear.
const ROOT_DEVICE_WAIT: Duration = Duration::from_secs(2);
const DEVICE_POLL: Duration = Duration::from_millis(10);

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
            let device = super::find_disk(&disk.serial)?;
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
        super::mount_into(BOX_ROOT, MERGED, m)?;
    }
    if storage.read_only {
        // What the workload's start needs must exist before the root is
        // read-only; the child mounts /proc, /dev and /sys over these.
        for dir in ["/proc", "/dev", "/sys", spec.main.workdir.as_str()] {
            super::resolve::make_dir_in_root(BOX_ROOT, dir)?;
        }
        super::remount_read_only(BOX_ROOT)?;
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
