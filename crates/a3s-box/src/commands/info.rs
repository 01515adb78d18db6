//! `a3s-box info`.

use a3s_box_runtime::manager;
use anyhow::Result;

use crate::cli::{Format, InfoArgs};

/// Print host facts.
pub fn run(args: InfoArgs) -> Result<()> {
    let info = manager::info(
        &super::config()?,
        args.vm.kernel.as_deref(),
        args.vm.accel.parse()?,
    )?;
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
    println!("Version:        {}", info.version);
    println!("Home:           {}", info.home.display());
    println!("Accelerator:    {}", info.accelerator.accel);
    println!("  Reason:       {}", info.accelerator.reason);
    println!(
        "Kernel:         {}{}",
        info.kernel.display(),
        if info.kernel_is_custom {
            " (user-supplied)"
        } else {
            ""
        }
    );
    println!("  Version:      {}", or_unknown(&info.kernel_version));
    println!("Initramfs:      {}", info.initramfs.display());
    if !info.assets_present {
        println!("  Warning:      kernel or initramfs missing: run `make setup`");
    }
    println!("QEMU:           {}", info.qemu.display());
    println!("  Version:      {}", or_unknown(&info.qemu_version));
    println!("  CPU:          {}", info.cpu);
    println!("Network:        {}", info.network.plane);
    println!("  Reason:       {}", info.network.reason);
    println!("  Uplink:       {}", info.network.pasta);
    println!(
        "  Host gateway: {}",
        if info.network.host_gateway {
            "on (boxes reach the host's loopback at host-gateway)"
        } else {
            "off (host-gateway in config.json)"
        }
    );
    Ok(())
}
