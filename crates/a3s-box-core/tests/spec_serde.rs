//! The JSON form of `a3s_box_core::spec`: minimal documents, defaults,
//! round trips of every part, refusal of unknown fields and newer versions.
#![allow(clippy::unwrap_used)] // test data built from known-good literals

use std::collections::BTreeMap;

use a3s_box_core::spec::{
    parse_add_host, parse_egress, parse_expose, parse_mount, parse_networks, parse_publish,
    parse_tmpfs, parse_volume, AccelChoice, BoxSpec, ContainerSpec, DnsConfig, EnvVar, NetworkMode,
    NetworkSpec, ProcessSpec, ResourceLimits, Resources, RestartPolicy, RootSource, SandboxSpec,
    Signal, SpecErrorKind, StorageSpec, VmOptions, VolumesFrom, SCHEMA_VERSION,
};
use serde_json::json;

/// A spec with every field set away from its default.
fn full() -> BoxSpec {
    let container = ContainerSpec {
        name: Some("web".into()),
        labels: BTreeMap::from([("tier".into(), "front".into())]),
        root: RootSource::Image {
            reference: "nginx:1.27".into(),
            digest: Some(format!("sha256:{}", "0f".repeat(32))),
        },
        entrypoint: Some(vec!["/docker-entrypoint.sh".into()]),
        process: ProcessSpec {
            args: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
            env: vec![
                EnvVar::new("A", "1=2").unwrap(),
                EnvVar::new("EMPTY", "").unwrap(),
            ],
            cwd: Some("/srv".into()),
            user: Some("101:101".into()),
            tty: true,
            stdin: true,
        },
        storage: StorageSpec {
            mounts: vec![
                parse_volume("/host:/h:ro").unwrap(),
                parse_volume("cache:/c:nocopy").unwrap(),
                parse_volume("/anon").unwrap(),
                parse_mount("type=bind,src=/x,dst=/x").unwrap(),
                parse_tmpfs("/run:size=64m,mode=1777").unwrap(),
            ],
            read_only: true,
            layer_size_bytes: Some(1 << 30),
            volumes_from: vec!["db:ro".parse::<VolumesFrom>().unwrap()],
        },
        restart: RestartPolicy::OnFailure {
            max_retries: Some(3),
        },
        auto_remove: false,
        stop_signal: Some("SIGQUIT".parse().unwrap()),
        stop_timeout_secs: Some(30),
    };
    BoxSpec {
        schema_version: SCHEMA_VERSION,
        sandbox: SandboxSpec {
            hostname: Some("web".into()),
            resources: Resources {
                vcpus: 4,
                memory_mib: 2048,
                limits: ResourceLimits {
                    pids_limit: Some(100),
                    cpuset_cpus: Some("0-1".into()),
                    ulimits: vec!["nofile=1024:2048".into()],
                    ..ResourceLimits::default()
                },
            },
            network: NetworkSpec {
                mode: parse_networks(&["front", "back"], &[], None).unwrap(),
                ports: parse_publish("[::1]:8080-8081:80-81/tcp").unwrap(),
                publish_all: true,
                expose: parse_expose("9000/udp").unwrap(),
                dns: DnsConfig {
                    servers: vec!["10.0.0.2".parse().unwrap()],
                    search: vec!["corp.example".into()],
                    options: vec!["ndots:2".into()],
                },
                extra_hosts: vec![
                    parse_add_host("db:10.0.0.3").unwrap(),
                    parse_add_host("host:host-gateway").unwrap(),
                ],
                egress: vec![
                    parse_egress("*.example.com:443").unwrap(),
                    parse_egress("10.0.0.0/8").unwrap(),
                    parse_egress("[::1]:53").unwrap(),
                ],
                mac_address: Some("02:42:ac:11:00:02".parse().unwrap()),
            },
            vm: VmOptions {
                accel: AccelChoice::Tcg,
                kernel: Some("/boot/vmlinux".into()),
                debug_guest: true,
            },
            pod: None,
        },
        containers: vec![container],
    }
}

#[test]
fn a_full_spec_round_trips_and_is_valid() {
    let spec = full();
    spec.validate().unwrap();
    let text = serde_json::to_string_pretty(&spec).unwrap();
    assert_eq!(BoxSpec::from_json(&text).unwrap(), spec);
    assert_eq!(serde_json::from_str::<BoxSpec>(&text).unwrap(), spec);
}

