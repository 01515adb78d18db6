//! Driving Debian's `nft` (`nft -f -` with a script on stdin, `nft -j
//! list …` for state), in the caller's network namespace or in another
//! one entered with setns(2) in the child before it runs `nft`.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use a3s_box_core::{BoxError, Result};

/// Which network namespace `nft` works in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    /// The caller's (the holder process runs inside the namespace).
    Current,
    /// The namespace this file names (`/run/netns/NAME`,
    /// `/proc/PID/ns/net`); entering it needs `CAP_SYS_ADMIN` over it.
    Path(PathBuf),
}

/// An `nft` runner.
#[derive(Debug, Clone)]
pub struct Nft {
    netns: Netns,
    program: PathBuf,
}

impl Nft {
    /// `nft` from `PATH`, in `netns`.
    pub fn new(netns: Netns) -> Self {
        Nft {
            netns,
            program: "nft".into(),
        }
    }

    /// Use `program` instead of `nft` from `PATH`.
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// The namespace it works in.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// Run `nft` with `args`, `stdin` fed in; its stdout.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let ns_file = match &self.netns {
            Netns::Current => None,
            Netns::Path(path) => Some(
                std::fs::File::open(path)
                    .map_err(|e| BoxError::io(format!("open {}", path.display()), e))?,
            ),
        };
        let mut cmd = Command::new(&self.program);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(file) = &ns_file {
            use std::os::unix::process::CommandExt;
            let fd = file.as_raw_fd();
            // SAFETY: the closure runs in the forked child before exec and
            // only calls setns(2), which is async-signal-safe; `fd` stays
            // open in the child (the parent holds `file` until the child
            // has been spawned, and close-on-exec acts only at exec).
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let what = format!("nft {}", args.join(" "));
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                BoxError::Unavailable(format!(
                    "{} not found: install nftables (scripts/install-deps.sh)",
                    self.program.display()
                ))
            } else {
                BoxError::io(format!("start {what}"), e)
            }
        })?;
        drop(ns_file);
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .map_err(|e| BoxError::io(format!("write to {what}"), e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| BoxError::io(format!("wait for {what}"), e))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(BoxError::io(
                format!("{what} failed ({})", out.status),
                std::io::Error::other(stderr.trim().to_string()),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Apply `script` (`nft -f -`): all of it, or none of it.
    pub fn apply(&self, script: &str) -> Result<()> {
        self.run(&["-f", "-"], Some(script)).map(|_| ())
    }

    /// [`Nft::apply`] off the async runtime's threads.
    pub async fn apply_async(&self, script: String) -> Result<()> {
        let nft = self.clone();
        tokio::task::spawn_blocking(move || nft.apply(&script))
            .await
            .map_err(|e| BoxError::io("nft task", std::io::Error::other(e)))?
    }

    /// `nft -j ARGS` parsed.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        let out = self.run(&all, None)?;
        serde_json::from_str(&out).map_err(|e| {
            BoxError::io(
                format!("parse the output of nft {}", args.join(" ")),
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })
    }
}
