//! `inspect`: a box as Docker's `GET /containers/{id}/json` shows it, plus an
//! `A3s` section with what only a VM has (accelerator, vCPUs, supervisor).

use std::collections::BTreeMap;
use std::path::PathBuf;

use a3s_box_core::spec::{Mount, NetworkMode, NetworkSpec, PortMapping, RootSource};
use a3s_box_core::status::BoxStatus;
use serde::Serialize;

use super::list::image_of;
use crate::network::dataplane::state::NetworkState;
use crate::state::BoxRecord;

/// A box, inspected.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BoxInspect {
    /// Full id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// The program.
    pub path: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Where it is in its life.
    pub state: StateView,
    /// The image reference or root directory.
    pub image: String,
    /// The image's manifest digest the box runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// Restarts made by the restart policy.
    pub restart_count: u32,
    /// What it runs.
    pub config: ConfigView,
    /// How it is hosted.
    pub host_config: HostConfigView,
    /// Its mounts.
    pub mounts: Vec<MountView>,
    /// Where it is on its networks (while it runs) and its ports.
    pub network_settings: NetworkSettingsView,
    /// The pod it belongs to (id), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// What only a VM has.
    #[serde(rename = "A3s")]
    pub a3s: A3sView,
}

/// Docker's `State`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StateView {
    /// `running`, `exited`, ...
    pub status: BoxStatus,
    /// The workload runs (paused included, as Docker).
    pub running: bool,
    /// The vCPUs are stopped.
    pub paused: bool,
    /// Between two runs of a restart policy.
    pub restarting: bool,
    /// Never set: memory limits of a VM end in the guest's OOM killer.
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    /// Could not be cleaned up.
    pub dead: bool,
    /// Host pid of the VM (QEMU), 0 when not running.
    pub pid: u32,
    /// Last exit code.
    pub exit_code: i32,
    /// Why it ended, when not by itself.
    pub error: String,
    /// When it last started.
    pub started_at: String,
    /// When it last ended.
    pub finished_at: String,
}

/// Docker's `Config`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigView {
    /// Hostname.
    pub hostname: String,
    /// User spec.
    pub user: String,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// The command line.
    pub cmd: Vec<String>,
    /// The image reference or root directory.
    pub image: String,
    /// The root directory booted.
    pub rootfs: PathBuf,
    /// Working directory.
    pub working_dir: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub open_stdin: bool,
    /// `--expose` and the image's `EXPOSE` (`{"80/tcp": {}}`).
    pub exposed_ports: BTreeMap<String, Empty>,
}

/// Docker's `{}`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Empty {}

