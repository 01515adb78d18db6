//! Pure decisions about a process, made before `clone`: its environment,
//! where its executable may be, its working directory, and how a failure in
//! the child maps to Docker's exit codes and wording.

use nix::errno::Errno;

/// `PATH` when the process environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Exit code when the process could not be set up (Docker's 125).
pub const EXIT_SETUP_FAILED: i32 = 125;
/// Exit code when the executable exists but cannot run (Docker's 126).
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// Exit code when the executable is not found (Docker's 127).
pub const EXIT_NOT_FOUND: i32 = 127;

/// The value of `key` in an environment list.
pub fn env_get<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The process environment: `spec` (a later duplicate replaces an earlier
/// one), plus `PATH`, `HOSTNAME` and `HOME` when it lacks them.
pub fn build_env(spec: &[(String, String)], hostname: &str, home: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::with_capacity(spec.len() + 3);
    for (key, value) in spec {
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1.clone_from(value),
            None => env.push((key.clone(), value.clone())),
        }
    }
    for (key, value) in [
        ("PATH", DEFAULT_PATH),
        ("HOSTNAME", hostname),
        ("HOME", home),
    ] {
        if env_get(&env, key).is_none() {
            env.push((key.to_string(), value.to_string()));
        }
    }
    env
}

/// Paths to try, in order, for `executable`: itself when it contains a
/// slash, else each `PATH` entry joined with it (an empty entry is the
/// working directory, as in `execvp`). Empty for an empty name.
pub fn exec_candidates(executable: &str, path: &str) -> Vec<String> {
    if executable.is_empty() {
        return Vec::new();
    }
    if executable.contains('/') {
        return vec![executable.to_string()];
    }
    path.split(':')
        .map(|dir| match dir {
            "" => format!("./{executable}"),
            dir => format!("{}/{executable}", dir.trim_end_matches('/')),
        })
        .collect()
}

/// Each directory on the way to `workdir`, outermost first, so the child
/// can create a missing working directory as Docker does. `"/a//b/./c"`
/// gives `/a`, `/a/b`, `/a/b/c`; `"/"` gives nothing.
pub fn workdir_prefixes(workdir: &str) -> Vec<String> {
    let mut prefixes = Vec::new();
    let mut current = String::new();
    for part in workdir.split('/').filter(|p| !p.is_empty() && *p != ".") {
        current.push('/');
        current.push_str(part);
        prefixes.push(current.clone());
    }
    prefixes
}

/// A step of the child's setup; sent back as one byte when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Making the mount tree private.
    MountPrivate = 1,
    /// Setting the hostname.
    Hostname,
    /// Pivoting into the box root.
    PivotRoot,
    /// Mounting /proc.
    MountProc,
    /// Mounting /dev.
    MountDev,
    /// Creating the nodes and links of /dev.
    DevNodes,
    /// Mounting /dev/pts.
    MountDevpts,
    /// Mounting /dev/shm.
    MountShm,
    /// Mounting /sys.
    MountSys,
    /// Connecting stdin, stdout and stderr.
    Stdio,
    /// Creating the working directory.
    MakeWorkdir,
    /// Setting supplementary groups.
    SetGroups,
    /// Setting the group id.
    SetGid,
    /// Setting the user id.
    SetUid,
    /// Entering the working directory.
    Workdir,
    /// Executing the program.
    Exec,
    /// Joining the running box's namespaces.
    JoinBox,
    /// Making the terminal the controlling terminal of a new session.
    Terminal,
    /// Setting the container's ulimits.
    SetRlimit,
}

const STAGES: [Stage; 19] = [
    Stage::MountPrivate,
    Stage::Hostname,
    Stage::PivotRoot,
    Stage::MountProc,
    Stage::MountDev,
    Stage::DevNodes,
    Stage::MountDevpts,
    Stage::MountShm,
    Stage::MountSys,
    Stage::Stdio,
    Stage::MakeWorkdir,
    Stage::SetGroups,
    Stage::SetGid,
    Stage::SetUid,
    Stage::Workdir,
    Stage::Exec,
    Stage::JoinBox,
    Stage::Terminal,
    Stage::SetRlimit,
];

impl Stage {
    /// The stage a report byte names.
    pub fn from_byte(byte: u8) -> Option<Stage> {
        STAGES.iter().copied().find(|s| *s as u8 == byte)
    }

    fn describe(self) -> &'static str {
        match self {
            Stage::MountPrivate => "make the mount tree private",
            Stage::Hostname => "set hostname",
            Stage::PivotRoot => "pivot_root into the box root",
            Stage::MountProc => "mount proc on /proc",
            Stage::MountDev => "mount tmpfs on /dev",
            Stage::DevNodes => "create /dev nodes",
            Stage::MountDevpts => "mount devpts on /dev/pts",
            Stage::MountShm => "mount tmpfs on /dev/shm",
            Stage::MountSys => "mount sysfs on /sys",
            Stage::Stdio => "connect stdio",
            Stage::MakeWorkdir => "create working directory",
            Stage::SetGroups => "setgroups",
            Stage::SetGid => "setgid",
            Stage::SetUid => "setuid",
            Stage::Workdir => "chdir to working directory",
            Stage::Exec => "exec",
            Stage::JoinBox => "join the container's namespaces",
            Stage::Terminal => "set up the terminal",
            Stage::SetRlimit => "set the ulimits",
        }
    }
}

/// Why a process did not start, as reported in `SpawnFailed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnFailure {
    /// 125, 126 or 127.
    pub exit_code: i32,
    /// For the user.
    pub reason: String,
}

