//! What a box's supervisor and its network's helper (`a3s-box-netd`) say to
//! each other on `networks/<name>/netd.sock` (a [`super::seqpacket`]
//! socket): one JSON message per request and per reply, descriptors
//! attached where a reply carries them.
//!
//! - [`Request::Attach`] → [`Reply::Attached`] with the box's TAP descriptor.
//!   The connection then stays open for the box's life: when it closes
//!   (the supervisor ended, or dropped its network), the helper detaches
//!   the box (address, TAP rules, DNS records, egress table). When the
//!   helper dies, the supervisor sees the connection end.
//! - [`Request::Connect`] → [`Reply::Connected`] with a socket connected
//!   from inside the network's namespace to the box's port (one per
//!   published-port connection or UDP flow); the connection is then closed.
//! - [`Request::Rename`] → [`Reply::Renamed`]: the box's DNS name on the
//!   network follows `rename` (any client may ask; the connection is then
//!   closed).
//! - Spare NICs (`network connect` of a running box, see
//!   `docs/networking.md`): an attach may ask for spare TAPs (made down, off
//!   the bridge, their descriptors after the box's TAP); they stay parked in
//!   the first network's namespace. [`Request::Namespace`] →
//!   [`Reply::Namespace`] with the helper's namespace descriptor;
//!   [`Request::Lend`] (with a namespace descriptor) moves a parked spare
//!   into that namespace under the box's TAP name → [`Reply::Lent`]; an
//!   attach with `adopt` takes that TAP instead of making one; on an attach
//!   connection, [`Request::Release`] (with the parking namespace's
//!   descriptor) detaches the box and parks its TAP again →
//!   [`Reply::Released`].
//! - Any error → [`Reply::Error`] (the error's kind and message).

use std::net::{IpAddr, Ipv4Addr};

use a3s_box_core::spec::{EgressRule, MacAddr, Protocol};
use a3s_box_core::{BoxError, ErrorKind};
use serde::{Deserialize, Serialize};

/// Bumped on any change: a helper and a supervisor of different versions
/// refuse each other (the helper of a network restarts with its last box).
pub const PROTOCOL_VERSION: u32 = 3;
/// The helper's socket in the network's directory.
pub const NETD_SOCKET: &str = "netd.sock";
/// The helper holds this flock(2) for its whole life: one helper per network.
pub const NETD_LOCK: &str = "netd.lock";
/// The helper's diagnostics.
pub const NETD_LOG: &str = "netd.log";
/// The uplink's address in a network's namespace (pasta's `-a`).
pub const UPLINK_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 2);
/// The uplink's gateway (pasta's `-g`), which pasta maps to the host's
/// loopback: `host-gateway`. Link-local, so it collides with no network of
/// the host and no wider `--egress-allow` block allows it by accident.
pub const HOST_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// Prefix length of the uplink's link.
pub const UPLINK_PREFIX: u8 = 30;
/// MTU of the bridge, every TAP and every box interface (finding 2, 3 of
/// `docs/networking.md`: large frames through pasta).
pub const NETWORK_MTU: u32 = 65520;

/// A supervisor's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Put a box on the network.
    Attach(AttachRequest),
    /// Connect to a port of an attached box.
    Connect(ConnectRequest),
    /// An attached box has a new name.
    Rename(RenameRequest),
    /// The helper's network namespace.
    Namespace(NamespaceRequest),
    /// Move a parked spare TAP into the namespace sent with the request.
    Lend(LendRequest),
    /// On an attach connection: detach the box and park its TAP in the
    /// namespace sent with the request.
    Release(ReleaseRequest),
}

/// [`Request::Namespace`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceRequest {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
}

/// [`Request::Lend`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LendRequest {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The box the spare belongs to.
    pub box_id: String,
    /// The spare's name here ([`spare_name`]).
    pub spare: String,
    /// Its name in the other namespace ([`tap_name`]).
    pub name: String,
}

