//! Docker's storage flag syntaxes: `-v`, `--mount`, `--tmpfs`,
//! `--storage-opt`. Pure: nothing is looked up or created here; the engine
//! checks that bind sources exist (creating them for `-v`) and names
//! anonymous volumes.

use std::path::PathBuf;

use super::resources::parse_size;
use super::storage::{Mount, MAX_MODE, MIN_LAYER_BYTES};
use super::{rules, SpecError};

/// The error for flag `field` given `spec`: `reason`.
fn bad(field: &str, spec: &str, reason: impl Into<String>) -> SpecError {
    SpecError::invalid(field, spec, reason)
}

/// A rule's error about part of `spec`, restated about the whole of it.
fn about(field: &str, spec: &str, part: &str, e: SpecError) -> SpecError {
    let mut out = bad(field, spec, format!("{part}: {}", e.message));
    out.kind = e.kind;
    out
}

/// The target of a mount: absolute, not `/`, no `..`, in normal form.
fn target(field: &str, spec: &str, path: &str) -> Result<String, SpecError> {
    rules::box_path(field, path).map_err(|e| about(field, spec, &format!("target {path:?}"), e))
}

fn volume_name(field: &str, spec: &str, name: &str) -> Result<String, SpecError> {
    rules::check_name(field, "volume", name)
        .map_err(|e| about(field, spec, &format!("volume {name:?}"), e))?;
    Ok(name.to_string())
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
fn propagation(field: &str, spec: &str, mode: &str) -> Result<(), SpecError> {
    match mode {
        "private" | "rprivate" => Ok(()),
        m if is_propagation(m) => Err(SpecError::unsupported(
            field,
            spec,
            format!("{m} propagation cannot cross the VM boundary: shares are rprivate"),
        )),
        m => Err(bad(
            field,
            spec,
            format!("unknown propagation {m:?}: use rprivate (the only mode across a VM)"),
        )),
    }
}

/// `-v SRC:DST[:OPTS]` or `-v DST` (an anonymous volume).
///
/// SRC is a host path when absolute (created when missing, as Docker
/// does: `create_source`), else a volume name. OPTS: `ro`, `rw`, and
/// `nocopy` for a volume; Docker's `z`, `Z` (SELinux relabelling: no
/// SELinux on a share), consistency modes and `private`/`rprivate` are
/// accepted and change nothing. Docker's `HostConfig.Binds` use this syntax.
pub fn parse_volume(spec: &str) -> Result<Mount, SpecError> {
    const F: &str = "--volume";
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, dst, opts) = match parts.as_slice() {
        [dst] => (None, *dst, None),
        [src, dst] => (Some(*src), *dst, None),
        [src, dst, opts] => (Some(*src), *dst, Some(*opts)),
        _ => return Err(bad(F, spec, "use SRC:DST[:OPTS] or DST (too many colons)")),
    };
    let (mut read_only, mut nocopy) = (false, false);
    // One option of each kind, as Docker has it ("invalid mode: ro,rw").
    let mut kinds: [Option<&str>; 5] = [None; 5];
    for opt in opts.into_iter().flat_map(|o| o.split(',')) {
        let kind = match opt {
            "ro" | "readonly" | "rw" => Some(0),
            "z" | "Z" => Some(1),
            "nocopy" => Some(2),
            "consistent" | "cached" | "delegated" => Some(3),
            other if is_propagation(other) => Some(4),
            _ => None,
        };
        if let Some(k) = kind {
            if let Some(first) = kinds[k].replace(opt) {
                return Err(bad(
                    F,
                    spec,
                    format!("options {first:?} and {opt:?} are of one kind: give one of them"),
                ));
            }
        }
        match opt {
            "ro" | "readonly" => read_only = true,
            "rw" => read_only = false,
            "nocopy" => nocopy = true,
            "z" | "Z" | "consistent" | "cached" | "delegated" => {}
            other if is_propagation(other) => propagation(F, spec, other)?,
            other => {
                return Err(bad(
                    F,
                    spec,
                    format!("unknown option {other:?}: use ro, rw or nocopy"),
                ))
            }
        }
    }
    let target = target(F, spec, dst)?;
    match source {
        Some(s) if s.starts_with('/') => {
            if nocopy {
                return Err(bad(
                    F,
                    spec,
                    "nocopy applies to volumes only, not host paths",
                ));
            }
            Ok(Mount::Bind {
                source: PathBuf::from(s),
                target,
                read_only,
                create_source: true,
            })
        }
        Some("") => Err(bad(F, spec, "the source is empty: use SRC:DST or DST")),
        Some(s) if s.starts_with('.') || s.starts_with('~') => Err(bad(
            F,
            spec,
            "a host path must be absolute (write it out, e.g. $PWD/dir)",
        )),
        name => Ok(Mount::Volume {
            name: name.map(|n| volume_name(F, spec, n)).transpose()?,
            anonymous: false,
            target,
            read_only,
            nocopy,
        }),
    }
}

fn flag_value(field: &str, spec: &str, key: &str, value: Option<&str>) -> Result<bool, SpecError> {
    match value {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => Err(bad(field, spec, format!("{key}={v}: use true or false"))),
    }
}

fn mode(field: &str, spec: &str, text: &str) -> Result<u32, SpecError> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= MAX_MODE)
        .ok_or_else(|| {
            bad(
                field,
                spec,
                format!("mode {text:?} is not an octal mode (0 to 7777)"),
            )
        })
}

fn size(field: &str, spec: &str, text: &str) -> Result<u64, SpecError> {
    let bytes =
        parse_size(field, text).map_err(|e| about(field, spec, &format!("size {text:?}"), e))?;
    if bytes == 0 {
        return Err(bad(
            field,
            spec,
            "a tmpfs of size 0 would have no limit: give a size or leave it out",
        ));
    }
    Ok(bytes)
}

