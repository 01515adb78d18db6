//! Spawning a process into a container.
//!
//! [`prepare`] resolves the user against the container's /etc/passwd,
//! builds the environment and every C string; [`Prepared::clone_child`]
//! clones the child ([`super::child::run`]) as the container's main process
//! (into new mount, PID, UTS and IPC namespaces), into the namespaces of
//! its running main process, or into guest-init's own view for the layer
//! helpers ([`Mode`]); a main process reports ready once it set the
//! namespaces up ([`Launched::wait_ready`]), and [`Launched::wait_exec`]
//! reads the child's report pipe to learn whether `execve` succeeded.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;

use a3s_box_core::guest::message::ProcessSpec;
use a3s_box_core::user::{self, Credentials, UserSpec};
use a3s_box_core::BoxError;
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::unistd::{dup, pipe2, Pid};

use super::child::{self, ChildFds, ChildInput, ChildPlan, Entry, REPORT_BYTES};
use super::clone3::Clone3;
use super::namespaces::Namespaces;
use super::plan::{self, SpawnFailure, Stage};
use super::{pty, Container};
use crate::error::errno_of;
use crate::storage::layers;

/// How a process enters its container.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// As its main process: the creator of its namespaces.
    Main,
    /// Into the namespaces of its running main process.
    Join(&'a Namespaces),
    /// In guest-init's own view, not the container's (the layer helpers,
    /// which read the container's layers).
    OwnView,
}

/// Capacity asked for each output pipe.
const OUTPUT_PIPE_BYTES: libc::c_int = 512 * 1024;

/// `argv[0]` of guest-init re-executed as one of its built-in helpers.
pub const HELPER_ARGV0: &str = "a3s-box-helper";

/// guest-init's own executable, opened once at start for the helpers.
static SELF_EXE: OnceLock<OwnedFd> = OnceLock::new();

/// Open guest-init's own executable so helpers can run after the initramfs
/// is out of sight (inside the box's root).
pub fn open_self_exe() -> Result<(), crate::error::InitError> {
    use crate::error::Context;
    let fd = open(
        "/proc/self/exe",
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .context(|| "open /proc/self/exe".into())?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let _ = SELF_EXE.set(fd);
    Ok(())
}

/// A process ready to clone: its plan and the pipes.
#[derive(Debug)]
pub struct Prepared {
    plan: ChildPlan,
    /// Ends the child uses; closed in the parent after `clone`.
    child_ends: Vec<OwnedFd>,
    streams: Streams,
    report: OwnedFd,
    executable: String,
    workdir: String,
    /// How to clone: new namespaces for a main process, the container's
    /// cgroup, a pidfd for a main process.
    how: Clone3,
}

/// The parent's ends of a process's standard streams.
#[derive(Debug)]
pub struct Streams {
    /// Write end of stdin, when the host sends stdin.
    pub stdin: Option<File>,
    /// Read end of stdout (the terminal's master side for a PTY).
    pub stdout: File,
    /// Read end of stderr (none for a PTY: everything arrives on stdout).
    pub stderr: Option<File>,
    /// The terminal's master side, for resizing.
    pub terminal: Option<File>,
}

/// A cloned child that has not yet reported whether it exec'd.
#[derive(Debug)]
pub struct Launched {
    /// Its PID in the guest (PID 1's namespace).
    pub pid: Pid,
    streams: Streams,
    report: File,
    /// A main process's pidfd.
    pub pidfd: Option<OwnedFd>,
    executable: String,
    workdir: String,
}

fn user_error(e: BoxError) -> SpawnFailure {
    match e {
        BoxError::Invalid(message) => SpawnFailure::setup(message),
        other => SpawnFailure::setup(other.to_string()),
    }
}

/// A file of the container root `root`, empty when it does not exist.
fn read_box_file(root: &str, path: &str) -> Result<String, SpawnFailure> {
    match fs::read(format!("{root}{path}")) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(SpawnFailure::setup(format!(
            "read {path}: {}",
            errno_of(&e)
        ))),
    }
}

/// Resolve the user as Docker does, against the files of the container
/// root `root`; no user (or an empty one) is root.
fn credentials(root: &str, user: Option<&str>) -> Result<Credentials, SpawnFailure> {
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Ok(Credentials::root());
    };
    let spec: UserSpec = user.parse().map_err(user_error)?;
    let passwd = read_box_file(root, "/etc/passwd")?;
    let group = read_box_file(root, "/etc/group")?;
    user::resolve(&spec, &passwd, &group).map_err(user_error)
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SpawnFailure> {
    pipe2(OFlag::O_CLOEXEC).map_err(|e| SpawnFailure::setup(format!("pipe: {e}")))
}

