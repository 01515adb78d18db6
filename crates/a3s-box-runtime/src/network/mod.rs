//! Network control: everything about box networking that is not the data
//! plane (which moves the packets: passt, or a bridge with TAPs).
//!
//! - [`store`]: named networks in `$A3S_HOME/networks/<name>/network.json`,
//!   and the built-in `default` network;
//! - [`ipam`]: per-network address leases (box id → IPv4 and MAC);
//! - [`ports`]: published ports resolved into bound host ports, `-P`;
//! - [`dns`]: the embedded DNS server boxes of a network query (names of
//!   boxes, forwarding, the egress allow-list for names);
//! - [`egress`]: a box's egress allow-list as an nftables table, fed with
//!   the addresses the DNS server allowed;
//! - [`subnet`]: IPv4 blocks and the host's routes.
//!
//! The engine uses [`store`], [`ipam`] and [`ports`] before a VM boots;
//! the network holder process (the one that owns a network's namespace)
//! runs [`dns`] and applies [`egress`]. See `docs/network-control.md`.

pub mod dataplane;
pub mod dns;
pub mod egress;
pub mod ipam;
pub mod ports;
pub mod store;
pub mod subnet;

use std::fs::File;
use std::path::{Path, PathBuf};

use a3s_box_core::Result;
use nix::fcntl::{Flock, FlockArg};

use crate::home::Home;

/// `$A3S_HOME/networks`: one directory per network.
pub fn networks_dir(home: &Home) -> PathBuf {
    home.root().join("networks")
}

/// Take an exclusive flock(2) on `path` (created if missing), blocking.
pub(crate) fn lock_exclusive(path: &Path) -> Result<Flock<File>> {
    crate::state::lock_file(path, FlockArg::LockExclusive)
}
