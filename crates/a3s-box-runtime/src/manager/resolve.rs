//! Resolving a requested [`BoxSpec`] into the one the box keeps: the image
//! pulled (per the pull policy) and pinned by digest, its config merged with
//! the request as Docker merges it (entrypoint, command, environment,
//! working directory, user, `VOLUME`s, `EXPOSE`), `--volumes-from` expanded,
//! bind sources made canonical (created when `-v` asks), anonymous volumes
//! named. Every front end gets the same result for the same request.

use std::path::Path;

use a3s_box_core::spec::{
    BoxSpec, ContainerSpec, EnvVar, ExposedPort, Mount, RootSource, VolumesFrom,
};
use a3s_box_core::{BoxError, Result};

use super::{new_box_id, ImageManager, PullPolicy};
use crate::config::EngineConfig;
use crate::image::config::{merge, RunOverrides};
use crate::state::BoxStore;

/// How an image is obtained while resolving.
#[derive(Debug, Clone, Copy, Default)]
pub struct PullOptions {
    /// `--pull`.
    pub policy: PullPolicy,
    /// Show pull progress on stderr (a terminal front end).
    pub progress: bool,
}

/// Resolve `spec` (validated first) against `home`.
pub(crate) async fn resolve(
    config: &EngineConfig,
    mut spec: BoxSpec,
    pull: PullOptions,
) -> Result<BoxSpec> {
    spec.validate()?;
    let store = BoxStore::new(&config.home_dir());
    for container in &mut spec.containers {
        // The image's EXPOSEd ports join the sandbox's (`-P` publishes them).
        for port in resolve_root(config, container, pull).await? {
            if !spec.sandbox.network.expose.contains(&port) {
                spec.sandbox.network.expose.push(port);
            }
        }
        expand_volumes_from(&store, container)?;
        resolve_mounts(container)?;
    }
    spec.validate()?;
    crate::network::dataplane::check_spec(config, &spec.sandbox.network)?;
    Ok(spec)
}

