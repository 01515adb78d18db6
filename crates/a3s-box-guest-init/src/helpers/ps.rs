//! `ps`: the box's processes as `docker top` shows them by default (`ps -ef`):
//! `UID PID PPID C STIME TTY TIME CMD`. Inside the box `/proc` is the box's
//! pid namespace, so this lists exactly the box; the helper leaves itself out.
//! Times are shown in UTC (the VM's clock has no time zone).

use std::fs;
use std::io::Write;

use super::procfs::{self, ProcStat};
use super::HelperError;

/// Seconds in a day and (roughly, as procps counts) a year.
const DAY_SECS: u64 = 24 * 60 * 60;
const YEAR_SECS: u64 = 365 * DAY_SECS;
/// procps caps the `C` column at this.
const MAX_C: u64 = 99;
/// Clock ticks per second when `sysconf` cannot tell (Linux's `USER_HZ`).
const DEFAULT_TICKS_PER_SEC: u64 = 100;

const HEADER: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];
/// Numeric columns are right-aligned, as `ps` prints them.
const RIGHT_ALIGNED: [bool; 8] = [false, true, true, true, false, false, true, false];

/// The clock: what a row needs besides the process itself.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// `/proc` clock ticks per second.
    pub ticks_per_sec: u64,
    /// Seconds since boot.
    pub uptime_secs: f64,
    /// Boot time, seconds since the epoch.
    pub boot_time: u64,
    /// Now, seconds since the epoch.
    pub now: u64,
}

/// Print the table for the box's processes to `out`.
pub fn run(out: &mut impl Write) -> Result<(), HelperError> {
    let read = |path: &str| fs::read_to_string(path).map_err(HelperError::io("read", path));
    let clock = Clock {
        ticks_per_sec: ticks_per_sec(),
        uptime_secs: procfs::parse_uptime(&read("/proc/uptime")?)
            .ok_or_else(|| HelperError::Proc("/proc/uptime".into()))?,
        boot_time: procfs::parse_btime(&read("/proc/stat")?)
            .ok_or_else(|| HelperError::Proc("no btime in /proc/stat".into()))?,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let users = fs::read_to_string("/etc/passwd")
        .map(|t| procfs::parse_passwd(&t))
        .unwrap_or_default();
    let me = std::process::id();
    let mut rows = Vec::new();
    for dirent in fs::read_dir("/proc").map_err(HelperError::io("read dir", "/proc"))? {
        let Ok(dirent) = dirent else { continue };
        let name = dirent.file_name();
        let Some(pid) = name.to_str().filter(|n| procfs::is_pid(n)) else {
            continue;
        };
        if pid.parse() == Ok(me) {
            continue;
        }
        // A process may exit while it is read: leave it out.
        let Some(stat) = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|t| procfs::parse_stat(&t))
        else {
            continue;
        };
        let uid = fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|t| procfs::parse_status_euid(&t));
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let user = match uid {
            Some(uid) => users.get(&uid).cloned().unwrap_or_else(|| uid.to_string()),
            None => "?".into(),
        };
        rows.push(row(&stat, user, procfs::parse_cmdline(&cmdline), &clock));
    }
    rows.sort_by_key(|r| r[1].parse::<u32>().unwrap_or(u32::MAX));
    out.write_all(render(&rows).as_bytes())
        .map_err(HelperError::io("write", "stdout"))
}

fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz)
        .ok()
        .filter(|&hz| hz > 0)
        .unwrap_or(DEFAULT_TICKS_PER_SEC)
}

/// One table row: the columns of [`HEADER`].
pub fn row(stat: &ProcStat, user: String, cmdline: Option<String>, clock: &Clock) -> [String; 8] {
    let hz = clock.ticks_per_sec.max(1);
    let cpu_ticks = stat.utime_ticks + stat.stime_ticks;
    let start_secs = stat.start_ticks / hz;
    let running_secs = (clock.uptime_secs as u64).saturating_sub(start_secs);
    [
        user,
        stat.pid.to_string(),
        stat.ppid.to_string(),
        cpu_percent(cpu_ticks, hz, running_secs).to_string(),
        format_stime(clock.boot_time + start_secs, clock.now),
        tty_name(stat.tty_nr),
        format_cpu_time(cpu_ticks / hz),
        cmdline.unwrap_or_else(|| format!("[{}]", stat.comm)),
    ]
}

/// procps's `C`: CPU time over running time, in percent, at most 99.
pub fn cpu_percent(cpu_ticks: u64, ticks_per_sec: u64, running_secs: u64) -> u64 {
    if running_secs == 0 {
        return 0;
    }
    (cpu_ticks * 100 / ticks_per_sec.max(1) / running_secs).min(MAX_C)
}

