//! [`EngineConfig`]: everything about the host the engine needs, built once
//! by a front end and passed down.
//!
//! The engine, the supervisor and the VMM code never read the process
//! environment: a box's setup must not depend on who started it. A front end
//! builds the config from its flags, the environment ([`EngineConfig::from_env`]
//! is for front ends only) and `$A3S_HOME/config.json`; the shim reads the copy
//! its starter wrote into the box directory ([`EngineConfig::read_from`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use a3s_box_core::{BoxError, Result};
use serde::{Deserialize, Serialize};

use crate::rootfs::RootfsFormat;

/// The file a box's starter writes the config into, in the box directory.
pub const ENGINE_CONFIG_FILE: &str = "engine.json";
/// The user's settings in the home (Docker's daemon.json keys where they exist).
pub const HOME_CONFIG_FILE: &str = "config.json";

/// Environment variables a front end reads (documented in the README).
pub mod env {
    /// The state home.
    pub const HOME: &str = "A3S_HOME";
    /// A guest kernel to boot instead of ours.
    pub const KERNEL: &str = "A3S_BOX_KERNEL";
    /// The initramfs holding guest-init.
    pub const INITRAMFS: &str = "A3S_BOX_INITRAMFS";
    /// The directory of boot assets.
    pub const ASSETS: &str = "A3S_BOX_ASSETS";
    /// The QEMU binary.
    pub const QEMU: &str = "A3S_BOX_QEMU";
    /// The per-box supervisor binary.
    pub const SHIM: &str = "A3S_BOX_SHIM";
    /// The virtio-fs daemon.
    pub const VIRTIOFSD: &str = "A3S_BOX_VIRTIOFSD";
    /// Seconds to wait for a guest to say hello.
    pub const BOOT_TIMEOUT_SECS: &str = "A3S_BOX_BOOT_TIMEOUT_SECS";
    /// `erofs` or `ext4` for `--rootfs` images.
    pub const ROOTFS_FORMAT: &str = "A3S_BOX_ROOTFS_FORMAT";
    /// Box log size before rotation.
    pub const LOG_MAX_BYTES: &str = "A3S_BOX_LOG_MAX_BYTES";
    /// Registries allowed over plain HTTP (comma-separated).
    pub const INSECURE_REGISTRIES: &str = "A3S_BOX_INSECURE_REGISTRIES";
    /// The per-network helper binary.
    pub const NETD: &str = "A3S_BOX_NETD";
    /// pasta, the networks' uplink.
    pub const PASTA: &str = "A3S_BOX_PASTA";
    /// Seconds every network's helper stays after its last box.
    pub const NETD_GRACE_SECS: &str = "A3S_BOX_NETD_GRACE_SECS";
    /// Spare NICs each networked box boots with (`network connect` of a
    /// running box takes one).
    pub const SPARE_NICS: &str = "A3S_BOX_SPARE_NICS";
}

const QEMU_BINARY: &str = "qemu-system-x86_64";
const SYSTEM_ASSETS: &str = "/usr/local/share/a3s-box";
/// Default time from QEMU start to the guest's hello. Generous: software
/// emulation on a loaded host can be many times slower than KVM.
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Default size at which a box log is rotated.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 << 20;

/// Where the host's pieces are and how the engine behaves on this host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// The state home.
    pub home: PathBuf,
    /// Directory of boot assets (`vmlinux`, `initramfs.cpio`).
    pub assets_dir: PathBuf,
    /// A kernel chosen by the user for every box (a box's `--kernel` wins).
    pub kernel: Option<PathBuf>,
    /// The initramfs holding guest-init, when not the assets directory's.
    pub initramfs: Option<PathBuf>,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// The per-box supervisor.
    pub shim: PathBuf,
    /// The virtio-fs daemon.
    pub virtiofsd: PathBuf,
    /// How long a guest may take to say hello.
    pub boot_timeout: Duration,
    /// Format of root images built from `--rootfs` directories.
    pub rootfs_format: RootfsFormat,
    /// Box log size before rotation.
    pub log_max_bytes: u64,
    /// Registries allowed over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Docker's credentials file, read for registries we have no login for.
    pub docker_config: Option<PathBuf>,
    /// The environment every helper process starts with: the front end's
    /// values of [`crate::launch::ENV_ALLOW`] (search path, locale, ...).
    pub helper_env: Vec<(String, String)>,
    /// Box networking.
    #[serde(default)]
    pub network: NetworkSettings,
}

