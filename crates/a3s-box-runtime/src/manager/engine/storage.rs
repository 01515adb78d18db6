//! Storage through the engine: volumes, a box's changes (`diff`), its
//! filesystem (`export`), images of it (`commit`, `import`), `system df`.

use std::collections::BTreeMap;
use std::io::Read;

use a3s_box_core::event::{Event, EventAction, EventType};
use a3s_box_core::guest::builtin::ROOT_TAR;
use a3s_box_core::Result;
use serde::Serialize;

use super::Engine;
use crate::manager::views::df::{disk_usage, DiskUsageRow};
use crate::storage::commit::{self, CommitOptions, NewImage};
use crate::storage::helpers::{self, run_helper, Out};
use crate::storage::volumes::{Volume, VolumeStore};

/// A volume as Docker's `volume inspect` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeView {
    /// Its name.
    pub name: String,
    /// Always `local`.
    pub driver: &'static str,
    /// The host directory holding its files.
    pub mountpoint: std::path::PathBuf,
    /// When it was made.
    pub created_at: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Always `local`.
    pub scope: &'static str,
    /// Made up for one box.
    pub anonymous: bool,
    /// Boxes that mount it.
    pub used_by: Vec<String>,
}

impl Engine {
    fn volumes(&self) -> VolumeStore {
        VolumeStore::new(&self.home)
    }

    fn volume_view(&self, store: &VolumeStore, v: &Volume) -> VolumeView {
        VolumeView {
            name: v.name.clone(),
            driver: "local",
            mountpoint: v.mountpoint.clone(),
            created_at: v.created.clone(),
            labels: v.labels.clone(),
            scope: "local",
            anonymous: v.anonymous,
            used_by: store.users(&v.name),
        }
    }

    /// Create volume `name` (a made-up one when `None`); an existing one is
    /// returned as it is, as Docker does.
    pub fn volume_create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<VolumeView> {
        let (name, anonymous) = match name {
            Some(n) => (n.to_string(), false),
            None => (
                crate::manager::new_box_id()
                    .map_err(|e| a3s_box_core::BoxError::io("generate a volume name", e))?,
                true,
            ),
        };
        let store = self.volumes();
        let v = store.ensure(&name, anonymous, labels)?;
        self.events
            .record(&Event::now(EventType::Volume, EventAction::Create, &v.name));
        Ok(self.volume_view(&store, &v))
    }

    /// Every volume, by name.
    pub fn volume_list(&self) -> Result<Vec<VolumeView>> {
        let store = self.volumes();
        Ok(store
            .list()?
            .iter()
            .map(|v| self.volume_view(&store, v))
            .collect())
    }

    /// One volume.
    pub fn volume_inspect(&self, name: &str) -> Result<VolumeView> {
        let store = self.volumes();
        let v = store.get(name)?;
        Ok(self.volume_view(&store, &v))
    }

    /// Remove a volume (refused while a box uses it, unless `force`).
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        self.volumes().remove(name, force)?;
        self.events
            .record(&Event::now(EventType::Volume, EventAction::Destroy, name));
        Ok(())
    }

    /// Remove unused volumes (anonymous ones only unless `all`); the names
    /// removed and the bytes freed.
    pub fn volume_prune(&self, all: bool) -> Result<(Vec<String>, u64)> {
        let store = self.volumes();
        let before: u64 = store.list()?.iter().map(|v| store.size(v)).sum();
        let removed = store.prune(!all)?;
        let after: u64 = store.list()?.iter().map(|v| store.size(v)).sum();
        for name in &removed {
            self.events
                .record(&Event::now(EventType::Volume, EventAction::Destroy, name));
        }
        Ok((removed, before.saturating_sub(after)))
    }

    /// The box's changes to its image (Docker's `A|C|D /path`).
    pub async fn diff(&self, key: &str) -> Result<Vec<crate::storage::helpers::Change>> {
        let record = self.get(key)?;
        helpers::diff(&self.boxes, &record).await
    }

    /// A tar of the box's whole filesystem, to `out`.
    pub async fn export(&self, key: &str, out: Out) -> Result<()> {
        let record = self.get(key)?;
        run_helper(&self.boxes, &record, ROOT_TAR, out).await
    }

    /// An image of the box: its changes as one new layer on its image.
    pub async fn commit(&self, key: &str, opts: &CommitOptions) -> Result<NewImage> {
        let record = self.get(key)?;
        commit::commit(&self.config, &self.boxes, &record, opts).await
    }

    /// A one-layer image of a tarball (plain, gzip or zstd).
    pub fn import(&self, input: impl Read, opts: &CommitOptions) -> Result<NewImage> {
        commit::import(&self.config, input, opts)
    }

    /// `system df`.
    pub fn disk_usage(&self) -> Result<Vec<DiskUsageRow>> {
        disk_usage(&self.config)
    }
}
