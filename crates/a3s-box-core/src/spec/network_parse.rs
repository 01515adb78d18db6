//! Docker's network flag syntaxes: `-p`, `--expose`, `--add-host`, `--dns`,
//! `--network` (with `--network-alias`, `--ip`), and our `--egress-allow`.
//! Pure: names are not resolved and networks not looked up here.

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use super::network::{
    Cidr, EgressRule, EgressTarget, ExposedPort, ExtraHost, HostAddr, NetworkAttachment,
    NetworkMode, PortMapping, Protocol,
};
use super::{rules, SpecError};

const PUBLISH_SYNTAX: &str = "use [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp], as in 8080:80";

fn protocol(field: &str, spec: &str, text: &str) -> Result<Protocol, SpecError> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "sctp" => Err(SpecError::unsupported(
            field,
            spec,
            "SCTP is not supported: use tcp or udp",
        )),
        _ => Err(SpecError::invalid(
            field,
            spec,
            format!("unknown protocol {text:?}: use tcp or udp"),
        )),
    }
}

/// `PORT` or `FIRST-LAST`, each from 1 to 65535.
fn port_range(field: &str, spec: &str, text: &str, hint: &str) -> Result<(u16, u16), SpecError> {
    let one = |p: &str| -> Result<u16, SpecError> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SpecError::invalid(
                field,
                spec,
                format!("{p:?} is not a port number: {hint}"),
            ));
        }
        p.parse::<u16>().ok().filter(|n| *n != 0).ok_or_else(|| {
            SpecError::out_of_range(
                field,
                spec,
                format!("port {p} is out of range: use a port from 1 to 65535"),
            )
        })
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (one(a)?, one(b)?),
        None => {
            let p = one(text)?;
            (p, p)
        }
    };
    if first > last {
        return Err(SpecError::invalid(
            field,
            spec,
            format!("the port range {text} runs backwards: write it as {last}-{first}"),
        ));
    }
    Ok((first, last))
}

/// `-p [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]`, ports or equal-length
/// ranges (`8000-8002:80-82`), IPv6 addresses in brackets
/// (`[::1]:8080:80`); `127.0.0.1::80` and `80` leave the host port to the
/// engine. One mapping per port of a range.
///
/// Docker also takes a host range with one container port ("any free port
/// of the range"); that form is refused here.
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>, SpecError> {
    const F: &str = "--publish";
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((rest, p)) => (rest, protocol(F, spec, p)?),
        None => (spec, Protocol::Tcp),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let n = parts.len();
    let (ip, host, container) = match n {
        1 => (String::new(), "", parts[0]),
        2 => (String::new(), parts[0], parts[1]),
        _ => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
    };
    let host_ip = match ip.as_str() {
        "" => None,
        ip => {
            let bare = ip
                .strip_prefix('[')
                .and_then(|i| i.strip_suffix(']'))
                .unwrap_or(ip);
            Some(bare.parse::<IpAddr>().map_err(|_| {
                SpecError::invalid(
                    F,
                    spec,
                    format!(
                        "{ip:?} is not an IP address (write IPv6 in brackets, as in [::1]:8080:80)"
                    ),
                )
            })?)
        }
    };
    if container.is_empty() {
        return Err(SpecError::missing(
            F,
            format!("{spec:?} has no container port: {PUBLISH_SYNTAX}"),
        ));
    }
    let (c_first, c_last) = port_range(F, spec, container, PUBLISH_SYNTAX)?;
    let host_range = match host {
        "" => None,
        h => Some(port_range(F, spec, h, PUBLISH_SYNTAX)?),
    };
    if let Some((h_first, h_last)) = host_range {
        if h_last - h_first != c_last - c_first {
            return Err(SpecError::invalid(
                F,
                spec,
                format!(
                    "the host ports {host} and the container ports {container} are not ranges of the same length: give one host port per container port"
                ),
            ));
        }
    }
    Ok((c_first..=c_last)
        .map(|c| PortMapping {
            host_ip,
            host_port: host_range.map(|(h_first, _)| h_first + (c - c_first)),
            container_port: c,
            protocol: proto,
        })
        .collect())
}

/// `--expose PORT[-LAST][/tcp|udp]`: one entry per port of a range.
pub fn parse_expose(spec: &str) -> Result<Vec<ExposedPort>, SpecError> {
    const F: &str = "--expose";
    const HINT: &str = "use PORT[-LAST][/tcp|udp], as in 80 or 8000-8010/udp";
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((ports, p)) => (ports, protocol(F, spec, p)?),
        None => (spec, Protocol::Tcp),
    };
    let (first, last) = port_range(F, spec, ports, HINT)?;
    Ok((first..=last)
        .map(|port| ExposedPort {
            port,
            protocol: proto,
        })
        .collect())
}

impl FromStr for ExtraHost {
    type Err = SpecError;

