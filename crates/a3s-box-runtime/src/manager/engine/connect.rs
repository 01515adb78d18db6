//! `network connect` and `network disconnect`: the box's spec gains or
//! loses the network (a stopped box takes it at its next start, as in
//! Docker); a running box's supervisor puts it on the network or takes it
//! off at once (spare NICs, see `docs/networking.md`).

use std::net::Ipv4Addr;

use a3s_box_core::event::{Event, EventAction, EventType};
use a3s_box_core::spec::{NetworkAttachment, NetworkMode, NetworkSpec};
use a3s_box_core::{BoxError, Result};

use super::Engine;
use crate::network::store::{NetworkRecord, NetworkStore, DEFAULT_NETWORK};
use crate::sandbox::rpc::Request;
use crate::state::{shim_alive, BoxRecord};

/// What `network connect` asks beyond the network and the box.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConnect {
    /// `--alias`: more names on this network.
    pub aliases: Vec<String>,
    /// `--ip`: a fixed address on it.
    pub ipv4: Option<Ipv4Addr>,
}

/// The networks `spec` joins, in order (the default network by name).
fn joined(spec: &NetworkSpec) -> Vec<NetworkAttachment> {
    match &spec.mode {
        NetworkMode::None => Vec::new(),
        NetworkMode::Default => vec![NetworkAttachment {
            name: DEFAULT_NETWORK.into(),
            aliases: Vec::new(),
            ipv4: None,
        }],
        NetworkMode::Networks(list) => list.clone(),
    }
}

/// The mode of `list` (the default network alone is `default`).
fn mode_of(list: Vec<NetworkAttachment>) -> NetworkMode {
    match list.as_slice() {
        [only]
            if only.name == DEFAULT_NETWORK && only.aliases.is_empty() && only.ipv4.is_none() =>
        {
            NetworkMode::Default
        }
        _ => NetworkMode::Networks(list),
    }
}

/// `spec` with `net` added last (`box_name` for messages).
pub fn connected(
    spec: &NetworkSpec,
    box_name: &str,
    net: &NetworkRecord,
    req: &NetworkConnect,
) -> Result<NetworkSpec> {
    if spec.mode == NetworkMode::None {
        return Err(BoxError::Invalid(format!(
            "box {box_name} runs with --network none: it has no network stack to connect (Docker's rule); create it on a network instead"
        )));
    }
    let mut list = joined(spec);
    if list.iter().any(|a| a.name == net.name) {
        return Err(BoxError::Conflict(format!(
            "box {box_name} is already on network {}",
            net.name
        )));
    }
    if net.is_default() && (!req.aliases.is_empty() || req.ipv4.is_some()) {
        return Err(BoxError::Invalid(
            "--alias and --ip apply to user-defined networks only".into(),
        ));
    }
    list.push(NetworkAttachment {
        name: net.name.clone(),
        aliases: req.aliases.clone(),
        ipv4: req.ipv4,
    });
    let mut out = spec.clone();
    out.mode = mode_of(list);
    out.validate()
        .map_err(|e| BoxError::Invalid(format!("network connect: {e}")))?;
    Ok(out)
}

/// `spec` without `net`.
pub fn disconnected(
    spec: &NetworkSpec,
    box_name: &str,
    net: &NetworkRecord,
) -> Result<NetworkSpec> {
    let mut list = joined(spec);
    let Some(at) = list.iter().position(|a| a.name == net.name) else {
        return Err(BoxError::Conflict(format!(
            "box {box_name} is not on network {}",
            net.name
        )));
    };
    if list.len() == 1 {
        // Stricter than Docker, which leaves a box with no network: a spec
        // says `--network none` or names at least one.
        return Err(BoxError::Invalid(format!(
            "network {} is the only network of box {box_name}: connect it to another one first (or recreate it with --network none)",
            net.name
        )));
    }
    list.remove(at);
    let mut out = spec.clone();
    out.mode = mode_of(list);
    Ok(out)
}

impl Engine {
    /// `network connect NET BOX`: a running box joins at once; a created
    /// or stopped one at its next start.
    pub async fn network_connect(
        &self,
        net_key: &str,
        box_key: &str,
        req: NetworkConnect,
    ) -> Result<()> {
        let change =
            |s: &NetworkSpec, name: &str, net: &NetworkRecord| connected(s, name, net, &req);
        self.change_network(net_key, box_key, EventAction::Connect, change)
            .await
    }

    /// `network disconnect NET BOX`.
    pub async fn network_disconnect(
        &self,
        net_key: &str,
        box_key: &str,
        _force: bool,
    ) -> Result<()> {
        self.change_network(net_key, box_key, EventAction::Disconnect, disconnected)
            .await
    }

