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
}
