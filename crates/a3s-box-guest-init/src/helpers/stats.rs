//! `stats`: one JSON line with the box's memory and process count,
//! `{"mem_total_bytes":N,"mem_available_bytes":N,"pids":N}`. Memory is the
//! VM's (the box is the only tenant); `pids` counts the box's pid namespace,
//! the helper itself left out.

use std::fs;
use std::io::Write;

use super::procfs::{self, MemInfo};
use super::HelperError;

/// Print the stats line to `out`.
pub fn run(out: &mut impl Write) -> Result<(), HelperError> {
    let meminfo =
        fs::read_to_string("/proc/meminfo").map_err(HelperError::io("read", "/proc/meminfo"))?;
    let mem = procfs::parse_meminfo(&meminfo)
        .ok_or_else(|| HelperError::Proc("no MemTotal in /proc/meminfo".into()))?;
    let me = std::process::id().to_string();
    let mut pids = 0;
    for dirent in fs::read_dir("/proc").map_err(HelperError::io("read dir", "/proc"))? {
        let dirent = dirent.map_err(HelperError::io("read dir", "/proc"))?;
        let name = dirent.file_name();
        if name.to_str().is_some_and(|n| procfs::is_pid(n) && n != me) {
            pids += 1;
        }
    }
    writeln!(out, "{}", stats_json(&mem, pids)).map_err(HelperError::io("write", "stdout"))
}

/// The stats line (numbers only, so no escaping is needed).
pub fn stats_json(mem: &MemInfo, pids: u64) -> String {
    format!(
        "{{\"mem_total_bytes\":{},\"mem_available_bytes\":{},\"pids\":{pids}}}",
        mem.total_bytes, mem.available_bytes
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_is_json() {
        let mem = MemInfo {
            total_bytes: 2048,
            available_bytes: 1024,
        };
        assert_eq!(
            stats_json(&mem, 3),
            r#"{"mem_total_bytes":2048,"mem_available_bytes":1024,"pids":3}"#
        );
    }

    #[test]
    fn runs_on_this_machine() {
        let mut out = Vec::new();
        run(&mut out).expect("stats");
        let line = String::from_utf8(out).expect("utf-8");
        assert!(
            line.starts_with("{\"mem_total_bytes\":") && line.ends_with("}\n"),
            "{line}"
        );
    }
}