/// procps's `STIME`: `HH:MM` within a day, `MonDD` within a year, else the year.
pub fn format_stime(start: u64, now: u64) -> String {
    let (year, month, day) = civil_from_days(start / DAY_SECS);
    let age = now.saturating_sub(start);
    if age < DAY_SECS {
        let secs = start % DAY_SECS;
        format!("{:02}:{:02}", secs / 3600, secs % 3600 / 60)
    } else if age < YEAR_SECS {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let name = MONTHS.get(month as usize - 1).copied().unwrap_or("???");
        format!("{name}{day:02}")
    } else {
        year.to_string()
    }
}

/// procps's `TIME`: `[DD-]HH:MM:SS`.
pub fn format_cpu_time(secs: u64) -> String {
    let (days, rem) = (secs / DAY_SECS, secs % DAY_SECS);
    let hms = format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    if days > 0 {
        format!("{days}-{hms}")
    } else {
        hms
    }
}

/// The terminal name for a `tty_nr` device number (`?` for none or unknown).
pub fn tty_name(tty_nr: u32) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match (major, minor) {
        (0, _) => "?".into(),
        (136..=143, m) => format!("pts/{}", (major - 136) * 256 + m),
        (4, m) if m < 64 => format!("tty{m}"),
        (4, m) => format!("ttyS{}", m - 64),
        (5, 1) => "console".into(),
        _ => "?".into(),
    }
}

/// Year, month (1–12) and day (1–31) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The header and rows, columns padded to their widest cell; the last
/// column (`CMD`) is not padded.
pub fn render(rows: &[[String; 8]]) -> String {
    let mut widths = HEADER.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADER.map(String::from);
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len() - 1;
        for (i, cell) in row.iter().enumerate() {
            let width = widths[i];
            let cell = match (i == last, RIGHT_ALIGNED[i]) {
                (true, _) => cell.clone(),
                (false, true) => format!("{cell:>width$} "),
                (false, false) => format!("{cell:<width$} "),
            };
            out.push_str(&cell);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2023-11-14 22:13:20 UTC.
    const T: u64 = 1_700_000_000;

    #[test]
    fn stime_like_procps() {
        assert_eq!(format_stime(T, T + 60), "22:13");
        assert_eq!(format_stime(T, T + 3 * DAY_SECS), "Nov14");
        assert_eq!(format_stime(T, T + 2 * YEAR_SECS), "2023");
        assert_eq!(format_stime(0, 10), "00:00");
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn cpu_time_and_percent() {
        assert_eq!(format_cpu_time(0), "00:00:00");
        assert_eq!(format_cpu_time(3_725), "01:02:05");
        assert_eq!(format_cpu_time(2 * DAY_SECS + 61), "2-00:01:01");
        assert_eq!(cpu_percent(500, 100, 10), 50);
        assert_eq!(cpu_percent(5_000, 100, 10), MAX_C);
        assert_eq!(cpu_percent(5, 100, 0), 0);
    }

    #[test]
    fn tty_names() {
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name(34_816), "pts/0"); // 136:0
        assert_eq!(tty_name((137 << 8) | 5), "pts/261");
        assert_eq!(tty_name((4 << 8) | 1), "tty1");
        assert_eq!(tty_name((4 << 8) | 64), "ttyS0");
        assert_eq!(tty_name((5 << 8) | 1), "console");
    }

    #[test]
    fn rows_and_table() {
        let stat = ProcStat {
            pid: 7,
            comm: "kworker".into(),
            ppid: 1,
            tty_nr: 0,
            utime_ticks: 150,
            stime_ticks: 50,
            start_ticks: 1_000,
        };
        let clock = Clock {
            ticks_per_sec: 100,
            uptime_secs: 110.5,
            boot_time: T,
            now: T + 110,
        };
        let r = row(&stat, "root".into(), None, &clock);
        assert_eq!(
            r.clone(),
            ["root", "7", "1", "2", "22:13", "?", "00:00:02", "[kworker]"].map(String::from)
        );
        let mut wide = r.clone();
        wide[0] = "www-data".into();
        wide[1] = "12345".into();
        wide[7] = "nginx: worker process".into();
        let table = render(&[r, wide]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "UID        PID PPID C STIME TTY     TIME CMD");
        assert_eq!(
            lines[1],
            "root         7    1 2 22:13 ?   00:00:02 [kworker]"
        );
        assert_eq!(
            lines[2],
            "www-data 12345    1 2 22:13 ?   00:00:02 nginx: worker process"
        );
    }
}
