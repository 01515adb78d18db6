//! OCI images: references, the registry client, the content-addressed store, safe layer
//! unpacking and the image config that decides how a box's workload runs.
//!
//! - [`reference`]: `alpine` → `docker.io/library/alpine:latest`, typed parse errors;
//! - [`digest`]: sha256 content digests;
//! - [`registry`]: the distribution API client, credentials, and [`registry::pull`];
//! - [`store`]: blobs by digest and a reference index, safe for concurrent pulls;
//! - [`unpack`]: layers applied to a directory, refusing path escapes;
//! - [`config`]: the image config and Docker's rules for `run` overrides.

pub mod config;
pub mod digest;
pub mod reference;
pub mod registry;
pub mod store;
pub mod unpack;

pub use config::{ImageConfig, ProcessSpec, RunOverrides};
pub use digest::Digest;
pub use reference::Reference;
pub use store::Store;
