//! The sandbox RPC: the typed, versioned requests, replies and events that
//! travel on `<sandbox dir>/sandbox.sock`, shared by the server (the
//! sandbox's actor, in its shim) and the client (the engine).
//!
//! A connection carries JSON lines. The client sends
//! `{"version":1,"request":{"op":"stop","container":null,"timeout_secs":10}}`
//! and reads one line back, `{"reply":{"type":"stopped","code":143}}` or
//! `{"error":{"kind":"not_running","message":"…"}}`; it may then send the
//! next request on the same connection. After a successful `exec` or
//! `attach` the connection switches to the guest protocol's frames; after
//! `events`, to a stream of [`SandboxEvent`] lines. A connection that asked
//! with `hold` keeps an `--rm` container from being removed until it closes
//! (or sends `wait` for `removed`).

use std::str::FromStr;

use a3s_box_core::guest::message::ProcessSpec;
use a3s_box_core::{BoxError, ErrorKind};
use serde::{Deserialize, Serialize};

/// The version of this RPC; a request of another version is refused.
pub const RPC_VERSION: u32 = 1;
/// The socket in a sandbox directory.
pub const SANDBOX_SOCKET: &str = "sandbox.sock";
/// Longest request line accepted.
pub const MAX_LINE_BYTES: u64 = 1024 * 1024;

/// One request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// [`RPC_VERSION`].
    pub version: u32,
    /// What is asked.
    pub request: Request,
}

impl Envelope {
    /// `request` at this version.
    pub fn new(request: Request) -> Self {
        Envelope {
            version: RPC_VERSION,
            request,
        }
    }
}

/// What a client may ask of a sandbox. `container` is the id of a box of
/// the sandbox; `None` means its only container (a standalone box).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The versions the server speaks.
    Version,
    /// The outcome of the sandbox's first start: `started` once the
    /// workload (a pod: the VM) runs, or `start_failed`.
    StartReport {
        /// Hold an `--rm` container until this connection closes.
        #[serde(default)]
        hold: bool,
    },
    /// Start a process in a running container; frames follow the reply.
    Exec {
        /// The container.
        #[serde(default)]
        container: Option<String>,
        /// What to run (its `process` and `container` fields are set by
        /// the server).
        spec: ProcessSpec,
        /// Leave the process running when the connection goes.
        #[serde(default)]
        detach: bool,
    },
    /// Follow a container's main process (output, stdin, exit); frames
    /// follow the reply. Accepted while the container is starting.
    Attach {
        /// The container.
        #[serde(default)]
        container: Option<String>,
        /// Write its stdin.
        stdin: bool,
        /// Receive its recent output first.
        replay: bool,
        /// Hold an `--rm` container until this connection closes.
        #[serde(default)]
        hold: bool,
    },
    /// Deliver a signal to a container's main process.
    Signal {
        /// The container.
        #[serde(default)]
        container: Option<String>,
        /// The signal number.
        signal: i32,
    },
    /// SIGTERM (the container's stop signal), SIGKILL after
    /// `timeout_secs`, no restart afterwards; replied once stopped. Without
    /// a container, the whole sandbox stops (a pod: every container, then
    /// the VM).
    Stop {
        /// The container.
        #[serde(default)]
        container: Option<String>,
        /// Grace period.
        timeout_secs: u64,
    },
    /// Wait for `condition`; replied `exited` or `removed`.
    Wait {
        /// The container.
        #[serde(default)]
        container: Option<String>,
        /// What to wait for.
        condition: WaitCondition,
        /// Hold an `--rm` container until this connection closes.
        #[serde(default)]
        hold: bool,
    },
    /// Stop the VM's vCPUs.
    Pause,
    /// Run them again.
    Unpause,
    /// CPU and block I/O of the VM, memory and processes of the guest.
    Stats,
    /// Stream this sandbox's events.
    Events,
    /// Pods: take the box `container` into the sandbox and assemble its
    /// root in the VM (not started).
    CreateContainer {
        /// The box id.
        container: String,
    },
    /// Pods: start the box `container` (created first if needed);
    /// replied `started` or `start_failed`.
    StartContainer {
        /// The box id.
        container: String,
        /// Hold an `--rm` container until this connection closes.
        #[serde(default)]
        hold: bool,
    },
    /// Pods: take the box `container` out of the sandbox (its processes
    /// are killed, its root unmounted; its layer stays). A running one
    /// only with `force`.
    RemoveContainer {
        /// The box id.
        container: String,
        /// Kill it if it runs.
        #[serde(default)]
        force: bool,
    },
    /// `network connect`: the box's networks are now `spec` (with
    /// `network` added); a running VM joins it at once (on a spare NIC),
    /// later boots boot with it.
    NetworkConnect {
        /// The network joined.
        network: String,
        /// The box's network spec with it.
        spec: a3s_box_core::spec::NetworkSpec,
    },
    /// `network disconnect`: the box's networks are now `spec` (without
    /// `network`); a running VM leaves it at once.
    NetworkDisconnect {
        /// The network left.
        network: String,
        /// The box's network spec without it.
        spec: a3s_box_core::spec::NetworkSpec,
    },
}

