//! What the CLI refuses, in one table run against the real binary: each row
//! is an argument vector, the exit code (125: an error of a3s-box itself,
//! as Docker's) and a fragment of the message. After every row nothing may
//! have been created: no box (`ps -a -q`), no volume (`volume ls -q`), no
//! file in the home but the stores' own locks, no event recorded. Rows boot
//! no VM (they are refused before), so the table runs in seconds.
//!
//! Each row says what Docker (or podman, whose CLI matches) does with the
//! same input; "stricter" marks where we refuse on purpose what Docker
//! accepts, and why.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, stdout, TestHome};

/// A refusal: the arguments, the exit code, a fragment of stderr.
struct Row {
    /// Words split at blanks; `'…'` quotes one with blanks (`''` is empty).
    argv: &'static str,
    code: i32,
    says: &'static str,
}

const fn row(argv: &'static str, says: &'static str) -> Row {
    Row {
        argv,
        code: 125,
        says,
    }
}

/// The words of a row's `argv`.
fn words(argv: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = argv.trim_start();
    while !rest.is_empty() {
        let (word, after) = match rest.strip_prefix('\'') {
            Some(quoted) => quoted.split_once('\'').unwrap(),
            None => rest.split_once(' ').unwrap_or((rest, "")),
        };
        words.push(word.to_string());
        rest = after.trim_start();
    }
    words
}

/// A path that does not exist (bind source, env file, rootfs).
const MISSING: &str = "/nonexistent-a3s-refusal";