#[test]
fn the_json_shape_is_the_documented_one() {
    let v = serde_json::to_value(full()).unwrap();
    assert_eq!(v["schema_version"], 1);
    let c = &v["containers"][0];
    assert_eq!(c["root"]["image"]["reference"], "nginx:1.27");
    assert_eq!(c["process"]["env"], json!(["A=1=2", "EMPTY="]));
    assert_eq!(c["stop_signal"], "SIGQUIT");
    assert_eq!(
        c["restart"],
        json!({"name": "on-failure", "max_retries": 3})
    );
    assert_eq!(c["storage"]["mounts"][0]["bind"]["source"], "/host");
    assert_eq!(c["storage"]["mounts"][1]["volume"]["name"], "cache");
    assert_eq!(c["storage"]["mounts"][2]["volume"]["name"], json!(null));
    assert_eq!(c["storage"]["mounts"][4]["tmpfs"]["mode"], 0o1777);
    assert_eq!(
        c["storage"]["volumes_from"][0],
        json!({"source": "db", "mode": "ro"})
    );
    let n = &v["sandbox"]["network"];
    assert_eq!(n["mode"]["networks"][1]["name"], "back");
    assert_eq!(
        n["ports"][0],
        json!({"host_ip": "::1", "host_port": 8080, "container_port": 80, "protocol": "tcp"})
    );
    assert_eq!(n["extra_hosts"][0]["addr"], json!({"ip": "10.0.0.3"}));
    assert_eq!(n["extra_hosts"][1]["addr"], "host_gateway");
    assert_eq!(
        n["egress"][0],
        json!({"target": {"name": "*.example.com"}, "port": 443})
    );
    assert_eq!(n["egress"][1]["target"], json!({"cidr": "10.0.0.0/8"}));
    assert_eq!(n["mac_address"], "02:42:ac:11:00:02");
    assert_eq!(v["sandbox"]["vm"]["accel"], "tcg");
    let none = serde_json::to_value(NetworkMode::None).unwrap();
    assert_eq!(none, "none");
    assert_eq!(
        serde_json::to_value(NetworkMode::Default).unwrap(),
        "default"
    );
}

#[test]
fn a_minimal_document_takes_the_defaults() {
    let spec = BoxSpec::from_json(
        r#"{"containers":[{"root":{"dir":{"path":"/r"}},"process":{"args":["true"]}}]}"#,
    )
    .unwrap();
    spec.validate().unwrap();
    assert_eq!(spec.schema_version, SCHEMA_VERSION);
    assert_eq!(spec.sandbox, SandboxSpec::default());
    assert_eq!(
        (
            spec.sandbox.resources.vcpus,
            spec.sandbox.resources.memory_mib
        ),
        (2, 512)
    );
    assert_eq!(spec.sandbox.network.mode, NetworkMode::Default);
    let c = &spec.containers[0];
    assert_eq!(c.restart, RestartPolicy::No);
    assert!(!c.auto_remove && c.name.is_none() && c.stop_signal.is_none());
    assert_eq!(c.storage, StorageSpec::default());
    // An image box may leave the process out: the image supplies it.
    let img = BoxSpec::from_json(r#"{"containers":[{"root":{"image":{"reference":"alpine"}}}]}"#)
        .unwrap();
    img.validate().unwrap();
    assert_eq!(img.containers[0].process, ProcessSpec::default());
    // `bridge` is read as the default network; a mount needs only its target.
    let b = BoxSpec::from_json(
        r#"{"sandbox":{"network":{"mode":"bridge"}},
            "containers":[{"root":{"image":{"reference":"alpine"}},
                           "storage":{"mounts":[{"volume":{"target":"/v"}},{"tmpfs":{"target":"/t"}}]}}]}"#,
    )
    .unwrap();
    assert_eq!(b.sandbox.network.mode, NetworkMode::Default);
    assert!(b.containers[0].storage.mounts[0].is_anonymous());
}

