//! Command-line syntax of `network`.

use clap::{Args, Subcommand};

use crate::cli::Format;

/// `a3s-box network …`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network (boxes on it reach each other by name).
    Create(NetworkCreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(NetworkLsArgs),
    /// Show networks as JSON.
    Inspect(NetworkNamesArgs),
    /// Remove networks (refused while a box uses them).
    #[command(alias = "remove")]
    Rm(NetworkNamesArgs),
    /// Remove networks no box uses.
    Prune(NetworkPruneArgs),
    /// Put a box on a network (a running box at once, a stopped one at
    /// its next start).
    Connect(NetworkConnectArgs),
    /// Take a box off a network.
    Disconnect(NetworkDisconnectArgs),
}

/// `network connect`.
#[derive(Debug, Args)]
pub struct NetworkConnectArgs {
    /// More names the box answers to on the network.
    #[arg(long = "alias", value_name = "NAME")]
    pub aliases: Vec<String>,
    /// Its address on the network (default: the next free one).
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// The network (name or id).
    pub network: String,
    /// The box (name or id).
    #[arg(value_name = "BOX")]
    pub r#box: String,
}

/// `network disconnect`.
#[derive(Debug, Args)]
pub struct NetworkDisconnectArgs {
    /// Accepted for Docker compatibility (a box is always taken off).
    #[arg(short, long)]
    pub force: bool,
    /// The network (name or id).
    pub network: String,
    /// The box (name or id).
    #[arg(value_name = "BOX")]
    pub r#box: String,
}

/// `network create`.
#[derive(Debug, Args)]
pub struct NetworkCreateArgs {
    /// Subnet in CIDR form (default: a free /24 of 10.89.0.0/16).
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// Gateway of the subnet (default: its first address).
    #[arg(long, value_name = "IP")]
    pub gateway: Option<String>,
    /// No egress beyond the network.
    #[arg(long)]
    pub internal: bool,
    /// Label (KEY=VALUE).
    #[arg(short, long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Allow egress only to these destinations, for every box of the
    /// network (NAME, *.DOMAIN, IP or CIDR, each with an optional :PORT).
    #[arg(long = "egress-allow", value_name = "RULE")]
    pub egress_allow: Vec<String>,
    /// Accepted for Docker compatibility: the only driver is `bridge`.
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// The name.
    pub name: String,
}

/// `network ls`.
#[derive(Debug, Args)]
pub struct NetworkLsArgs {
    /// Only names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `network inspect` / `rm`.
#[derive(Debug, Args)]
pub struct NetworkNamesArgs {
    /// Network names or ids.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `network prune`.
#[derive(Debug, Args)]
pub struct NetworkPruneArgs {
    /// Do not ask (there is no prompt; accepted for Docker compatibility).
    #[arg(short, long)]
    pub force: bool,
}
