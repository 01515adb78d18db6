//! The "outside world" of the network tests, all on the host's loopback:
//! an HTTP server, a TFTP server (UDP), a DNS resolver (UDP and TCP, on an
//! address of 127.0.0.0/8 of its own, port 53), and a look at /proc for
//! whatever of a home outlived its boxes. Boxes reach the servers through
//! `host-gateway` (which the network's uplink maps to the host's loopback)
//! and the resolver through `--dns`; nothing leaves the machine.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `host-gateway` as boxes see it.
pub const HOST_GATEWAY: &str = "169.254.1.1";

/// An HTTP/1.0 server on 127.0.0.1 answering every request with `body`;
/// its port. It lives as long as the test process.
pub fn http_server(body: &str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = body.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let body = body.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes());
            });
        }
    });
    port
}

/// A TFTP server on 127.0.0.1 (UDP) serving `content` under any name,
/// replying from its own port; its port.
pub fn tftp_server(content: &str) -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let content = content.as_bytes().to_vec();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                continue;
            };
            // RRQ: opcode 1. Answer with DATA block 1 (short: the last).
            if n >= 2 && buf[..2] == [0, 1] {
                let mut data = vec![0, 3, 0, 1];
                data.extend_from_slice(&content);
                let _ = socket.send_to(&data, peer);
            }
        }
    });
    port
}

/// HTTP GET of `path` at `addr`; the body (`None` when it fails).
pub fn http_get(addr: SocketAddr) -> Option<String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    reply.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// A DNS resolver for the tests: A records of `records`, NXDOMAIN for the
/// rest, over UDP and TCP on `addr:53`, remembering the names asked.
#[derive(Debug, Clone)]
pub struct TestDns {
    /// Its address (in 127.0.0.0/8).
    pub addr: Ipv4Addr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl TestDns {
    /// Start one on a loopback address of its own.
    pub fn start(records: &[(&str, Ipv4Addr)]) -> TestDns {
        static NEXT: AtomicU8 = AtomicU8::new(1);
        let records: HashMap<String, Ipv4Addr> =
            records.iter().map(|(n, a)| (n.to_string(), *a)).collect();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let pid_byte = (std::process::id() % 200) as u8 + 20;
        for _ in 0..200 {
            let addr = Ipv4Addr::new(127, 77, pid_byte, NEXT.fetch_add(1, Ordering::SeqCst));
            let (Ok(udp), Ok(tcp)) = (UdpSocket::bind((addr, 53)), TcpListener::bind((addr, 53)))
            else {
                continue;
            };
            let (r, s) = (records.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 1500];
                loop {
                    let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    if let Some(reply) = answer(&buf[..n], &r, &s) {
                        let _ = udp.send_to(&reply, peer);
                    }
                }
            });
            let (r, s) = (records.clone(), seen.clone());
            std::thread::spawn(move || {
                for conn in tcp.incoming() {
                    let Ok(mut c) = conn else { continue };
                    let mut len = [0u8; 2];
                    if c.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                    if c.read_exact(&mut q).is_err() {
                        continue;
                    }
                    if let Some(reply) = answer(&q, &r, &s) {
                        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&reply);
                        let _ = c.write_all(&framed);
                    }
                }
            });
            return TestDns { addr, seen };
        }
        panic!("no free 127.77.x.y:53 for the test resolver");
    }

    /// The names asked so far (lower case).
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// The name of a query (`None`: not a query we understand).
fn query_name(q: &[u8]) -> Option<(String, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    Some((labels.join("."), at + 4))
}

fn answer(
    q: &[u8],
    records: &HashMap<String, Ipv4Addr>,
    seen: &Mutex<Vec<String>>,
) -> Option<Vec<u8>> {
    let (name, end) = query_name(q)?;
    let qtype = u16::from_be_bytes([*q.get(end - 4)?, *q.get(end - 3)?]);
    seen.lock().unwrap().push(name.clone());
    let mut reply = q[..end].to_vec();
    reply[2] = 0x81; // response, recursion desired
    let found = records.get(&name);
    reply[3] = if found.is_some() { 0x80 } else { 0x83 }; // RA, NOERROR/NXDOMAIN
    reply[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if let (Some(ip), 1) = (found, qtype) {
        reply[7] = 1;
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    Some(reply)
}

/// A DNS query for `name` (type A) over TCP (length-prefixed), written as
/// a busybox `printf` format of octal escapes.
pub fn tcp_query_printf(name: &str) -> String {
    let mut msg = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&msg);
    framed.iter().map(|b| format!("\\{b:03o}")).collect()
}

/// Processes whose command line, working directory, executable or open
/// files are under `home` (the home's helpers, QEMUs, pastas), as
/// `pid: command` lines.
pub fn processes_of(home: &Path) -> Vec<String> {
    let home = home.to_string_lossy().into_owned();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let dir = p.path();
        let cmdline = std::fs::read(dir.join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let links = std::fs::read_dir(dir.join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|f| f.path())
            .chain([dir.join("cwd"), dir.join("exe")])
            .filter_map(|l| std::fs::read_link(l).ok())
            .any(|t| t.to_string_lossy().starts_with(&home));
        if cmdline.contains(&home) || links {
            found.push(format!("{pid}: {}", cmdline.trim()));
        }
    }
    found
}

/// Wait until no process of `home` is left (or fail after `secs`).
pub fn assert_nothing_survives(home: &Path, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = processes_of(home);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still running for {}: {left:#?}",
            home.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The pid of the home's helper of `network`.
pub fn netd_pid(home: &Path, network: &str) -> Option<u32> {
    let dir = home.join("networks").join(network);
    let needle = format!("a3s-box-netd {}", dir.display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|p| {
        let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // The helper, not its host agent (a fork: same command line, and
        // its parent is the helper).
        let status = std::fs::read_to_string(p.path().join("status")).ok()?;
        let ppid: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))?
            .trim()
            .parse()
            .ok()?;
        let parent = std::fs::read(format!("/proc/{ppid}/cmdline")).unwrap_or_default();
        let parent_is_netd = String::from_utf8_lossy(&parent).contains("a3s-box-netd");
        (cmdline.contains(&needle) && !parent_is_netd)
            .then(|| p.file_name().to_string_lossy().parse().ok())
            .flatten()
    })
}