/// `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly]
/// [,volume-nocopy][,tmpfs-size=…][,tmpfs-mode=…]` (also `src`, `dst`,
/// `destination`, `ro`, `bind-propagation=rprivate`, `consistency=…`).
pub fn parse_mount(spec: &str) -> Result<Mount, SpecError> {
    const F: &str = "--mount";
    let (mut kind, mut source, mut dst, mut read_only) = (None, None, None, false);
    let mut nocopy = false;
    let (mut tmpfs_size, mut tmpfs_mode) = (None, None);
    for field in spec.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        let need =
            || value.ok_or_else(|| bad(F, spec, format!("{key} needs a value, as in {key}=…")));
        match key {
            "type" => kind = Some(need()?),
            "source" | "src" => source = Some(need()?),
            "target" | "destination" | "dst" => dst = Some(need()?),
            "readonly" | "ro" => read_only = flag_value(F, spec, key, value)?,
            "volume-nocopy" => nocopy = flag_value(F, spec, key, value)?,
            "tmpfs-size" => tmpfs_size = Some(size(F, spec, need()?)?),
            "tmpfs-mode" => tmpfs_mode = Some(mode(F, spec, need()?)?),
            "consistency" => {}
            "bind-propagation" => propagation(F, spec, need()?)?,
            other => {
                return Err(bad(
                    F,
                    spec,
                    format!("unknown field {other:?}: use type, source, target, readonly, volume-nocopy, tmpfs-size, tmpfs-mode"),
                ))
            }
        }
    }
    let dst = dst.ok_or_else(|| {
        SpecError::missing(F, format!("{spec:?} has no target=: say where to mount it"))
    })?;
    let target = target(F, spec, dst)?;
    let tmpfs_only = tmpfs_size.is_some() || tmpfs_mode.is_some();
    if tmpfs_only && kind != Some("tmpfs") {
        return Err(bad(
            F,
            spec,
            "tmpfs-size and tmpfs-mode apply to type=tmpfs only",
        ));
    }
    if nocopy && kind != Some("volume") {
        return Err(bad(F, spec, "volume-nocopy applies to type=volume only"));
    }
    match kind {
        Some("bind") => {
            let s = source.ok_or_else(|| {
                SpecError::missing(F, format!("{spec:?}: a bind mount needs source=HOST_PATH"))
            })?;
            if !s.starts_with('/') {
                return Err(bad(F, spec, "a host path must be absolute"));
            }
            Ok(Mount::Bind {
                source: PathBuf::from(s),
                target,
                read_only,
                create_source: false,
            })
        }
        Some("volume") => Ok(Mount::Volume {
            name: source.map(|n| volume_name(F, spec, n)).transpose()?,
            anonymous: false,
            target,
            read_only,
            nocopy,
        }),
        Some("tmpfs") if source.is_some() => Err(bad(F, spec, "a tmpfs has no source")),
        Some("tmpfs") => Ok(Mount::Tmpfs {
            target,
            size_bytes: tmpfs_size,
            mode: tmpfs_mode,
            read_only,
            noexec: false,
        }),
        Some(other) => Err(bad(
            F,
            spec,
            format!("type {other:?}: use bind, volume or tmpfs"),
        )),
        None => Err(SpecError::missing(
            F,
            format!("{spec:?} has no type=: use type=bind, type=volume or type=tmpfs"),
        )),
    }
}

/// `--tmpfs PATH[:size=…,mode=…,ro,rw,exec,noexec,nosuid,nodev]`: noexec
/// unless `exec`, as Docker's (and always nosuid, nodev).
pub fn parse_tmpfs(spec: &str) -> Result<Mount, SpecError> {
    const F: &str = "--tmpfs";
    let (dst, opts) = spec.split_once(':').unwrap_or((spec, ""));
    let (mut size_bytes, mut mode_bits, mut read_only, mut noexec) = (None, None, false, true);
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("size", v)) => size_bytes = Some(size(F, spec, v)?),
            Some(("mode", v)) => mode_bits = Some(mode(F, spec, v)?),
            None if opt == "ro" => read_only = true,
            None if opt == "rw" => read_only = false,
            None if opt == "exec" => noexec = false,
            None if opt == "noexec" => noexec = true,
            None if matches!(opt, "nosuid" | "nodev") => {}
            _ => {
                return Err(bad(
                    F,
                    spec,
                    format!("unknown option {opt:?}: use size=, mode=, ro, rw, exec, noexec"),
                ))
            }
        }
    }
    Ok(Mount::Tmpfs {
        target: target(F, spec, dst)?,
        size_bytes,
        mode: mode_bits,
        read_only,
        noexec,
    })
}

/// `--storage-opt size=N`: the writable layer's size in bytes.
pub fn parse_storage_opt(spec: &str) -> Result<u64, SpecError> {
    const F: &str = "--storage-opt";
    match spec.split_once('=') {
        Some(("size", v)) => {
            let bytes = parse_size(F, v).map_err(|e| about(F, spec, &format!("size {v:?}"), e))?;
            if bytes < MIN_LAYER_BYTES {
                return Err(SpecError::out_of_range(
                    F,
                    spec,
                    format!(
                        "the writable layer needs at least {} MiB",
                        MIN_LAYER_BYTES >> 20
                    ),
                ));
            }
            Ok(bytes)
        }
        _ => Err(SpecError::unsupported(
            F,
            spec,
            "only size=N is supported (e.g. size=10g)",
        )),
    }
}
