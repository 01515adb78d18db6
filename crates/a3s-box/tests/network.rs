//! Box networking with real VMs and the real binary: the default network
//! (egress, DNS, the /etc files), `--network none`, published ports and
//! their conflicts, named networks (names, aliases, isolation,
//! `--internal`), the egress allow-list, twenty boxes on one network, and
//! crashes that must leave nothing behind.
//!
//! Traffic goes only to the host's loopback (servers the tests start,
//! reached through `host-gateway`) and to addresses inside the networks'
//! namespaces; every lookup that could leave the box's network goes to a
//! resolver the test started (`--dns`), never to the host's.

#![allow(clippy::unwrap_used)]

mod common;
mod network_fixtures;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::{ok, rootfs, stderr, stdout, TestHome};
use network_fixtures::{
    assert_nothing_survives, http_get, http_server, netd_pid, tcp_query_printf, tftp_server,
    TestDns, HOST_GATEWAY,
};

/// `run --rm` of a small busybox box with `extra` flags running `script`.
fn run_sh(home: &TestHome, extra: &[&str], script: &str) -> std::process::Output {
    home.cmd()
        .args(["run", "--rm", "--cpus", "1", "--memory", "128m", "--rootfs"])
        .arg(rootfs())
        .args(extra)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap()
}

/// `run -d` of a busybox box serving `body` over HTTP on port 80; its id.
fn web_box(home: &TestHome, extra: &[&str], body: &str) -> String {
    home.run_detached(
        extra,
        &[
            "sh",
            "-c",
            &format!(
                "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www"
            ),
        ],
    )
}

/// The sections of a script's output split at `---` lines.
fn sections(out: &str) -> Vec<String> {
    out.split("---\n").map(str::to_string).collect()
}

#[test]
fn the_default_network_reaches_the_host_resolves_and_writes_dockers_files() {
    let home = TestHome::new();
    let http = http_server("hello-from-the-host");
    let tftp = tftp_server("udp-works");
    let dns = TestDns::start(&[("api.test", Ipv4Addr::new(192, 0, 2, 7))]);
    let dns_ip = dns.addr.to_string();
    let closed = free_port();
    let script = format!(
        "cat /etc/resolv.conf; echo ---; cat /etc/hosts; echo ---; cat /etc/hostname; echo ---; \
         wget -qO- http://hostsvc:{http}/; echo; echo ---; \
         timeout 3 wget -qO- http://hostsvc:{closed}/ 2>&1 | grep -o 'Connection reset'; echo ---; \
         tftp -g -r x -l /tmp/t hostsvc {tftp} && cat /tmp/t; echo; echo ---; \
         nslookup api.test | grep -A1 '^Name:'; echo ---; \
         cat /sys/class/net/eth0/mtu; ip route"
    );
    let o = run_sh(
        &home,
        &[
            "--dns",
            &dns_ip,
            "--dns-search",
            "a.test",
            "--dns-option",
            "ndots:2",
            "--add-host",
            "fixed.test:10.1.2.3",
            "--add-host",
            "hostsvc:host-gateway",
            "--hostname",
            "myhost",
        ],
        &script,
    );
    let out = ok(&o);
    let s = sections(&out);
    assert_eq!(s.len(), 8, "{out}");
    // Docker's resolv.conf rules: every name goes to the network's DNS
    // server (which forwards to --dns), search and options as given.
    assert_eq!(
        s[0], "nameserver 10.88.0.1\nsearch a.test\noptions ndots:2\n",
        "{out}"
    );
    let hosts: Vec<&str> = s[1].lines().collect();
    assert_eq!(hosts[0], "127.0.0.1\tlocalhost");
    assert!(hosts.contains(&"10.1.2.3\tfixed.test"), "{out}");
    assert!(
        hosts.contains(&format!("{HOST_GATEWAY}\thostsvc").as_str()),
        "{out}"
    );
    let own = hosts.last().unwrap();
    assert!(
        own.starts_with("10.88.") && own.ends_with("\tmyhost"),
        "{out}"
    );
    assert_eq!(s[2], "myhost\n");
    assert_eq!(s[3].trim(), "hello-from-the-host", "TCP to the host: {out}");
    // TCP to host-gateway goes through the helper's relay, which resets a
    // connection to a closed host port at once (pasta would refuse it).
    assert_eq!(s[4], "Connection reset\n", "the relay: {out}");
    assert_eq!(s[5].trim(), "udp-works", "UDP to the host: {out}");
    assert!(s[6].contains("Address: 192.0.2.7"), "DNS: {out}");
    assert!(
        dns.seen().contains(&"api.test".to_string()),
        "{:?}",
        dns.seen()
    );
    assert!(s[7].starts_with("65520\n"), "{out}");
    assert!(s[7].contains("default via 10.88.0.1 dev eth0"), "{out}");
    home.assert_no_boxes_left();
}

