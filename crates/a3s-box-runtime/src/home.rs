//! Where state lives: the home (`A3S_HOME`) and its directories. What the
//! host provides (assets, programs) is in [`crate::config::EngineConfig`].

use std::path::{Path, PathBuf};

/// The state home: one directory per box under `boxes/`.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// A home at an explicit directory.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory holding one directory per box.
    pub fn boxes_dir(&self) -> PathBuf {
        self.root.join("boxes")
    }

    /// Read-only root images built from `--rootfs` directories.
    pub fn rootfs_cache_dir(&self) -> PathBuf {
        self.root.join("cache/rootfs")
    }

    /// Formatted templates of boxes' writable layers, one per size.
    pub fn layer_cache_dir(&self) -> PathBuf {
        self.root.join("cache/layers")
    }
}
