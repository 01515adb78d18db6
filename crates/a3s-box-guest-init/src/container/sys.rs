//! Async-signal-safe system-call wrappers for the cloned child: each is one
//! or a few raw libc calls on C strings prepared before `clone`, returning
//! the errno; none allocates or takes a lock.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::ptr;

use libc::{c_int, c_long, c_ulong};
use nix::errno::Errno;

pub(super) fn check(rc: c_int) -> Result<(), Errno> {
    if rc == -1 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

pub(super) fn check_long(rc: c_long) -> Result<(), Errno> {
    if rc == -1 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

pub(super) fn mount(
    source: &CStr,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    let fstype = fstype.map_or(ptr::null(), CStr::as_ptr);
    let data = data.map_or(ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: every pointer is a NUL-terminated string that outlives the
    // call, or null where mount(2) allows it.
    check(unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype, flags, data) })
}

pub(super) fn mkdir(path: &CStr, mode: libc::mode_t) -> Result<(), Errno> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    match check(unsafe { libc::mkdir(path.as_ptr(), mode) }) {
        Err(Errno::EEXIST) => Ok(()),
        res => res,
    }
}

pub(super) fn mkdir_mount(
    target: &CStr,
    mode: libc::mode_t,
    fstype: &CStr,
    flags: c_ulong,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    mkdir(target, mode)?;
    mount(fstype, target, Some(fstype), flags, data)
}

pub(super) fn chdir(path: &CStr) -> Result<(), Errno> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    check(unsafe { libc::chdir(path.as_ptr()) })
}

pub(super) fn dup2(from: RawFd, to: RawFd) -> Result<(), Errno> {
    // SAFETY: dup2 only manipulates this process's descriptor table.
    check(unsafe { libc::dup2(from, to) })
}

/// Unblock every signal (PID 1 blocks SIGCHLD) and restore SIGPIPE, which
/// Rust's runtime ignores; both would otherwise survive `execve`.
pub(super) fn reset_signals() {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises `set` before sigprocmask reads it;
    // both calls and signal() only change this process's signal state.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

pub(super) fn set_umask(mask: libc::mode_t) {
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(mask) };
}

/// Make `root` the process root: `pivot_root(".", ".")` stacks the old root
/// on the new one, and a lazy unmount of "." drops it.
pub(super) fn pivot_root(root: &CStr) -> Result<(), Errno> {
    chdir(root)?;
    // SAFETY: both arguments are NUL-terminated string literals.
    check_long(unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) })?;
    // SAFETY: the target is a NUL-terminated string literal.
    check(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) })?;
    chdir(c"/")
}

pub(super) fn stdio(stdin: Option<RawFd>, stdout: RawFd, stderr: RawFd) -> Result<(), Errno> {
    let stdin = match stdin {
        Some(fd) => fd,
        None => {
            // SAFETY: the path is a NUL-terminated string literal.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            check(fd)?;
            fd
        }
    };
    dup2(stdin, 0)?;
    dup2(stdout, 1)?;
    dup2(stderr, 2)
}

pub(super) fn sethostname(name: &CStr) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe the bytes of `name`.
    check(unsafe { libc::sethostname(name.as_ptr(), name.to_bytes().len()) })
}

pub(super) fn setns(fd: RawFd, nstype: c_int) -> Result<(), Errno> {
    // SAFETY: setns only reads the descriptor and changes this process's
    // namespaces.
    check(unsafe { libc::setns(fd, nstype) })
}

/// Start a new session whose controlling terminal is `tty`.
pub(super) fn controlling_terminal(tty: RawFd) -> Result<(), Errno> {
    // SAFETY: setsid and ioctl(TIOCSCTTY) take plain integers.
    unsafe {
        if libc::setsid() == -1 {
            return Err(Errno::last());
        }
        check(libc::ioctl(tty, libc::TIOCSCTTY, 0))
    }
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: run the program `fd`
/// names. Returns only on failure.
pub(super) fn exec_fd(
    fd: RawFd,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) -> Errno {
    // SAFETY: the path is an empty string literal; argv and envp are
    // null-terminated arrays the caller owns.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv,
            envp,
            libc::AT_EMPTY_PATH,
        )
    };
    Errno::last()
}

/// Set a resource limit of this process.
pub(super) fn set_rlimit(
    resource: libc::__rlimit_resource_t,
    soft: u64,
    hard: u64,
) -> Result<(), Errno> {
    let limit = libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: prlimit64 on this process (pid 0) reads one rlimit64 that
    // outlives the call; the old value is not asked for.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            resource as c_long,
            &limit as *const libc::rlimit64,
            ptr::null_mut::<libc::rlimit64>(),
        )
    };
    check_long(rc)
}
