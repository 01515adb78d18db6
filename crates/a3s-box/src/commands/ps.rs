//! `ps`.

use std::time::SystemTime;

use a3s_box_core::status::BoxStatus;
use a3s_box_core::time::parse_rfc3339;
use a3s_box_runtime::home::Home;
use a3s_box_runtime::manager::BoxManager;
use a3s_box_runtime::state::BoxRecord;
use anyhow::{bail, Result};

use crate::cli::{Format, PsArgs};

/// A parsed `--filter`.
enum Filter {
    Name(String),
    Label(String, Option<String>),
    Status(BoxStatus),
}

fn parse_filter(text: &str) -> Result<Filter> {
    Ok(match text.split_once('=') {
        Some(("name", v)) => Filter::Name(v.to_string()),
        Some(("label", v)) => match v.split_once('=') {
            Some((k, val)) => Filter::Label(k.to_string(), Some(val.to_string())),
            None => Filter::Label(v.to_string(), None),
        },
        Some(("status", v)) => Filter::Status(v.parse()?),
        _ => bail!("invalid filter {text:?}: use name=NAME, label=KEY[=VALUE] or status=STATUS"),
    })
}

fn matches(r: &BoxRecord, f: &Filter) -> bool {
    match f {
        Filter::Name(n) => r.config.name.contains(n.as_str()),
        Filter::Label(k, v) => r
            .config
            .labels
            .get(k)
            .is_some_and(|val| v.as_ref().is_none_or(|want| want == val)),
        Filter::Status(s) => r.state.status == *s,
    }
}

/// "3 seconds", "5 minutes", ... as Docker prints durations.
fn human(since: Option<&str>) -> String {
    let Some(t) = since.and_then(parse_rfc3339) else {
        return "?".into();
    };
    let secs = SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 172_800 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

fn status_text(r: &BoxRecord) -> String {
    let s = &r.state;
    match s.status {
        BoxStatus::Created => "Created".into(),
        BoxStatus::Running => format!("Up {}", human(s.started_at.as_deref())),
        BoxStatus::Paused => format!("Up {} (Paused)", human(s.started_at.as_deref())),
        BoxStatus::Restarting => format!(
            "Restarting ({}) {} ago",
            s.exit_code.unwrap_or(0),
            human(s.finished_at.as_deref())
        ),
        BoxStatus::Exited | BoxStatus::Dead => format!(
            "Exited ({}) {} ago",
            s.exit_code.unwrap_or(0),
            human(s.finished_at.as_deref())
        ),
    }
}

/// The image reference, or the root directory for `--rootfs` boxes.
pub fn image_of(r: &BoxRecord) -> String {
    match &r.config.options.image {
        Some(image) => image.clone(),
        None => r.config.options.rootfs_dir.display().to_string(),
    }
}

/// `ps`.
pub fn ps(args: PsArgs) -> Result<u8> {
    let filters: Vec<Filter> = args
        .filter
        .iter()
        .map(|f| parse_filter(f))
        .collect::<Result<_>>()?;
    let manager = BoxManager::new(&Home::from_env()?);
    let records: Vec<BoxRecord> = manager
        .store()
        .list()?
        .into_iter()
        .filter(|r| args.all || r.state.status.is_active())
        .filter(|r| filters.iter().all(|f| matches(r, f)))
        .collect();
    if args.quiet {
        for r in &records {
            println!(
                "{}",
                if args.no_trunc {
                    &r.config.id
                } else {
                    r.short_id()
                }
            );
        }
        return Ok(0);
    }
    if args.format == Format::Json {
        let rows: Vec<_> = records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "ID": r.config.id,
                    "Names": r.config.name,
                    "Image": image_of(r),
                    "Command": r.config.options.command.join(" "),
                    "CreatedAt": r.config.created,
                    "State": r.state.status,
                    "Status": status_text(r),
                    "ExitCode": r.state.exit_code,
                    "Labels": r.config.labels,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(0);
    }
    println!(
        "{:<12}  {:<24}  {:<22}  {:<16}  {:<26}  NAMES",
        "BOX ID", "IMAGE", "COMMAND", "CREATED", "STATUS"
    );
    for r in &records {
        let cmd = format!("\"{}\"", r.config.options.command.join(" "));
        let rootfs = image_of(r);
        let trunc = |s: &str, n: usize| {
            if args.no_trunc || s.chars().count() <= n {
                s.to_string()
            } else {
                format!("{}…", s.chars().take(n - 1).collect::<String>())
            }
        };
        println!(
            "{:<12}  {:<24}  {:<22}  {:<16}  {:<26}  {}",
            if args.no_trunc {
                r.config.id.as_str()
            } else {
                r.short_id()
            },
            trunc(&rootfs, 24),
            trunc(&cmd, 22),
            format!("{} ago", human(Some(&r.config.created))),
            status_text(r),
            r.config.name
        );
    }
    Ok(0)
}
