//! `system df`: disk used by images, boxes, volumes and caches, and how much
//! removing unused ones would free.

use std::collections::BTreeSet;

use a3s_box_core::status::BoxStatus;
use a3s_box_core::Result;
use serde::Serialize;

use crate::config::EngineConfig;
use crate::manager::{short_name, ImageManager};
use crate::state::BoxStore;
use crate::storage::volumes::{tree_bytes, VolumeStore};

/// One line of `system df`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskUsageRow {
    /// `Images`, `Boxes`, `Local Volumes`, `Root cache`.
    #[serde(rename = "Type")]
    pub kind: &'static str,
    /// How many there are.
    pub total_count: usize,
    /// How many are in use.
    pub active: usize,
    /// Bytes used.
    pub size: u64,
    /// Bytes removing the unused ones would free.
    pub reclaimable: u64,
}

/// Compute `system df` for `config`'s home.
pub fn disk_usage(config: &EngineConfig) -> Result<Vec<DiskUsageRow>> {
    let home = &config.home_dir();
    let boxes = BoxStore::new(home).list()?;
    let images = ImageManager::new(config)?.list()?;
    let used: BTreeSet<String> = boxes
        .iter()
        .filter_map(|b| match &b.config.container().root {
            a3s_box_core::spec::RootSource::Image { reference, .. } => Some(short_name(reference)),
            a3s_box_core::spec::RootSource::Dir { .. } => None,
        })
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
        if matches!(b.state.status, BoxStatus::Running | BoxStatus::Paused) {
            running += 1;
        } else {
            box_free += bytes;
        }
    }
    let store = VolumeStore::new(home);
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
    let row = |kind, total_count, active, size, reclaimable| DiskUsageRow {
        kind,
        total_count,
        active,
        size,
        reclaimable,
    };
    Ok(vec![
        row("Images", ids.len(), active_images, image_bytes, image_free),
        row("Boxes", boxes.len(), running, box_bytes, box_free),
        row(
            "Local Volumes",
            volumes.len(),
            vol_used,
            vol_bytes,
            vol_free,
        ),
        row("Root cache", 0, 0, cache, cache),
    ])
}
