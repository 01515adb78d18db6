//! An [`EgressPlan`] compiled into an nftables script (`nft -f`): one
//! `inet` table per box (or network), pure text, no side effects.
//!
//! The table's `egress` chain, in order:
//! 1. replies and related packets of allowed connections pass;
//! 2. packets carrying the exempt mark pass (the DNS server's own
//!    upstream queries when it runs in the same namespace);
//! 3. DNS (TCP and UDP port 53) passes to our resolvers only; any other
//!    port 53 and port 853 (DNS over TLS or QUIC) is refused;
//! 4. link-local blocks a rule names pass, then every other link-local
//!    address (169.254.169.254, the cloud metadata service) is refused,
//!    except the host gateway when it is link-local (it is then allowed
//!    like any address: by the rules and the DNS answers below);
//! 5. the static blocks (`allow4`, `allow4_ports`, …) and the addresses
//!    the DNS server allowed (`dns4`, `dns4_ports`, …, with timeouts) pass;
//! 6. everything else goes to `deny`: recorded in the `denied4`/`denied6`
//!    sets (address, protocol, port, with a packet counter), counted,
//!    logged (rate-limited), and refused with a TCP reset or an ICMP
//!    "administratively prohibited", so clients fail at once.

use std::fmt::Write;
use std::net::IpAddr;

use a3s_box_core::{BoxError, Result};

use super::policy::{names_link_local, StaticAllow, LINK_LOCAL_V4, LINK_LOCAL_V6};
use super::EgressPlan;
use super::{Attach, DENIED_COUNTER, DENIED_TIMEOUT_SECS};

/// Longest nft table name we make.
const MAX_TABLE_NAME: usize = 64;

/// Check an nft identifier: a letter, then letters, digits and `_`.
pub(crate) fn check_identifier(what: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_TABLE_NAME;
    if ok {
        Ok(())
    } else {
        Err(BoxError::Invalid(format!(
            "{what} {name:?}: use a letter, then letters, digits and '_' (at most {MAX_TABLE_NAME})"
        )))
    }
}

/// Which of the two families a set holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }
    fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }
    /// The payload expression of the destination address.
    fn daddr(self) -> &'static str {
        match self {
            Family::V4 => "ip daddr",
            Family::V6 => "ip6 daddr",
        }
    }
    fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// The elements of the any-port and the per-port set of `family`.
fn elements(statics: &[&StaticAllow], family: Family) -> (Vec<String>, Vec<String>) {
    let (mut any, mut ports) = (Vec::new(), Vec::new());
    for s in statics
        .iter()
        .filter(|s| Family::of(s.block.addr) == family)
    {
        if s.ports.is_any() {
            any.push(s.block.to_string());
        } else {
            for p in s.ports.list() {
                ports.push(format!("{} . {p}", s.block));
            }
        }
    }
    (any, ports)
}

fn set(out: &mut String, name: &str, key: &str, flags: &str, elems: &[String]) {
    let _ = write!(out, "\tset {name} {{\n\t\ttype {key}\n");
    if !flags.is_empty() {
        let _ = writeln!(out, "\t\tflags {flags}");
    }
    if !elems.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elems.join(", "));
    }
    out.push_str("\t}\n");
}

impl EgressPlan {
    /// The nftables script that (re)creates the plan's table: an empty
    /// table of that name is added and deleted first, so applying it
    /// again replaces the table in one transaction.
    pub fn ruleset(&self) -> Result<String> {
        check_identifier("nft table", &self.table)?;
        if self.attach.is_empty() {
            return Err(BoxError::Invalid(
                "an egress plan attaches to at least one hook".into(),
            ));
        }
        let t = &self.table;
        let mut out = format!("table inet {t} {{}}\ndelete table inet {t}\ntable inet {t} {{\n");
        let (named, general): (Vec<&StaticAllow>, Vec<&StaticAllow>) = self
            .policy
            .statics
            .iter()
            .partition(|s| names_link_local(&s.block));
        for family in [Family::V4, Family::V6] {
            let f = family.suffix();
            let key = family.addr_type();
            let key_port = format!("{key} . inet_service");
            for (prefix, list) in [("allow", &general), ("named", &named)] {
                let (any, ports) = elements(list, family);
                set(&mut out, &format!("{prefix}{f}"), key, "interval", &any);
                set(
                    &mut out,
                    &format!("{prefix}{f}_ports"),
                    &key_port,
                    "interval",
                    &ports,
                );
            }
            set(&mut out, &format!("dns{f}"), key, "timeout", &[]);
            set(
                &mut out,
                &format!("dns{f}_ports"),
                &key_port,
                "timeout",
                &[],
            );
            let resolvers: Vec<String> = self
                .resolvers
                .iter()
                .filter(|r| Family::of(**r) == family)
                .map(|r| r.to_string())
                .collect();
            set(&mut out, &format!("resolvers{f}"), key, "", &resolvers);
            let _ = write!(
                out,
                "\tset denied{f} {{\n\t\ttype {key} . inet_proto . inet_service\n\t\tsize 4096\n\t\tflags dynamic,timeout\n\t\ttimeout {DENIED_TIMEOUT_SECS}s\n\t\tcounter\n\t}}\n"
            );
        }
        let _ = writeln!(out, "\tcounter {DENIED_COUNTER} {{}}");
        self.hooks(&mut out)?;
        self.egress_chain(&mut out);
        self.deny_chain(&mut out);
        out.push_str("}\n");
        Ok(out)
    }