#[test]
fn unknown_fields_and_bad_values_are_refused() {
    for (doc, fragment) in [
        (r#"{"containers":[],"extra":1}"#, "unknown field `extra`"),
        (
            r#"{"sandbox":{"cpus":2},"containers":[]}"#,
            "unknown field `cpus`",
        ),
        (
            r#"{"sandbox":{"resources":{"limits":{"pids":1}}},"containers":[]}"#,
            "unknown field `pids`",
        ),
        (
            r#"{"containers":[{"root":{"dir":{"path":"/r","ro":true}}}]}"#,
            "unknown field `ro`",
        ),
        (
            r#"{"containers":[{"root":{"oci":{"path":"/r"}}}]}"#,
            "unknown variant `oci`",
        ),
        (
            r#"{"containers":[{"root":{"dir":{"path":"/r"}},"storage":{"mounts":[{"tmpfs":{"target":"/t","size":1}}]}}]}"#,
            "unknown field `size`",
        ),
        (
            r#"{"containers":[{"root":{"dir":{"path":"/r"}},"stop_signal":"SIGNOPE"}]}"#,
            "signal name",
        ),
        (
            r#"{"containers":[{"root":{"dir":{"path":"/r"}},"process":{"env":["NOEQUALS"]}}]}"#,
            "NAME=VALUE",
        ),
        (
            r#"{"containers":[{"root":{"dir":{"path":"/r"}},"restart":{"name":"sometimes"}}]}"#,
            "unknown variant `sometimes`",
        ),
        (
            r#"{"sandbox":{"network":{"mode":"host"}},"containers":[]}"#,
            "unknown variant `host`",
        ),
        (
            r#"{"sandbox":{"network":{"egress":[{"target":{"cidr":"10.0.0.1/8"}}]}},"containers":[]}"#,
            "did you mean",
        ),
        (
            r#"{"sandbox":{"network":{"mac_address":"nope"}},"containers":[]}"#,
            "six hex bytes",
        ),
        (
            r#"{"sandbox":{"vm":{"accel":"hvf"}},"containers":[]}"#,
            "unknown variant `hvf`",
        ),
        (r#"{"sandbox":{}}"#, "missing field `containers`"),
        (r#"{"containers":[{}]}"#, "missing field `root`"),
        ("[", "not JSON"),
    ] {
        let e = BoxSpec::from_json(doc).unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::Invalid, "{doc}");
        assert!(e.to_string().contains(fragment), "{doc}: {e}");
    }
}

#[test]
fn newer_and_zero_schema_versions_are_refused_clearly() {
    // Refused before its unknown fields are looked at.
    let newer = r#"{"schema_version":2,"containers":[],"something_new":{}}"#;
    let e = BoxSpec::from_json(newer).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.kind),
        ("schema_version", SpecErrorKind::Unsupported)
    );
    assert!(
        e.to_string()
            .contains("newer than the 1 this a3s-box reads: upgrade a3s-box"),
        "{e}"
    );
    // Plain serde refuses it too.
    let e = serde_json::from_str::<BoxSpec>(r#"{"schema_version":7,"containers":[]}"#).unwrap_err();
    assert!(e.to_string().contains("upgrade a3s-box"), "{e}");
    let e = BoxSpec::from_json(r#"{"schema_version":0,"containers":[]}"#).unwrap_err();
    assert!(e.to_string().contains("first version is 1"), "{e}");
    let ok = BoxSpec::from_json(
        r#"{"schema_version":1,"containers":[{"root":{"image":{"reference":"a"}}}]}"#,
    );
    ok.unwrap().validate().unwrap();
}

#[test]
fn parts_round_trip_alone() {
    let signal: Signal = "RTMIN+2".parse().unwrap();
    let back: Signal = serde_json::from_value(serde_json::to_value(signal).unwrap()).unwrap();
    assert_eq!(back, signal);
    for policy in [
        RestartPolicy::No,
        RestartPolicy::Always,
        RestartPolicy::UnlessStopped,
        RestartPolicy::OnFailure { max_retries: None },
    ] {
        let v = serde_json::to_value(policy).unwrap();
        assert_eq!(serde_json::from_value::<RestartPolicy>(v).unwrap(), policy);
        assert_eq!(policy.to_string().parse::<RestartPolicy>().unwrap(), policy);
    }
    let net = full().sandbox.network;
    let v = serde_json::to_value(&net).unwrap();
    assert_eq!(serde_json::from_value::<NetworkSpec>(v).unwrap(), net);
    let storage = full().containers[0].storage.clone();
    let v = serde_json::to_value(&storage).unwrap();
    assert_eq!(serde_json::from_value::<StorageSpec>(v).unwrap(), storage);
}
