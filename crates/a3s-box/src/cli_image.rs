//! Command-line syntax of the image verbs (clap). Parsing only; behaviour lives in
//! `commands::image`. Flattened into the top-level verbs by `cli::Command`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::Format;

/// Image verbs at the top level (`pull`, `images`, …) as Docker has them.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pull an image from a registry.
    Pull(PullArgs),
    /// List images.
    Images(ImagesArgs),
    /// Remove images.
    Rmi(RmiArgs),
    /// Give an image another name: tag SOURCE TARGET.
    Tag(TagArgs),
    /// Show images' details as JSON (same as `image inspect`).
    #[command(name = "image-inspect")]
    ImageInspect(InspectArgs),
    /// Show an image's build steps.
    History(HistoryArgs),
    /// Manage images (inspect, prune, ls, rm, pull, tag, history, save, load, push).
    Image(ImageArgs),
    /// Write images to a tarball (Docker archive, or OCI layout with --format oci).
    Save(SaveArgs),
    /// Load images from a Docker archive or OCI layout tarball.
    Load(LoadArgs),
    /// Push an image to a registry.
    Push(PushArgs),
    /// Log in to a registry.
    Login(LoginArgs),
    /// Log out of a registry.
    Logout(LogoutArgs),
}

/// `a3s-box image …`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ImageSubcommand,
}

/// `a3s-box image VERB`.
#[derive(Debug, Subcommand)]
pub enum ImageSubcommand {
    /// Show images' details as JSON.
    Inspect(InspectArgs),
    /// Remove blobs and unpacked roots no image name uses.
    Prune(PruneArgs),
    /// List images.
    Ls(ImagesArgs),
    /// Remove images.
    Rm(RmiArgs),
    /// Pull an image.
    Pull(PullArgs),
    /// Tag an image.
    Tag(TagArgs),
    /// Show an image's build steps.
    History(HistoryArgs),
    /// Write images to a tarball.
    Save(SaveArgs),
    /// Load images from a tarball.
    Load(LoadArgs),
    /// Push an image to a registry.
    Push(PushArgs),
}

/// `a3s-box pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Print only the image reference.
    #[arg(short, long)]
    pub quiet: bool,
    /// Platform to pick from a multi-platform image (os/arch[/variant]).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// Image reference (name[:tag] or name@digest).
    pub reference: String,
}

/// `a3s-box images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only image ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Full image ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `a3s-box rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove even when a box uses the image or an id names several references.
    #[arg(short, long)]
    pub force: bool,
    /// Image names or ids.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `a3s-box tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Existing image name or id.
    pub source: String,
    /// New name.
    pub target: String,
}

/// `a3s-box image inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image names or ids.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `a3s-box history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Do not truncate the CREATED BY column.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Image name or id.
    pub image: String,
}

/// `a3s-box image prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation (accepted for Docker compatibility; never asks).
    #[arg(short, long)]
    pub force: bool,
}

/// `a3s-box login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User name.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible in the process list; prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Registry host (default: Docker Hub).
    #[arg(default_value = "docker.io")]
    pub registry: String,
}

/// `a3s-box logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host (default: Docker Hub).
    #[arg(default_value = "docker.io")]
    pub registry: String,
}

/// `a3s-box save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Archive layout: docker (as `docker save`) or oci (an OCI image layout).
    #[arg(long, default_value = "docker", value_parser = ["docker", "oci"])]
    pub format: String,
    /// Image names or ids.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `a3s-box load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from this file instead of standard input.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print nothing.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `a3s-box push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Print only the pushed reference.
    #[arg(short, long)]
    pub quiet: bool,
    /// Local image name or id.
    pub image: String,
    /// Where to push (default: the image's own name).
    pub destination: Option<String>,
}
