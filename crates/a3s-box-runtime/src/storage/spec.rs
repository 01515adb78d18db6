//! Parsing `-v`, `--mount`, `--tmpfs` and `--storage-opt` into typed values,
//! once, where the user wrote them (Docker's syntax).

use std::path::{Component, Path, PathBuf};

use a3s_box_core::units::parse_size_bytes;

use super::volumes::validate_name;
use super::{Mount, MountKind, StorageError};

/// Smallest writable layer: ext4 needs room for its metadata.
pub const MIN_LAYER_BYTES: u64 = 16 << 20;

fn bad(spec: &str, reason: impl Into<String>) -> StorageError {
    StorageError::BadMount {
        spec: spec.to_string(),
        reason: reason.into(),
    }
}

/// A path inside the box: absolute, not `/`, without `..`.
fn target(spec: &str, path: &str) -> Result<String, StorageError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(bad(spec, format!("the box path {path:?} must be absolute")));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(bad(
            spec,
            format!("the box path {path:?} must not contain .."),
        ));
    }
    let normal: PathBuf = p.components().collect();
    if normal == Path::new("/") {
        return Err(bad(spec, "the box path cannot be /"));
    }
    normal
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| bad(spec, "the box path is not valid UTF-8"))
}

/// A host directory or regular file to share: absolute, existing (a
/// missing path is created as a directory with `create`).
fn bind_source(spec: &str, path: &str, create: bool) -> Result<PathBuf, StorageError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(bad(
            spec,
            format!("the host path {path:?} must be absolute"),
        ));
    }
    if create && !p.exists() {
        std::fs::create_dir_all(p).map_err(StorageError::io("create", p))?;
    }
    let real = std::fs::canonicalize(p).map_err(StorageError::io("bind source", p))?;
    if !real.is_dir() && !real.is_file() {
        return Err(StorageError::NotADirectory { path: real });
    }
    Ok(real)
}

/// A fresh anonymous volume name (64 hex, as Docker makes them).
fn anonymous_name() -> Result<String, StorageError> {
    crate::manager::new_box_id().map_err(StorageError::io("read", "/dev/urandom"))
}

/// A named (`name`) or anonymous volume; `nocopy`: never filled from the image.
fn volume(name: Option<&str>, nocopy: bool) -> Result<MountKind, StorageError> {
    Ok(match name {
        Some(n) => {
            validate_name(n)?;
            MountKind::Volume {
                name: n.to_string(),
                anonymous: false,
                nocopy,
            }
        }
        None => MountKind::Volume {
            name: anonymous_name()?,
            anonymous: true,
            nocopy,
        },
    })
}

/// `-v SRC:DST[:OPTS]` or `-v DST` (an anonymous volume). SRC is a host
/// directory when absolute (created if missing, as Docker does), else a
/// volume name. OPTS: `ro`, `rw`, and `nocopy` for a volume; Docker's `z`,
/// `Z` (SELinux relabelling: no SELinux on a share) and consistency modes
/// are accepted and change nothing, as are `private`/`rprivate`.
pub fn parse_volume(spec: &str) -> Result<Mount, StorageError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, dst, opts) = match parts.as_slice() {
        [dst] => (None, *dst, None),
        [src, dst] => (Some(*src), *dst, None),
        [src, dst, opts] => (Some(*src), *dst, Some(*opts)),
        _ => return Err(bad(spec, "use SRC:DST[:ro|rw] or DST")),
    };
    let (mut read_only, mut nocopy) = (false, false);
    for opt in opts.into_iter().flat_map(|o| o.split(',')) {
        match opt {
            "ro" | "readonly" => read_only = true,
            "rw" => read_only = false,
            "nocopy" => nocopy = true,
            "z" | "Z" | "consistent" | "cached" | "delegated" => {}
            other if is_propagation(other) => propagation(spec, other)?,
            other => {
                return Err(bad(
                    spec,
                    format!("unknown option {other:?}: use ro, rw or nocopy"),
                ))
            }
        }
    }
    if nocopy && source.is_some_and(|s| s.starts_with('/')) {
        return Err(bad(spec, "nocopy applies to volumes only"));
    }
    let kind = match source {
        Some(s) if s.starts_with('/') => MountKind::Bind {
            source: bind_source(spec, s, true)?,
        },
        Some("") => return Err(bad(spec, "the source is empty")),
        Some(s) if s.starts_with('.') || s.starts_with('~') => {
            return Err(bad(spec, "a host path must be absolute"))
        }
        Some(name) => volume(Some(name), nocopy)?,
        None => volume(None, nocopy)?,
    };
    Ok(Mount {
        target: target(spec, dst)?,
        kind,
        read_only,
    })
}

/// Docker's bind propagation modes.
fn is_propagation(opt: &str) -> bool {
    matches!(
        opt,
        "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
    )
}

/// Shares behave as `rprivate`: what the host mounts under a shared
/// directory later never reaches the VM, nor the other way round.
fn propagation(spec: &str, mode: &str) -> Result<(), StorageError> {
    match mode {
        "private" | "rprivate" => Ok(()),
        m if is_propagation(m) => Err(bad(
            spec,
            format!("{m} propagation cannot cross the VM boundary: shares are rprivate"),
        )),
        m => Err(bad(spec, format!("unknown propagation {m:?}"))),
    }
}

