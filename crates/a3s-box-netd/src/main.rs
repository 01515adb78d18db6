//! `a3s-box-netd NETWORK_DIR [--pasta PATH] [--grace-secs N] [--no-map-gw]`:
//! the helper of one network (`$A3S_HOME/networks/<name>`).
//!
//! Started (detached) by the supervisor of the network's first box, it
//! holds the network's namespace by existing: the bridge, the uplink
//! (pasta), the DNS server, the nft rules and every box's TAP rules live
//! there and go with it. Before any thread exists it takes the network's
//! `netd.lock` (a second helper finds it held and says `busy`), forks its
//! host agent ([`agent`]), leaves the host's network namespace
//! ([`netns`]) and builds the namespace ([`rtnl`], [`rules`]); then it
//! starts pasta through the agent, relays boxes' TCP to the host gateway
//! ([`gateway`]), serves DNS and answers supervisors on `netd.sock`
//! ([`server`]). It exits when its last box has been gone for
//! the grace period, when its network is removed, or when its uplink
//! dies. See `docs/networking.md`.
//!
//! The starter learns the outcome on the descriptor named by
//! `A3S_NETD_READY_FD`: one line, `ok`, `busy` or `fail REASON`.

mod agent;
mod boxes;
mod gateway;
mod netns;
mod rtnl;
mod rules;
mod server;
mod tap;

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, FromRawFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use a3s_box_runtime::launch::Launcher;
use a3s_box_runtime::network::dataplane::wire::{
    HOST_GATEWAY, NETD_LOCK, NETD_LOG, NETWORK_MTU, UPLINK_ADDR, UPLINK_PREFIX,
};
use a3s_box_runtime::network::store::{NetworkRecord, NETWORK_FILE};
use nix::fcntl::{Flock, FlockArg};

use agent::{Agent, PastaCommand};

/// The descriptor the starter reads the outcome from.
const ENV_READY_FD: &str = "A3S_NETD_READY_FD";
/// How long pasta gets to configure the uplink.
const UPLINK_WAIT: Duration = Duration::from_secs(5);

/// What the command line says.
#[derive(Debug, Clone)]
pub struct Options {
    /// The network's directory.
    pub dir: PathBuf,
    /// pasta.
    pub pasta: PathBuf,
    /// How long the helper stays after its last box.
    pub grace: Duration,
    /// Map the uplink's gateway to the host's loopback (`host-gateway`).
    pub map_host_gateway: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args_os().skip(1);
    let dir = args
        .next()
        .map(PathBuf::from)
        .ok_or("usage: a3s-box-netd NETWORK_DIR [--pasta PATH] [--grace-secs N] [--no-map-gw]")?;
    let mut options = Options {
        dir,
        pasta: "pasta".into(),
        grace: Duration::from_secs(5),
        map_host_gateway: true,
    };
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--pasta") => options.pasta = args.next().ok_or("--pasta needs a path")?.into(),
            Some("--grace-secs") => {
                let secs = args.next().and_then(|s| s.to_str()?.parse::<u64>().ok());
                options.grace = Duration::from_secs(secs.ok_or("--grace-secs needs seconds")?);
            }
            Some("--no-map-gw") => options.map_host_gateway = false,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(options)
}

/// Where the outcome goes.
struct Ready(Option<File>);

impl Ready {
    fn from_env() -> Self {
        let fd = std::env::var(ENV_READY_FD)
            .ok()
            .and_then(|v| v.parse::<i32>().ok());
        // SAFETY: the starter passed this descriptor open for us alone; it
        // is made close-on-exec so pasta does not inherit it.
        Ready(fd.map(|fd| unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            File::from_raw_fd(fd)
        }))
    }

    fn say(&mut self, line: &str) {
        if let Some(mut file) = self.0.take() {
            let _ = writeln!(file, "{line}");
        }
    }
}

fn main() -> ExitCode {
    let mut ready = Ready::from_env();
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("a3s-box-netd: {e}");
            ready.say(&format!("fail {e}"));
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match run(options, &mut ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ready.say(&format!("fail {e}"));
            ExitCode::from(1)
        }
    }
}

