//! `commit`, `import` and `system df`.

use std::collections::BTreeSet;

use a3s_box_core::status::BoxStatus;
use a3s_box_runtime::home::Home;
use a3s_box_runtime::manager::{human_size, short_name, BoxManager, ImageManager};
use a3s_box_runtime::storage::commit::{self, CommitOptions};
use a3s_box_runtime::storage::volumes::{tree_bytes, VolumeStore};
use anyhow::{Context, Result};

use crate::cli_storage::{CommitArgs, ImportArgs};

/// `commit [-m] [-a] [-c] BOX [REPO[:TAG]]`: print the new image id.
pub async fn commit(args: CommitArgs) -> Result<u8> {
    let home = Home::from_env()?;
    let manager = BoxManager::new(&home);
    let record = manager.store().get(&args.target)?;
    let opts = CommitOptions {
        message: args.message,
        author: args.author,
        changes: args.changes,
        reference: args.reference,
    };
    let made = commit::commit(&home, &manager, &record, &opts).await?;
    println!("{}", made.id);
    Ok(0)
}

/// `import [-m] [-c] FILE|- [REPO[:TAG]]`: print the new image id.
pub fn import(args: ImportArgs) -> Result<u8> {
    let home = Home::from_env()?;
    let opts = CommitOptions {
        message: args.message,
        author: None,
        changes: args.changes,
        reference: args.reference,
    };
    let made = if args.file == "-" {
        commit::import(&home, std::io::stdin().lock(), &opts)?
    } else {
        let file =
            std::fs::File::open(&args.file).with_context(|| format!("open {}", args.file))?;
        commit::import(&home, file, &opts)?
    };
    println!("{}", made.id);
    Ok(0)
}

/// `system df`: disk used by images, boxes and volumes, and how much of it
/// removing unused ones would free.
pub fn df() -> Result<u8> {
    let home = Home::from_env()?;
    let manager = BoxManager::new(&home);
    let boxes = manager.store().list()?;
    let images = ImageManager::new(&home)?.list()?;
    let used: BTreeSet<String> = boxes
        .iter()
        .filter_map(|b| b.config.options.image.as_deref())
        .map(short_name)
        .collect();
    let mut ids = BTreeSet::new();
    let (mut image_bytes, mut image_free, mut active_images) = (0, 0, 0);
    for image in &images {
        if !ids.insert(image.id.clone()) {
            continue;
        }
        image_bytes += image.size;
        if used.contains(&short_name(&image.reference)) {
            active_images += 1;
        } else {
            image_free += image.size;
        }
    }
    let (mut box_bytes, mut box_free, mut running) = (0, 0, 0);
    for b in &boxes {
        let bytes = tree_bytes(&b.dir);
        box_bytes += bytes;
        if b.state.status == BoxStatus::Running || b.state.status == BoxStatus::Paused {
            running += 1;
        } else {
            box_free += bytes;
        }
    }
    let store = VolumeStore::new(&home);
    let volumes = store.list()?;
    let (mut vol_bytes, mut vol_free, mut vol_used) = (0, 0, 0);
    for v in &volumes {
        let bytes = store.size(v);
        vol_bytes += bytes;
        if store.users(&v.name).is_empty() {
            vol_free += bytes;
        } else {
            vol_used += 1;
        }
    }
    let cache = tree_bytes(&home.root().join("cache"));
    println!(
        "{:<16}{:<8}{:<8}{:<12}RECLAIMABLE",
        "TYPE", "TOTAL", "ACTIVE", "SIZE"
    );
    let pct = |free: u64, all: u64| (free * 100).checked_div(all).unwrap_or(0);
    for (kind, total, active, size, free) in [
        ("Images", ids.len(), active_images, image_bytes, image_free),
        ("Boxes", boxes.len(), running, box_bytes, box_free),
        (
            "Local Volumes",
            volumes.len(),
            vol_used,
            vol_bytes,
            vol_free,
        ),
        ("Root cache", 0, 0, cache, cache),
    ] {
        println!(
            "{kind:<16}{total:<8}{active:<8}{:<12}{} ({}%)",
            human_size(size),
            human_size(free),
            pct(free, size)
        );
    }
    Ok(0)
}
