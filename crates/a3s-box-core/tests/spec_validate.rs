//! `BoxSpec::validate()`: one table of what Docker (or a VM) refuses, each
//! row a change to a valid spec, the field it must name, the kind of error
//! and a fragment of the message. The CLI's table-driven test mirrors it.
#![allow(clippy::unwrap_used)] // test data built from known-good literals

use a3s_box_core::spec::{
    parse_volume, BoxSpec, ContainerSpec, EnvVar, Mount, NetworkMode, ProcessSpec, RestartPolicy,
    RootSource, SpecErrorKind, SCHEMA_VERSION,
};
use a3s_box_core::{BoxError, ErrorKind};

fn image_box() -> BoxSpec {
    let mut c = ContainerSpec::new(
        RootSource::Image {
            reference: "alpine:3.20".into(),
            digest: None,
        },
        ProcessSpec::default(),
    );
    c.name = Some("web".into());
    BoxSpec::single(c)
}

fn dir_box() -> BoxSpec {
    BoxSpec::single(ContainerSpec::new(
        RootSource::Dir {
            path: "/srv/root".into(),
        },
        ProcessSpec {
            args: vec!["/bin/sh".into()],
            ..ProcessSpec::default()
        },
    ))
}

type Change = fn(&mut BoxSpec);

