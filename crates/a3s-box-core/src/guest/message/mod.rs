//! Typed control messages carried in [`super::Frame::Control`], and the
//! specs they carry: the sandbox's boot ([`BootSpec`]), its containers
//! ([`container`]), its network ([`network`]) and processes ([`ProcessSpec`]).

mod container;
mod network;

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use self::container::{
    check_container_id, check_writable_dir, ContainerSpec, DiskSpec, MountSource, MountSpec,
    RootImage, RootSpec, StorageSpec, MAX_CONTAINER_ID_BYTES, SEAL_XATTR, SHARED_FILE_NAME,
};
pub use self::network::{DnsConfig, HostEntry, InterfaceConfig, Ipv4Cidr, MacAddr, NetworkConfig};

/// A control message, tagged with its direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    /// Sent by the host.
    Host(HostMessage),
    /// Sent by guest-init.
    Guest(GuestMessage),
}

/// Host → guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    /// Set up the sandbox (clock, entropy, network) and, on the
    /// one-container fast path, create its first container and start that
    /// container's main process.
    Boot(BootSpec),
    /// Create a container in the sandbox: its root, storage, cgroup and
    /// /etc files. Answered by `ContainerCreated` or `ContainerFailed`.
    CreateContainer(ContainerSpec),
    /// Start the main process of the container `ProcessSpec.container`: the
    /// init of the container's new PID, mount, UTS and IPC namespaces.
    /// Refused while the container's main process runs; after it exited,
    /// this restarts the container (new namespaces, same root). Answered
    /// like `Exec`.
    Start(ProcessSpec),
    /// Remove a container: kill its processes, unmount its root and mounts,
    /// remove its cgroup. Answered by `ContainerRemoved` or `ContainerFailed`.
    RemoveContainer {
        /// The container's id.
        container: String,
        /// Delete its writable layer too (`upper/` and `work/` on a disk; a
        /// tmpfs layer always goes).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        discard: bool,
    },
    /// Deliver a signal to a process.
    Signal {
        /// Process id (host-chosen).
        process: u32,
        /// Signal number.
        signal: i32,
    },
    /// Start another process in the namespaces of the running container
    /// `ProcessSpec.container` (`exec`, and guest-init's built-in helpers).
    /// Refused when the container's main process is not running.
    Exec(ProcessSpec),
    /// The terminal of a process with a PTY changed size.
    Resize {
        /// Process id (host-chosen).
        process: u32,
        /// The new size.
        size: WindowSize,
    },
    /// Every exit is received: sync the disks and power off.
    Shutdown,
    /// Configure one more interface (`network connect` of a running box:
    /// a NIC it booted with, found by MAC). Answered by
    /// `InterfaceConfigured` or `InterfaceFailed`.
    ConfigureInterface(InterfaceConfig),
    /// Take the interface with this MAC down and drop its address
    /// (`network disconnect`). Answered like `ConfigureInterface`.
    DeconfigureInterface {
        /// The NIC's MAC.
        mac: MacAddr,
    },
    /// From a box client to its supervisor, never forwarded to the guest:
    /// the client is leaving (Ctrl-P Ctrl-Q) and its process keeps running.
    Detach,
}

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

impl Default for WindowSize {
    fn default() -> Self {
        WindowSize { rows: 24, cols: 80 }
    }
}

/// Guest → host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GuestMessage {
    /// First message once the port is open.
    Hello {
        /// The guest's [`super::PROTOCOL_VERSION`].
        version: u32,
        /// The guest kernel release (`uname -r`).
        kernel: String,
    },
    /// A process is running.
    Started {
        /// Process id (host-chosen).
        process: u32,
        /// Its PID in the guest.
        pid: u32,
    },
    /// A process could not be started (Docker's 125/126/127 codes).
    SpawnFailed {
        /// Process id (host-chosen).
        process: u32,
        /// 126 (not executable), 127 (not found) or 125 (other).
        exit_code: i32,
        /// Why, for the user.
        reason: String,
    },
    /// A process ended; its streams are flushed before this is sent.
    Exited {
        /// Process id (host-chosen).
        process: u32,
        /// Exit status, or 128 + signal number when killed by a signal.
        exit_code: i32,
    },
    /// guest-init cannot go on (for example the root filesystem does not mount).
    Fatal {
        /// Why.
        reason: String,
    },
    /// A container exists: its root is assembled (`Boot.container` or
    /// `CreateContainer`).
    ContainerCreated {
        /// Its id.
        container: String,
    },
    /// A container is gone, with every process it had.
    ContainerRemoved {
        /// Its id.
        container: String,
    },
    /// A `ConfigureInterface` or `DeconfigureInterface` is done.
    InterfaceConfigured {
        /// The NIC's MAC.
        mac: MacAddr,
    },
    /// A `ConfigureInterface` or `DeconfigureInterface` failed.
    InterfaceFailed {
        /// The NIC's MAC.
        mac: MacAddr,
        /// Why.
        reason: String,
    },
    /// A `CreateContainer` or `RemoveContainer` failed. A failed create
    /// leaves nothing behind; a failed remove leaves the container in place.
    ContainerFailed {
        /// Its id.
        container: String,
        /// What was asked.
        op: ContainerOp,
        /// Why, for the user.
        reason: String,
    },
}