/// `run` and `create`.
const RUN: &[Row] = &[
    // Docker: "Conflicting options: --restart and --rm".
    row("run --rm --restart always --rootfs / -- true", "conflicting options"),
    row("create --rm --restart on-failure:3 --rootfs / -- true", "--rm"),
    // Docker: "invalid restart policy: unknown policy 'bogus'".
    row("run --restart bogus --rootfs / -- true", "unknown policy"),
    // Docker: "maximum retry count must be an integer".
    row("create --restart on-failure:x --rootfs / -- true", "whole number"),
    row("create --restart on-failure:-1 --rootfs / -- true", "whole number"),
    // Docker: "maximum retry count cannot be used with restart policy 'always'".
    row("create --restart always:3 --rootfs / -- true", "on-failure only"),
    // Docker: "the working directory 'relative' is invalid, it needs to be
    // an absolute path".
    row("run -w relative --rootfs / -- true", "must be an absolute path"),
    row("create --workdir x/y --rootfs / -- true", "must be an absolute path"),
    // `-v relative:/x` is a volume named "relative" in Docker as here (not
    // refused); a source with a '/' that is not absolute is neither.
    // Docker: "includes invalid characters for a local volume name".
    row("run -v rel/dir:/x --rootfs / -- true", "a volume name uses"),
    // Stricter: Docker 23+ resolves `./rel` against the current directory;
    // spec parsers touch no file system, so write the path out.
    row("run -v ./rel:/x --rootfs / -- true", "must be absolute"),
    // Docker: "invalid mount path: 'relative' mount path must be absolute".
    row("run -v /tmp:relative --rootfs / -- true", "must be absolute"),
    // Docker: "invalid specification: destination can't be '/'".
    row("create -v /tmp:/ --rootfs / -- true", "cannot be /"),
    // Docker: "invalid mode: bogus".
    row("create -v /tmp:/x:bogus --rootfs / -- true", "unknown option"),
    // Docker: "invalid mode: ro,rw" (one option of each kind).
    row("create -v /tmp:/x:ro,rw --rootfs / -- true", "of one kind"),
    row("create -v v1:/x:nocopy,nocopy --rootfs / -- true", "of one kind"),
    // Docker: "invalid spec: a:b:c:d: too many colons".
    row("create -v a:b:c:d --rootfs / -- true", "too many colons"),
    // Docker: "invalid spec: :/x: empty section between colons".
    row("create -v :/x --rootfs / -- true", "source is empty"),
    // Docker: "Duplicate mount point: /x".
    row("create -v /tmp:/x -v /var:/x/ --rootfs / -- true", "both on /x"),
    row("create -v /tmp:/t --tmpfs /t --rootfs / -- true", "both on /t"),
    // Docker: "invalid mount config for type "bind": field VolumeOptions
    // must not be specified".
    row("create -v /tmp:/x:nocopy --rootfs / -- true", "volumes only"),
    // Stricter: Docker accepts shared/slave propagation; nothing mounted on
    // one side of the VM boundary reaches the other, so shares are rprivate.
    row("create -v /tmp:/x:shared --rootfs / -- true", "propagation"),
    // Docker: "invalid mount config: mount type unknown".
    row("create --mount type=bogus,target=/x --rootfs / -- true", "use bind, volume or tmpfs"),
    // Docker: "invalid mount path: 'rel' mount path must be absolute".
    row("create --mount type=bind,source=rel,target=/x --rootfs / -- true", "must be absolute"),
    // Docker: "field Source must not be empty".
    row("create --mount type=bind,target=/x --rootfs / -- true", "needs source="),
    // Docker: "field Target must not be empty".
    row("create --mount type=volume,source=v1 --rootfs / -- true", "no target="),
    // Docker: "field Source must be empty".
    row("create --mount type=tmpfs,source=x,target=/t --rootfs / -- true", "has no source"),
    // Docker: "bind source path does not exist: /nonexistent…".
    row("create --mount type=bind,source=/nonexistent-a3s-refusal,target=/x --rootfs / -- true", "does not exist"),
    // Docker: "unexpected key 'bogus' in 'bogus=1'".
    row("create --mount type=volume,src=v1,dst=/x,bogus=1 --rootfs / -- true", "unknown field"),
    // Docker: "invalid mount path: 'relative' mount path must be absolute".
    row("create --tmpfs relative --rootfs / -- true", "must be absolute"),
    // Docker: "invalid tmpfs option".
    row("create --tmpfs /t:size=lots --rootfs / -- true", "use a number"),
    row("create --tmpfs /t:bogus --rootfs / -- true", "unknown option"),
    row("create --tmpfs /t:mode=999 --rootfs / -- true", "octal"),
    // Stricter: Docker's size=0 means no limit; we ask for one or none.
    row("create --tmpfs /t:size=0 --rootfs / -- true", "no limit"),
    // Docker: invalid argument "lots" for "-m, --memory" flag: invalid size.
    row("run --memory lots --rootfs / -- true", "use a number"),
    // Stricter: Docker's floor is 6 MiB; a VM needs 64.
    row("run -m 10m --rootfs / -- true", "at least 64 MiB"),
    row("create -m 1000k --rootfs / -- true", "whole number of MiB"),
    // Stricter: Docker's --cpus is a CFS quota (0.5 is fine, 0 is no
    // limit); ours is a whole number of vCPUs, 1 to 64.
    row("create --cpus 0 --rootfs / -- true", "0 is not in 1..=64"),
    row("create --cpus 0.5 --rootfs / -- true", "invalid value '0.5'"),
    // Docker (overlay2 with quotas): "invalid size"; without quotas it
    // refuses every --storage-opt.
    row("create --storage-opt size=x --rootfs / -- true", "use a number"),
    // Docker: "Unknown option foo".
    row("create --storage-opt foo=bar --rootfs / -- true", "only size=N"),
    row("create --storage-opt size=1m --rootfs / -- true", "at least 16 MiB"),
    // Docker: "Invalid container name (bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-]
    // are allowed".
    row("create --name 'bad name' --rootfs / -- true", "a box name uses letters"),
    row("create --name -x --rootfs / -- true", "a box name uses letters"),
    // Docker: "invalid environment variable: =x".
    row("create -e =x --rootfs / -- true", "variable name is empty"),
    // Docker: "open …: no such file or directory".
    row("create --env-file /nonexistent-a3s-refusal --rootfs / -- true", "No such file"),
    // Docker: "invalid label '=x': empty name".
    row("create -l =x --rootfs / -- true", "key is empty"),
    // Stricter: Docker (since 1.13) leaves host names to the kernel; we
    // hold a box's hostname to RFC 1123, as its DNS name.
    row("create --hostname 'bad host' --rootfs / -- true", "host name uses"),
    // Docker accepts it and the runtime fails at start (sethostname:
    // EINVAL): the kernel takes 64 characters.
    row("create --hostname aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbb --rootfs / -- true", "at most 64"),
    // Stricter: Docker's -u "" is the image's user; ours leaves -u out.
    row("create -u '' --rootfs / -- true", "user is empty"),
    // Docker: invalid pull option: 'bogus': must be one of "always",
    // "missing" or "never".
    row("create --pull bogus --rootfs / -- true", "pull policy"),
    // Docker: "No such image: alpine:latest".
    row("create --pull never alpine", "not present locally"),
    // Docker: "invalid reference format".
    row("create 'bad image'", "image reference"),
    // Docker: "invalid reference format: repository name must be lowercase".
    row("run UPPER:tag", "must be lowercase"),
    // Docker: "No such container: nosuch".
    row("create --volumes-from nosuch --rootfs / -- true", "no such box"),
    // Docker: "invalid mode: rx".
    row("create --volumes-from web:rx --rootfs / -- true", "unknown mode"),
    // Docker: '"docker run" requires at least 1 argument'.
    row("run", "no image given"),
    // Docker: "No command specified" (an image without CMD).
    row("create --rootfs /", "no command given"),
    // Our own flags.
    row("create --rootfs /nonexistent-a3s-refusal -- true", "root filesystem not found"),
    row("create --accel hvf --rootfs / -- true", "unknown accelerator"),
    // Unknown flags before the image are unknown flags, not an image named
    // "--gpus" (Docker has --gpus; we do not). Docker: "unknown flag: --gpus".
    row("run --gpus all alpine", "unknown flag: --gpus"),
    row("create --gpus all alpine", "unknown flag: --gpus"),
    row("run --rootfs / --gpus all -- true", "unknown flag: --gpus"),
    row("create --rootfs / --init=true -- true", "unknown flag: --init"),
    // With --rootfs the command follows `--`: a word starting with '-'
    // before it is a flag (an entrypoint's arguments may start with one).
    row("create --rootfs / -Z", "unknown flag: -Z"),
];

