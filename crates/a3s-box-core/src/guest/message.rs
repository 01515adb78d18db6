//! Typed control messages carried in [`super::Frame::Control`].

use serde::{Deserialize, Serialize};

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
    /// Assemble the root filesystem and start the main process.
    Boot(BootSpec),
    /// Deliver a signal to a process.
    Signal {
        /// Process id (host-chosen).
        process: u32,
        /// Signal number.
        signal: i32,
    },
    /// Start another process in the running box's namespaces (`exec`, and
    /// guest-init's built-in helpers).
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
}

/// How the box's root filesystem is assembled in the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootSpec {
    /// Read-only lower layer: a guest block device such as `/dev/vda`.
    pub device: String,
    /// Its filesystem type (`ext4`, `erofs`).
    pub fstype: String,
}

/// The box's storage beyond its image (boxed: a boot message stays small).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StorageSpec {
    /// The box's own writable layer: an ext4 disk holding the overlay's
    /// upper and work directories, kept across restarts. `None`: a tmpfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writable: Option<DiskSpec>,
    /// Size cap of a tmpfs upper layer in bytes (`None`: the tmpfs default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_upper_bytes: Option<u64>,
    /// Make the assembled root read-only (`--read-only`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Filesystems mounted into the box (`-v`, `--mount`, `--tmpfs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
}

/// A guest block device, found by the serial number the host gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// virtio-blk serial (`/sys/block/*/serial` in the guest).
    pub serial: String,
    /// Its filesystem type.
    pub fstype: String,
}

/// A filesystem mounted into the box before the workload starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Absolute path inside the box (created when missing).
    pub target: String,
    /// What is mounted there.
    pub source: MountSource,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// `noexec`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub noexec: bool,
    /// `nosuid`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nosuid: bool,
    /// `nodev`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nodev: bool,
    /// Fill the share from the image before it is mounted (a new volume,
    /// Docker's copy-up): what the box root holds at `target` is copied in
    /// with owners, modes and times, unless the share is not empty by then.
    /// Ignored for tmpfs. A read-only mount to fill is served writable
    /// until guest-init seals it ([`SEAL_XATTR`]) after the copy, before
    /// the workload starts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub populate: bool,
}

/// Name of the one entry of a single-file share's root (`a3s-box-fs --file`).
pub const SHARED_FILE_NAME: &str = "file";

/// Setting this extended attribute on a share served with
/// `a3s-box-fs --seal-after-fill` makes the daemon refuse every write from
/// then on; nothing can undo it. Other daemons store it as a plain xattr.
pub const SEAL_XATTR: &str = "user.a3s-box.seal";

/// The filesystem of a [`MountSpec`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountSource {
    /// A host directory shared over virtio-fs under `tag`.
    Virtiofs {
        /// The virtio-fs tag.
        tag: String,
        /// The share holds a single host file, named [`SHARED_FILE_NAME`]
        /// in its root: that file is mounted at the target, not the share.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        file: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Size cap in bytes (`None`: the tmpfs default).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size_bytes: Option<u64>,
        /// Mode of its root directory (`None`: 1777).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
    },
}

/// A process to run in the box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// Host-chosen id naming the process in later frames.
    pub process: u32,
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

/// Everything the guest needs at boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootSpec {
    /// Hostname of the box.
    pub hostname: String,
    /// Root filesystem.
    pub root: RootSpec,
    /// The main process.
    pub main: ProcessSpec,
    /// Writable layer, read-only root, mounts (`None`: a tmpfs upper layer
    /// and no mounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Box<StorageSpec>>,
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
    fn mount_specs_without_populate_still_parse() {
        let old = r#"{"target":"/v","source":{"type":"virtiofs","tag":"a3s-fs0"}}"#;
        let m: MountSpec = serde_json::from_str(old).unwrap();
        assert!(!m.populate && !m.read_only);
        let new = MountSpec {
            populate: true,
            ..m.clone()
        };
        let json = serde_json::to_string(&new).unwrap();
        assert!(json.ends_with(r#""populate":true}"#), "{json}");
        assert_eq!(serde_json::from_str::<MountSpec>(&json).unwrap(), new);
        assert_eq!(serde_json::to_string(&m).unwrap(), old, "false is left out");
    }
}
