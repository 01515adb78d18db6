//! One module per verb: parse → engine → render.

pub mod commit;
pub mod cp;
pub mod events;
pub mod exec;
pub mod image;
pub mod info;
pub mod layers;
pub mod lifecycle;
pub mod logs;
pub mod monitor;
pub mod network;
pub mod pod;
pub mod port;
pub mod ps;
pub mod run;
pub mod terminal;
pub mod version;
pub mod volume;

use std::sync::OnceLock;

use a3s_box_runtime::config::EngineConfig;
use a3s_box_runtime::manager::Engine;

/// Exit code for errors of a3s-box itself (Docker's convention).
pub const EXIT_BOX_ERROR: u8 = 125;

/// `--insecure-registry` flags of this invocation.
static INSECURE_REGISTRIES: OnceLock<Vec<String>> = OnceLock::new();

/// Record the global `--insecure-registry` flags (once, from `main`).
pub fn set_insecure_registries(list: Vec<String>) {
    let _ = INSECURE_REGISTRIES.set(list);
}

/// The engine's configuration for this invocation: the environment,
/// `$A3S_HOME/config.json`, then our global flags.
pub fn config() -> anyhow::Result<EngineConfig> {
    let mut config = EngineConfig::from_env()?;
    if let Some(list) = INSECURE_REGISTRIES.get() {
        config.add_insecure_registries(list.iter().map(String::as_str));
    }
    Ok(config)
}

/// The engine of this invocation.
pub fn engine() -> anyhow::Result<Engine> {
    Ok(Engine::new(config()?))
}

/// A workload's exit code as ours (modulo 256, as a shell sees it).
pub fn exit_code(code: i32) -> u8 {
    u8::try_from(code.rem_euclid(256)).unwrap_or(EXIT_BOX_ERROR)
}
