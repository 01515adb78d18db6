//! [`VmOptions`]: how the sandbox's VM is run (accelerator, kernel, debug).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{rules, SpecError};

/// `--accel`: which accelerator to run the VM with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccelChoice {
    /// KVM where it can run our guest, else TCG (decided by the engine).
    #[default]
    Auto,
    /// Hardware virtualization; the box fails to start without it.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

impl FromStr for AccelChoice {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Kvm),
            "tcg" => Ok(AccelChoice::Tcg),
            _ => Err(SpecError::invalid(
                "--accel",
                text,
                "unknown accelerator: use auto, kvm or tcg",
            )),
        }
    }
}

impl fmt::Display for AccelChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccelChoice::Auto => "auto",
            AccelChoice::Kvm => "kvm",
            AccelChoice::Tcg => "tcg",
        })
    }
}

/// How the VM is run; nothing here changes what the workload sees.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmOptions {
    /// Accelerator (`--accel`, default auto).
    pub accel: AccelChoice,
    /// Guest kernel to boot instead of the built-in one (`--kernel`),
    /// an absolute host path.
    pub kernel: Option<PathBuf>,
    /// guest-init logs its progress to the VM console (`--debug-guest`).
    pub debug_guest: bool,
}

impl VmOptions {
    /// Check the options; fields are relative (`kernel`).
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(kernel) = &self.kernel {
            rules::host_path("kernel", kernel)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accel_parses_and_displays() {
        for (text, choice) in [
            ("auto", AccelChoice::Auto),
            ("", AccelChoice::Auto),
            ("KVM", AccelChoice::Kvm),
            (" tcg ", AccelChoice::Tcg),
        ] {
            let parsed: AccelChoice = text.parse().unwrap();
            assert_eq!(parsed, choice);
            assert_eq!(parsed.to_string().parse::<AccelChoice>().unwrap(), choice);
        }
        let e = "hvf".parse::<AccelChoice>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid --accel \"hvf\": unknown accelerator: use auto, kvm or tcg"
        );
        assert_eq!(serde_json::to_string(&AccelChoice::Tcg).unwrap(), "\"tcg\"");
    }

    #[test]
    fn kernel_must_be_absolute() {
        let mut vm = VmOptions::default();
        vm.validate().unwrap();
        vm.kernel = Some("vmlinux".into());
        assert_eq!(vm.validate().unwrap_err().field, "kernel");
    }
}
