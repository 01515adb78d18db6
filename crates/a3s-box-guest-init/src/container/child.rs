//! The cloned child, from a copy of PID 1 to the workload's `execve`.
//!
//! guest-init has threads, so after `clone` the child may only make
//! async-signal-safe system calls: no allocation, no locks, no formatting.
//! Every string and array it uses is prepared by [`ChildPlan::new`] in the
//! parent. Credentials are changed with raw `syscall`s because glibc's
//! `setuid` family signals the parent's other threads, which do not exist in
//! the child. A failure is written to the report pipe as
//! [`Stage`] + errno and the child exits; a successful `execve` closes the
//! pipe (it is `O_CLOEXEC`), which the parent reads as "started".
//!
//! A process that joins a running container enters its mount, UTS and IPC
//! namespaces by descriptor; entering the mount namespace makes its root
//! the container's root (the main process pivoted into it).

use std::ffi::CString;
use std::os::fd::RawFd;
use std::ptr;

use a3s_box_core::user::Credentials;
use libc::{c_char, c_ulong};
use nix::errno::Errno;

use super::box_fs::{dev_nodes, mount_all, BASE_MOUNTS, LATE_MOUNTS};
use super::plan::{Stage, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_SETUP_FAILED};
use super::rlimit::Rlimit;
use super::sys::{
    chdir, check_long, controlling_terminal, exec_fd, mkdir, mount, pivot_root, reset_signals,
    set_rlimit, set_umask, sethostname, setns, stdio,
};

/// Size of a failure report: stage byte + little-endian errno.
pub const REPORT_BYTES: usize = 5;

/// Encode a failure report.
pub fn encode_report(stage: Stage, errno: Errno) -> [u8; REPORT_BYTES] {
    let e = (errno as i32).to_le_bytes();
    [stage as u8, e[0], e[1], e[2], e[3]]
}

/// Decode a failure report.
pub fn decode_report(report: &[u8; REPORT_BYTES]) -> Option<(Stage, Errno)> {
    let errno = i32::from_le_bytes([report[1], report[2], report[3], report[4]]);
    Some((Stage::from_byte(report[0])?, Errno::from_raw(errno)))
}

/// The file descriptors the child wires up.
#[derive(Debug, Clone, Copy)]
pub struct ChildFds {
    /// Read end of the stdin pipe; `None` means /dev/null.
    pub stdin: Option<RawFd>,
    /// Write end of the stdout pipe.
    pub stdout: RawFd,
    /// Write end of the stderr pipe.
    pub stderr: RawFd,
    /// Write end of the report pipe.
    pub report: RawFd,
    /// Slave side of the process's pseudo-terminal: when set it is stdin,
    /// stdout, stderr and the controlling terminal.
    pub terminal: Option<RawFd>,
}

/// Where the child runs.
#[derive(Debug, Clone, Copy)]
pub enum Entry {
    /// In the container's new namespaces, which it sets up (the main process).
    Create,
    /// In the namespaces of the running container.
    Join(JoinFds),
    /// In guest-init's own namespaces and root (the layer helpers).
    Stay,
}

/// Descriptors of a running container's namespaces, for a process that
/// joins it instead of creating it.
#[derive(Debug, Clone, Copy)]
pub struct JoinFds {
    /// Mount namespace.
    pub mnt: RawFd,
    /// UTS namespace.
    pub uts: RawFd,
    /// IPC namespace.
    pub ipc: RawFd,
}

/// Everything the child needs, allocated before `clone`.
#[derive(Debug)]
pub struct ChildPlan {
    hostname: CString,
    root: CString,
    workdir_dirs: Vec<CString>,
    workdir: CString,
    candidates: Vec<CString>,
    /// Owns the strings `argv_ptrs` points into.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    /// Owns the strings `envp_ptrs` points into.
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const c_char>,
    groups: Vec<libc::gid_t>,
    uid: libc::uid_t,
    gid: libc::gid_t,
    fds: ChildFds,
    entry: Entry,
    exe: Option<RawFd>,
    rlimits: Vec<Rlimit>,
}

