//! `pod create|ls|ps|inspect|start|stop|rm`: parse → engine → render.

use std::time::Duration;

use a3s_box_core::spec::{
    parse_labels, parse_memory, AccelChoice, Resources, SandboxSpec, VmOptions,
};
use a3s_box_runtime::manager::views::list::human_since;
use a3s_box_runtime::manager::PodCreate;
use anyhow::Result;

use super::{engine, EXIT_BOX_ERROR};
use crate::cli::Format;
use crate::cli_pod::{PodCommand, PodCreateArgs, PodLsArgs};

/// Run a pod verb.
pub async fn dispatch(command: PodCommand) -> Result<u8> {
    match command {
        PodCommand::Create(args) => create(*args),
        PodCommand::Ls(args) => ls(args),
        PodCommand::Ps(mut args) => {
            args.pod = true;
            super::ps::ps(args)
        }
        PodCommand::Inspect(args) => {
            let engine = engine()?;
            let views = args
                .pods
                .iter()
                .map(|key| engine.pod_inspect(key))
                .collect::<a3s_box_core::Result<Vec<_>>>()?;
            println!("{}", serde_json::to_string_pretty(&views)?);
            Ok(0)
        }
        PodCommand::Start(args) => {
            let engine = engine()?;
            each(&args.pods, |key| {
                let engine = engine.clone();
                async move { Ok(engine.pod_start(&key).await?) }
            })
            .await
        }
        PodCommand::Stop(args) => {
            let engine = engine()?;
            let timeout = Duration::from_secs(args.time);
            each(&args.pods, |key| {
                let engine = engine.clone();
                async move { Ok(engine.pod_stop(&key, timeout).await?) }
            })
            .await
        }
        PodCommand::Rm(args) => {
            let engine = engine()?;
            let force = args.force;
            each(&args.pods, |key| {
                let engine = engine.clone();
                async move { Ok(engine.pod_remove(&key, force).await?) }
            })
            .await
        }
    }
}

/// Apply `op` to every pod, printing each one done; report each failure.
async fn each<F, Fut>(pods: &[String], mut op: F) -> Result<u8>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut failed = false;
    for key in pods {
        match op(key.clone()).await {
            Ok(()) => println!("{key}"),
            Err(e) => {
                eprintln!("a3s-box: {key}: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { EXIT_BOX_ERROR } else { 0 })
}

fn create(args: PodCreateArgs) -> Result<u8> {
    let sandbox = SandboxSpec {
        hostname: args.hostname,
        network: super::run::network_spec(&args.network)?,
        resources: Resources {
            vcpus: args.cpus,
            memory_mib: parse_memory(&args.memory)?,
            ..Resources::default()
        },
        vm: VmOptions {
            accel: args.accel.parse::<AccelChoice>()?,
            ..VmOptions::default()
        },
        ..SandboxSpec::default()
    };
    let view = engine()?.pod_create(PodCreate {
        name: args.name,
        labels: parse_labels(&args.labels)?,
        sandbox,
    })?;
    println!("{}", view.id);
    Ok(0)
}

fn ls(args: PodLsArgs) -> Result<u8> {
    let pods = engine()?.pod_list()?;
    let id = |full: &str| match args.no_trunc {
        true => full.to_string(),
        false => full[..12].to_string(),
    };
    if args.quiet {
        pods.iter().for_each(|p| println!("{}", id(&p.id)));
        return Ok(0);
    }
    if args.format == Format::Json {
        println!("{}", serde_json::to_string(&pods)?);
        return Ok(0);
    }
    println!(
        "{:<12}  {:<20}  {:<10}  {:<16}  {:>10}",
        "POD ID", "NAME", "STATUS", "CREATED", "CONTAINERS"
    );
    for p in &pods {
        println!(
            "{:<12}  {:<20}  {:<10}  {:<16}  {:>10}",
            id(&p.id),
            p.name,
            p.status,
            format!("{} ago", human_since(Some(&p.created))),
            p.number_of_containers
        );
    }
    Ok(0)
}
