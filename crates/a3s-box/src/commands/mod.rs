//! One module per verb: parse → runtime call → render.

pub mod commit;
pub mod cp;
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

/// Exit code for errors of a3s-box itself (Docker's convention).
pub const EXIT_BOX_ERROR: u8 = 125;
