//! Reading box configs written before the typed spec: `config.json` with
//! `options` (the CLI-shaped run options) instead of `spec`. Such a box is
//! read into a [`BoxSpec`] without loss; it is written back in the new shape
//! only when its config is rewritten (a rename).

use std::collections::BTreeMap;
use std::path::PathBuf;

use a3s_box_core::spec::{
    AccelChoice, BoxSpec, ContainerSpec, EnvVar, ProcessSpec, Resources, RootSource, StorageSpec,
    VmOptions,
};
use a3s_box_core::status::RestartPolicy;
use serde::Deserialize;

use crate::manager::lower::spec_mount;
use crate::storage::StorageOptions;

/// `config.json` as any version wrote it.
#[derive(Debug, Deserialize)]
pub(super) struct AnyConfig {
    pub id: String,
    pub name: String,
    pub created: String,
    #[serde(default)]
    pub spec: Option<BoxSpec>,
    #[serde(default)]
    pub options: Option<RunOptionsV0>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub auto_remove: bool,
}

/// The run options stored by the first versions.
#[derive(Debug, Deserialize)]
pub(super) struct RunOptionsV0 {
    rootfs_dir: PathBuf,
    #[serde(default)]
    image: Option<String>,
    command: Vec<String>,
    env: Vec<(String, String)>,
    workdir: Option<String>,
    user: Option<String>,
    vcpus: u8,
    memory_mib: u32,
    kernel: Option<PathBuf>,
    accel: String,
    hostname: Option<String>,
    debug: bool,
    #[serde(default)]
    stdin: bool,
    #[serde(default)]
    tty: bool,
    #[serde(default)]
    storage: StorageOptions,
}

impl AnyConfig {
    /// The spec, migrated from the old options when that is what was stored.
    pub fn into_spec(self) -> Option<BoxSpec> {
        if let Some(spec) = self.spec {
            return Some(spec);
        }
        let o = self.options?;
        let root = match o.image {
            // The unpacked root of an image lives under its manifest digest:
            // `<home>/images/rootfs/<hex>`.
            Some(reference) => RootSource::Image {
                reference,
                digest: o
                    .rootfs_dir
                    .file_name()
                    .map(|hex| format!("sha256:{}", hex.to_string_lossy())),
            },
            None => RootSource::Dir { path: o.rootfs_dir },
        };
        let mounts = o.storage.mounts.iter().map(spec_mount).collect();
        let mut container = ContainerSpec::new(root, ProcessSpec::default());
        container.name = Some(self.name);
        container.labels = self.labels;
        container.restart = self.restart;
        container.auto_remove = self.auto_remove;
        container.process = ProcessSpec {
            args: o.command,
            env: o
                .env
                .into_iter()
                .map(|(name, value)| EnvVar { name, value })
                .collect(),
            cwd: o.workdir,
            user: o.user,
            tty: o.tty,
            stdin: o.stdin,
        };
        container.storage = StorageSpec {
            mounts,
            read_only: o.storage.read_only,
            layer_size_bytes: o.storage.size_bytes,
            volumes_from: Vec::new(),
        };
        let mut spec = BoxSpec::single(container);
        spec.sandbox.hostname = o.hostname;
        spec.sandbox.resources = Resources {
            vcpus: o.vcpus,
            memory_mib: o.memory_mib,
            ..Resources::default()
        };
        spec.sandbox.vm = VmOptions {
            accel: o.accel.parse().unwrap_or(AccelChoice::Auto),
            kernel: o.kernel,
            debug_guest: o.debug,
        };
        Some(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config.json exactly as the first versions wrote it.
    const V0: &str = r#"{
      "id": "0123456789ab0123456789ab0123456789ab0123456789ab0123456789abcdef",
      "name": "web",
      "created": "2026-11-30T10:00:00.000000000Z",
      "options": {
        "rootfs_dir": "/home/u/.a3s/images/rootfs/ab0123456789ab0123456789ab0123456789ab0123456789ab0123456789abcd",
        "image": "127.0.0.1:5000/team/tool:1",
        "command": ["sh", "-c", "echo hi"],
        "env": [["PATH", "/bin"], ["A", "1"]],
        "workdir": "/data",
        "user": "1000:1000",
        "vcpus": 1,
        "memory_mib": 256,
        "kernel": null,
        "accel": "tcg",
        "hostname": "h1",
        "debug": false,
        "stdin": true,
        "tty": false,
        "storage": {
          "read_only": false,
          "size_bytes": 1073741824,
          "mounts": [
            {"target": "/v", "kind": {"type": "volume", "name": "abc", "anonymous": true}},
            {"target": "/b", "kind": {"type": "bind", "source": "/srv"}, "read_only": true},
            {"target": "/t", "kind": {"type": "tmpfs", "size_bytes": 1048576, "noexec": true}}
          ]
        }
      },
      "labels": {"tier": "front"},
      "restart": {"name": "on-failure", "max_retries": 2},
      "auto_remove": false
    }"#;

    #[test]
    fn old_configs_migrate_without_loss() {
        let any: AnyConfig = serde_json::from_str(V0).unwrap();
        let spec = any.into_spec().unwrap();
        spec.validate().unwrap();
        let c = &spec.containers[0];
        assert_eq!(c.name.as_deref(), Some("web"));
        assert_eq!(c.labels["tier"], "front");
        assert_eq!(
            c.restart,
            RestartPolicy::OnFailure {
                max_retries: Some(2)
            }
        );
        assert_eq!(
            c.root,
            RootSource::Image {
                reference: "127.0.0.1:5000/team/tool:1".into(),
                digest: Some(
                    "sha256:ab0123456789ab0123456789ab0123456789ab0123456789ab0123456789abcd"
                        .into()
                )
            }
        );
        assert_eq!(c.process.args, ["sh", "-c", "echo hi"]);
        assert_eq!(c.process.env[1].to_string(), "A=1");
        assert_eq!(c.process.cwd.as_deref(), Some("/data"));
        assert!(c.process.stdin && !c.process.tty);
        assert_eq!(c.storage.layer_size_bytes, Some(1 << 30));
        assert!(c.storage.mounts[0].is_anonymous());
        assert!(c.storage.mounts[1].read_only());
        assert_eq!(spec.sandbox.hostname.as_deref(), Some("h1"));
        assert_eq!(spec.sandbox.resources.vcpus, 1);
        assert_eq!(spec.sandbox.resources.memory_mib, 256);
        assert_eq!(spec.sandbox.vm.accel, AccelChoice::Tcg);
    }
}
