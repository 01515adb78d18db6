//! The host session: the agent port ([`port`]), the conversation on it
//! ([`serve`]: `Boot`, then container requests, `Start`, `Exec`, signals,
//! stdin, credit, `Shutdown`), the table of the processes run for the host
//! and when each is reported ([`session`]), starting them ([`launch`]),
//! creating and removing containers ([`containers`]), `network connect` and
//! `disconnect` ([`interfaces`]), and the bytes of the
//! processes' standard streams ([`streams`]) under the host's flow-control
//! credit ([`credit`]).

pub mod containers;
pub mod credit;
pub mod interfaces;
pub mod launch;
pub mod port;
pub mod serve;
pub mod session;
pub mod streams;
