//! `ps`: parse → engine → render.

use a3s_box_runtime::manager::views::list::{human_since, BoxSummary, ListFilter, ListOptions};
use anyhow::Result;

use crate::cli::{Format, PsArgs};

/// `ps`.
pub fn ps(args: PsArgs) -> Result<u8> {
    let filters = args
        .filter
        .iter()
        .map(|f| f.parse::<ListFilter>())
        .collect::<a3s_box_core::Result<Vec<_>>>()?;
    let rows = super::engine()?.list(&ListOptions {
        all: args.all,
        filters,
    })?;
    let id = |r: &BoxSummary| {
        if args.no_trunc {
            r.id.clone()
        } else {
            r.id[..12].to_string()
        }
    };
    if args.quiet {
        rows.iter().for_each(|r| println!("{}", id(r)));
        return Ok(0);
    }
    if args.format == Format::Json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(0);
    }
    let trunc = |s: &str, n: usize| {
        if args.no_trunc || s.chars().count() <= n {
            s.to_string()
        } else {
            format!("{}…", s.chars().take(n - 1).collect::<String>())
        }
    };
    let with_pod = args.pod || rows.iter().any(|r| r.pod.is_some());
    let pod_head = if with_pod {
        format!("  {:<16}", "POD")
    } else {
        String::new()
    };
    println!(
        "{:<12}  {:<24}  {:<22}  {:<16}  {:<26}{pod_head}  NAMES",
        "BOX ID", "IMAGE", "COMMAND", "CREATED", "STATUS"
    );
    for r in &rows {
        let pod = match (with_pod, &r.pod) {
            (true, p) => format!("  {:<16}", trunc(p.as_deref().unwrap_or(""), 16)),
            (false, _) => String::new(),
        };
        println!(
            "{:<12}  {:<24}  {:<22}  {:<16}  {:<26}{pod}  {}",
            id(r),
            trunc(&r.image, 24),
            trunc(&format!("\"{}\"", r.command), 22),
            format!("{} ago", human_since(Some(&r.created))),
            r.status,
            r.name
        );
    }
    Ok(0)
}
