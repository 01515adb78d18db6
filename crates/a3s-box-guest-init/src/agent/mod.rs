//! The host session: the agent port ([`port`]), the conversation on it
//! ([`serve`]: `Boot`, then signals, stdin, credit, `Exec`, `Shutdown`), the
//! table of the processes run for the host and when each is reported
//! ([`session`]), and the bytes of their standard streams ([`streams`]) under
//! the host's flow-control credit ([`credit`]).

pub mod credit;
pub mod port;
pub mod serve;
pub mod session;
pub mod streams;
