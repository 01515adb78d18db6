//! `ps` rows and filters: what Docker's `GET /containers/json` and `docker
//! ps` show of each box.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::SystemTime;

use a3s_box_core::spec::RootSource;
use a3s_box_core::status::BoxStatus;
use a3s_box_core::time::parse_rfc3339;
use a3s_box_core::BoxError;
use serde::Serialize;

use crate::state::BoxRecord;

/// One `--filter` of a box listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFilter {
    /// The name contains this text.
    Name(String),
    /// The label is set (to this value, if given).
    Label(String, Option<String>),
    /// The status is this one.
    Status(BoxStatus),
    /// The id starts with this.
    Id(String),
    /// The box belongs to this pod (name or id).
    Pod(String),
}

impl FromStr for ListFilter {
    type Err = BoxError;

    fn from_str(text: &str) -> Result<Self, BoxError> {
        Ok(match text.split_once('=') {
            Some(("name", v)) => ListFilter::Name(v.to_string()),
            Some(("id", v)) => ListFilter::Id(v.to_string()),
            Some(("pod", v)) => ListFilter::Pod(v.to_string()),
            Some(("label", v)) => match v.split_once('=') {
                Some((k, val)) => ListFilter::Label(k.to_string(), Some(val.to_string())),
                None => ListFilter::Label(v.to_string(), None),
            },
            Some(("status", v)) => ListFilter::Status(v.parse()?),
            _ => {
                return Err(BoxError::Invalid(format!(
                    "invalid filter {text:?}: use name=NAME, id=ID, label=KEY[=VALUE], \
                     status=STATUS or pod=POD"
                )))
            }
        })
    }
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Stopped boxes too (`-a`).
    pub all: bool,
    /// Every filter must match.
    pub filters: Vec<ListFilter>,
}

impl ListFilter {
    /// Whether `record` (in pod `pod`, given as (id, name)) passes.
    pub fn matches(&self, r: &BoxRecord, pod: Option<(&str, &str)>) -> bool {
        match self {
            ListFilter::Name(n) => r.config.name.contains(n.as_str()),
            ListFilter::Id(id) => r.config.id.starts_with(id.as_str()),
            ListFilter::Label(k, v) => r
                .config
                .labels()
                .get(k)
                .is_some_and(|val| v.as_ref().is_none_or(|want| want == val)),
            ListFilter::Status(s) => r.state.status == *s,
            ListFilter::Pod(p) => {
                pod.is_some_and(|(id, name)| name == p || (!p.is_empty() && id.starts_with(p)))
            }
        }
    }
}

/// One row of a box listing (the JSON of `ps --format json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoxSummary {
    /// Full id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its name.
    #[serde(rename = "Names")]
    pub name: String,
    /// The image reference, or the root directory of a `--rootfs` box.
    #[serde(rename = "Image")]
    pub image: String,
    /// The command line.
    #[serde(rename = "Command")]
    pub command: String,
    /// When it was created (RFC 3339).
    #[serde(rename = "CreatedAt")]
    pub created: String,
    /// `running`, `exited`, ...
    #[serde(rename = "State")]
    pub state: BoxStatus,
    /// Docker's status text: `Up 5 minutes`, `Exited (0) 3 seconds ago`.
    #[serde(rename = "Status")]
    pub status: String,
    /// The last exit code.
    #[serde(rename = "ExitCode")]
    pub exit_code: Option<i32>,
    /// Labels.
    #[serde(rename = "Labels")]
    pub labels: BTreeMap<String, String>,
    /// The pod it belongs to (name), if any.
    #[serde(rename = "Pod", skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

impl BoxSummary {
    /// The row of `record`.
    pub fn of(r: &BoxRecord, pod: Option<String>) -> Self {
        BoxSummary {
            id: r.config.id.clone(),
            name: r.config.name.clone(),
            image: image_of(r),
            command: r.config.container().command().join(" "),
            created: r.config.created.clone(),
            state: r.state.status,
            status: status_text(r),
            exit_code: r.state.exit_code,
            labels: r.config.labels().clone(),
            pod,
        }
    }
}

/// The image reference, or the root directory for `--rootfs` boxes.
pub fn image_of(r: &BoxRecord) -> String {
    match &r.config.container().root {
        RootSource::Image { reference, .. } => reference.clone(),
        RootSource::Dir { path } => path.display().to_string(),
    }
}

/// "3 seconds", "5 minutes", ... as Docker prints durations since `since`.
pub fn human_since(since: Option<&str>) -> String {
    let Some(t) = since.and_then(parse_rfc3339) else {
        return "?".into();
    };
    let secs = SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    human_secs(secs)
}

fn human_secs(secs: u64) -> String {
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 172_800 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// Docker's status column.
pub fn status_text(r: &BoxRecord) -> String {
    let s = &r.state;
    match s.status {
        BoxStatus::Created => "Created".into(),
        BoxStatus::Running => format!("Up {}", human_since(s.started_at.as_deref())),
        BoxStatus::Paused => format!("Up {} (Paused)", human_since(s.started_at.as_deref())),
        BoxStatus::Restarting => format!(
            "Restarting ({}) {} ago",
            s.exit_code.unwrap_or(0),
            human_since(s.finished_at.as_deref())
        ),
        BoxStatus::Exited | BoxStatus::Dead => format!(
            "Exited ({}) {} ago",
            s.exit_code.unwrap_or(0),
            human_since(s.finished_at.as_deref())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_or_say_what_is_accepted() {
        assert_eq!(
            "label=tier=front".parse::<ListFilter>().unwrap(),
            ListFilter::Label("tier".into(), Some("front".into()))
        );
        assert_eq!(
            "status=running".parse::<ListFilter>().unwrap(),
            ListFilter::Status(BoxStatus::Running)
        );
        assert_eq!(
            "pod=p1".parse::<ListFilter>().unwrap(),
            ListFilter::Pod("p1".into())
        );
        let err = "colour=red".parse::<ListFilter>().unwrap_err();
        assert_eq!(err.kind(), a3s_box_core::ErrorKind::Invalid);
        assert!("status=up".parse::<ListFilter>().is_err());
    }

    #[test]
    fn durations_read_as_docker_prints_them() {
        assert_eq!(human_secs(0), "Less than a second");
        assert_eq!(human_secs(59), "59 seconds");
        assert_eq!(human_secs(90), "About a minute");
        assert_eq!(human_secs(600), "10 minutes");
        assert_eq!(human_secs(200_000), "2 days");
    }
}
