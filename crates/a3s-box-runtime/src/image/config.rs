//! The image config (what `docker inspect` shows under `Config`) and how `run` options
//! override it, following Docker's rules exactly.

use std::collections::BTreeMap;

use oci_spec::image::ImageConfiguration;

/// `PATH` Docker sets when the image does not.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Working directory when neither the image nor `-w` names one.
pub const DEFAULT_WORKING_DIR: &str = "/";

/// Errors from reading an image config or building the process from it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config blob is not a valid image configuration.
    #[error("invalid image config: {source}")]
    Parse { source: oci_spec::OciSpecError },
    /// Neither the image nor the run options give a command.
    #[error("no command specified: the image has no Entrypoint or Cmd and none was given")]
    NoCommand,
}

/// The parts of an image config that decide how its workload runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, as `KEY=VALUE`.
    pub env: Vec<String>,
    /// `WorkingDir`, if set.
    pub working_dir: Option<String>,
    /// `User`, if set (`name`, `uid`, `uid:gid`, ...).
    pub user: Option<String>,
    /// `Volumes` (paths).
    pub volumes: Vec<String>,
    /// `ExposedPorts` (`80/tcp`).
    pub exposed_ports: Vec<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// Platform the image was built for.
    pub os: String,
    /// CPU architecture the image was built for.
    pub architecture: String,
}

impl ImageConfig {
    /// Parse a config blob (OCI or Docker image config JSON).
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let parsed = ImageConfiguration::from_reader(bytes)
            .map_err(|source| ConfigError::Parse { source })?;
        Ok(Self::from_oci(&parsed))
    }

    /// Take the run-relevant fields out of an `oci-spec` configuration.
    pub fn from_oci(image: &ImageConfiguration) -> Self {
        let mut out = Self {
            os: image.os().to_string(),
            architecture: image.architecture().to_string(),
            ..Self::default()
        };
        let Some(c) = image.config() else {
            return out;
        };
        out.entrypoint = c.entrypoint().clone().unwrap_or_default();
        out.cmd = c.cmd().clone().unwrap_or_default();
        out.env = c.env().clone().unwrap_or_default();
        out.working_dir = c.working_dir().clone().filter(|w| !w.is_empty());
        out.user = c.user().clone().filter(|u| !u.is_empty());
        out.volumes = c.volumes().clone().unwrap_or_default();
        out.exposed_ports = c.exposed_ports().clone().unwrap_or_default();
        out.labels = c
            .labels()
            .clone()
            .map(|l| l.into_iter().collect())
            .unwrap_or_default();
        out
    }
}

/// What the user gave `run` that can override the image config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOverrides {
    /// `--entrypoint`: replaces Entrypoint and drops the image's Cmd.
    /// `Some(vec![])` (Docker's `--entrypoint ""`) clears the entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Trailing arguments: replace Cmd when not empty.
    pub args: Vec<String>,
    /// `-e KEY=VALUE` (replaces or adds) or `-e KEY` without `=` (removes KEY).
    pub env: Vec<String>,
    /// `-w`: replaces WorkingDir.
    pub working_dir: Option<String>,
    /// `-u`: replaces User.
    pub user: Option<String>,
}

/// The process a box runs, after merging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Entrypoint followed by Cmd.
    pub argv: Vec<String>,
    /// Environment as `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory (absolute).
    pub working_dir: String,
    /// User spec, empty for the image default (root).
    pub user: String,
}

/// Merge the image config with run options as Docker does.
pub fn merge(image: &ImageConfig, run: &RunOverrides) -> Result<ProcessSpec, ConfigError> {
    let (entrypoint, image_cmd) = match &run.entrypoint {
        Some(ep) => (ep.clone(), Vec::new()),
        None => (image.entrypoint.clone(), image.cmd.clone()),
    };
    let cmd = if run.args.is_empty() {
        image_cmd
    } else {
        run.args.clone()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(ConfigError::NoCommand);
    }
    let mut env = image.env.clone();
    if !env.iter().any(|e| env_key(e) == "PATH") {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    for entry in &run.env {
        let key = env_key(entry);
        if entry.contains('=') {
            match env.iter_mut().find(|e| env_key(e) == key) {
                Some(slot) => slot.clone_from(entry),
                None => env.push(entry.clone()),
            }
        } else {
            env.retain(|e| env_key(e) != key);
        }
    }
    let working_dir = run
        .working_dir
        .clone()
        .or_else(|| image.working_dir.clone())
        .unwrap_or_else(|| DEFAULT_WORKING_DIR.to_owned());
    let user = run
        .user
        .clone()
        .or_else(|| image.user.clone())
        .unwrap_or_default();
    Ok(ProcessSpec {
        argv,
        env,
        working_dir,
        user,
    })
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