/// The parent's and the child's ends of a process's standard streams.
struct Wiring {
    streams: Streams,
    child_ends: Vec<OwnedFd>,
    fds: ChildFds,
}

fn dup_file(fd: &OwnedFd) -> Result<File, SpawnFailure> {
    let copy = dup(fd.as_raw_fd()).map_err(|e| SpawnFailure::setup(format!("dup: {e}")))?;
    nix::fcntl::fcntl(
        copy,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| SpawnFailure::setup(format!("dup: {e}")))?;
    // SAFETY: `dup` returned a new descriptor that nothing else owns.
    Ok(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(copy) })
}

/// Pipes, or a pseudo-terminal, between guest-init and the process.
fn wire(spec: &ProcessSpec, report: &OwnedFd, mode: Mode<'_>) -> Result<Wiring, SpawnFailure> {
    if let Some(size) = spec.terminal {
        // A process joining the container gets a terminal of the
        // container's devpts; a main process (whose devpts does not exist
        // yet) one of ours.
        let join = match mode {
            Mode::Join(ns) => Some(ns),
            Mode::Main | Mode::OwnView => None,
        };
        let (master, slave) = match join.map(|ns| pty::box_terminal(ns, size)) {
            Some(Ok(pair)) => pair,
            Some(Err(e)) => {
                crate::pid1::log::debug!(
                    "no terminal in the box's devpts ({e}): using guest-init's"
                );
                pty::terminal(size)?
            }
            None => pty::terminal(size)?,
        };
        let fds = ChildFds {
            stdin: None,
            stdout: slave.as_raw_fd(),
            stderr: slave.as_raw_fd(),
            report: report.as_raw_fd(),
            terminal: Some(slave.as_raw_fd()),
        };
        let stdin = spec.stdin.then(|| dup_file(&master)).transpose()?;
        let resize = dup_file(&master)?;
        return Ok(Wiring {
            streams: Streams {
                stdin,
                stdout: File::from(master),
                stderr: None,
                terminal: Some(resize),
            },
            child_ends: vec![slave],
            fds,
        });
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    for fd in [&out_r, &err_r] {
        // Room for a burst while the forwarder's frame is on its way;
        // best effort (the default 64 KiB works too, only slower).
        let _ = nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(OUTPUT_PIPE_BYTES),
        );
    }
    let (stdin_r, stdin_w) = match spec.stdin {
        true => pipe().map(|(r, w)| (Some(r), Some(w)))?,
        false => (None, None),
    };
    let fds = ChildFds {
        stdin: stdin_r.as_ref().map(AsRawFd::as_raw_fd),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
        report: report.as_raw_fd(),
        terminal: None,
    };
    Ok(Wiring {
        streams: Streams {
            stdin: stdin_w.map(File::from),
            stdout: File::from(out_r),
            stderr: Some(File::from(err_r)),
            terminal: None,
        },
        child_ends: [Some(out_w), Some(err_w), stdin_r]
            .into_iter()
            .flatten()
            .collect(),
        fds,
    })
}

