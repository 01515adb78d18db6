//! Typed, versioned box specs: what every front end (CLI, HTTP API,
//! containerd shim, SDK) turns its input into, and what the engine stores
//! in each box's `config.json`.
//!
//! A [`BoxSpec`] is a [`SandboxSpec`] (the VM: hostname, [`Resources`],
//! [`NetworkSpec`], [`VmOptions`], pod) and its [`ContainerSpec`]s (root,
//! [`ProcessSpec`], [`StorageSpec`], restart policy). It is the request as
//! the user made it; the engine resolves it against the image (command,
//! environment, `VOLUME`s, `--volumes-from`) and fills in what it decides
//! (the image digest, names of anonymous volumes).
//!
//! Everything here is pure data. `validate()` checks a spec (or a part)
//! and names the offending field in a [`SpecError`]; the parsers of
//! Docker's string syntaxes (`-v`, `--mount`, `--tmpfs`, `-p`,
//! `--add-host`, `--egress-allow`, `--restart`, signals, sizes) live beside
//! the types, touch no file system and read no environment.
//!
//! # JSON
//! Field names as in the structs; enums are externally tagged in
//! snake_case (`{"dir":{"path":"/r"}}`, `"none"`, `{"networks":[…]}`);
//! signals, environment variables (`"NAME=VALUE"`), CIDR blocks and MAC
//! addresses are strings. Unknown fields are refused; every field but
//! `containers`, a container's `root` and the fields named in their docs
//! has a default, and `schema_version` defaults to [`SCHEMA_VERSION`]. A
//! minimal spec:
//!
//! ```
//! use a3s_box_core::spec::BoxSpec;
//! let spec = BoxSpec::from_json(
//!     r#"{"containers":[{"root":{"dir":{"path":"/r"}},"process":{"args":["true"]}}]}"#,
//! )
//! .unwrap();
//! spec.validate().unwrap();
//! assert_eq!(spec.sandbox.resources.memory_mib, 512);
//! ```
//!
//! # Building one
//! ```
//! use a3s_box_core::spec::{
//!     parse_memory, parse_publish, parse_volume, BoxSpec, ContainerSpec, EnvVar, ProcessSpec,
//!     RootSource, SpecErrorKind,
//! };
//!
//! let mut web = ContainerSpec::new(
//!     RootSource::Image { reference: "nginx:1.27".into(), digest: None },
//!     ProcessSpec { env: vec![EnvVar::new("MODE", "prod")?], ..ProcessSpec::default() },
//! );
//! web.name = Some("web".into());
//! web.storage.mounts.push(parse_volume("cache:/var/cache/nginx")?);
//! let mut spec = BoxSpec::single(web);
//! spec.sandbox.resources.memory_mib = parse_memory("1g")?;
//! spec.sandbox.network.ports.extend(parse_publish("127.0.0.1:8080:80")?);
//! spec.validate()?;
//!
//! // What Docker refuses is refused, naming the field.
//! spec.containers[0].process.cwd = Some("relative".into());
//! let err = spec.validate().unwrap_err();
//! assert_eq!(err.kind, SpecErrorKind::Invalid);
//! assert_eq!(err.field, "containers[0].process.cwd");
//! assert_eq!(
//!     err.for_cli().to_string(),
//!     "invalid --workdir \"relative\": the working directory must be an absolute path"
//! );
//! # Ok::<(), a3s_box_core::spec::SpecError>(())
//! ```

mod container;
mod error;
mod network;
mod network_parse;
mod resources;
pub mod rules;
mod signal;
mod storage;
mod storage_parse;
mod vm;

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::config::ResourceLimits;
pub use crate::status::RestartPolicy;
pub use container::{
    parse_env, parse_env_file, parse_label, parse_labels, ContainerSpec, EnvVar, ProcessSpec,
    RootSource,
};
pub use error::{cli_flag, SpecError, SpecErrorKind};
pub use network::{
    Cidr, DnsConfig, EgressRule, EgressTarget, ExposedPort, ExtraHost, HostAddr, MacAddr,
    NetworkAttachment, NetworkMode, NetworkSpec, PortMapping, Protocol, RESERVED_NETWORK_NAMES,
};
pub use network_parse::{
    parse_add_host, parse_dns, parse_dns_option, parse_dns_search, parse_egress, parse_expose,
    parse_network, parse_networks, parse_publish,
};
pub use resources::{
    parse_memory, parse_size, Resources, DEFAULT_MEMORY_MIB, DEFAULT_VCPUS, MAX_VCPUS,
    MIN_MEMORY_MIB,
};
pub use signal::Signal;
pub use storage::{AccessMode, Mount, StorageSpec, VolumesFrom, MIN_LAYER_BYTES};
pub use storage_parse::{parse_mount, parse_storage_opt, parse_tmpfs, parse_volume};
pub use vm::{AccelChoice, VmOptions};

/// The version of the spec format this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

fn current_version() -> u32 {
    SCHEMA_VERSION
}