fn flag_value(spec: &str, key: &str, value: Option<&str>) -> Result<bool, StorageError> {
    match value {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => Err(bad(spec, format!("{key}={v}: use true or false"))),
    }
}

fn mode(spec: &str, text: &str) -> Result<u32, StorageError> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| bad(spec, format!("mode {text:?} is not an octal mode")))
}

fn size(spec: &str, text: &str) -> Result<u64, StorageError> {
    parse_size_bytes(text).map_err(|e| bad(spec, e.to_string()))
}

/// `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,volume-nocopy]
/// [,tmpfs-size=…][,tmpfs-mode=…]`.
pub fn parse_mount(spec: &str) -> Result<Mount, StorageError> {
    let (mut kind, mut source, mut dst, mut read_only) = (None, None, None, false);
    let mut nocopy = false;
    let (mut tmpfs_size, mut tmpfs_mode) = (None, None);
    for field in spec.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        let need = || value.ok_or_else(|| bad(spec, format!("{key} needs a value")));
        match key {
            "type" => kind = Some(need()?),
            "source" | "src" => source = Some(need()?),
            "target" | "destination" | "dst" => dst = Some(need()?),
            "readonly" | "ro" => read_only = flag_value(spec, key, value)?,
            "volume-nocopy" => nocopy = flag_value(spec, key, value)?,
            "tmpfs-size" => tmpfs_size = Some(size(spec, need()?)?),
            "tmpfs-mode" => tmpfs_mode = Some(mode(spec, need()?)?),
            "consistency" => {}
            "bind-propagation" => propagation(spec, need()?)?,
            other => return Err(bad(spec, format!("unknown field {other:?}"))),
        }
    }
    let dst = dst.ok_or_else(|| bad(spec, "target= is required"))?;
    let tmpfs_only = tmpfs_size.is_some() || tmpfs_mode.is_some();
    let kind = match kind {
        Some("bind") => MountKind::Bind {
            source: bind_source(
                spec,
                source.ok_or_else(|| bad(spec, "a bind mount needs source="))?,
                false,
            )?,
        },
        Some("volume") => volume(source, nocopy)?,
        Some("tmpfs") if source.is_some() => return Err(bad(spec, "a tmpfs has no source")),
        Some("tmpfs") => MountKind::Tmpfs {
            size_bytes: tmpfs_size,
            mode: tmpfs_mode,
            noexec: false,
        },
        Some(other) => {
            return Err(bad(
                spec,
                format!("type {other:?}: use bind, volume or tmpfs"),
            ))
        }
        None => return Err(bad(spec, "type= is required")),
    };
    if tmpfs_only && !matches!(kind, MountKind::Tmpfs { .. }) {
        return Err(bad(
            spec,
            "tmpfs-size and tmpfs-mode apply to type=tmpfs only",
        ));
    }
    if nocopy && !matches!(kind, MountKind::Volume { .. }) {
        return Err(bad(spec, "volume-nocopy applies to type=volume only"));
    }
    Ok(Mount {
        target: target(spec, dst)?,
        kind,
        read_only,
    })
}

/// `--tmpfs /path[:size=…,mode=…,ro,exec]`: noexec unless `exec`, as Docker.
pub fn parse_tmpfs(spec: &str) -> Result<Mount, StorageError> {
    let (dst, opts) = match spec.split_once(':') {
        Some((d, o)) => (d, o),
        None => (spec, ""),
    };
    let (mut size_bytes, mut mode_bits, mut read_only, mut noexec) = (None, None, false, true);
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("size", v)) => size_bytes = Some(size(spec, v)?),
            Some(("mode", v)) => mode_bits = Some(mode(spec, v)?),
            None if opt == "ro" => read_only = true,
            None if opt == "rw" => read_only = false,
            None if opt == "exec" => noexec = false,
            None if opt == "noexec" => noexec = true,
            None if matches!(opt, "nosuid" | "nodev") => {}
            _ => {
                return Err(bad(
                    spec,
                    format!("unknown option {opt:?}: use size=, mode=, ro, rw, exec, noexec"),
                ))
            }
        }
    }
    Ok(Mount {
        target: target(spec, dst)?,
        kind: MountKind::Tmpfs {
            size_bytes,
            mode: mode_bits,
            noexec,
        },
        read_only,
    })
}

/// `--storage-opt size=N`: the writable layer's size in bytes.
pub fn parse_storage_opt(spec: &str) -> Result<u64, StorageError> {
    let refuse = |reason: String| StorageError::BadStorageOpt {
        spec: spec.to_string(),
        reason,
    };
    match spec.split_once('=') {
        Some(("size", v)) => {
            let bytes = parse_size_bytes(v).map_err(|e| refuse(e.to_string()))?;
            if bytes < MIN_LAYER_BYTES {
                return Err(refuse(format!(
                    "the writable layer needs at least {} MiB",
                    MIN_LAYER_BYTES >> 20
                )));
            }
            Ok(bytes)
        }
        _ => Err(refuse("only size=N is supported".into())),
    }
}

/// Refuse two mounts on one box path.
pub fn check_unique_targets(mounts: &[Mount]) -> Result<(), StorageError> {
    for (i, m) in mounts.iter().enumerate() {
        if mounts[..i].iter().any(|o| o.target == m.target) {
            return Err(bad(&m.target, "two mounts on the same box path"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
