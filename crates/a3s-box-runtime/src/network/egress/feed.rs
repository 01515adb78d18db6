//! [`FirewallFeed`]: the DNS server's [`DnsObserver`] that adds each
//! allowed answer to the asking box's [`Firewall`], and hands denied names
//! to the owner (who writes them to the box's log).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::Firewall;
use crate::network::dns::{AllowedAnswer, DeniedQuery, DnsObserver};

type DeniedSink = Box<dyn Fn(&DeniedQuery) + Send + Sync>;

/// Routes DNS answers to the firewalls of the boxes that asked.
pub struct FirewallFeed {
    boxes: RwLock<HashMap<String, Arc<Firewall>>>,
    fallback: Option<Arc<Firewall>>,
    on_denied: Option<DeniedSink>,
}

impl std::fmt::Debug for FirewallFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirewallFeed")
            .field("boxes", &self.boxes)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl FirewallFeed {
    /// A feed with no firewall yet; answers for clients not registered go
    /// to `fallback` (the firewall of a one-box namespace), if any.
    pub fn new(fallback: Option<Arc<Firewall>>) -> Self {
        FirewallFeed {
            boxes: RwLock::new(HashMap::new()),
            fallback,
            on_denied: None,
        }
    }

    /// Call `sink` for every denied name (besides a log line).
    pub fn on_denied(mut self, sink: impl Fn(&DeniedQuery) + Send + Sync + 'static) -> Self {
        self.on_denied = Some(Box::new(sink));
        self
    }

    /// Answers for `box_id` go to `firewall`.
    pub fn insert(&self, box_id: &str, firewall: Arc<Firewall>) {
        self.boxes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(box_id.to_string(), firewall);
    }

    /// Forget `box_id`'s firewall.
    pub fn remove(&self, box_id: &str) {
        self.boxes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(box_id);
    }

    fn firewall(&self, box_id: Option<&str>) -> Option<Arc<Firewall>> {
        let boxes = self.boxes.read().unwrap_or_else(|e| e.into_inner());
        box_id
            .and_then(|id| boxes.get(id).cloned())
            .or_else(|| self.fallback.clone())
    }
}

#[async_trait]
impl DnsObserver for FirewallFeed {
    async fn allowed(&self, answer: &AllowedAnswer) {
        let Some(firewall) = self.firewall(answer.box_id.as_deref()) else {
            return;
        };
        if let Err(e) = firewall
            .allow_resolved_async(&answer.addrs, &answer.ports)
            .await
        {
            tracing::warn!(
                "egress: could not allow {} ({:?}) in {}: {e}",
                answer.name,
                answer.addrs,
                firewall.table()
            );
        }
    }

    fn denied(&self, query: &DeniedQuery) {
        tracing::info!(
            "egress: denied DNS {} {} for {}",
            query.query_type,
            query.name,
            query.box_id.as_deref().unwrap_or("unknown box"),
        );
        if let Some(sink) = &self.on_denied {
            sink(query);
        }
    }
}
