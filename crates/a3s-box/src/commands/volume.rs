//! `volume create|ls|inspect|rm|prune`: parse → engine → render.

use a3s_box_runtime::manager::human_size;
use anyhow::Result;

use crate::cli::Format;
use crate::cli_storage::VolumeCommand;

/// Run one `volume` verb.
pub fn dispatch(command: VolumeCommand) -> Result<u8> {
    let engine = super::engine()?;
    match command {
        VolumeCommand::Create(a) => {
            let labels = super::run::parse_labels_flag(&a.labels)?;
            println!("{}", engine.volume_create(a.name.as_deref(), labels)?.name);
            Ok(0)
        }
        VolumeCommand::Ls(a) => {
            let all = engine.volume_list()?;
            match (a.quiet, a.format) {
                (true, _) => all.iter().for_each(|v| println!("{}", v.name)),
                (false, Format::Json) => println!("{}", serde_json::to_string_pretty(&all)?),
                (false, Format::Table) => {
                    println!("DRIVER    VOLUME NAME");
                    all.iter()
                        .for_each(|v| println!("{:<10}{}", v.driver, v.name));
                }
            }
            Ok(0)
        }
        VolumeCommand::Inspect(a) => {
            let views = a
                .names
                .iter()
                .map(|n| engine.volume_inspect(n))
                .collect::<a3s_box_core::Result<Vec<_>>>()?;
            println!("{}", serde_json::to_string_pretty(&views)?);
            Ok(0)
        }
        VolumeCommand::Rm(a) => {
            let mut failed = false;
            for name in &a.names {
                match engine.volume_remove(name, a.force) {
                    Ok(()) => println!("{name}"),
                    Err(e) => {
                        eprintln!("a3s-box: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { super::EXIT_BOX_ERROR } else { 0 })
        }
        VolumeCommand::Prune(a) => {
            let (removed, freed) = engine.volume_prune(a.all)?;
            println!("Deleted Volumes:");
            removed.iter().for_each(|n| println!("{n}"));
            println!("\nTotal reclaimed space: {}", human_size(freed));
            Ok(0)
        }
    }
}