/// What [`ChildPlan::new`] is built from.
#[derive(Debug)]
pub struct ChildInput<'a> {
    /// Hostname of the UTS namespace.
    pub hostname: &'a str,
    /// The box root to pivot into.
    pub root: &'a str,
    /// Directories to create on the way to the working directory.
    pub workdir_dirs: &'a [String],
    /// The working directory.
    pub workdir: &'a str,
    /// Executable paths to try in order.
    pub candidates: &'a [String],
    /// Full argv, argv[0] included.
    pub argv: &'a [String],
    /// Environment.
    pub env: &'a [(String, String)],
    /// Who the process runs as.
    pub creds: &'a Credentials,
    /// Pipes.
    pub fds: ChildFds,
    /// Where it runs.
    pub entry: Entry,
    /// Execute this open file instead of searching `candidates`.
    pub exe: Option<RawFd>,
    /// Limits to set before dropping privileges.
    pub rlimits: &'a [Rlimit],
}

fn cstring(what: &str, s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{what} contains a NUL byte: {s:?}"))
}

fn cstrings<'a>(
    what: &str,
    items: impl IntoIterator<Item = &'a String>,
) -> Result<Vec<CString>, String> {
    items.into_iter().map(|s| cstring(what, s)).collect()
}

fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain([ptr::null()])
        .collect()
}

impl ChildPlan {
    /// Convert everything to C strings; an interior NUL is an error.
    pub fn new(input: ChildInput<'_>) -> Result<Self, String> {
        let argv = cstrings("argument", input.argv)?;
        let env_lines: Vec<String> = input.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let envp = cstrings("environment variable", &env_lines)?;
        Ok(ChildPlan {
            hostname: cstring("hostname", input.hostname)?,
            root: cstring("root", input.root)?,
            workdir_dirs: cstrings("working directory", input.workdir_dirs)?,
            workdir: cstring("working directory", input.workdir)?,
            candidates: cstrings("executable", input.candidates)?,
            argv_ptrs: null_terminated(&argv),
            _argv: argv,
            envp_ptrs: null_terminated(&envp),
            _envp: envp,
            groups: input.creds.groups.clone(),
            uid: input.creds.uid,
            gid: input.creds.gid,
            fds: input.fds,
            entry: input.entry,
            exe: input.exe,
            rlimits: input.rlimits.to_vec(),
        })
    }
}

/// Run in the child after `clone`: set up and exec, or report and exit.
pub fn run(plan: &ChildPlan) -> ! {
    let (stage, errno) = match setup(plan) {
        Ok(()) => (Stage::Exec, exec(plan)),
        Err(failure) => failure,
    };
    let code = match (stage, errno) {
        (Stage::Exec, Errno::ENOENT | Errno::ENOTDIR) => EXIT_NOT_FOUND,
        (Stage::Exec, _) => EXIT_CANNOT_EXECUTE,
        _ => EXIT_SETUP_FAILED,
    };
    let report = encode_report(stage, errno);
    // SAFETY: writes a stack buffer of the given length to a pipe this
    // process owns, then exits at once: `_exit` runs no destructors or atexit
    // handlers, which must not run in a copy of a multi-threaded process.
    unsafe {
        libc::write(plan.fds.report, report.as_ptr().cast(), report.len());
        libc::_exit(code)
    }
}

fn at(stage: Stage, res: Result<(), Errno>) -> Result<(), (Stage, Errno)> {
    res.map_err(|e| (stage, e))
}

fn credentials(p: &ChildPlan) -> Result<(), (Stage, Errno)> {
    // SAFETY: `groups` holds `len` gids and outlives the call; the ids are
    // passed as unsigned longs as the raw syscall ABI expects.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_setgroups,
            p.groups.len() as c_ulong,
            p.groups.as_ptr(),
        )
    };
    at(Stage::SetGroups, check_long(rc))?;
    let gid = c_ulong::from(p.gid);
    // SAFETY: plain integer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) };
    at(Stage::SetGid, check_long(rc))?;
    let uid = c_ulong::from(p.uid);
    // SAFETY: plain integer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
    at(Stage::SetUid, check_long(rc))
}

