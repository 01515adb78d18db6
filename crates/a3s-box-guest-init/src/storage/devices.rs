//! What containers' storage comes from, attached once per sandbox: writable
//! disks (found by their virtio-blk serial, mounted at
//! `/a3s/disk/<serial>` and shared by every container that names them) and
//! read-only virtio-fs shares holding image files (`/a3s/share/<tag>`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use a3s_box_core::guest::message::DiskSpec;
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

use crate::error::{Context, InitError};

const SYS_BLOCK: &str = "/sys/block";
/// Where writable disks are mounted, by serial.
const DISKS: &str = "/a3s/disk";
/// Where image shares are mounted, by tag.
const SHARES: &str = "/a3s/share";
/// How long to wait for a disk to appear.
const DISK_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

/// Mounted disks and shares: name → mountpoint.
static DISK_MOUNTS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
static SHARE_MOUNTS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// Whether `name` (a serial or tag) can name a directory: letters, digits,
/// `_`, `.`, `-`, not starting with a dot.
pub fn check_name(what: &str, name: &str) -> Result<(), InitError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(InitError::Protocol(format!("invalid {what} {name:?}")))
    }
}

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

/// Wait up to `wait` for the device node `path` (block devices are probed
/// before /init runs; this is a safety net, and quiet).
pub fn wait_for_node(path: &str, wait: Duration) {
    let deadline = Instant::now() + wait;
    while !Path::new(path).exists() && Instant::now() < deadline {
        thread::sleep(POLL);
    }
}

/// Where the writable disk with `serial` is mounted.
pub fn disk_mountpoint(serial: &str) -> Result<String, InitError> {
    check_name("disk serial", serial)?;
    Ok(format!("{DISKS}/{serial}"))
}

/// Mount the writable disk `disk` (once per sandbox); its mountpoint.
pub fn mount_disk(disk: &DiskSpec) -> Result<String, InitError> {
    let at = disk_mountpoint(&disk.serial)?;
    let mut mounted = DISK_MOUNTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(at) = mounted.get(&disk.serial) {
        return Ok(at.clone());
    }
    let device = find_disk(&disk.serial)?;
    fs::create_dir_all(&at).context(|| format!("create {at}"))?;
    // The inode tables of a fresh layer are left uninitialised (the host
    // file stays sparse); `noinit_itable` keeps the kernel from zeroing them
    // in the background.
    mount(
        Some(device.as_str()),
        at.as_str(),
        Some(disk.fstype.as_str()),
        MsFlags::MS_NODEV,
        Some("noinit_itable"),
    )
    .context(|| format!("mount the writable layer {device} on {at}"))?;
    mounted.insert(disk.serial.clone(), at.clone());
    Ok(at)
}

/// Start mounting `disk` on a thread of its own, as soon as the boot spec
/// names it: with more than one vCPU the mount (the longest step of
/// assembling a root) runs beside guest-init's other work. [`mount_disk`]
/// waits for it (the mount holds the table's lock) and reports a failure
/// when a container needs the disk; nothing is reported here.
pub fn mount_disk_early(disk: DiskSpec) {
    let spawned = thread::Builder::new()
        .name("mount-disk".into())
        .spawn(move || {
            let _ = mount_disk(&disk);
        });
    // Without the thread the first container mounts the disk itself.
    drop(spawned);
}

/// Every mounted writable disk's mountpoint (trimmed at power-off).
pub fn mounted_disks() -> Vec<String> {
    let mounted = DISK_MOUNTS.lock().unwrap_or_else(PoisonError::into_inner);
    mounted.values().cloned().collect()
}

/// Mount the virtio-fs share `tag` read-only (once per sandbox); its
/// mountpoint.
pub fn mount_share(tag: &str) -> Result<String, InitError> {
    check_name("share tag", tag)?;
    let mut mounted = SHARE_MOUNTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(at) = mounted.get(tag) {
        return Ok(at.clone());
    }
    let at = format!("{SHARES}/{tag}");
    fs::create_dir_all(&at).context(|| format!("create {at}"))?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
    mount(
        Some(tag),
        at.as_str(),
        Some("virtiofs"),
        flags,
        None::<&str>,
    )
    .context(|| format!("mount the image share {tag} on {at}"))?;
    mounted.insert(tag.to_string(), at.clone());
    Ok(at)
}

/// Read ahead generously on a root image's disk: under emulation each
/// request is costly, and a workload's first page faults otherwise read its
/// binary in small pieces. A hint: failures are ignored.
pub fn set_readahead(device: &str) {
    if let Some(name) = device.strip_prefix("/dev/") {
        let _ = fs::write(
            format!("/sys/block/{name}/queue/read_ahead_kb"),
            READAHEAD_KB,
        );
    }
}

/// Readahead of a root image's disk, in KiB.
const READAHEAD_KB: &str = "2048";

#[cfg(test)]
mod tests {
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
    fn names_are_single_safe_components() {
        for ok in ["a3s-rw", "a3s-fs0", "img_1.x"] {
            assert!(check_name("tag", ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", ".x", "a/b", "a b"] {
            assert!(check_name("tag", bad).is_err(), "{bad}");
        }
    }
}