#[test]
fn network_none_is_loopback_only_and_host_is_refused() {
    let home = TestHome::new();
    let o = run_sh(
        &home,
        &["--network", "none"],
        "ls /sys/class/net | grep -v '^sit'; echo ---; tail -1 /etc/hosts; ip route",
    );
    let out = ok(&o);
    let s = sections(&out);
    assert_eq!(s[0], "lo\n", "only loopback: {out}");
    assert!(
        s[1].starts_with("127.0.0.1\t"),
        "own name on loopback: {out}"
    );
    assert!(!s[1].contains("default"), "no route: {out}");
    assert!(!home.home.path().join("networks/default/netd.sock").exists());
    let o = run_sh(&home, &["--network", "host"], "true");
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("cannot share the host's network stack"),
        "{}",
        stderr(&o)
    );
}

/// The host side of `port`'s lines.
fn port_of(home: &TestHome, id: &str, port: &str) -> Vec<String> {
    ok(&home.cli(&["port", id, port]))
        .lines()
        .map(str::to_string)
        .collect()
}

/// A free TCP port on 127.0.0.1 (bound and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `count` consecutive free TCP ports on 127.0.0.1.
fn free_range(count: u16) -> u16 {
    loop {
        let first = free_port();
        if first > 65000 {
            continue;
        }
        let all = (first..first + count).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all {
            return first;
        }
    }
}

fn get(port: u16) -> Option<String> {
    http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).map(|b| b.trim().to_string())
}

