//! Command-line syntax (clap). Parsing only; behaviour lives in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run OCI workloads in MicroVMs, each with its own kernel.
#[derive(Debug, Parser)]
#[command(name = "a3s-box", version, disable_help_subcommand = true)]
pub struct Cli {
    /// Log level for a3s-box's own diagnostics (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "A3S_BOX_LOG", default_value = "warn")]
    pub log_level: String,

    /// Allow plain HTTP to this registry (host[:port]); repeatable. Also
    /// `insecure-registries` in $A3S_HOME/config.json.
    #[arg(long = "insecure-registry", global = true, value_name = "REGISTRY")]
    pub insecure_registries: Vec<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a new box.
    Run(crate::cli_lazy::Lazy<RunArgs>),
    /// Create a box without starting it.
    Create(crate::cli_lazy::Lazy<RunArgs>),
    /// Start stopped boxes.
    Start(crate::cli_lazy::Lazy<StartArgs>),
    /// Stop running boxes (SIGTERM, then kill after -t seconds).
    Stop(crate::cli_lazy::Lazy<StopArgs>),
    /// Stop then start boxes.
    Restart(crate::cli_lazy::Lazy<StopArgs>),
    /// Send a signal to running boxes.
    Kill(crate::cli_lazy::Lazy<KillArgs>),
    /// Stop the vCPUs of running boxes (memory is kept).
    Pause(crate::cli_lazy::Lazy<BoxesArgs>),
    /// Resume paused boxes.
    Unpause(crate::cli_lazy::Lazy<BoxesArgs>),
    /// Rename a box.
    Rename(crate::cli_lazy::Lazy<RenameArgs>),
    /// Remove all stopped boxes.
    Prune(crate::cli_lazy::Lazy<PruneArgs>),
    /// System-wide commands.
    #[command(subcommand)]
    System(crate::cli_lazy::LazyGroup<SystemCommand>),
    /// Remove boxes.
    Rm(crate::cli_lazy::Lazy<RmArgs>),
    /// List boxes.
    Ps(crate::cli_lazy::Lazy<PsArgs>),
    /// Show a box's output.
    Logs(crate::cli_lazy::Lazy<LogsArgs>),
    /// Show boxes' configuration and state as JSON.
    Inspect(crate::cli_lazy::Lazy<BoxesArgs>),
    /// Wait for boxes to stop; print their exit codes.
    Wait(crate::cli_lazy::Lazy<BoxesArgs>),
    /// Run a command in a running box.
    Exec(crate::cli_lazy::Lazy<ExecArgs>),
    /// Attach to a running box's main process (detach with Ctrl-P Ctrl-Q).
    Attach(crate::cli_lazy::Lazy<AttachArgs>),
    /// Copy files between a box and the host (BOX:PATH, `-` for a tar stream).
    Cp(crate::cli_lazy::Lazy<CpArgs>),
    /// Show the processes of a box.
    Top(crate::cli_lazy::Lazy<TopArgs>),
    /// Show resource usage of boxes.
    Stats(crate::cli_lazy::Lazy<StatsArgs>),
    /// List a box's published ports, or the host side of one of them.
    Port(crate::cli_lazy::Lazy<PortArgs>),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(crate::cli_lazy::LazyGroup<crate::cli_storage::VolumeCommand>),
    /// Manage networks.
    #[command(subcommand)]
    Network(crate::cli_lazy::LazyGroup<crate::cli_network::NetworkCommand>),
    /// Show a box's changes to its image (A added, C changed, D deleted).
    Diff(crate::cli_lazy::Lazy<crate::cli_storage::DiffArgs>),
    /// Write a box's filesystem as a tar.
    Export(crate::cli_lazy::Lazy<crate::cli_storage::ExportArgs>),
    /// Make an image of a box: its changes become one new layer.
    Commit(crate::cli_lazy::Lazy<crate::cli_storage::CommitArgs>),
    /// Make a one-layer image of a tarball.
    Import(crate::cli_lazy::Lazy<crate::cli_storage::ImportArgs>),
    /// Show lifecycle events (follows until interrupted, or until --until).
    Events(crate::cli_lazy::Lazy<EventsArgs>),
    /// Manage pods: several containers in one VM.
    #[command(subcommand)]
    Pod(crate::cli_lazy::LazyGroup<crate::cli_pod::PodCommand>),
    /// Show the accelerator, kernel and versions this host uses.
    Info(crate::cli_lazy::Lazy<InfoArgs>),
    /// Show the version.
    Version(crate::cli_lazy::Lazy<VersionArgs>),
    /// Image verbs: pull, images, rmi, tag, image, image-inspect, history, login, logout.
    #[command(flatten)]
    Image(crate::cli_image::ImageCommand),
}

