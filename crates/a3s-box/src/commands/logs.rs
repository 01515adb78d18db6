//! `logs`: parse → engine → render.

use std::io::Write;

use a3s_box_runtime::manager::logs::{LogsOptions, Since};
use a3s_box_runtime::state::log::LogLine;
use anyhow::Result;

use crate::cli::LogsArgs;

/// A printer of log lines to our stdout and stderr (by their stream).
pub fn print_line(timestamps: bool) -> impl FnMut(&LogLine) + Send {
    move |line: &LogLine| {
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
}

/// `logs`.
pub async fn logs(args: LogsArgs) -> Result<u8> {
    let opts = LogsOptions {
        since: args.since.as_deref().map(str::parse::<Since>).transpose()?,
        tail: args.tail.and_then(|t| t.0),
        follow: args.follow,
    };
    super::engine()?
        .logs(&args.r#box, &opts, &mut print_line(args.timestamps))
        .await?;
    Ok(0)
}
