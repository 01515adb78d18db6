//! The helper's own network namespace, made before any thread exists:
//! `unshare(CLONE_NEWNET)` as root; rootless, a user namespace first
//! (`CLONE_NEWUSER | CLONE_NEWNET`, the user mapped to root inside, as
//! recipe 2 of `docs/networking.md`). Then loopback up and the
//! per-namespace sysctls: forwarding on, bridged frames kept away from the
//! IP hooks (finding 12).

use std::io;
use std::os::fd::OwnedFd;

/// How the namespace was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As root: a network namespace only.
    Root,
    /// As a user: a user namespace (the user is root inside) holding the
    /// network namespace.
    Rootless,
}

impl Mode {
    /// Root when the effective uid is 0.
    pub fn of_process() -> Self {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            Mode::Root
        } else {
            Mode::Rootless
        }
    }
}

/// The namespace's descriptors, for pasta to join.
#[derive(Debug)]
pub struct Namespace {
    /// `/proc/self/ns/net`.
    pub net: OwnedFd,
    /// `/proc/self/ns/user` (rootless only).
    pub user: Option<OwnedFd>,
}

/// Leave the host's network namespace (and, rootless, user namespace).
/// Must run while the process has one thread.
pub fn unshare(mode: Mode) -> io::Result<Namespace> {
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let flags = match mode {
        Mode::Root => libc::CLONE_NEWNET,
        Mode::Rootless => libc::CLONE_NEWUSER | libc::CLONE_NEWNET,
    };
    // SAFETY: unshare changes only this (single-threaded) process.
    if unsafe { libc::unshare(flags) } != 0 {
        let e = io::Error::last_os_error();
        let what = match mode {
            Mode::Root => "a network namespace",
            Mode::Rootless => {
                "a user and network namespace (are user namespaces allowed on this host?)"
            }
        };
        return Err(io::Error::new(e.kind(), format!("unshare {what}: {e}")));
    }
    if mode == Mode::Rootless {
        write("/proc/self/uid_map", &format!("0 {uid} 1\n"))?;
        write("/proc/self/setgroups", "deny\n")?;
        write("/proc/self/gid_map", &format!("0 {gid} 1\n"))?;
    }
    let open = |path: &str| -> io::Result<OwnedFd> {
        let file = std::fs::File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("open {path}: {e}")))?;
        Ok(file.into())
    };
    Ok(Namespace {
        net: open("/proc/self/ns/net")?,
        user: match mode {
            Mode::Root => None,
            Mode::Rootless => Some(open("/proc/self/ns/user")?),
        },
    })
}

fn write(path: &str, text: &str) -> io::Result<()> {
    std::fs::write(path, text).map_err(|e| io::Error::new(e.kind(), format!("write {path}: {e}")))
}

/// Forwarding on; the bridge's frames off the IP hooks where
/// `br_netfilter` is loaded (the files then exist in every namespace).
pub fn sysctls() -> io::Result<()> {
    write("/proc/sys/net/ipv4/ip_forward", "1\n")?;
    for name in ["call-iptables", "call-ip6tables", "call-arptables"] {
        let path = format!("/proc/sys/net/bridge/bridge-nf-{name}");
        if std::path::Path::new(&path).exists() {
            if let Err(e) = write(&path, "0\n") {
                tracing::warn!("{e}: bridged traffic may meet the IP rules");
            }
        }
    }
    Ok(())
}