impl SpawnFailure {
    /// A failure before or around `clone` (Docker's 125).
    pub fn setup(reason: impl Into<String>) -> Self {
        SpawnFailure {
            exit_code: EXIT_SETUP_FAILED,
            reason: reason.into(),
        }
    }

    /// Map a failure the child reported to Docker's code and wording.
    pub fn from_child(stage: Stage, errno: Errno, executable: &str, workdir: &str) -> Self {
        match stage {
            Stage::Exec => exec_failure(executable, errno),
            Stage::MakeWorkdir | Stage::Workdir => {
                Self::setup(format!("{} {workdir:?}: {errno}", stage.describe()))
            }
            _ => Self::setup(format!("{}: {errno}", stage.describe())),
        }
    }
}

fn exec_failure(executable: &str, errno: Errno) -> SpawnFailure {
    let searched = !executable.contains('/');
    let (exit_code, what) = match errno {
        Errno::ENOENT | Errno::ENOTDIR if searched => {
            (EXIT_NOT_FOUND, "executable file not found in $PATH".into())
        }
        Errno::ENOENT | Errno::ENOTDIR => (EXIT_NOT_FOUND, "no such file or directory".into()),
        Errno::EACCES => (EXIT_CANNOT_EXECUTE, "permission denied".into()),
        Errno::ENOEXEC => (EXIT_CANNOT_EXECUTE, "exec format error".into()),
        other => (EXIT_CANNOT_EXECUTE, other.to_string()),
    };
    SpawnFailure {
        exit_code,
        reason: format!("exec: {executable:?}: {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_gets_defaults_only_when_absent() {
        let env = build_env(&pairs(&[("A", "1")]), "box1", "/root");
        assert_eq!(
            env,
            pairs(&[
                ("A", "1"),
                ("PATH", DEFAULT_PATH),
                ("HOSTNAME", "box1"),
                ("HOME", "/root")
            ])
        );
        let given = pairs(&[
            ("PATH", "/bin"),
            ("HOME", "/h"),
            ("HOSTNAME", "x"),
            ("A", "1"),
            ("A", "2"),
        ]);
        let env = build_env(&given, "box1", "/root");
        assert_eq!(
            env,
            pairs(&[
                ("PATH", "/bin"),
                ("HOME", "/h"),
                ("HOSTNAME", "x"),
                ("A", "2")
            ])
        );
    }

    #[test]
    fn candidates_follow_path_or_the_given_path() {
        assert_eq!(exec_candidates("/bin/sh", "/x"), ["/bin/sh"]);
        assert_eq!(exec_candidates("./run", "/x"), ["./run"]);
        assert_eq!(
            exec_candidates("sh", "/usr/bin:/bin/:"),
            ["/usr/bin/sh", "/bin/sh", "./sh"]
        );
        assert_eq!(exec_candidates("sh", "/"), ["/sh"]);
        assert!(exec_candidates("", DEFAULT_PATH).is_empty());
    }

    #[test]
    fn workdir_prefixes_are_normalised() {
        assert_eq!(workdir_prefixes("/a//b/./c/"), ["/a", "/a/b", "/a/b/c"]);
        assert_eq!(workdir_prefixes("app"), ["/app"]);
        assert!(workdir_prefixes("/").is_empty());
        assert!(workdir_prefixes("").is_empty());
    }

    #[test]
    fn exec_errors_map_to_docker_codes() {
        let f = SpawnFailure::from_child(Stage::Exec, Errno::ENOENT, "nope", "/");
        assert_eq!(f.exit_code, 127);
        assert_eq!(
            f.reason,
            r#"exec: "nope": executable file not found in $PATH"#
        );
        let f = SpawnFailure::from_child(Stage::Exec, Errno::ENOTDIR, "/bin/x/y", "/");
        assert_eq!(
            (f.exit_code, f.reason.as_str()),
            (127, r#"exec: "/bin/x/y": no such file or directory"#)
        );
        let f = SpawnFailure::from_child(Stage::Exec, Errno::EACCES, "/etc", "/");
        assert_eq!(
            (f.exit_code, f.reason.as_str()),
            (126, r#"exec: "/etc": permission denied"#)
        );
        let f = SpawnFailure::from_child(Stage::Exec, Errno::ENOEXEC, "/x", "/");
        assert_eq!(
            (f.exit_code, f.reason.as_str()),
            (126, r#"exec: "/x": exec format error"#)
        );
        assert_eq!(
            SpawnFailure::from_child(Stage::Exec, Errno::E2BIG, "/x", "/").exit_code,
            126
        );
    }

    #[test]
    fn setup_errors_are_125_and_name_the_stage() {
        let f = SpawnFailure::from_child(Stage::Workdir, Errno::ENOTDIR, "sh", "/etc/passwd");
        assert_eq!(f.exit_code, 125);
        assert_eq!(
            f.reason,
            r#"chdir to working directory "/etc/passwd": ENOTDIR: Not a directory"#
        );
        let f = SpawnFailure::from_child(Stage::MountProc, Errno::EPERM, "sh", "/");
        assert_eq!(
            f.reason,
            "mount proc on /proc: EPERM: Operation not permitted"
        );
    }

    #[test]
    fn stages_round_trip_through_a_byte() {
        for stage in STAGES {
            assert_eq!(Stage::from_byte(stage as u8), Some(stage));
        }
        assert_eq!(Stage::from_byte(0), None);
        assert_eq!(Stage::from_byte(200), None);
    }
}
