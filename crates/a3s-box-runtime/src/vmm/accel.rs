//! Choosing the accelerator: hardware KVM where it can run our guest, else
//! QEMU's software emulation (TCG).
//!
//! `/dev/kvm` alone is not enough: a paravirtual KVM (PVM, module `kvm_pvm`)
//! only runs guests built for it, and our stock-config kernel is not. So KVM
//! is chosen only when the hardware modules (`kvm_intel`/`kvm_amd`) are
//! loaded and `/dev/kvm` opens read-write.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use a3s_box_core::BoxError;
use serde::Serialize;

/// An accelerator QEMU can run the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// What the user asked for (`--accel`, `A3S_BOX_ACCEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelChoice {
    /// Pick the best that works here.
    #[default]
    Auto,
    /// Force one.
    Force(Accel),
}

impl FromStr for AccelChoice {
    type Err = BoxError;

    fn from_str(s: &str) -> Result<Self, BoxError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Force(Accel::Kvm)),
            "tcg" => Ok(AccelChoice::Force(Accel::Tcg)),
            other => Err(BoxError::Invalid(format!(
                "unknown accelerator {other:?}: use auto, kvm or tcg"
            ))),
        }
    }
}

/// The accelerator in use and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccelDecision {
    /// Chosen accelerator.
    pub accel: Accel,
    /// Why, in a sentence for `info` and `inspect`.
    pub reason: String,
}

/// What the host offers, read from the system (kept separate from the
/// decision so the decision is testable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostKvm {
    /// `/dev/kvm` exists and opens read-write.
    pub dev_kvm_usable: bool,
    /// The KVM modules loaded (`kvm_intel`, `kvm_amd`, `kvm_pvm`).
    pub modules: Vec<String>,
}

impl HostKvm {
    /// Probe this host.
    pub fn probe() -> Self {
        let dev_kvm_usable = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        let modules = ["kvm_intel", "kvm_amd", "kvm_pvm"]
            .into_iter()
            .filter(|m| Path::new("/sys/module").join(m).exists())
            .map(String::from)
            .collect();
        HostKvm {
            dev_kvm_usable,
            modules,
        }
    }

    fn has(&self, module: &str) -> bool {
        self.modules.iter().any(|m| m == module)
    }
}

/// Decide which accelerator to use.
pub fn decide(choice: AccelChoice, host: &HostKvm) -> Result<AccelDecision, BoxError> {
    let hardware = host.has("kvm_intel") || host.has("kvm_amd");
    match choice {
        AccelChoice::Force(Accel::Tcg) => Ok(AccelDecision {
            accel: Accel::Tcg,
            reason: "forced by --accel tcg (software emulation)".into(),
        }),
        AccelChoice::Force(Accel::Kvm) if host.dev_kvm_usable => Ok(AccelDecision {
            accel: Accel::Kvm,
            reason: if hardware {
                "forced by --accel kvm".into()
            } else {
                "forced by --accel kvm (no hardware KVM module loaded: the guest may not boot)"
                    .into()
            },
        }),
        AccelChoice::Force(Accel::Kvm) => Err(BoxError::Unavailable(
            "--accel kvm: /dev/kvm is missing or not read-write for this user; use --accel tcg or auto"
                .into(),
        )),
        AccelChoice::Auto if hardware && host.dev_kvm_usable => Ok(AccelDecision {
            accel: Accel::Kvm,
            reason: format!("hardware KVM ({}) on /dev/kvm", host.modules.join(", ")),
        }),
        AccelChoice::Auto if host.has("kvm_pvm") => Ok(AccelDecision {
            accel: Accel::Tcg,
            reason: "/dev/kvm is paravirtual KVM (kvm_pvm), which cannot run a standard guest \
                     kernel: using software emulation"
                .into(),
        }),
        AccelChoice::Auto if host.dev_kvm_usable => Ok(AccelDecision {
            accel: Accel::Tcg,
            reason: "/dev/kvm is present but no hardware KVM module (kvm_intel/kvm_amd) is \
                     loaded: using software emulation"
                .into(),
        }),
        AccelChoice::Auto => Ok(AccelDecision {
            accel: Accel::Tcg,
            reason: "no usable /dev/kvm: using software emulation".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(usable: bool, modules: &[&str]) -> HostKvm {
        HostKvm {
            dev_kvm_usable: usable,
            modules: modules.iter().map(|m| m.to_string()).collect(),
        }
    }

    #[test]
    fn auto_uses_kvm_only_with_hardware_modules() {
        let d = decide(AccelChoice::Auto, &host(true, &["kvm_intel"])).unwrap();
        assert_eq!(d.accel, Accel::Kvm);
        let d = decide(AccelChoice::Auto, &host(true, &["kvm_pvm"])).unwrap();
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d.reason.contains("kvm_pvm"));
        assert_eq!(
            decide(AccelChoice::Auto, &host(false, &["kvm_amd"]))
                .unwrap()
                .accel,
            Accel::Tcg
        );
        assert_eq!(
            decide(AccelChoice::Auto, &host(false, &[])).unwrap().accel,
            Accel::Tcg
        );
    }

    #[test]
    fn forcing_is_honoured_or_refused_clearly() {
        let d = decide("tcg".parse().unwrap(), &host(true, &["kvm_intel"])).unwrap();
        assert_eq!(d.accel, Accel::Tcg);
        let d = decide("KVM".parse().unwrap(), &host(true, &["kvm_pvm"])).unwrap();
        assert_eq!(d.accel, Accel::Kvm);
        assert!(d.reason.contains("may not boot"));
        let err = decide("kvm".parse().unwrap(), &host(false, &[])).unwrap_err();
        assert!(err.to_string().contains("/dev/kvm"));
        assert!("xen".parse::<AccelChoice>().is_err());
    }
}
