//! Property tests of the CLI's argument parsing and the spec builder, in
//! process: argument vectors from a vocabulary of real flags, real and
//! broken values and random strings go through `Cli::try_parse_from`, then
//! through what each verb checks before it touches the engine
//! (`run::box_spec`, `exec`'s process check, signals, times). Every case
//! ends in a clap error, an `Err` (which the CLI prints with exit 125), or
//! a spec that validates and reads back from its JSON; none panics or
//! takes long.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use a3s_box_core::spec::{BoxSpec, Signal};
use a3s_box_runtime::manager::logs::Since;
use clap::{CommandFactory, Parser};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::cli::{Cli, Command};
use crate::commands;

/// Longest a single case may take (one takes about a millisecond; the
/// slack is for a loaded machine).
const CASE_LIMIT: Duration = Duration::from_secs(2);
/// Longest a whole property may take before it counts as hung.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The flags of `run`/`create` that take a value, with real and broken
/// values for each.
const VALUED: &[(&[&str], &[&str])] = &[
    (
        &["--name"],
        &["web", "a", "bad name", "-x", "", "a/b", "web.1_x-y"],
    ),
    (&["-l", "--label"], &["k=v", "k", "=v", "", "a=b=c"]),
    (
        &["--restart"],
        &[
            "no",
            "always",
            "on-failure",
            "on-failure:3",
            "unless-stopped",
            "bogus",
            "on-failure:x",
            "always:3",
            "on-failure:-1",
            "on-failure:99999999999",
            "",
        ],
    ),
    (&["--pull"], &["always", "missing", "never", "bogus", ""]),
    (&["--rootfs"], &["/", "/nonexistent", "relative", "", "."]),
    (
        &["--cpus"],
        &["1", "2", "64", "0", "65", "0.5", "-1", "abc", ""],
    ),
    (
        &["-m", "--memory"],
        &[
            "512m",
            "1g",
            "64m",
            "63m",
            "10m",
            "lots",
            "1000k",
            "",
            "-1",
            "4096t",
            "1.5g",
            "99999999999999999999",
            "18446744073709551615",
            "5é",
        ],
    ),
    (
        &["-e", "--env"],
        &["A=1", "A", "=x", "", "A=b=c", "PATH", "A=\0", "A\0B=1"],
    ),
    (&["--env-file"], &["/nonexistent", "/etc", ""]),
    (&["--entrypoint"], &["sh", "", "/bin/sh -c", "-x"]),
    (
        &["-w", "--workdir"],
        &["/", "/tmp", "relative", "", "/a/../b", "/a\0b"],
    ),
    (
        &["-u", "--user"],
        &[
            "0",
            "0:0",
            "root",
            "root:root",
            "",
            "a:b:c",
            ":",
            ":0",
            "0:",
            "-1",
            "99999999999",
            "4294967295",
        ],
    ),
    (
        &["--hostname"],
        &[
            "web",
            "bad host",
            "-x",
            "a_b",
            "",
            "1.2.3.4",
            "a.b.c",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbb",
        ],
    ),
    (&["--accel"], &["auto", "kvm", "tcg", "hvf", "", " KVM "]),
    (&["--kernel"], &["/vmlinux", "vmlinux", ""]),
    (
        &["-v", "--volume"],
        &[
            "/tmp:/x",
            "/tmp:/x:ro",
            "v1:/data",
            "v1:/data:nocopy,ro",
            "/x",
            "rel/dir:/x",
            "./rel:/x",
            "~/x:/y",
            "/tmp:relative",
            "/tmp:/",
            "/tmp:/x:bogus",
            "a:b:c:d",
            ":/x",
            "/tmp:/x:nocopy",
            "/tmp:/x:shared",
            "/tmp:/x:rprivate,z",
            "/tmp:/x:ro,rw",
            "",
            "/tmp:/a/../b",
        ],
    ),
    (
        &["--mount"],
        &[
            "type=bind,source=/tmp,target=/x",
            "type=volume,source=v1,target=/y,readonly",
            "type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1777",
            "type=bogus,target=/x",
            "type=bind,target=/x",
            "target=/x",
            "",
            ",",
            "type=volume,target=/z,volume-nocopy",
            "type=bind,source=/tmp,target=/x,readonly=maybe",
            "type=tmpfs,target=/t,tmpfs-size=0",
            "type=tmpfs,target=/t,tmpfs-mode=99999999999",
            "type=bind,src=/tmp,dst=/x,bind-propagation=rshared",
        ],
    ),
    (
        &["--volumes-from"],
        &["web", "web:ro", "web:rx", "", "-x", "a:b:c"],
    ),
    (
        &["--tmpfs"],
        &[
            "/t",
            "/t:size=64m",
            "/t:mode=1777",
            "/t:bogus",
            "relative",
            "/",
            "/t:size=0",
            "",
            "/t:size=99999999999999999999t",
            "/t:ro,exec,nosuid",
        ],
    ),
    (
        &["--storage-opt"],
        &[
            "size=1g",
            "size=x",
            "foo=bar",
            "size",
            "size=1m",
            "",
            "size=18446744073709551615",
        ],
    ),
];