/// Output format of query commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Human-readable.
    #[default]
    Table,
    /// JSON, for scripts.
    Json,
}

/// Which VM to boot: options shared by commands that start or describe VMs.
#[derive(Debug, Args)]
pub struct VmArgs {
    /// Accelerator: auto picks KVM only where it can run our guest, else TCG.
    #[arg(long, env = "A3S_BOX_ACCEL", default_value = "auto")]
    pub accel: String,

    /// Guest kernel to boot instead of the built-in one (also A3S_BOX_KERNEL).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
}

/// `a3s-box run` / `create`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the box when it exits.
    #[arg(long)]
    pub rm: bool,

    /// Run in the background and print the box id.
    #[arg(short, long)]
    pub detach: bool,

    /// Name of the box (unique).
    #[arg(long)]
    pub name: Option<String>,

    /// Label (KEY=VALUE).
    #[arg(short, long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,

    /// Restart policy: no, on-failure[:N], always, unless-stopped.
    #[arg(long, default_value = "no")]
    pub restart: String,

    /// Run in this pod's VM (name or id): no boot when the pod runs.
    #[arg(long, value_name = "POD")]
    pub pod: Option<String>,

    /// When to pull the image: always, missing, never.
    #[arg(long, default_value = "missing")]
    pub pull: String,

    /// Root filesystem directory to boot (instead of an image); never modified.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,

    /// Number of vCPUs.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub cpus: u8,

    /// Memory of the VM (e.g. 512m, 1g).
    #[arg(short, long, default_value = "512m")]
    pub memory: String,

    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Read environment variables from a file (KEY=VALUE lines, # comments).
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,

    /// Program to run instead of the first word of COMMAND.
    #[arg(long)]
    pub entrypoint: Option<String>,

    /// Working directory inside the box.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// User inside the box: uid, uid:gid, name or name:group.
    #[arg(short, long)]
    pub user: Option<String>,

    /// Hostname of the box (default: its short id).
    #[arg(long)]
    pub hostname: Option<String>,

    /// Log guest-init's progress to the VM console.
    #[arg(long, hide = true)]
    pub debug_guest: bool,

    /// Keep stdin open and connect it to the workload.
    #[arg(short, long)]
    pub interactive: bool,

    /// Give the workload a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,

    #[command(flatten)]
    pub vm: VmArgs,

    #[command(flatten)]
    pub storage: crate::cli_storage::StorageArgs,

    #[command(flatten)]
    pub network: RunNetworkArgs,

    /// IMAGE [COMMAND [ARG...]]; with --rootfs, only COMMAND [ARG...].
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub args: Vec<String>,
}

/// `a3s-box port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// The box.
    pub r#box: String,
    /// A port of the box (PORT or PORT/PROTO).
    pub port: Option<String>,
}

/// The network flags of `run` and `create`.
#[derive(Debug, Default, Args)]
pub struct RunNetworkArgs {
    /// Publish a box port on the host: [IP:][HOST_PORT:]BOX_PORT[/tcp|/udp],
    /// ranges as 8000-8010:80-90 (no host port: a free one).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Publish every exposed port (the image's EXPOSE and --expose) on a
    /// free host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or range (PORT[/tcp|/udp]) without publishing it.
    #[arg(long, value_name = "PORT")]
    pub expose: Vec<String>,
    /// Network to join: default (or bridge), none, a network's name, or
    /// name=NET,alias=A,ip=IP; repeat for several networks.
    #[arg(long = "network", visible_alias = "net", value_name = "NETWORK")]
    pub networks: Vec<String>,
    /// Another name other boxes of the network resolve to this box.
    #[arg(
        long = "network-alias",
        visible_alias = "net-alias",
        value_name = "ALIAS"
    )]
    pub network_aliases: Vec<String>,
    /// The box's IPv4 address on its network.
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// Name server the box's names are forwarded to.
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// DNS search domain.
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// Resolver option (ndots:2, edns0).
    #[arg(long = "dns-option", visible_alias = "dns-opt", value_name = "OPTION")]
    pub dns_options: Vec<String>,
    /// Add a line to /etc/hosts: NAME:IP, or NAME:host-gateway for the host.
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<String>,
    /// The MAC address of the box's interface.
    #[arg(long = "mac-address", value_name = "MAC")]
    pub mac_address: Option<String>,
    /// Allow egress only to these destinations (NAME, *.DOMAIN, IP or CIDR,
    /// each with an optional :PORT); without it, anywhere.
    #[arg(long = "egress-allow", value_name = "RULE")]
    pub egress_allow: Vec<String>,
}

