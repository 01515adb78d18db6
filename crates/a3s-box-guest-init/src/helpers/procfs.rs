//! Pure parsers for the `/proc` files the `ps` and `stats` helpers read.
//! Each takes the file's text, so they are tested on samples.

use std::collections::HashMap;

/// Bytes in the `kB` unit of `/proc/meminfo`.
const KIB: u64 = 1024;

/// The fields of `/proc/PID/stat` that `ps -ef` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: u32,
    /// Executable name, at most 15 bytes (`comm`).
    pub comm: String,
    /// Parent process id.
    pub ppid: u32,
    /// Controlling terminal device number (0 for none).
    pub tty_nr: u32,
    /// User-mode CPU time, in clock ticks.
    pub utime_ticks: u64,
    /// Kernel-mode CPU time, in clock ticks.
    pub stime_ticks: u64,
    /// Start time after boot, in clock ticks.
    pub start_ticks: u64,
}

/// Parse `/proc/PID/stat`: `pid (comm) state ppid pgrp session tty_nr ...`.
/// `comm` may hold spaces and parentheses, so it ends at the *last* `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text.get(..open)?.trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    // Fields from `state` (field 3) on.
    let rest: Vec<&str> = text.get(close + 1..)?.split_ascii_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    Some(ProcStat {
        pid,
        comm,
        ppid: field(4)?.parse().ok()?,
        // Printed as a signed int by the kernel; reinterpret the bits.
        tty_nr: field(7)?.parse::<i32>().ok()? as u32,
        utime_ticks: field(14)?.parse().ok()?,
        stime_ticks: field(15)?.parse().ok()?,
        start_ticks: field(22)?.parse().ok()?,
    })
}

/// The effective uid from `/proc/PID/status` (`Uid: real effective saved fs`).
pub fn parse_status_euid(text: &str) -> Option<u32> {
    let line = text.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// `/proc/PID/cmdline` as a command line (arguments joined by spaces), or
/// `None` when it is empty (kernel threads, zombies).
pub fn parse_cmdline(bytes: &[u8]) -> Option<String> {
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if bytes.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(bytes);
    Some(text.replace('\0', " "))
}

/// User names by uid from `/etc/passwd` (`name:x:uid:gid:gecos:home:shell`);
/// the first name wins for a uid listed twice.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut users = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if let Ok(uid) = uid.parse() {
            users.entry(uid).or_insert_with(|| name.to_string());
        }
    }
    users
}

/// Seconds since boot from `/proc/uptime` (`uptime idle`).
pub fn parse_uptime(text: &str) -> Option<f64> {
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// Boot time (seconds since the epoch) from the `btime` line of `/proc/stat`.
pub fn parse_btime(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("btime"))?;
    line.trim().parse().ok()
}

/// Memory figures from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total_bytes: u64,
    /// `MemAvailable`; estimated as `MemFree + Buffers + Cached` on kernels
    /// older than 3.14, which lack it.
    pub available_bytes: u64,
}

/// Parse `/proc/meminfo` (`Key:   value kB` lines).
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let mut values: HashMap<&str, u64> = HashMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let mut words = value.split_ascii_whitespace();
        let (Some(number), unit) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(number) = number.parse::<u64>() else {
            continue;
        };
        let scale = if unit == Some("kB") { KIB } else { 1 };
        values.insert(key.trim(), number.saturating_mul(scale));
    }
    let total_bytes = *values.get("MemTotal")?;
    let available_bytes = match values.get("MemAvailable") {
        Some(v) => *v,
        None => ["MemFree", "Buffers", "Cached"]
            .iter()
            .map(|k| values.get(k).copied().unwrap_or(0))
            .sum(),
    };
    Some(MemInfo {
        total_bytes,
        available_bytes,
    })
}

/// Whether a `/proc` entry name is a process id.
pub fn is_pid(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "42 (my (odd) cmd) S 1 42 42 34816 42 4194560 1050 0 0 0 \
        25 13 0 0 20 0 1 0 1234 5558272 900 18446744073709551615 1 1 0 0 0 0 0 \
        0 65536 0 0 0 17 3 0 0 0 0 0\n";

    #[test]
    fn stat_fields_survive_odd_comm() {
        let stat = parse_stat(STAT).expect("parses");
        assert_eq!(
            stat,
            ProcStat {
                pid: 42,
                comm: "my (odd) cmd".into(),
                ppid: 1,
                tty_nr: 34816,
                utime_ticks: 25,
                stime_ticks: 13,
                start_ticks: 1234,
            }
        );
        assert_eq!(parse_stat("42 (x) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_gives_the_effective_uid() {
        let status = "Name:\tsh\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_status_euid(status), Some(0));
        assert_eq!(parse_status_euid("Name:\tsh\n"), None);
    }

    #[test]
    fn cmdline_joins_arguments() {
        assert_eq!(
            parse_cmdline(b"sleep\x00100\x00").as_deref(),
            Some("sleep 100")
        );
        assert_eq!(
            parse_cmdline(b"nginx: master\0").as_deref(),
            Some("nginx: master")
        );
        assert_eq!(parse_cmdline(b""), None);
    }

    #[test]
    fn passwd_maps_uids_to_names() {
        let users = parse_passwd(
            "root:x:0:0:root:/root:/bin/sh\n# comment\nbad\nnobody:x:65534:65534::/:/sbin/nologin\ntoor:x:0:0::/:/bin/sh\n",
        );
        assert_eq!(users.get(&0).map(String::as_str), Some("root"));
        assert_eq!(users.get(&65534).map(String::as_str), Some("nobody"));
        assert_eq!(users.len(), 2);
    }

    #[test]
    fn uptime_and_btime() {
        assert_eq!(parse_uptime("350735.47 234388.90\n"), Some(350_735.47));
        let stat = "cpu  1 2 3\nintr 5\nctxt 9\nbtime 1700000000\nprocesses 7\n";
        assert_eq!(parse_btime(stat), Some(1_700_000_000));
        assert_eq!(parse_btime("cpu 1\n"), None);
    }

    #[test]
    fn meminfo_in_bytes() {
        let text = "MemTotal:        2030000 kB\nMemFree:          100000 kB\n\
                    MemAvailable:    1500000 kB\nBuffers:            2000 kB\n\
                    Cached:            30000 kB\nHugePages_Total:       0\n";
        assert_eq!(
            parse_meminfo(text),
            Some(MemInfo {
                total_bytes: 2_030_000 * 1024,
                available_bytes: 1_500_000 * 1024,
            })
        );
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 30 kB\n";
        assert_eq!(
            parse_meminfo(old).map(|m| m.available_bytes),
            Some(150 * 1024)
        );
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn pid_names() {
        assert!(is_pid("1") && is_pid("4194304"));
        assert!(!is_pid("self") && !is_pid("") && !is_pid("1a"));
    }
}
