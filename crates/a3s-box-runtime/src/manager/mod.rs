//! The public API of the runtime: the [`Engine`] every front end calls (the
//! CLI today; the HTTP service, the containerd shim and the SDK tomorrow),
//! with its typed requests and Docker-shaped [`views`].

mod boxes;
pub mod client;
mod engine;
pub mod exec;
mod helpers;
mod images;
mod info;
pub mod logs;
pub(crate) mod lower;
pub mod resolve;
mod run;
mod stats;
pub(crate) mod stopped;
pub mod views;

pub use crate::sandbox::router::MAIN_PROCESS;
pub use crate::sandbox::{OutputSink, RunOptions, EXIT_KILLED};
pub use boxes::{BoxManager, StartError};
pub use engine::{
    Engine, EventFilter, EventStream, ExecRequest, ExitWatch, MainProcess, NetworkConnect,
    NetworkCreate, NetworkView, PodContainer, PodCreate, PodInspect, PodSummary, RemoveOptions,
    Session, SystemPruneReport, VolumeView, WaitCondition,
};
pub use helpers::GuestStats;
pub use images::{
    human_size, short_name, ArchiveError, ArchiveFormat, HistoryEntry, ImageError, ImageManager,
    ImageSummary, LoadedImage, PruneReport, PullPolicy, Removed, ResolvedImage, AUTH_FILE,
};
pub use info::{info, Info};
pub use run::run_foreground;
pub use stats::BoxStats;

use std::path::Path;

/// Random 64-hex box id.
pub fn new_box_id() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The last `lines` lines of a log file (empty if it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let a = new_box_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_box_id().unwrap());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&p, 2), "b\nc");
        assert_eq!(log_tail(&dir.path().join("none"), 2), "");
    }
}
