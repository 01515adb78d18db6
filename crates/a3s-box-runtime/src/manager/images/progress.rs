//! Pull progress on a terminal: one line per layer, redrawn in place.
//!
//! The registry client reports nothing while it streams, so the display watches the
//! store instead: a layer whose blob has landed is complete. The manifest is fetched
//! once more up front to learn the layers (a small request; tokens are cached).

use std::io::Write;
use std::time::Duration;

use oci_spec::image::{ImageIndex, ImageManifest};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::image::digest::Digest;
use crate::image::reference::Reference;
use crate::image::registry::{Platform, RegistryClient};
use crate::image::store::Store;

/// How often the lines are redrawn.
const REDRAW_INTERVAL: Duration = Duration::from_millis(100);
/// Hex characters of a layer digest shown (Docker shows 12).
const SHORT_DIGEST: usize = 12;

/// A running display; [`Display::finish`] draws the final state.
pub(super) struct Display {
    stop: oneshot::Sender<bool>,
    task: JoinHandle<()>,
}

struct Layer {
    digest: Digest,
    size: u64,
    existed: bool,
}

impl Display {
    /// Learn the layers and start redrawing; `None` if the manifest cannot be read
    /// (the pull itself will report why).
    pub(super) async fn start(
        client: &RegistryClient,
        store: &Store,
        reference: &Reference,
        platform: &Platform,
    ) -> Option<Self> {
        let layers = layers(client, reference, platform).await?;
        let layers: Vec<Layer> = layers
            .into_iter()
            .map(|(digest, size)| Layer {
                existed: store.has_blob(&digest, Some(size)),
                digest,
                size,
            })
            .collect();
        let store = store.clone();
        let (stop, mut stopped) = oneshot::channel::<bool>();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(REDRAW_INTERVAL);
            let mut first = true;
            loop {
                tokio::select! {
                    ok = &mut stopped => {
                        draw(&layers, &store, first, Some(ok.unwrap_or(false)));
                        return;
                    }
                    _ = tick.tick() => {
                        draw(&layers, &store, first, None);
                        first = false;
                    }
                }
            }
        });
        Some(Self { stop, task })
    }

    /// Stop redrawing and show the final state.
    pub(super) async fn finish(self, ok: bool) {
        let _ = self.stop.send(ok);
        let _ = self.task.await;
    }
}

fn draw(layers: &[Layer], store: &Store, first: bool, done: Option<bool>) {
    let mut out = String::new();
    if !first {
        out.push_str(&format!("\x1b[{}A", layers.len()));
    }
    for l in layers {
        let state = if l.existed {
            "Already exists"
        } else if store.has_blob(&l.digest, Some(l.size)) {
            "Pull complete"
        } else if done == Some(false) {
            "Failed"
        } else {
            "Downloading"
        };
        let short = &l.digest.hex()[..SHORT_DIGEST];
        let size = match state {
            "Downloading" => format!(
                "{}/{}",
                human_size(store.partial_bytes(&l.digest)),
                human_size(l.size)
            ),
            _ => human_size(l.size),
        };
        out.push_str(&format!("\r\x1b[2K{short}: {state:<14} {size}\n"));
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(out.as_bytes());
    let _ = err.flush();
}

/// Layer digests and sizes of the manifest `reference` resolves to for `platform`.
async fn layers(
    client: &RegistryClient,
    reference: &Reference,
    platform: &Platform,
) -> Option<Vec<(Digest, u64)>> {
    let mut m = client
        .manifest(reference, &reference.manifest_selector())
        .await
        .ok()?;
    if m.is_index() {
        let index = ImageIndex::from_reader(m.bytes.as_slice()).ok()?;
        let chosen = index.manifests().iter().find(|d| {
            d.platform().as_ref().is_some_and(|p| {
                platform.matches(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                )
            })
        })?;
        m = client
            .manifest(reference, chosen.digest().as_ref())
            .await
            .ok()?;
    }
    let image = ImageManifest::from_reader(m.bytes.as_slice()).ok()?;
    image
        .layers()
        .iter()
        .map(|l| Some((l.digest().as_ref().parse().ok()?, l.size())))
        .collect()
}

/// `1.5MB`-style sizes (decimal units, as Docker prints them).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let text = match unit {
        0 => return format!("{bytes}B"),
        _ if value >= 100.0 => format!("{value:.0}"),
        _ if value >= 10.0 => format!("{value:.1}"),
        _ => format!("{value:.2}"),
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_500_000), "1.5MB");
        assert_eq!(human_size(7_340_032), "7.34MB");
    }
}
