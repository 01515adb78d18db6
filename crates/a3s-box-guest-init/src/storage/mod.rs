//! The box's storage in the guest: the root it runs on ([`root`]: image,
//! writable layer, overlay), the writable layer's disk (found by its
//! virtio-blk serial), the mounts the host asks for (`-v`, `--mount`,
//! `--tmpfs`; volumes filled from the image by [`populate`], single files by
//! [`mount_file`]), the read-only root (`--read-only`), the layer helpers
//! that read the box's changes ([`layers`]) and the trim of the writable
//! layer at power-off ([`trim`]).
//!
//! Mount targets are resolved *inside* the box root ([`resolve`]): a symlink
//! in the image (`/data -> /`) stays within the box and can never point a
//! mount at guest-init's own files.

pub mod layers;
pub mod mount_file;
pub mod populate;
pub mod resolve;
pub mod root;
pub mod trim;

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use a3s_box_core::guest::message::{MountSource, MountSpec};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

use self::resolve::{existing_dir_in_root, make_dir_in_root};
use crate::error::{Context, InitError};
use crate::pid1::log::warning;

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
        return mount_file::mount_file(root, tag, m);
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
}