/// Create the box: private mounts, hostname, the pivot into its root and
/// its kernel filesystems.
fn create_box(p: &ChildPlan) -> Result<(), (Stage, Errno)> {
    let private = libc::MS_REC | libc::MS_PRIVATE;
    at(
        Stage::MountPrivate,
        mount(c"none", c"/", None, private, None),
    )?;
    at(Stage::Hostname, sethostname(&p.hostname))?;
    at(Stage::PivotRoot, pivot_root(&p.root))?;
    mount_all(&BASE_MOUNTS)?;
    at(Stage::DevNodes, dev_nodes())?;
    mount_all(&LATE_MOUNTS)
}

/// Join the running container: its mount namespace (which makes its root
/// and working directory the container's root), UTS and IPC namespaces
/// (the PID namespace was chosen by the cloning thread).
fn join_box(j: &JoinFds) -> Result<(), (Stage, Errno)> {
    at(Stage::JoinBox, setns(j.mnt, libc::CLONE_NEWNS))?;
    at(Stage::JoinBox, setns(j.uts, libc::CLONE_NEWUTS))?;
    at(Stage::JoinBox, setns(j.ipc, libc::CLONE_NEWIPC))
}

fn setup(p: &ChildPlan) -> Result<(), (Stage, Errno)> {
    reset_signals();
    set_umask(0);
    match &p.entry {
        Entry::Create => create_box(p)?,
        Entry::Join(j) => join_box(j)?,
        Entry::Stay => {}
    }
    for limit in &p.rlimits {
        at(
            Stage::SetRlimit,
            set_rlimit(limit.resource, limit.soft, limit.hard),
        )?;
    }
    match p.fds.terminal {
        Some(tty) => {
            at(Stage::Terminal, controlling_terminal(tty))?;
            at(Stage::Stdio, stdio(Some(tty), tty, tty))?;
        }
        None => at(Stage::Stdio, stdio(p.fds.stdin, p.fds.stdout, p.fds.stderr))?,
    }
    for dir in &p.workdir_dirs {
        at(Stage::MakeWorkdir, mkdir(dir, 0o755))?;
    }
    credentials(p)?;
    at(Stage::Workdir, chdir(&p.workdir))?;
    set_umask(0o022);
    Ok(())
}

/// Try each candidate like `execvp`: a missing file moves on, a permission
/// error is remembered, any other error stops. Returns only on failure.
fn exec(p: &ChildPlan) -> Errno {
    if let Some(fd) = p.exe {
        return exec_fd(fd, p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr());
    }
    let mut saw_eacces = false;
    for path in &p.candidates {
        // SAFETY: `path` is NUL-terminated; argv and envp are null-terminated
        // arrays of NUL-terminated strings owned by `p`.
        unsafe { libc::execve(path.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr()) };
        match Errno::last() {
            Errno::ENOENT | Errno::ENOTDIR => {}
            Errno::EACCES => saw_eacces = true,
            other => return other,
        }
    }
    if saw_eacces {
        Errno::EACCES
    } else {
        Errno::ENOENT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        let r = encode_report(Stage::Workdir, Errno::ENOTDIR);
        assert_eq!(decode_report(&r), Some((Stage::Workdir, Errno::ENOTDIR)));
        assert_eq!(decode_report(&[0, 1, 0, 0, 0]), None);
    }

    fn plan_for(argv: &[String]) -> Result<ChildPlan, String> {
        let creds = Credentials::root();
        let env = [("A".to_string(), "1".to_string())];
        ChildPlan::new(ChildInput {
            hostname: "h",
            root: "/a3s/root",
            workdir_dirs: &[],
            workdir: "/",
            candidates: &[],
            argv,
            env: &env,
            creds: &creds,
            fds: ChildFds {
                stdin: None,
                stdout: 1,
                stderr: 2,
                report: 3,
                terminal: None,
            },
            entry: Entry::Create,
            exe: None,
            rlimits: &[],
        })
    }

    #[test]
    fn plan_rejects_nul_and_terminates_arrays() {
        let plan = plan_for(&["sh".to_string(), "-c".to_string()]).unwrap();
        assert_eq!(plan.argv_ptrs.len(), 3);
        assert!(plan.argv_ptrs[2].is_null());
        assert_eq!(plan._envp[0].as_bytes(), b"A=1");
        assert_eq!(plan.envp_ptrs.len(), 2);
        let err = plan_for(&["a\0b".to_string()]).unwrap_err();
        assert!(err.contains("NUL"), "{err}");
    }
}
