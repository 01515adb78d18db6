//! `network connect` and `network disconnect` of a standalone box: the
//! actor keeps the new spec for the box's next boots and, while its VM
//! runs, has the VM's networks join or leave the network (spare NICs,
//! `network::dataplane`) and the guest configure or deconfigure the
//! interface; the client is answered once the guest has.

use a3s_box_core::guest::message::{GuestMessage, HostMessage, MacAddr as GuestMac, Message};
use a3s_box_core::guest::Frame;
use a3s_box_core::spec::NetworkSpec;
use a3s_box_core::BoxError;
use tokio::sync::oneshot;

use super::{Actor, Outcome, Vm};
use crate::sandbox::rpc::Reply;

impl Actor {
    /// `network connect` (`join`) or `network disconnect`.
    pub(super) async fn network_change(
        &mut self,
        network: String,
        spec: NetworkSpec,
        join: bool,
        reply: oneshot::Sender<Outcome>,
    ) {
        if self.is_pod() {
            let e = BoxError::Invalid(
                "a pod's containers share the pod's networks (set them at pod create)".into(),
            );
            let _ = reply.send(Outcome::Error(e));
            return;
        }
        if self.paused {
            let e = BoxError::Conflict(
                "the box is paused: its guest cannot configure an interface; unpause it first"
                    .into(),
            );
            let _ = reply.send(Outcome::Error(e));
            return;
        }
        let engine = self.engine.clone();
        let live = match &mut self.vm {
            Vm::Up { running, .. } => match running.companions.network() {
                Some(net) => Some(match join {
                    true => net
                        .connect(&engine, &spec, &network)
                        .await
                        .map(|iface| (iface.mac, HostMessage::ConfigureInterface(iface))),
                    false => net.disconnect(&network).await.map(|mac| {
                        let mac = GuestMac(mac.0);
                        (mac, HostMessage::DeconfigureInterface { mac })
                    }),
                }),
                None => Some(Err(BoxError::Unavailable(
                    "this sandbox's VMM has no network data plane".into(),
                ))),
            },
            Vm::Booting { .. } | Vm::Retiring { .. } => Some(Err(BoxError::Unavailable(
                "the box is starting or stopping: try again once it runs or has stopped".into(),
            ))),
            Vm::Down => None,
        };
        let sent = match live {
            None => None,
            Some(Err(e)) => {
                let _ = reply.send(Outcome::Error(e));
                return;
            }
            Some(Ok(message)) => Some(message),
        };
        self.keep_network_spec(spec);
        match sent {
            None => {
                let _ = reply.send(Outcome::Reply(Reply::Ok));
            }
            Some((mac, message)) => {
                self.net_waiters.push((mac, reply));
                self.send_frame(&Frame::Control(Message::Host(message)))
                    .await;
            }
        }
    }

    /// Later boots of the box boot with `spec`.
    fn keep_network_spec(&mut self, spec: NetworkSpec) {
        if let Some(c) = self.containers.values_mut().next() {
            if let Some((_, current)) = &mut c.setup.options.network {
                *current = spec;
            }
        }
    }

    /// The guest answered a `ConfigureInterface`/`DeconfigureInterface`.
    pub(super) fn on_interface(&mut self, message: GuestMessage) {
        let (mac, outcome) = match message {
            GuestMessage::InterfaceConfigured { mac } => (mac, Ok(Reply::Ok)),
            GuestMessage::InterfaceFailed { mac, reason } => (
                mac,
                Err(BoxError::Guest(format!("interface {mac}: {reason}"))),
            ),
            _ => return,
        };
        let Some(at) = self.net_waiters.iter().position(|(m, _)| *m == mac) else {
            return;
        };
        let (_, reply) = self.net_waiters.remove(at);
        let _ = reply.send(match outcome {
            Ok(r) => Outcome::Reply(r),
            Err(e) => Outcome::Error(e),
        });
    }
}
