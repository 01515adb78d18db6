//! Box storage on the host: each box's writable layer (a sparse ext4 disk),
//! host directories and named volumes shared over virtio-fs, tmpfs mounts.
//!
//! - [`layer`] makes a box's writable layer by copying a cached, formatted
//!   template sparsely (creating a box copies nothing of its image);
//! - [`virtiofs`] runs one virtio-fs daemon (`a3s-box-fs`) per share for the
//!   life of a VM;
//! - [`volumes`] is the store of named volumes;
//! - [`plan`] turns a box's options into what QEMU and the guest are given;
//! - [`helpers`] runs guest-init's layer helpers (diff, export, commit).
//!
//! The host never mounts anything the guest wrote: the writable layer is a
//! raw image only the guest kernel mounts.

mod change;
pub mod commit;
pub mod helpers;
pub mod layer;
pub mod plan;
pub mod virtiofs;
pub mod volumes;

use std::path::PathBuf;

use a3s_box_core::BoxError;
use serde::{Deserialize, Serialize};

/// Errors of box storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A mount flag does not parse.
    #[error("invalid mount {spec:?}: {reason}")]
    BadMount {
        /// What the user wrote.
        spec: String,
        /// Why it is refused.
        reason: String,
    },
    /// A `--storage-opt` does not parse.
    #[error("invalid --storage-opt {spec:?}: {reason}")]
    BadStorageOpt {
        /// What the user wrote.
        spec: String,
        /// Why it is refused.
        reason: String,
    },
    /// A bind mount's source is neither a directory nor a regular file.
    #[error(
        "bind source {} is neither a directory nor a regular file (sockets, devices and fifos cannot be shared)",
        path.display()
    )]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A volume name is not allowed.
    #[error(
        "invalid volume name {name:?}: use letters, digits and . _ - (first a letter or digit)"
    )]
    BadVolumeName {
        /// The name.
        name: String,
    },
    /// No volume of that name.
    #[error("no such volume: {name}")]
    NoSuchVolume {
        /// The name.
        name: String,
    },
    /// The volume is used by boxes.
    #[error("volume {name} is in use by box {boxes}")]
    VolumeInUse {
        /// The name.
        name: String,
        /// The boxes using it.
        boxes: String,
    },
    /// A tool we run failed.
    #[error("{tool} failed: {stderr}")]
    Tool {
        /// The program.
        tool: &'static str,
        /// What it said.
        stderr: String,
    },
    /// A tool we need is not installed.
    #[error("{tool} not found: install {package} (make setup)")]
    MissingTool {
        /// The program.
        tool: String,
        /// The package that has it.
        package: &'static str,
    },
    /// A virtio-fs daemon did not come up.
    #[error("the virtio-fs daemon for {} did not start: {reason}", path.display())]
    Daemon {
        /// The shared directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A filesystem operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl StorageError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| StorageError::Io { op, path, source }
    }
}

impl From<StorageError> for BoxError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Io { op, path, source } => {
                BoxError::io(format!("{op} {}", path.display()), source)
            }
            StorageError::NoSuchVolume { name } => BoxError::not_found("volume", name),
            e @ StorageError::VolumeInUse { .. } => BoxError::Conflict(e.to_string()),
            e @ (StorageError::MissingTool { .. } | StorageError::Daemon { .. }) => {
                BoxError::Unavailable(e.to_string())
            }
            e @ StorageError::Tool { .. } => {
                BoxError::io("storage tool", std::io::Error::other(e.to_string()))
            }
            other => BoxError::Invalid(other.to_string()),
        }
    }
}

/// A box's storage options, fixed when the box is created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageOptions {
    /// `--read-only`: the root filesystem cannot be written (no writable layer).
    #[serde(default)]
    pub read_only: bool,
    /// `--storage-opt size=`: the writable layer's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// `-v`, `--mount`, `--tmpfs` and the image's anonymous volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
}

/// One filesystem mounted into a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the box.
    pub target: String,
    /// What is mounted.
    pub kind: MountKind,
    /// Read-only inside the box.
    #[serde(default)]
    pub read_only: bool,
}

/// What a [`Mount`] mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountKind {
    /// A host directory (absolute path).
    Bind {
        /// The host directory.
        source: PathBuf,
    },
    /// A named volume (created on first use).
    Volume {
        /// Its name.
        name: String,
        /// Made up for this box (`-v /path`, an image `VOLUME`): `rm -v` removes it.
        #[serde(default)]
        anonymous: bool,
        /// `volume-nocopy` / `:nocopy`: an empty volume is not filled with
        /// what the image has at the target.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        nocopy: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Size cap in bytes.
        #[serde(default)]
        size_bytes: Option<u64>,
        /// Mode of its root.
        #[serde(default)]
        mode: Option<u32>,
        /// Programs may not run from it (`--tmpfs` default, as Docker).
        #[serde(default)]
        noexec: bool,
    },
}
