//! The VMM contract: what a hypervisor backend must provide.
//!
//! A backend implements [`VmmProvider`] (turn an [`InstanceSpec`] into a
//! running VM) and returns a [`VmHandler`] (stop it, read its metrics, ask
//! whether it still runs). Everything here is plain data plus two traits, so
//! an out-of-tree backend only needs this crate.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::ResourceLimits;
use crate::error::Result;

/// A host directory shared into the guest over virtio-fs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FsMount {
    /// Tag the guest mounts the share by.
    pub tag: String,
    /// Directory on the host.
    pub host_path: PathBuf,
    /// Share is read-only for the guest.
    pub read_only: bool,
}

/// The program the guest runs as the box's workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entrypoint {
    /// Executable inside the guest: a path, or a name looked up in `PATH`.
    pub executable: String,
    /// Arguments after the executable.
    pub args: Vec<String>,
    /// Environment, as ordered key/value pairs.
    pub env: Vec<(String, String)>,
}

/// Confidential-computing settings handed to the backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeeInstanceConfig {
    /// JSON file with the TEE configuration.
    pub config_path: PathBuf,
    /// Kind of TEE, for example `"snp"`.
    pub tee_type: String,
}

/// Guest network settings when the VM gets a virtio-net device backed by passt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkInstanceConfig {
    /// Unix socket of the passt process serving this VM.
    pub passt_socket_path: PathBuf,
    /// The guest's IPv4 address.
    pub ip_address: Ipv4Addr,
    /// Default gateway.
    pub gateway: Ipv4Addr,
    /// Prefix length of the guest subnet (24 for a /24).
    pub prefix_len: u8,
    /// The guest NIC's MAC address.
    pub mac_address: [u8; 6],
    /// Resolvers written to the guest's resolv.conf.
    #[serde(default)]
    pub dns_servers: Vec<Ipv4Addr>,
}

/// Everything a backend needs to start one VM.
///
/// The runtime writes it for the per-box shim, which starts the VM from it.
/// Fields marked `#[serde(default)]` may be left out of the JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// The box this VM belongs to.
    pub box_id: String,
    /// Virtual CPUs (default 2).
    pub vcpus: u8,
    /// Guest memory in MiB (default 512).
    pub memory_mib: u32,
    /// Root filesystem: a directory or a block image on the host.
    pub rootfs_path: PathBuf,
    /// Unix socket carrying exec and the guest protocol.
    pub exec_socket_path: PathBuf,
    /// Unix socket for interactive terminals.
    #[serde(default)]
    pub pty_socket_path: PathBuf,
    /// Unix socket for TEE attestation requests.
    #[serde(default)]
    pub attest_socket_path: PathBuf,
    /// virtio-fs shares.
    pub fs_mounts: Vec<FsMount>,
    /// The workload.
    pub entrypoint: Entrypoint,
    /// File that receives the VM's console output.
    pub console_output: Option<PathBuf>,
    /// Working directory of the workload (default `/`).
    pub workdir: String,
    /// TEE settings; `None` for an ordinary VM.
    pub tee_config: Option<TeeInstanceConfig>,
    /// Published ports as `"host_port:guest_port"`.
    #[serde(default)]
    pub port_map: Vec<String>,
    /// Workload user: `"uid"`, `"uid:gid"`, `"name"` or `"name:group"`.
    #[serde(default)]
    pub user: Option<String>,
    /// passt networking; `None` keeps the backend's default mode.
    #[serde(default)]
    pub network: Option<NetworkInstanceConfig>,
    /// Limits applied to the workload inside the guest.
    #[serde(default)]
    pub resource_limits: ResourceLimits,
}

