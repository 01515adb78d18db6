//! Spawning a process into the box.
//!
//! [`prepare`] resolves the user against the box's /etc/passwd, builds the
//! environment and every C string; [`Prepared::clone_child`] clones into new
//! mount, pid, uts and ipc namespaces (the child is [`child::run`]);
//! [`Launched::wait_exec`] reads the child's report pipe to learn whether
//! `execve` succeeded.

mod box_fs;
mod child;
mod join;
pub mod plan;
mod pty;
mod sys;

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;

use a3s_box_core::guest::message::ProcessSpec;
use a3s_box_core::user::{self, Credentials, UserSpec};
use a3s_box_core::BoxError;
use nix::fcntl::{open, OFlag};
use nix::sched::{clone, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::{dup, pipe2, Pid};

use self::child::{ChildFds, ChildInput, ChildPlan, REPORT_BYTES};
pub use self::join::BoxNamespaces;
use self::plan::{SpawnFailure, Stage};
pub use self::pty::resize;
use crate::error::errno_of;
use crate::storage::root::BOX_ROOT;

/// Stack of the cloned child until it execs (it runs only [`child::run`]).
const CHILD_STACK_BYTES: usize = 128 * 1024;

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
        Mode::empty(),
    )
    .context(|| "open /proc/self/exe".into())?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let _ = SELF_EXE.set(fd);
    let _ = OWN_VIEW.set(own_view()?);
    Ok(())
}

/// guest-init's own mount, UTS and IPC namespaces and root, where the layer
/// helpers ([`crate::storage::layers`]) run: they read the box's layers, which the
/// box itself cannot see.
static OWN_VIEW: OnceLock<[OwnedFd; 4]> = OnceLock::new();

fn own_view() -> Result<[OwnedFd; 4], crate::error::InitError> {
    use crate::error::Context;
    let open_one = |path: &str, flags: OFlag| {
        let fd = open(path, flags | OFlag::O_CLOEXEC, Mode::empty())
            .context(|| format!("open {path}"))?;
        // SAFETY: `open` returned a new descriptor that nothing else owns.
        Ok::<_, crate::error::InitError>(unsafe {
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
        })
    };
    Ok([
        open_one("/proc/self/ns/mnt", OFlag::O_RDONLY)?,
        open_one("/proc/self/ns/uts", OFlag::O_RDONLY)?,
        open_one("/proc/self/ns/ipc", OFlag::O_RDONLY)?,
        open_one("/", OFlag::O_RDONLY | OFlag::O_DIRECTORY)?,
    ])
}

fn own_view_fds() -> Result<child::JoinFds, SpawnFailure> {
    let [mnt, uts, ipc, root] = OWN_VIEW
        .get()
        .ok_or_else(|| SpawnFailure::setup("guest-init's layer helpers are not available"))?;
    Ok(child::JoinFds {
        mnt: mnt.as_raw_fd(),
        uts: uts.as_raw_fd(),
        ipc: ipc.as_raw_fd(),
        root: root.as_raw_fd(),
    })
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
    joins: bool,
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
    executable: String,
    workdir: String,
}

fn user_error(e: BoxError) -> SpawnFailure {
    match e {
        BoxError::Config(message) => SpawnFailure::setup(message),
        other => SpawnFailure::setup(other.to_string()),
    }
}

/// A file of the box root, empty when it does not exist.
fn read_box_file(path: &str) -> Result<String, SpawnFailure> {
    match fs::read(format!("{BOX_ROOT}{path}")) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(SpawnFailure::setup(format!(
            "read {path}: {}",
            errno_of(&e)
        ))),
    }
}

