//! `a3s-box version`.

use a3s_box_core::guest::PROTOCOL_VERSION;

use crate::cli::{Format, VersionArgs};

/// Print versions.
pub fn run(args: VersionArgs) {
    let version = env!("CARGO_PKG_VERSION");
    if args.format == Format::Json {
        let v = serde_json::json!({
            "version": version,
            "guest_protocol": PROTOCOL_VERSION,
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        });
        println!("{v}");
    } else {
        println!("a3s-box {version}");
        println!("guest protocol {PROTOCOL_VERSION}");
        println!("{}/{}", std::env::consts::OS, std::env::consts::ARCH);
    }
}