/// Retry `f` until it gives something (the box may still be starting its
/// servers) or `secs` pass.
fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn published_ports_explicit_ranges_picked_and_all_exposed() {
    let home = TestHome::new();
    let fixed = free_port();
    let range = free_range(2);
    let script =
        "mkdir -p /a /b /c && echo eighty > /a/index.html && echo eighty-one > /b/index.html \
                  && echo ninety > /c/index.html && httpd -p 80 -h /a && httpd -p 81 -h /b \
                  && exec httpd -f -p 90 -h /c";
    let id = home.run_detached(
        &[
            "-p",
            &format!("127.0.0.1:{fixed}:80"),
            "-p",
            &format!("127.0.0.1:{}-{}:80-81", range, range + 1),
            "-p",
            "127.0.0.1::80",
            "--expose",
            "90",
            "-P",
        ],
        &["sh", "-c", script],
    );
    assert_eq!(
        eventually(30, || get(fixed)).as_deref(),
        Some("eighty"),
        "explicit port"
    );
    assert_eq!(get(range).as_deref(), Some("eighty"), "range, first");
    assert_eq!(
        get(range + 1).as_deref(),
        Some("eighty-one"),
        "range, second"
    );
    // `port` as Docker prints it.
    let eighty = port_of(&home, &id, "80");
    assert_eq!(eighty.len(), 3, "{eighty:?}");
    assert!(eighty.contains(&format!("127.0.0.1:{fixed}")));
    let picked: u16 = eighty
        .iter()
        .filter_map(|l| l.strip_prefix("127.0.0.1:")?.parse().ok())
        .find(|p| *p != fixed && *p != range)
        .unwrap();
    assert_eq!(get(picked).as_deref(), Some("eighty"), "picked port");
    // -P: the exposed port on a picked port of every address.
    let ninety = port_of(&home, &id, "90/tcp");
    let [line] = ninety.as_slice() else {
        panic!("{ninety:?}")
    };
    let all_port: u16 = line.strip_prefix("0.0.0.0:").unwrap().parse().unwrap();
    assert_eq!(get(all_port).as_deref(), Some("ninety"), "-P");
    let listing = ok(&home.cli(&["port", &id]));
    assert!(listing.contains("81/tcp -> 127.0.0.1:"), "{listing}");
    let o = home.cli(&["port", &id, "7/udp"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("no public port '7/udp'"),
        "{}",
        stderr(&o)
    );
    // inspect: Docker's shapes.
    let v = home.inspect(&id);
    let ports = &v["NetworkSettings"]["Ports"];
    assert_eq!(ports["80/tcp"].as_array().unwrap().len(), 3, "{v:#}");
    assert_eq!(ports["90/tcp"][0]["HostIp"], "0.0.0.0");
    let bindings = &v["HostConfig"]["PortBindings"];
    assert_eq!(bindings["80/tcp"][2]["HostPort"], "", "picked: as asked");
    assert_eq!(bindings["81/tcp"][0]["HostPort"], (range + 1).to_string());
    let net = &v["NetworkSettings"]["Networks"]["default"];
    assert!(
        net["IPAddress"].as_str().unwrap().starts_with("10.88."),
        "{v:#}"
    );
    assert_eq!(net["Gateway"], "10.88.0.1");
    assert!(net["MacAddress"].as_str().unwrap().starts_with("02:42:"));
    assert_eq!(v["Config"]["ExposedPorts"]["90/tcp"], serde_json::json!({}));
    // Stopped: no ports.
    ok(&home.cli(&["stop", "-t", "1", &id]));
    assert!(ok(&home.cli(&["port", &id])).is_empty());
    assert!(get(fixed).is_none(), "the relay is gone");
    ok(&home.cli(&["rm", &id]));
}

#[test]
fn a_port_in_use_fails_the_start_and_leaves_nothing() {
    let home = TestHome::new();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let o = home
        .cmd()
        .args(["run", "-d", "--cpus", "1", "--memory", "128m"])
        .arg("-p")
        .arg(format!("127.0.0.1:{port}:80"))
        .arg("--rootfs")
        .arg(rootfs())
        .args(["--", "sleep", "60"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "Bind for 127.0.0.1:{port} failed: port is already allocated"
        )),
        "{err}"
    );
    // Docker keeps the box, not running.
    let ids = ok(&home.cli(&["ps", "-q"]));
    assert!(ids.is_empty(), "running: {ids}");
    // The foreground run fails the same way.
    let o = home
        .foreground()
        .arg("-p")
        .arg(format!("127.0.0.1:{port}:80"))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    // No lease, no helper, no TAP (its namespace would be the helper's).
    let leases = home.home.path().join("networks/default/leases.json");
    let table = std::fs::read_to_string(&leases).unwrap_or_default();
    assert!(!table.contains("box_id"), "{table}");
    assert!(netd_pid(home.home.path(), "default").is_none());
    // The failed box's supervisor ends right after it reported.
    assert_nothing_survives(home.home.path(), 10);
    drop(busy);
}

