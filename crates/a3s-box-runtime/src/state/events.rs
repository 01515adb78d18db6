//! The events log: `$A3S_HOME/events.jsonl`, one [`Event`] per line.
//!
//! Daemonless means no process sees every change, so every writer (the CLI's
//! engine, each box's supervisor) appends its events here; readers (`events`,
//! the HTTP service) read and follow the file, as podman's file events
//! backend does. A line is written with one `write` on an `O_APPEND`
//! descriptor, so concurrent writers never interleave. When the log passes
//! [`MAX_BYTES`] its older half is dropped under the store lock.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use a3s_box_core::event::Event;

/// The log file in the home.
pub const EVENTS_FILE: &str = "events.jsonl";
/// Size past which the older half of the log is dropped.
pub const MAX_BYTES: u64 = 4 << 20;

/// Appends to and reads the events log of one home.
#[derive(Debug, Clone)]
pub struct EventLog {
    path: PathBuf,
}

impl EventLog {
    /// The log at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        EventLog { path: path.into() }
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record `event`. Failing to is logged, never an error of the
    /// operation that caused it.
    pub fn record(&self, event: &Event) {
        if let Err(e) = self.append(event) {
            tracing::debug!("events log {}: {e}", self.path.display());
        }
    }

    fn append(&self, event: &Event) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut file = File::options().create(true).append(true).open(&self.path)?;
        file.write_all(&line)?;
        if file.metadata()?.len() > MAX_BYTES {
            self.trim()?;
        }
        Ok(())
    }

    /// Drop the older half (whole lines), under an exclusive lock of the
    /// file so two trims never race.
    fn trim(&self) -> std::io::Result<()> {
        let file = File::open(&self.path)?;
        let Ok(lock) = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        else {
            return Ok(()); // another writer is trimming
        };
        let mut bytes = Vec::new();
        (&*lock).read_to_end(&mut bytes)?;
        let half = bytes.len() / 2;
        let cut = bytes[half..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| half + p + 1);
        crate::state::write_atomic(&self.path, &bytes[cut..]).map_err(std::io::Error::other)
    }

    /// Every event recorded, oldest first, and the offset where the log ends.
    pub fn read_all(&self) -> (Vec<Event>, u64) {
        let mut follower = EventFollower::new(self.path.clone(), 0);
        let events = follower.poll();
        (events, follower.offset())
    }

    /// Follow the log from byte `offset`.
    pub fn follow_from(&self, offset: u64) -> EventFollower {
        EventFollower::new(self.path.clone(), offset)
    }
}

/// Reads events appended since the last poll.
pub type EventFollower = super::follow::JsonLinesFollower<Event>;

#[cfg(test)]
mod tests {
    use super::*;
    use a3s_box_core::event::{EventAction, EventType};

    #[test]
    fn events_are_appended_read_and_followed() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::at(dir.path().join(EVENTS_FILE));
        assert!(log.read_all().0.is_empty());
        log.record(&Event::now(EventType::Container, EventAction::Create, "a"));
        let (all, end) = log.read_all();
        assert_eq!(all.len(), 1);
        let mut f = log.follow_from(end);
        assert!(f.poll().is_empty());
        log.record(&Event::now(EventType::Container, EventAction::Start, "a"));
        let new = f.poll();
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].action, EventAction::Start);
    }

    #[test]
    fn a_full_log_keeps_its_newer_half() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::at(dir.path().join(EVENTS_FILE));
        let big = "x".repeat(64 * 1024);
        for i in 0..80 {
            log.record(
                &Event::now(EventType::Container, EventAction::Start, format!("{i}"))
                    .with("pad", big.clone()),
            );
        }
        let size = std::fs::metadata(log.path()).unwrap().len();
        assert!(size <= MAX_BYTES + 70 * 1024, "{size}");
        let (all, _) = log.read_all();
        assert_eq!(all.last().unwrap().actor.id, "79");
        assert!(all.first().unwrap().actor.id != "0");
    }
}
