//! Parsing of `-v`, `--mount` and `--tmpfs`.

use super::*;

#[test]
fn volume_flags_parse_into_binds_named_and_anonymous_volumes() {
    let host = tempfile::tempdir().unwrap();
    let src = host.path().to_str().unwrap();
    let m = parse_volume(&format!("{src}:/data:ro")).unwrap();
    assert_eq!(m.target, "/data");
    assert!(m.read_only);
    assert!(matches!(m.kind, MountKind::Bind { ref source } if source == host.path()));
    let missing = format!("{src}/new/dir");
    parse_volume(&format!("{missing}:/x")).unwrap();
    assert!(
        Path::new(&missing).is_dir(),
        "-v creates a missing host dir"
    );
    let m = parse_volume("cache:/var/cache/").unwrap();
    assert_eq!(m.target, "/var/cache");
    assert_eq!(
        m.kind,
        MountKind::Volume {
            name: "cache".into(),
            anonymous: false,
            nocopy: false,
        }
    );
    let m = parse_volume("/scratch").unwrap();
    assert!(
        matches!(m.kind, MountKind::Volume { anonymous: true, ref name, nocopy: false } if name.len() == 64)
    );
    let m = parse_volume("cache:/c:ro,nocopy").unwrap();
    assert!(m.read_only && matches!(m.kind, MountKind::Volume { nocopy: true, .. }));
    for bad in [
        "a:b:c:d",
        "vol:relative",
        "./x:/y",
        "vol:/",
        "vol:/a/../b",
        "/a:/b:zz",
        "-bad:/x",
        "/host:/x:nocopy",
    ] {
        assert!(parse_volume(bad).is_err(), "{bad}");
    }
}

#[test]
fn docker_options_that_change_nothing_here_are_accepted() {
    let host = tempfile::tempdir().unwrap();
    let src = host.path().to_str().unwrap();
    for opts in ["z", "Z", "rw,Z", "ro,z", "cached", "delegated", "rprivate"] {
        let m = parse_volume(&format!("{src}:/d:{opts}")).unwrap();
        assert_eq!(m.read_only, opts.starts_with("ro"), "{opts}");
    }
    let err = parse_volume(&format!("{src}:/d:rshared")).unwrap_err();
    assert!(
        err.to_string().contains("cannot cross the VM boundary"),
        "{err}"
    );
    parse_mount(&format!(
        "type=bind,src={src},dst=/d,bind-propagation=rprivate,consistency=cached"
    ))
    .unwrap();
    assert!(parse_mount(&format!(
        "type=bind,src={src},dst=/d,bind-propagation=slave"
    ))
    .is_err());
}

#[test]
fn mount_flags_parse_every_type() {
    let host = tempfile::tempdir().unwrap();
    let src = host.path().to_str().unwrap();
    let m = parse_mount(&format!("type=bind,source={src},target=/h,readonly")).unwrap();
    assert!(m.read_only && matches!(m.kind, MountKind::Bind { .. }));
    let m = parse_mount("type=volume,src=v1,dst=/v,ro=false").unwrap();
    assert!(!m.read_only);
    assert!(matches!(m.kind, MountKind::Volume { nocopy: false, .. }));
    for nocopy in ["volume-nocopy", "volume-nocopy=true"] {
        let m = parse_mount(&format!("type=volume,src=v1,dst=/v,{nocopy}")).unwrap();
        assert!(matches!(m.kind, MountKind::Volume { nocopy: true, .. }));
    }
    let m = parse_mount("type=volume,dst=/anon,volume-nocopy").unwrap();
    assert!(matches!(
        m.kind,
        MountKind::Volume {
            anonymous: true,
            nocopy: true,
            ..
        }
    ));
    let m = parse_mount("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=700").unwrap();
    assert_eq!(
        m.kind,
        MountKind::Tmpfs {
            size_bytes: Some(1 << 20),
            mode: Some(0o700),
            noexec: false
        }
    );
    for bad in [
        "type=bind,target=/x",
        "type=bind,source=/nonexistent/a3s,target=/x",
        "type=nfs,target=/x",
        "source=v,target=/x",
        "type=volume,source=v",
        "type=volume,source=v,target=/x,tmpfs-size=1m",
        "type=tmpfs,target=/x,tmpfs-mode=99",
        "type=tmpfs,target=/x,colour=red",
        "type=tmpfs,target=/x,volume-nocopy",
        "type=volume,target=/x,volume-nocopy=maybe",
    ] {
        assert!(parse_mount(bad).is_err(), "{bad}");
    }
}

#[test]
fn tmpfs_and_storage_opts_parse() {
    let m = parse_tmpfs("/run:size=64m,mode=1770,exec").unwrap();
    assert_eq!(
        m.kind,
        MountKind::Tmpfs {
            size_bytes: Some(64 << 20),
            mode: Some(0o1770),
            noexec: false
        }
    );
    assert!(matches!(
        parse_tmpfs("/t").unwrap().kind,
        MountKind::Tmpfs { noexec: true, .. }
    ));
    assert!(parse_tmpfs("/t:size=lots").is_err());
    assert!(parse_tmpfs("t").is_err());
    assert_eq!(parse_storage_opt("size=1g").unwrap(), 1 << 30);
    assert!(parse_storage_opt("size=1m").is_err());
    assert!(parse_storage_opt("iops=5").is_err());
    let two = [parse_tmpfs("/a").unwrap(), parse_tmpfs("/a/").unwrap()];
    assert!(check_unique_targets(&two).is_err());
}
