//! `a3s-box run`.

use a3s_box_core::units::parse_memory_mib;
use a3s_box_runtime::home::Home;
use a3s_box_runtime::manager::{run_foreground, RunOptions};
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

/// Run and return the workload's exit code.
pub async fn run(args: RunArgs) -> Result<i32> {
    let rootfs = match args.rootfs {
        Some(dir) => dir,
        None => bail!(
            "running images is not available yet: boot a root filesystem directory with --rootfs DIR"
        ),
    };
    if !args.rm {
        bail!("boxes are not kept yet: pass --rm (the box is removed when it exits)");
    }
    let opts = RunOptions {
        rootfs_dir: rootfs,
        command: args.args,
        env: parse_env(&args.env)?,
        workdir: args.workdir,
        user: args.user,
        vcpus: args.cpus,
        memory_mib: parse_memory_mib(&args.memory)?,
        kernel: args.vm.kernel,
        accel: {
            // Refuse a bad --accel before anything is created.
            args.vm.accel.parse::<AccelChoice>()?;
            args.vm.accel
        },
        hostname: args.hostname,
        debug: args.debug_guest,
    };
    let home = Home::from_env()?;
    Ok(run_foreground(&home, opts).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_items_parse_like_docker() {
        std::env::set_var("A3S_TEST_COPIED", "yes");
        let env = parse_env(&[
            "A=1".into(),
            "B=x=y".into(),
            "EMPTY=".into(),
            "A3S_TEST_COPIED".into(),
            "A3S_TEST_UNSET_VAR".into(),
        ])
        .unwrap();
        assert_eq!(
            env,
            [
                ("A", "1"),
                ("B", "x=y"),
                ("EMPTY", ""),
                ("A3S_TEST_COPIED", "yes")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert!(parse_env(&["=v".into()]).is_err());
    }
}