    /// Connect (`action` `Connect`) or disconnect the box to or from the
    /// network: `change` makes the box's network spec from a spec, the
    /// box's name and the network, for the running box and for the stored
    /// spec alike.
    async fn change_network(
        &self,
        net_key: &str,
        box_key: &str,
        action: EventAction,
        change: impl Fn(&NetworkSpec, &str, &NetworkRecord) -> Result<NetworkSpec>,
    ) -> Result<()> {
        let net = NetworkStore::new(&self.home).get(net_key)?;
        let record = self.get(box_key)?;
        refuse_pods(&record)?;
        let name = record.config.name.clone();
        let spec = change(&record.config.spec.sandbox.network, &name, &net)?;
        let network = net.name.clone();
        let live = if action == EventAction::Connect {
            crate::network::dataplane::check_spec(&self.config, &spec)?;
            Request::NetworkConnect { network, spec }
        } else {
            Request::NetworkDisconnect { network, spec }
        };
        self.edit_network(&record, live, |s| change(s, &name, &net))
            .await?;
        self.record_network_event(action, &net, &record);
        Ok(())
    }

    /// Tell the box's supervisor (if it has one: it runs the box now, or
    /// will restart it), then write the spec: `edit` applied to the spec
    /// as stored now (another connect may have changed it meanwhile).
    async fn edit_network(
        &self,
        record: &BoxRecord,
        live: Request,
        edit: impl FnOnce(&NetworkSpec) -> Result<NetworkSpec>,
    ) -> Result<()> {
        if shim_alive(&record.dir) {
            match self.boxes.client(record).await {
                Ok(mut client) => {
                    client.call(live).await?;
                }
                // It ended meanwhile: the spec is all there is.
                Err(_) if !shim_alive(&record.dir) => {}
                Err(e) => return Err(e),
            }
        }
        self.boxes.store().update_spec(record, |s| {
            s.sandbox.network = edit(&s.sandbox.network)?;
            Ok(())
        })
    }

    fn record_network_event(&self, action: EventAction, net: &NetworkRecord, record: &BoxRecord) {
        self.events.record(
            &Event::now(EventType::Network, action, &net.id)
                .with("name", &net.name)
                .with("container", &record.config.id),
        );
    }
}

fn refuse_pods(record: &BoxRecord) -> Result<()> {
    if record.config.spec.sandbox.pod.is_some() {
        return Err(BoxError::Invalid(format!(
            "box {} is in a pod: its containers share the pod's networks (set them at pod create)",
            record.config.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::store::NetworkStore;

    fn nets() -> (tempfile::TempDir, NetworkRecord, NetworkRecord) {
        let dir = tempfile::tempdir().unwrap();
        let store = NetworkStore::at(dir.path());
        let default = store.default_network().unwrap();
        let meet = store
            .create(crate::network::store::NetworkCreate {
                name: "meet".into(),
                ..Default::default()
            })
            .unwrap();
        (dir, default, meet)
    }

    #[test]
    fn connect_appends_and_disconnect_removes() {
        let (_d, default, meet) = nets();
        let spec = NetworkSpec::default();
        let req = NetworkConnect {
            aliases: vec!["web".into()],
            ipv4: None,
        };
        let both = connected(&spec, "b", &meet, &req).unwrap();
        let NetworkMode::Networks(list) = &both.mode else {
            panic!("{both:?}")
        };
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "default");
        assert_eq!(
            (list[1].name.as_str(), list[1].aliases.as_slice()),
            ("meet", &["web".to_string()][..])
        );
        let again = connected(&both, "b", &meet, &req).unwrap_err();
        assert_eq!(again.kind(), a3s_box_core::ErrorKind::Conflict);
        // Back to the default network alone.
        let back = disconnected(&both, "b", &meet).unwrap();
        assert_eq!(back.mode, NetworkMode::Default);
        let only = disconnected(&back, "b", &default).unwrap_err();
        assert!(only.to_string().contains("only network"), "{only}");
        let not_on = disconnected(&back, "b", &meet).unwrap_err();
        assert!(
            not_on.to_string().contains("not on network meet"),
            "{not_on}"
        );
        // Leaving the default network keeps the named one.
        let named = disconnected(&both, "b", &default).unwrap();
        assert!(
            matches!(&named.mode, NetworkMode::Networks(l) if l.len() == 1 && l[0].name == "meet")
        );
    }

    #[test]
    fn none_and_default_aliases_are_refused() {
        let (_d, default, meet) = nets();
        let none = NetworkSpec {
            mode: NetworkMode::None,
            ..NetworkSpec::default()
        };
        let e = connected(&none, "b", &meet, &NetworkConnect::default()).unwrap_err();
        assert!(e.to_string().contains("--network none"), "{e}");
        let on_meet = connected(
            &NetworkSpec::default(),
            "b",
            &meet,
            &NetworkConnect::default(),
        )
        .and_then(|s| disconnected(&s, "b", &default))
        .unwrap();
        let e = connected(
            &on_meet,
            "b",
            &default,
            &NetworkConnect {
                aliases: vec!["x".into()],
                ipv4: None,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("user-defined networks only"), "{e}");
        let bad = NetworkConnect {
            aliases: vec!["bad name".into()],
            ipv4: None,
        };
        assert!(connected(&NetworkSpec::default(), "b", &meet, &bad).is_err());
    }
}
