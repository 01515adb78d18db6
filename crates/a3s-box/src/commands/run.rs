//! `run` and `create`: flags → [`BoxSpec`] → engine → render.

use a3s_box_core::spec::{
    parse_add_host, parse_dns, parse_dns_option, parse_dns_search, parse_egress, parse_env,
    parse_env_file, parse_expose, parse_labels, parse_memory, parse_mount, parse_networks,
    parse_publish, parse_storage_opt, parse_tmpfs, parse_volume, AccelChoice, BoxSpec,
    ContainerSpec, EnvVar, MacAddr, NetworkSpec, ProcessSpec, Resources, RootSource, SpecError,
    StorageSpec, VmOptions, VolumesFrom,
};
use a3s_box_runtime::manager::resolve::PullOptions;
use a3s_box_runtime::manager::{Engine, RemoveOptions};
use a3s_box_runtime::state::BoxRecord;
use anyhow::{anyhow, bail, Result};

use super::{engine, exit_code};
use crate::cli::{RunArgs, RunNetworkArgs};

/// The caller's environment, for `-e NAME` and `--env-file` lines without a value.
fn lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `--env-file` files, then `-e` (later settings win, as in Docker). The
/// files are read here, on the client side, as Docker's CLI does.
pub fn env_vars(env_files: &[std::path::PathBuf], env: &[String]) -> Result<Vec<EnvVar>> {
    let mut vars = Vec::new();
    for file in env_files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow!("--env-file {}: {e}", file.display()))?;
        vars.extend(parse_env_file(&text, lookup)?);
    }
    vars.extend(parse_env(env, lookup)?);
    Ok(vars)
}

/// Environment pairs for requests that take them as such (`exec`).
pub fn env_items(
    env_files: &[std::path::PathBuf],
    env: &[String],
) -> Result<Vec<(String, String)>> {
    Ok(env_vars(env_files, env)?
        .into_iter()
        .map(|v| (v.name, v.value))
        .collect())
}

/// `KEY=VALUE` labels.
pub fn parse_labels_flag(items: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
    Ok(parse_labels(items)?)
}

/// What clap could not tell: a flag it does not know, placed before the
/// image, lands in the positional arguments.
fn check_not_a_flag(word: &str) -> Result<()> {
    if word.starts_with('-') && word.len() > 1 {
        let flag = word.split_once('=').map_or(word, |(f, _)| f);
        bail!("unknown flag: {flag}\nSee 'a3s-box run --help'.");
    }
    Ok(())
}

fn cli(e: SpecError) -> anyhow::Error {
    anyhow::Error::from(a3s_box_core::BoxError::from(e.for_cli()))
}

/// The network flags as a [`NetworkSpec`] (checked as a whole by the
/// spec's validation).
pub fn network_spec(n: &RunNetworkArgs) -> Result<NetworkSpec> {
    let mut spec = NetworkSpec {
        mode: parse_networks(&n.networks, &n.network_aliases, n.ip.as_deref())?,
        publish_all: n.publish_all,
        ..NetworkSpec::default()
    };
    for p in &n.publish {
        spec.ports.extend(parse_publish(p)?);
    }
    for e in &n.expose {
        spec.expose.extend(parse_expose(e)?);
    }
    for d in &n.dns {
        spec.dns.servers.push(parse_dns(d)?);
    }
    for d in &n.dns_search {
        spec.dns.search.push(parse_dns_search(d)?);
    }
    for o in &n.dns_options {
        spec.dns.options.push(parse_dns_option(o)?);
    }
    for h in &n.add_hosts {
        spec.extra_hosts.push(parse_add_host(h)?);
    }
    for r in &n.egress_allow {
        spec.egress.push(parse_egress(r)?);
    }
    spec.mac_address = n
        .mac_address
        .as_deref()
        .map(str::parse::<MacAddr>)
        .transpose()?;
    Ok(spec)
}

