//! A loopback docker-registry (optionally behind htpasswd) and the fixture images of
//! scripts/build-test-images.sh and scripts/build-debian-image.sh, for tests that pull. Same helper as the runtime's
//! tests/image_registry.rs, which includes this file with `#[path]`.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const USER: &str = "tester";
pub const PASS: &str = "s3cret-pass";

pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "image tests need `{tool}`: apt-get install {package} (see scripts/install-deps.sh)"
    );
}

pub struct Registry {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_registry(htpasswd: bool) -> Registry {
    assert!(
        Path::new(REGISTRY_BIN).exists(),
        "image tests need {REGISTRY_BIN}: apt-get install docker-registry"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
        dir.path().join("data").display()
    );
    if htpasswd {
        require("htpasswd", "apache2-utils");
        let out = Command::new("htpasswd")
            .args(["-Bbn", USER, PASS])
            .output()
            .unwrap();
        assert!(out.status.success());
        std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
        config += &format!(
            "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
            dir.path().join("htpasswd").display()
        );
    }
    std::fs::write(dir.path().join("config.yml"), config).unwrap();
    let child = Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(dir.path().join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "docker-registry did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry {
        child,
        addr,
        _dir: dir,
    }
}

/// The fixture layout, built once and kept under the target's tmp dir, keyed by a hash
/// of the script (built into a temp directory and renamed, so concurrent test binaries
/// never see a half-built layout).
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| built_by("build-test-images.sh", "image-fixtures"))
}

/// The Debian 12 image of scripts/build-debian-image.sh (python3, curl, iproute2, …;
/// tag `debian` in `oci/`). The script builds it once per machine (cached under
/// /var/cache/a3s-box/images); here it is copied once per target dir like the fixtures.
pub fn debian() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        require("mmdebstrap", "mmdebstrap");
        built_by("build-debian-image.sh", "debian-image")
    })
}

/// Run scripts/SCRIPT into CARGO_TARGET_TMPDIR/PREFIX-<hash of the script> unless there.
fn built_by(script: &str, prefix: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(script);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(&script).unwrap().hash(&mut hasher);
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join(format!("{prefix}-{:016x}", hasher.finish()));
    if dir.join("oci/index.json").exists() {
        return dir;
    }
    let tmp = base.join(format!("{prefix}-{}.tmp", std::process::id()));
    let out = Command::new("bash")
        .arg(&script)
        .arg(&tmp)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another test binary got there first.
        std::fs::remove_dir_all(&tmp).unwrap();
    }
    dir
}

pub fn push(reg: &Registry, tag: &str, name: &str, creds: Option<&str>) {
    push_from(reg, fixtures(), tag, name, creds);
}

/// Push the Debian image as NAME (e.g. `test/debian:12`).
pub fn push_debian(reg: &Registry, name: &str) {
    push_from(reg, debian(), "debian", name, None);
}

fn push_from(reg: &Registry, layout: &Path, tag: &str, name: &str, creds: Option<&str>) {
    require("skopeo", "skopeo");
    let src = format!("oci:{}:{tag}", layout.join("oci").display());
    let dst = format!("docker://{}/{name}", reg.addr);
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--all", "--dest-tls-verify=false"]);
    if let Some(c) = creds {
        cmd.args(["--dest-creds", c]);
    }
    let out = cmd.arg(&src).arg(&dst).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo copy {src} {dst}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
