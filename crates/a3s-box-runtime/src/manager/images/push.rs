//! `push`: a local image to a registry, under its own name or another one.

use super::{ImageError, ImageManager, Result};
use crate::image::reference::Reference;
use crate::image::registry::push::{push_image, Pushed};

impl ImageManager {
    /// Push the image `key` names to `dest` (default: the name itself). Credentials as
    /// for `pull` (`login`, then Docker's config).
    pub async fn push(&self, key: &str, dest: Option<&str>) -> Result<Pushed> {
        let found = self.find(key)?;
        let dest: Reference = match (dest, found.by_name) {
            (Some(d), _) => d.parse()?,
            (None, true) => key.parse()?,
            (None, false) => {
                return Err(ImageError::NotFound {
                    reference: format!("{key} (an image id: name a destination to push to)"),
                })
            }
        };
        let client = self.client()?;
        let credentials = self.credentials();
        let _gc = self.lock(false)?;
        Ok(push_image(
            &client,
            Some(&credentials),
            &self.store,
            &found.digest,
            &dest,
        )
        .await?)
    }
}
