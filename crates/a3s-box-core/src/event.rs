//! Typed lifecycle events, as `docker events` shows them.
//!
//! The engine and the boxes' supervisors record every lifecycle change of a
//! box, pod, volume or network as one [`Event`]; front ends read them back
//! (the CLI's `events`, the HTTP service's `/events`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What an event is about (Docker's `Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// A box (Docker's "container").
    #[serde(alias = "box")]
    Container,
    /// A pod.
    Pod,
    /// An image.
    Image,
    /// A volume.
    Volume,
    /// A network.
    Network,
}

/// What happened (Docker's `Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    /// Made, not started.
    Create,
    /// The workload started.
    Start,
    /// The workload ended (attributes: `exitCode`).
    Die,
    /// A user stopped it.
    Stop,
    /// A signal was sent (attributes: `signal`).
    Kill,
    /// The vCPUs stopped.
    Pause,
    /// The vCPUs run again.
    Unpause,
    /// The restart policy started it again.
    Restart,
    /// It got a new name (attributes: `oldName`).
    Rename,
    /// Removed.
    Destroy,
    /// A process was started in it (attributes: `execID`).
    ExecStart,
    /// A box joined a network.
    Connect,
    /// A box left a network.
    Disconnect,
    /// The egress policy refused a connection (attributes: `destination`).
    EgressDenied,
    /// An image was pulled.
    Pull,
    /// An image was removed.
    Delete,
}

impl fmt::Display for EventAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        f.write_str(&text.replace('_', "-"))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventType::Container => "container",
            EventType::Pod => "pod",
            EventType::Image => "image",
            EventType::Volume => "volume",
            EventType::Network => "network",
        })
    }
}

/// One event, with Docker's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What it is about.
    #[serde(rename = "Type")]
    pub kind: EventType,
    /// What happened.
    #[serde(rename = "Action")]
    pub action: EventAction,
    /// The object.
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// When, in nanoseconds since the epoch.
    #[serde(rename = "timeNano")]
    pub time_nano: u128,
}

/// The object of an event.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Actor {
    /// Its id (a box id, a volume or network name).
    #[serde(rename = "ID")]
    pub id: String,
    /// Details: `name`, `image`, `exitCode`, `signal`, labels.
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    /// An event happening now.
    pub fn now(kind: EventType, action: EventAction, id: impl Into<String>) -> Self {
        let time_nano = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Event {
            kind,
            action,
            actor: Actor {
                id: id.into(),
                attributes: BTreeMap::new(),
            },
            time_nano,
        }
    }

    /// Add an attribute.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.actor.attributes.insert(key.to_string(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_dockers_shape() {
        let e = Event::now(EventType::Container, EventAction::Die, "abc").with("exitCode", "3");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["Type"], "container");
        assert_eq!(v["Action"], "die");
        assert_eq!(v["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(EventAction::ExecStart.to_string(), "exec-start");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