/// [`Request::Release`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The TAP's name once parked ([`spare_name`]).
    pub spare: String,
}

/// Prefix of every box TAP's name (`a3s` + 12 hex digits of the box id).
pub const TAP_PREFIX: &str = "a3s";
/// Prefix of a parked spare TAP's name (`a3p` + 11 hex digits of the box
/// id + the NIC's slot in hex): never guarded, never on a bridge.
pub const SPARE_PREFIX: &str = "a3p";

fn id_hex(box_id: &str, len: usize) -> String {
    box_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(len)
        .collect()
}

/// The name of a box's TAP in a network's namespace.
pub fn tap_name(box_id: &str) -> String {
    format!("{TAP_PREFIX}{}", id_hex(box_id, 12))
}

/// The name of the box's NIC `slot` (0-15) while it is parked as a spare.
pub fn spare_name(box_id: &str, slot: usize) -> String {
    format!("{SPARE_PREFIX}{}{:x}", id_hex(box_id, 11), slot % 16)
}

/// Whether `name` is a spare name of `box_id`.
pub fn is_spare_of(box_id: &str, name: &str) -> bool {
    let prefix = format!("{SPARE_PREFIX}{}", id_hex(box_id, 11));
    name.len() == prefix.len() + 1 && name.starts_with(&prefix)
}

/// [`Request::Rename`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The box (attached to this network).
    pub box_id: String,
    /// Its new name.
    pub name: String,
}

/// [`Request::Attach`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The box's full id.
    pub box_id: String,
    /// Its name (a DNS name on named networks).
    pub name: String,
    /// `--network-alias`es on this network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--ip` (`None`: the next free address).
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
    /// `--mac-address` (`None`: derived from the address).
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// The box's allow-list (its rules and those of every network it
    /// joins); `None`: the box may connect anywhere.
    #[serde(default)]
    pub egress: Option<EgressRequest>,
    /// `--dns`: where its other names are forwarded (empty: the host's
    /// name servers).
    #[serde(default)]
    pub dns_servers: Vec<IpAddr>,
    /// Every network the box joins is `--internal`: names of boxes only,
    /// nothing is forwarded.
    #[serde(default)]
    pub internal_only: bool,
    /// Spare TAPs to make with these names ([`spare_name`]), parked here.
    #[serde(default)]
    pub spares: Vec<String>,
    /// The box's TAP is already in the namespace (lent): take it rather
    /// than make one. If the attach fails it is parked again, under this
    /// name, in the namespace sent with the request.
    #[serde(default)]
    pub adopt: Option<String>,
}

/// A box's allow-list, as the helper builds its table and DNS filter from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRequest {
    /// The rules.
    pub rules: Vec<EgressRule>,
    /// `--add-host` names with their addresses (`host-gateway` resolved).
    #[serde(default)]
    pub hosts: Vec<(String, IpAddr)>,
}

/// [`Request::Connect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The box (attached to this network).
    pub box_id: String,
    /// Its port.
    pub port: u16,
    /// TCP (a connected stream) or UDP (a connected datagram socket).
    pub protocol: Protocol,
}

/// The helper's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// The box is on the network; its TAP descriptor is attached.
    Attached(Attachment),
    /// The socket is attached.
    Connected,
    /// The box answers to its new name.
    Renamed,
    /// The namespace's descriptor is attached.
    Namespace,
    /// The spare is in the other namespace.
    Lent,
    /// The box is off the network; its TAP is parked.
    Released,
    /// The request failed.
    Error(WireError),
}