/// Everything up to `clone`: credentials, environment, C strings, pipes,
/// for `spec` to run in `container` as `mode` says.
pub fn prepare(
    container: &Container,
    spec: &ProcessSpec,
    mode: Mode<'_>,
) -> Result<Prepared, SpawnFailure> {
    let root = container.layout.root.as_str();
    let creds = credentials(root, spec.user.as_deref())?;
    let env = plan::build_env(&spec.env, &container.hostname, &creds.home);
    let path = plan::env_get(&env, "PATH").unwrap_or(plan::DEFAULT_PATH);
    let (candidates, exe, argv0) = if spec.builtin {
        let exe = SELF_EXE
            .get()
            .ok_or_else(|| SpawnFailure::setup("guest-init's helpers are not available"))?;
        (Vec::new(), Some(exe.as_raw_fd()), HELPER_ARGV0)
    } else {
        let candidates = plan::exec_candidates(&spec.executable, path);
        (candidates, None, spec.executable.as_str())
    };
    let workdir_dirs = plan::workdir_prefixes(&spec.workdir);
    let workdir = workdir_dirs.last().map_or("/", String::as_str).to_string();
    let mut argv = vec![argv0.to_string()];
    if spec.builtin {
        argv.push(spec.executable.clone());
    }
    argv.extend(spec.args.iter().cloned());

    let entry = match mode {
        Mode::OwnView => {
            argv.extend(layers::layer_args(&spec.executable, &container.layout));
            Entry::Stay
        }
        Mode::Join(ns) => Entry::Join(ns.join_fds()),
        Mode::Main => Entry::Create,
    };
    let in_container = !matches!(entry, Entry::Stay);
    let (report_r, report_w) = pipe()?;
    let Wiring {
        streams,
        mut child_ends,
        fds,
    } = wire(spec, &report_w, mode)?;
    let plan = ChildPlan::new(ChildInput {
        hostname: &container.hostname,
        root,
        workdir_dirs: &workdir_dirs,
        workdir: &workdir,
        candidates: &candidates,
        argv: &argv,
        env: &env,
        creds: &creds,
        fds,
        entry,
        exe,
        rlimits: if in_container {
            &container.rlimits
        } else {
            &[]
        },
    })
    .map_err(SpawnFailure::setup)?;
    child_ends.push(report_w);
    let how = Clone3 {
        // The namespaces are joined in the child (the PID namespace by the
        // cloning thread, see `Namespaces::in_pid_namespace`).
        namespaces: match mode {
            Mode::Main => {
                libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC
            }
            Mode::Join(_) | Mode::OwnView => 0,
        },
        cgroup: container
            .cgroup
            .as_ref()
            .filter(|_| in_container)
            .map(|c| c.dir_fd()),
        pidfd: matches!(mode, Mode::Main),
    };
    Ok(Prepared {
        plan,
        child_ends,
        streams,
        report: report_r,
        executable: spec.executable.clone(),
        workdir: spec.workdir.clone(),
        how,
    })
}

impl Prepared {
    /// Clone the child; a joining child goes into the PID namespace of
    /// `ns` (`None` for the other modes). A PID namespace whose init is
    /// gone takes no new process: that is the container's not running.
    pub fn clone_child(
        self,
        container: &Container,
        ns: Option<&Namespaces>,
    ) -> Result<Launched, SpawnFailure> {
        let cloned = match ns {
            Some(ns) => ns.in_pid_namespace(|| Ok(self.clone_now()))?,
            None => self.clone_now(),
        };
        cloned.map_err(|e| match (e, ns) {
            (Errno::ENOMEM, Some(_)) => container.not_running("its main process has exited"),
            (e, _) => SpawnFailure::setup(format!("clone: {e}")),
        })
    }

    fn clone_now(self) -> Result<Launched, Errno> {
        let Prepared {
            plan,
            child_ends,
            streams,
            report,
            executable,
            workdir,
            how,
        } = self;
        // SAFETY: the child is a copy of this thread (no CLONE_VM), so
        // `plan` stays valid in it; it runs only `child::run`, which makes
        // async-signal-safe system calls on data prepared above (no
        // allocation, no locks) and never returns.
        let cloned = unsafe { how.spawn(|| child::run(&plan)) }?;
        drop(child_ends);
        Ok(Launched {
            pid: cloned.pid,
            streams,
            report: File::from(report),
            pidfd: cloned.pidfd,
            executable,
            workdir,
        })
    }
}

impl Launched {
    /// Read the child's report: `None` when the pipe closed with nothing
    /// (an exec), or the stage and errno it sent.
    fn read_report(&mut self) -> Result<Option<(Stage, Errno)>, SpawnFailure> {
        let mut report = [0u8; REPORT_BYTES];
        let mut got = 0;
        while got < REPORT_BYTES {
            match self.report.read(&mut report[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(SpawnFailure::setup(format!(
                        "read the spawn report: {}",
                        errno_of(&e)
                    )))
                }
            }
        }
        match got {
            0 => Ok(None),
            REPORT_BYTES => child::decode_report(&report)
                .map(Some)
                .ok_or_else(|| SpawnFailure::setup(format!("bad spawn report {report:?}"))),
            _ => Err(SpawnFailure::setup(format!(
                "truncated spawn report after {:?}",
                Stage::from_byte(report[0])
            ))),
        }
    }

    fn failure(&self, stage: Stage, errno: Errno) -> SpawnFailure {
        SpawnFailure::from_child(stage, errno, &self.executable, &self.workdir)
    }

    /// Wait until the child exec'd (the report pipe closes unread) or
    /// reported a failure. The reaper collects a failed child.
    pub fn wait_exec(mut self) -> Result<Streams, SpawnFailure> {
        match self.read_report()? {
            None => Ok(self.streams),
            Some((stage, errno)) => Err(self.failure(stage, errno)),
        }
    }
}
