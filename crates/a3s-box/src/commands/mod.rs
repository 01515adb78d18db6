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
pub mod ps;
pub mod run;
pub mod terminal;
pub mod version;
pub mod volume;

use a3s_box_runtime::home::Home;
use a3s_box_runtime::manager::Engine;

/// Exit code for errors of a3s-box itself (Docker's convention).
pub const EXIT_BOX_ERROR: u8 = 125;

/// The engine of this invocation's home.
pub fn engine() -> anyhow::Result<Engine> {
    Ok(Engine::new(Home::from_env()?))
}

/// A workload's exit code as ours (modulo 256, as a shell sees it).
pub fn exit_code(code: i32) -> u8 {
    u8::try_from(code.rem_euclid(256)).unwrap_or(EXIT_BOX_ERROR)
}
