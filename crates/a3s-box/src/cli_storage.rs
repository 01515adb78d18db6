//! Command-line syntax of storage: the `run`/`create` storage flags and the
//! `volume` verbs.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::Format;

/// Storage flags of `run` and `create`.
#[derive(Debug, Args, Default)]
pub struct StorageArgs {
    /// Bind mount a host directory (/host:/box[:ro]), a named volume
    /// (name:/box[:ro,nocopy], created on first use) or an anonymous volume
    /// (/box). An empty volume is filled from the image unless `nocopy`.
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:OPTS]")]
    pub volumes: Vec<String>,

    /// A mount: type=bind|volume|tmpfs,source=…,target=…[,readonly]
    /// [,volume-nocopy][,tmpfs-size=…][,tmpfs-mode=…].
    #[arg(long = "mount", value_name = "SPEC")]
    pub mounts: Vec<String>,

    /// Mount the volumes and bind mounts of another box at the same paths
    /// (`:ro`/`:rw` override their mode).
    #[arg(long = "volumes-from", value_name = "BOX[:ro|rw]")]
    pub volumes_from: Vec<String>,

    /// Mount a tmpfs at PATH (options: size=, mode=, ro, exec).
    #[arg(long = "tmpfs", value_name = "PATH[:OPTS]")]
    pub tmpfs: Vec<String>,

    /// Make the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,

    /// Storage option: size=N caps the box's writable layer (default 10g).
    #[arg(long = "storage-opt", value_name = "size=N")]
    pub storage_opts: Vec<String>,
}

/// `a3s-box volume …`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (a name is made up when none is given).
    Create(VolumeCreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(VolumeLsArgs),
    /// Show volumes as JSON.
    Inspect(VolumeNamesArgs),
    /// Remove volumes (refused while a box uses them unless -f).
    #[command(alias = "remove")]
    Rm(VolumeRmArgs),
    /// Remove volumes no box uses (anonymous ones only unless -a).
    Prune(VolumePruneArgs),
}

/// `volume create`.
#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// Label (KEY=VALUE).
    #[arg(short, long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// The name.
    pub name: Option<String>,
}

/// `volume ls`.
#[derive(Debug, Args)]
pub struct VolumeLsArgs {
    /// Only names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `volume inspect`.
#[derive(Debug, Args)]
pub struct VolumeNamesArgs {
    /// Volume names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `volume rm`.
#[derive(Debug, Args)]
pub struct VolumeRmArgs {
    /// Remove even when boxes use them.
    #[arg(short, long)]
    pub force: bool,
    /// Volume names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `volume prune`.
#[derive(Debug, Args)]
pub struct VolumePruneArgs {
    /// Named volumes too, not only anonymous ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask (there is no prompt; accepted for Docker compatibility).
    #[arg(short, long)]
    pub force: bool,
}

/// `a3s-box diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
}

/// `a3s-box export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write the tar to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
}

/// `a3s-box commit`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Commit message.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author.
    #[arg(short, long)]
    pub author: Option<String>,
    /// Dockerfile instruction applied to the config (CMD, ENTRYPOINT, ENV,
    /// WORKDIR, USER, EXPOSE, LABEL, VOLUME).
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
    /// REPOSITORY[:TAG] for the new image.
    pub reference: Option<String>,
}

/// `a3s-box import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Commit message.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Dockerfile instruction applied to the config.
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// A tarball (`-` for stdin).
    pub file: String,
    /// REPOSITORY[:TAG] for the new image.
    pub reference: Option<String>,
}
