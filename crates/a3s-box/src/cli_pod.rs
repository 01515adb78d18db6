//! `a3s-box pod ...` syntax (podman's pod verbs). Parsing only.

use clap::{Args, Subcommand};

use crate::cli::{Format, PsArgs};

/// The pod verbs.
#[derive(Debug, Subcommand)]
pub enum PodCommand {
    /// Create a pod: one VM its containers share (booted at its start).
    Create(Box<PodCreateArgs>),
    /// List pods.
    #[command(alias = "list")]
    Ls(PodLsArgs),
    /// List containers with their pods (`ps --pod`).
    Ps(PsArgs),
    /// Show pods' configuration and state as JSON.
    Inspect(PodsArgs),
    /// Start pods: their VM, then every container of each.
    Start(PodsArgs),
    /// Stop pods: every container (SIGTERM, SIGKILL after -t), then the VM.
    Stop(PodStopArgs),
    /// Remove pods (-f: stop them and remove their containers first).
    Rm(PodRmArgs),
}

/// `pod create`.
#[derive(Debug, Args)]
pub struct PodCreateArgs {
    /// Name of the pod (unique among pods).
    #[arg(long)]
    pub name: Option<String>,
    /// Label (KEY=VALUE).
    #[arg(short, long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// vCPUs of the pod's VM.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub cpus: u8,
    /// Memory of the pod's VM (e.g. 512m, 1g).
    #[arg(short, long, default_value = "512m")]
    pub memory: String,
    /// Hostname of its containers (default: the pod's name).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Accelerator: auto, kvm or tcg.
    #[arg(long, env = "A3S_BOX_ACCEL", default_value = "auto")]
    pub accel: String,
    /// The pod's network (its containers share it), as `run` takes it.
    #[command(flatten)]
    pub network: crate::cli::RunNetworkArgs,
}

/// `pod ls`.
#[derive(Debug, Args)]
pub struct PodLsArgs {
    /// Only ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Full ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// Verbs taking pods.
#[derive(Debug, Args)]
pub struct PodsArgs {
    /// Pod names or ids (unique prefixes work).
    #[arg(required = true)]
    pub pods: Vec<String>,
}

/// `pod stop`.
#[derive(Debug, Args)]
pub struct PodStopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    /// Pods.
    #[arg(required = true)]
    pub pods: Vec<String>,
}

/// `pod rm`.
#[derive(Debug, Args)]
pub struct PodRmArgs {
    /// Stop running pods and remove their containers first.
    #[arg(short, long)]
    pub force: bool,
    /// Pods.
    #[arg(required = true)]
    pub pods: Vec<String>,
}