/// `exec`, `start`, `stop`, `kill`, `rm`, `cp`, `logs`: no box exists, so
/// what they check before looking one up must refuse first.
const VERBS: &[Row] = &[
    // Docker checks the working directory after finding the container; we
    // check it before, so the row needs no running box.
    row("exec -w relative web sh", "must be an absolute path"),
    row("exec -e =x web sh", "variable name is empty"),
    row(
        "exec --env-file /nonexistent-a3s-refusal web sh",
        "No such file",
    ),
    // Stricter: Docker's -u "" is the container's user.
    row("exec -u '' web sh", "user is empty"),
    // Docker: '"docker exec" requires at least 2 arguments'.
    row("exec web", "required arguments"),
    // Docker: "unknown flag: --bogus".
    row("exec --bogus web sh", "unexpected argument '--bogus'"),
    // Docker: "No such container: web".
    row("exec web sh", "no such box"),
    // Docker: "you cannot start and attach multiple containers at once".
    row("start -a b1 b2", "exactly one box"),
    row("start web", "no such box"),
    row("start", "required arguments"),
    // Docker: invalid argument "abc" for "-t, --time" flag.
    row("stop -t abc web", "invalid value 'abc'"),
    row("stop web", "no such box"),
    row("restart -t x web", "invalid value 'x'"),
    // Docker: "Invalid signal: BOGUS".
    row("kill -s BOGUS web", "signal name"),
    row("kill -s 0 web", "signal name"),
    row("kill --signal SIGRTMAX+1 web", "signal name"),
    // Docker: '"docker rm" requires at least 1 argument'.
    row("rm", "required arguments"),
    row("rm -f web", "no such box"),
    // Docker: "must specify at least one container source".
    row("cp a b", "must be BOX:PATH"),
    // Docker: "copying between containers is not supported".
    row("cp b1:/a b2:/b", "between boxes is not supported"),
    row("cp web:/etc/hostname /tmp/x", "no such box"),
    // Docker: invalid value for "since".
    row("logs --since yesterday web", "invalid time"),
    row("logs --tail abc web", "invalid value 'abc'"),
    // Docker: "-1" is "no limit"; below that is refused.
    row("stop -t -2 web", "invalid value '-2'"),
    // A bare word that is no level would silently log nothing.
    row("--log-level loud ps", "invalid --log-level"),
    row("logs web", "no such box"),
    // Docker: '"docker logs" requires exactly 1 argument'.
    row("logs b1 b2", "unexpected argument 'b2'"),
];