/// How boxes are networked on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    /// The per-network helper (`a3s-box-netd`).
    pub netd: PathBuf,
    /// pasta, the uplink of every network.
    pub pasta: PathBuf,
    /// Map `host-gateway` to the host's loopback (`"host-gateway": false`
    /// in config.json turns it off: boxes then cannot reach the host's
    /// loopback services, and `--add-host NAME:host-gateway` is refused).
    pub host_gateway: bool,
    /// Seconds a named network's helper stays after its last box.
    pub grace_secs: u64,
    /// Seconds the default network's helper stays after its last box (so
    /// a run after a run does not build the namespace again).
    pub default_grace_secs: u64,
    /// Spare NICs every networked box boots with: `network connect` of a
    /// running box takes one (QEMU's `microvm` has no hotplug).
    #[serde(default = "default_spare_nics")]
    pub spare_nics: u8,
}

/// Default of [`NetworkSettings::spare_nics`].
pub const SPARE_NICS: u8 = 1;
/// Most spare NICs a box may have.
pub const MAX_SPARE_NICS: u8 = 8;

fn default_spare_nics() -> u8 {
    SPARE_NICS
}

/// Default of [`NetworkSettings::grace_secs`].
pub const NETD_GRACE_SECS: u64 = 5;
/// Default of [`NetworkSettings::default_grace_secs`].
pub const NETD_DEFAULT_GRACE_SECS: u64 = 60;

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            netd: "a3s-box-netd".into(),
            pasta: "pasta".into(),
            host_gateway: true,
            grace_secs: NETD_GRACE_SECS,
            default_grace_secs: NETD_DEFAULT_GRACE_SECS,
            spare_nics: SPARE_NICS,
        }
    }
}

/// The settings of `$A3S_HOME/config.json` the engine uses.
#[derive(Debug, Default, Deserialize)]
struct HomeSettings {
    #[serde(default, rename = "insecure-registries")]
    insecure_registries: Vec<String>,
    /// `false`: no `host-gateway` (see [`NetworkSettings::host_gateway`]).
    #[serde(default, rename = "host-gateway")]
    host_gateway: Option<bool>,
    /// See [`NetworkSettings::spare_nics`].
    #[serde(default, rename = "spare-nics")]
    spare_nics: Option<u8>,
}