/// What the host asked of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerOp {
    /// `CreateContainer`.
    Create,
    /// `RemoveContainer`.
    Remove,
}

/// A process to run in a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// Host-chosen id naming the process in later frames.
    pub process: u32,
    /// The container it runs in (`None`: the container `Boot` created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Program: a path, or a name looked up in `PATH` inside the box.
    pub executable: String,
    /// Arguments after the program.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Working directory inside the box.
    pub workdir: String,
    /// User spec, resolved in the guest against the box's /etc/passwd.
    pub user: Option<String>,
    /// Whether the host will send stdin; otherwise stdin is /dev/null.
    pub stdin: bool,
    /// Run on a new pseudo-terminal of this size: stdin, stdout and stderr
    /// are its slave side, and all output arrives on the stdout stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<WindowSize>,
    /// Run guest-init's own built-in helper named by `executable` (`cp`,
    /// `top` and `stats` use these) instead of a program of the box.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub builtin: bool,
}

/// Largest [`BootSpec::entropy`] guest-init feeds to its RNG.
pub const MAX_ENTROPY_BYTES: usize = 512;

/// What the guest needs at boot: the sandbox's clock, entropy and network,
/// and for the one-container fast path its first container and main
/// process (a plain box boots in one round trip).
///
/// A VM restored from a memory snapshot is waiting for this message, with a
/// stale clock and RNG state: `clock` and `entropy` fix both before anything
/// runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootSpec {
    /// The sandbox's (this VM's) id.
    pub sandbox: String,
    /// The host's wall-clock time when it sent this: the guest sets its
    /// `CLOCK_REALTIME` to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<WallClock>,
    /// Fresh random bytes from the host, mixed into the guest's RNG
    /// (`RNDADDENTROPY`, then `RNDRESEEDCRNG`); at most [`MAX_ENTROPY_BYTES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entropy: Vec<u8>,
    /// Interfaces, DNS and hosts entries (`None`: loopback only; the image's
    /// `/etc/resolv.conf` is left as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Box<NetworkConfig>>,
    /// The first container, created before anything else is read. If it
    /// cannot be, guest-init sends `Fatal` and powers off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Box<ContainerSpec>>,
    /// The first container's main process, started right after it (as by
    /// `Start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<Box<ProcessSpec>>,
}

/// A wall-clock time: seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WallClock {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub secs: i64,
    /// Nanoseconds past `secs` (below 1 000 000 000).
    pub nanos: u32,
}

impl From<SystemTime> for WallClock {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => WallClock {
                secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: d.subsec_nanos(),
            },
            Err(before) => {
                // Before the epoch: whole seconds down, nanoseconds up.
                let d = before.duration();
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                match d.subsec_nanos() {
                    0 => WallClock {
                        secs: -secs,
                        nanos: 0,
                    },
                    n => WallClock {
                        secs: -secs - 1,
                        nanos: 1_000_000_000 - n,
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json() {
        let msg = Message::Guest(GuestMessage::Exited {
            process: 1,
            exit_code: 3,
        });
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            json,
            r#"{"guest":{"type":"exited","process":1,"exit_code":3}}"#
        );
        assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), msg);
        assert!(serde_json::from_str::<Message>(r#"{"guest":{"type":"nope"}}"#).is_err());
    }

    #[test]
    fn container_messages_are_tagged_json() {
        let msg = Message::Host(HostMessage::RemoveContainer {
            container: "web".into(),
            discard: false,
        });
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            json,
            r#"{"host":{"type":"remove_container","container":"web"}}"#
        );
        assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), msg);
        let msg = Message::Guest(GuestMessage::ContainerFailed {
            container: "web".into(),
            op: ContainerOp::Create,
            reason: "no".into(),
        });
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            json,
            r#"{"guest":{"type":"container_failed","container":"web","op":"create","reason":"no"}}"#
        );
        assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), msg);
    }

    #[test]
    fn a_bare_boot_is_just_the_sandbox_id() {
        let boot = BootSpec {
            sandbox: "s1".into(),
            clock: None,
            entropy: Vec::new(),
            network: None,
            container: None,
            main: None,
        };
        let json = serde_json::to_string(&boot).unwrap();
        assert_eq!(json, r#"{"sandbox":"s1"}"#);
        assert_eq!(serde_json::from_str::<BootSpec>(&json).unwrap(), boot);
    }

    #[test]
    fn wall_clocks_count_from_the_epoch_both_ways() {
        use std::time::Duration;
        let after = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(
            WallClock::from(after),
            WallClock {
                secs: 1_700_000_000,
                nanos: 5
            }
        );
        let before = UNIX_EPOCH - Duration::new(2, 250_000_000);
        assert_eq!(
            WallClock::from(before),
            WallClock {
                secs: -3,
                nanos: 750_000_000
            }
        );
        let exact = UNIX_EPOCH - Duration::from_secs(2);
        assert_eq!(WallClock::from(exact), WallClock { secs: -2, nanos: 0 });
    }
}
