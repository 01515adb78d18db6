use super::*;

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn image() -> ImageConfig {
    ImageConfig {
        entrypoint: v(&["/entry.sh"]),
        cmd: v(&["serve", "--port", "80"]),
        env: v(&["PATH=/opt/bin:/bin", "LANG=C", "MODE=prod"]),
        working_dir: Some("/app".into()),
        user: Some("1000:1000".into()),
        ..ImageConfig::default()
    }
}

#[test]
fn image_defaults_apply_without_overrides() {
    let p = merge(&image(), &RunOverrides::default()).unwrap();
    assert_eq!(p.argv, v(&["/entry.sh", "serve", "--port", "80"]));
    assert_eq!(p.env, v(&["PATH=/opt/bin:/bin", "LANG=C", "MODE=prod"]));
    assert_eq!(p.working_dir, "/app");
    assert_eq!(p.user, "1000:1000");
}

#[test]
fn trailing_args_replace_cmd_but_keep_entrypoint() {
    let run = RunOverrides {
        args: v(&["shell"]),
        ..Default::default()
    };
    assert_eq!(
        merge(&image(), &run).unwrap().argv,
        v(&["/entry.sh", "shell"])
    );
}

#[test]
fn entrypoint_override_clears_image_cmd() {
    let run = RunOverrides {
        entrypoint: Some(v(&["/bin/sh"])),
        ..Default::default()
    };
    assert_eq!(merge(&image(), &run).unwrap().argv, v(&["/bin/sh"]));
    let run = RunOverrides {
        entrypoint: Some(v(&["/bin/sh"])),
        args: v(&["-c", "echo hi"]),
        ..Default::default()
    };
    assert_eq!(
        merge(&image(), &run).unwrap().argv,
        v(&["/bin/sh", "-c", "echo hi"])
    );
}

#[test]
fn empty_entrypoint_override_runs_args_alone() {
    let run = RunOverrides {
        entrypoint: Some(vec![]),
        args: v(&["ls"]),
        ..Default::default()
    };
    assert_eq!(merge(&image(), &run).unwrap().argv, v(&["ls"]));
    let run = RunOverrides {
        entrypoint: Some(vec![]),
        ..Default::default()
    };
    assert!(matches!(merge(&image(), &run), Err(ConfigError::NoCommand)));
}

#[test]
fn no_entrypoint_and_no_cmd_is_an_error() {
    let err = merge(&ImageConfig::default(), &RunOverrides::default()).unwrap_err();
    assert!(err.to_string().contains("no command"), "{err}");
    let run = RunOverrides {
        args: v(&["/bin/true"]),
        ..Default::default()
    };
    assert_eq!(
        merge(&ImageConfig::default(), &run).unwrap().argv,
        v(&["/bin/true"])
    );
}

#[test]
fn env_overrides_replace_add_and_remove() {
    let run = RunOverrides {
        env: v(&["MODE=dev", "NEW=1", "LANG"]),
        ..Default::default()
    };
    let p = merge(&image(), &run).unwrap();
    assert_eq!(p.env, v(&["PATH=/opt/bin:/bin", "MODE=dev", "NEW=1"]));
}

#[test]
fn default_path_workdir_and_user() {
    let img = ImageConfig {
        cmd: v(&["sh"]),
        ..Default::default()
    };
    let p = merge(&img, &RunOverrides::default()).unwrap();
    assert_eq!(p.env, v(&[DEFAULT_PATH]));
    assert_eq!(p.working_dir, "/");
    assert_eq!(p.user, "");
}

#[test]
fn workdir_and_user_flags_win() {
    let run = RunOverrides {
        working_dir: Some("/tmp".into()),
        user: Some("nobody".into()),
        ..Default::default()
    };
    let p = merge(&image(), &run).unwrap();
    assert_eq!(
        (p.working_dir.as_str(), p.user.as_str()),
        ("/tmp", "nobody")
    );
}

#[test]
fn parses_a_docker_image_config() {
    let json = br#"{
        "architecture": "amd64", "os": "linux",
        "config": {
            "Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"],
            "Env": ["PATH=/usr/bin", "NGINX_VERSION=1.27"], "WorkingDir": "/srv", "User": "101",
            "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}},
            "Labels": {"maintainer": "x"}, "StopSignal": "SIGQUIT"
        },
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [], "container_config": {}, "docker_version": "20"
    }"#;
    let c = ImageConfig::from_json(json).unwrap();
    assert_eq!(c.entrypoint, v(&["/docker-entrypoint.sh"]));
    assert_eq!(c.cmd, v(&["nginx", "-g", "daemon off;"]));
    assert_eq!(c.working_dir.as_deref(), Some("/srv"));
    assert_eq!(c.user.as_deref(), Some("101"));
    assert_eq!(c.exposed_ports, v(&["80/tcp"]));
    assert_eq!(c.volumes, v(&["/data"]));
    assert_eq!(c.labels.get("maintainer").map(String::as_str), Some("x"));
    assert_eq!((c.os.as_str(), c.architecture.as_str()), ("linux", "amd64"));
    assert!(ImageConfig::from_json(b"{not json").is_err());
}
