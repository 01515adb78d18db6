//! [`ContainerSpec`] and [`ProcessSpec`]: what runs, from which root, with
//! which storage and restart policy; the `-e`/`--env-file`/`--label`
//! syntaxes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::storage::StorageSpec;
use super::{rules, Signal, SpecError};
use crate::status::RestartPolicy;
use crate::user::UserSpec;

/// One container: its root, its main process and how it is kept.
///
/// The process fields are requests over a base: for the main process of
/// an image, the image's config (the engine merges them as Docker does);
/// for an exec, the container's main process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// `--name` (`None`: the engine makes one up).
    #[serde(default)]
    pub name: Option<String>,
    /// `--label KEY=VALUE`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What the root filesystem is made from.
    pub root: RootSource,
    /// `--entrypoint`: replaces the image's ENTRYPOINT and drops its CMD
    /// (`Some(vec![])` clears the entrypoint; `None` keeps the image's).
    /// For a `dir` root, the command is the entrypoint followed by
    /// `process.args`.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// The main process (`args` replace the image's CMD when not empty).
    #[serde(default)]
    pub process: ProcessSpec,
    /// Mounts, read-only root, writable layer size.
    #[serde(default)]
    pub storage: StorageSpec,
    /// `--restart`.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// `--rm`: remove the box when it exits.
    #[serde(default)]
    pub auto_remove: bool,
    /// `--stop-signal` (`None`: the image's STOPSIGNAL, else SIGTERM).
    #[serde(default)]
    pub stop_signal: Option<Signal>,
    /// `--stop-timeout`: seconds from the stop signal to SIGKILL (`None`:
    /// the engine's default).
    #[serde(default)]
    pub stop_timeout_secs: Option<u64>,
}

/// What a container's root filesystem is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RootSource {
    /// An OCI image.
    Image {
        /// The reference as the user gave it (`alpine`, `ghcr.io/o/r:tag`).
        reference: String,
        /// The content digest it resolved to (`sha256:…`), filled in by
        /// the engine so the box keeps its image when the tag moves.
        #[serde(default)]
        digest: Option<String>,
    },
    /// `--rootfs DIR`: a host directory, never modified.
    Dir {
        /// The directory (absolute).
        path: PathBuf,
    },
}

/// A process to run: a container's main process, an exec, a helper.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessSpec {
    /// Program and arguments (for a container's main process: its CMD).
    pub args: Vec<String>,
    /// Variables set on top of the base environment, in order (a later
    /// one of the same name wins).
    pub env: Vec<EnvVar>,
    /// `--workdir`: absolute working directory (`None`: the base's).
    pub cwd: Option<String>,
    /// `--user`: `uid`, `uid:gid`, `name` or `name:group` (`None`: the
    /// base's).
    pub user: Option<String>,
    /// `-t`: run on a pseudo-terminal.
    pub tty: bool,
    /// `-i`: keep stdin open for the client.
    pub stdin: bool,
}

/// One environment variable, written `NAME=VALUE` (also in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvVar {
    /// Its name: not empty, no `=`.
    pub name: String,
    /// Its value.
    pub value: String,
}

impl EnvVar {
    /// `name=value`, checked.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Result<Self, SpecError> {
        let var = EnvVar {
            name: name.into(),
            value: value.into(),
        };
        var.validate()?;
        Ok(var)
    }

    /// Names are not empty and have no `=`; nothing has a NUL byte.
    pub fn validate(&self) -> Result<(), SpecError> {
        let bad = |reason: &str| SpecError::invalid("", self.to_string(), reason.to_string());
        if self.name.is_empty() {
            return Err(bad("the variable name is empty: use NAME=VALUE"));
        }
        if self.name.contains('=') {
            return Err(bad("a variable name has no '='"));
        }
        if self.name.contains('\0') || self.value.contains('\0') {
            return Err(bad("environment variables have no NUL bytes"));
        }
        Ok(())
    }
}

impl fmt::Display for EnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)
    }
}