impl Default for InstanceSpec {
    fn default() -> Self {
        InstanceSpec {
            box_id: String::new(),
            vcpus: 2,
            memory_mib: 512,
            rootfs_path: PathBuf::new(),
            exec_socket_path: PathBuf::new(),
            pty_socket_path: PathBuf::new(),
            attest_socket_path: PathBuf::new(),
            fs_mounts: Vec::new(),
            entrypoint: Entrypoint {
                executable: String::new(),
                args: Vec::new(),
                env: Vec::new(),
            },
            console_output: None,
            workdir: "/".into(),
            tee_config: None,
            port_map: Vec::new(),
            user: None,
            network: None,
            resource_limits: ResourceLimits::default(),
        }
    }
}

/// CPU and memory use of a VM, when the backend can tell.
#[derive(Debug, Clone, Default)]
pub struct VmMetrics {
    /// CPU use in percent, where 100 is one host core fully busy.
    pub cpu_percent: Option<f32>,
    /// Resident memory of the VM process in bytes.
    pub memory_bytes: Option<u64>,
}

/// How long [`VmHandler::stop`] callers wait by default before SIGKILL.
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 10_000;

/// Turn a signal name or number into its number.
///
/// Names are case-insensitive, with or without the `SIG` prefix (`"TERM"`,
/// `"sigkill"`); a decimal number is taken as is. Anything unrecognised maps
/// to SIGTERM (15), which makes this lenient parser safe for stop paths;
/// commands that must reject bad names validate before calling it.
pub fn parse_signal_name(name: &str) -> i32 {
    let trimmed = name.trim();
    let upper = trimmed.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    match bare {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" | "ALARM" => 14,
        "TERM" => 15,
        "CHLD" | "CLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "WINCH" => 28,
        _ => trimmed.parse().unwrap_or(15),
    }
}

/// Operations on a VM that is (or was) running.
///
/// Kept apart from [`VmmProvider`] so a handler can be rebuilt for a VM that
/// another process started, from its PID alone.
pub trait VmHandler: Send + Sync {
    /// Send `signal`, wait up to `timeout_ms` for the VM to exit, then SIGKILL.
    fn stop(&mut self, signal: i32, timeout_ms: u64) -> Result<()>;

    /// Current CPU and memory use.
    fn metrics(&self) -> VmMetrics;

    /// Whether the VM process is alive.
    fn is_running(&self) -> bool;

    /// Host PID of the VM process.
    fn pid(&self) -> u32;

    /// Exit code of the VM process once it has exited and been reaped.
    /// Backends that cannot tell keep the default `None`.
    fn exit_code(&self) -> Option<i32> {
        None
    }

    /// Why the VM process ended, when it ended by a failure of its own (not
    /// a guest power-off): its exit status and what it said, in a sentence.
    /// `None` while it runs, after a clean exit, or when the backend cannot
    /// tell.
    fn exit_reason(&self) -> Option<String> {
        None
    }
}

/// A hypervisor backend.
#[async_trait]
pub trait VmmProvider: Send + Sync {
    /// Start a VM for `spec` and hand back its handler.
    async fn start(&self, spec: &InstanceSpec) -> Result<Box<dyn VmHandler>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_with_and_without_prefix() {
        for (name, num) in [
            ("SIGHUP", 1),
            ("int", 2),
            ("SigQuit", 3),
            ("KILL", 9),
            ("usr1", 10),
            ("SIGUSR2", 12),
            ("ALARM", 14),
            ("SIGALRM", 14),
            (" TERM ", 15),
            ("CLD", 17),
            ("SIGWINCH", 28),
        ] {
            assert_eq!(parse_signal_name(name), num, "{name}");
        }
    }

    #[test]
    fn signal_numbers_pass_through_and_junk_means_term() {
        assert_eq!(parse_signal_name("9"), 9);
        assert_eq!(parse_signal_name("34"), 34);
        assert_eq!(parse_signal_name("SIGNOPE"), 15);
        assert_eq!(parse_signal_name(""), 15);
        assert_eq!(parse_signal_name("nine"), 15);
    }

    #[test]
    fn spec_defaults_match_the_contract() {
        let spec = InstanceSpec::default();
        assert_eq!((spec.vcpus, spec.memory_mib), (2, 512));
        assert_eq!(spec.workdir, "/");
        assert!(spec.user.is_none() && spec.network.is_none() && spec.tee_config.is_none());
        assert!(spec.fs_mounts.is_empty() && spec.port_map.is_empty());
        assert_eq!(spec.resource_limits, ResourceLimits::default());
    }

