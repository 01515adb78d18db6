//! `create`, `start`, `stop`, `kill`, `rm`, `wait`, `inspect`.

use std::time::Duration;

use a3s_box_runtime::home::Home;
use a3s_box_runtime::manager::BoxManager;
use anyhow::{bail, Result};

use crate::cli::{BoxesArgs, KillArgs, RenameArgs, RmArgs, RunArgs, StartArgs, StopArgs};

fn manager() -> Result<BoxManager> {
    Ok(BoxManager::new(&Home::from_env()?))
}

/// Apply `op` to every box; report each failure, and fail if any failed.
fn each(boxes: &[String], mut op: impl FnMut(&str) -> Result<()>) -> Result<u8> {
    let mut failed = false;
    for key in boxes {
        if let Err(e) = op(key) {
            eprintln!("a3s-box: {key}: {e:#}");
            failed = true;
        }
    }
    Ok(if failed { super::EXIT_BOX_ERROR } else { 0 })
}

/// `create`: print the new id.
pub async fn create(args: RunArgs) -> Result<u8> {
    let manager = manager()?;
    let record = super::run::create(&manager, &args).await?;
    println!("{}", record.config.id);
    Ok(0)
}

/// `start` (`-a`: follow the box's output and exit with its code).
pub fn start(args: StartArgs) -> Result<u8> {
    let manager = manager()?;
    if args.attach {
        let [key] = args.boxes.as_slice() else {
            bail!("start -a takes exactly one box");
        };
        let record = manager.store().get(key)?;
        // Only this run's output: mark where the log ends before it starts.
        let offset = super::logs::log_end(&manager, &record.config.id)?;
        let hold = manager.hold_end(&record)?;
        if let Err(failed) = manager.start(&record)? {
            eprintln!("a3s-box: {}", failed.reason);
            return Ok(u8::try_from(failed.code).unwrap_or(super::EXIT_BOX_ERROR));
        }
        let code = super::logs::follow_until_exit(&manager, &record, offset, hold)?;
        return Ok(u8::try_from(code.rem_euclid(256)).unwrap_or(super::EXIT_BOX_ERROR));
    }
    each(&args.boxes, |key| {
        let record = manager.store().get(key)?;
        if let Err(failed) = manager.start(&record)? {
            bail!("{}", failed.reason);
        }
        println!("{key}");
        Ok(())
    })
}

/// `stop`.
pub fn stop(args: StopArgs) -> Result<u8> {
    let manager = manager()?;
    each(&args.boxes, |key| {
        let record = manager.store().get(key)?;
        manager.stop(&record, Duration::from_secs(args.time))?;
        println!("{key}");
        Ok(())
    })
}

/// `restart`: stop (with the grace period) then start.
pub fn restart(args: StopArgs) -> Result<u8> {
    let manager = manager()?;
    each(&args.boxes, |key| {
        let record = manager.store().get(key)?;
        manager.stop(&record, Duration::from_secs(args.time))?;
        let record = manager.store().get(key)?;
        if let Err(failed) = manager.start(&record)? {
            bail!("{}", failed.reason);
        }
        println!("{key}");
        Ok(())
    })
}

/// `kill`.
pub fn kill(args: KillArgs) -> Result<u8> {
    let signal = parse_signal_strict(&args.signal)?;
    let manager = manager()?;
    each(&args.boxes, |key| {
        let record = manager.store().get(key)?;
        manager.kill(&record, signal)?;
        println!("{key}");
        Ok(())
    })
}

/// A signal name or number; unknown names are an error (unlike the lenient
/// parser of the VMM contract, which falls back to SIGTERM).
fn parse_signal_strict(text: &str) -> Result<i32> {
    let n = a3s_box_core::parse_signal_name(text);
    let upper = text.trim().to_ascii_uppercase();
    let known = n != 15 || matches!(upper.as_str(), "TERM" | "SIGTERM" | "15");
    if !known || !(1..=64).contains(&n) {
        bail!("invalid signal {text:?}: use a name such as TERM, KILL, HUP, INT or a number 1-64");
    }
    Ok(n)
}

/// `pause`.
pub fn pause(args: BoxesArgs) -> Result<u8> {
    let manager = manager()?;
    each(&args.boxes, |key| {
        manager.pause(&manager.store().get(key)?)?;
        println!("{key}");
        Ok(())
    })
}

/// `unpause`.
pub fn unpause(args: BoxesArgs) -> Result<u8> {
    let manager = manager()?;
    each(&args.boxes, |key| {
        manager.unpause(&manager.store().get(key)?)?;
        println!("{key}");
        Ok(())
    })
}