/// Docker's `wait` conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitCondition {
    /// Once the container is not running (at once if it is not).
    #[default]
    NotRunning,
    /// At the container's next exit, even if it is not running now.
    NextExit,
    /// Once the container has been removed.
    Removed,
}

impl FromStr for WaitCondition {
    type Err = BoxError;

    fn from_str(s: &str) -> Result<Self, BoxError> {
        match s {
            "not-running" | "" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(BoxError::Invalid(format!(
                "invalid wait condition {other:?}: use not-running, next-exit or removed"
            ))),
        }
    }
}

/// One reply line: a [`Reply`] or an [`RpcError`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// It worked.
    Reply(Reply),
    /// It was refused or failed.
    Error(RpcError),
}

/// What a request returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// `version`.
    Version {
        /// [`RPC_VERSION`].
        rpc: u32,
        /// The guest protocol's version.
        protocol: u32,
        /// The shim's package version.
        shim: String,
    },
    /// Done (`signal`, `pause`, `create_container`, …); for `exec`,
    /// `attach` and `events`, the switch to frames or events.
    Ok,
    /// The workload (or, for a pod's `start_report`, the VM) runs.
    Started {
        /// Host pid of the VM.
        vm_pid: u32,
    },
    /// It could not be started (Docker's 125/126/127) and why.
    StartFailed {
        /// Exit code for the CLI.
        code: i32,
        /// Why.
        reason: String,
    },
    /// The container exited (`wait`, `stop`).
    Exited {
        /// Its exit code.
        code: i32,
        /// Its supervisor is ending (no restart follows).
        #[serde(default)]
        last: bool,
    },
    /// The container was removed (`wait` for `removed`).
    Removed {
        /// Its last exit code.
        code: i32,
    },
    /// `stats`.
    Stats(SandboxStats),
}

/// `stats`: counters (cumulative; a client samples twice for rates).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxStats {
    /// Host pid of the VM.
    pub vm_pid: u32,
    /// CPU time of the VM process, in clock ticks.
    pub cpu_ticks: u64,
    /// Clock ticks per second.
    pub ticks_per_second: f64,
    /// Bytes the VM read from its disks.
    pub block_read_bytes: u64,
    /// Bytes the VM wrote to its disks.
    pub block_write_bytes: u64,
    /// Memory the guest kernel manages (0 when the guest did not answer).
    pub mem_total_bytes: u64,
    /// Memory it could give to new work.
    pub mem_available_bytes: u64,
    /// Processes in the guest.
    pub pids: u64,
}

/// Why a request failed, with the kind a front end acts on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    /// What sort of failure.
    pub kind: WireKind,
    /// What went wrong.
    pub message: String,
    /// The underlying cause (`internal` errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// The VM console's last lines (`hypervisor` errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_tail: Option<String>,
}

/// [`ErrorKind`] on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireKind {
    /// [`ErrorKind::Invalid`].
    Invalid,
    /// [`ErrorKind::NotFound`].
    NotFound,
    /// [`ErrorKind::Conflict`].
    Conflict,
    /// [`ErrorKind::NotRunning`].
    NotRunning,
    /// [`ErrorKind::Unavailable`].
    Unavailable,
    /// [`ErrorKind::Hypervisor`].
    Hypervisor,
    /// [`ErrorKind::Guest`].
    Guest,
    /// [`ErrorKind::Internal`].
    Internal,
}

impl From<ErrorKind> for WireKind {
    fn from(k: ErrorKind) -> Self {
        match k {
            ErrorKind::Invalid => WireKind::Invalid,
            ErrorKind::NotFound => WireKind::NotFound,
            ErrorKind::Conflict => WireKind::Conflict,
            ErrorKind::NotRunning => WireKind::NotRunning,
            ErrorKind::Unavailable => WireKind::Unavailable,
            ErrorKind::Hypervisor => WireKind::Hypervisor,
            ErrorKind::Guest => WireKind::Guest,
            ErrorKind::Internal => WireKind::Internal,
        }
    }
}

impl From<&BoxError> for RpcError {
    fn from(e: &BoxError) -> Self {
        let (message, cause, console_tail) = match e {
            BoxError::Invalid(m)
            | BoxError::Conflict(m)
            | BoxError::NotRunning(m)
            | BoxError::Unavailable(m)
            | BoxError::Guest(m) => (m.clone(), None, None),
            BoxError::NotFound { name, .. } => (name.clone(), None, None),
            BoxError::Vmm {
                message,
                console_tail,
            } => (message.clone(), None, console_tail.clone()),
            BoxError::Io { context, source } => (context.clone(), Some(source.to_string()), None),
            BoxError::MissingAsset { .. } => (e.to_string(), None, None),
        };
        RpcError {
            kind: e.kind().into(),
            message,
            cause,
            console_tail,
        }
    }
}