/// `a3s-box events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Events since a time (RFC 3339) or a duration ago (10s, 5m, 2h).
    #[arg(long)]
    pub since: Option<String>,
    /// Stop at this time (RFC 3339) or duration ago; without it, follow.
    #[arg(long)]
    pub until: Option<String>,
    /// Filter: type=, event=, container=, label=KEY[=VALUE].
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `a3s-box info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,

    #[command(flatten)]
    pub vm: VmArgs,
}

/// `a3s-box version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// Commands taking one or more boxes.
#[derive(Debug, Args)]
pub struct BoxesArgs {
    /// Box names or ids (unique prefixes work).
    #[arg(required = true)]
    pub boxes: Vec<String>,
}

/// `a3s-box stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before killing the VM (-1: no limit).
    #[arg(short, long, default_value_t = 10, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-1..))]
    pub time: i64,
    /// Boxes.
    #[arg(required = true)]
    pub boxes: Vec<String>,
}

/// `a3s-box kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal name or number.
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    /// Boxes.
    #[arg(required = true)]
    pub boxes: Vec<String>,
}

/// `a3s-box rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill running boxes first.
    #[arg(short, long)]
    pub force: bool,
    /// Remove the boxes' anonymous volumes too.
    #[arg(short, long)]
    pub volumes: bool,
    /// Boxes.
    #[arg(required = true)]
    pub boxes: Vec<String>,
}

/// `a3s-box ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all boxes (default: running ones).
    #[arg(short, long)]
    pub all: bool,
    /// Only ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Full ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter: name=, id=, label=KEY[=VALUE], status=, pod=.
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Show the pod of each box (podman's `ps --pod`).
    #[arg(long)]
    pub pod: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `a3s-box logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep following the output.
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines since a time (RFC 3339) or a duration ago (10s, 5m, 2h).
    #[arg(long)]
    pub since: Option<String>,
    /// Only the last N lines (`all`: every line).
    #[arg(long, value_parser = parse_tail)]
    pub tail: Option<Tail>,
    /// Prefix each line with its timestamp.
    #[arg(short, long)]
    pub timestamps: bool,
    /// The box.
    pub r#box: String,
}

/// `a3s-box start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach to the box's output and exit with its code.
    #[arg(short, long)]
    pub attach: bool,
    /// Boxes.
    #[arg(required = true)]
    pub boxes: Vec<String>,
}

/// `a3s-box rename`.
#[derive(Debug, Args)]
pub struct RenameArgs {
    /// The box.
    pub r#box: String,
    /// Its new name.
    pub new_name: String,
}

/// `a3s-box prune` / `system prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation (there is none; accepted for Docker compatibility).
    #[arg(short, long)]
    pub force: bool,
}

/// `a3s-box system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Remove stopped boxes and cached root images.
    Prune(PruneArgs),
    /// Show disk used by images, boxes and volumes, and what is reclaimable.
    Df,
}

/// `a3s-box exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open and connect it to the process.
    #[arg(short, long)]
    pub interactive: bool,

    /// Give the process a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,

    /// Start the process and return at once.
    #[arg(short, long)]
    pub detach: bool,

    /// User: uid, uid:gid, name or name:group (default: the box's user).
    #[arg(short, long)]
    pub user: Option<String>,

    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Read environment variables from a file.
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,

    /// Working directory (default: the box's).
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,

    /// COMMAND [ARG...].
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// `a3s-box attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Do not connect our stdin.
    #[arg(long)]
    pub no_stdin: bool,

    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
}

/// `a3s-box cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// BOX:SRC or a host path (`-`: a tar stream on stdin).
    pub src: String,
    /// BOX:DST or a host path (`-`: a tar stream on stdout).
    pub dst: String,
}

/// `a3s-box top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,

    /// Options for the box's own `ps` (default: a built-in `ps -ef`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

/// `a3s-box stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one sample and exit.
    #[arg(long)]
    pub no_stream: bool,

    /// Show all boxes (default: running ones).
    #[arg(short, long)]
    pub all: bool,

    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,

    /// Boxes (default: all running).
    pub boxes: Vec<String>,
}

/// `logs --tail`: a number of lines, or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail(pub Option<usize>);

fn parse_tail(text: &str) -> Result<Tail, String> {
    match text {
        "all" => Ok(Tail(None)),
        n => n
            .parse()
            .map(|n| Tail(Some(n)))
            .map_err(|_| format!("use a number of lines or all, not {n:?}")),
    }
}