/// `volume`.
const VOLUME: &[Row] = &[
    // Docker: '"bad name" includes invalid characters for a local volume
    // name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed'.
    row("volume create 'bad name'", "invalid volume name"),
    row("volume create /abs", "invalid volume name"),
    row("volume create -l =x v1", "key is empty"),
    // Docker: '"docker volume create" requires at most 1 argument'.
    row("volume create a1 b1", "unexpected argument 'b1'"),
    // Stricter: no volume drivers (Docker: "plugin not found").
    row(
        "volume create --driver nfs v1",
        "unexpected argument '--driver'",
    ),
    // Docker: "no such volume".
    row("volume rm v1", "no such volume"),
    row("volume inspect v1", "no such volume"),
    row("volume rm", "required arguments"),
];

/// `network`: its rows go here once the verb lands (`network create` with
/// a bad name, a reserved name, a bad --subnet/--gateway/--ip-range;
/// `run --network` of an unknown network, `-p` with `--network none`
/// (stricter: the spec refuses it, Docker ignores the ports), `-p` of a
/// bad port or protocol (`sctp`, stricter), `--ip` outside the subnet).
const NETWORK: &[Row] = &[
    // Docker: 'invalid name "bad name" ...'.
    row("network create 'bad name'", "invalid name"),
    // Docker: "invalid CIDR address: 10.0.0.0/33".
    row("network create --subnet 10.0.0.0/33 x", "invalid --subnet"),
    row("network create --gateway 1.2.3 x", "invalid --gateway"),
    // Docker: "no matching subnet for gateway 10.2.0.1".
    row(
        "network create --subnet 10.1.0.0/24 --gateway 10.2.0.1 x",
        "not a host address of subnet",
    ),
    // Docker: "operation is not permitted on predefined bridge network".
    row("network create bridge", "pre-defined network mode"),
    row("network create host", "pre-defined network mode"),
    // Docker: 'plugin "macvlan" not found' (we have one driver).
    row("network create -d macvlan x", "only driver is bridge"),
    // Stricter than Docker, which has no allow-list.
    row(
        "network create --egress-allow bad:rule:x x",
        "invalid --egress-allow",
    ),
    // Docker: "network nope not found".
    row("network inspect nope", "no such network"),
    row("network rm nope", "no such network"),
    // Docker: "bridge is a pre-defined network and cannot be removed".
    row("network rm default", "cannot be removed"),
    // Stricter: Docker shares the host's stack; a box is a VM with its own.
    row(
        "run --network host --rootfs / -- true",
        "cannot share the host's network stack",
    ),
    row("create --net container:x --rootfs / -- true", "one pod"),
    // Docker: "network nope not found" (at create, nothing made).
    row(
        "create --network nope --rootfs / -- true",
        "no such network",
    ),
    row(
        "run --rm --network nope --rootfs / -- true",
        "no such network",
    ),
    // Stricter: Docker ignores the ports of a box without a NIC.
    row(
        "create -p 80 --network none --rootfs / -- true",
        "--network none",
    ),
    row("create -P --net none --rootfs / -- true", "--network none"),
    // Docker: "invalid containerPort: 99999".
    row("create -p 99999:80 --rootfs / -- true", "out of range"),
    // Stricter: Docker has sctp; a box has TCP and UDP.
    row(
        "create -p 80/sctp --rootfs / -- true",
        "SCTP is not supported",
    ),
    row(
        "create -p 8080:80 -p 8080:81 --rootfs / -- true",
        "same host port",
    ),
    row("create --expose 0 --rootfs / -- true", "out of range"),
    // Docker: "user specified IP address is supported on user defined
    // networks only".
    row(
        "create --ip 10.88.0.9 --rootfs / -- true",
        "user-defined networks only",
    ),
    row(
        "create --network-alias web --rootfs / -- true",
        "user-defined networks only",
    ),
    row(
        "create --network none --network default --rootfs / -- true",
        "stand alone",
    ),
    // Docker: "10.0.0.1 is not an ip address".
    row("create --dns bogus --rootfs / -- true", "not an IP address"),
    row(
        "create --dns-search . --rootfs / -- true",
        "no search domains",
    ),
    // Docker: "invalid argument "nocolon" for "--add-host" flag".
    row("create --add-host nocolon --rootfs / -- true", "NAME:IP"),
    // Docker: "01:00:00:00:00:01 is not a unicast address".
    row(
        "create --mac-address 01:00:00:00:00:01 --rootfs / -- true",
        "unicast",
    ),
    // Stricter than Docker, which has no allow-list.
    row(
        "create --egress-allow '*' --rootfs / -- true",
        "name what it may reach",
    ),
    row(
        "create --egress-allow a.b:0 --rootfs / -- true",
        "--egress-allow",
    ),
    // Docker: "network nope not found".
    row("network connect nope x", "no such network"),
    row("network disconnect nope x", "no such network"),
    // Docker: "No such container: nobox".
    row("network connect default nobox", "no such box"),
    row("network disconnect -f default nobox", "no such box"),
    // Docker: "invalid IPv4 address: bogus".
    row("network connect --ip bogus default x", "invalid --ip"),
    // Stricter: --add-host NAME:host-gateway with --network none has no
    // host to point at.
    row(
        "create --network none --add-host h:host-gateway --rootfs / -- true",
        "no NIC",
    ),
];