/// Flags of `run`/`create` without a value.
const SWITCHES: &[&str] = &[
    "--rm",
    "-d",
    "--detach",
    "-i",
    "-t",
    "-it",
    "--read-only",
    "--debug-guest",
];

/// Words that are not ours: unknown flags, separators, images.
const STRAY: &[&str] = &[
    "--gpus",
    "-Z",
    "--init=true",
    "--",
    "-",
    "alpine",
    "alpine:3.20",
    "UPPER:tag",
    "bad image",
    "127.0.0.1:5000/x@sha256:abc",
    "sh",
    "-c",
    "true",
];

/// Random text: anything, or made of the characters flag syntaxes use.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9:/=,.~_ -]{0,16}",
        "[0-9]{0,24}[kmgtbiKMGTB]{0,3}",
    ]
}

/// One value: a real or broken one from `values`, or random text.
fn value(values: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(values).prop_map(str::to_string),
        1 => text(),
    ]
}

/// One flag of `run`/`create` with its value, written `--f v` or `--f=v`.
fn valued() -> impl Strategy<Value = Vec<String>> {
    prop::sample::select(VALUED).prop_flat_map(|(names, values)| {
        (prop::sample::select(names), value(values), any::<bool>()).prop_map(
            |(name, value, joined)| match joined && name.starts_with("--") {
                true => vec![format!("{name}={value}")],
                false => vec![name.to_string(), value],
            },
        )
    })
}

/// A piece of a `run`/`create` command line.
fn piece() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        6 => valued(),
        2 => prop::sample::select(SWITCHES).prop_map(|s| vec![s.to_string()]),
        1 => prop::sample::select(STRAY).prop_map(|s| vec![s.to_string()]),
        1 => text().prop_map(|s| vec![s]),
    ]
}

/// `a3s-box run|create PIECES… [--rootfs DIR [--]] [IMAGE] [COMMAND…]`.
fn run_argv() -> impl Strategy<Value = Vec<String>> {
    (
        prop::sample::select(&["run", "create"][..]),
        prop::collection::vec(piece(), 0..8),
        prop_oneof![
            Just(vec![]),
            Just(vec![
                "--rootfs".to_string(),
                "/".to_string(),
                "--".to_string()
            ]),
            Just(vec!["--rootfs".to_string(), "/".to_string()]),
            Just(vec!["alpine".to_string()]),
        ],
        prop::collection::vec(
            prop_oneof![prop::sample::select(STRAY).prop_map(str::to_string), text()],
            0..4,
        ),
    )
        .prop_map(|(verb, pieces, root, command)| {
            let mut argv = vec!["a3s-box".to_string(), verb.to_string()];
            argv.extend(pieces.into_iter().flatten());
            argv.extend(root);
            argv.extend(command);
            argv
        })
}

/// Times for `--since`/`--until`, real and broken.
const TIMES: &[&str] = &[
    "10s",
    "5m",
    "2h",
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00.5Z",
    "yesterday",
    "5é",
    "99999999999999999h",
    "18446744073709551615s",
    "2026-4294967295-01T00:00:00Z",
    "9999-99-99T99:99:99Z",
    "",
];

/// The other verbs, each with its valued flags (real and broken values),
/// its switches and words for its positional arguments.
type VerbTable = (&'static str, &'static [Flag], &'static [&'static str]);
type Flag = (&'static [&'static str], &'static [&'static str]);

