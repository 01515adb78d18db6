//! `volume create|ls|inspect|rm|prune`, `rm -v`, and the storage flags of
//! `run`/`create`.

use a3s_box_runtime::home::Home;
use a3s_box_runtime::manager::{human_size, BoxManager, ImageManager, PullPolicy};
use a3s_box_runtime::state::BoxRecord;
use a3s_box_runtime::storage::volumes::{Volume, VolumeStore};
use a3s_box_runtime::storage::{self, Mount, MountKind, StorageOptions};
use anyhow::Result;
use serde_json::json;

use crate::cli::Format;
use crate::cli_storage::{StorageArgs, VolumeCommand};

/// Run one `volume` verb.
pub fn dispatch(command: VolumeCommand) -> Result<u8> {
    let engine = super::engine()?;
    match command {
        VolumeCommand::Create(a) => {
            let labels = super::run::parse_labels(&a.labels)?;
            println!("{}", engine.volume_create(a.name.as_deref(), labels)?.name);
            Ok(0)
        }
        VolumeCommand::Ls(a) => {
            let all = engine.volume_list()?;
            match (a.quiet, a.format) {
                (true, _) => all.iter().for_each(|v| println!("{}", v.name)),
                (false, Format::Json) => println!("{}", serde_json::to_string_pretty(&all)?),
                (false, Format::Table) => {
                    println!("DRIVER    VOLUME NAME");
                    all.iter()
                        .for_each(|v| println!("{:<10}{}", v.driver, v.name));
                }
            }
            Ok(0)
        }
        VolumeCommand::Inspect(a) => {
            let views = a
                .names
                .iter()
                .map(|n| engine.volume_inspect(n))
                .collect::<a3s_box_core::Result<Vec<_>>>()?;
            println!("{}", serde_json::to_string_pretty(&views)?);
            Ok(0)
        }
        VolumeCommand::Rm(a) => {
            let mut failed = false;
            for name in &a.names {
                match engine.volume_remove(name, a.force) {
                    Ok(()) => println!("{name}"),
                    Err(e) => {
                        eprintln!("a3s-box: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { super::EXIT_BOX_ERROR } else { 0 })
        }
        VolumeCommand::Prune(a) => {
            let (removed, freed) = engine.volume_prune(a.all)?;
            println!("Deleted Volumes:");
            removed.iter().for_each(|n| println!("{n}"));
            println!("\nTotal reclaimed space: {}", human_size(freed));
            Ok(0)
        }
    }
}

/// `--volumes-from BOX[:ro|rw]`: the volumes and bind mounts of BOX (not
/// its tmpfs mounts), as Docker does. Its anonymous volumes stay its own:
/// here they are mounted by name, so `rm -v` of this box keeps them.
fn volumes_from(boxes: &BoxManager, spec: &str) -> Result<Vec<Mount>> {
    let (name, mode) = match spec.rsplit_once(':') {
        Some((name, "ro")) => (name, Some(true)),
        Some((name, "rw")) => (name, Some(false)),
        Some((_, other)) => {
            anyhow::bail!("invalid --volumes-from {spec:?}: unknown mode {other:?}: use ro or rw")
        }
        None => (spec, None),
    };
    let record = boxes.store().get(name)?;
    Ok(record
        .config
        .options
        .storage
        .mounts
        .iter()
        .filter(|m| !matches!(m.kind, MountKind::Tmpfs { .. }))
        .map(|m| Mount {
            target: m.target.clone(),
            kind: match &m.kind {
                MountKind::Volume { name, nocopy, .. } => MountKind::Volume {
                    name: name.clone(),
                    anonymous: false,
                    nocopy: *nocopy,
                },
                other => other.clone(),
            },
            read_only: mode.unwrap_or(m.read_only),
        })
        .collect())
}

/// The storage options of `run`/`create` flags, plus an anonymous volume for
/// each `VOLUME` of `image` that no flag mounts over.
pub async fn options(args: &StorageArgs, image: Option<&str>) -> Result<StorageOptions> {
    let mut mounts: Vec<Mount> = Vec::new();
    for v in &args.volumes {
        mounts.push(storage::parse_volume(v)?);
    }
    for m in &args.mounts {
        mounts.push(storage::parse_mount(m)?);
    }
    for t in &args.tmpfs {
        mounts.push(storage::parse_tmpfs(t)?);
    }
    if !args.volumes_from.is_empty() {
        let boxes = BoxManager::new(&Home::from_env()?);
        for spec in &args.volumes_from {
            for m in volumes_from(&boxes, spec)? {
                // Flags of this box win over what it inherits.
                if !mounts.iter().any(|own| own.target == m.target) {
                    mounts.push(m);
                }
            }
        }
    }
    if let Some(image) = image {
        let resolved = ImageManager::new(&Home::from_env()?)?
            .ensure(image, PullPolicy::Never)
            .await?;
        for path in &resolved.config.volumes {
            let target = path.trim_end_matches('/');
            if !mounts.iter().any(|m| m.target == target) {
                mounts.push(storage::parse_volume(path)?);
            }
        }
    }
    storage::spec::check_unique_targets(&mounts)?;
    let mut size_bytes = None;
    for opt in &args.storage_opts {
        size_bytes = Some(storage::parse_storage_opt(opt)?);
    }
    Ok(StorageOptions {
        read_only: args.read_only,
        size_bytes,
        mounts,
    })
}