/// Docker's `HostConfig`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfigView {
    /// `{"Name": "on-failure", "MaximumRetryCount": 3}`.
    pub restart_policy: RestartPolicyView,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--read-only`.
    pub readonly_rootfs: bool,
    /// vCPUs, as Docker's NanoCpus.
    pub nano_cpus: u64,
    /// Memory in bytes.
    pub memory: u64,
    /// `default`, `none`, or the first named network.
    pub network_mode: String,
    /// `-p` as asked (`{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`).
    pub port_bindings: BTreeMap<String, Vec<PortBindingView>>,
    /// `-P`.
    pub publish_all_ports: bool,
    /// `--dns`.
    pub dns: Vec<String>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
    /// `--dns-option`.
    pub dns_options: Vec<String>,
    /// `--add-host`, as `NAME:ADDR`.
    pub extra_hosts: Vec<String>,
}

/// One host binding of a port.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBindingView {
    /// Host address (`""`: every address, as asked).
    pub host_ip: String,
    /// Host port (`""`: one the engine picks, as asked).
    pub host_port: String,
}

/// Docker's `NetworkSettings`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettingsView {
    /// Published ports with their host side, and exposed ones (`null`),
    /// while the box runs.
    pub ports: BTreeMap<String, Option<Vec<PortBindingView>>>,
    /// The first network's gateway.
    pub gateway: String,
    /// The first network's address.
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    /// Its prefix length.
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    /// The first NIC's MAC.
    pub mac_address: String,
    /// One entry per network, by name.
    pub networks: BTreeMap<String, EndpointView>,
}

/// The box on one network.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointView {
    /// `--network-alias`es.
    pub aliases: Option<Vec<String>>,
    /// The network's id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// Its gateway.
    pub gateway: String,
    /// The box's address there.
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    /// Its prefix length.
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    /// The NIC's MAC.
    pub mac_address: String,
    /// The names the box has there (Docker's `DNSNames`).
    #[serde(rename = "DNSNames")]
    pub dns_names: Option<Vec<String>>,
}

/// Docker's `RestartPolicy`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicyView {
    /// `no`, `always`, `on-failure`, `unless-stopped`.
    pub name: String,
    /// on-failure's limit (0: none).
    pub maximum_retry_count: u32,
}

/// One of Docker's `Mounts`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountView {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: &'static str,
    /// The volume's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The host path (or empty for tmpfs).
    pub source: String,
    /// The path in the box.
    pub destination: String,
    /// Writable.
    #[serde(rename = "RW")]
    pub rw: bool,
}

/// What only a VM has.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct A3sView {
    /// Accelerator it runs with and why (or the choice when not running).
    pub accelerator: String,
    /// vCPUs.
    pub v_cpus: u8,
    /// Memory in MiB.
    #[serde(rename = "MemoryMiB")]
    pub memory_mib: u32,
    /// Pid of its supervisor.
    pub shim_pid: Option<u32>,
    /// Its directory.
    pub dir: PathBuf,
    /// `--egress-allow` (the box's own rules).
    pub egress_allow: Vec<String>,
    /// `host-gateway` on its first network, while it runs.
    pub host_gateway: Option<String>,
}

impl BoxInspect {
    /// The view of `r` (in pod `pod`).
    pub fn of(r: &BoxRecord, pod: Option<String>) -> Self {
        use a3s_box_core::status::RestartPolicy;
        let (c, s) = (&r.config, &r.state);
        let container = c.container();
        let p = &container.process;
        let sandbox = &c.spec.sandbox;
        let command = container.command();
        let (path, args) = match command.split_first() {
            Some((p, a)) => (p.clone(), a.to_vec()),
            None => (String::new(), Vec::new()),
        };
        let (name, max) = match container.restart {
            RestartPolicy::OnFailure { max_retries } => {
                ("on-failure".to_string(), max_retries.unwrap_or(0))
            }
            other => (other.to_string(), 0),
        };
        let rootfs = match &container.root {
            RootSource::Dir { path } => path.clone(),
            RootSource::Image { .. } => Default::default(),
        };
        BoxInspect {
            id: c.id.clone(),
            name: c.name.clone(),
            created: c.created.clone(),
            path,
            args,
            state: StateView {
                status: s.status,
                running: matches!(s.status, BoxStatus::Running | BoxStatus::Paused),
                paused: s.status == BoxStatus::Paused,
                restarting: s.status == BoxStatus::Restarting,
                oom_killed: false,
                dead: s.status == BoxStatus::Dead,
                pid: s.vm_pid.unwrap_or(0),
                exit_code: s.exit_code.unwrap_or(0),
                error: s.error.clone().unwrap_or_default(),
                started_at: s.started_at.clone().unwrap_or_default(),
                finished_at: s.finished_at.clone().unwrap_or_default(),
            },
            image: image_of(r),
            image_digest: match &container.root {
                RootSource::Image { digest, .. } => digest.clone(),
                RootSource::Dir { .. } => None,
            },
            restart_count: s.restart_count,
            config: ConfigView {
                hostname: sandbox
                    .hostname
                    .clone()
                    .unwrap_or_else(|| c.id[..12].to_string()),
                user: p.user.clone().unwrap_or_default(),
                env: p.env.iter().map(ToString::to_string).collect(),
                cmd: command,
                image: image_of(r),
                rootfs,
                working_dir: p.cwd.clone().unwrap_or_default(),
                labels: container.labels.clone(),
                tty: p.tty,
                open_stdin: p.stdin,
                exposed_ports: sandbox
                    .network
                    .expose
                    .iter()
                    .map(|e| (e.to_string(), Empty {}))
                    .collect(),
            },
            host_config: HostConfigView {
                restart_policy: RestartPolicyView {
                    name,
                    maximum_retry_count: max,
                },
                auto_remove: container.auto_remove,
                readonly_rootfs: container.storage.read_only,
                nano_cpus: u64::from(sandbox.resources.vcpus) * 1_000_000_000,
                memory: u64::from(sandbox.resources.memory_mib) << 20,
                network_mode: network_mode(&sandbox.network),
                port_bindings: bindings(&sandbox.network.ports, false),
                publish_all_ports: sandbox.network.publish_all,
                dns: sandbox
                    .network
                    .dns
                    .servers
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                dns_search: sandbox.network.dns.search.clone(),
                dns_options: sandbox.network.dns.options.clone(),
                extra_hosts: sandbox
                    .network
                    .extra_hosts
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            },
            mounts: container.storage.mounts.iter().map(MountView::of).collect(),
            network_settings: network_settings(r, c.id.as_str()),
            pod,
            a3s: A3sView {
                accelerator: s
                    .accelerator
                    .clone()
                    .unwrap_or_else(|| sandbox.vm.accel.to_string()),
                v_cpus: sandbox.resources.vcpus,
                memory_mib: sandbox.resources.memory_mib,
                shim_pid: s.shim_pid,
                dir: r.dir.clone(),
                egress_allow: sandbox
                    .network
                    .egress
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                host_gateway: running_network(r)
                    .and_then(|n| n.networks.first()?.host_gateway)
                    .map(|ip| ip.to_string()),
            },
        }
    }
}

/// `HostConfig.NetworkMode`.
fn network_mode(spec: &NetworkSpec) -> String {
    match &spec.mode {
        NetworkMode::None => "none".into(),
        NetworkMode::Default => "default".into(),
        NetworkMode::Networks(list) => list.first().map(|n| n.name.clone()).unwrap_or_default(),
    }
}

/// Port mappings by `PORT/PROTO`; `settled` shows what the engine picked.
fn bindings(ports: &[PortMapping], settled: bool) -> BTreeMap<String, Vec<PortBindingView>> {
    let mut out: BTreeMap<String, Vec<PortBindingView>> = BTreeMap::new();
    for p in ports {
        let default_ip = if settled { "0.0.0.0" } else { "" };
        out.entry(format!("{}/{}", p.container_port, p.protocol))
            .or_default()
            .push(PortBindingView {
                host_ip: p
                    .host_ip
                    .map_or_else(|| default_ip.to_string(), |ip| ip.to_string()),
                host_port: p.host_port.map(|p| p.to_string()).unwrap_or_default(),
            });
    }
    out
}

/// The network state of a running box.
fn running_network(r: &BoxRecord) -> Option<NetworkState> {
    matches!(r.state.status, BoxStatus::Running | BoxStatus::Paused)
        .then(|| NetworkState::read(&r.dir))
        .flatten()
}

fn network_settings(r: &BoxRecord, id: &str) -> NetworkSettingsView {
    let spec = &r.config.spec.sandbox.network;
    let Some(state) = running_network(r) else {
        return configured_networks(r, id);
    };
    let mut ports: BTreeMap<String, Option<Vec<PortBindingView>>> =
        spec.expose.iter().map(|e| (e.to_string(), None)).collect();
    for (key, list) in bindings(&state.ports, true) {
        ports.insert(key, Some(list));
    }
    let name = &r.config.name;
    let networks = state
        .networks
        .iter()
        .map(|n| {
            let mut names = vec![name.clone()];
            names.extend(n.aliases.iter().cloned());
            names.push(id[..id.len().min(12)].to_string());
            let view = EndpointView {
                aliases: (!n.aliases.is_empty()).then(|| n.aliases.clone()),
                network_id: n.network_id.clone(),
                gateway: n.gateway.to_string(),
                ip_address: n.ipv4.to_string(),
                ip_prefix_len: n.prefix_len,
                mac_address: n.mac.to_string(),
                dns_names: (n.network != crate::network::store::DEFAULT_NETWORK).then_some(names),
            };
            (n.network.clone(), view)
        })
        .collect();
    let first = state.networks.first();
    NetworkSettingsView {
        ports,
        gateway: first.map(|n| n.gateway.to_string()).unwrap_or_default(),
        ip_address: first.map(|n| n.ipv4.to_string()).unwrap_or_default(),
        ip_prefix_len: first.map_or(0, |n| n.prefix_len),
        mac_address: first.map(|n| n.mac.to_string()).unwrap_or_default(),
        networks,
    }
}

/// A box that does not run: the networks its spec joins (Docker shows
/// them without addresses), so `network connect` on a stopped box shows.
fn configured_networks(r: &BoxRecord, id: &str) -> NetworkSettingsView {
    let list = match &r.config.spec.sandbox.network.mode {
        NetworkMode::None => return NetworkSettingsView::default(),
        NetworkMode::Default => vec![a3s_box_core::spec::NetworkAttachment {
            name: crate::network::store::DEFAULT_NETWORK.into(),
            aliases: Vec::new(),
            ipv4: None,
        }],
        NetworkMode::Networks(list) => list.clone(),
    };
    // <home>/boxes/<id> → <home>/networks.
    let store = r
        .dir
        .parent()
        .and_then(|boxes| boxes.parent())
        .map(|home| crate::network::store::NetworkStore::at(home.join("networks")));
    let networks = list
        .into_iter()
        .map(|a| {
            let network_id = store
                .as_ref()
                .and_then(|s| s.get(&a.name).ok())
                .map(|n| n.id)
                .unwrap_or_default();
            let mut names = vec![r.config.name.clone()];
            names.extend(a.aliases.iter().cloned());
            names.push(id[..id.len().min(12)].to_string());
            let view = EndpointView {
                aliases: (!a.aliases.is_empty()).then(|| a.aliases.clone()),
                network_id,
                gateway: String::new(),
                ip_address: a.ipv4.map(|ip| ip.to_string()).unwrap_or_default(),
                ip_prefix_len: 0,
                mac_address: String::new(),
                dns_names: (a.name != crate::network::store::DEFAULT_NETWORK).then_some(names),
            };
            (a.name, view)
        })
        .collect();
    NetworkSettingsView {
        networks,
        ..NetworkSettingsView::default()
    }
}

impl MountView {
    fn of(m: &Mount) -> Self {
        let (kind, name, source) = match m {
            Mount::Bind { source, .. } => ("bind", None, source.display().to_string()),
            Mount::Volume { name, .. } => ("volume", name.clone(), String::new()),
            Mount::Tmpfs { .. } => ("tmpfs", None, String::new()),
        };
        MountView {
            kind,
            name,
            source,
            destination: m.target().to_string(),
            rw: !m.read_only(),
        }
    }
}
