//! `diff` and `export`: a box's changes and its whole filesystem.

use std::io::Write;

use a3s_box_runtime::storage::helpers;
use anyhow::{Context, Result};

use crate::cli_storage::{DiffArgs, ExportArgs};

/// `diff BOX`: Docker's `A|C|D /path` lines.
pub async fn diff(args: DiffArgs) -> Result<u8> {
    let changes = super::engine()?.diff(&args.target).await?;
    let mut stdout = std::io::stdout().lock();
    for change in changes {
        writeln!(stdout, "{} {}", change.kind, change.path)?;
    }
    Ok(0)
}

/// `export [-o FILE] BOX`: a tar of the box's filesystem.
pub async fn export(args: ExportArgs) -> Result<u8> {
    let engine = super::engine()?;
    let out = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("create {}", path.display()))?;
            helpers::out(std::io::BufWriter::new(file))
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                anyhow::bail!("refusing to write a tar to a terminal: use -o FILE or a redirect");
            }
            helpers::out(std::io::stdout())
        }
    };
    engine.export(&args.target, out.clone()).await?;
    out.lock()
        .map_err(|_| anyhow::anyhow!("output lock"))?
        .flush()?;
    Ok(0)
}
