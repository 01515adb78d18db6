//! The workload user (`-u`, the image's `USER`): parsing and resolution
//! against the root filesystem's `/etc/passwd` and `/etc/group`.

use std::fmt;
use std::str::FromStr;

use crate::error::BoxError;

/// A user or group given by number or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdOrName {
    /// Numeric id.
    Id(u32),
    /// Name to look up.
    Name(String),
}

impl IdOrName {
    /// `text` as a user or group (`what`), or why it is not one.
    fn parse(text: &str, what: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err(format!(
                "empty {what}; use uid, uid:gid, name or name:group"
            ));
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse()
                .map(IdOrName::Id)
                .map_err(|_| format!("{what} id out of range"));
        }
        if text.contains(['/', '\0', '\n']) {
            return Err(format!("bad character in {what} name"));
        }
        Ok(IdOrName::Name(text.to_string()))
    }
}

/// A parsed user spec: `uid`, `uid:gid`, `name`, `name:group` (or mixed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// The user.
    pub user: IdOrName,
    /// The group, when given after a colon.
    pub group: Option<IdOrName>,
}

impl UserSpec {
    /// `text` as a user spec, or why it is not one.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (user, group) = match text.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (text, None),
        };
        Ok(UserSpec {
            user: IdOrName::parse(user, "user")?,
            group: group.map(|g| IdOrName::parse(g, "group")).transpose()?,
        })
    }
}

impl FromStr for UserSpec {
    type Err = BoxError;

    fn from_str(text: &str) -> Result<Self, BoxError> {
        UserSpec::parse(text)
            .map_err(|reason| BoxError::Invalid(format!("invalid user {text:?}: {reason}")))
    }
}

impl fmt::Display for IdOrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdOrName::Id(id) => write!(f, "{id}"),
            IdOrName::Name(name) => f.write_str(name),
        }
    }
}

/// The credentials a workload process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (from `/etc/group` membership).
    pub groups: Vec<u32>,
    /// Home directory, for `HOME` when the environment lacks it.
    pub home: String,
}

impl Credentials {
    /// root, the default when no user is given.
    pub fn root() -> Self {
        Credentials {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            home: "/root".into(),
        }
    }
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

/// (name, gid, members) of each well-formed `/etc/group` line.
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolve `spec` against the text of `/etc/passwd` and `/etc/group`, as
/// Docker does: a numeric uid need not exist (its gid is then 0 unless
/// given); a name must exist; supplementary groups come from `/etc/group`.
pub fn resolve(spec: &UserSpec, passwd: &str, group: &str) -> Result<Credentials, BoxError> {
    let entry = match &spec.user {
        IdOrName::Id(uid) => passwd_entries(passwd).find(|e| e.uid == *uid),
        IdOrName::Name(name) => Some(passwd_entries(passwd).find(|e| e.name == name).ok_or_else(
            || {
                BoxError::Invalid(format!(
                    "unable to find user {name}: no matching entries in passwd file"
                ))
            },
        )?),
    };
    let (uid, mut gid, home, name) = match (&spec.user, entry) {
        (_, Some(e)) => (e.uid, e.gid, e.home.to_string(), Some(e.name)),
        (IdOrName::Id(uid), None) => (*uid, 0, "/".to_string(), None),
        (IdOrName::Name(_), None) => unreachable!("names are found or rejected above"),
    };
    match &spec.group {
        Some(IdOrName::Id(g)) => gid = *g,
        Some(IdOrName::Name(gname)) => {
            gid = group_entries(group)
                .find(|(n, _, _)| n == gname)
                .map(|(_, g, _)| g)
                .ok_or_else(|| {
                    BoxError::Invalid(format!(
                        "unable to find group {gname}: no matching entries in group file"
                    ))
                })?;
        }
        None => {}
    }
    let mut groups = vec![gid];
    if let (Some(name), None) = (name, &spec.group) {
        for (_, g, members) in group_entries(group) {
            if members.contains(&name) && !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    Ok(Credentials {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1::/usr/sbin:/bin/false\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
        broken line\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:alice,bob\nalice:x:1000:\nstaff:x:50:\n";

    fn creds(spec: &str) -> Result<Credentials, BoxError> {
        resolve(&spec.parse()?, PASSWD, GROUP)
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            "7".parse::<UserSpec>().unwrap(),
            UserSpec {
                user: IdOrName::Id(7),
                group: None
            }
        );
        assert_eq!(
            "bob:staff".parse::<UserSpec>().unwrap().group,
            Some(IdOrName::Name("staff".into()))
        );
        for bad in ["", ":", "a:", ":5", "99999999999", "a/b"] {
            assert!(bad.parse::<UserSpec>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_resolve_with_supplementary_groups() {
        let c = creds("alice").unwrap();
        assert_eq!((c.uid, c.gid, c.home.as_str()), (1000, 1000, "/home/alice"));
        assert_eq!(c.groups, vec![1000, 10]);
    }

    #[test]
    fn explicit_group_overrides_primary() {
        let c = creds("alice:staff").unwrap();
        assert_eq!((c.uid, c.gid), (1000, 50));
        assert_eq!(creds("1000:7").unwrap().gid, 7);
        assert_eq!(creds("daemon:0").unwrap().gid, 0);
    }

    #[test]
    fn unknown_uid_is_allowed_unknown_name_is_not() {
        let c = creds("4242").unwrap();
        assert_eq!((c.uid, c.gid, c.home.as_str()), (4242, 0, "/"));
        let err = creds("mallory").unwrap_err().to_string();
        assert!(err.contains("unable to find user mallory"), "{err}");
        assert!(creds("alice:nogroup").is_err());
    }
}
