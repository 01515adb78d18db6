//! Lowering a resolved [`BoxSpec`] into what one VM run needs
//! ([`RunOptions`]): the root directory to boot, the process, the storage.
//! Pure apart from locating an image's unpacked root by its digest.

use a3s_box_core::spec::{BoxSpec, Mount as SpecMount, RootSource};
use a3s_box_core::{BoxError, Result};

use super::RunOptions;
use crate::home::Home;
use crate::storage::{Mount, MountKind, StorageOptions};

/// The unpacked root of the image with manifest digest `digest`.
fn image_root(home: &Home, digest: &str) -> Result<std::path::PathBuf> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BoxError::Invalid(format!("bad image digest {digest:?}")));
    }
    Ok(home.root().join("images/rootfs").join(hex))
}

/// A resolved spec mount as the storage planner takes it. Anonymous
/// volumes are named by then; one without a name is a bug of the caller.
pub(crate) fn storage_mount(m: &SpecMount) -> Result<Mount> {
    let kind = match m {
        SpecMount::Bind { source, .. } => MountKind::Bind {
            source: source.clone(),
        },
        SpecMount::Volume {
            name,
            anonymous,
            nocopy,
            ..
        } => MountKind::Volume {
            name: name.clone().ok_or_else(|| {
                BoxError::Invalid(format!("the volume on {} has no name", m.target()))
            })?,
            anonymous: *anonymous,
            nocopy: *nocopy,
        },
        SpecMount::Tmpfs {
            size_bytes,
            mode,
            noexec,
            ..
        } => MountKind::Tmpfs {
            size_bytes: *size_bytes,
            mode: *mode,
            noexec: *noexec,
        },
    };
    Ok(Mount {
        target: m.target().to_string(),
        kind,
        read_only: m.read_only(),
    })
}

/// A storage planner's mount as a spec mount (configs stored by the first
/// versions held these).
pub(crate) fn spec_mount(m: &Mount) -> SpecMount {
    let (target, read_only) = (m.target.clone(), m.read_only);
    match &m.kind {
        MountKind::Bind { source } => SpecMount::Bind {
            source: source.clone(),
            target,
            read_only,
            create_source: false,
        },
        MountKind::Volume {
            name,
            anonymous,
            nocopy,
        } => SpecMount::Volume {
            name: Some(name.clone()),
            anonymous: *anonymous,
            target,
            read_only,
            nocopy: *nocopy,
        },
        MountKind::Tmpfs {
            size_bytes,
            mode,
            noexec,
        } => SpecMount::Tmpfs {
            target,
            size_bytes: *size_bytes,
            mode: *mode,
            read_only,
            noexec: *noexec,
        },
    }
}

/// What to boot and run for a stored box.
pub(crate) fn record_options(record: &crate::state::BoxRecord) -> Result<RunOptions> {
    let (_, home) = crate::state::BoxStore::of_box_dir(&record.dir)?;
    run_options(&record.config.spec, &home)
}

/// What to boot and run for the (only) container of a resolved `spec`.
pub(crate) fn run_options(spec: &BoxSpec, home: &Home) -> Result<RunOptions> {
    let container = spec
        .containers
        .first()
        .ok_or_else(|| BoxError::Invalid("a box needs a container".into()))?;
    let (rootfs_dir, image) = match &container.root {
        RootSource::Dir { path } => (path.clone(), None),
        RootSource::Image {
            reference,
            digest: Some(digest),
        } => (image_root(home, digest)?, Some(reference.clone())),
        RootSource::Image {
            reference,
            digest: None,
        } => {
            return Err(BoxError::Invalid(format!(
                "image {reference} was not resolved to a digest"
            )))
        }
    };
    let storage = StorageOptions {
        read_only: container.storage.read_only,
        size_bytes: container.storage.layer_size_bytes,
        mounts: container
            .storage
            .mounts
            .iter()
            .map(storage_mount)
            .collect::<Result<_>>()?,
    };
    Ok(RunOptions {
        rootfs_dir,
        image,
        command: container.command(),
        env: container
            .process
            .env
            .iter()
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect(),
        workdir: container.process.cwd.clone(),
        user: container.process.user.clone(),
        vcpus: spec.sandbox.resources.vcpus,
        memory_mib: spec.sandbox.resources.memory_mib,
        kernel: spec.sandbox.vm.kernel.clone(),
        accel: spec.sandbox.vm.accel.to_string(),
        hostname: spec.sandbox.hostname.clone(),
        debug: spec.sandbox.vm.debug_guest,
        stdin: container.process.stdin,
        tty: container.process.tty,
        storage,
        builtin: false,
        network: Some((container.name.clone(), spec.sandbox.network.clone())),
    })
}