/// Why a spec of `version` cannot be read, if it cannot.
fn version_problem(version: u64) -> Option<String> {
    if version == 0 {
        Some("schema_version 0 does not exist: the first version is 1".into())
    } else if version > u64::from(SCHEMA_VERSION) {
        Some(format!(
            "this box spec has schema_version {version}, newer than the {SCHEMA_VERSION} this a3s-box reads: upgrade a3s-box"
        ))
    } else {
        None
    }
}

fn deserialize_version<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let version = u32::deserialize(d)?;
    match version_problem(version.into()) {
        Some(problem) => Err(serde::de::Error::custom(problem)),
        None => Ok(version),
    }
}

/// A box: one VM (the sandbox) and the containers it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoxSpec {
    /// The spec format's version ([`SCHEMA_VERSION`] when left out; newer
    /// versions are refused).
    #[serde(default = "current_version", deserialize_with = "deserialize_version")]
    pub schema_version: u32,
    /// The VM.
    #[serde(default)]
    pub sandbox: SandboxSpec,
    /// Its containers: exactly one for a standalone box; a pod's may run
    /// several.
    pub containers: Vec<ContainerSpec>,
}

/// The VM a box or pod runs in, shared by its containers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSpec {
    /// `--hostname` (`None`: the box's short id).
    pub hostname: Option<String>,
    /// vCPUs, memory and limits.
    pub resources: Resources,
    /// Network attachments, ports, DNS, egress.
    pub network: NetworkSpec,
    /// Accelerator, kernel, debugging.
    pub vm: VmOptions,
    /// `--pod`: the pod whose VM this box's container joins.
    pub pod: Option<String>,
}

impl SandboxSpec {
    /// Check the sandbox; fields are relative (`resources.vcpus`).
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(hostname) = &self.hostname {
            rules::check_host_name("hostname", hostname, false)?;
            if hostname.len() > rules::MAX_KERNEL_HOST_NAME_LEN {
                return Err(SpecError::out_of_range(
                    "hostname",
                    hostname,
                    format!(
                        "the kernel takes host names of at most {} characters",
                        rules::MAX_KERNEL_HOST_NAME_LEN
                    ),
                ));
            }
        }
        if let Some(pod) = &self.pod {
            rules::check_name("pod", "pod", pod)?;
        }
        self.resources
            .validate()
            .map_err(|e| e.within("resources"))?;
        self.network.validate().map_err(|e| e.within("network"))?;
        self.vm.validate().map_err(|e| e.within("vm"))
    }
}

impl BoxSpec {
    /// A standalone box running `container`, with the default sandbox.
    pub fn single(container: ContainerSpec) -> Self {
        BoxSpec {
            schema_version: SCHEMA_VERSION,
            sandbox: SandboxSpec::default(),
            containers: vec![container],
        }
    }

    /// Read a spec from JSON, refusing a newer `schema_version` before
    /// anything else (a newer spec may have fields this build does not know).
    pub fn from_json(text: &str) -> Result<Self, SpecError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            SpecError::new(SpecErrorKind::Invalid, "spec", format!("not JSON: {e}"))
        })?;
        if let Some(version) = value
            .get("schema_version")
            .and_then(serde_json::Value::as_u64)
        {
            if let Some(problem) = version_problem(version) {
                return Err(SpecError::unsupported(
                    "schema_version",
                    version.to_string(),
                    problem,
                ));
            }
        }
        serde_json::from_value(value).map_err(|e| {
            SpecError::new(
                SpecErrorKind::Invalid,
                "spec",
                format!("not a box spec: {e}"),
            )
        })
    }

    /// Check the whole spec; fields are paths from the top
    /// (`containers[0].process.cwd`, `sandbox.network.ports[1]`).
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(problem) = version_problem(self.schema_version.into()) {
            return Err(SpecError::unsupported(
                "schema_version",
                self.schema_version.to_string(),
                problem,
            ));
        }
        self.sandbox.validate().map_err(|e| e.within("sandbox"))?;
        if self.containers.is_empty() {
            return Err(SpecError::missing(
                "containers",
                "a box runs at least one container",
            ));
        }
        if self.containers.len() > 1 && self.sandbox.pod.is_none() {
            return Err(SpecError::new(
                SpecErrorKind::Invalid,
                "containers",
                format!(
                    "a standalone box runs one container, not {}: run several in a pod (sandbox.pod)",
                    self.containers.len()
                ),
            ));
        }
        for (i, container) in self.containers.iter().enumerate() {
            container
                .validate()
                .map_err(|e| e.within_item("containers", i))?;
            let name = container.name.as_deref();
            if name.is_some()
                && self.containers[..i]
                    .iter()
                    .any(|c| c.name.as_deref() == name)
            {
                return Err(SpecError::conflict(
                    format!("containers[{i}].name"),
                    format!(
                        "two containers of one sandbox are named {}",
                        name.unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(())
    }
}