    fn hooks(&self, out: &mut String) -> Result<()> {
        let mut output = Vec::new();
        let mut forward = Vec::new();
        for a in &self.attach {
            match a {
                Attach::Output => output.push("jump egress".to_string()),
                Attach::Forward { iifname, saddr } => {
                    let mut rule = String::new();
                    if let Some(i) = iifname {
                        if i.is_empty()
                            || i.len() > 15
                            || !i.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
                        {
                            return Err(BoxError::Invalid(format!(
                                "interface name {i:?}: 1 to 15 printable characters, no quotes"
                            )));
                        }
                        let _ = write!(rule, "iifname \"{i}\" ");
                    }
                    if let Some(ip) = saddr {
                        let _ = write!(
                            rule,
                            "{} saddr {ip} ",
                            if ip.is_ipv4() { "ip" } else { "ip6" }
                        );
                    }
                    rule.push_str("jump egress");
                    forward.push(rule);
                }
            }
        }
        for (chain, rules) in [("output", output), ("forward", forward)] {
            if rules.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "\tchain {chain} {{\n\t\ttype filter hook {chain} priority filter; policy accept;"
            );
            for r in rules {
                let _ = writeln!(out, "\t\t{r}");
            }
            out.push_str("\t}\n");
        }
        Ok(())
    }

    fn egress_chain(&self, out: &mut String) {
        const L4: &str = "meta l4proto { tcp, udp }";
        let mut rules = vec!["ct state established,related accept".to_string()];
        if let Some(mark) = self.exempt_mark {
            rules.push(format!("meta mark {mark:#x} accept"));
        }
        for family in [Family::V4, Family::V6] {
            let (f, d) = (family.suffix(), family.daddr());
            rules.push(format!("{L4} th dport 53 {d} @resolvers{f} accept"));
        }
        rules.push(format!("{L4} th dport {{ 53, 853 }} jump deny"));
        for (family, link_local) in [(Family::V4, LINK_LOCAL_V4), (Family::V6, LINK_LOCAL_V6)] {
            let (f, d) = (family.suffix(), family.daddr());
            rules.push(format!("{d} @named{f} accept"));
            rules.push(format!("{L4} {d} . th dport @named{f}_ports accept"));
            let except = match self.host_gateway {
                Some(gw) if Family::of(gw) == family => format!("{d} != {gw} "),
                _ => String::new(),
            };
            rules.push(format!("{except}{d} {link_local} jump deny"));
        }
        for family in [Family::V4, Family::V6] {
            let (f, d) = (family.suffix(), family.daddr());
            for prefix in ["allow", "dns"] {
                rules.push(format!("{d} @{prefix}{f} accept"));
                rules.push(format!("{L4} {d} . th dport @{prefix}{f}_ports accept"));
            }
        }
        rules.push("jump deny".into());
        out.push_str("\tchain egress {\n");
        for r in rules {
            let _ = writeln!(out, "\t\t{r}");
        }
        out.push_str("\t}\n");
    }

    fn deny_chain(&self, out: &mut String) {
        let tag: String = self
            .log_tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(24)
            .collect();
        let _ = write!(
            out,
            "\tchain deny {{\n\
             \t\tmeta nfproto ipv4 meta l4proto {{ tcp, udp }} update @denied4 {{ ip daddr . meta l4proto . th dport }}\n\
             \t\tmeta nfproto ipv6 meta l4proto {{ tcp, udp }} update @denied6 {{ ip6 daddr . meta l4proto . th dport }}\n\
             \t\tcounter name {DENIED_COUNTER}\n\
             \t\tlimit rate 10/second burst 20 packets log prefix \"a3s-box egress denied {tag}: \" level info\n\
             \t\tmeta l4proto tcp reject with tcp reset\n\
             \t\treject with icmpx admin-prohibited\n\
             \t}}\n"
        );
    }
}