    /// `--add-host NAME:ADDR` or `NAME=ADDR`, ADDR an IP address (IPv6 bare
    /// or in brackets) or `host-gateway`, as Docker takes them.
    fn from_str(spec: &str) -> Result<Self, SpecError> {
        const F: &str = "--add-host";
        let (name, addr) = spec
            .split_once('=')
            .or_else(|| spec.split_once(':'))
            .filter(|(name, _)| !name.is_empty() && !name.contains(':'))
            .ok_or_else(|| {
                SpecError::invalid(F, spec, "use NAME:IP, NAME=IP or NAME:host-gateway")
            })?;
        rules::check_host_name(F, name, true).map_err(|e| {
            SpecError::invalid(F, spec, format!("host name {name:?}: {}", e.message))
        })?;
        let addr = if addr == "host-gateway" {
            HostAddr::HostGateway
        } else {
            let bare = addr
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .unwrap_or(addr);
            HostAddr::Ip(bare.parse().map_err(|_| {
                SpecError::invalid(
                    F,
                    spec,
                    format!("{addr:?} is not an IP address: use NAME:IP or NAME:host-gateway"),
                )
            })?)
        };
        Ok(ExtraHost {
            name: name.to_string(),
            addr,
        })
    }
}

/// `--add-host`: see [`ExtraHost`]'s `FromStr`.
pub fn parse_add_host(spec: &str) -> Result<ExtraHost, SpecError> {
    spec.parse()
}

/// `--dns IP`: a name server's address.
pub fn parse_dns(spec: &str) -> Result<IpAddr, SpecError> {
    spec.parse().map_err(|_| {
        SpecError::invalid(
            "--dns",
            spec,
            "not an IP address: --dns takes a name server's address, as in 10.0.0.2",
        )
    })
}

/// `--dns-search DOMAIN`.
pub fn parse_dns_search(spec: &str) -> Result<String, SpecError> {
    if spec == "." {
        return Err(SpecError::invalid(
            "--dns-search",
            spec,
            "there are no search domains unless given: leave --dns-search out",
        ));
    }
    let domain = spec.strip_suffix('.').unwrap_or(spec);
    rules::check_host_name("--dns-search", domain, true).map_err(|e| e.value(spec))?;
    Ok(domain.to_string())
}

/// `--dns-option OPT` (`ndots:2`, `edns0`).
pub fn parse_dns_option(spec: &str) -> Result<String, SpecError> {
    if spec.is_empty() || spec.contains(char::is_whitespace) {
        return Err(SpecError::invalid(
            "--dns-option",
            spec,
            "a resolver option is one word, as in ndots:2 or edns0",
        ));
    }
    Ok(spec.to_string())
}

fn network_name(spec: &str, name: &str) -> Result<String, SpecError> {
    rules::check_name("--network", "network", name)
        .map_err(|e| SpecError::invalid("--network", spec, e.message))?;
    Ok(name.to_string())
}

/// `--network name=NET[,alias=A]…[,ip=IPV4]`.
fn network_fields(spec: &str) -> Result<NetworkAttachment, SpecError> {
    const F: &str = "--network";
    let (mut name, mut aliases, mut ipv4) = (None, Vec::new(), None);
    for field in spec.split(',') {
        let (key, value) = field.split_once('=').ok_or_else(|| {
            SpecError::invalid(
                F,
                spec,
                format!("{field:?}: use name=NET[,alias=A][,ip=IP]"),
            )
        })?;
        match key {
            "name" => name = Some(network_name(spec, value)?),
            "alias" => aliases.push(alias(spec, value)?),
            "ip" => ipv4 = Some(ipv4_addr(F, value)?),
            "ip6" | "mac-address" | "link-local-ip" | "driver-opt" | "gw-priority" => {
                return Err(SpecError::unsupported(
                    F,
                    spec,
                    format!("{key} is not supported: use name, alias and ip"),
                ))
            }
            other => {
                return Err(SpecError::invalid(
                    F,
                    spec,
                    format!("unknown field {other:?}: use name, alias and ip"),
                ))
            }
        }
    }
    let name = name.ok_or_else(|| SpecError::missing(F, format!("{spec:?} has no name=NET")))?;
    Ok(NetworkAttachment {
        name,
        aliases,
        ipv4,
    })
}

fn alias(spec: &str, text: &str) -> Result<String, SpecError> {
    rules::check_host_name("--network-alias", text, true).map_err(|e| e.value(spec))?;
    Ok(text.to_string())
}

fn ipv4_addr(field: &str, text: &str) -> Result<Ipv4Addr, SpecError> {
    text.parse().map_err(|_| {
        SpecError::invalid(
            field,
            text,
            "not an IPv4 address: use four numbers, as in 10.1.0.5",
        )
    })
}

/// One `--network` value: `none`, `default` (also `bridge`), a network
/// name, or `name=NET[,alias=A][,ip=IP]`. `host` and `container:BOX` are
/// refused: a box is a VM with its own kernel and network stack.
pub fn parse_network(spec: &str) -> Result<NetworkMode, SpecError> {
    const F: &str = "--network";
    match spec {
        "none" => Ok(NetworkMode::None),
        "default" | "bridge" => Ok(NetworkMode::Default),
        "host" => Err(SpecError::unsupported(
            F,
            spec,
            "a box is a VM with its own kernel, so it cannot share the host's network stack: use the default network and -p to publish ports",
        )),
        s if s == "container" || s.starts_with("container:") => Err(SpecError::unsupported(
            F,
            spec,
            "a box's network stack belongs to its VM: to share one network stack, run the containers in one pod (--pod)",
        )),
        s if s.contains('=') => Ok(NetworkMode::Networks(vec![network_fields(s)?])),
        name => Ok(NetworkMode::Networks(vec![NetworkAttachment {
            name: network_name(spec, name)?,
            aliases: Vec::new(),
            ipv4: None,
        }])),
    }
}

