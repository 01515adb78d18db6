//! `a3s-box run`.

use std::collections::BTreeMap;

use a3s_box_core::status::RestartPolicy;
use a3s_box_core::units::parse_memory_mib;
use a3s_box_runtime::home::Home;
use a3s_box_runtime::image::config::RunOverrides;
use a3s_box_runtime::manager::{run_foreground, BoxManager, PullPolicy, RunOptions};
use a3s_box_runtime::state::BoxRecord;
use a3s_box_runtime::vmm::AccelChoice;
use anyhow::{bail, Result};

use crate::cli::RunArgs;

/// `-e KEY=VALUE` sets; `-e KEY` copies KEY from our environment (skipped if unset).
fn parse_env(items: &[String]) -> Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    for item in items {
        match item.split_once('=') {
            Some(("", _)) => bail!("invalid -e {item:?}: the variable name is empty"),
            Some((k, v)) => env.push((k.to_string(), v.to_string())),
            None if item.is_empty() => bail!("invalid -e \"\": use KEY=VALUE"),
            None => {
                if let Ok(v) = std::env::var(item) {
                    env.push((item.clone(), v));
                }
            }
        }
    }
    Ok(env)
}

/// `--env-file` files, then `-e` (later settings win, as in Docker).
fn env_from(args: &RunArgs) -> Result<Vec<(String, String)>> {
    env_items(&args.env_file, &args.env)
}

/// The variables of `--env-file` files, then of `-e` flags.
pub fn env_items(
    env_files: &[std::path::PathBuf],
    env: &[String],
) -> Result<Vec<(String, String)>> {
    let mut items = Vec::new();
    for file in env_files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("--env-file {}: {e}", file.display()))?;
        items.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    items.extend(env.iter().cloned());
    parse_env(&items)
}

/// What the box boots and runs: a root directory and a process.
struct Root {
    dir: std::path::PathBuf,
    image: Option<String>,
    command: Vec<String>,
    env: Vec<(String, String)>,
    workdir: Option<String>,
    user: Option<String>,
}

/// `--rootfs DIR -- CMD...`, or `IMAGE [CMD...]` merged with the image's
/// config as Docker does (pulled per `--pull`).
async fn root(args: &RunArgs, env: Vec<(String, String)>) -> Result<Root> {
    if let Some(dir) = &args.rootfs {
        return Ok(Root {
            dir: std::path::absolute(dir)?,
            image: None,
            command: args.entrypoint.iter().chain(&args.args).cloned().collect(),
            env,
            workdir: args.workdir.clone(),
            user: args.user.clone(),
        });
    }
    let Some((image, rest)) = args.args.split_first() else {
        bail!("no image given: a3s-box run [OPTIONS] IMAGE [COMMAND] [ARG...], or --rootfs DIR -- COMMAND");
    };
    let overrides = RunOverrides {
        entrypoint: args.entrypoint.as_ref().map(|e| {
            if e.is_empty() {
                vec![]
            } else {
                vec![e.clone()]
            }
        }),
        args: rest.to_vec(),
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        working_dir: args.workdir.clone(),
        user: args.user.clone(),
    };
    let policy: PullPolicy = args.pull.parse()?;
    let (dir, spec) = super::image::resolve_for_run(image, policy, overrides).await?;
    Ok(Root {
        dir,
        image: Some(image.clone()),
        command: spec.argv,
        env: spec
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect(),
        workdir: Some(spec.working_dir),
        user: (!spec.user.is_empty()).then_some(spec.user),
    })
}