/// (what, change, field, flag the CLI shows, kind, message fragment)
const REFUSED: &[(&str, Change, &str, &str, SpecErrorKind, &str)] = &[
    (
        "--rm with a restart policy",
        |s| {
            s.containers[0].auto_remove = true;
            s.containers[0].restart = RestartPolicy::Always;
        },
        "containers[0].restart",
        "--restart",
        SpecErrorKind::Conflict,
        "--restart always and --rm",
    ),
    (
        "--rm with on-failure",
        |s| {
            s.containers[0].auto_remove = true;
            s.containers[0].restart = RestartPolicy::OnFailure {
                max_retries: Some(3),
            };
        },
        "containers[0].restart",
        "--restart",
        SpecErrorKind::Conflict,
        "conflicting options",
    ),
    (
        "relative working directory",
        |s| s.containers[0].process.cwd = Some("relative".into()),
        "containers[0].process.cwd",
        "--workdir",
        SpecErrorKind::Invalid,
        "must be an absolute path",
    ),
    (
        "empty command of a root directory",
        |s| {
            s.containers[0].root = RootSource::Dir { path: "/r".into() };
        },
        "containers[0].process.args",
        "COMMAND",
        SpecErrorKind::Missing,
        "no command given",
    ),
    (
        "relative root directory",
        |s| {
            s.containers[0].root = RootSource::Dir { path: "r".into() };
            s.containers[0].process.args = vec!["true".into()];
        },
        "containers[0].root.dir.path",
        "--rootfs",
        SpecErrorKind::Invalid,
        "must be absolute",
    ),
    (
        "empty image reference",
        |s| {
            s.containers[0].root = RootSource::Image {
                reference: String::new(),
                digest: None,
            }
        },
        "containers[0].root.image.reference",
        "IMAGE",
        SpecErrorKind::Invalid,
        "image reference",
    ),
    (
        "bad digest",
        |s| {
            s.containers[0].root = RootSource::Image {
                reference: "alpine".into(),
                digest: Some("sha256:abc".into()),
            }
        },
        "containers[0].root.image.digest",
        "containers[0].root.image.digest",
        SpecErrorKind::Invalid,
        "64 hex digits",
    ),
    (
        "no vCPUs",
        |s| s.sandbox.resources.vcpus = 0,
        "sandbox.resources.vcpus",
        "--cpus",
        SpecErrorKind::OutOfRange,
        "1 to 64 vCPUs",
    ),
    (
        "too many vCPUs",
        |s| s.sandbox.resources.vcpus = 65,
        "sandbox.resources.vcpus",
        "--cpus",
        SpecErrorKind::OutOfRange,
        "1 to 64 vCPUs",
    ),
    (
        "too little memory",
        |s| s.sandbox.resources.memory_mib = 63,
        "sandbox.resources.memory_mib",
        "--memory",
        SpecErrorKind::OutOfRange,
        "at least 64 MiB",
    ),
    (
        "bad box name",
        |s| s.containers[0].name = Some("-web".into()),
        "containers[0].name",
        "--name",
        SpecErrorKind::Invalid,
        "starting with a letter or digit",
    ),
    (
        "name with a slash",
        |s| s.containers[0].name = Some("a/b".into()),
        "containers[0].name",
        "--name",
        SpecErrorKind::Invalid,
        "letters, digits",
    ),
    (
        "hostname with an underscore",
        |s| s.sandbox.hostname = Some("my_host".into()),
        "sandbox.hostname",
        "--hostname",
        SpecErrorKind::Invalid,
        "host name",
    ),
    (
        "hostname label too long",
        |s| s.sandbox.hostname = Some("a".repeat(64)),
        "sandbox.hostname",
        "--hostname",
        SpecErrorKind::Invalid,
        "at most 63",
    ),
    (
        "hostname longer than the kernel's HOST_NAME_MAX",
        |s| s.sandbox.hostname = Some(format!("{}.{}", "a".repeat(40), "b".repeat(24))),
        "sandbox.hostname",
        "--hostname",
        SpecErrorKind::OutOfRange,
        "at most 64",
    ),
    (
        "hostname too long",
        |s| s.sandbox.hostname = Some(vec!["a".repeat(63); 4].join(".")),
        "sandbox.hostname",
        "--hostname",
        SpecErrorKind::Invalid,
        "at most 253",
    ),
    (
        "empty env name",
        |s| {
            s.containers[0].process.env = vec![EnvVar {
                name: String::new(),
                value: "x".into(),
            }]
        },
        "containers[0].process.env[0]",
        "--env",
        SpecErrorKind::Invalid,
        "name is empty",
    ),
    (
        "env name with =",
        |s| {
            s.containers[0].process.env = vec![
                EnvVar::new("A", "1").unwrap(),
                EnvVar {
                    name: "B=C".into(),
                    value: "x".into(),
                },
            ]
        },
        "containers[0].process.env[1]",
        "--env",
        SpecErrorKind::Invalid,
        "no '='",
    ),
    (
        "bad user",
        |s| s.containers[0].process.user = Some("alice:".into()),
        "containers[0].process.user",
        "--user",
        SpecErrorKind::Invalid,
        "empty group",
    ),
    (
        "relative mount target",
        |s| {
            s.containers[0].storage.mounts = vec![Mount::Tmpfs {
                target: "tmp".into(),
                size_bytes: None,
                mode: None,
                read_only: false,
                noexec: false,
            }]
        },
        "containers[0].storage.mounts[0].target",
        "containers[0].storage.mounts[0].target",
        SpecErrorKind::Invalid,
        "must be absolute",
    ),
    (
        "mount on /",
        |s| {
            s.containers[0].storage.mounts = vec![Mount::Volume {
                name: None,
                anonymous: false,
                target: "/".into(),
                read_only: false,
                nocopy: false,
            }]
        },
        "containers[0].storage.mounts[0].target",
        "containers[0].storage.mounts[0].target",
        SpecErrorKind::Invalid,
        "cannot be /",
    ),
    (
        "mount target with ..",
        |s| {
            s.containers[0].storage.mounts = vec![Mount::Bind {
                source: "/h".into(),
                target: "/a/../etc".into(),
                read_only: false,
                create_source: false,
            }]
        },
        "containers[0].storage.mounts[0].target",
        "containers[0].storage.mounts[0].target",
        SpecErrorKind::Invalid,
        "..",
    ),
    (
        "two mounts on one path",
        |s| {
            s.containers[0].storage.mounts = ["/h:/data", "vol:/data/"]
                .iter()
                .map(|v| parse_volume(v).unwrap())
                .collect()
        },
        "containers[0].storage.mounts[1].target",
        "containers[0].storage.mounts[1].target",
        SpecErrorKind::Conflict,
        "both on /data",
    ),
    (
        "relative bind source",
        |s| {
            s.containers[0].storage.mounts = vec![Mount::Bind {
                source: "h".into(),
                target: "/h".into(),
                read_only: false,
                create_source: false,
            }]
        },
        "containers[0].storage.mounts[0].source",
        "containers[0].storage.mounts[0].source",
        SpecErrorKind::Invalid,
        "host path must be absolute",
    ),
    (
        "-p with --network none",
        |s| {
            s.sandbox.network.mode = NetworkMode::None;
            s.sandbox.network.ports = a3s_box_core::spec::parse_publish("80").unwrap();
        },
        "sandbox.network.ports",
        "--publish",
        SpecErrorKind::Conflict,
        "port publishing and --network none",
    ),
    (
        "-P with --network none",
        |s| {
            s.sandbox.network.mode = NetworkMode::None;
            s.sandbox.network.publish_all = true;
        },
        "sandbox.network.ports",
        "--publish",
        SpecErrorKind::Conflict,
        "port publishing",
    ),
    (
        "egress rules with --network none",
        |s| {
            s.sandbox.network.mode = NetworkMode::None;
            s.sandbox.network.egress =
                vec![a3s_box_core::spec::parse_egress("example.com").unwrap()];
        },
        "sandbox.network.egress",
        "--egress-allow",
        SpecErrorKind::Conflict,
        "--network none",
    ),
    (
        "no containers",
        |s| s.containers.clear(),
        "containers",
        "containers",
        SpecErrorKind::Missing,
        "at least one container",
    ),
    (
        "two containers without a pod",
        |s| {
            let mut other = s.containers[0].clone();
            other.name = Some("db".into());
            s.containers.push(other);
        },
        "containers",
        "containers",
        SpecErrorKind::Invalid,
        "in a pod",
    ),
    (
        "two containers of one name",
        |s| {
            s.sandbox.pod = Some("p".into());
            let other = s.containers[0].clone();
            s.containers.push(other);
        },
        "containers[1].name",
        "--name",
        SpecErrorKind::Conflict,
        "named web",
    ),
    (
        "bad pod name",
        |s| s.sandbox.pod = Some("a pod".into()),
        "sandbox.pod",
        "--pod",
        SpecErrorKind::Invalid,
        "pod name",
    ),
    (
        "relative kernel",
        |s| s.sandbox.vm.kernel = Some("vmlinux".into()),
        "sandbox.vm.kernel",
        "--kernel",
        SpecErrorKind::Invalid,
        "must be absolute",
    ),
    (
        "newer schema",
        |s| s.schema_version = SCHEMA_VERSION + 1,
        "schema_version",
        "schema_version",
        SpecErrorKind::Unsupported,
        "upgrade a3s-box",
    ),
    (
        "layer too small",
        |s| s.containers[0].storage.layer_size_bytes = Some(1 << 20),
        "containers[0].storage.layer_size_bytes",
        "--storage-opt",
        SpecErrorKind::OutOfRange,
        "at least 16 MiB",
    ),
    (
        "cpuset past the vCPUs",
        |s| s.sandbox.resources.limits.cpuset_cpus = Some("0-3".into()),
        "sandbox.resources.limits.cpuset_cpus",
        "--cpuset-cpus",
        SpecErrorKind::Invalid,
        "vCPUs 0 to 1",
    ),
];