/// Every `--network` of one `run`, with `--network-alias` and `--ip`
/// (which apply to the one named network): no flag means the default
/// network; `none` and `default` stand alone, as in Docker.
pub fn parse_networks<S: AsRef<str>>(
    networks: &[S],
    aliases: &[S],
    ip: Option<&str>,
) -> Result<NetworkMode, SpecError> {
    let mut mode = NetworkMode::Default;
    let mut attachments = Vec::new();
    for spec in networks {
        match parse_network(spec.as_ref())? {
            NetworkMode::Networks(nets) => attachments.extend(nets),
            other if networks.len() == 1 => mode = other,
            _ => {
                return Err(SpecError::conflict(
                    "--network",
                    format!(
                        "{:?} with other networks: none and default stand alone; name only user-defined networks together",
                        spec.as_ref()
                    ),
                ))
            }
        }
    }
    if !attachments.is_empty() {
        if let Some(dup) = attachments
            .iter()
            .enumerate()
            .find(|(i, a)| attachments[..*i].iter().any(|b| b.name == a.name))
        {
            return Err(SpecError::conflict(
                "--network",
                format!("network {} is named twice", dup.1.name),
            ));
        }
        mode = NetworkMode::Networks(attachments);
    }
    if aliases.is_empty() && ip.is_none() {
        return Ok(mode);
    }
    let flag = if ip.is_some() {
        "--ip"
    } else {
        "--network-alias"
    };
    let NetworkMode::Networks(nets) = &mut mode else {
        return Err(SpecError::conflict(
            flag,
            format!("{flag} applies to user-defined networks only: add --network NAME"),
        ));
    };
    let [net] = nets.as_mut_slice() else {
        return Err(SpecError::conflict(
            flag,
            format!(
                "{flag} with several networks: say which one with --network name=NET,alias=A,ip=IP"
            ),
        ));
    };
    for a in aliases {
        net.aliases.push(alias(a.as_ref(), a.as_ref())?);
    }
    if let Some(ip) = ip {
        net.ipv4 = Some(ipv4_addr("--ip", ip)?);
    }
    Ok(mode)
}

impl FromStr for EgressRule {
    type Err = SpecError;

    /// `--egress-allow`: a host name (`api.example.com`), every name under a
    /// domain (`*.example.com`), an address or block (`1.2.3.4`, `::1`,
    /// `10.0.0.0/8`), each optionally with `:PORT` (IPv6 then in brackets:
    /// `[::1]:53`).
    fn from_str(spec: &str) -> Result<Self, SpecError> {
        const F: &str = "--egress-allow";
        const HINT: &str =
            "use a host name, *.domain, an IP address or ADDR/PREFIX, optionally with :PORT";
        let (host, port) = if let Some(inner) = spec.strip_prefix('[') {
            let (inner, after) = inner.split_once(']').ok_or_else(|| {
                SpecError::invalid(F, spec, format!("no closing bracket: {HINT}"))
            })?;
            match after {
                "" => (inner, None),
                p => match p.strip_prefix(':') {
                    Some(p) => (inner, Some(p)),
                    None => return Err(SpecError::invalid(F, spec, HINT)),
                },
            }
        } else if spec.matches(':').count() > 1 {
            (spec, None)
        } else {
            match spec.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (spec, None),
            }
        };
        let port = port
            .map(|p| port_range(F, spec, p, HINT))
            .transpose()?
            .map(|(first, last)| {
                if first == last {
                    Ok(first)
                } else {
                    Err(SpecError::invalid(
                        F,
                        spec,
                        "one port per rule, not a range",
                    ))
                }
            })
            .transpose()?;
        let target = if host.contains('/') {
            EgressTarget::Cidr(
                host.parse::<Cidr>()
                    .map_err(|e| SpecError::invalid(F, spec, e.message))?,
            )
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            EgressTarget::Ip(ip)
        } else if host == "*" || host.is_empty() {
            return Err(SpecError::invalid(
                F,
                spec,
                "without --egress-allow a box may connect anywhere; with it, name what it may reach",
            ));
        } else {
            let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
            let bare = name.strip_prefix("*.").unwrap_or(&name);
            rules::check_host_name(F, bare, true)
                .map_err(|e| SpecError::invalid(F, spec, format!("{}: {HINT}", e.message)))?;
            EgressTarget::Name(name)
        };
        Ok(EgressRule { target, port })
    }
}

/// `--egress-allow`: see [`EgressRule`]'s `FromStr`.
pub fn parse_egress(spec: &str) -> Result<EgressRule, SpecError> {
    spec.parse()
}