fn run(options: Options, ready: &mut Ready) -> Result<(), String> {
    let started = Instant::now();
    let record: NetworkRecord = {
        let path = options.dir.join(NETWORK_FILE);
        let bytes = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("read {}: {e}", path.display()))?
    };
    let lock_path = options.dir.join(NETD_LOCK);
    let lock_file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("open {}: {e}", lock_path.display()))?;
    let Ok(lock) = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) else {
        ready.say("busy");
        return Ok(());
    };
    // The agent stays in the host's namespaces: fork it first.
    let launcher = Launcher::with_env(std::env::vars_os().collect());
    let agent = Agent::fork(launcher).map_err(|e| format!("start the host agent: {e}"))?;
    let mode = netns::Mode::of_process();
    let ns = netns::unshare(mode).map_err(|e| e.to_string())?;
    let block = record.block().map_err(|e| e.to_string())?;
    build_namespace(&record, block.prefix_len())
        .map_err(|e| format!("network {}: {e}", record.name))?;
    let uplink = if record.internal {
        None
    } else {
        let mut args: Vec<String> = ["-f", "-q", "-4", "--config-net", "-I", "up0", "-a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend([
            UPLINK_ADDR.to_string(),
            "-n".into(),
            UPLINK_PREFIX.to_string(),
            "-g".into(),
            HOST_GATEWAY.to_string(),
        ]);
        args.extend(
            [
                "-t",
                "none",
                "-u",
                "none",
                "-T",
                "none",
                "-U",
                "none",
                "--no-dhcp",
                "--no-ndp",
                "--no-ra",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        if !options.map_host_gateway {
            args.push("--no-map-gw".into());
        }
        match mode {
            netns::Mode::Root => args.extend(["--runas".into(), "0:0".into()]),
            netns::Mode::Rootless => {
                args.extend(["--userns".into(), "/proc/self/fd/4".into()]);
            }
        }
        args.extend(["--netns".into(), "/proc/self/fd/3".into()]);
        let command = PastaCommand {
            program: options.pasta.clone(),
            args,
            log: options.dir.join(NETD_LOG),
        };
        let pid = agent
            .start_pasta(&command, ns.net.as_fd(), ns.user.as_ref().map(AsFd::as_fd))
            .map_err(|e| format!("start the uplink (pasta): {e}"))?;
        wait_for_uplink(pid)?;
        Some(pid)
    };
    tracing::info!(
        network = %record.name,
        ?mode,
        agent = agent.pid(),
        uplink = ?uplink,
        ms = started.elapsed().as_millis() as u64,
        "namespace ready"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("start the runtime: {e}"))?;
    let setup = server::Setup {
        options,
        record,
        agent,
        pasta: uplink,
        lock,
    };
    runtime.block_on(server::serve(setup, ready))
}

impl server::ReadySink for Ready {
    fn ready(&mut self, line: &str) {
        self.say(line);
    }
}

/// Loopback, the bridge with the gateway address, the sysctls and the
/// base rules.
fn build_namespace(record: &NetworkRecord, prefix_len: u8) -> Result<(), String> {
    let mut rtnl = rtnl::Rtnl::open().map_err(|e| format!("netlink: {e}"))?;
    let lo = rtnl::index("lo").map_err(|e| format!("lo: {e}"))?;
    rtnl.set_link(
        lo,
        rtnl::LinkChange {
            up: true,
            ..Default::default()
        },
    )
    .map_err(|e| format!("bring up lo: {e}"))?;
    // A fixed MAC: a bridge otherwise takes its lowest port's, and boxes'
    // ARP caches go stale as boxes come and go.
    let id = record.id.as_bytes();
    let hex = |i: usize| {
        std::str::from_utf8(id.get(i..i + 2).unwrap_or(b"00"))
            .ok()
            .and_then(|s| u8::from_str_radix(s, 16).ok())
            .unwrap_or(0)
    };
    let mac = [0x02, 0xa3, hex(0), hex(2), hex(4), hex(6)];
    rtnl.add_bridge(rules::BRIDGE, NETWORK_MTU, mac)
        .map_err(|e| format!("create the bridge: {e}"))?;
    let br = rtnl::index(rules::BRIDGE).map_err(|e| format!("bridge: {e}"))?;
    rtnl.add_ipv4(br, record.gateway, prefix_len)
        .map_err(|e| format!("address {}/{prefix_len} on the bridge: {e}", record.gateway))?;
    rtnl.set_link(
        br,
        rtnl::LinkChange {
            up: true,
            ..Default::default()
        },
    )
    .map_err(|e| format!("bring up the bridge: {e}"))?;
    netns::sysctls().map_err(|e| e.to_string())?;
    a3s_box_runtime::network::egress::Nft::new(a3s_box_runtime::network::egress::Netns::Current)
        .apply(&rules::base(record.internal))
        .map_err(|e| format!("load the base rules: {e}"))?;
    Ok(())
}

/// Wait until pasta has given the uplink its address.
fn wait_for_uplink(pid: u32) -> Result<(), String> {
    let deadline = Instant::now() + UPLINK_WAIT;
    loop {
        if has_address(rules::UPLINK, UPLINK_ADDR) {
            return Ok(());
        }
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err("pasta exited before the uplink was up (see netd.log)".into());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "pasta did not configure the uplink within {UPLINK_WAIT:?} (see netd.log)"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether link `name` has `addr` (`SIOCGIFADDR`).
fn has_address(name: &str, addr: Ipv4Addr) -> bool {
    // SAFETY: plain integer arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: a new descriptor nothing else owns.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: SIOCGIFADDR fills the address member of a valid ifreq.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::SIOCGIFADDR as _,
            &mut req as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return false;
    }
    // SAFETY: SIOCGIFADDR filled in an AF_INET address.
    let sin: libc::sockaddr_in = unsafe { std::mem::transmute(req.ifr_ifru.ifru_addr) };
    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)) == addr
}