/// Turn `run`/`create` flags into the box's options.
pub async fn options(args: &RunArgs) -> Result<RunOptions> {
    // Flags first: a bad flag is refused before anything is pulled.
    let memory_mib = parse_memory_mib(&args.memory)?;
    args.vm.accel.parse::<AccelChoice>()?;
    let mut env = env_from(args)?;
    if args.tty && !env.iter().any(|(k, _)| k == "TERM") {
        // As Docker does for `-t`.
        env.push(("TERM".into(), "xterm".into()));
    }
    let root = root(args, env).await?;
    let storage = super::volume::options(&args.storage, root.image.as_deref()).await?;
    let options = RunOptions {
        rootfs_dir: root.dir,
        image: root.image,
        command: root.command,
        env: root.env,
        workdir: root.workdir,
        user: root.user,
        vcpus: args.cpus,
        memory_mib,
        kernel: args.vm.kernel.clone(),
        accel: args.vm.accel.clone(),
        hostname: args.hostname.clone(),
        debug: args.debug_guest,
        stdin: args.interactive,
        tty: args.tty,
        storage,
        builtin: false,
    };
    if options.command.is_empty() {
        bail!("no command given: add -- CMD [ARGS...]");
    }
    Ok(options)
}

/// `KEY=VALUE` labels.
pub fn parse_labels(items: &[String]) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|l| match l.split_once('=') {
            Some(("", _)) => bail!("invalid label {l:?}: the key is empty"),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None if l.is_empty() => bail!("invalid label \"\": use KEY=VALUE"),
            None => Ok((l.clone(), String::new())),
        })
        .collect()
}

/// Record a box from `run`/`create` flags.
pub async fn create(manager: &BoxManager, args: &RunArgs) -> Result<BoxRecord> {
    let restart: RestartPolicy = args.restart.parse()?;
    if args.rm && restart != RestartPolicy::No {
        bail!("--rm and --restart {restart} cannot be used together");
    }
    Ok(manager.create(
        options(args).await?,
        args.name.clone(),
        parse_labels(&args.labels)?,
        restart,
        args.rm,
    )?)
}

/// Run and return the exit code for the CLI.
pub async fn run(args: RunArgs) -> Result<i32> {
    let home = Home::from_env()?;
    let interactive = args.interactive || args.tty;
    if args.rm && !args.detach && !interactive && args.name.is_none() && args.labels.is_empty() {
        // An anonymous throw-away box: supervised right here, nothing stored.
        return Ok(run_foreground(&home, options(&args).await?).await?);
    }
    let manager = BoxManager::new(&home);
    let record = create(&manager, &args).await?;
    // An `--rm` box is held until its exit code and output are read.
    let hold = match args.detach {
        true => None,
        false => manager.hold_end(&record)?,
    };
    match manager.start(&record)? {
        Ok(()) => {}
        Err(failed) => {
            eprintln!("a3s-box: {}", failed.reason);
            drop(hold);
            if args.rm {
                let _ = manager.remove(&manager.store().get(&record.config.id)?, true);
            }
            return Ok(failed.code);
        }
    }
    if args.detach {
        println!("{}", record.config.id);
        return Ok(0);
    }
    if interactive {
        let record = manager.store().get(&record.config.id)?;
        let code =
            super::exec::attach_to(&manager, &record, args.interactive, args.tty, true).await?;
        tokio::task::spawn_blocking(move || manager.finish_wait(&record, hold)).await?;
        return Ok(i32::from(code));
    }
    forward_signals(&manager, &record.config.id);
    tokio::task::spawn_blocking(move || super::logs::follow_until_exit(&manager, &record, 0, hold))
        .await?
}

/// Forward INT, TERM, HUP and QUIT to the box while its output is followed,
/// as `docker run` does.
fn forward_signals(manager: &BoxManager, id: &str) {
    use tokio::signal::unix::{signal, SignalKind};
    for (num, kind) in [
        ("INT", SignalKind::interrupt()),
        ("TERM", SignalKind::terminate()),
        ("HUP", SignalKind::hangup()),
        ("QUIT", SignalKind::quit()),
    ] {
        let num = a3s_box_core::parse_signal_name(num);
        let Ok(mut stream) = signal(kind) else {
            continue;
        };
        let (manager, id) = (manager.clone(), id.to_string());
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if let Ok(record) = manager.store().get(&id) {
                    let _ = manager.kill(&record, num);
                }
            }
        });
    }
}