const VERBS: &[VerbTable] = &[
    (
        "exec",
        &[
            (
                &["-w", "--workdir"],
                &["/", "/tmp", "relative", "", "/a\0b"],
            ),
            (&["-u", "--user"], &["0", "0:0", "root", "", "a:b:c", ":"]),
            (&["-e", "--env"], &["A=1", "A", "=x", "", "A\0=1"]),
            (&["--env-file"], &["/nonexistent", "/etc"]),
            (&["-i", "-t", "-d", "-it"], &[]),
        ],
        &["web", "sh", "-c", "true", "--", "-x"],
    ),
    (
        "kill",
        &[(
            &["-s", "--signal"],
            &[
                "TERM",
                "sigkill",
                "9",
                "BOGUS",
                "0",
                "65",
                "-1",
                "RTMIN+3",
                "SIGRTMAX+1",
                "RTMAX-31",
                "",
                " INT ",
                "SIG",
            ],
        )],
        &["web", "b2"],
    ),
    (
        "logs",
        &[
            (&["--since"], TIMES),
            (&["--tail"], &["3", "abc", "all", "-1"]),
            (&["-f", "-t"], &[]),
        ],
        &["web", "b2"],
    ),
    (
        "events",
        &[
            (&["--since", "--until"], TIMES),
            (&["-f", "--filter"], &["type=container", "bogus", ""]),
        ],
        &[],
    ),
    (
        "stop",
        &[(&["-t", "--time"], &["1", "abc", "-1", ""])],
        &["web", "b2"],
    ),
    (
        "restart",
        &[(&["-t", "--time"], &["1", "abc", "-1"])],
        &["web"],
    ),
    ("start", &[(&["-a", "--attach"], &[])], &["web", "b2"]),
    ("rm", &[(&["-f", "-v"], &[])], &["web", "b2"]),
    (
        "cp",
        &[],
        &["web:/etc/hosts", "/tmp/x", "-", "a", "b1:/a", ":x", "./a:b"],
    ),
    (
        "volume",
        &[
            (&["-l", "--label"], &["k=v", "=x"]),
            (&["-f", "-a", "-q"], &[]),
        ],
        &[
            "create", "ls", "rm", "inspect", "prune", "v1", "bad name", "/abs",
        ],
    ),
    (
        "ps",
        &[
            (
                &["--filter", "-f"],
                &["name=web", "status=bogus", "bogus", ""],
            ),
            (&["--format"], &["json", "table", "bogus"]),
            (&["-a", "-q", "--no-trunc"], &[]),
        ],
        &[],
    ),
];

/// One flag of a verb: a switch (no values) or a flag with a value.
fn verb_flag(flags: &'static [Flag]) -> impl Strategy<Value = Vec<String>> {
    prop::sample::select(flags).prop_flat_map(|(names, values)| {
        let name = prop::sample::select(names).prop_map(str::to_string);
        match values.is_empty() {
            true => name.prop_map(|n| vec![n]).boxed(),
            false => (name, value(values)).prop_map(|(n, v)| vec![n, v]).boxed(),
        }
    })
}

/// `a3s-box VERB FLAGS… WORDS…` for the verbs other than `run`/`create`.
fn verb_argv() -> impl Strategy<Value = Vec<String>> {
    prop::sample::select(VERBS).prop_flat_map(|(verb, flags, words)| {
        let flags = match flags.is_empty() {
            true => Just(vec![]).boxed(),
            false => prop::collection::vec(verb_flag(flags), 0..4).boxed(),
        };
        let word = prop_oneof![
            6 => prop::sample::select(if words.is_empty() { &["web"][..] } else { words })
                .prop_map(str::to_string),
            1 => text(),
        ];
        let count = if words.is_empty() { 0..1 } else { 1..4 };
        (flags, prop::collection::vec(word, count)).prop_map(move |(flags, words)| {
            let mut argv = vec!["a3s-box".to_string(), verb.to_string()];
            argv.extend(flags.into_iter().flatten());
            argv.extend(words);
            argv
        })
    })
}

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// clap refused the command line.
    Clap,
    /// A check before the engine refused it (exit 125).
    Refused,
    /// It passed: for `run`/`create`, a spec that validates.
    Passed,
}

/// Parse `argv` and run the checks its verb makes before the engine; a
/// spec that comes out must validate and read back from its JSON.
fn exercise(argv: &[String]) -> Result<Outcome, TestCaseError> {
    let Ok(cli) = Cli::try_parse_from(argv) else {
        return Ok(Outcome::Clap);
    };
    let passed = match cli.command {
        Command::Run(args) | Command::Create(args) => {
            let Ok(spec) = commands::run::box_spec(&args) else {
                return Ok(Outcome::Refused);
            };
            prop_assert!(spec.validate().is_ok(), "{argv:?}: {spec:?}");
            let json = serde_json::to_string(&spec)
                .map_err(|e| TestCaseError::fail(format!("{argv:?}: serialize: {e}")))?;
            let back = BoxSpec::from_json(&json);
            prop_assert_eq!(back.as_ref().ok(), Some(&spec), "{:?}: {:?}", argv, back);
            true
        }
        Command::Exec(args) => commands::run::env_items(&args.env_file, &args.env)
            .and_then(|env| commands::exec::check(&args, &env))
            .is_ok(),
        Command::Kill(args) => args.signal.parse::<Signal>().is_ok(),
        Command::Logs(args) => time_ok(&args.since),
        Command::Events(args) => time_ok(&args.since) && time_ok(&args.until),
        _ => true,
    };
    Ok(if passed {
        Outcome::Passed
    } else {
        Outcome::Refused
    })
}

