//! `logs` and following a box's output.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, SystemTime};

use a3s_box_core::time::parse_rfc3339;

use a3s_box_runtime::home::Home;
use a3s_box_runtime::manager::BoxManager;
use a3s_box_runtime::state::log::{read_log, LogLine};
use a3s_box_runtime::state::{BoxRecord, Hold, LOG_FILE};
use anyhow::{bail, Result};

use crate::cli::LogsArgs;

const FOLLOW_POLL: Duration = Duration::from_millis(50);

fn print(line: &LogLine, timestamps: bool) {
    let text = if timestamps {
        format!("{} {}", line.time, line.log)
    } else {
        line.log.clone()
    };
    // Write errors (closed pipe) end nothing: the box keeps running.
    let _ = if line.stream == "stderr" {
        std::io::stderr().write_all(text.as_bytes())
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|_| out.flush())
    };
}

/// Reads log lines appended since the last call.
struct Follower {
    file: Option<File>,
    path: std::path::PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl Follower {
    fn new(path: std::path::PathBuf, offset: u64) -> Self {
        Follower {
            file: None,
            path,
            offset,
            partial: Vec::new(),
        }
    }

    fn poll(&mut self) -> Vec<LogLine> {
        if self.file.is_none() {
            self.file = File::open(&self.path).ok();
        }
        // Rotated under us: the log now at the path is a new, shorter file.
        let len = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            self.file = File::open(&self.path).ok();
            self.offset = 0;
            self.partial.clear();
        }
        let Some(file) = self.file.as_mut() else {
            return Vec::new();
        };
        let mut buf = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        String::from_utf8_lossy(&complete)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// `--since`: RFC 3339, or a duration ago (`10s`, `5m`, `2h`).
fn parse_since(text: &str) -> Result<SystemTime> {
    if let Some(t) = parse_rfc3339(text) {
        return Ok(t);
    }
    let (num, unit) = text.split_at(text.len().saturating_sub(1));
    let secs: u64 = match (num.parse::<u64>(), unit) {
        (Ok(n), "s") => n,
        (Ok(n), "m") => n * 60,
        (Ok(n), "h") => n * 3600,
        _ => bail!("invalid --since {text:?}: use an RFC 3339 time or a duration like 10s, 5m, 2h"),
    };
    Ok(SystemTime::now() - Duration::from_secs(secs))
}

/// `logs`.
pub fn logs(args: LogsArgs) -> Result<u8> {
    let manager = BoxManager::new(&Home::from_env()?);
    let record = manager.store().get(&args.r#box)?;
    let path = record.dir.join(LOG_FILE);
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let lines: Vec<LogLine> = read_log(&path)?
        .into_iter()
        .filter(|l| since.is_none_or(|t| parse_rfc3339(&l.time).is_some_and(|lt| lt >= t)))
        .collect();
    let skip = args.tail.map_or(0, |n| lines.len().saturating_sub(n));
    for line in &lines[skip..] {
        print(line, args.timestamps);
    }
    if args.follow {
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        follow(
            &manager,
            &record.config.id,
            Follower::new(path, offset),
            args.timestamps,
        )?;
    }
    Ok(0)
}

fn follow(manager: &BoxManager, id: &str, mut f: Follower, timestamps: bool) -> Result<()> {
    loop {
        let active = match manager.store().get(id) {
            Ok(r) => r.state.status.is_active(),
            Err(_) => false, // removed (--rm)
        };
        for line in f.poll() {
            print(&line, timestamps);
        }
        if !active {
            for line in f.poll() {
                print(&line, timestamps);
            }
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// Size of a box's log now: where output written from now on begins.
pub fn log_end(manager: &BoxManager, id: &str) -> Result<u64> {
    let record = manager.store().get(id)?;
    Ok(std::fs::metadata(record.dir.join(LOG_FILE))
        .map(|m| m.len())
        .unwrap_or(0))
}

/// Stream a box's output from byte `offset` of its log until it stops; its
/// exit code. `hold` is the caller's hold on an `--rm` box, taken before it
/// started (see `BoxManager::hold_end`).
pub fn follow_until_exit(
    manager: &BoxManager,
    record: &BoxRecord,
    offset: u64,
    hold: Option<Hold>,
) -> Result<i32> {
    let id = &record.config.id;
    let path = record.dir.join(LOG_FILE);
    follow(manager, id, Follower::new(path, offset), false)?;
    let code = manager.store().get(id).ok().and_then(|r| r.state.exit_code);
    manager.finish_wait(record, hold);
    Ok(code.unwrap_or(0))
}
