//! Starting a [`HelperSpec`]: check the program, set up the child, exec.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::ffi::OsString;

use super::{Helper, HelperSpec, LaunchError, Lifetime, Stdio};

/// Starts helper processes (see the module documentation). It holds the
/// base environment every helper gets (the front end's [`ENV_ALLOW`]
/// variables, captured once into the engine's config); cgroup placement and
/// default limits will live here.
#[derive(Debug, Clone, Default)]
pub struct Launcher {
    base_env: Vec<(OsString, OsString)>,
}

impl Launcher {
    /// A launcher whose helpers get no base environment.
    pub fn new() -> Self {
        Launcher::default()
    }

    /// A launcher whose helpers get `base_env` (and their spec's variables).
    pub fn with_env(base_env: Vec<(OsString, OsString)>) -> Self {
        Launcher { base_env }
    }

    /// `program` as it will be run: a bare name is looked up in the base
    /// environment's `PATH`. Missing or not runnable: an error with `hint`.
    pub fn locate(
        &self,
        name: &'static str,
        program: &Path,
        hint: &'static str,
    ) -> Result<PathBuf, LaunchError> {
        let path = self
            .base_env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone());
        locate_in(path.as_deref(), name, program, hint)
    }

    /// Start `spec`. The program is checked first (missing, not
    /// executable: [`LaunchError::NotFound`], [`LaunchError::NotExecutable`]
    /// with the spec's hint); its inherited descriptors are closed in this
    /// process once it runs.
    pub fn spawn(&self, spec: HelperSpec) -> Result<Helper, LaunchError> {
        if let Some(jail) = spec.jail {
            match jail {}
        }
        let name = spec.name;
        let program = self.locate(name, &spec.program, spec.hint)?;
        let mut cmd = Command::new(&program);
        cmd.args(&spec.args);
        if !spec.env.inherit_all {
            cmd.env_clear();
            for (key, value) in &self.base_env {
                cmd.env(key, value);
            }
        }
        for (key, value) in &spec.env.vars {
            cmd.env(key, value);
        }
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        cmd.stdin(open(&spec.stdin, name, "stdin")?)
            .stdout(open(&spec.stdout, name, "stdout")?)
            .stderr(open(&spec.stderr, name, "stderr")?);
        let staged = stage_fds(name, spec.fds)?;
        let moves: Vec<(RawFd, RawFd)> = staged
            .iter()
            .map(|(fd, target)| (fd.as_raw_fd(), *target))
            .collect();
        let lifetime = spec.lifetime;
        if lifetime == Lifetime::DieWithParent {
            cmd.process_group(0);
        }
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        let fd_limit = fd_limit();
        // SAFETY: the closure runs in the forked child before exec. It only
        // makes async-signal-safe calls (prctl, getppid, setsid, close_range,
        // fcntl, dup2) and reads `moves`, which was allocated before the
        // fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                match lifetime {
                    Lifetime::DieWithParent => {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        // The parent may have died before the line above:
                        // then no signal would ever come.
                        if libc::getppid() != parent {
                            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                        }
                    }
                    Lifetime::Detached => {
                        if libc::setsid() < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                }
                // Descriptors we inherited without close-on-exec stop here.
                cloexec_from(3, fd_limit);
                // Every source is above every target (see `stage_fds`), so
                // no dup2 here overwrites a source still to be moved; dup2
                // leaves the new descriptor without close-on-exec.
                for &(from, to) in &moves {
                    if libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| spawn_error(name, &program, spec.hint, e))?;
        drop(staged);
        tracing::debug!(
            helper = name,
            pid = child.id(),
            program = %program.display(),
            "helper started"
        );
        Ok(Helper::new(name, lifetime, child))
    }
}

/// One past the highest descriptor number this process may have.
fn fd_limit() -> RawFd {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft.min(1 << 20) as RawFd)
        .unwrap_or(1 << 16)
}

