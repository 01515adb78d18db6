//! Spawning a process into the box.
//!
//! [`prepare`] resolves the user against the box's /etc/passwd, builds the
//! environment and every C string; [`Prepared::clone_child`] clones into new
//! mount, pid, uts and ipc namespaces (the child is [`child::run`]);
//! [`Launched::wait_exec`] reads the child's report pipe to learn whether
//! `execve` succeeded.

mod box_fs;
mod child;
pub mod plan;
mod sys;

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};

use a3s_box_core::guest::message::ProcessSpec;
use a3s_box_core::user::{self, Credentials, UserSpec};
use a3s_box_core::BoxError;
use nix::fcntl::OFlag;
use nix::sched::{clone, CloneFlags};
use nix::unistd::{pipe2, Pid};

use self::child::{ChildFds, ChildInput, ChildPlan, REPORT_BYTES};
use self::plan::{SpawnFailure, Stage};
use crate::boot::BOX_ROOT;
use crate::error::errno_of;

/// Stack of the cloned child until it execs (it runs only [`child::run`]).
const CHILD_STACK_BYTES: usize = 128 * 1024;

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
}

/// The parent's ends of a process's standard streams.
#[derive(Debug)]
pub struct Streams {
    /// Write end of stdin, when the host sends stdin.
    pub stdin: Option<File>,
    /// Read end of stdout.
    pub stdout: File,
    /// Read end of stderr.
    pub stderr: File,
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

/// Everything up to `clone`: credentials, environment, C strings, pipes.
pub fn prepare(hostname: &str, spec: &ProcessSpec) -> Result<Prepared, SpawnFailure> {
    let creds = credentials(spec.user.as_deref())?;
    let env = plan::build_env(&spec.env, hostname, &creds.home);
    let path = plan::env_get(&env, "PATH").unwrap_or(plan::DEFAULT_PATH);
    let candidates = plan::exec_candidates(&spec.executable, path);
    let workdir_dirs = plan::workdir_prefixes(&spec.workdir);
    let workdir = workdir_dirs.last().map_or("/", String::as_str).to_string();
    let argv: Vec<String> = [&spec.executable]
        .into_iter()
        .chain(&spec.args)
        .cloned()
        .collect();

    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    let (stdin_r, stdin_w) = match spec.stdin {
        true => pipe().map(|(r, w)| (Some(r), Some(w)))?,
        false => (None, None),
    };
    let fds = ChildFds {
        stdin: stdin_r.as_ref().map(AsRawFd::as_raw_fd),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
        report: report_w.as_raw_fd(),
    };
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
    })
    .map_err(SpawnFailure::setup)?;
    let child_ends = [Some(out_w), Some(err_w), Some(report_w), stdin_r]
        .into_iter()
        .flatten()
        .collect();
    Ok(Prepared {
        plan,
        child_ends,
        streams: Streams {
            stdin: stdin_w.map(File::from),
            stdout: File::from(out_r),
            stderr: File::from(err_r),
        },
        report: report_r,
        executable: spec.executable.clone(),
        workdir: spec.workdir.clone(),
    })
}

impl Prepared {
    /// Clone the child into its own namespaces.
    pub fn clone_child(self) -> Result<Launched, SpawnFailure> {
        let Prepared {
            plan,
            child_ends,
            streams,
            report,
            executable,
            workdir,
        } = self;
        let mut stack = vec![0u8; CHILD_STACK_BYTES];
        let flags = CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC;
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
