//! Helpers of the network tests: a DNS upstream (dnsmasq) on an address
//! the test owns, network namespaces the test creates, DNS queries.
//! Traffic goes only to loopback or into those namespaces.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};

/// dnsmasq answering fixed names, for as long as it lives.
pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
}

impl Dnsmasq {
    /// dnsmasq on `ip` (in the calling process's namespace, or in the
    /// named one), with `records` as extra arguments (`--address=…`).
    /// `None` if dnsmasq is not installed.
    pub fn start(netns: Option<&str>, ip: IpAddr, records: &[&str]) -> Option<Dnsmasq> {
        if Command::new("dnsmasq").arg("--version").output().is_err() {
            eprintln!("skipping: dnsmasq is not installed (scripts/install-deps.sh)");
            return None;
        }
        let port = free_udp_port(netns, ip);
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "dnsmasq"]);
                c
            }
            None => Command::new("dnsmasq"),
        };
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            &format!("--port={port}"),
            &format!("--listen-address={ip}"),
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--user=root",
            "--group=root",
            "--local-ttl=120",
            "--log-facility=-",
        ])
        .args(records)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd.spawn().expect("start dnsmasq");
        let addr = SocketAddr::new(ip, port);
        let d = Dnsmasq { child, addr };
        // Ready when it answers over TCP (it binds UDP and TCP together).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = in_netns_opt(netns, move || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            });
            if ok {
                return Some(d);
            }
            assert!(Instant::now() < deadline, "dnsmasq did not start on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port(netns: Option<&str>, ip: IpAddr) -> u16 {
    in_netns_opt(netns, move || {
        std::net::UdpSocket::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    })
}

fn in_netns_opt<T: Send + 'static>(
    netns: Option<&str>,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    match netns {
        Some(ns) => in_netns(&netns_path(ns), f),
        None => f(),
    }
}

pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Move the calling thread into the network namespace at `path`: sockets
/// it makes from then on belong to that namespace for their whole life.
pub fn enter_netns(path: &std::path::Path) {
    let file = std::fs::File::open(path).expect("open the namespace");
    // SAFETY: setns on a descriptor we own; it changes the namespace of
    // the calling thread only.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Run `f` on a new thread inside the network namespace at `path`.
pub fn in_netns<T: Send + 'static>(
    path: &std::path::Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        enter_netns(&path);
        f()
    })
    .join()
    .expect("the thread in the namespace panicked")
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Two namespaces joined by a veth pair: `client` (192.0.2.1/24, default
/// route to the server) where the firewall under test runs, and `server`
/// (192.0.2.2/24 plus `extra` addresses) where the listeners are.
///
/// [`TestNet::create_routed`] puts a `router` namespace between them
/// (client 10.77.0.2/24 — router 10.77.0.1 and 192.0.2.1 — server), where
/// the firewall sees the client's packets on its forward hook, arriving
/// on the router's `vb`, as with a bridge and TAPs.
pub struct TestNet {
    pub client: String,
    pub server: String,
    pub router: Option<String>,
}

/// The server side's address on the link.
pub const SERVER_LINK: &str = "192.0.2.2";

impl TestNet {
    /// `None` (and a message) when namespaces cannot be made here.
    pub fn create(extra: &[&str]) -> Option<TestNet> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", std::process::id());
        let net = TestNet {
            client: format!("a3s-tc-{id}"),
            server: format!("a3s-ts-{id}"),
            router: None,
        };
        if let Err(e) = ip(&["netns", "add", &net.client]) {
            eprintln!("skipping: cannot create a network namespace ({e}); run as root");
            return None;
        }
        let setup = || -> Result<(), String> {
            ip(&["netns", "add", &net.server])?;
            let (c, s) = (net.client.as_str(), net.server.as_str());
            ip(&[
                "-n", c, "link", "add", "vc", "type", "veth", "peer", "name", "vs", "netns", s,
            ])?;
            ip(&["-n", c, "addr", "add", "192.0.2.1/24", "dev", "vc"])?;
            ip(&["-n", s, "addr", "add", "192.0.2.2/24", "dev", "vs"])?;
            for addr in extra {
                ip(&["-n", s, "addr", "add", &format!("{addr}/32"), "dev", "vs"])?;
            }
            for (ns, dev) in [(c, "vc"), (s, "vs"), (c, "lo"), (s, "lo")] {
                ip(&["-n", ns, "link", "set", dev, "up"])?;
            }
            ip(&["-n", c, "route", "add", "default", "via", SERVER_LINK])?;
            Ok(())
        };
        if let Err(e) = setup() {
            panic!("namespace setup failed: {e}");
        }
        Some(net)
    }

    /// Like [`TestNet::create`], with a router between client and server.
    pub fn create_routed(extra: &[&str]) -> Option<TestNet> {
        let mut net = TestNet::create(extra)?;
        let box_ns = net.client.replace("a3s-tc-", "a3s-tb-");
        let setup = || -> Result<(), String> {
            // The old client becomes the router; a new client hangs off it.
            ip(&["netns", "add", &box_ns])?;
            let (r, b, s) = (net.client.as_str(), box_ns.as_str(), net.server.as_str());
            ip(&[
                "-n", r, "link", "add", "vb", "type", "veth", "peer", "name", "vx", "netns", b,
            ])?;
            ip(&["-n", r, "addr", "add", "10.77.0.1/24", "dev", "vb"])?;
            ip(&["-n", b, "addr", "add", "10.77.0.2/24", "dev", "vx"])?;
            for (ns, dev) in [(r, "vb"), (b, "vx"), (b, "lo")] {
                ip(&["-n", ns, "link", "set", dev, "up"])?;
            }
            ip(&["-n", b, "route", "add", "default", "via", "10.77.0.1"])?;
            ip(&["-n", s, "route", "add", "10.77.0.0/24", "via", "192.0.2.1"])?;
            ip(&["netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
            Ok(())
        };
        if let Err(e) = setup() {
            let _ = ip(&["netns", "del", &box_ns]);
            panic!("namespace setup failed: {e}");
        }
        net.router = Some(std::mem::replace(&mut net.client, box_ns));
        Some(net)
    }

    /// Where the firewall goes: the router, else the client.
    pub fn firewall_path(&self) -> PathBuf {
        netns_path(self.router.as_ref().unwrap_or(&self.client))
    }

    pub fn client_path(&self) -> PathBuf {
        netns_path(&self.client)
    }

    pub fn server_path(&self) -> PathBuf {
        netns_path(&self.server)
    }

    /// TCP listeners on every address of the server side at `ports`,
    /// listening for as long as the returned sockets live.
    pub fn listen_tcp(&self, ports: &[u16]) -> Vec<std::net::TcpListener> {
        let ports = ports.to_vec();
        in_netns(&self.server_path(), move || {
            ports
                .iter()
                .map(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).expect("listen"))
                .collect()
        })
    }

    /// Connect from the client side: `Ok` if connected, else the error,
    /// with how long it took.
    pub fn connect(&self, addr: &str) -> (std::io::Result<()>, Duration) {
        let addr: SocketAddr = addr.parse().unwrap();
        in_netns(&self.client_path(), move || {
            let started = Instant::now();
            let r = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map(|_| ());
            (r, started.elapsed())
        })
    }

    /// Assert the client connects to `addr`.
    pub fn assert_connects(&self, addr: &str) {
        let (r, _) = self.connect(addr);
        assert!(r.is_ok(), "connect to {addr}: {r:?}");
    }

    /// Assert the client is refused at once (a reset, not a timeout).
    pub fn assert_refused(&self, addr: &str) {
        let (r, took) = self.connect(addr);
        let e = r.expect_err(&format!("{addr} should be refused"));
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{addr}: {e}"
        );
        assert!(
            took < Duration::from_secs(1),
            "{addr}: refused only after {took:?}"
        );
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.client]);
        let _ = ip(&["netns", "del", &self.server]);
        if let Some(router) = &self.router {
            let _ = ip(&["netns", "del", router]);
        }
    }
}

/// A DNS query for `name`.
pub fn query(name: &str, qtype: RecordType) -> Message {
    let mut msg = Message::query();
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    msg.metadata.recursion_desired = true;
    msg
}

/// Ask `server` over UDP (or TCP), blocking, in the calling thread's namespace.
pub fn ask(server: SocketAddr, name: &str, qtype: RecordType, tcp: bool) -> Message {
    use std::io::{Read, Write};
    let msg = query(name, qtype);
    let bytes = msg.to_vec().unwrap();
    let reply = if tcp {
        let mut s = std::net::TcpStream::connect_timeout(&server, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&(bytes.len() as u16).to_be_bytes()).unwrap();
        s.write_all(&bytes).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).unwrap();
        buf
    } else {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let s = std::net::UdpSocket::bind(bind).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.send_to(&bytes, server).unwrap();
        let mut buf = vec![0; 4096];
        let n = s.recv(&mut buf).expect("a DNS answer within 5 s");
        buf.truncate(n);
        buf
    };
    let reply = Message::from_vec(&reply).unwrap();
    assert_eq!(reply.metadata.id, msg.metadata.id);
    reply
}

/// The A and AAAA addresses of an answer.
pub fn addresses(msg: &Message) -> Vec<IpAddr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}
