//! Pseudo-terminals for processes run with `-t`.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use a3s_box_core::guest::message::WindowSize;
use nix::pty::{openpty, Winsize};

use super::namespaces::Namespaces;
use super::plan::SpawnFailure;

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `TIOCGPTPEER`: open the slave side of a master (Linux 4.13).
const TIOCGPTPEER: libc::c_ulong = 0x5441;

/// A pseudo-terminal of guest-init's own devpts.
pub(super) fn terminal(size: WindowSize) -> Result<(OwnedFd, OwnedFd), SpawnFailure> {
    let winsize = Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&winsize), None)
        .map_err(|e| SpawnFailure::setup(format!("open a pseudo-terminal: {e}")))?;
    for fd in [&pty.master, &pty.slave] {
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| SpawnFailure::setup(format!("pseudo-terminal: {e}")))?;
    }
    Ok((pty.master, pty.slave))
}

/// Set the window size of a process's terminal (its master side).
pub fn resize(master: &File, size: WindowSize) -> nix::Result<()> {
    let winsize = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct that outlives the call.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &winsize) };
    nix::errno::Errno::result(rc).map(drop)
}

/// A pseudo-terminal of the running box's own devpts, so the process sees
/// its terminal at /dev/pts/N as `tty` expects. The path is resolved inside
/// the box root (no escape through its symlinks or magic links).
pub(super) fn box_terminal(
    ns: &Namespaces,
    size: WindowSize,
) -> Result<(OwnedFd, OwnedFd), String> {
    let root = ns.root().map_err(|f| f.reason)?;
    terminal_in(root, size).map_err(|e| e.to_string())
}

fn terminal_in(root: &OwnedFd, size: WindowSize) -> nix::Result<(OwnedFd, OwnedFd)> {
    let how = OpenHow {
        flags: (libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 reads the NUL-terminated path and one open_how of the
    // given size; it returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c"dev/pts/ptmx".as_ptr(),
            &how,
            std::mem::size_of::<OpenHow>(),
        )
    };
    let fd = nix::errno::Errno::result(fd)? as RawFd;
    // SAFETY: `fd` is the new descriptor openat2 returned; nothing else owns it.
    let master = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int that outlives the call.
    nix::errno::Errno::result(unsafe { libc::ioctl(fd, libc::TIOCSPTLCK, &unlock) })?;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor.
    let slave = nix::errno::Errno::result(unsafe { libc::ioctl(fd, TIOCGPTPEER, flags) })?;
    // SAFETY: `slave` is the new descriptor the ioctl returned.
    let slave = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(slave) };
    let file = File::from(master);
    resize(&file, size)?;
    Ok((OwnedFd::from(file), slave))
}
