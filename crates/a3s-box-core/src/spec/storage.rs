//! [`StorageSpec`]: a container's mounts, read-only root and writable layer,
//! with their rules. The Docker string syntaxes are parsed in
//! [`super::storage_parse`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{rules, SpecError};

/// Smallest writable layer: ext4 needs room for its metadata.
pub const MIN_LAYER_BYTES: u64 = 16 << 20;
/// Highest permission bits of a tmpfs root (`--tmpfs /t:mode=1777`).
pub const MAX_MODE: u32 = 0o7777;

/// A container's storage beyond its root image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSpec {
    /// `-v`, `--mount`, `--tmpfs` (and, once the engine resolved the
    /// spec, the image's `VOLUME`s and what `--volumes-from` brought).
    pub mounts: Vec<Mount>,
    /// `--read-only`: the root filesystem cannot be written.
    pub read_only: bool,
    /// `--storage-opt size=`: the writable layer's size in bytes (`None`:
    /// the engine's default).
    pub layer_size_bytes: Option<u64>,
    /// `--volumes-from`: mount the volumes and bind mounts of these boxes
    /// at the same paths (resolved by the engine).
    pub volumes_from: Vec<VolumesFrom>,
}

/// One filesystem mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Mount {
    /// A host directory or regular file, shared into the VM.
    Bind {
        /// The host path (absolute).
        source: PathBuf,
        /// Absolute path inside the container.
        target: String,
        /// Read-only inside the container.
        #[serde(default)]
        read_only: bool,
        /// Create `source` as a directory when it is missing (`-v` does,
        /// `--mount type=bind` refuses instead, as in Docker).
        #[serde(default)]
        create_source: bool,
    },
    /// A volume of the engine's volume store, created on first use.
    Volume {
        /// Its name; `None` for an anonymous volume, which the engine names
        /// when it creates the box.
        #[serde(default)]
        name: Option<String>,
        /// Set by the engine when it names an anonymous volume, so the box
        /// still knows the volume is its own (`rm -v` removes it). A
        /// volume without a name is anonymous whatever this says.
        #[serde(default)]
        anonymous: bool,
        /// Absolute path inside the container.
        target: String,
        /// Read-only inside the container.
        #[serde(default)]
        read_only: bool,
        /// `nocopy`: an empty volume is not filled with what the image has
        /// at the target.
        #[serde(default)]
        nocopy: bool,
    },
    /// A fresh tmpfs (always `nosuid,nodev`).
    Tmpfs {
        /// Absolute path inside the container.
        target: String,
        /// Size cap in bytes (`None`: the kernel's default, half the RAM).
        #[serde(default)]
        size_bytes: Option<u64>,
        /// Mode of its root directory (`None`: 1777).
        #[serde(default)]
        mode: Option<u32>,
        /// Read-only inside the container.
        #[serde(default)]
        read_only: bool,
        /// Programs may not run from it (`--tmpfs` default, as Docker's).
        #[serde(default)]
        noexec: bool,
    },
}

impl Mount {
    /// The path inside the container.
    pub fn target(&self) -> &str {
        match self {
            Mount::Bind { target, .. }
            | Mount::Volume { target, .. }
            | Mount::Tmpfs { target, .. } => target,
        }
    }

    /// Mounted read-only.
    pub fn read_only(&self) -> bool {
        match self {
            Mount::Bind { read_only, .. }
            | Mount::Volume { read_only, .. }
            | Mount::Tmpfs { read_only, .. } => *read_only,
        }
    }

    /// A volume that belongs to this box alone.
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Mount::Volume { name, anonymous, .. } if *anonymous || name.is_none())
    }

    /// Check one mount; fields are relative (`target`, `source`).
    pub fn validate(&self) -> Result<(), SpecError> {
        rules::box_path("target", self.target())?;
        match self {
            Mount::Bind { source, .. } => rules::host_path("source", source),
            Mount::Volume { name: Some(n), .. } => rules::check_name("name", "volume", n),
            Mount::Volume { name: None, .. } => Ok(()),
            Mount::Tmpfs {
                size_bytes, mode, ..
            } => {
                if *size_bytes == Some(0) {
                    return Err(SpecError::out_of_range(
                        "size_bytes",
                        "0",
                        "a tmpfs of size 0 would have no limit: give a size or leave it out",
                    ));
                }
                match mode {
                    Some(m) if *m > MAX_MODE => Err(SpecError::out_of_range(
                        "mode",
                        format!("{m:o}"),
                        "a mode is at most 7777 (octal)",
                    )),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// `ro` or `rw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessMode {
    /// Read-only.
    Ro,
    /// Read-write.
    Rw,
}

impl fmt::Display for AccessMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessMode::Ro => "ro",
            AccessMode::Rw => "rw",
        })
    }
}

/// `--volumes-from BOX[:ro|rw]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumesFrom {
    /// The box (name or id) whose volumes and bind mounts are mounted.
    pub source: String,
    /// Override of their mode (`None`: each keeps its own).
    #[serde(default)]
    pub mode: Option<AccessMode>,
}

impl FromStr for VolumesFrom {
    type Err = SpecError;