#[test]
fn every_refusal_names_its_field_kind_and_reason() {
    image_box().validate().unwrap();
    dir_box().validate().unwrap();
    for (what, change, field, flag, kind, fragment) in REFUSED {
        let mut spec = image_box();
        change(&mut spec);
        let e = spec.validate().expect_err(what);
        assert_eq!(e.field, *field, "{what}: {e}");
        assert_eq!(e.kind, *kind, "{what}: {e}");
        assert!(e.to_string().contains(fragment), "{what}: {e}");
        let cli = e.clone().for_cli();
        assert_eq!(cli.field, *flag, "{what}");
        let boxed: BoxError = e.into();
        assert_eq!(boxed.kind(), ErrorKind::Invalid, "{what}");
        assert!(
            boxed.to_string().contains(field),
            "{what}: the field stays in the message"
        );
    }
}

#[test]
fn docker_examples_read_as_docker_users_expect() {
    let mut spec = image_box();
    spec.containers[0].process.cwd = Some("relative".into());
    assert_eq!(
        spec.validate().unwrap_err().for_cli().to_string(),
        "invalid --workdir \"relative\": the working directory must be an absolute path"
    );
    let mut spec = image_box();
    spec.containers[0].auto_remove = true;
    spec.containers[0].restart = RestartPolicy::UnlessStopped;
    assert_eq!(
        spec.validate().unwrap_err().for_cli().to_string(),
        "conflicting options: --restart: --restart unless-stopped and --rm: a box removed when it exits cannot be restarted; drop one of them"
    );
}

#[test]
fn what_docker_accepts_passes() {
    let mut spec = image_box();
    let c = &mut spec.containers[0];
    c.auto_remove = true; // with restart "no"
    c.process.cwd = Some("/work".into());
    c.process.user = Some("1000:1000".into());
    c.process.env = vec![
        EnvVar::new("PATH", "/bin").unwrap(),
        EnvVar::new("EMPTY", "").unwrap(),
    ];
    c.root = RootSource::Image {
        reference: "alpine".into(),
        digest: Some(format!("sha256:{}", "ab".repeat(32))),
    };
    c.storage.mounts = ["/h:/a", "v:/b", "/c"]
        .iter()
        .map(|v| parse_volume(v).unwrap())
        .collect();
    spec.sandbox.hostname = Some("web-1.example".into());
    spec.sandbox.resources.vcpus = 64;
    spec.sandbox.resources.memory_mib = 64;
    spec.validate().unwrap();
    // A pod's sandbox runs several containers with distinct names.
    let mut pod = image_box();
    pod.sandbox.pod = Some("p1".into());
    let mut db = pod.containers[0].clone();
    db.name = Some("db".into());
    pod.containers.push(db);
    let mut unnamed = pod.containers[0].clone();
    unnamed.name = None;
    pod.containers.push(unnamed.clone());
    pod.containers.push(unnamed);
    pod.validate().unwrap();
}

#[test]
fn exec_processes_need_a_command() {
    let p = ProcessSpec::default();
    p.validate().unwrap();
    let e = p.validate_exec().unwrap_err();
    assert_eq!((e.field.as_str(), e.kind), ("args", SpecErrorKind::Missing));
    ProcessSpec {
        args: vec!["ls".into()],
        ..ProcessSpec::default()
    }
    .validate_exec()
    .unwrap();
}