/// Resolve the user as Docker does; no user (or an empty one) is root.
fn credentials(user: Option<&str>) -> Result<Credentials, SpawnFailure> {
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Ok(Credentials::root());
    };
    let spec: UserSpec = user.parse().map_err(user_error)?;
    let passwd = read_box_file("/etc/passwd")?;
    let group = read_box_file("/etc/group")?;
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
fn wire(
    spec: &ProcessSpec,
    report: &OwnedFd,
    join: Option<&BoxNamespaces>,
) -> Result<Wiring, SpawnFailure> {
    if let Some(size) = spec.terminal {
        // A process joining the box gets a terminal of the box's devpts;
        // the main process (whose box does not exist yet) one of ours.
        let (master, slave) = match join.map(|ns| pty::box_terminal(&ns.root, size)) {
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

/// Everything up to `clone`: credentials, environment, C strings, pipes.
/// With `join`, the process joins that running box instead of creating it.
pub fn prepare(
    hostname: &str,
    spec: &ProcessSpec,
    join: Option<&BoxNamespaces>,
) -> Result<Prepared, SpawnFailure> {
    let creds = credentials(spec.user.as_deref())?;
    let env = plan::build_env(&spec.env, hostname, &creds.home);
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

    let join_fds = if spec.builtin && crate::storage::layers::is_layer_helper(&spec.executable) {
        Some(own_view_fds()?)
    } else {
        join.map(BoxNamespaces::join_fds)
    };
    let (report_r, report_w) = pipe()?;
    let Wiring {
        streams,
        mut child_ends,
        fds,
    } = wire(spec, &report_w, join)?;
    let plan = ChildPlan::new(ChildInput {
        hostname,
        root: BOX_ROOT,
        workdir_dirs: &workdir_dirs,
        workdir: &workdir,
        candidates: &candidates,
        argv: &argv,
        env: &env,
        creds: &creds,
        fds,
        join: join_fds,
        exe,
    })
    .map_err(SpawnFailure::setup)?;
    child_ends.push(report_w);
    Ok(Prepared {
        plan,
        child_ends,
        streams,
        report: report_r,
        joins: join_fds.is_some(),
        executable: spec.executable.clone(),
        workdir: spec.workdir.clone(),
    })
}

impl Prepared {
    /// Clone the child: into new namespaces, or into those of `join`.
    pub fn clone_child(self, join: Option<&BoxNamespaces>) -> Result<Launched, SpawnFailure> {
        match join {
            Some(ns) => ns.in_pid_namespace(|| self.clone_now()),
            None => self.clone_now(),
        }
    }

    fn clone_now(self) -> Result<Launched, SpawnFailure> {
        let Prepared {
            plan,
            child_ends,
            streams,
            report,
            executable,
            workdir,
            joins,
        } = self;
        let mut stack = vec![0u8; CHILD_STACK_BYTES];
        let flags = if joins {
            // The namespaces are joined in the child (the PID namespace by
            // the cloning thread, see `BoxNamespaces::adopt_pid_namespace`).
            CloneFlags::empty()
        } else {
            CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWIPC
        };
        // SAFETY: without CLONE_VM the child gets a copy of this address
        // space, so `plan` and `stack` stay valid in it. The child runs only
        // `child::run`, which makes async-signal-safe system calls on data
        // prepared above (no allocation, no locks) and never returns.
        let pid = unsafe {
            clone(
                Box::new(|| -> isize { child::run(&plan) }),
                &mut stack,
                flags,
                Some(libc::SIGCHLD),
            )
        }
        .map_err(|e| SpawnFailure::setup(format!("clone: {e}")))?;
        drop(child_ends);
        Ok(Launched {
            pid,
            streams,
            report: File::from(report),
            executable,
            workdir,
        })
    }
}

impl Launched {
    /// Wait until the child exec'd (the report pipe closes unread) or
    /// reported a failure. The reaper collects a failed child.
    pub fn wait_exec(mut self) -> Result<Streams, SpawnFailure> {
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
            0 => Ok(self.streams),
            REPORT_BYTES => match child::decode_report(&report) {
                Some((stage, errno)) => Err(SpawnFailure::from_child(
                    stage,
                    errno,
                    &self.executable,
                    &self.workdir,
                )),
                None => Err(SpawnFailure::setup(format!("bad spawn report {report:?}"))),
            },
            _ => Err(SpawnFailure::setup(format!(
                "truncated spawn report after {:?}",
                Stage::from_byte(report[0])
            ))),
        }
    }
}