/// Mark every descriptor from `first` on close-on-exec. Runs in a forked
/// child: async-signal-safe calls only.
fn cloexec_from(first: RawFd, limit: RawFd) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on
    // this process's descriptors.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    } == 0;
    if !done {
        // Kernels before 5.11: one by one.
        for fd in first..limit {
            // SAFETY: F_SETFD on any number is harmless (EBADF if unused).
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

/// The program `program` of helper `name` as it will be run: a bare name is
/// looked up in `search_path` (a `PATH` value). Missing or not runnable: an
/// error with `hint`.
pub fn locate_in(
    search_path: Option<&std::ffi::OsStr>,
    name: &'static str,
    program: &Path,
    hint: &'static str,
) -> Result<PathBuf, LaunchError> {
    let path = if program.as_os_str().as_bytes().contains(&b'/') {
        program.to_path_buf()
    } else {
        search_path
            .and_then(|paths| {
                std::env::split_paths(paths)
                    .map(|dir| dir.join(program))
                    .find(|p| p.is_file())
            })
            .ok_or_else(|| LaunchError::NotFound {
                name,
                path: program.to_path_buf(),
                hint,
            })?
    };
    let not_executable = |reason: String| LaunchError::NotExecutable {
        name,
        path: path.clone(),
        reason,
        hint,
    };
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LaunchError::NotFound { name, path, hint })
        }
        Err(e) => return Err(not_executable(e.to_string())),
    };
    if meta.is_dir() {
        return Err(not_executable("it is a directory".into()));
    }
    if !meta.is_file() {
        return Err(not_executable("not a regular file".into()));
    }
    let mode = meta.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(not_executable(format!(
            "not executable: mode {:o}",
            mode & 0o7777
        )));
    }
    if let Err(e) = nix::unistd::access(&path, nix::unistd::AccessFlags::X_OK) {
        return Err(not_executable(std::io::Error::from(e).to_string()));
    }
    Ok(path)
}

fn open(
    stdio: &Stdio,
    name: &'static str,
    stream: &str,
) -> Result<std::process::Stdio, LaunchError> {
    Ok(match stdio {
        Stdio::Null => std::process::Stdio::null(),
        Stdio::Pipe => std::process::Stdio::piped(),
        Stdio::File { path, append } => {
            let mut options = std::fs::File::options();
            if stream == "stdin" {
                options.read(true);
            } else if *append {
                options.create(true).append(true);
            } else {
                options.create(true).write(true).truncate(true);
            }
            let file = options.open(path).map_err(|source| LaunchError::Io {
                what: format!("open {} for the {stream} of {name}", path.display()),
                source,
            })?;
            file.into()
        }
    })
}

/// Copy each inherited descriptor above every target number (close-on-exec
/// until the child moves it into place), and check the targets.
fn stage_fds(
    name: &'static str,
    fds: Vec<super::InheritedFd>,
) -> Result<Vec<(OwnedFd, RawFd)>, LaunchError> {
    let bad = |reason: String| LaunchError::BadSpec { name, reason };
    let mut targets: Vec<RawFd> = fds.iter().map(|f| f.target).collect();
    targets.sort_unstable();
    if let Some(t) = targets.iter().find(|t| **t < 3) {
        return Err(bad(format!(
            "descriptor {t} is stdio: pass fds at 3 or more"
        )));
    }
    if let Some(w) = targets.windows(2).find(|w| w[0] == w[1]) {
        return Err(bad(format!("descriptor {} is given twice", w[0])));
    }
    let floor = targets.last().map_or(3, |t| t + 1);
    fds.into_iter()
        .map(|f| {
            // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new
            // descriptor (or -1) and touches nothing else.
            let high = unsafe { libc::fcntl(f.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, floor) };
            if high < 0 {
                return Err(LaunchError::Io {
                    what: format!("pass descriptor {} to {name}", f.target),
                    source: std::io::Error::last_os_error(),
                });
            }
            // SAFETY: `high` is a new descriptor nothing else owns.
            Ok((unsafe { OwnedFd::from_raw_fd(high) }, f.target))
        })
        .collect()
}

