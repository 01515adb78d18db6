//! `commit`, `import` and `system df`.

use a3s_box_runtime::manager::human_size;
use a3s_box_runtime::storage::commit::CommitOptions;
use anyhow::{Context, Result};

use crate::cli_storage::{CommitArgs, ImportArgs};

/// `commit [-m] [-a] [-c] BOX [REPO[:TAG]]`: print the new image id.
pub async fn commit(args: CommitArgs) -> Result<u8> {
    let opts = CommitOptions {
        message: args.message,
        author: args.author,
        changes: args.changes,
        reference: args.reference,
    };
    let made = super::engine()?.commit(&args.target, &opts).await?;
    println!("{}", made.id);
    Ok(0)
}

/// `import [-m] [-c] FILE|- [REPO[:TAG]]`: print the new image id.
pub fn import(args: ImportArgs) -> Result<u8> {
    let engine = super::engine()?;
    let opts = CommitOptions {
        message: args.message,
        author: None,
        changes: args.changes,
        reference: args.reference,
    };
    let made = if args.file == "-" {
        engine.import(std::io::stdin().lock(), &opts)?
    } else {
        let file =
            std::fs::File::open(&args.file).with_context(|| format!("open {}", args.file))?;
        engine.import(file, &opts)?
    };
    println!("{}", made.id);
    Ok(0)
}

/// `system df`: disk used by images, boxes and volumes, and how much of it
/// removing unused ones would free.
pub fn df() -> Result<u8> {
    let rows = super::engine()?.disk_usage()?;
    println!(
        "{:<16}{:<8}{:<8}{:<12}RECLAIMABLE",
        "TYPE", "TOTAL", "ACTIVE", "SIZE"
    );
    for r in rows {
        let pct = (r.reclaimable * 100).checked_div(r.size).unwrap_or(0);
        println!(
            "{:<16}{:<8}{:<8}{:<12}{} ({pct}%)",
            r.kind,
            r.total_count,
            r.active,
            human_size(r.size),
            human_size(r.reclaimable),
        );
    }
    Ok(0)
}
