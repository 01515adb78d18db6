//! Box status and restart policy: typed, parsed once, with guards.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::BoxError;
use crate::spec::SpecError;

/// Where a box is in its life (Docker's `State.Status` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoxStatus {
    /// Made, never started.
    Created,
    /// The workload runs.
    Running,
    /// The VM's vCPUs are stopped.
    Paused,
    /// Between two runs under a restart policy.
    Restarting,
    /// The workload ended (or the VM died).
    Exited,
    /// Could not be cleaned up.
    Dead,
}

impl BoxStatus {
    /// A supervisor owns the box.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            BoxStatus::Running | BoxStatus::Paused | BoxStatus::Restarting
        )
    }

    /// `start` may run it.
    pub fn can_start(self) -> bool {
        matches!(self, BoxStatus::Created | BoxStatus::Exited)
    }

    /// `rm` without `-f` may remove it.
    pub fn can_remove(self) -> bool {
        !self.is_active()
    }
}

impl fmt::Display for BoxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BoxStatus::Created => "created",
            BoxStatus::Running => "running",
            BoxStatus::Paused => "paused",
            BoxStatus::Restarting => "restarting",
            BoxStatus::Exited => "exited",
            BoxStatus::Dead => "dead",
        })
    }
}

impl FromStr for BoxStatus {
    type Err = BoxError;

    fn from_str(s: &str) -> Result<Self, BoxError> {
        match s {
            "created" => Ok(BoxStatus::Created),
            "running" => Ok(BoxStatus::Running),
            "paused" => Ok(BoxStatus::Paused),
            "restarting" => Ok(BoxStatus::Restarting),
            "exited" => Ok(BoxStatus::Exited),
            "dead" => Ok(BoxStatus::Dead),
            other => Err(BoxError::Invalid(format!(
                "unknown status {other:?}: use created, running, paused, restarting, exited or dead"
            ))),
        }
    }
}

/// `--restart`: what the supervisor does when the workload ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "name", deny_unknown_fields)]
pub enum RestartPolicy {
    /// Never restart.
    #[default]
    No,
    /// Restart after a non-zero exit, at most `max_retries` times if given.
    OnFailure {
        /// Limit on restarts.
        max_retries: Option<u32>,
    },
    /// Always restart, until stopped.
    Always,
    /// Like `always`, but not after an explicit stop.
    UnlessStopped,
}

impl RestartPolicy {
    /// Whether to restart after an exit with `code`, having restarted
    /// `restarts` times already, when the user did (`stopped`) or did not
    /// stop the box.
    pub fn should_restart(self, code: i32, restarts: u32, stopped: bool) -> bool {
        if stopped {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max_retries } => {
                code != 0 && max_retries.is_none_or(|max| restarts < max)
            }
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = SpecError;

    /// Docker's `--restart` syntax: `no`, `on-failure[:N]`, `always`,
    /// `unless-stopped`.
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let bad = |reason: &str| SpecError::invalid("--restart", s, reason.to_string());
        let unknown = || bad("unknown policy: use no, on-failure[:N], always or unless-stopped");
        match s.split_once(':') {
            None => match s {
                "no" | "" => Ok(RestartPolicy::No),
                "on-failure" => Ok(RestartPolicy::OnFailure { max_retries: None }),
                "always" => Ok(RestartPolicy::Always),
                "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
                _ => Err(unknown()),
            },
            Some(("on-failure", n)) => Ok(RestartPolicy::OnFailure {
                max_retries: Some(n.parse().map_err(|_| {
                    bad("the maximum retry count must be a whole number, as in on-failure:3")
                })?),
            }),
            Some(("no" | "always" | "unless-stopped", _)) => Err(bad(
                "a maximum retry count applies to on-failure only, as in on-failure:3",
            )),
            Some(_) => Err(unknown()),
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure { max_retries: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure {
                max_retries: Some(n),
            } => write!(f, "on-failure:{n}"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_guards() {
        assert!(BoxStatus::Created.can_start() && BoxStatus::Exited.can_start());
        assert!(!BoxStatus::Running.can_start() && !BoxStatus::Running.can_remove());
        assert!(BoxStatus::Paused.is_active());
        assert_eq!("exited".parse::<BoxStatus>().unwrap(), BoxStatus::Exited);
        assert!("up".parse::<BoxStatus>().is_err());
        assert_eq!(
            serde_json::to_string(&BoxStatus::Running).unwrap(),
            "\"running\""
        );
    }

    #[test]
    fn restart_policies_parse_and_decide() {
        let p: RestartPolicy = "on-failure:2".parse().unwrap();
        assert_eq!(p.to_string(), "on-failure:2");
        assert!(p.should_restart(1, 0, false) && p.should_restart(1, 1, false));
        assert!(!p.should_restart(1, 2, false) && !p.should_restart(0, 0, false));
        assert!(RestartPolicy::Always.should_restart(0, 100, false));
        assert!(!RestartPolicy::Always.should_restart(0, 0, true));
        assert!(!RestartPolicy::No.should_restart(1, 0, false));
        for (bad, why) in [
            ("sometimes", "unknown policy"),
            ("on-failure:x", "whole number"),
            ("on-failure:-1", "whole number"),
            ("always:3", "on-failure only"),
            ("maybe:3", "unknown policy"),
        ] {
            let e = bad.parse::<RestartPolicy>().unwrap_err();
            assert_eq!(e.field, "--restart");
            assert!(e.message.contains(why), "{bad}: {e}");
        }
        assert_eq!("".parse::<RestartPolicy>().unwrap(), RestartPolicy::No);
    }
}
