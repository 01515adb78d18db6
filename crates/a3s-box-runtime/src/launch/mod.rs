//! One way to start host helper processes.
//!
//! Every process the runtime keeps running beside a VM — QEMU, the virtio-fs
//! daemons (`a3s-box-fs`), the per-box shim, and the network helpers to come
//! (passt, DNS) — is described by a typed [`HelperSpec`] and started by
//! [`Launcher::spawn`]. This is the one place where a helper's environment,
//! descriptors, lifetime and (later) jail, cgroup and resource limits are
//! decided, so they are decided the same way for all of them.
//!
//! - **Environment.** A helper starts from an empty environment plus the
//!   allow-list [`ENV_ALLOW`] (search path, locale, time zone, temporary
//!   directory, Rust logging) plus the variables its spec names: whatever a
//!   helper reads from the environment is visible in its spec.
//!   The allow-listed values are the front end's, captured once into the
//!   engine's config ([`Launcher::with_env`]): the engine itself reads no
//!   environment. [`Environment::inherit`] passes ours on whole (tests).
//! - **Lifetime.** [`Lifetime::DieWithParent`]: its own process group (a
//!   terminal's Ctrl-C reaches us, not it) and `PR_SET_PDEATHSIG`, so it is
//!   SIGKILLed when the *thread* that spawned it exits; spawn from a thread
//!   that lives as long as the helper should. [`Lifetime::Detached`]: its
//!   own session (`setsid`), it outlives us.
//! - **Descriptors.** Only stdio and the [`InheritedFd`]s of the spec reach
//!   the helper, each at the number the spec gives; everything else is
//!   close-on-exec.
//! - **Errors.** A program that is missing or cannot be run is reported with
//!   its path and what to do ([`HelperSpec::hint`]) before anything starts.

mod helper;
mod spawn;

use std::ffi::OsString;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;

use a3s_box_core::BoxError;

pub use helper::{exit_code, Helper};
pub use spawn::{locate_in, Launcher};

/// Variables a helper inherits from us even with a clean environment.
pub const ENV_ALLOW: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
    "RUST_LOG",
    "RUST_BACKTRACE",
];

/// What a helper is started as.
#[derive(Debug)]
pub struct HelperSpec {
    /// Name in logs and errors ("QEMU", "a3s-box-fs", "a3s-box-shim").
    pub name: &'static str,
    /// The program: a path, or a name looked up in our `PATH`.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Its environment.
    pub env: Environment,
    /// Working directory (default: ours).
    pub cwd: Option<PathBuf>,
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output.
    pub stdout: Stdio,
    /// Standard error.
    pub stderr: Stdio,
    /// Whether it dies with us.
    pub lifetime: Lifetime,
    /// Descriptors it inherits, each at a number of its own.
    pub fds: Vec<InheritedFd>,
    /// Confinement; the seam for uid, seccomp and mount namespace (none yet).
    pub jail: Option<Jail>,
    /// What the user can do when the program is missing or cannot run
    /// ("install qemu-system-x86 (make setup) or set A3S_BOX_QEMU").
    pub hint: &'static str,
}

impl HelperSpec {
    /// `program` with no arguments, a clean environment, null stdio,
    /// dying with us.
    pub fn new(name: &'static str, program: impl Into<PathBuf>, hint: &'static str) -> Self {
        HelperSpec {
            name,
            program: program.into(),
            args: Vec::new(),
            env: Environment::clean(),
            cwd: None,
            stdin: Stdio::Null,
            stdout: Stdio::Null,
            stderr: Stdio::Null,
            lifetime: Lifetime::DieWithParent,
            fds: Vec::new(),
            jail: None,
            hint,
        }
    }

    /// Add an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Add arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set the environment.
    pub fn env(mut self, env: Environment) -> Self {
        self.env = env;
        self
    }

    /// Set standard output.
    pub fn stdout(mut self, stdio: Stdio) -> Self {
        self.stdout = stdio;
        self
    }

    /// Set standard error.
    pub fn stderr(mut self, stdio: Stdio) -> Self {
        self.stderr = stdio;
        self
    }

    /// Set the lifetime.
    pub fn lifetime(mut self, lifetime: Lifetime) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Pass `fd` to the helper as descriptor `target`.
    pub fn fd(mut self, fd: OwnedFd, target: RawFd) -> Self {
        self.fds.push(InheritedFd { fd, target });
        self
    }
}

/// A helper's environment.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// Pass every variable of ours on, not only [`ENV_ALLOW`].
    pub inherit_all: bool,
    /// Variables set on top, in order.
    pub vars: Vec<(OsString, OsString)>,
}

impl Environment {
    /// Only [`ENV_ALLOW`] from ours.
    pub fn clean() -> Self {
        Environment::default()
    }

    /// All of ours.
    pub fn inherit() -> Self {
        Environment {
            inherit_all: true,
            vars: Vec::new(),
        }
    }

    /// Set `key` to `value`.
    pub fn set(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.vars.push((key.into(), value.into()));
        self
    }
}

/// Where a standard stream of a helper goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stdio {
    /// `/dev/null`.
    Null,
    /// A file, created if missing; truncated unless `append`.
    File {
        /// The file.
        path: PathBuf,
        /// Append instead of truncating.
        append: bool,
    },
    /// A pipe to us ([`Helper::take_stdout`] and friends).
    Pipe,
}

/// How long a helper lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Killed (SIGKILL) when the thread that spawned it exits; its own
    /// process group. Also killed when its [`Helper`] is dropped.
    DieWithParent,
    /// Its own session; it outlives us.
    Detached,
}

/// A descriptor a helper inherits.
#[derive(Debug)]
pub struct InheritedFd {
    /// Our descriptor (closed in this process once the helper started).
    pub fd: OwnedFd,
    /// Its number in the helper (3 or more).
    pub target: RawFd,
}

/// Confinement of a helper: user, seccomp filter, mount namespace, cgroup.
/// Nothing is implemented yet, so no value exists; [`HelperSpec::jail`] is
/// the one place it will be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jail {}

/// Why a helper could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The program does not exist.
    #[error("{name} not found at {}: {hint}", path.display())]
    NotFound {
        /// The helper.
        name: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// What to do.
        hint: &'static str,
    },
    /// The program exists but cannot be run.
    #[error("{name} at {} cannot be run ({reason}): {hint}", path.display())]
    NotExecutable {
        /// The helper.
        name: &'static str,
        /// The program.
        path: PathBuf,
        /// Why not ("not executable", "a directory", ...).
        reason: String,
        /// What to do.
        hint: &'static str,
    },
    /// The spec is inconsistent (a bug of the caller).
    #[error("{name}: {reason}")]
    BadSpec {
        /// The helper.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An operating-system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl From<LaunchError> for BoxError {
    fn from(e: LaunchError) -> Self {
        match e {
            LaunchError::NotFound { name, path, hint } => BoxError::MissingAsset {
                what: name,
                path,
                hint,
            },
            LaunchError::NotExecutable { .. } => BoxError::Unavailable(e.to_string()),
            // A caller's bug: an internal error.
            LaunchError::BadSpec { name, reason } => BoxError::io(
                format!("start {name}"),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, reason),
            ),
            LaunchError::Io { what, source } => BoxError::io(what, source),
        }
    }
}