/// A box's place on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// The network's name.
    pub network: String,
    /// The network's id.
    pub network_id: String,
    /// The box's address.
    pub ipv4: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix_len: u8,
    /// The box's MAC on this network.
    pub mac: MacAddr,
    /// The network's gateway (bridge address): default route, DNS server.
    pub gateway: Ipv4Addr,
    /// MTU of the box's interface.
    pub mtu: u32,
    /// The address at which the box reaches the host's loopback
    /// (`host-gateway`); `None` on `--internal` networks, or when the
    /// engine maps no host gateway.
    pub host_gateway: Option<Ipv4Addr>,
    /// No egress beyond the network.
    pub internal: bool,
    /// The TAP's name in the network's namespace.
    pub tap: String,
    /// The helper's pid.
    pub netd_pid: u32,
    /// The spare TAPs made (their descriptors follow the box's TAP's).
    #[serde(default)]
    pub spares: Vec<String>,
}

/// An error on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireError {
    /// The error's kind.
    pub kind: WireErrorKind,
    /// Its message.
    pub message: String,
}

/// [`ErrorKind`] on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum WireErrorKind {
    Invalid,
    NotFound,
    Conflict,
    NotRunning,
    Unavailable,
    Internal,
}

impl From<&BoxError> for WireError {
    fn from(e: &BoxError) -> Self {
        let kind = match e.kind() {
            ErrorKind::Invalid => WireErrorKind::Invalid,
            ErrorKind::NotFound => WireErrorKind::NotFound,
            ErrorKind::Conflict => WireErrorKind::Conflict,
            ErrorKind::NotRunning => WireErrorKind::NotRunning,
            ErrorKind::Unavailable => WireErrorKind::Unavailable,
            _ => WireErrorKind::Internal,
        };
        WireError {
            kind,
            message: e.to_string(),
        }
    }
}

impl From<WireError> for BoxError {
    fn from(e: WireError) -> Self {
        match e.kind {
            WireErrorKind::Invalid => BoxError::Invalid(e.message),
            WireErrorKind::Conflict => BoxError::Conflict(e.message),
            WireErrorKind::NotRunning => BoxError::NotRunning(e.message),
            WireErrorKind::NotFound | WireErrorKind::Unavailable => {
                BoxError::Unavailable(e.message)
            }
            WireErrorKind::Internal => {
                BoxError::io("network helper", std::io::Error::other(e.message))
            }
        }
    }
}

/// Encode a message.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Plain data with string keys: serialization cannot fail.
    serde_json::to_vec(message).unwrap_or_default()
}

/// Decode a message.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> std::io::Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip() {
        let req = Request::Attach(AttachRequest {
            version: PROTOCOL_VERSION,
            box_id: "a".repeat(64),
            name: "web".into(),
            aliases: vec!["www".into()],
            ipv4: Some(Ipv4Addr::new(10, 89, 0, 9)),
            mac: None,
            egress: Some(EgressRequest {
                rules: vec!["api.example.com:443".parse().unwrap()],
                hosts: vec![("db".into(), "169.254.1.1".parse().unwrap())],
            }),
            dns_servers: vec!["127.0.0.1".parse().unwrap()],
            internal_only: false,
            spares: vec![spare_name(&"a".repeat(64), 2)],
            adopt: None,
        });
        let bytes = encode(&req);
        assert_eq!(decode::<Request>(&bytes).unwrap(), req);
        let err = BoxError::Conflict("address in use".into());
        let reply = Reply::Error(WireError::from(&err));
        let back: Reply = decode(&encode(&reply)).unwrap();
        let Reply::Error(e) = back else { panic!() };
        let e = BoxError::from(e);
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(e.to_string(), "address in use");
        assert!(decode::<Request>(br#"{"attach":{"version":1}}"#).is_err());
    }

    #[test]
    fn tap_and_spare_names_fit_ifnamsiz_and_are_told_apart() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(tap_name(&id), "a3s0123456789ab");
        assert_eq!(spare_name(&id, 10), "a3p0123456789aa");
        assert!(spare_name(&id, 15).len() < 16);
        assert!(is_spare_of(&id, &spare_name(&id, 3)));
        assert!(!is_spare_of(&id, &tap_name(&id)));
        assert!(!is_spare_of(&"f".repeat(64), &spare_name(&id, 3)));
    }
}
