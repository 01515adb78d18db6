//! The network files guest-init gives each container, as Docker does:
//! `/etc/hostname`, `/etc/hosts`, and `/etc/resolv.conf` when the sandbox
//! has DNS settings. They are written on guest-init's tmpfs and
//! bind-mounted onto the container root's entries, so they are never part
//! of the image, of `diff` or of `commit`.
//!
//! Their mountpoints come from an *init layer* (Docker's too): a lower
//! overlay layer above the image holding an empty file of each name, so an
//! image without them, or with a symlink there, still has a regular file to
//! mount on, even with a read-only root, and the container's own layer
//! never gets one.
//!
//! `network connect`/`disconnect` of a running sandbox edit `hosts` in
//! place ([`edit`]): the container's bind mount holds its inode.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use a3s_box_core::guest::message::{MountSpec, NetworkConfig};
use nix::mount::{mount, MsFlags};

use super::mount_file::file_in_root;
use super::resolve::components;
use crate::error::{Context, InitError};
use crate::net::files;

/// `/etc/hostname`.
pub const HOSTNAME: &str = "/etc/hostname";
/// `/etc/hosts`.
pub const HOSTS: &str = "/etc/hosts";
/// `/etc/resolv.conf`.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// One file: where it goes in the container and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFile {
    /// Its absolute path in the container.
    pub path: &'static str,
    /// Its content.
    pub content: String,
}

impl EtcFile {
    /// Its name in `/etc`.
    fn name(&self) -> &'static str {
        self.path.trim_start_matches("/etc/")
    }
}

/// The files a container named `hostname` gets, and what they say. A file
/// whose path one of the container's `mounts` covers is left to that mount
/// (the user's mount wins, as in Docker).
pub fn plan(
    hostname: &str,
    network: Option<&NetworkConfig>,
    mounts: &[MountSpec],
) -> Result<Vec<EtcFile>, String> {
    let mut planned = vec![
        EtcFile {
            path: HOSTNAME,
            content: files::hostname_file(hostname),
        },
        EtcFile {
            path: HOSTS,
            content: files::hosts_file(hostname, network)?,
        },
    ];
    if let Some(dns) = network.and_then(|n| n.dns.as_ref()) {
        planned.push(EtcFile {
            path: RESOLV_CONF,
            content: files::resolv_conf(dns)?,
        });
    }
    let covered = |path: &str| {
        let path = components(path);
        mounts.iter().any(|m| components(&m.target) == path)
    };
    planned.retain(|f| !covered(f.path));
    Ok(planned)
}

/// Make the init layer at `init`: `etc/` with an empty file for each of
/// `planned`; and write the files themselves into `dir`.
pub fn write(init: &str, dir: &str, planned: &[EtcFile]) -> Result<(), InitError> {
    let etc = format!("{init}/etc");
    for d in [&etc, dir] {
        fs::create_dir_all(d).context(|| format!("create {d}"))?;
    }
    for file in planned {
        let path = format!("{etc}/{}", file.name());
        fs::write(&path, "").context(|| format!("create {path}"))?;
        let source = format!("{dir}/{}", file.name());
        fs::write(&source, &file.content).context(|| format!("write {source}"))?;
    }
    Ok(())
}

/// Rewrite the file for container path `path` (one of [`HOSTNAME`],
/// [`HOSTS`], [`RESOLV_CONF`]) written into `dir` with what `change` makes
/// of its content, in place: the same inode (the container's bind mount
/// holds it), the new content written over the old, then cut to its
/// length, so a reader never finds it empty. `false` when there is no such
/// file (a mount of the user's covers the path: it is left alone).
pub fn edit(dir: &str, path: &str, change: impl FnOnce(&str) -> String) -> Result<bool, InitError> {
    let path = format!("{dir}/{}", path.trim_start_matches("/etc/"));
    let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).context(|| format!("open {path}")),
    };
    let mut old = String::new();
    file.read_to_string(&mut old)
        .context(|| format!("read {path}"))?;
    let new = change(&old);
    if new != old {
        file.write_all_at(new.as_bytes(), 0)
            .context(|| format!("write {path}"))?;
        file.set_len(new.len() as u64)
            .context(|| format!("truncate {path}"))?;
    }
    Ok(true)
}

