//! `diff` and `export`: a box's changes and its whole filesystem, read by
//! guest-init's layer helpers (in the running box, or in a short VM of a
//! stopped one).

use std::io::Write;

use a3s_box_core::guest::builtin::ROOT_TAR;
use a3s_box_runtime::home::Home;
use a3s_box_runtime::manager::BoxManager;
use a3s_box_runtime::storage::helpers::{self, run_helper};
use anyhow::{Context, Result};

use crate::cli_storage::{DiffArgs, ExportArgs};

/// `diff BOX`: Docker's `A|C|D /path` lines.
pub async fn diff(args: DiffArgs) -> Result<u8> {
    let home = Home::from_env()?;
    let manager = BoxManager::new(&home);
    let record = manager.store().get(&args.target)?;
    let mut stdout = std::io::stdout().lock();
    for change in helpers::diff(&manager, &record).await? {
        writeln!(stdout, "{} {}", change.kind, change.path)?;
    }
    Ok(0)
}

/// `export [-o FILE] BOX`: a tar of the box's filesystem.
pub async fn export(args: ExportArgs) -> Result<u8> {
    let home = Home::from_env()?;
    let manager = BoxManager::new(&home);
    let record = manager.store().get(&args.target)?;
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
    run_helper(&manager, &record, ROOT_TAR, out.clone()).await?;
    out.lock()
        .map_err(|_| anyhow::anyhow!("output lock"))?
        .flush()?;
    Ok(0)
}