/// A `--since`/`--until` value, if given, parses.
fn time_ok(time: &Option<String>) -> bool {
    time.as_deref().map(str::parse::<Since>).transpose().is_ok()
}

/// Run `strategy` for `cases` cases through [`exercise`] on a thread of its
/// own, each case bounded by [`CASE_LIMIT`] and the whole by [`RUN_LIMIT`];
/// how many cases ended each way (clap error, refused, passed).
fn fuzz(cases: u32, strategy: impl Strategy<Value = Vec<String>> + Send + 'static) -> [u32; 3] {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let config = Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        };
        let counts = std::cell::Cell::new([0u32; 3]);
        let result = TestRunner::new(config).run(&strategy, |argv| {
            let started = Instant::now();
            let outcome = exercise(&argv)?;
            let took = started.elapsed();
            prop_assert!(took < CASE_LIMIT, "{argv:?} took {took:?}");
            let mut c = counts.get();
            c[outcome as usize] += 1;
            counts.set(c);
            Ok(())
        });
        let _ = done.send(result.map(|()| counts.get()).map_err(|e| e.to_string()));
    });
    match finished.recv_timeout(RUN_LIMIT) {
        Ok(result) => result.unwrap_or_else(|e| panic!("{e}")),
        Err(_) => panic!("the fuzz did not finish in {RUN_LIMIT:?}: a case hangs"),
    }
}

/// Each way of ending was reached by at least `share` of the `cases`: the
/// vocabulary reaches the checks and the spec, not only clap's errors.
fn assert_spread(counts: [u32; 3], cases: u32, share: f64) {
    eprintln!("clap errors, refusals, passes: {counts:?} of {cases}");
    let least = (f64::from(cases) * share) as u32;
    assert!(
        counts.iter().all(|&n| n >= least),
        "clap errors, refusals, passes: {counts:?} of {cases}"
    );
}

#[test]
fn the_command_line_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn run_and_create_flags_parse_to_an_error_or_a_valid_spec() {
    const CASES: u32 = 2000;
    assert_spread(fuzz(CASES, run_argv()), CASES, 0.05);
}

#[test]
fn other_verbs_parse_and_check_without_panicking() {
    const CASES: u32 = 1000;
    assert_spread(fuzz(CASES, verb_argv()), CASES, 0.02);
}

#[test]
fn known_outcomes_hold() {
    let spec = |words: &[&str]| {
        let argv: Vec<&str> = ["a3s-box"].iter().chain(words).copied().collect();
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Run(args) | Command::Create(args)) => {
                commands::run::box_spec(&args).map_err(|e| e.to_string())
            }
            other => panic!("{words:?}: {other:?}"),
        }
    };
    let ok = spec(&[
        "run", "--rm", "-m", "1g", "--rootfs", "/", "--", "sh", "-c", "true",
    ])
    .unwrap();
    assert_eq!(ok.sandbox.resources.memory_mib, 1024);
    assert_eq!(ok.containers[0].process.args, ["sh", "-c", "true"]);
    let with_entrypoint = spec(&["create", "--rootfs", "/", "--entrypoint", "sh", "-c", "x"]);
    assert_eq!(
        with_entrypoint.unwrap().containers[0].process.args,
        ["-c", "x"]
    );
    for (words, says) in [
        (
            &["run", "--gpus", "all", "alpine"][..],
            "unknown flag: --gpus",
        ),
        (
            &["create", "--rootfs", "/", "--gpus", "all", "--", "sh"],
            "unknown flag: --gpus",
        ),
        (
            &["run", "--rm", "--restart", "always", "alpine"],
            "conflicting options",
        ),
        (&["run", "--hostname", &"h".repeat(65), "alpine"], "at most"),
    ] {
        let err = spec(words).unwrap_err();
        assert!(err.contains(says), "{words:?}: {err}");
    }
    assert!("5é".parse::<Since>().is_err());
    assert!("99999999999999999h".parse::<Since>().is_err());
}
