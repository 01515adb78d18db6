//! Which data plane this host gets (`a3s-box info`): as root, a network
//! namespace per network; as a user where user namespaces are allowed, the
//! same inside a user namespace; elsewhere, passt per box (default network
//! only), which is not built yet.

use serde::Serialize;

use crate::config::EngineConfig;

/// The data plane of this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Plane {
    /// A network namespace per network (bridge, TAPs, pasta uplink).
    Root,
    /// The same, inside a user namespace of the user's.
    Rootless,
    /// passt per box: user namespaces are not allowed.
    PasstPerBox,
}

impl std::fmt::Display for Plane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Plane::Root => "root",
            Plane::Rootless => "rootless",
            Plane::PasstPerBox => "passt-per-box",
        })
    }
}

/// What `info` says about networking.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkMode {
    /// The data plane.
    pub plane: Plane,
    /// Why.
    pub reason: String,
    /// Whether boxes reach the host's loopback at `host-gateway`.
    pub host_gateway: bool,
    /// The uplink program, and whether it was found.
    pub pasta: String,
}

/// Decide for this process's user on this host.
pub fn detect(engine: &EngineConfig) -> NetworkMode {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let pasta = match engine
        .launcher()
        .locate("pasta", &engine.network.pasta, "install passt")
    {
        Ok(path) => path.display().to_string(),
        Err(_) => format!(
            "{} (not found: install passt, scripts/install-deps.sh)",
            engine.network.pasta.display()
        ),
    };
    let (plane, reason) = if root {
        (
            Plane::Root,
            "running as root: a network namespace per network, with a bridge, a TAP per box and pasta as the uplink".to_string(),
        )
    } else {
        match user_namespaces() {
            Ok(()) => (
                Plane::Rootless,
                "user namespaces are allowed: each network's namespace is made inside a user namespace of yours".to_string(),
            ),
            Err(e) => (
                Plane::PasstPerBox,
                format!("user namespaces are not allowed here ({e}): passt per box, default network only (not built yet: boxes need --network none)"),
            ),
        }
    };
    NetworkMode {
        plane,
        reason,
        host_gateway: engine.network.host_gateway,
        pasta,
    }
}

/// Whether this user may make a user and network namespace: tried in a
/// child, which then exits.
fn user_namespaces() -> Result<(), String> {
    // SAFETY: the child only calls unshare and _exit, which are safe after
    // fork in a multi-threaded process.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error().to_string()),
        0 => {
            // SAFETY: see above.
            unsafe {
                let rc = libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET);
                libc::_exit(if rc == 0 {
                    0
                } else {
                    *libc::__errno_location()
                });
            }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waits for our own child with a live status word.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            match libc::WEXITSTATUS(status) {
                0 => Ok(()),
                errno => Err(format!(
                    "unshare(CLONE_NEWUSER): {}",
                    std::io::Error::from_raw_os_error(errno)
                )),
            }
        }
    }
}
