//! What one VM run is given for a box's storage: the writable layer's disk
//! (a device of the VM plan), the virtio-fs shares (bind mounts and
//! volumes, which the VMM contract's `fs_mounts` carry) and the mounts
//! guest-init makes in the box.

use std::path::{Path, PathBuf};

use a3s_box_core::guest::message::{MountSource, MountSpec};
use a3s_box_core::FsMount;

use super::layer::layer_of;
use super::volumes::VolumeStore;
use super::{MountKind, StorageError, StorageOptions};
use crate::home::Home;
use crate::vmm::plan::{BlockDevice, Device};

/// virtio-blk serial of the writable layer's disk (the guest finds it by it).
pub const WRITABLE_SERIAL: &str = "a3s-rw";

/// The writable layer's disk: read-write, discards punch holes in the image.
pub fn writable_disk(image: PathBuf) -> Device {
    Device::Block(BlockDevice {
        id: "rw".into(),
        path: image,
        read_only: false,
        serial: WRITABLE_SERIAL.into(),
        discard: true,
    })
}

/// The storage of one VM run.
#[derive(Debug, Clone, Default)]
pub struct VmStorage {
    /// Devices of the VM for the box's storage, after the root disk: the
    /// writable layer's disk ([`writable_disk`]) of a stored box. Without
    /// it the upper layer is a tmpfs.
    pub devices: Vec<Device>,
    /// Size cap of a tmpfs upper layer.
    pub tmpfs_upper_bytes: Option<u64>,
    /// The root is read-only.
    pub read_only: bool,
    /// Host directories shared over virtio-fs.
    pub fs_mounts: Vec<FsMount>,
    /// Mounts guest-init makes in the box, in order.
    pub mounts: Vec<MountSpec>,
    /// Tags of read-only shares guest-init fills and then seals.
    pub seal_after_fill: Vec<String>,
}

impl VmStorage {
    /// Whether the box's writable layer is a disk (not a tmpfs).
    pub fn has_writable_disk(&self) -> bool {
        self.devices
            .iter()
            .any(|d| matches!(d, Device::Block(b) if b.serial == WRITABLE_SERIAL))
    }

    /// Whether a hard stop of the VM could lose or tear data: it has a
    /// writable disk or host shares, so the guest must sync and power off.
    pub fn needs_clean_shutdown(&self) -> bool {
        self.has_writable_disk() || !self.fs_mounts.is_empty()
    }
}

/// The virtio-fs tag of the `index`th share.
pub fn share_tag(index: usize) -> String {
    format!("a3s-fs{index}")
}

/// Plan the storage of the box in `box_dir` for one run.
pub fn plan(home: &Home, box_dir: &Path, opts: &StorageOptions) -> Result<VmStorage, StorageError> {
    let layer = if opts.read_only {
        None
    } else {
        layer_of(box_dir)
    };
    let mut out = VmStorage {
        tmpfs_upper_bytes: if layer.is_none() {
            opts.size_bytes
        } else {
            None
        },
        devices: layer.into_iter().map(writable_disk).collect(),
        read_only: opts.read_only,
        ..VmStorage::default()
    };
    let volumes = VolumeStore::new(home);
    for m in &opts.mounts {
        let mut populate = false;
        let host_path = match &m.kind {
            MountKind::Bind { source } => {
                if !source.is_dir() && !source.is_file() {
                    return Err(StorageError::NotADirectory {
                        path: source.clone(),
                    });
                }
                source.clone()
            }
            MountKind::Volume {
                name,
                anonymous,
                nocopy,
            } => {
                let dir = volumes
                    .ensure(name, *anonymous, Default::default())?
                    .mountpoint;
                populate = !*nocopy && is_empty_dir(&dir)?;
                dir
            }
            MountKind::Tmpfs {
                size_bytes,
                mode,
                noexec,
            } => {
                out.mounts.push(MountSpec {
                    target: m.target.clone(),
                    source: MountSource::Tmpfs {
                        size_bytes: *size_bytes,
                        mode: *mode,
                    },
                    read_only: m.read_only,
                    noexec: *noexec,
                    nosuid: true,
                    nodev: true,
                    populate: false,
                });
                continue;
            }
        };
        let tag = share_tag(out.fs_mounts.len());
        let file = host_path.is_file();
        if populate && m.read_only {
            out.seal_after_fill.push(tag.clone());
        }
        out.fs_mounts.push(FsMount {
            tag: tag.clone(),
            host_path,
            read_only: m.read_only,
        });
        out.mounts.push(MountSpec {
            target: m.target.clone(),
            source: MountSource::Virtiofs { tag, file },
            read_only: m.read_only,
            noexec: false,
            nosuid: false,
            nodev: false,
            populate,
        });
    }
    // Parents before children: `/a` is mounted before `/a/b`.
    out.mounts.sort_by_key(|m| m.target.matches('/').count());
    Ok(out)
}

