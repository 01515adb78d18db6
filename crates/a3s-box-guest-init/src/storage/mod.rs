//! Containers' storage in the guest: the root each runs on ([`root`]: image,
//! init layer, writable layer, overlay), what it comes from ([`devices`]:
//! writable disks found by their virtio-blk serial, image shares; image
//! files attached by [`loopdev`]), the mounts the host asks for (`-v`,
//! `--mount`, `--tmpfs`; volumes filled from the image by [`populate`],
//! single files by [`mount_file`]), the network files of /etc
//! ([`etc_files`]), the read-only root (`--read-only`), the layer helpers
//! that read a container's changes ([`layers`]) and the trim of the
//! writable disks at power-off ([`trim`]).
//!
//! Mount targets are resolved *inside* the box root ([`resolve`]): a symlink
//! in the image (`/data -> /`) stays within the box and can never point a
//! mount at guest-init's own files.

pub mod devices;
pub mod etc_files;
pub mod layers;
pub mod loopdev;
pub mod mount_file;
pub mod populate;
pub mod resolve;
pub mod root;
pub mod trim;

use std::os::fd::{AsRawFd, OwnedFd};

use a3s_box_core::guest::message::{MountSource, MountSpec};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

use self::resolve::{existing_dir_in_root, make_dir_in_root};
use crate::error::{Context, InitError};
use crate::pid1::log::warning;

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

/// Mount `m` into the box assembled at `root`; `image` is the same root
/// without its mounts, where a volume to populate is filled from. `staging`
/// is a directory of the container's own, out of its sight, where a share
/// is mounted for a moment first (to be filled, or to pick its one file).
pub fn mount_into(root: &str, image: &str, staging: &str, m: &MountSpec) -> Result<(), InitError> {
    if let MountSource::Virtiofs { tag, file: true } = &m.source {
        return mount_file::mount_file(root, staging, tag, m);
    }
    // Where a share is mounted while it is filled from the image.
    let fill_at = format!("{staging}/fill");
    let fill_at = fill_at.as_str();
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
    std::fs::create_dir_all(fill_at).context(|| format!("create {fill_at}"))?;
    // A read-only volume is filled writable, sealed, then made read-only.
    mount(
        Some(source.as_str()),
        fill_at,
        Some(fstype),
        flags - MsFlags::MS_RDONLY,
        Some(data.as_str()),
    )
    .context(what)?;
    if let Err(e) = fill_and_seal(fill_at, &from, m, flags) {
        let _ = nix::mount::umount2(fill_at, nix::mount::MntFlags::MNT_DETACH);
        return Err(e);
    }
    mount(
        Some(fill_at),
        at.as_str(),
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .context(|| format!("move {fill_at} to {} in the box", m.target))
}

/// Fill the share mounted at `fill_at` from the image's directory `from`;
/// seal it and make it read-only if `m` is. `flags`: the mount's own.
fn fill_and_seal(
    fill_at: &str,
    from: &OwnedFd,
    m: &MountSpec,
    flags: MsFlags,
) -> Result<(), InitError> {
    let share = OwnedFd::from(std::fs::File::open(fill_at).context(|| format!("open {fill_at}"))?);
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
        fill_at,
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