/// Run `cmd` with nothing on stdin, killing it after `limit`.
fn bounded(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} took longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Files under `dir` other than lock files (`.store.lock`, `gc.lock`).
fn files_in(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            found.extend(files_in(&path));
        } else if !(name.starts_with('.') || name.ends_with(".lock")) {
            found.push(path.display().to_string());
        }
    }
    found
}

/// Nothing was created in `home`: no box, no volume, no file, no event.
fn assert_nothing_created(home: &TestHome, after: &str) {
    let limit = Duration::from_secs(20);
    for argv in [&["ps", "-a", "-q"][..], &["volume", "ls", "-q"][..]] {
        let mut cmd = home.cmd();
        cmd.args(argv);
        let o = bounded(cmd, limit);
        assert_eq!(o.status.code(), Some(0), "{argv:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{argv:?} after `{after}`");
    }
    // The built-in network is written on first use: it always exists.
    let builtin = home.home.path().join("networks/default/network.json");
    let files: Vec<String> = files_in(home.home.path())
        .into_iter()
        .filter(|f| std::path::Path::new(f) != builtin)
        .collect();
    assert!(files.is_empty(), "`{after}` left {files:?}");
    let mut cmd = home.cmd();
    cmd.args(["network", "ls", "-q"]);
    let o = bounded(cmd, limit);
    assert_eq!(stdout(&o), "default\n", "networks after `{after}`");
}

#[test]
fn rows_split_into_words() {
    assert_eq!(
        words("create --name 'bad name' -u '' x"),
        ["create", "--name", "bad name", "-u", "", "x"]
    );
    assert!(!MISSING.is_empty() && !Path::new(MISSING).exists());
}

