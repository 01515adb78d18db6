//! Docker-shaped views of what the engine holds: `inspect`, `ps` rows and
//! filters, `system df`. Front ends render these (a table, JSON, an HTTP
//! body); they compute nothing themselves.

pub mod df;
pub mod inspect;
pub mod list;