fn spawn_error(
    name: &'static str,
    program: &Path,
    hint: &'static str,
    e: std::io::Error,
) -> LaunchError {
    let not_executable = |reason: &str| LaunchError::NotExecutable {
        name,
        path: program.to_path_buf(),
        reason: reason.into(),
        hint,
    };
    match e.raw_os_error() {
        // The file exists (checked): its interpreter or loader does not.
        Some(libc::ENOENT) => not_executable("its interpreter or loader is missing"),
        Some(libc::ENOEXEC) => not_executable("not a program this host can run"),
        Some(libc::EACCES) => not_executable("permission denied"),
        _ => LaunchError::Io {
            what: format!("start {name} ({})", program.display()),
            source: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Duration;

    use super::*;
    use crate::launch::{Environment, HelperSpec};

    const HINT: &str = "install it";

    fn sh(script: &str) -> HelperSpec {
        HelperSpec::new("test helper", "/bin/sh", HINT).args(["-c", script])
    }

    #[test]
    fn missing_and_unrunnable_programs_name_the_path_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let launcher = Launcher::new();
        let err = launcher
            .spawn(HelperSpec::new("QEMU", "/nonexistent/qemu", HINT))
            .unwrap_err();
        assert!(matches!(err, LaunchError::NotFound { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "QEMU not found at /nonexistent/qemu: install it"
        );
        let err = launcher
            .spawn(HelperSpec::new("QEMU", "no-such-program-a3s", HINT))
            .unwrap_err();
        assert!(matches!(err, LaunchError::NotFound { .. }), "{err}");

        let plain = dir.path().join("plain");
        std::fs::write(&plain, "data").unwrap();
        let err = launcher
            .spawn(HelperSpec::new("QEMU", &plain, HINT))
            .unwrap_err();
        assert!(
            err.to_string().contains("not executable: mode 644"),
            "{err}"
        );
        assert!(err.to_string().ends_with(": install it"), "{err}");
        let err = launcher
            .spawn(HelperSpec::new("QEMU", dir.path(), HINT))
            .unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");

        let script = dir.path().join("script");
        std::fs::write(&script, "#!/nonexistent/interpreter\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = launcher
            .spawn(HelperSpec::new("QEMU", &script, HINT))
            .unwrap_err();
        assert!(err.to_string().contains("interpreter"), "{err}");
    }

    #[test]
    fn the_environment_is_the_allow_list_plus_the_spec() {
        std::env::set_var("A3S_LAUNCH_TEST_SECRET", "leak");
        let launcher = Launcher::new();
        let mut h = launcher
            .spawn(
                sh("echo \"[$A3S_LAUNCH_TEST_SECRET][$GIVEN][${PATH:+path}]\"")
                    .env(Environment::clean().set("GIVEN", "yes"))
                    .stdout(Stdio::Pipe),
            )
            .unwrap();
        let mut out = String::new();
        h.take_stdout().unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out.trim(), "[][yes][path]");
        let mut h = launcher
            .spawn(
                sh("echo \"[$A3S_LAUNCH_TEST_SECRET]\"")
                    .env(Environment::inherit())
                    .stdout(Stdio::Pipe),
            )
            .unwrap();
        let mut out = String::new();
        h.take_stdout().unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out.trim(), "[leak]");
    }

    #[test]
    fn inherited_fds_arrive_at_their_numbers_and_nothing_else_does() {
        let (mut r4, w4) = std::io::pipe().unwrap();
        let (mut r3, w3) = std::io::pipe().unwrap();
        let mut h = Launcher::new()
            .spawn(
                sh("echo four >&4; echo three >&3")
                    .fd(w4.into(), 4)
                    .fd(w3.into(), 3),
            )
            .unwrap();
        assert_eq!(exit_code_of(&mut h), 0);
        let (mut a, mut b) = (String::new(), String::new());
        // Both ends reach EOF: our copies of the write ends were closed.
        r3.read_to_string(&mut a).unwrap();
        r4.read_to_string(&mut b).unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("three\n", "four\n"));

        // Descriptors of ours not passed (std opens them close-on-exec)
        // stay behind: `ls` sees stdio, 3, and the one it lists with.
        let _stray = std::fs::File::open("/dev/null").unwrap();
        let (_r, w) = std::io::pipe().unwrap();
        let mut h = Launcher::new()
            .spawn(
                HelperSpec::new("ls", "/bin/ls", HINT)
                    .arg("/proc/self/fd")
                    .stdout(Stdio::Pipe)
                    .fd(w.into(), 3),
            )
            .unwrap();
        let mut listed = String::new();
        h.take_stdout()
            .unwrap()
            .read_to_string(&mut listed)
            .unwrap();
        let mut fds: Vec<i32> = listed
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        fds.sort();
        assert_eq!(fds, [0, 1, 2, 3, 4]);

        let stdio = std::fs::File::open("/dev/null").unwrap().into();
        let bad = Launcher::new().spawn(sh("true").fd(stdio, 1));
        assert!(matches!(bad, Err(LaunchError::BadSpec { .. })));
    }

    #[test]
    fn a_helper_dying_with_us_is_killed_on_drop_a_detached_one_gets_its_own_session() {
        let h = Launcher::new().spawn(sh("sleep 30")).unwrap();
        let pid = h.pid() as i32;
        // Its own process group.
        assert_eq!(
            nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
                .unwrap()
                .as_raw(),
            pid
        );
        drop(h);
        assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err());

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sid");
        let mut h = Launcher::new()
            .spawn(
                sh("ps -o sid= -p $$ > \"$OUT\"")
                    .env(Environment::clean().set("OUT", &out))
                    .lifetime(Lifetime::Detached),
            )
            .unwrap();
        let pid = h.pid();
        assert_eq!(exit_code_of(&mut h), 0);
        let sid: u32 = std::fs::read_to_string(&out)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(sid, pid);
    }

    fn exit_code_of(h: &mut Helper) -> i32 {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = h.try_wait() {
                return crate::launch::exit_code(status);
            }
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