    #[test]
    fn spec_round_trips_through_json() {
        let spec = InstanceSpec {
            box_id: "b1".into(),
            vcpus: 1,
            memory_mib: 256,
            rootfs_path: "/r".into(),
            fs_mounts: vec![FsMount {
                tag: "data".into(),
                host_path: "/srv/data".into(),
                read_only: true,
            }],
            entrypoint: Entrypoint {
                executable: "sh".into(),
                args: vec!["-c".into(), "exit 3".into()],
                env: vec![("A".into(), "1".into())],
            },
            tee_config: Some(TeeInstanceConfig {
                config_path: "/t.json".into(),
                tee_type: "snp".into(),
            }),
            network: Some(NetworkInstanceConfig {
                passt_socket_path: "/p.sock".into(),
                ip_address: Ipv4Addr::new(10, 0, 2, 15),
                gateway: Ipv4Addr::new(10, 0, 2, 2),
                prefix_len: 24,
                mac_address: [2, 0, 0, 0, 0, 1],
                dns_servers: vec![],
            }),
            user: Some("1000:1000".into()),
            port_map: vec!["8080:80".into()],
            ..InstanceSpec::default()
        };
        let json = serde_json::to_value(&spec).unwrap();
        // The JSON shape is part of the contract: field names as in the struct.
        assert_eq!(json["entrypoint"]["env"][0], serde_json::json!(["A", "1"]));
        assert_eq!(
            json["network"]["mac_address"],
            serde_json::json!([2, 0, 0, 0, 0, 1])
        );
        assert_eq!(json["tee_config"]["tee_type"], "snp");
        let back: InstanceSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back.entrypoint.args, ["-c", "exit 3"]);
        assert_eq!(back.fs_mounts[0].host_path, PathBuf::from("/srv/data"));
        assert_eq!(back.user.as_deref(), Some("1000:1000"));
        assert_eq!(back.network.unwrap().prefix_len, 24);
    }

    #[test]
    fn optional_fields_may_be_missing() {
        let spec: InstanceSpec = serde_json::from_str(
            r#"{"box_id":"x","vcpus":1,"memory_mib":128,"rootfs_path":"/r",
                "exec_socket_path":"/e","fs_mounts":[],
                "entrypoint":{"executable":"/bin/true","args":[],"env":[]},
                "console_output":null,"workdir":"/","tee_config":null}"#,
        )
        .unwrap();
        assert_eq!(spec.pty_socket_path, PathBuf::new());
        assert!(spec.user.is_none() && spec.network.is_none());
        assert!(spec.port_map.is_empty());
        assert_eq!(spec.resource_limits.pids_limit, None);
        let net: NetworkInstanceConfig = serde_json::from_str(
            r#"{"passt_socket_path":"/p","ip_address":"10.0.0.2","gateway":"10.0.0.1",
                "prefix_len":24,"mac_address":[1,2,3,4,5,6]}"#,
        )
        .unwrap();
        assert!(net.dns_servers.is_empty());
    }

    #[test]
    fn required_fields_are_required() {
        let err = serde_json::from_str::<InstanceSpec>(r#"{"box_id":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field"));
    }

    #[test]
    fn handler_exit_code_defaults_to_none() {
        struct Dead;
        impl VmHandler for Dead {
            fn stop(&mut self, _: i32, _: u64) -> Result<()> {
                Ok(())
            }
            fn metrics(&self) -> VmMetrics {
                VmMetrics::default()
            }
            fn is_running(&self) -> bool {
                false
            }
            fn pid(&self) -> u32 {
                1
            }
        }
        assert_eq!(Dead.exit_code(), None);
        assert_eq!(Dead.exit_reason(), None);
        assert!(Dead.metrics().cpu_percent.is_none());
    }
}
