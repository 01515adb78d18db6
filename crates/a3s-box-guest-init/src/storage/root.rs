//! Assembling a container's root: its image read-only, the init layer with
//! the mountpoints of its /etc files ([`super::etc_files`]), its writable
//! layer (a directory on a sandbox disk, or a tmpfs of its own) as the
//! overlay's upper layer, then the mounts the host asked for, its /etc
//! files, and `--read-only` last. [`disassemble`] undoes it.

use std::fs;
use std::time::Duration;

use a3s_box_core::guest::message::{
    check_container_id, check_writable_dir, ContainerSpec, NetworkConfig, RootImage, StorageSpec,
};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::devices::{self, disk_mountpoint, mount_disk, mount_share, set_readahead};
use super::etc_files::{self, EtcFile};
use super::loopdev;
use super::resolve::{make_dir_in_root, open_file_in};
use crate::error::{Context, InitError};
use crate::pid1::log::warning;
use crate::pid1::mounts::{mkdir_ok, mount_fs};

/// Where containers' mountpoints are, by id.
const CONTAINERS: &str = "/a3s/c";
/// Where containers' init layers and /etc files are (guest-init's tmpfs).
const CONTAINERS_RUN: &str = "/run/a3s/c";

/// How long to wait for a root image's block device node to appear.
const ROOT_DEVICE_WAIT: Duration = Duration::from_secs(2);

/// Where a container's filesystems are, in guest-init's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Its directory of mountpoints and staging (`/a3s/c/<id>`).
    pub dir: String,
    /// The image, read-only.
    pub lower: String,
    /// The assembled root: the workload pivots into it.
    pub root: String,
    /// The root bound again without its submounts, so the layer helpers
    /// (export) see the container's own files only.
    pub merged: String,
    /// Where the container's own tmpfs writable layer is mounted (`None`:
    /// its layer is on a disk).
    pub rw_tmpfs: Option<String>,
    /// The directory on a disk holding `upper/` and `work/`, made for this
    /// container (`None`: the disk's root, or a tmpfs).
    pub rw_dir: Option<String>,
    /// The overlay's upper directory: the container's changes.
    pub upper: String,
    /// The overlay's work directory.
    pub work: String,
    /// Its init layer and /etc files, on guest-init's tmpfs.
    pub run: String,
}

impl Layout {
    /// The layout of container `id` whose writable layer is in `rw` (a
    /// tmpfs of its own when `tmpfs`).
    fn new(id: &str, rw: &str, tmpfs: bool, rw_dir: Option<String>) -> Self {
        let dir = format!("{CONTAINERS}/{id}");
        Layout {
            lower: format!("{dir}/lower"),
            root: format!("{dir}/root"),
            merged: format!("{dir}/merged"),
            rw_tmpfs: tmpfs.then(|| rw.to_string()),
            rw_dir,
            upper: format!("{rw}/upper"),
            work: format!("{rw}/work"),
            run: format!("{CONTAINERS_RUN}/{id}"),
            dir,
        }
    }

    fn init_layer(&self) -> String {
        format!("{}/init", self.run)
    }

    /// The directory of its /etc files.
    pub(crate) fn etc(&self) -> String {
        format!("{}/etc", self.run)
    }

    fn staging(&self) -> String {
        format!("{}/stage", self.dir)
    }

    /// The overlay's mount options: the init layer above the image.
    fn overlay_options(&self) -> String {
        format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            self.init_layer(),
            self.lower,
            self.upper,
            self.work
        )
    }
}

/// Where the writable layer of a container with `storage` goes: a disk
/// (mounted once per sandbox, by [`build`]) and the directory on it, or a
/// tmpfs of its own.
fn plan_layout(id: &str, storage: &StorageSpec) -> Result<Layout, InitError> {
    let Some(disk) = &storage.writable else {
        let rw = format!("{CONTAINERS}/{id}/rw");
        return Ok(Layout::new(id, &rw, true, None));
    };
    let at = disk_mountpoint(&disk.serial)?;
    Ok(match &storage.writable_dir {
        Some(dir) => {
            check_writable_dir(dir).map_err(InitError::Protocol)?;
            let rw = format!("{at}/{dir}");
            Layout::new(id, &rw, false, Some(rw.clone()))
        }
        None => Layout::new(id, &at, false, None),
    })
}

/// Assemble the root of container `spec` in the sandbox whose network is
/// `network`; `workdirs` are made before a read-only root is sealed (on a
/// writable root the process makes its own). On failure nothing is left
/// behind.
pub fn assemble(
    spec: &ContainerSpec,
    network: Option<&NetworkConfig>,
    workdirs: &[&str],
) -> Result<Layout, InitError> {
    check_container_id(&spec.id).map_err(InitError::Protocol)?;
    crate::net::files::check_hostname(&spec.hostname).map_err(InitError::Protocol)?;
    let storage = spec.storage.as_deref().cloned().unwrap_or_default();
    let planned =
        etc_files::plan(&spec.hostname, network, &storage.mounts).map_err(InitError::Protocol)?;
    let layout = plan_layout(&spec.id, &storage)?;
    if let Err(e) = build(&layout, spec, &storage, &planned, workdirs) {
        disassemble(&layout, false);
        return Err(e);
    }
    Ok(layout)
}