impl From<RpcError> for BoxError {
    fn from(e: RpcError) -> Self {
        match e.kind {
            WireKind::Invalid => BoxError::Invalid(e.message),
            WireKind::NotFound => BoxError::not_found("container", e.message),
            WireKind::Conflict => BoxError::Conflict(e.message),
            WireKind::NotRunning => BoxError::NotRunning(e.message),
            WireKind::Unavailable => BoxError::Unavailable(e.message),
            WireKind::Hypervisor => BoxError::Vmm {
                message: e.message,
                console_tail: e.console_tail,
            },
            WireKind::Guest => BoxError::Guest(e.message),
            WireKind::Internal => BoxError::io(
                e.message,
                std::io::Error::other(e.cause.unwrap_or_else(|| "failed".into())),
            ),
        }
    }
}

/// What happens in a sandbox, streamed after `events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SandboxEvent {
    /// A container's main process runs.
    Started {
        /// The box id.
        container: String,
        /// Host pid of the VM.
        vm_pid: u32,
    },
    /// A container could not be started.
    StartFailed {
        /// The box id.
        container: String,
        /// 125/126/127.
        code: i32,
        /// Why.
        reason: String,
    },
    /// A container's main process ended.
    Exited {
        /// The box id.
        container: String,
        /// Its exit code.
        code: i32,
    },
    /// The restart policy starts a container again after `delay_ms`.
    Restarting {
        /// The box id.
        container: String,
        /// Restarts so far, this one included.
        restart_count: u32,
        /// Back-off before it.
        delay_ms: u64,
    },
    /// The vCPUs stopped.
    Paused,
    /// The vCPUs run again.
    Resumed,
    /// A container was removed (`--rm`) or taken out of the sandbox.
    Removed {
        /// The box id.
        container: String,
    },
    /// An event of the hypervisor (QMP), by its name.
    Vm {
        /// `STOP`, `RESUME`, `SHUTDOWN`, …
        name: String,
        /// Its data.
        #[serde(default)]
        data: serde_json::Value,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_documented() {
        let line = r#"{"version":1,"request":{"op":"stop","timeout_secs":10}}"#;
        let env: Envelope = serde_json::from_str(line).unwrap();
        assert_eq!(
            env.request,
            Request::Stop {
                container: None,
                timeout_secs: 10
            }
        );
        let line =
            r#"{"version":1,"request":{"op":"wait","container":"ab","condition":"next_exit"}}"#;
        let env: Envelope = serde_json::from_str(line).unwrap();
        assert!(matches!(
            env.request,
            Request::Wait {
                condition: WaitCondition::NextExit,
                hold: false,
                ..
            }
        ));
        let pause = serde_json::to_string(&Envelope::new(Request::Pause)).unwrap();
        assert_eq!(pause, r#"{"version":1,"request":{"op":"pause"}}"#);
        assert!(serde_json::from_str::<Envelope>(
            r#"{"version":1,"request":{"op":"stop","timeout_secs":1,"extra":1}}"#
        )
        .is_err());
    }

    #[test]
    fn replies_and_errors_keep_their_kind() {
        let ok = Response::Reply(Reply::Exited {
            code: 3,
            last: true,
        });
        let text = serde_json::to_string(&ok).unwrap();
        assert_eq!(text, r#"{"reply":{"type":"exited","code":3,"last":true}}"#);
        for e in [
            BoxError::NotRunning("box x is not running".into()),
            BoxError::Conflict("busy".into()),
            BoxError::not_found("container", "c1"),
            BoxError::Guest("bad".into()),
            BoxError::io("read x", std::io::Error::other("boom")),
            BoxError::Vmm {
                message: "QEMU died".into(),
                console_tail: Some("tail".into()),
            },
        ] {
            let wire = RpcError::from(&e);
            let json = serde_json::to_string(&Response::Error(wire)).unwrap();
            let Response::Error(back) = serde_json::from_str(&json).unwrap() else {
                panic!("{json}")
            };
            let back = BoxError::from(back);
            assert_eq!(back.kind(), e.kind(), "{json}");
            assert_eq!(back.to_string(), e.to_string(), "{json}");
        }
    }

    #[test]
    fn wait_conditions_are_dockers() {
        assert_eq!(
            "next-exit".parse::<WaitCondition>().unwrap(),
            WaitCondition::NextExit
        );
        assert_eq!(
            "removed".parse::<WaitCondition>().unwrap(),
            WaitCondition::Removed
        );
        assert!("soon".parse::<WaitCondition>().is_err());
    }
}