impl FromStr for EnvVar {
    type Err = SpecError;

    /// Strictly `NAME=VALUE` (see [`parse_env`] for `-e NAME`).
    fn from_str(text: &str) -> Result<Self, SpecError> {
        match text.split_once('=') {
            Some((name, value)) => EnvVar::new(name, value).map_err(|e| e.with_field("--env")),
            None => Err(SpecError::invalid("--env", text, "use NAME=VALUE")),
        }
    }
}

impl TryFrom<String> for EnvVar {
    type Error = SpecError;

    fn try_from(text: String) -> Result<Self, SpecError> {
        text.parse()
    }
}

impl From<EnvVar> for String {
    fn from(v: EnvVar) -> String {
        v.to_string()
    }
}

/// `-e` values in order: `NAME=VALUE` sets; `NAME` copies NAME from the
/// caller's environment through `lookup`, and is left out when unset (as
/// Docker does).
pub fn parse_env<S: AsRef<str>>(
    items: &[S],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<EnvVar>, SpecError> {
    let mut env = Vec::with_capacity(items.len());
    for item in items {
        let item = item.as_ref();
        if item.contains('=') {
            env.push(item.parse()?);
        } else if item.is_empty() {
            return Err(SpecError::invalid("--env", item, "use NAME=VALUE or NAME"));
        } else if let Some(value) = lookup(item) {
            env.push(EnvVar::new(item, value).map_err(|e| e.with_field("--env"))?);
        }
    }
    Ok(env)
}

/// The text of an `--env-file`: a `NAME=VALUE` or `NAME` per line (leading
/// blanks ignored), blank lines and `#` comments skipped; `NAME` alone is
/// looked up as in [`parse_env`]. Names have no blanks, as in Docker.
pub fn parse_env_file(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<EnvVar>, SpecError> {
    let mut items = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line
            .split_once('=')
            .map_or(line.trim_end(), |(name, _)| name);
        if name.contains(char::is_whitespace) {
            return Err(SpecError::invalid(
                "--env-file",
                line,
                format!("line {}: the variable name {name:?} has blanks", n + 1),
            ));
        }
        items.push(if line.contains('=') { line } else { name });
    }
    parse_env(&items, lookup).map_err(|e| e.with_field("--env-file"))
}

/// `--label KEY=VALUE` (or `KEY`, an empty value).
pub fn parse_label(text: &str) -> Result<(String, String), SpecError> {
    let (key, value) = text.split_once('=').unwrap_or((text, ""));
    if key.is_empty() {
        return Err(SpecError::invalid(
            "--label",
            text,
            "the key is empty: use KEY=VALUE",
        ));
    }
    if text.contains('\0') {
        return Err(SpecError::invalid(
            "--label",
            text,
            "labels have no NUL bytes",
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Every `--label`, a later one of the same key winning.
pub fn parse_labels<S: AsRef<str>>(items: &[S]) -> Result<BTreeMap<String, String>, SpecError> {
    items.iter().map(|l| parse_label(l.as_ref())).collect()
}

impl ProcessSpec {
    /// Check arguments, environment, working directory and user; fields
    /// are relative (`cwd`, `env[2]`). An empty `args` is allowed (the
    /// base supplies the command); see [`ProcessSpec::validate_exec`].
    pub fn validate(&self) -> Result<(), SpecError> {
        for (i, arg) in self.args.iter().enumerate() {
            if arg.contains('\0') {
                return Err(SpecError::invalid(
                    format!("args[{i}]"),
                    arg,
                    "arguments have no NUL bytes",
                ));
            }
        }
        for (i, var) in self.env.iter().enumerate() {
            var.validate().map_err(|e| e.within_item("env", i))?;
        }
        if let Some(cwd) = &self.cwd {
            if !cwd.starts_with('/') {
                return Err(SpecError::invalid(
                    "cwd",
                    cwd,
                    "the working directory must be an absolute path",
                ));
            }
            if cwd.contains('\0') {
                return Err(SpecError::invalid("cwd", cwd, "a path has no NUL bytes"));
            }
        }
        if let Some(user) = &self.user {
            if user.is_empty() {
                return Err(SpecError::invalid(
                    "user",
                    user,
                    "the user is empty: leave it out for the default, or use uid, uid:gid, name or name:group",
                ));
            }
            UserSpec::parse(user).map_err(|reason| SpecError::invalid("user", user, reason))?;
        }
        Ok(())
    }

    /// [`ProcessSpec::validate`], and there is a command to run (an exec
    /// has no image to supply one).
    pub fn validate_exec(&self) -> Result<(), SpecError> {
        self.validate()?;
        if self.args.is_empty() {
            return Err(SpecError::missing(
                "args",
                "no command given: name the program to run",
            ));
        }
        Ok(())
    }
}

/// `sha256:<64 hex>`, or another OCI digest `ALGORITHM:ENCODED`.
fn check_digest(digest: &str) -> Result<(), SpecError> {
    let bad = || {
        SpecError::invalid(
            "root.image.digest",
            digest,
            "a digest is ALGORITHM:HEX, as in sha256: followed by 64 hex digits",
        )
    };
    let (algorithm, encoded) = digest.split_once(':').ok_or_else(bad)?;
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let encoded_ok = match algorithm {
        "sha256" => encoded.len() == 64 && hex(encoded),
        "sha512" => encoded.len() == 128 && hex(encoded),
        _ => {
            encoded.len() >= 32
                && encoded
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
        }
    };
    if algorithm_ok && encoded_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

impl ContainerSpec {
    /// A container of `root` running `process`, everything else default.
    pub fn new(root: RootSource, process: ProcessSpec) -> Self {
        ContainerSpec {
            name: None,
            labels: BTreeMap::new(),
            root,
            entrypoint: None,
            process,
            storage: StorageSpec::default(),
            restart: RestartPolicy::No,
            auto_remove: false,
            stop_signal: None,
            stop_timeout_secs: None,
        }
    }

    /// The command as far as the spec knows it: the entrypoint, if given,
    /// followed by the arguments.
    pub fn command(&self) -> Vec<String> {
        self.entrypoint
            .iter()
            .flatten()
            .chain(&self.process.args)
            .cloned()
            .collect()
    }

    /// Check the container alone; fields are relative (`process.cwd`).
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(name) = &self.name {
            rules::check_name("name", "box", name)?;
        }
        for key in self.labels.keys() {
            if key.is_empty() {
                return Err(SpecError::invalid(
                    "labels",
                    "",
                    "a label key cannot be empty: use KEY=VALUE",
                ));
            }
        }
        match &self.root {
            RootSource::Image { reference, digest } => {
                if reference.is_empty()
                    || reference
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(SpecError::invalid(
                        "root.image.reference",
                        reference,
                        "an image reference is not empty and has no blanks, as in alpine:3.20",
                    ));
                }
                if let Some(digest) = digest {
                    check_digest(digest)?;
                }
            }
            RootSource::Dir { path } => {
                rules::host_path("root.dir.path", path)?;
                if self.command().is_empty() {
                    return Err(SpecError::missing(
                        "process.args",
                        "no command given: a box of a root directory needs one (-- CMD [ARGS...])",
                    ));
                }
            }
        }
        if let Some(ep) = &self.entrypoint {
            if ep.iter().any(|a| a.contains('\0')) {
                return Err(SpecError::invalid(
                    "entrypoint",
                    ep.join(" "),
                    "arguments have no NUL bytes",
                ));
            }
        }
        self.process.validate().map_err(|e| e.within("process"))?;
        self.storage.validate().map_err(|e| e.within("storage"))?;
        if self.auto_remove && self.restart != RestartPolicy::No {
            return Err(SpecError::conflict(
                "restart",
                format!(
                    "--restart {} and --rm: a box removed when it exits cannot be restarted; drop one of them",
                    self.restart
                ),
            ));
        }
        Ok(())
    }
}
