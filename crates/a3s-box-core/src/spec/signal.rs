//! [`Signal`]: a Linux signal, parsed strictly (`--stop-signal`, `kill -s`).
//!
//! The seed's lenient [`crate::parse_signal_name`] (anything unknown is
//! SIGTERM) stays for stop paths; user input goes through [`Signal`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::SpecError;

/// Highest signal number (SIGRTMAX on Linux).
pub const MAX_SIGNAL: u8 = 64;
/// Lowest real-time signal the C library leaves to programs (SIGRTMIN).
pub const SIGRTMIN: u8 = 34;

/// Linux's standard signals (x86-64 and arm64 numbering), with aliases.
const NAMES: [(&str, u8); 34] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// A signal number from 1 to 64 (SIGRTMAX).
///
/// Parses names case-insensitively with or without `SIG` (`TERM`,
/// `sigkill`), `RTMIN`, `RTMIN+N`, `RTMAX`, `RTMAX-N`, and numbers; anything
/// else is an error. Displays (and serializes) as the canonical name
/// (`SIGTERM`, `SIGRTMIN+2`), or the number for 32 and 33.
///
/// ```
/// use a3s_box_core::spec::Signal;
/// let s: Signal = "term".parse().unwrap();
/// assert_eq!((s.number(), s.to_string()), (15, "SIGTERM".to_string()));
/// assert!("SIGNOPE".parse::<Signal>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Signal(u8);

impl Signal {
    /// SIGKILL.
    pub const KILL: Signal = Signal(9);
    /// SIGTERM, the default stop signal.
    pub const TERM: Signal = Signal(15);

    /// The signal numbered `n`, if it is one.
    pub fn new(n: i32) -> Option<Signal> {
        u8::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_SIGNAL).contains(n))
            .map(Signal)
    }

    /// Its number.
    pub fn number(self) -> i32 {
        i32::from(self.0)
    }
}

impl FromStr for Signal {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let bad = || {
            SpecError::invalid(
                "--signal",
                text,
                "use a signal name (TERM, SIGKILL, RTMIN+1) or a number from 1 to 64",
            )
        };
        let upper = text.trim().to_ascii_uppercase();
        if !upper.is_empty() && upper.bytes().all(|b| b.is_ascii_digit()) {
            return upper
                .parse::<i32>()
                .ok()
                .and_then(Signal::new)
                .ok_or_else(bad);
        }
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some(&(_, n)) = NAMES.iter().find(|(name, _)| *name == bare) {
            return Ok(Signal(n));
        }
        let offset = |rest: &str| -> Option<u8> {
            if rest.is_empty() {
                Some(0)
            } else if rest.bytes().all(|b| b.is_ascii_digit()) {
                rest.parse().ok()
            } else {
                None
            }
        };
        let n = if let Some(rest) = bare.strip_prefix("RTMIN") {
            offset(rest.strip_prefix('+').unwrap_or(rest)).and_then(|k| SIGRTMIN.checked_add(k))
        } else if let Some(rest) = bare.strip_prefix("RTMAX") {
            offset(rest.strip_prefix('-').unwrap_or(rest)).and_then(|k| MAX_SIGNAL.checked_sub(k))
        } else {
            None
        };
        n.filter(|n| (SIGRTMIN..=MAX_SIGNAL).contains(n))
            .map(Signal)
            .ok_or_else(bad)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if let Some((name, _)) = NAMES.iter().find(|(_, num)| *num == n) {
            write!(f, "SIG{name}")
        } else if n == SIGRTMIN {
            f.write_str("SIGRTMIN")
        } else if n == MAX_SIGNAL {
            f.write_str("SIGRTMAX")
        } else if n > SIGRTMIN && n < 50 {
            write!(f, "SIGRTMIN+{}", n - SIGRTMIN)
        } else if n >= 50 {
            write!(f, "SIGRTMAX-{}", MAX_SIGNAL - n)
        } else {
            write!(f, "{n}")
        }
    }
}

impl TryFrom<String> for Signal {
    type Error = SpecError;

    fn try_from(text: String) -> Result<Self, SpecError> {
        text.parse()
    }
}

impl From<Signal> for String {
    fn from(s: Signal) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_parse_strictly() {
        for (text, n) in [
            ("TERM", 15),
            ("sigkill", 9),
            ("SigHup", 1),
            ("9", 9),
            ("64", 64),
            ("RTMIN", 34),
            ("SIGRTMIN+3", 37),
            ("rtmax-1", 63),
            ("RTMAX", 64),
            ("CLD", 17),
            (" INT ", 2),
        ] {
            assert_eq!(text.parse::<Signal>().unwrap().number(), n, "{text}");
        }
        for bad in [
            "",
            "0",
            "65",
            "-9",
            "NOPE",
            "SIG",
            "ALARM",
            "RTMIN+31",
            "RTMAX-31",
            "RTMIN-1",
            "1.5",
            "SIGTERM2",
            "99999999999",
        ] {
            let e = bad.parse::<Signal>().unwrap_err();
            assert!(e.message.contains("signal name"), "{bad}: {e}");
        }
    }

    #[test]
    fn every_number_displays_as_something_that_parses_back() {
        for n in 1..=64 {
            let s = Signal::new(n).unwrap();
            assert_eq!(s.to_string().parse::<Signal>().unwrap(), s, "{n}");
        }
        assert_eq!(Signal::TERM.to_string(), "SIGTERM");
        assert_eq!(Signal::new(6).unwrap().to_string(), "SIGABRT");
        assert_eq!(Signal::new(49).unwrap().to_string(), "SIGRTMIN+15");
        assert_eq!(Signal::new(50).unwrap().to_string(), "SIGRTMAX-14");
        assert_eq!(Signal::new(32).unwrap().to_string(), "32");
        assert!(Signal::new(0).is_none() && Signal::new(65).is_none());
    }

    #[test]
    fn serializes_as_its_name() {
        assert_eq!(serde_json::to_string(&Signal::KILL).unwrap(), "\"SIGKILL\"");
        let s: Signal = serde_json::from_str("\"usr1\"").unwrap();
        assert_eq!(s.number(), 10);
        assert!(serde_json::from_str::<Signal>("\"SIGNOPE\"").is_err());
    }
}