/// Turn `run`/`create` flags into a box spec, validated (errors name the flag).
pub fn box_spec(args: &RunArgs) -> Result<BoxSpec> {
    let (root, command) = match &args.rootfs {
        Some(dir) => {
            // `--rootfs R --gpus all -- sh` reaches us as `--gpus all -- sh`.
            // With an entrypoint, arguments may start with '-' (`sh -c …`).
            if let (Some(first), None) = (args.args.first(), &args.entrypoint) {
                check_not_a_flag(first)?;
            }
            let path = std::path::absolute(dir)?;
            (RootSource::Dir { path }, args.args.clone())
        }
        None => {
            let Some((image, rest)) = args.args.split_first() else {
                bail!(
                    "no image given: a3s-box run [OPTIONS] IMAGE [COMMAND] [ARG...], \
                     or --rootfs DIR -- COMMAND"
                );
            };
            check_not_a_flag(image)?;
            let root = RootSource::Image {
                reference: image.clone(),
                digest: None,
            };
            (root, rest.to_vec())
        }
    };
    let process = ProcessSpec {
        args: command,
        env: env_vars(&args.env_file, &args.env)?,
        cwd: args.workdir.clone(),
        user: args.user.clone(),
        tty: args.tty,
        stdin: args.interactive,
    };
    let s = &args.storage;
    let mut mounts = Vec::new();
    for v in &s.volumes {
        mounts.push(parse_volume(v)?);
    }
    for m in &s.mounts {
        mounts.push(parse_mount(m)?);
    }
    for t in &s.tmpfs {
        mounts.push(parse_tmpfs(t)?);
    }
    let mut layer_size_bytes = None;
    for opt in &s.storage_opts {
        layer_size_bytes = Some(parse_storage_opt(opt)?);
    }
    let mut container = ContainerSpec::new(root, process);
    container.name = args.name.clone();
    container.labels = parse_labels(&args.labels)?;
    container.entrypoint = args.entrypoint.as_ref().map(|e| match e.is_empty() {
        true => vec![],
        false => vec![e.clone()],
    });
    container.storage = StorageSpec {
        mounts,
        read_only: s.read_only,
        layer_size_bytes,
        volumes_from: s
            .volumes_from
            .iter()
            .map(|v| v.parse::<VolumesFrom>())
            .collect::<Result<_, _>>()?,
    };
    container.restart = args.restart.parse()?;
    container.auto_remove = args.rm;
    let mut spec = BoxSpec::single(container);
    spec.sandbox.hostname = args.hostname.clone();
    spec.sandbox.network = network_spec(&args.network)?;
    spec.sandbox.pod = args.pod.clone();
    spec.sandbox.resources = Resources {
        vcpus: args.cpus,
        memory_mib: parse_memory(&args.memory)?,
        ..Resources::default()
    };
    spec.sandbox.vm = VmOptions {
        accel: args.vm.accel.parse::<AccelChoice>()?,
        kernel: args
            .vm
            .kernel
            .as_deref()
            .map(std::path::absolute)
            .transpose()?,
        debug_guest: args.debug_guest,
    };
    spec.validate().map_err(cli)?;
    Ok(spec)
}

fn pull_options(args: &RunArgs) -> Result<PullOptions> {
    Ok(PullOptions {
        policy: args.pull.parse()?,
        progress: true,
    })
}

/// Record a box from `run`/`create` flags.
pub async fn create(engine: &Engine, args: &RunArgs) -> Result<BoxRecord> {
    Ok(engine.create(box_spec(args)?, pull_options(args)?).await?)
}

/// `run`: the exit code for the CLI.
pub async fn run(args: RunArgs) -> Result<u8> {
    let spec = box_spec(&args)?;
    let pull = pull_options(&args)?;
    let engine = engine()?;
    let interactive = args.interactive || args.tty;
    let anonymous = args.name.is_none() && args.labels.is_empty() && args.pod.is_none();
    if args.rm && !args.detach && !interactive && anonymous {
        // An anonymous throw-away box: supervised right here, nothing stored.
        return Ok(exit_code(engine.run_foreground(spec, pull).await?));
    }
    let id = engine.create(spec, pull).await?.config.id;
    // An `--rm` box is held until its exit code and output are read.
    let mut watch = engine.watch_exit(&id)?;
    let started = match args.detach {
        true => engine.start(&id).await?,
        false => engine.start_watched(&mut watch).await?,
    };
    if let Err(failed) = started {
        eprintln!("a3s-box: {}", failed.reason);
        drop(watch);
        if args.rm {
            let force = RemoveOptions {
                force: true,
                volumes: false,
            };
            let _ = engine.remove(&id, force).await;
        }
        return Ok(exit_code(failed.code));
    }
    if args.detach {
        println!("{id}");
        return Ok(0);
    }
    if interactive {
        return super::exec::attach_to(&engine, watch, args.interactive, true).await;
    }
    forward_signals(&engine, &id);
    let code = engine
        .follow_to_exit(watch, &mut super::logs::print_line(false))
        .await?;
    Ok(exit_code(code))
}

/// Forward INT, TERM, HUP and QUIT to the box while its output is followed,
/// as `docker run` does.
fn forward_signals(engine: &Engine, id: &str) {
    use tokio::signal::unix::{signal, SignalKind};
    for (num, kind) in [
        (libc::SIGINT, SignalKind::interrupt()),
        (libc::SIGTERM, SignalKind::terminate()),
        (libc::SIGHUP, SignalKind::hangup()),
        (libc::SIGQUIT, SignalKind::quit()),
    ] {
        let Ok(mut stream) = signal(kind) else {
            continue;
        };
        let (engine, id) = (engine.clone(), id.to_string());
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                let _ = engine.kill(&id, num).await;
            }
        });
    }
}
