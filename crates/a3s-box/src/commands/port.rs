//! `port BOX [PORT[/PROTO]]`: a running box's published ports, as `docker
//! port` prints them.

use a3s_box_core::spec::Protocol;
use a3s_box_runtime::network::dataplane::state::port_lines;
use anyhow::{bail, Result};

use super::engine;
use crate::cli::PortArgs;

/// `PORT` or `PORT/PROTO`.
fn parse_port(text: &str) -> Result<(u16, Option<Protocol>)> {
    let (port, proto) = match text.split_once('/') {
        Some((p, "tcp")) => (p, Some(Protocol::Tcp)),
        Some((p, "udp")) => (p, Some(Protocol::Udp)),
        Some((_, other)) => bail!("invalid protocol {other:?} in {text:?}: use tcp or udp"),
        None => (text, None),
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((p, proto)),
        _ => bail!("invalid port {text:?}: use PORT or PORT/PROTO, as in 80/tcp"),
    }
}

/// Print the mappings; one port that is not published is an error.
pub fn run(args: PortArgs) -> Result<u8> {
    let filter = args.port.as_deref().map(parse_port).transpose()?;
    let engine = engine()?;
    let ports = engine.box_ports(&args.r#box)?;
    let lines = port_lines(&ports, filter);
    if let (true, Some((port, proto))) = (lines.is_empty(), filter) {
        let proto = proto.unwrap_or_default();
        bail!(
            "no public port '{port}/{proto}' published for {}",
            args.r#box
        );
    }
    for line in lines {
        println!("{line}");
    }
    Ok(0)
}
