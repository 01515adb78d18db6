//! `events`: parse → engine → render.

use std::io::Write;

use a3s_box_core::event::Event;
use a3s_box_runtime::manager::logs::Since;
use a3s_box_runtime::manager::EventFilter;
use anyhow::Result;

use crate::cli::{EventsArgs, Format};

fn render(e: &Event, format: Format) -> String {
    if format == Format::Json {
        return serde_json::to_string(e).unwrap_or_default();
    }
    let secs = (e.time_nano / 1_000_000_000) as u64;
    let time = a3s_box_core::time::rfc3339(
        std::time::UNIX_EPOCH
            + std::time::Duration::new(secs, (e.time_nano % 1_000_000_000) as u32),
    );
    let attrs: Vec<String> = e
        .actor
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{time} {} {} {} ({})",
        e.kind,
        e.action,
        e.actor.id,
        attrs.join(", ")
    )
}

/// `events`.
pub async fn events(args: EventsArgs) -> Result<u8> {
    let filters = args
        .filter
        .iter()
        .map(|f| f.parse::<EventFilter>())
        .collect::<a3s_box_core::Result<Vec<_>>>()?;
    let since = args.since.as_deref().map(str::parse::<Since>).transpose()?;
    let until = args.until.as_deref().map(str::parse::<Since>).transpose()?;
    let (past, mut stream) = super::engine()?.events_since(since.map(|s| s.0), &filters);
    let until_nanos = until.map(|Since(t)| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    });
    let mut out = std::io::stdout();
    for e in past
        .iter()
        .filter(|e| until_nanos.is_none_or(|u| e.time_nano <= u))
    {
        if writeln!(out, "{}", render(e, args.format)).is_err() {
            return Ok(0);
        }
    }
    if until.is_some() {
        return Ok(0);
    }
    loop {
        for e in stream.next().await {
            if writeln!(out, "{}", render(&e, args.format))
                .and_then(|_| out.flush())
                .is_err()
            {
                return Ok(0);
            }
        }
    }
}