/// Merge the image config (or, for a directory root, join entrypoint and
/// arguments) into the container's process; the image's `EXPOSE`d ports.
async fn resolve_root(
    config: &EngineConfig,
    c: &mut ContainerSpec,
    pull: PullOptions,
) -> Result<Vec<ExposedPort>> {
    let mut exposed = Vec::new();
    match &mut c.root {
        RootSource::Dir { path } => {
            if !path.is_dir() {
                return Err(BoxError::MissingAsset {
                    what: "root filesystem",
                    path: path.clone(),
                    hint: "give --rootfs an existing directory",
                });
            }
            c.process.args = c.command();
            c.entrypoint = None;
            if c.process.args.is_empty() {
                return Err(BoxError::Invalid(
                    "no command given: add -- CMD [ARGS...]".into(),
                ));
            }
        }
        RootSource::Image { reference, digest } => {
            let resolved = ImageManager::new(config)?
                .with_progress(pull.progress)
                .ensure(reference, pull.policy)
                .await?;
            let overrides = RunOverrides {
                entrypoint: c.entrypoint.take(),
                args: std::mem::take(&mut c.process.args),
                env: c.process.env.iter().map(EnvVar::to_string).collect(),
                working_dir: c.process.cwd.clone(),
                user: c.process.user.clone(),
            };
            let merged = merge(&resolved.config, &overrides)
                .map_err(|e| BoxError::Invalid(e.to_string()))?;
            c.process.args = merged.argv;
            c.process.env = merged
                .env
                .iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => EnvVar {
                        name: k.to_string(),
                        value: v.to_string(),
                    },
                    None => EnvVar {
                        name: kv.clone(),
                        value: String::new(),
                    },
                })
                .collect();
            c.process.cwd = Some(merged.working_dir);
            c.process.user = (!merged.user.is_empty()).then_some(merged.user);
            *digest = Some(resolved.digest.to_string());
            // The image's VOLUMEs become anonymous volumes unless mounted over.
            for path in &resolved.config.volumes {
                let target = path.trim_end_matches('/');
                let target = if target.is_empty() { "/" } else { target };
                if !c.storage.mounts.iter().any(|m| m.target() == target) {
                    c.storage.mounts.push(Mount::Volume {
                        name: None,
                        anonymous: true,
                        target: target.to_string(),
                        read_only: false,
                        nocopy: false,
                    });
                }
            }
            for port in &resolved.config.exposed_ports {
                match a3s_box_core::spec::parse_expose(port) {
                    Ok(ports) => exposed.extend(ports),
                    Err(e) => tracing::warn!("image EXPOSE {port:?} ignored: {e}"),
                }
            }
            // Labels of the image, under the box's own.
            for (k, v) in &resolved.config.labels {
                c.labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    if c.process.tty && !c.process.env.iter().any(|v| v.name == "TERM") {
        // As Docker does for `-t`.
        c.process.env.push(EnvVar {
            name: "TERM".into(),
            value: "xterm".into(),
        });
    }
    Ok(exposed)
}

/// `--volumes-from BOX[:ro|rw]`: the volumes and bind mounts of BOX (not its
/// tmpfs mounts) at the same paths, as Docker does. Its anonymous volumes
/// stay its own: here they are mounted by name, so `rm -v` of this box
/// keeps them. Mounts of this box's own flags win.
fn expand_volumes_from(store: &BoxStore, c: &mut ContainerSpec) -> Result<()> {
    for VolumesFrom { source, mode } in c.storage.volumes_from.clone() {
        let other = store.get(&source)?;
        for m in &other.config.container().storage.mounts {
            if matches!(m, Mount::Tmpfs { .. })
                || c.storage
                    .mounts
                    .iter()
                    .any(|own| own.target() == m.target())
            {
                continue;
            }
            let mut m = m.clone();
            match &mut m {
                Mount::Volume {
                    anonymous,
                    read_only,
                    ..
                } => {
                    *anonymous = false;
                    if let Some(mode) = mode {
                        *read_only = mode == a3s_box_core::spec::AccessMode::Ro;
                    }
                }
                Mount::Bind { read_only, .. } => {
                    if let Some(mode) = mode {
                        *read_only = mode == a3s_box_core::spec::AccessMode::Ro;
                    }
                }
                Mount::Tmpfs { .. } => {}
            }
            c.storage.mounts.push(m);
        }
    }
    Ok(())
}

/// Canonical bind sources (created first when `-v` asks), names for
/// anonymous volumes.
fn resolve_mounts(c: &mut ContainerSpec) -> Result<()> {
    for m in &mut c.storage.mounts {
        match m {
            Mount::Bind {
                source,
                create_source,
                ..
            } => {
                *source = bind_source(source, *create_source)?;
                *create_source = false;
            }
            Mount::Volume {
                name, anonymous, ..
            } if name.is_none() => {
                *name = Some(new_box_id().map_err(|e| BoxError::io("name a volume", e))?);
                *anonymous = true;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A host directory or regular file to share (a missing path is created as
/// a directory with `create`, as `-v` does).
fn bind_source(path: &Path, create: bool) -> Result<std::path::PathBuf> {
    if create && !path.exists() {
        std::fs::create_dir_all(path)
            .map_err(|e| BoxError::io(format!("create {}", path.display()), e))?;
    }
    let real = std::fs::canonicalize(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            BoxError::Invalid(format!(
                "bind source {} does not exist: create it first",
                path.display()
            ))
        } else {
            BoxError::io(format!("bind source {}", path.display()), e)
        }
    })?;
    if !real.is_dir() && !real.is_file() {
        return Err(BoxError::Invalid(format!(
            "bind source {} is neither a directory nor a regular file \
             (sockets, devices and fifos cannot be shared)",
            real.display()
        )));
    }
    Ok(real)
}