fn build(
    layout: &Layout,
    spec: &ContainerSpec,
    storage: &StorageSpec,
    planned: &[EtcFile],
    workdirs: &[&str],
) -> Result<(), InitError> {
    fs::create_dir_all(&layout.dir).context(|| format!("create {}", layout.dir))?;
    for dir in [&layout.lower, &layout.root, &layout.merged] {
        mkdir_ok(dir)?;
    }
    mount_image(&spec.root.image, &spec.root.fstype, &layout.lower)?;
    // After the image: the disk may still be being mounted by
    // `mount_disk_early`'s thread.
    if let Some(disk) = &storage.writable {
        mount_disk(disk)?;
    }
    if let Some(rw) = &layout.rw_tmpfs {
        let data = match storage.tmpfs_upper_bytes {
            Some(bytes) => format!("mode=0755,size={bytes}"),
            None => "mode=0755".to_string(),
        };
        mount_fs("tmpfs", rw, MsFlags::MS_NODEV, &data)?;
    }
    for dir in [&layout.upper, &layout.work] {
        fs::create_dir_all(dir).context(|| format!("create {dir}"))?;
    }
    etc_files::write(&layout.init_layer(), &layout.etc(), planned)?;
    let opts = layout.overlay_options();
    mount(
        Some("overlay"),
        layout.root.as_str(),
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .context(|| format!("mount overlay on {} ({opts})", layout.root))?;
    mount(
        Some(layout.root.as_str()),
        layout.merged.as_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .context(|| format!("bind {} on {}", layout.root, layout.merged))?;
    let staging = layout.staging();
    for m in &storage.mounts {
        super::mount_into(&layout.root, &layout.merged, &staging, m)?;
    }
    etc_files::bind(&layout.root, &layout.etc(), planned, storage.read_only)?;
    if storage.read_only {
        // What the workload's start needs must exist before the root is
        // read-only; the child mounts /proc, /dev and /sys over these.
        for dir in ["/proc", "/dev", "/sys"].iter().chain(workdirs) {
            make_dir_in_root(&layout.root, dir)?;
        }
        super::remount_read_only(&layout.root)?;
    }
    Ok(())
}

/// Mount a container's image read-only on `at`.
fn mount_image(image: &RootImage, fstype: &str, at: &str) -> Result<(), InitError> {
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NODEV;
    match image {
        RootImage::Device { path } => {
            devices::wait_for_node(path, ROOT_DEVICE_WAIT);
            set_readahead(path);
            mount(Some(path.as_str()), at, Some(fstype), flags, None::<&str>)
                .context(|| format!("mount {path} ({fstype}) on {at}"))
        }
        RootImage::SharedFile { tag, path } => {
            let share = mount_share(tag)?;
            let file = open_file_in(&share, path)?;
            let what = format!("{path} of the share {tag}");
            let device = loopdev::attach_read_only(&file, &what)?;
            set_readahead(&device.path);
            mount(
                Some(device.path.as_str()),
                at,
                Some(fstype),
                flags,
                None::<&str>,
            )
            .context(|| format!("mount {what} ({fstype}, {}) on {at}", device.path))
        }
    }
}

/// Detach `path` and everything mounted below it; not being a mount is fine.
fn detach(path: &str) {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
        Err(e) => warning!("unmount {path}: {e}"),
    }
}

/// Undo [`assemble`]: unmount the container's root, mounts, writable tmpfs
/// and image, and remove its directories (never recursively where a mount
/// could remain). With `discard`, its writable layer on a disk goes too.
pub fn disassemble(layout: &Layout, discard: bool) {
    detach(&layout.root);
    detach(&layout.merged);
    detach(&layout.lower);
    if let Some(rw) = &layout.rw_tmpfs {
        detach(rw);
    }
    let staging = layout.staging();
    if let Ok(entries) = fs::read_dir(&staging) {
        for entry in entries.flatten() {
            let _ = fs::remove_dir(entry.path());
        }
    }
    let dirs = [&staging, &layout.root, &layout.merged, &layout.lower];
    for dir in dirs.into_iter().chain(&layout.rw_tmpfs) {
        let _ = fs::remove_dir(dir);
    }
    let _ = fs::remove_dir(&layout.dir);
    if let Err(e) = fs::remove_dir_all(&layout.run) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warning!("remove {}: {e}", layout.run);
        }
    }
    if discard && layout.rw_tmpfs.is_none() {
        for dir in [&layout.upper, &layout.work] {
            if let Err(e) = fs::remove_dir_all(dir) {
                warning!("discard {dir}: {e}");
            }
        }
        if let Some(dir) = &layout.rw_dir {
            let _ = fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_keep_each_container_apart() {
        let l = Layout::new(
            "web",
            "/a3s/disk/a3s-rw/c/web",
            false,
            Some("/a3s/disk/a3s-rw/c/web".into()),
        );
        assert_eq!(l.dir, "/a3s/c/web");
        assert_eq!(l.root, "/a3s/c/web/root");
        assert_eq!(l.lower, "/a3s/c/web/lower");
        assert_eq!(l.merged, "/a3s/c/web/merged");
        assert_eq!(l.upper, "/a3s/disk/a3s-rw/c/web/upper");
        assert_eq!(l.run, "/run/a3s/c/web");
        assert_eq!(l.staging(), "/a3s/c/web/stage");
        assert_eq!(
            l.overlay_options(),
            "lowerdir=/run/a3s/c/web/init:/a3s/c/web/lower,upperdir=/a3s/disk/a3s-rw/c/web/upper,workdir=/a3s/disk/a3s-rw/c/web/work"
        );
        let t = Layout::new("db", "/a3s/c/db/rw", true, None);
        assert_eq!(t.rw_tmpfs.as_deref(), Some("/a3s/c/db/rw"));
        assert_eq!(t.work, "/a3s/c/db/rw/work");
    }

    #[test]
    fn a_tmpfs_layer_needs_no_disk() {
        let l = plan_layout("db", &StorageSpec::default()).unwrap();
        assert_eq!(l.rw_tmpfs.as_deref(), Some("/a3s/c/db/rw"));
        assert_eq!(l.upper, "/a3s/c/db/rw/upper");
        assert_eq!(l.rw_dir, None);
    }
}