#[test]
fn boxes_on_a_named_network_meet_by_name_and_networks_stay_apart() {
    let home = TestHome::new();
    let http = http_server("host");
    let dns = TestDns::start(&[]);
    let dns_ip = dns.addr.to_string();
    for args in [
        &["network", "create", "front"][..],
        &["network", "create", "back"][..],
        &["network", "create", "--internal", "inside"][..],
    ] {
        ok(&home.cli(args));
    }
    let alpha = web_box(
        &home,
        &[
            "--name",
            "alpha",
            "--network",
            "front",
            "--network-alias",
            "web",
        ],
        "alpha",
    );
    let gamma = web_box(&home, &["--name", "gamma", "--network", "back"], "gamma");
    let ip_of = |id: &str, net: &str| {
        home.inspect(id)["NetworkSettings"]["Networks"][net]["IPAddress"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let alpha_ip = ip_of(&alpha, "front");
    let gamma_ip = ip_of(&gamma, "back");
    assert_ne!(
        &alpha_ip[..alpha_ip.rfind('.').unwrap()],
        &gamma_ip[..gamma_ip.rfind('.').unwrap()],
        "two networks, two subnets"
    );
    let short = &alpha[..12];
    let script = format!(
        "for n in alpha web {short} alpha.front; do wget -qO- http://$n/ || echo fail-$n; done; echo ---; \
         nslookup gamma >/dev/null 2>&1 && echo resolved || echo no-gamma; \
         timeout 5 wget -qO- http://{gamma_ip}/ || echo no-route; echo ---; \
         wget -qO- http://{HOST_GATEWAY}:{http}/; echo"
    );
    let o = run_sh(&home, &["--network", "front", "--dns", &dns_ip], &script);
    let s = sections(&ok(&o));
    assert_eq!(
        s[0], "alpha\nalpha\nalpha\nalpha\n",
        "by name, alias, short id: {s:?}"
    );
    assert_eq!(s[1], "no-gamma\nno-route\n", "another network: {s:?}");
    assert_eq!(s[2].trim(), "host", "egress: {s:?}");
    // On the other network, the first box is out of reach too.
    let script = format!(
        "nslookup alpha >/dev/null 2>&1 && echo resolved || echo no-alpha; \
         wget -qO- http://gamma/; timeout 5 wget -qO- http://{alpha_ip}/ || echo no-route"
    );
    let o = run_sh(&home, &["--network", "back", "--dns", &dns_ip], &script);
    assert_eq!(ok(&o), "no-alpha\ngamma\nno-route\n");
    // --internal: the network only, no way out, no default route.
    let script = format!(
        "ip route | grep -c default; timeout 5 wget -qO- http://{HOST_GATEWAY}:{http}/ || echo no-egress"
    );
    let o = run_sh(&home, &["--network", "inside"], &script);
    assert_eq!(stdout(&o), "0\nno-egress\n", "{}", stderr(&o));
    // Names of a box's own network never leave its helper (the alias was
    // only asked on its network).
    assert!(!dns.seen().iter().any(|n| n == "web"), "{:?}", dns.seen());
    // A network in use cannot be removed.
    let o = home.cli(&["network", "rm", "front"]);
    assert_eq!(o.status.code(), Some(125));
    for id in [&alpha, &gamma] {
        ok(&home.cli(&["rm", "-f", id]));
    }
}

#[test]
fn the_egress_allow_list_allows_what_it_names_and_refuses_the_rest() {
    let home = TestHome::new();
    let allowed = http_server("allowed");
    let other = http_server("other");
    let literal = http_server("literal");
    let gw: Ipv4Addr = HOST_GATEWAY.parse().unwrap();
    let dns = TestDns::start(&[("api.test", gw), ("other.test", gw)]);
    let dns_ip = dns.addr.to_string();
    let tcp_query = tcp_query_printf("api.test");
    let script = format!(
        "wget -qO- http://{HOST_GATEWAY}:{allowed}/ 2>&1 | grep -q refused && echo refused-before-lookup; \
         wget -qO- http://api.test:{allowed}/; echo; \
         wget -qO- http://{HOST_GATEWAY}:{allowed}/; echo; \
         wget -qO- http://{HOST_GATEWAY}:{other}/ 2>&1 | grep -q refused && echo other-port-refused; \
         wget -qO- http://{HOST_GATEWAY}:{literal}/; echo; \
         nslookup other.test 2>&1 | grep -q NXDOMAIN && echo other-name-nxdomain; \
         echo ---; \
         timeout 5 nslookup api.test {HOST_GATEWAY} >/dev/null 2>&1 || echo other-server-refused; \
         printf '{tcp_query}' | timeout 5 nc 10.88.0.1 53 | od -An -tu1 | tr -s ' \\n' ' '; echo; \
         timeout 5 nc {HOST_GATEWAY} 53 </dev/null 2>&1 | grep -q refused && echo tcp53-elsewhere-refused; \
         timeout 5 nc {HOST_GATEWAY} 853 </dev/null 2>&1 | grep -q refused && echo dot-refused; \
         timeout 5 nc 169.254.169.254 80 </dev/null 2>&1 | grep -q refused && echo metadata-refused"
    );
    let o = run_sh(
        &home,
        &[
            "--dns",
            &dns_ip,
            "--egress-allow",
            &format!("api.test:{allowed}"),
            "--egress-allow",
            &format!("{HOST_GATEWAY}:{literal}"),
        ],
        &script,
    );
    let s = sections(&ok(&o));
    assert_eq!(
        s[0],
        "refused-before-lookup\nallowed\nallowed\nother-port-refused\nliteral\nother-name-nxdomain\n",
        "{s:?}"
    );
    assert!(
        !dns.seen().contains(&"other.test".to_string()),
        "filtered before forwarding"
    );
    let lines: Vec<&str> = s[1].lines().collect();
    assert_eq!(lines[0], "other-server-refused", "{s:?}");
    assert!(
        lines[1].trim_end().ends_with("169 254 1 1"),
        "DNS over TCP to our resolver answers: {s:?}"
    );
    assert_eq!(
        &lines[2..],
        ["tcp53-elsewhere-refused", "dot-refused", "metadata-refused"],
        "{s:?}"
    );
    // The denied attempts are events (the helper reads its denied sets
    // every two seconds).
    let wanted = [
        "other.test".to_string(),
        format!("{HOST_GATEWAY}:{other}/tcp"),
        format!("{HOST_GATEWAY}:853/tcp"),
        "169.254.169.254:80/tcp".to_string(),
    ];
    let mut events = String::new();
    let all_there = eventually(10, || {
        let o = home.cli(&[
            "events",
            "--since",
            "10m",
            "--until",
            "0s",
            "--filter",
            "event=egress-denied",
            "--format",
            "json",
        ]);
        events = ok(&o);
        wanted.iter().all(|w| events.contains(w)).then_some(())
    });
    assert!(
        all_there.is_some(),
        "not every denied attempt is an event ({wanted:?}):\n{events}"
    );
    // A network's allow-list applies to its boxes.
    ok(&home.cli(&[
        "network",
        "create",
        "--egress-allow",
        &format!("api.test:{allowed}"),
        "guarded",
    ]));
    let script = format!(
        "wget -qO- http://api.test:{allowed}/; echo; \
         wget -qO- http://{HOST_GATEWAY}:{other}/ 2>&1 | grep -q refused && echo refused"
    );
    let o = run_sh(&home, &["--network", "guarded", "--dns", &dns_ip], &script);
    assert_eq!(ok(&o), "allowed\nrefused\n");
}

#[test]
fn twenty_boxes_on_one_network_get_distinct_addresses_and_meet() {
    const BOXES: usize = 20;
    let home = TestHome::new();
    ok(&home.cli(&["network", "create", "crowd"]));
    let ids: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..BOXES)
            .map(|i| {
                let home = &home;
                scope.spawn(move || {
                    let o = home
                        .cmd()
                        .args(["run", "-d", "--cpus", "1", "--memory", "96m"])
                        .args(["--network", "crowd", "--name", &format!("b{i}")])
                        .arg("--rootfs")
                        .arg(rootfs())
                        .args([
                            "--",
                            "sh",
                            "-c",
                            &format!("mkdir /w && echo b{i} > /w/index.html && exec httpd -f -p 80 -h /w"),
                        ])
                        .output()
                        .unwrap();
                    assert_eq!(o.status.code(), Some(0), "b{i}: {}", stderr(&o));
                    stdout(&o).trim().to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips: Vec<String> = ids
        .iter()
        .map(|id| {
            home.inspect(id)["NetworkSettings"]["Networks"]["crowd"]["IPAddress"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), BOXES, "distinct addresses: {ips:?}");
    let script = format!(
        "for i in $(seq 0 {}); do wget -qO- http://b$i/ || echo fail-b$i; done",
        BOXES - 1
    );
    let o = run_sh(&home, &["--network", "crowd"], &script);
    let want: String = (0..BOXES).map(|i| format!("b{i}\n")).collect();
    assert_eq!(ok(&o), want);
    std::thread::scope(|scope| {
        for id in &ids {
            let home = &home;
            scope.spawn(move || ok(&home.cli(&["rm", "-f", id])));
        }
    });
}

#[test]
fn killed_supervisors_vms_and_helpers_leave_nothing_behind() {
    let home = TestHome::new();
    let cmd_env = |c: &mut std::process::Command| {
        c.env("A3S_BOX_NETD_GRACE_SECS", "1");
    };
    let run_d = |extra: &[&str]| {
        let mut c = home.cmd();
        cmd_env(&mut c);
        let o = c
            .args(["run", "-d", "--cpus", "1", "--memory", "96m"])
            .args(extra)
            .arg("--rootfs")
            .arg(rootfs())
            .args(["--", "sleep", "600"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stdout(&o).trim().to_string()
    };
    let running = |id: &str| home.inspect(id)["State"]["Running"].as_bool().unwrap();
    let wait_stopped = |id: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while running(id) {
            assert!(Instant::now() < deadline, "{id} still running");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // The shim.
    let a = run_d(&["-p", "127.0.0.1::80"]);
    let shim = home.inspect(&a)["A3s"]["ShimPid"].as_u64().unwrap();
    common::send_signal(shim, 9);
    wait_stopped(&a);
    // QEMU.
    let b = run_d(&[]);
    let qemu = home.inspect(&b)["State"]["Pid"].as_u64().unwrap();
    common::send_signal(qemu, 9);
    wait_stopped(&b);
    // The network's helper: its boxes are stopped, with the reason.
    let c = run_d(&[]);
    let netd = netd_pid(home.home.path(), "default").expect("the default network's helper");
    common::send_signal(u64::from(netd), 9);
    wait_stopped(&c);
    let error = home.inspect(&c)["State"]["Error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("a3s-box-netd"), "{error}");
    // A new box gets a new helper.
    let d = run_d(&[]);
    assert!(running(&d));
    let ps = ok(&home.cli(&["ps", "-a", "-q"]));
    assert_eq!(ps.lines().count(), 4, "{ps}");
    for id in [&a, &b, &c, &d] {
        ok(&home.cli(&["rm", "-f", id]));
    }
    // Nothing of the home runs: no supervisor, QEMU, helper, host agent
    // or pasta (whose log is in the home); no TAP or namespace without them.
    assert_nothing_survives(home.home.path(), 20);
    let leases = std::fs::read_to_string(home.home.path().join("networks/default/leases.json"))
        .unwrap_or_default();
    assert!(!leases.contains("box_id"), "{leases}");
}

/// The networks `inspect` shows for `key`, sorted.
fn networks_of(home: &TestHome, key: &str) -> Vec<String> {
    let mut names: Vec<String> = home.inspect(key)["NetworkSettings"]["Networks"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The addresses of box `id`'s own lines in its `/etc/hosts`
/// (`ADDRESS<TAB>HOSTNAME`, as Docker's), in order.
fn own_hosts_addresses(home: &TestHome, id: &str) -> Vec<String> {
    let hostname = ok(&home.cli(&["exec", id, "cat", "/etc/hostname"]));
    let hosts = ok(&home.cli(&["exec", id, "cat", "/etc/hosts"]));
    hosts
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, name)| *name == hostname.trim())
        .map(|(address, _)| address.to_string())
        .collect()
}

#[test]
fn connect_disconnect_and_rename_follow_running_boxes() {
    let home = TestHome::new();
    let dns = TestDns::start(&[]);
    let dns_ip = dns.addr.to_string();
    ok(&home.cli(&["network", "create", "meet"]));
    ok(&home.cli(&["network", "create", "third"]));
    let alpha = web_box(
        &home,
        &["--name", "alpha", "--network", "meet", "--dns", &dns_ip],
        "alpha",
    );
    // beta starts on the default network: alpha cannot see it.
    let beta = web_box(&home, &["--name", "beta", "--dns", &dns_ip], "beta");
    // What alpha sees of `names`: the body, or `no-NAME`.
    let from_alpha = |names: &[&str]| {
        let script: String = names
            .iter()
            .map(|n| format!("timeout 5 wget -qO- http://{n}/ || echo no-{n}; "))
            .collect();
        ok(&home.cli(&["exec", &alpha, "sh", "-c", &script]))
    };
    assert_eq!(from_alpha(&["beta"]), "no-beta\n");
    // A running box joins: by name, alias and short id at once.
    let started = Instant::now();
    ok(&home.cli(&["network", "connect", "--alias", "bee", "meet", "beta"]));
    let connect_took = started.elapsed();
    assert_eq!(networks_of(&home, "beta"), ["default", "meet"]);
    let beta_ip = home.inspect("beta")["NetworkSettings"]["Networks"]["meet"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let short = &beta[..12];
    // Its /etc/hosts names it at its address on each network, as Docker's.
    let default_ip = home.inspect("beta")["NetworkSettings"]["Networks"]["default"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        own_hosts_addresses(&home, &beta),
        [default_ip.as_str(), beta_ip.as_str()],
        "/etc/hosts after connect"
    );
    // beta's server may still be starting.
    let seen = eventually(20, || {
        Some(from_alpha(&["beta", "bee", short])).filter(|o| o == "beta\nbeta\nbeta\n")
    });
    assert_eq!(seen.as_deref(), Some("beta\nbeta\nbeta\n"), "after connect");
    // beta asks its first network's server (the default one's), which
    // mirrors meet's boxes for the boxes on meet (within a second).
    let seen = eventually(10, || {
        let script = "timeout 5 wget -qO- http://alpha/ || echo no-alpha";
        Some(ok(&home.cli(&["exec", &beta, "sh", "-c", script]))).filter(|o| o == "alpha\n")
    });
    assert_eq!(seen.as_deref(), Some("alpha\n"), "beta resolves alpha");
    // Its one spare is taken: a third network is refused, nothing changes.
    let o = home.cli(&["network", "connect", "third", "beta"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("no spare NIC left"), "{}", stderr(&o));
    assert_eq!(networks_of(&home, "beta"), ["default", "meet"]);
    // A running box renamed: the new name resolves at once, the old not.
    ok(&home.cli(&["rename", "beta", "gamma"]));
    assert_eq!(from_alpha(&["gamma", "beta"]), "beta\nno-beta\n");
    // It leaves: neither its names nor its address answer any more.
    ok(&home.cli(&["network", "disconnect", "meet", "gamma"]));
    assert_eq!(networks_of(&home, "gamma"), ["default"]);
    assert_eq!(
        own_hosts_addresses(&home, &beta),
        [default_ip.as_str()],
        "/etc/hosts after disconnect"
    );
    assert_eq!(
        from_alpha(&["gamma", "bee", &beta_ip]),
        format!("no-gamma\nno-bee\nno-{beta_ip}\n")
    );
    // Its NIC is a spare again: it can join another network.
    ok(&home.cli(&["network", "connect", "third", "gamma"]));
    assert_eq!(networks_of(&home, "gamma"), ["default", "third"]);
    // Leaving and joining again the network where spares park.
    ok(&home.cli(&["network", "disconnect", "default", "gamma"]));
    assert_eq!(networks_of(&home, "gamma"), ["third"]);
    ok(&home.cli(&["network", "connect", "default", "gamma"]));
    // The spec follows: a restart boots on both networks.
    ok(&home.cli(&["restart", "-t", "1", "gamma"]));
    let v = home.wait_for("gamma", 30, |v| v["State"]["Status"] == "running");
    let nets = &v["NetworkSettings"]["Networks"];
    for net in ["default", "third"] {
        assert!(
            nets[net]["IPAddress"]
                .as_str()
                .is_some_and(|ip| !ip.is_empty()),
            "{net}: {v:#}"
        );
    }
    // Restarted with a spare again, under its new name.
    ok(&home.cli(&["network", "connect", "meet", "gamma"]));
    let seen = eventually(20, || {
        Some(from_alpha(&["gamma"])).filter(|o| o == "beta\n")
    });
    assert_eq!(seen.as_deref(), Some("beta\n"), "after restart and connect");
    eprintln!("network connect of a running box took {connect_took:?}");
    for id in [&alpha, &beta] {
        ok(&home.cli(&["rm", "-f", id]));
    }
}