/// `rename`.
pub fn rename(args: RenameArgs) -> Result<u8> {
    let manager = manager()?;
    let record = manager.store().get(&args.r#box)?;
    manager.rename(&record, &args.new_name)?;
    Ok(0)
}

/// `prune` (and, with `system`, the cached root images too).
pub fn prune(system: bool) -> Result<u8> {
    let home = Home::from_env()?;
    let manager = BoxManager::new(&home);
    let removed = manager.prune()?;
    println!("Deleted boxes:");
    for id in &removed {
        println!("{id}");
    }
    if system {
        let cache = home.rootfs_cache_dir();
        let bytes = dir_bytes(&cache);
        if cache.exists() {
            std::fs::remove_dir_all(&cache)?;
        }
        println!(
            "Total reclaimed space from root image cache: {:.1} MiB",
            bytes as f64 / 1048576.0
        );
        let report = a3s_box_runtime::manager::ImageManager::new(&home)?.prune()?;
        println!(
            "Unused images: {} blobs ({:.1} MiB) and {} unpacked roots removed",
            report.blobs,
            report.bytes as f64 / 1048576.0,
            report.rootfs_dirs
        );
    }
    Ok(0)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| if m.is_dir() { 0 } else { m.len() })
                .sum()
        })
        .unwrap_or(0)
}

/// `rm`.
pub fn rm(args: RmArgs) -> Result<u8> {
    let manager = manager()?;
    each(&args.boxes, |key| {
        let record = manager.store().get(key)?;
        manager.remove(&record, args.force)?;
        if args.volumes {
            super::volume::remove_anonymous(&record)?;
        }
        println!("{key}");
        Ok(())
    })
}

/// `wait`: print each exit code; exit with the last one.
pub fn wait(args: BoxesArgs) -> Result<u8> {
    let manager = manager()?;
    let mut last = 0;
    for key in &args.boxes {
        // An `--rm` box would be gone with its code: hold it until read.
        let record = manager.store().get(key)?;
        let hold = manager.hold_end(&record)?;
        let code = manager.wait(key)?;
        manager.finish_wait(&record, hold);
        println!("{code}");
        last = code;
    }
    Ok(u8::try_from(last.rem_euclid(256)).unwrap_or(super::EXIT_BOX_ERROR))
}

/// `inspect`: a JSON array, Docker's field names where they exist.
pub fn inspect(args: BoxesArgs) -> Result<u8> {
    let manager = manager()?;
    let mut out = Vec::new();
    for key in &args.boxes {
        let r = manager.store().get(key)?;
        let (c, s) = (&r.config, &r.state);
        let env: Vec<String> = c
            .options
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push(serde_json::json!({
            "Id": c.id,
            "Name": c.name,
            "Created": c.created,
            "State": {
                "Status": s.status,
                "Running": s.status == a3s_box_core::status::BoxStatus::Running,
                "Paused": s.status == a3s_box_core::status::BoxStatus::Paused,
                "Restarting": s.status == a3s_box_core::status::BoxStatus::Restarting,
                "Pid": s.vm_pid.unwrap_or(0),
                "ExitCode": s.exit_code.unwrap_or(0),
                "Error": s.error.clone().unwrap_or_default(),
                "StartedAt": s.started_at.clone().unwrap_or_default(),
                "FinishedAt": s.finished_at.clone().unwrap_or_default(),
            },
            "RestartCount": s.restart_count,
            "Config": {
                "Image": super::ps::image_of(&r),
                "Rootfs": c.options.rootfs_dir,
                "Cmd": c.options.command,
                "Env": env,
                "WorkingDir": c.options.workdir.clone().unwrap_or_default(),
                "User": c.options.user.clone().unwrap_or_default(),
                "Hostname": c.options.hostname.clone().unwrap_or_else(|| c.id[..12].to_string()),
                "Labels": c.labels,
            },
            "HostConfig": {
                "RestartPolicy": { "Name": c.restart.to_string() },
                "AutoRemove": c.auto_remove,
            },
            "A3s": {
                "Accelerator": s.accelerator.clone().unwrap_or_else(|| c.options.accel.clone()),
                "VCpus": c.options.vcpus,
                "MemoryMiB": c.options.memory_mib,
                "ShimPid": s.shim_pid,
                "Dir": r.dir,
            },
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_signals() {
        assert_eq!(parse_signal_strict("KILL").unwrap(), 9);
        assert_eq!(parse_signal_strict("sigterm").unwrap(), 15);
        assert_eq!(parse_signal_strict("15").unwrap(), 15);
        assert_eq!(parse_signal_strict("34").unwrap(), 34);
        assert!(parse_signal_strict("BOGUS").is_err());
        assert!(parse_signal_strict("0").is_err());
        assert!(parse_signal_strict("99").is_err());
    }
}
