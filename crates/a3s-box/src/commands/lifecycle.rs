//! `create`, `start`, `stop`, `restart`, `kill`, `pause`, `unpause`,
//! `rename`, `prune`, `rm`, `wait`, `inspect`: parse → engine → render.

use std::time::Duration;

use a3s_box_runtime::manager::{Engine, RemoveOptions, WaitCondition};
use anyhow::{bail, Result};

use super::{engine, exit_code, EXIT_BOX_ERROR};
use crate::cli::{BoxesArgs, KillArgs, RenameArgs, RmArgs, RunArgs, StartArgs, StopArgs};

/// Apply `op` to every box; report each failure, and fail if any failed.
async fn each<F, Fut>(boxes: &[String], mut op: F) -> Result<u8>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut failed = false;
    for key in boxes {
        if let Err(e) = op(key.clone()).await {
            eprintln!("a3s-box: {key}: {e:#}");
            failed = true;
        }
    }
    Ok(if failed { EXIT_BOX_ERROR } else { 0 })
}

/// `create`: print the new id.
pub async fn create(args: RunArgs) -> Result<u8> {
    let engine = engine()?;
    let record = super::run::create(&engine, &args).await?;
    println!("{}", record.config.id);
    Ok(0)
}

/// `start` (`-a`: follow the box's output and exit with its code).
pub async fn start(args: StartArgs) -> Result<u8> {
    let engine = engine()?;
    if args.attach {
        let [key] = args.boxes.as_slice() else {
            bail!("start -a takes exactly one box");
        };
        let mut watch = engine.watch_exit(key)?;
        if let Err(failed) = engine.start_watched(&mut watch).await? {
            eprintln!("a3s-box: {}", failed.reason);
            return Ok(exit_code(failed.code));
        }
        let code = engine
            .follow_to_exit(watch, &mut super::logs::print_line(false))
            .await?;
        return Ok(exit_code(code));
    }
    each(&args.boxes, |key| {
        let engine = engine.clone();
        async move {
            if let Err(failed) = engine.start(&key).await? {
                bail!("{}", failed.reason);
            }
            println!("{key}");
            Ok(())
        }
    })
    .await
}

/// `stop -t`: seconds, or -1 for as long as the workload takes (a day).
fn grace(secs: i64) -> Duration {
    match u64::try_from(secs) {
        Ok(s) => Duration::from_secs(s),
        Err(_) => Duration::from_secs(24 * 3600),
    }
}

/// `stop`.
pub async fn stop(args: StopArgs) -> Result<u8> {
    let engine = engine()?;
    let timeout = grace(args.time);
    each(&args.boxes, |key| {
        let engine = engine.clone();
        async move {
            engine.stop(&key, timeout).await?;
            println!("{key}");
            Ok(())
        }
    })
    .await
}

/// `restart`: stop (with the grace period) then start.
pub async fn restart(args: StopArgs) -> Result<u8> {
    let engine = engine()?;
    let timeout = grace(args.time);
    each(&args.boxes, |key| {
        let engine = engine.clone();
        async move {
            if let Err(failed) = engine.restart(&key, timeout).await? {
                bail!("{}", failed.reason);
            }
            println!("{key}");
            Ok(())
        }
    })
    .await
}

/// `kill`.
pub async fn kill(args: KillArgs) -> Result<u8> {
    let signal: a3s_box_core::spec::Signal = args.signal.parse()?;
    let engine = engine()?;
    each(&args.boxes, |key| {
        let engine = engine.clone();
        async move {
            engine.kill(&key, signal.number()).await?;
            println!("{key}");
            Ok(())
        }
    })
    .await
}

/// `pause`.
pub async fn pause(args: BoxesArgs) -> Result<u8> {
    let engine = engine()?;
    each(&args.boxes, |key| {
        let engine = engine.clone();
        async move {
            engine.pause(&key).await?;
            println!("{key}");
            Ok(())
        }
    })
    .await
}

/// `unpause`.
pub async fn unpause(args: BoxesArgs) -> Result<u8> {
    let engine = engine()?;
    each(&args.boxes, |key| {
        let engine = engine.clone();
        async move {
            engine.unpause(&key).await?;
            println!("{key}");
            Ok(())
        }
    })
    .await
}

/// `rename`.
pub async fn rename(args: RenameArgs) -> Result<u8> {
    engine()?.rename(&args.r#box, &args.new_name).await?;
    Ok(0)
}

/// `prune` (and, with `system`, the cached root images and unused images).
pub fn prune(system: bool) -> Result<u8> {
    let engine = engine()?;
    println!("Deleted boxes:");
    for id in engine.prune()? {
        println!("{id}");
    }
    if system {
        let report = engine.system_prune()?;
        println!(
            "Total reclaimed space from root image cache: {:.1} MiB",
            report.root_cache_bytes as f64 / 1048576.0
        );
        println!(
            "Unused images: {} blobs ({:.1} MiB) and {} unpacked roots removed",
            report.images.blobs,
            report.images.bytes as f64 / 1048576.0,
            report.images.rootfs_dirs
        );
    }
    Ok(0)
}

/// `rm`.
pub async fn rm(args: RmArgs) -> Result<u8> {
    let engine = engine()?;
    let opts = RemoveOptions {
        force: args.force,
        volumes: args.volumes,
    };
    each(&args.boxes, |key| {
        let engine = engine.clone();
        async move {
            engine.remove(&key, opts).await?;
            println!("{key}");
            Ok(())
        }
    })
    .await
}

/// `wait`: print each exit code; exit with the last one.
pub async fn wait(args: BoxesArgs) -> Result<u8> {
    let engine: Engine = engine()?;
    let mut last = 0;
    for key in &args.boxes {
        let code = engine.wait(key, WaitCondition::NotRunning).await?;
        println!("{code}");
        last = code;
    }
    Ok(exit_code(last))
}

/// `inspect`: a JSON array, Docker's field names.
pub fn inspect(args: BoxesArgs) -> Result<u8> {
    let engine = engine()?;
    let views = args
        .boxes
        .iter()
        .map(|key| engine.inspect(key))
        .collect::<a3s_box_core::Result<Vec<_>>>()?;
    println!("{}", serde_json::to_string_pretty(&views)?);
    Ok(0)
}