    /// `BOX`, `BOX:ro` or `BOX:rw`.
    fn from_str(text: &str) -> Result<Self, SpecError> {
        const FIELD: &str = "--volumes-from";
        let (source, mode) = match text.rsplit_once(':') {
            Some((source, "ro")) => (source, Some(AccessMode::Ro)),
            Some((source, "rw")) => (source, Some(AccessMode::Rw)),
            Some((_, other)) => {
                return Err(SpecError::invalid(
                    FIELD,
                    text,
                    format!("unknown mode {other:?}: use BOX, BOX:ro or BOX:rw"),
                ))
            }
            None => (text, None),
        };
        rules::check_name(FIELD, "box", source)
            .map_err(|e| SpecError::invalid(FIELD, text, e.message))?;
        Ok(VolumesFrom {
            source: source.to_string(),
            mode,
        })
    }
}

impl StorageSpec {
    /// Check mounts (each, and no two on one path), the layer size and
    /// `volumes_from`; fields are relative (`mounts[1].target`).
    pub fn validate(&self) -> Result<(), SpecError> {
        let mut targets: Vec<String> = Vec::with_capacity(self.mounts.len());
        for (i, mount) in self.mounts.iter().enumerate() {
            mount.validate().map_err(|e| e.within_item("mounts", i))?;
            let normal = rules::box_path("target", mount.target())?;
            if let Some(j) = targets.iter().position(|t| *t == normal) {
                return Err(SpecError::conflict(
                    format!("mounts[{i}].target"),
                    format!(
                        "mounts[{j}] and mounts[{i}] are both on {normal}: one path takes one mount"
                    ),
                ));
            }
            targets.push(normal);
        }
        if let Some(size) = self.layer_size_bytes {
            if size < MIN_LAYER_BYTES {
                return Err(SpecError::out_of_range(
                    "layer_size_bytes",
                    size.to_string(),
                    format!(
                        "the writable layer needs at least {} MiB",
                        MIN_LAYER_BYTES >> 20
                    ),
                ));
            }
        }
        for (i, from) in self.volumes_from.iter().enumerate() {
            rules::check_name("source", "box", &from.source)
                .map_err(|e| e.within_item("volumes_from", i))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpfs(target: &str) -> Mount {
        Mount::Tmpfs {
            target: target.into(),
            size_bytes: None,
            mode: None,
            read_only: false,
            noexec: false,
        }
    }

    #[test]
    fn volumes_from_parses_a_box_and_a_mode() {
        let v: VolumesFrom = "web:ro".parse().unwrap();
        assert_eq!((v.source.as_str(), v.mode), ("web", Some(AccessMode::Ro)));
        assert_eq!("web".parse::<VolumesFrom>().unwrap().mode, None);
        for bad in ["web:rx", "", ":ro", "-x"] {
            let e = bad.parse::<VolumesFrom>().unwrap_err();
            assert_eq!(e.field, "--volumes-from", "{bad}");
        }
    }

    #[test]
    fn duplicate_targets_conflict_after_normalizing() {
        let spec = StorageSpec {
            mounts: vec![tmpfs("/a"), tmpfs("/b"), tmpfs("/a/")],
            ..StorageSpec::default()
        };
        let e = spec.validate().unwrap_err();
        assert_eq!(e.field, "mounts[2].target");
        assert!(e.message.contains("mounts[0] and mounts[2]"), "{e}");
    }

    #[test]
    fn mounts_and_layer_sizes_are_checked() {
        let bad = [
            (tmpfs("rel"), "mounts[0].target"),
            (tmpfs("/"), "mounts[0].target"),
            (tmpfs("/a/../b"), "mounts[0].target"),
            (
                Mount::Bind {
                    source: "src".into(),
                    target: "/t".into(),
                    read_only: false,
                    create_source: false,
                },
                "mounts[0].source",
            ),
            (
                Mount::Volume {
                    name: Some("-x".into()),
                    anonymous: false,
                    target: "/t".into(),
                    read_only: false,
                    nocopy: false,
                },
                "mounts[0].name",
            ),
            (
                Mount::Tmpfs {
                    target: "/t".into(),
                    size_bytes: Some(0),
                    mode: None,
                    read_only: false,
                    noexec: false,
                },
                "mounts[0].size_bytes",
            ),
            (
                Mount::Tmpfs {
                    target: "/t".into(),
                    size_bytes: None,
                    mode: Some(0o10000),
                    read_only: false,
                    noexec: false,
                },
                "mounts[0].mode",
            ),
        ];
        for (mount, field) in bad {
            let spec = StorageSpec {
                mounts: vec![mount],
                ..StorageSpec::default()
            };
            assert_eq!(spec.validate().unwrap_err().field, field);
        }
        let small = StorageSpec {
            layer_size_bytes: Some(1 << 20),
            ..StorageSpec::default()
        };
        assert!(small.validate().unwrap_err().message.contains("16 MiB"));
        let from = StorageSpec {
            volumes_from: vec![VolumesFrom {
                source: "a b".into(),
                mode: None,
            }],
            ..StorageSpec::default()
        };
        assert_eq!(from.validate().unwrap_err().field, "volumes_from[0].source");
    }

    #[test]
    fn anonymous_volumes_are_recognised() {
        let anon = Mount::Volume {
            name: None,
            anonymous: false,
            target: "/v".into(),
            read_only: false,
            nocopy: false,
        };
        assert!(anon.is_anonymous());
        let named_by_engine = Mount::Volume {
            name: Some("f00".into()),
            anonymous: true,
            target: "/v".into(),
            read_only: false,
            nocopy: false,
        };
        assert!(named_by_engine.is_anonymous());
        assert!(!tmpfs("/t").is_anonymous());
    }
}
