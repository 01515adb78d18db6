//! Reading a box's log: what `logs` shows and what `run` and `start -a`
//! follow until the box ends.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use a3s_box_core::time::parse_rfc3339;
use a3s_box_core::BoxError;

use crate::state::log::LogLine;

/// How often a followed log is read.
pub(crate) const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// `--since` / `--until`: an RFC 3339 time, or a duration ago (`10s`, `5m`, `2h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since(pub SystemTime);

impl FromStr for Since {
    type Err = BoxError;

    fn from_str(text: &str) -> Result<Self, BoxError> {
        if let Some(t) = parse_rfc3339(text) {
            return Ok(Since(t));
        }
        let bad = || {
            BoxError::Invalid(format!(
                "invalid time {text:?}: use an RFC 3339 time or a duration like 10s, 5m, 2h"
            ))
        };
        // The unit is the last character, whatever its width.
        let last = text.char_indices().last().map_or(0, |(i, _)| i);
        let (num, unit) = text.split_at(last);
        let scale: u64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => return Err(bad()),
        };
        let ago = num
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .and_then(|secs| SystemTime::now().checked_sub(Duration::from_secs(secs)))
            .ok_or_else(bad)?;
        Ok(Since(ago))
    }
}

/// What part of a log to show.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    /// Only lines written at or after this time.
    pub since: Option<Since>,
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Keep reading until the box stops.
    pub follow: bool,
}

/// Reads log lines appended since the last call (a rotated log starts over).
pub type Follower = crate::state::follow::JsonLinesFollower<LogLine>;

/// Keep `lines` that pass `opts`' since and tail.
pub(crate) fn select(lines: Vec<LogLine>, opts: &LogsOptions) -> Vec<LogLine> {
    let lines: Vec<LogLine> = lines
        .into_iter()
        .filter(|l| {
            opts.since
                .is_none_or(|Since(t)| parse_rfc3339(&l.time).is_some_and(|lt| lt >= t))
        })
        .collect();
    let skip = opts.tail.map_or(0, |n| lines.len().saturating_sub(n));
    lines.into_iter().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_durations() {
        assert!("10s".parse::<Since>().is_ok());
        assert!("2h".parse::<Since>().is_ok());
        assert!("2026-01-01T00:00:00Z".parse::<Since>().is_ok());
        let err = "yesterday".parse::<Since>().unwrap_err();
        assert_eq!(err.kind(), a3s_box_core::ErrorKind::Invalid);
    }

    #[test]
    fn since_refuses_what_it_cannot_count_without_panicking() {
        for bad in [
            "",
            "5é",
            "é",
            "99999999999999999h",
            "18446744073709551615s",
            "-5s",
            "s",
        ] {
            let err = bad.parse::<Since>().unwrap_err();
            assert!(err.to_string().contains("invalid time"), "{bad}: {err}");
        }
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let line = |s: &str| LogLine {
            log: s.into(),
            stream: "stdout".into(),
            time: "2026-01-01T00:00:00Z".into(),
        };
        let lines = vec![line("a"), line("b"), line("c")];
        let opts = LogsOptions {
            tail: Some(2),
            ..Default::default()
        };
        let got: Vec<String> = select(lines, &opts).into_iter().map(|l| l.log).collect();
        assert_eq!(got, ["b", "c"]);
    }
}
