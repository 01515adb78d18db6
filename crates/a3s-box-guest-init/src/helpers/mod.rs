//! guest-init's built-in helpers: small programs that guest-init runs by
//! re-executing itself *inside* a running box (its namespaces, its root),
//! single-threaded, with stdin, stdout and stderr streamed to the host.
//! `a3s-box cp`, `top` and `stats` use them, so they work in images that have
//! no `tar` or `ps` of their own.
//!
//! `argv` is `[HELPER_ARGV0, NAME, ARGS...]`; [`main`] gets `[NAME, ARGS...]`:
//!
//! | argv after the marker | stdin | stdout |
//! |---|---|---|
//! | `tar-create PATH` | – | tar of PATH, entries rooted at its basename |
//! | `tar-extract DIR` | tar stream | – (extracted under DIR) |
//! | `ps` | – | `ps -ef`-style table of the box's processes |
//! | `stats` | – | `{"mem_total_bytes":N,"mem_available_bytes":N,"pids":N}` |
//! | `stat PATH` | – | `{"kind":K,"target_kind":K}`, K one of [`stat::PathKind`] |
//!
//! A failure is one line on stderr and exit code [`EXIT_FAILED`], or
//! [`EXIT_USAGE`] for a bad command line.

mod error;
mod procfs;
mod ps;
mod stat;
mod stats;
mod tar_create;
mod tar_extract;
mod tar_place;

use std::io::{self, Write};
use std::path::Path;

pub use self::error::HelperError;

/// Exit code of a helper that failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code of a helper given a bad command line.
pub const EXIT_USAGE: i32 = 2;

pub use a3s_box_core::guest::builtin::{PS, STAT, STATS, TAR_CREATE, TAR_EXTRACT};

/// Run the helper named by `args[0]` with the rest of `args`; returns the
/// process exit code. Errors are written to stderr as one line.
pub fn main(args: &[String]) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(io::stderr().lock(), "{e}");
            e.exit_code()
        }
    }
}

fn run(args: &[String]) -> Result<(), HelperError> {
    let Some((name, rest)) = args.split_first() else {
        return Err(HelperError::Usage(usage("missing helper name")));
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let mut out = io::BufWriter::new(io::stdout().lock());
    match (name.as_str(), rest.as_slice()) {
        (TAR_CREATE, [path]) => {
            tar_create::create(Path::new(path), &mut out)?;
        }
        (TAR_EXTRACT, [dir]) => {
            tar_extract::run(Path::new(dir), io::stdin().lock())?;
        }
        (PS, []) => ps::run(&mut out)?,
        (STATS, []) => stats::run(&mut out)?,
        (STAT, [path]) => stat::run(Path::new(path), &mut out)?,
        (TAR_CREATE | STAT, _) => return Err(HelperError::Usage(format!("usage: {name} PATH"))),
        (TAR_EXTRACT, _) => return Err(HelperError::Usage(format!("usage: {name} DIR"))),
        (PS | STATS, _) => return Err(HelperError::Usage(format!("usage: {name} (no arguments)"))),
        (other, _) => {
            return Err(HelperError::Usage(usage(&format!(
                "unknown helper {other:?}"
            ))))
        }
    }
    out.flush().map_err(|source| HelperError::Io {
        op: "write",
        path: "stdout".into(),
        source,
    })
}

fn usage(problem: &str) -> String {
    format!("{problem}; expected one of {TAR_CREATE}, {TAR_EXTRACT}, {PS}, {STATS}, {STAT}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        for bad in [
            &[][..],
            &["nope"],
            &["tar-create"],
            &["tar-create", "a", "b"],
            &["tar-extract"],
            &["stats", "x"],
            &["stat"],
        ] {
            let err = run(&args(bad)).expect_err("a usage error");
            assert_eq!(err.exit_code(), EXIT_USAGE, "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_missing_path_is_a_plain_failure() {
        let err = run(&args(&["tar-create", "/no/such/a3s-path"])).expect_err("missing");
        assert_eq!(err.exit_code(), EXIT_FAILED);
        assert_eq!(
            err.to_string(),
            "no such file or directory: /no/such/a3s-path"
        );
    }
}
