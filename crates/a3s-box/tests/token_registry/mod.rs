//! A loopback docker-registry behind `auth: token`, with a tiny token server
//! (token_server.py: stdlib http.server, RS256 via the `openssl` CLI) as its realm.
//! The signing certificate is self-signed and is the registry's whole `rootcertbundle`.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::registry::{fixtures, require};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const TOKEN_SERVER: &str = include_str!("token_server.py");
pub const USER: &str = "tokenuser";
pub const PASS: &str = "tokenpass";
pub const SERVICE: &str = "a3s-test-registry";
pub const ISSUER: &str = "a3s-test-issuer";

pub struct TokenRegistry {
    registry: Option<Child>,
    token_server: Child,
    /// `127.0.0.1:PORT` of the registry.
    pub addr: String,
    /// `http://127.0.0.1:PORT/token`.
    pub realm: String,
    dir: tempfile::TempDir,
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        for child in self.registry.iter_mut().chain([&mut self.token_server]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl TokenRegistry {
    pub fn start() -> Self {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "image tests need {REGISTRY_BIN}: apt-get install docker-registry"
        );
        require("openssl", "openssl");
        require("python3", "python3");
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);

        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=a3s-test-token", "-keyout"])
            .arg(p("key.pem"))
            .arg("-out")
            .arg(p("cert.pem"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        std::fs::write(p("token_server.py"), TOKEN_SERVER).unwrap();
        let token_server = Command::new("python3")
            .arg(p("token_server.py"))
            .args([p("key.pem"), p("cert.pem"), p("token.port"), p("token.log")])
            .args([USER, PASS])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Owned from here on, so a failed start still kills it.
        let mut this = Self {
            registry: None,
            token_server,
            addr: String::new(),
            realm: String::new(),
            dir,
        };
        wait_until("token server", || {
            this.dir.path().join("token.port").exists()
        });
        let port = std::fs::read_to_string(this.dir.path().join("token.port")).unwrap();
        this.realm = format!("http://127.0.0.1:{}/token", port.trim());

        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        this.addr = format!("127.0.0.1:{port}");
        let d = this.dir.path();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {data}\n\
             http:\n  addr: {addr}\nauth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n\
             \x20   issuer: {ISSUER}\n    rootcertbundle: {cert}\n",
            data = d.join("data").display(),
            addr = this.addr,
            realm = this.realm,
            cert = d.join("cert.pem").display(),
        );
        std::fs::write(d.join("config.yml"), config).unwrap();
        this.registry = Some(
            Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(d.join("config.yml"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let addr = this.addr.clone();
        wait_until("docker-registry", || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
        this
    }

    /// The token server's request log: one JSON object per request
    /// (`path`, `query`, `user`, `granted`).
    pub fn token_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("token.log")
    }

    /// Copy fixture `tag` to `name` on this registry with skopeo, as USER.
    pub fn push_fixture(&self, tag: &str, name: &str) {
        require("skopeo", "skopeo");
        let src = format!("oci:{}:{tag}", fixtures().join("oci").display());
        let dst = format!("docker://{}/{name}", self.addr);
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false", "--dest-creds"])
            .arg(format!("{USER}:{PASS}"))
            .arg(&src)
            .arg(&dst)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy {src} {dst}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `skopeo inspect` of `name` as USER (the registry's own view of it).
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--creds"])
            .arg(format!("{USER}:{PASS}"))
            .arg(format!("docker://{}/{name}", self.addr))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo inspect {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}