#[test]
fn the_cli_refuses_what_docker_refuses_before_anything_is_created() {
    let home = TestHome::new();
    let rows: Vec<&Row> = [RUN, VERBS, VOLUME, NETWORK]
        .into_iter()
        .flatten()
        .collect();
    assert!(rows.len() >= 40, "{} rows", rows.len());
    let started = Instant::now();
    let mut failures = Vec::new();
    for row in &rows {
        let shown = row.argv;
        let mut cmd = home.cmd();
        cmd.args(words(row.argv));
        let o = bounded(cmd, Duration::from_secs(20));
        let err = stderr(&o);
        if o.status.code() != Some(row.code) || !err.contains(row.says) || !o.stdout.is_empty() {
            failures.push(format!(
                "`{shown}`: exit {:?} (want {}), stdout {:?}, stderr {err:?} (want {:?})",
                o.status.code(),
                row.code,
                stdout(&o),
                row.says
            ));
        }
        assert_nothing_created(&home, shown);
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    eprintln!("{} refusals in {:?}", rows.len(), started.elapsed());
}

/// What Docker accepts next to the refusals above: each of these `create`s
/// (no VM boots) must make a box, so the table refuses values, not flags.
const ACCEPTED: &[&str] = &[
    // `-d` with `--rm` is fine, and `--rm` with the restart policy `no`.
    "create -d --rm --rootfs / -- true",
    "create --rm --restart no --rootfs / -- true",
    "create --restart on-failure:3 --rootfs / -- true",
    "create --restart unless-stopped --rootfs / -- true",
    // A source that is not a path is a volume name, as in Docker.
    "create -v relative:/x --rootfs / -- true",
    "create -v /tmp:/x:ro,z -v v1:/y:nocopy -v /anon --rootfs / -- true",
    "create --mount type=volume,target=/v --mount type=tmpfs,dst=/t,tmpfs-size=64m --rootfs / -- true",
    "create --tmpfs /t:size=64m,mode=1777,exec --rootfs / -- true",
    "create -w /tmp -u 1000:1000 -e A=1 -l k=v --rootfs / -- true",
    "create --name web.1_x-y --hostname a.b-c -m 1g --cpus 4 --rootfs / -- true",
    "create --storage-opt size=1g --read-only --rootfs / -- true",
    // An entrypoint's arguments may start with '-'; after the command,
    // words are the command's.
    "create --entrypoint sh --rootfs / -- -c true",
    "create --rootfs / -- sh -c 'echo --gpus'",
    // Networking as Docker spells it (nothing is bound or attached until
    // the box starts).
    "create -p 8080:80 -p 127.0.0.1::81/udp -p 9000-9001:90-91 -P --expose 7000-7001/udp --rootfs / -- true",
    "create --net bridge --dns 127.0.0.1 --dns-search a.test --dns-opt ndots:2 --rootfs / -- true",
    "create --network default --add-host h:host-gateway --add-host db=10.1.2.3 --mac-address 02:42:ac:11:00:09 --rootfs / -- true",
    "create --egress-allow api.example.com:443 --egress-allow 10.0.0.0/8 --rootfs / -- true",
    "create --network none --rootfs / -- true",
];

#[test]
fn what_docker_accepts_is_created() {
    let home = TestHome::new();
    for argv in ACCEPTED {
        let mut cmd = home.cmd();
        cmd.args(words(argv));
        let o = bounded(cmd, Duration::from_secs(20));
        assert_eq!(o.status.code(), Some(0), "`{argv}`: {}", stderr(&o));
        assert_eq!(stdout(&o).trim().len(), 64, "`{argv}`: {}", stdout(&o));
    }
    let ids = stdout(&home.cli(&["ps", "-a", "-q"]));
    assert_eq!(ids.lines().count(), ACCEPTED.len(), "{ids}");
    // Verbs on a created box that Docker accepts the same way.
    let id = ids.lines().next().unwrap_or_default();
    for argv in [
        vec!["logs", "--tail", "all", id],
        vec!["logs", "--tail", "0", id],
        vec!["stop", "-t", "-1", id],
        vec!["--log-level", "debug", "ps", "-a"],
        vec!["--log-level", "a3s_box_runtime=info", "ps"],
    ] {
        let o = home.cli(&argv);
        assert_eq!(o.status.code(), Some(0), "{argv:?}: {}", stderr(&o));
    }
}

/// A name already taken is a conflict, refused before a second box is made.
#[test]
fn a_taken_name_is_refused_and_the_first_box_kept() {
    let home = TestHome::new();
    let create = |name: &str| {
        let mut cmd = home.cmd();
        cmd.args(["create", "--name", name, "--rootfs", "/", "--", "true"]);
        bounded(cmd, Duration::from_secs(20))
    };
    let first = create("web");
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let second = create("web");
    assert_eq!(second.status.code(), Some(125));
    assert!(stderr(&second).contains("web"), "{}", stderr(&second));
    assert_eq!(stdout(&second), "");
    let ids = stdout(&home.cli(&["ps", "-a", "-q", "--no-trunc"]));
    assert_eq!(ids.trim(), stdout(&first).trim());
}

/// Twenty concurrent `rm -f` of twenty created boxes, with `ps -a` in a
/// loop meanwhile: each rm prints its box and exits 0, nobody writes to
/// stderr, and nothing is left.
#[test]
fn concurrent_removals_print_nothing_alarming() {
    const N: usize = 20;
    let home = TestHome::new();
    for i in 0..N {
        let mut cmd = home.cmd();
        cmd.args([
            "create",
            "--name",
            &format!("b{i}"),
            "--rootfs",
            "/",
            "--",
            "true",
        ]);
        let o = bounded(cmd, Duration::from_secs(20));
        assert_eq!(o.status.code(), Some(0), "create: {}", stderr(&o));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lister = {
        let stop = stop.clone();
        let home_path = home.home.path().to_path_buf();
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || rounds == 0 {
                let mut cmd = Command::new(common::bin());
                cmd.env("A3S_HOME", &home_path).args(["ps", "-a"]);
                let o = bounded(cmd, Duration::from_secs(20));
                assert_eq!(o.status.code(), Some(0), "ps -a: {}", stderr(&o));
                assert_eq!(stderr(&o), "", "ps -a while removing");
                rounds += 1;
            }
            rounds
        })
    };
    let removers: Vec<_> = (0..N)
        .map(|i| {
            let mut cmd = home.cmd();
            cmd.args(["rm", "-f", &format!("b{i}")]);
            std::thread::spawn(move || (i, bounded(cmd, Duration::from_secs(30))))
        })
        .collect();
    for remover in removers {
        let (i, o) = remover.join().unwrap();
        assert_eq!(o.status.code(), Some(0), "rm -f b{i}: {}", stderr(&o));
        assert_eq!(stdout(&o), format!("b{i}\n"));
        assert_eq!(stderr(&o), "", "rm -f b{i}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(lister.join().unwrap() > 0);
    assert_eq!(stdout(&home.cli(&["ps", "-a", "-q"])), "");
    home.assert_no_boxes_left();
}

/// `network connect` / `disconnect` on boxes that exist but cannot take
/// the change: each refusal leaves the box's networks as they were; what
/// Docker accepts on a created box edits its spec (no VM boots).
#[test]
fn network_connect_refusals_leave_the_spec_alone() {
    let home = TestHome::new();
    let cli = |argv: &str| {
        let mut cmd = home.cmd();
        cmd.args(words(argv));
        bounded(cmd, Duration::from_secs(20))
    };
    let networks = |key: &str| -> Vec<String> {
        let v = home.inspect(key);
        let mut names: Vec<String> = v["NetworkSettings"]["Networks"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    };
    for argv in [
        "network create --subnet 10.99.7.0/24 meet",
        "create --name b --rootfs / -- true",
        "create --name m --network meet --rootfs / -- true",
        "create --name n --network none --rootfs / -- true",
    ] {
        let o = cli(argv);
        assert_eq!(o.status.code(), Some(0), "`{argv}`: {}", stderr(&o));
    }
    let before: Vec<Vec<String>> = ["b", "m", "n"].iter().map(|k| networks(k)).collect();
    assert_eq!(before[0], ["default"]);
    assert_eq!(before[1], ["meet"]);
    assert!(before[2].is_empty(), "{before:?}");
    let rows = [
        // Docker: "container cannot be disconnected from host network or
        // connected to host network" (none: the same refusal).
        row("network connect meet n", "--network none"),
        // Docker: "endpoint with name b already exists in network bridge".
        row("network connect default b", "already on network default"),
        row(
            "network connect bridge m --alias x",
            "user-defined networks only",
        ),
        // Docker: "invalid IP address: not in the subnet".
        row(
            "network connect --ip 10.1.2.3 meet b",
            "not a host address of network meet",
        ),
        // Docker: "container b is not connected to network meet".
        row("network disconnect meet b", "not on network meet"),
        row("network disconnect meet n", "not on network meet"),
        // Stricter: Docker leaves a box with no network at all.
        row("network disconnect default b", "only network"),
        row(
            "network connect --alias 'bad name' meet b",
            "network connect",
        ),
    ];
    let mut failures = Vec::new();
    for row in &rows {
        let o = cli(row.argv);
        let err = stderr(&o);
        if o.status.code() != Some(row.code) || !err.contains(row.says) || !o.stdout.is_empty() {
            failures.push(format!(
                "`{}`: exit {:?}, stderr {err:?} (want {:?})",
                row.argv,
                o.status.code(),
                row.says
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let after: Vec<Vec<String>> = ["b", "m", "n"].iter().map(|k| networks(k)).collect();
    assert_eq!(after, before, "refusals changed a spec");
    // Accepted on created boxes: the spec changes, inspect shows it.
    let o = cli("network connect --alias web meet b");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(networks("b"), ["default", "meet"]);
    let v = home.inspect("b");
    assert_eq!(
        v["NetworkSettings"]["Networks"]["meet"]["Aliases"][0],
        "web"
    );
    let o = cli("network disconnect default b");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(networks("b"), ["meet"]);
    // A network a stopped box was connected to is in use.
    let o = cli("network rm meet");
    assert_eq!(o.status.code(), Some(125));
}
