//! `network create|ls|inspect|rm|prune|connect|disconnect`: parse →
//! engine → render.

use std::net::Ipv4Addr;

use a3s_box_core::spec::{parse_egress, parse_labels, Cidr};
use a3s_box_runtime::manager::{NetworkConnect, NetworkCreate};
use anyhow::{bail, Result};

use crate::cli::Format;
use crate::cli_network::NetworkCommand;

/// Run one `network` verb.
pub fn dispatch(command: NetworkCommand) -> Result<u8> {
    let engine = super::engine()?;
    match command {
        NetworkCommand::Create(a) => {
            if a.driver != "bridge" {
                bail!(
                    "network driver {:?} is not supported: the only driver is bridge",
                    a.driver
                );
            }
            let subnet = a
                .subnet
                .as_deref()
                .map(|s| {
                    s.parse::<Cidr>()
                        .map_err(|e| anyhow::anyhow!("invalid --subnet {s:?}: {}", e.message))
                })
                .transpose()?;
            let gateway = ipv4_flag("--gateway", a.gateway.as_deref(), "an IPv4 address")?;
            let egress = a
                .egress_allow
                .iter()
                .map(|r| parse_egress(r))
                .collect::<Result<Vec<_>, _>>()?;
            let view = engine.network_create(NetworkCreate {
                name: a.name,
                subnet,
                gateway,
                internal: a.internal,
                labels: parse_labels(&a.labels)?,
                egress,
            })?;
            println!("{}", view.id);
            Ok(0)
        }
        NetworkCommand::Ls(a) => {
            let all = engine.network_list()?;
            match (a.quiet, a.format) {
                (true, _) => all.iter().for_each(|n| println!("{}", n.name)),
                (false, Format::Json) => println!("{}", serde_json::to_string_pretty(&all)?),
                (false, Format::Table) => {
                    println!(
                        "{:<14}{:<20}{:<10}{:<18}{:<16}INTERNAL",
                        "NETWORK ID", "NAME", "DRIVER", "SUBNET", "GATEWAY"
                    );
                    for n in &all {
                        let ipam = n.ipam.config.first();
                        println!(
                            "{:<14}{:<20}{:<10}{:<18}{:<16}{}",
                            &n.id[..12],
                            n.name,
                            n.driver,
                            ipam.map_or("", |c| c.subnet.as_str()),
                            ipam.map_or("", |c| c.gateway.as_str()),
                            n.internal
                        );
                    }
                }
            }
            Ok(0)
        }
        NetworkCommand::Inspect(a) => {
            let views = a
                .names
                .iter()
                .map(|n| engine.network_inspect(n))
                .collect::<a3s_box_core::Result<Vec<_>>>()?;
            println!("{}", serde_json::to_string_pretty(&views)?);
            Ok(0)
        }
        NetworkCommand::Rm(a) => {
            let mut failed = false;
            for name in &a.names {
                match engine.network_remove(name) {
                    Ok(_) => println!("{name}"),
                    Err(e) => {
                        eprintln!("a3s-box: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { super::EXIT_BOX_ERROR } else { 0 })
        }
        NetworkCommand::Connect(a) => {
            let ipv4 = ipv4_flag("--ip", a.ip.as_deref(), "an IPv4 address of the network")?;
            let req = NetworkConnect {
                aliases: a.aliases,
                ipv4,
            };
            crate::block_on(|| engine.network_connect(&a.network, &a.r#box, req))??;
            Ok(0)
        }
        NetworkCommand::Disconnect(a) => {
            crate::block_on(|| engine.network_disconnect(&a.network, &a.r#box, a.force))??;
            Ok(0)
        }
        NetworkCommand::Prune(_) => {
            let removed = engine.network_prune()?;
            println!("Deleted Networks:");
            removed.iter().for_each(|n| println!("{n}"));
            Ok(0)
        }
    }
}

/// `value` of the IPv4 flag `flag`, if given; `hint` says what to give.
fn ipv4_flag(flag: &str, value: Option<&str>, hint: &str) -> Result<Option<Ipv4Addr>> {
    value
        .map(|v| {
            v.parse()
                .map_err(|_| anyhow::anyhow!("invalid {flag} {v:?}: use {hint}"))
        })
        .transpose()
}
