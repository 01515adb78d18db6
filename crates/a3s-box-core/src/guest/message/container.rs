//! Containers: what the host asks guest-init to create in the sandbox (its
//! id, hostname, root, storage and resource limits).

use serde::{Deserialize, Serialize};

use crate::config::ResourceLimits;

/// Longest container id.
pub const MAX_CONTAINER_ID_BYTES: usize = 128;

/// A container to create in the sandbox (`Boot.container`, `CreateContainer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Host-chosen id, unique in the sandbox ([`check_container_id`]);
    /// processes name their container by it.
    pub id: String,
    /// Hostname of the container's UTS namespace, and of its /etc/hostname.
    pub hostname: String,
    /// Its root filesystem image.
    pub root: RootSpec,
    /// Writable layer, read-only root, mounts (`None`: a tmpfs upper layer
    /// and no mounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Box<StorageSpec>>,
    /// Limits applied to the container's cgroup and processes (`None`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Box<ResourceLimits>>,
    /// The main process's working directory, made when the container is
    /// created if its root is read-only (a process makes its own working
    /// directory otherwise), as Docker does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
}

/// Whether `id` can name a container: 1 to [`MAX_CONTAINER_ID_BYTES`] of
/// ASCII letters, digits, `_`, `.` and `-`, starting with a letter or digit
/// (it names the container's directories and cgroup in the guest).
pub fn check_container_id(id: &str) -> Result<(), String> {
    let ok_start = id.starts_with(|c: char| c.is_ascii_alphanumeric());
    let ok_chars = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok_start && ok_chars && id.len() <= MAX_CONTAINER_ID_BYTES {
        Ok(())
    } else {
        Err(format!(
            "invalid container id {id:?}: use 1 to {MAX_CONTAINER_ID_BYTES} letters, digits, '_', '.' or '-', starting with a letter or digit"
        ))
    }
}

/// Whether `dir` can be a [`StorageSpec::writable_dir`]: a relative path
/// of plain names (no `.`, `..` or empty component).
pub fn check_writable_dir(dir: &str) -> Result<(), String> {
    let plain = |c: &str| !c.is_empty() && c != "." && c != "..";
    if !dir.is_empty() && !dir.starts_with('/') && dir.split('/').all(plain) {
        Ok(())
    } else {
        Err(format!(
            "invalid writable directory {dir:?}: use a relative path of plain names"
        ))
    }
}

/// How a container's root filesystem is assembled in the guest: its image,
/// read-only, under the container's writable layer (overlayfs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootSpec {
    /// Where the image is.
    pub image: RootImage,
    /// Its filesystem type (`ext4`, `erofs`).
    pub fstype: String,
}

/// Where a container's image is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RootImage {
    /// A guest block device, such as `/dev/vda` (the first container).
    Device {
        /// Its path in the guest.
        path: String,
    },
    /// An image file on a read-only virtio-fs share, loop-mounted (a
    /// container that joins a running sandbox).
    SharedFile {
        /// The share's virtio-fs tag (mounted once, read-only, and shared by
        /// every container whose image is on it).
        tag: String,
        /// The file's path relative to the share's root.
        path: String,
    },
}

/// The box's storage beyond its image (boxed: a boot message stays small).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StorageSpec {
    /// The disk holding the container's writable layer (the overlay's
    /// upper and work directories), kept across restarts. `None`: a tmpfs.
    /// A disk is mounted once per sandbox; containers naming the same disk
    /// share it, each in its own [`StorageSpec::writable_dir`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writable: Option<DiskSpec>,
    /// The directory of the `writable` disk that holds this container's
    /// `upper/` and `work/` (a relative path of plain names, made when
    /// missing). `None`: the disk's root (the one-container layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writable_dir: Option<String>,
    /// Size cap of a tmpfs upper layer in bytes (`None`: the tmpfs default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_upper_bytes: Option<u64>,
    /// Make the assembled root read-only (`--read-only`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Filesystems mounted into the box (`-v`, `--mount`, `--tmpfs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
}

/// A guest block device, found by the serial number the host gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// virtio-blk serial (`/sys/block/*/serial` in the guest).
    pub serial: String,
    /// Its filesystem type.
    pub fstype: String,
}

/// A filesystem mounted into the box before the workload starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Absolute path inside the box (created when missing).
    pub target: String,
    /// What is mounted there.
    pub source: MountSource,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// `noexec`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub noexec: bool,
    /// `nosuid`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nosuid: bool,
    /// `nodev`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nodev: bool,
    /// Fill the share from the image before it is mounted (a new volume,
    /// Docker's copy-up): what the box root holds at `target` is copied in
    /// with owners, modes and times, unless the share is not empty by then.
    /// Ignored for tmpfs. A read-only mount to fill is served writable
    /// until guest-init seals it ([`SEAL_XATTR`]) after the copy, before
    /// the workload starts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub populate: bool,
}

/// Name of the one entry of a single-file share's root (`a3s-box-fs --file`).
pub const SHARED_FILE_NAME: &str = "file";

/// Setting this extended attribute on a share served with
/// `a3s-box-fs --seal-after-fill` makes the daemon refuse every write from
/// then on; nothing can undo it. Other daemons store it as a plain xattr.
pub const SEAL_XATTR: &str = "user.a3s-box.seal";

/// The filesystem of a [`MountSpec`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountSource {
    /// A host directory shared over virtio-fs under `tag`.
    Virtiofs {
        /// The virtio-fs tag.
        tag: String,
        /// The share holds a single host file, named [`SHARED_FILE_NAME`]
        /// in its root: that file is mounted at the target, not the share.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        file: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Size cap in bytes (`None`: the tmpfs default).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size_bytes: Option<u64>,
        /// Mode of its root directory (`None`: 1777).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_name_directories_safely() {
        for ok in ["a", "0", "web-1", "db_2.x", &"f".repeat(128)] {
            assert!(check_container_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".", "..", "a/b", "a b", "ü", &"f".repeat(129)] {
            assert!(check_container_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn writable_dirs_are_relative_plain_paths() {
        for ok in ["c1", "containers/c1"] {
            assert!(check_writable_dir(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/c1", "a/../b", "./a", "a//b", "a/", ".."] {
            assert!(check_writable_dir(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn root_images_are_tagged() {
        let root = RootSpec {
            image: RootImage::SharedFile {
                tag: "a3s-images".into(),
                path: "sha256/ab.erofs".into(),
            },
            fstype: "erofs".into(),
        };
        let json = serde_json::to_string(&root).unwrap();
        assert_eq!(
            json,
            r#"{"image":{"type":"shared_file","tag":"a3s-images","path":"sha256/ab.erofs"},"fstype":"erofs"}"#
        );
        assert_eq!(serde_json::from_str::<RootSpec>(&json).unwrap(), root);
    }

    #[test]
    fn mount_specs_without_populate_still_parse() {
        let old = r#"{"target":"/v","source":{"type":"virtiofs","tag":"a3s-fs0"}}"#;
        let m: MountSpec = serde_json::from_str(old).unwrap();
        assert!(!m.populate && !m.read_only);
        let new = MountSpec {
            populate: true,
            ..m.clone()
        };
        let json = serde_json::to_string(&new).unwrap();
        assert!(json.ends_with(r#""populate":true}"#), "{json}");
        assert_eq!(serde_json::from_str::<MountSpec>(&json).unwrap(), new);
        assert_eq!(serde_json::to_string(&m).unwrap(), old, "false is left out");
    }
}
