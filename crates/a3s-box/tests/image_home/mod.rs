//! A test home for the image verbs: its own A3S_HOME, and a DOCKER_CONFIG of
//! its own so credentials never come from the caller's Docker setup.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::common::{stderr, stdout, TestHome};

#[derive(Debug)]
pub struct Images {
    pub home: TestHome,
    pub docker_config: tempfile::TempDir,
}

impl Images {
    pub fn new() -> Self {
        Self {
            home: TestHome::new(),
            docker_config: tempfile::tempdir().unwrap(),
        }
    }

    /// `a3s-box ARGS…`, not yet run.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.home.cmd();
        c.env("DOCKER_CONFIG", self.docker_config.path()).args(args);
        c
    }

    /// `a3s-box ARGS…`, run.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Run and require exit 0; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        stdout(&o)
    }

    /// Run and require exit 125 with a one-line reason; stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert_eq!(
            o.status.code(),
            Some(125),
            "{args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        let err = stderr(&o);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.starts_with("a3s-box: "), "{err}");
        err
    }

    pub fn images_dir(&self) -> PathBuf {
        self.home.home.path().join("images")
    }

    pub fn blob_count(&self) -> usize {
        std::fs::read_dir(self.images_dir().join("store/blobs/sha256"))
            .unwrap()
            .count()
    }

    /// Unpacked image roots (hidden lock files aside).
    pub fn unpacked_roots(&self) -> usize {
        std::fs::read_dir(self.images_dir().join("rootfs"))
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count()
    }

    pub fn inspect(&self, image: &str) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["image", "inspect", image])).unwrap();
        v[0].clone()
    }

    /// The manifest digest the local image was pulled as.
    pub fn repo_digest(&self, image: &str) -> String {
        let v = self.inspect(image);
        let repo_digest = v["RepoDigests"][0].as_str().unwrap();
        repo_digest.rsplit_once('@').unwrap().1.to_owned()
    }
}