/// Bind each file of `planned`, written into `dir`, onto its path in the
/// container root `root`; read-only binds with `read_only` (`--read-only`).
pub fn bind(root: &str, dir: &str, planned: &[EtcFile], read_only: bool) -> Result<(), InitError> {
    for file in planned {
        let source = format!("{dir}/{}", file.name());
        let target = file_in_root(root, file.path)?;
        let at = format!("/proc/self/fd/{}", target.as_raw_fd());
        let what = || format!("mount {source} on {} in the container", file.path);
        mount(
            Some(source.as_str()),
            at.as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .context(what)?;
        if read_only {
            // Looked up again, the path now leads to the new mount (the
            // descriptor above still names the file beneath it).
            let mounted = file_in_root(root, file.path)?;
            let at = format!("/proc/self/fd/{}", mounted.as_raw_fd());
            let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
            mount(None::<&str>, at.as_str(), None::<&str>, flags, None::<&str>)
                .context(|| format!("make {} read-only in the container", file.path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use a3s_box_core::guest::message::{DnsConfig, MountSource};

    use super::*;

    fn paths(planned: &[EtcFile]) -> Vec<&str> {
        planned.iter().map(|f| f.path).collect()
    }

    #[test]
    fn resolv_conf_only_with_dns_settings() {
        assert_eq!(paths(&plan("h", None, &[]).unwrap()), [HOSTNAME, HOSTS]);
        let mut net = NetworkConfig::default();
        assert_eq!(
            paths(&plan("h", Some(&net), &[]).unwrap()),
            [HOSTNAME, HOSTS]
        );
        net.dns = Some(DnsConfig {
            nameservers: vec!["10.0.2.3".parse().unwrap()],
            ..DnsConfig::default()
        });
        let planned = plan("h", Some(&net), &[]).unwrap();
        assert_eq!(paths(&planned), [HOSTNAME, HOSTS, RESOLV_CONF]);
        assert_eq!(planned[0].content, "h\n");
        assert_eq!(planned[2].content, "nameserver 10.0.2.3\n");
        assert_eq!(planned[2].name(), "resolv.conf");
    }

    #[test]
    fn a_mount_on_the_path_wins() {
        let m = MountSpec {
            target: "//etc/./hosts/".into(),
            source: MountSource::Tmpfs {
                size_bytes: None,
                mode: None,
            },
            read_only: false,
            noexec: false,
            nosuid: false,
            nodev: false,
            populate: false,
        };
        assert_eq!(paths(&plan("h", None, &[m]).unwrap()), [HOSTNAME]);
    }

    #[test]
    fn the_init_layer_has_empty_files_and_the_files_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let init = dir.path().join("init");
        let etc = dir.path().join("etc");
        let planned = plan("h", None, &[]).unwrap();
        write(init.to_str().unwrap(), etc.to_str().unwrap(), &planned).unwrap();
        let mut names: Vec<_> = fs::read_dir(init.join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["hostname", "hosts"]);
        assert_eq!(fs::read(init.join("etc/hosts")).unwrap(), b"");
        assert_eq!(fs::read_to_string(etc.join("hostname")).unwrap(), "h\n");
        assert_eq!(
            fs::read_to_string(etc.join("hosts")).unwrap(),
            planned[1].content
        );
    }

    #[test]
    fn edits_keep_the_inode_and_cut_to_the_new_length() {
        use std::os::unix::fs::MetadataExt;

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let path = dir.path().join("hosts");
        fs::write(&path, "a\nbb\nccc\n").unwrap();
        let inode = fs::metadata(&path).unwrap().ino();
        assert!(edit(d, HOSTS, |s| s.replace("bb\n", "")).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "a\nccc\n");
        assert!(edit(d, HOSTS, |s| format!("{s}dddd\n")).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "a\nccc\ndddd\n");
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
        // No file (a user's mount covers it): nothing is made.
        assert!(!edit(d, RESOLV_CONF, |_| "x".into()).unwrap());
        assert!(!dir.path().join("resolv.conf").exists());
    }
}