/// Whether `dir` has no entries: a volume never used, or left empty. Such a
/// volume is filled from the image at its target (Docker's copy-up); one
/// with anything in it is never touched.
fn is_empty_dir(dir: &Path) -> Result<bool, StorageError> {
    let mut entries = std::fs::read_dir(dir).map_err(StorageError::io("read", dir))?;
    Ok(entries.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Mount;

    #[test]
    fn shares_get_tags_and_mounts_are_ordered_parents_first() {
        let home = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let box_dir = tempfile::tempdir().unwrap();
        let opts = StorageOptions {
            read_only: false,
            size_bytes: Some(64 << 20),
            mounts: vec![
                Mount {
                    target: "/a/b".into(),
                    kind: MountKind::Bind {
                        source: host.path().into(),
                    },
                    read_only: true,
                },
                Mount {
                    target: "/a".into(),
                    kind: MountKind::Volume {
                        name: "v".into(),
                        anonymous: false,
                        nocopy: false,
                    },
                    read_only: false,
                },
                Mount {
                    target: "/t".into(),
                    kind: MountKind::Tmpfs {
                        size_bytes: None,
                        mode: None,
                        noexec: true,
                    },
                    read_only: false,
                },
            ],
        };
        let p = plan(&Home::at(home.path()), box_dir.path(), &opts).unwrap();
        assert!(p.devices.is_empty() && !p.has_writable_disk());
        assert_eq!(p.tmpfs_upper_bytes, Some(64 << 20));
        assert_eq!(p.fs_mounts.len(), 2);
        assert_eq!(p.fs_mounts[0].tag, "a3s-fs0");
        assert!(p.fs_mounts[0].read_only);
        assert!(p.fs_mounts[1].host_path.ends_with("volumes/v/_data"));
        let targets: Vec<_> = p.mounts.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/a", "/t", "/a/b"]);
        assert!(p.needs_clean_shutdown());
        let populate: Vec<_> = p.mounts.iter().map(|m| m.populate).collect();
        assert_eq!(populate, [true, false, false], "only the new volume");
    }

    #[test]
    fn a_stored_box_layer_becomes_the_writable_disk_device_unless_read_only() {
        let home = tempfile::tempdir().unwrap();
        let box_dir = tempfile::tempdir().unwrap();
        let layer = box_dir.path().join(crate::storage::layer::LAYER_FILE);
        std::fs::write(&layer, "").unwrap();
        let home = Home::at(home.path());
        let p = plan(&home, box_dir.path(), &StorageOptions::default()).unwrap();
        assert_eq!(p.devices, [writable_disk(layer)]);
        assert!(p.has_writable_disk() && p.needs_clean_shutdown());
        assert!(matches!(&p.devices[0], Device::Block(b) if !b.read_only && b.discard));
        let read_only = StorageOptions {
            read_only: true,
            ..StorageOptions::default()
        };
        let p = plan(&home, box_dir.path(), &read_only).unwrap();
        assert!(p.devices.is_empty() && !p.needs_clean_shutdown());
    }

    #[test]
    fn only_empty_volumes_without_nocopy_are_filled_read_only_ones_then_sealed() {
        let home = tempfile::tempdir().unwrap();
        let box_dir = tempfile::tempdir().unwrap();
        let volume = |name: &str, nocopy: bool, read_only: bool| Mount {
            target: format!("/{name}"),
            kind: MountKind::Volume {
                name: name.into(),
                anonymous: false,
                nocopy,
            },
            read_only,
        };
        let opts = StorageOptions {
            mounts: vec![
                volume("new", false, false),
                volume("full", false, false),
                volume("nocopy", true, false),
                volume("ro", false, true),
            ],
            ..StorageOptions::default()
        };
        let home = Home::at(home.path());
        let full = VolumeStore::new(&home)
            .ensure("full", false, Default::default())
            .unwrap();
        std::fs::write(full.mountpoint.join("kept"), "x").unwrap();
        let p = plan(&home, box_dir.path(), &opts).unwrap();
        let populate: Vec<_> = p
            .mounts
            .iter()
            .map(|m| (m.target.as_str(), m.populate))
            .collect();
        assert_eq!(
            populate,
            [
                ("/new", true),
                ("/full", false),
                ("/nocopy", false),
                ("/ro", true)
            ]
        );
        // The read-only one is served writable for the fill, then sealed.
        let ro = &p.fs_mounts[3];
        assert!(ro.read_only && p.mounts[3].read_only);
        assert_eq!(p.seal_after_fill, std::slice::from_ref(&ro.tag));
        // Once filled (or written by a box), a volume is never filled again.
        std::fs::create_dir(home.root().join("volumes/new/_data/d")).unwrap();
        let p = plan(&home, box_dir.path(), &opts).unwrap();
        assert!(!p.mounts[0].populate);
    }
}