impl EngineConfig {
    /// The defaults for `home`, with programs found beside the running binary
    /// and QEMU on `path` (a `PATH`-style list).
    pub fn defaults(home: PathBuf, exe_dir: Option<&Path>, path: Option<&str>) -> Self {
        let sibling = |name: &str| exe_dir.map_or_else(|| PathBuf::from(name), |d| d.join(name));
        // Installed beside the binary: <prefix>/bin/a3s-box → <prefix>/share/a3s-box;
        // in a build tree target/release/a3s-box → target/share/a3s-box.
        let assets_dir = exe_dir
            .and_then(Path::parent)
            .map(|p| p.join("share/a3s-box"))
            .filter(|d| d.is_dir())
            .unwrap_or_else(|| PathBuf::from(SYSTEM_ASSETS));
        let qemu = path
            .into_iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(QEMU_BINARY))
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from(QEMU_BINARY));
        EngineConfig {
            home,
            assets_dir,
            kernel: None,
            initramfs: None,
            qemu,
            shim: sibling("a3s-box-shim"),
            virtiofsd: sibling("a3s-box-fs"),
            boot_timeout: DEFAULT_BOOT_TIMEOUT,
            rootfs_format: RootfsFormat::default(),
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
            insecure_registries: Vec::new(),
            docker_config: None,
            helper_env: Vec::new(),
            network: NetworkSettings {
                netd: sibling("a3s-box-netd"),
                ..NetworkSettings::default()
            },
        }
    }

    /// For front ends: the defaults, then the environment, then
    /// `$A3S_HOME/config.json`. Bad values are errors, not silent defaults.
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let text = |name: &str| -> Result<Option<String>> {
            var(name)
                .map(|v| {
                    v.into_string()
                        .map_err(|_| BoxError::Invalid(format!("{name} is not valid UTF-8")))
                })
                .transpose()
        };
        let home = match var(env::HOME) {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(var("HOME").ok_or_else(|| {
                BoxError::Invalid("neither A3S_HOME nor HOME is set: set A3S_HOME".into())
            })?)
            .join(".a3s"),
        };
        let exe = std::env::current_exe().ok();
        let path = text("PATH")?;
        let mut config =
            Self::defaults(home, exe.as_deref().and_then(Path::parent), path.as_deref());
        if let Some(dir) = var(env::ASSETS) {
            config.assets_dir = dir.into();
        }
        config.kernel = var(env::KERNEL).map(PathBuf::from);
        config.initramfs = var(env::INITRAMFS).map(PathBuf::from);
        if let Some(q) = var(env::QEMU) {
            config.qemu = q.into();
        }
        if let Some(s) = var(env::SHIM) {
            config.shim = s.into();
        }
        if let Some(f) = var(env::VIRTIOFSD) {
            config.virtiofsd = f.into();
        }
        if let Some(secs) = text(env::BOOT_TIMEOUT_SECS)? {
            let secs: u64 = secs.parse().map_err(|_| {
                BoxError::Invalid(format!(
                    "{}={secs:?} is not a number of seconds",
                    env::BOOT_TIMEOUT_SECS
                ))
            })?;
            config.boot_timeout = Duration::from_secs(secs);
        }
        if let Some(format) = text(env::ROOTFS_FORMAT)? {
            config.rootfs_format = format.parse()?;
        }
        if let Some(bytes) = text(env::LOG_MAX_BYTES)? {
            config.log_max_bytes = bytes.parse().map_err(|_| {
                BoxError::Invalid(format!(
                    "{}={bytes:?} is not a number of bytes",
                    env::LOG_MAX_BYTES
                ))
            })?;
        }
        if let Some(n) = var(env::NETD) {
            config.network.netd = n.into();
        }
        if let Some(p) = var(env::PASTA) {
            config.network.pasta = p.into();
        }
        if let Some(secs) = text(env::NETD_GRACE_SECS)? {
            let secs: u64 = secs.parse().map_err(|_| {
                BoxError::Invalid(format!(
                    "{}={secs:?} is not a number of seconds",
                    env::NETD_GRACE_SECS
                ))
            })?;
            config.network.grace_secs = secs;
            config.network.default_grace_secs = secs;
        }
        let spare_nics = text(env::SPARE_NICS)?
            .map(|n| {
                n.parse::<u8>().map_err(|_| {
                    BoxError::Invalid(format!(
                        "{}={n:?} is not a number of NICs (0 to {MAX_SPARE_NICS})",
                        env::SPARE_NICS
                    ))
                })
            })
            .transpose()?;
        if let Some(list) = text(env::INSECURE_REGISTRIES)? {
            config.add_insecure_registries(list.split(','));
        }
        config.docker_config = match var("DOCKER_CONFIG") {
            Some(dir) => Some(PathBuf::from(dir).join("config.json")),
            None => var("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
        };
        config.helper_env = crate::launch::ENV_ALLOW
            .iter()
            .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?)))
            .collect();
        config.read_home_settings()?;
        if let Some(n) = spare_nics {
            config.network.spare_nics = n;
        }
        if config.network.spare_nics > MAX_SPARE_NICS {
            return Err(BoxError::Invalid(format!(
                "{} spare NICs: at most {MAX_SPARE_NICS} ({} or \"spare-nics\" in config.json)",
                config.network.spare_nics,
                env::SPARE_NICS
            )));
        }
        Ok(config)
    }

    /// The launcher of this host's helpers.
    pub fn launcher(&self) -> crate::launch::Launcher {
        crate::launch::Launcher::with_env(
            self.helper_env
                .iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// The state home.
    pub fn home_dir(&self) -> crate::home::Home {
        crate::home::Home::at(&self.home)
    }

    /// Add registries allowed over plain HTTP (flags, settings).
    pub fn add_insecure_registries<'a>(&mut self, list: impl IntoIterator<Item = &'a str>) {
        for r in list.into_iter().map(str::trim).filter(|r| !r.is_empty()) {
            if !self.insecure_registries.iter().any(|have| have == r) {
                self.insecure_registries.push(r.to_string());
            }
        }
    }

    fn read_home_settings(&mut self) -> Result<()> {
        let path = self.home.join(HOME_CONFIG_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(BoxError::io(format!("read {}", path.display()), e)),
        };
        let settings: HomeSettings = serde_json::from_slice(&bytes).map_err(|e| {
            BoxError::Invalid(format!("{}: {e}: fix or remove the file", path.display()))
        })?;
        let list = settings.insecure_registries;
        self.add_insecure_registries(list.iter().map(String::as_str));
        if let Some(on) = settings.host_gateway {
            self.network.host_gateway = on;
        }
        if let Some(n) = settings.spare_nics {
            if n > MAX_SPARE_NICS {
                return Err(BoxError::Invalid(format!(
                    "{}: \"spare-nics\": {n}: at most {MAX_SPARE_NICS}",
                    path.display()
                )));
            }
            self.network.spare_nics = n;
        }
        Ok(())
    }

    /// The kernel a box boots: its own `--kernel`, else ours or the user's.
    pub fn kernel_for(&self, box_kernel: Option<&Path>) -> (PathBuf, bool) {
        match (box_kernel, &self.kernel) {
            (Some(k), _) => (k.to_path_buf(), true),
            (None, Some(k)) => (k.clone(), true),
            (None, None) => (self.assets_dir.join("vmlinux"), false),
        }
    }

    /// The initramfs holding guest-init.
    pub fn initramfs_path(&self) -> PathBuf {
        self.initramfs
            .clone()
            .unwrap_or_else(|| self.assets_dir.join("initramfs.cpio"))
    }

    /// Write the config into a box directory, for its supervisor.
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        crate::state::write_json(&dir.join(ENGINE_CONFIG_FILE), self)
    }

    /// The config a box's starter wrote into its directory.
    pub fn read_from(dir: &Path) -> Result<Self> {
        crate::state::read_json(&dir.join(ENGINE_CONFIG_FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_find_siblings_and_round_trip_through_a_box_dir() {
        let dir = tempfile::tempdir().unwrap();
        let c = EngineConfig::defaults(dir.path().into(), Some(Path::new("/opt/a3s/bin")), None);
        assert_eq!(c.shim, PathBuf::from("/opt/a3s/bin/a3s-box-shim"));
        assert_eq!(c.qemu, PathBuf::from(QEMU_BINARY));
        assert!(!c.kernel_for(None).1);
        assert_eq!(
            c.kernel_for(Some(Path::new("/k"))),
            (PathBuf::from("/k"), true)
        );
        c.write_to(dir.path()).unwrap();
        assert_eq!(EngineConfig::read_from(dir.path()).unwrap(), c);
    }

    #[test]
    fn home_settings_add_insecure_registries_and_bad_ones_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = EngineConfig::defaults(dir.path().into(), None, None);
        std::fs::write(
            dir.path().join(HOME_CONFIG_FILE),
            r#"{"insecure-registries": ["r1:5000", "r1:5000"], "other": 1}"#,
        )
        .unwrap();
        c.read_home_settings().unwrap();
        assert_eq!(c.insecure_registries, ["r1:5000"]);
        std::fs::write(dir.path().join(HOME_CONFIG_FILE), "{").unwrap();
        let err = c.read_home_settings().unwrap_err();
        assert_eq!(err.kind(), a3s_box_core::ErrorKind::Invalid);
    }

    #[test]
    fn spare_nics_default_to_one_and_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = EngineConfig::defaults(dir.path().into(), None, None);
        assert_eq!(c.network.spare_nics, SPARE_NICS);
        std::fs::write(dir.path().join(HOME_CONFIG_FILE), r#"{"spare-nics": 3}"#).unwrap();
        c.read_home_settings().unwrap();
        assert_eq!(c.network.spare_nics, 3);
        std::fs::write(dir.path().join(HOME_CONFIG_FILE), r#"{"spare-nics": 9}"#).unwrap();
        assert!(c.read_home_settings().is_err());
        // A box directory's config from before the option reads as the default.
        let mut v = serde_json::to_value(&c).unwrap();
        v["network"].as_object_mut().unwrap().remove("spare_nics");
        let old: EngineConfig = serde_json::from_value(v).unwrap();
        assert_eq!(old.network.spare_nics, SPARE_NICS);
    }
}
