//! [`SpecError`]: what is wrong with a spec or a flag, and which field.

use std::fmt;

use crate::error::BoxError;

/// What sort of problem a [`SpecError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecErrorKind {
    /// Something required is not there (no command, no container).
    Missing,
    /// The value does not parse or breaks a rule of its own.
    Invalid,
    /// Two settings that cannot go together (`--rm` with `--restart always`).
    Conflict,
    /// A number outside the range allowed (vCPUs, memory, ports).
    OutOfRange,
    /// Valid elsewhere, but not for a box (`--network host`).
    Unsupported,
}

/// An invalid spec or flag value.
///
/// `field` names what is wrong: a path into the spec for `validate()`
/// (`containers[0].process.cwd`), the flag for the string parsers
/// (`--publish`). Front ends may rename it ([`SpecError::with_field`],
/// [`SpecError::for_cli`]) so the user reads the name they wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// What is wrong: a spec path or a flag.
    pub field: String,
    /// What sort of problem.
    pub kind: SpecErrorKind,
    /// The offending value as the user wrote it, when there is one.
    pub value: Option<String>,
    /// Why it is refused and what to do instead.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.kind {
            SpecErrorKind::Missing => "missing",
            SpecErrorKind::Invalid | SpecErrorKind::OutOfRange => "invalid",
            SpecErrorKind::Conflict => "conflicting options:",
            SpecErrorKind::Unsupported => "unsupported",
        };
        write!(f, "{prefix} {}", self.field)?;
        if let Some(value) = &self.value {
            write!(f, " {value:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl SpecError {
    /// An error of `kind` about `field`.
    pub fn new(kind: SpecErrorKind, field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            field: field.into(),
            kind,
            value: None,
            message: message.into(),
        }
    }

    /// `value` of `field` is invalid.
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        SpecError::new(SpecErrorKind::Invalid, field, message).value(value)
    }

    /// `field` is required.
    pub fn missing(field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError::new(SpecErrorKind::Missing, field, message)
    }

    /// `value` of `field` is outside the allowed range.
    pub fn out_of_range(
        field: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        SpecError::new(SpecErrorKind::OutOfRange, field, message).value(value)
    }

    /// `field` clashes with another setting (the message names it).
    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError::new(SpecErrorKind::Conflict, field, message)
    }

    /// `value` of `field` is not supported for a box.
    pub fn unsupported(
        field: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        SpecError::new(SpecErrorKind::Unsupported, field, message).value(value)
    }

    /// The same error, quoting `value`.
    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// The same error about `field` (a front end's own name for it, e.g.
    /// `HostConfig.Binds[2]` for a parsed `-v` string).
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }

    /// The same error with its field placed under `prefix`
    /// (`cwd` within `process` becomes `process.cwd`).
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_string()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }

    /// The same error within item `i` of the list `list` (`target` in
    /// item 2 of `mounts` becomes `mounts[2].target`).
    pub fn within_item(self, list: &str, i: usize) -> Self {
        self.within(&format!("{list}[{i}]"))
    }

    /// The same error naming the `run`/`create` flag that sets the field,
    /// when there is exactly one (`containers[0].process.cwd` becomes
    /// `--workdir`); other fields keep their path.
    pub fn for_cli(mut self) -> Self {
        if let Some(flag) = cli_flag(&self.field) {
            self.field = flag.to_string();
        }
        self
    }
}

/// The `run`/`create` flag that sets the spec field at `path`, if one does.
pub fn cli_flag(path: &str) -> Option<&'static str> {
    // Drop list indices (`containers[0]`, `env[3]`) and the top-level part.
    let mut plain = String::with_capacity(path.len());
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let rest = plain
        .strip_prefix("containers.")
        .or_else(|| plain.strip_prefix("sandbox."))
        .unwrap_or(&plain);
    Some(match rest {
        "name" => "--name",
        "labels" => "--label",
        "restart" => "--restart",
        "auto_remove" => "--rm",
        "stop_signal" => "--stop-signal",
        "stop_timeout_secs" => "--stop-timeout",
        "entrypoint" => "--entrypoint",
        "root.image.reference" | "root.image" => "IMAGE",
        "root.dir.path" | "root.dir" => "--rootfs",
        "process.args" => "COMMAND",
        "process.env" => "--env",
        "process.cwd" => "--workdir",
        "process.user" => "--user",
        "storage.layer_size_bytes" => "--storage-opt",
        "storage.volumes_from" => "--volumes-from",
        "hostname" => "--hostname",
        "pod" => "--pod",
        "resources.vcpus" => "--cpus",
        "resources.memory_mib" => "--memory",
        "resources.limits.pids_limit" => "--pids-limit",
        "resources.limits.cpuset_cpus" => "--cpuset-cpus",
        "resources.limits.cpu_shares" => "--cpu-shares",
        "resources.limits.cpu_quota" => "--cpu-quota",
        "resources.limits.cpu_period" => "--cpu-period",
        "resources.limits.memory_reservation" => "--memory-reservation",
        "resources.limits.memory_swap" => "--memory-swap",
        "resources.limits.ulimits" => "--ulimit",
        "network.mode" => "--network",
        "network.mode.networks.aliases" => "--network-alias",
        "network.mode.networks.ipv4" => "--ip",
        "network.ports" => "--publish",
        "network.publish_all" => "--publish-all",
        "network.expose" => "--expose",
        "network.dns.servers" => "--dns",
        "network.dns.search" => "--dns-search",
        "network.dns.options" => "--dns-option",
        "network.extra_hosts" => "--add-host",
        "network.egress" => "--egress-allow",
        "network.mac_address" => "--mac-address",
        "vm.accel" => "--accel",
        "vm.kernel" => "--kernel",
        _ => return None,
    })
}

impl From<SpecError> for BoxError {
    fn from(e: SpecError) -> Self {
        BoxError::Invalid(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn display_names_field_value_and_reason() {
        let e = SpecError::invalid(
            "--workdir",
            "relative",
            "the working directory must be an absolute path",
        );
        assert_eq!(
            e.to_string(),
            "invalid --workdir \"relative\": the working directory must be an absolute path"
        );
        let e = SpecError::conflict("--restart", "--rm cannot be used with --restart always");
        assert!(e
            .to_string()
            .starts_with("conflicting options: --restart: "));
        assert_eq!(
            SpecError::missing("containers", "a box needs a container").to_string(),
            "missing containers: a box needs a container"
        );
    }

    #[test]
    fn fields_nest_and_map_to_flags() {
        let e = SpecError::invalid("cwd", "x", "m")
            .within("process")
            .within("containers[0]");
        assert_eq!(e.field, "containers[0].process.cwd");
        assert_eq!(e.clone().for_cli().field, "--workdir");
        let e = SpecError::invalid("[2]", "x", "m").within("env");
        assert_eq!(e.field, "env[2]");
        assert_eq!(
            cli_flag("sandbox.network.mode.networks[0].aliases[1]"),
            Some("--network-alias")
        );
        assert_eq!(cli_flag("containers[0].storage.mounts[1].target"), None);
        let kept = SpecError::invalid("containers[0].storage.mounts[1].target", "/", "m");
        assert_eq!(kept.clone().for_cli(), kept);
    }

    #[test]
    fn converts_to_an_invalid_box_error_keeping_the_field() {
        let e: BoxError = SpecError::out_of_range("--cpus", "0", "use 1 to 64").into();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert_eq!(e.to_string(), "invalid --cpus \"0\": use 1 to 64");
    }
}
