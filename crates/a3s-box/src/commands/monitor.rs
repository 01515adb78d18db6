//! `top` and `stats`: what runs in a box and what it uses.

use std::io::Write;
use std::time::Duration;

use a3s_box_runtime::manager::{human_size, BoxStats};
use anyhow::{bail, Result};

use crate::cli::{StatsArgs, TopArgs};

/// Sampling interval of `stats`.
const INTERVAL: Duration = Duration::from_secs(1);

/// `top BOX [ps OPTIONS]`.
pub async fn top(args: TopArgs) -> Result<u8> {
    print!(
        "{}",
        super::engine()?.top(&args.target, &args.ps_options).await?
    );
    Ok(0)
}

fn row(s: &BoxStats) -> [String; 8] {
    [
        s.id[..12].to_string(),
        s.name.clone(),
        format!("{:.2}%", s.cpu_percent),
        format!(
            "{} / {}",
            human_size(s.mem_usage_bytes),
            human_size(s.mem_limit_bytes)
        ),
        format!("{:.2}%", s.mem_percent),
        format!(
            "{} / {}",
            human_size(s.net_rx_bytes),
            human_size(s.net_tx_bytes)
        ),
        format!(
            "{} / {}",
            human_size(s.block_read_bytes),
            human_size(s.block_write_bytes)
        ),
        s.pids.to_string(),
    ]
}

const HEADER: [&str; 8] = [
    "BOX ID",
    "NAME",
    "CPU %",
    "MEM USAGE / LIMIT",
    "MEM %",
    "NET I/O",
    "BLOCK I/O",
    "PIDS",
];

fn table(stats: &[BoxStats]) -> String {
    let rows: Vec<[String; 8]> = stats.iter().map(row).collect();
    let mut widths = HEADER.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[&str]| -> String {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            match i + 1 == cells.len() {
                true => out.push_str(cell),
                false => out.push_str(&format!("{cell:<w$}   ")),
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&HEADER);
    for r in &rows {
        out.push_str(&line(&r.each_ref().map(String::as_str)));
    }
    out
}

/// `stats [BOX...]`: a table refreshed every second, or one sample with
/// `--no-stream`; `--format json` prints one JSON object per box per line.
pub async fn stats(args: StatsArgs) -> Result<u8> {
    let json = match args.format.as_str() {
        "table" => false,
        "json" => true,
        other => bail!("unknown --format {other:?}: use table or json"),
    };
    let engine = super::engine()?;
    loop {
        let stats = engine.stats(&args.boxes, args.all, INTERVAL).await?;
        let mut out = String::new();
        if json {
            for s in &stats {
                out.push_str(&serde_json::to_string(s)?);
                out.push('\n');
            }
        } else {
            if !args.no_stream {
                // Redraw in place, as `docker stats` does.
                out.push_str("\x1b[2J\x1b[H");
            }
            out.push_str(&table(&stats));
        }
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(out.as_bytes())
            .and_then(|_| stdout.flush())
            .is_err()
            || args.no_stream
        {
            return Ok(0);
        }
    }
}
