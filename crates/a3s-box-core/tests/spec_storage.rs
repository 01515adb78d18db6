//! The storage flag parsers of `a3s_box_core::spec` (`-v`, `--mount`,
//! `--tmpfs`, `--storage-opt`, `--volumes-from`): the accepted syntax and
//! refusals of the runtime's former parsers, without their side effects.

use std::path::PathBuf;

use a3s_box_core::spec::{
    parse_mount, parse_storage_opt, parse_tmpfs, parse_volume, AccessMode, Mount, SpecErrorKind,
    StorageSpec, VolumesFrom,
};

fn bind(source: &str, target: &str, read_only: bool, create_source: bool) -> Mount {
    Mount::Bind {
        source: PathBuf::from(source),
        target: target.into(),
        read_only,
        create_source,
    }
}

fn volume(name: Option<&str>, target: &str, read_only: bool, nocopy: bool) -> Mount {
    Mount::Volume {
        name: name.map(String::from),
        anonymous: false,
        target: target.into(),
        read_only,
        nocopy,
    }
}

#[test]
fn volume_flags_parse_into_binds_named_and_anonymous_volumes() {
    assert_eq!(
        parse_volume("/srv/data:/data:ro").unwrap(),
        bind("/srv/data", "/data", true, true)
    );
    // A missing host directory is the engine's to create: nothing is
    // touched here, the mount only says so.
    assert_eq!(
        parse_volume("/no/such/dir:/x").unwrap(),
        bind("/no/such/dir", "/x", false, true)
    );
    assert_eq!(
        parse_volume("cache:/var/cache/").unwrap(),
        volume(Some("cache"), "/var/cache", false, false)
    );
    assert_eq!(
        parse_volume("/scratch").unwrap(),
        volume(None, "/scratch", false, false)
    );
    assert!(parse_volume("/scratch").unwrap().is_anonymous());
    assert_eq!(
        parse_volume("cache:/c:ro,nocopy").unwrap(),
        volume(Some("cache"), "/c", true, true)
    );
    assert_eq!(
        parse_volume("/h:/a//b/./c").unwrap().target(),
        "/a/b/c",
        "targets are normalized"
    );
}

#[test]
fn volume_flags_refuse_with_a_reason() {
    for (bad, fragment) in [
        ("a:b:c:d", "too many colons"),
        ("vol:relative", "must be absolute"),
        ("./x:/y", "host path must be absolute"),
        ("~/x:/y", "host path must be absolute"),
        ("vol:/", "cannot be /"),
        ("vol:/a/../b", "must not contain .."),
        ("/a:/b:zz", "unknown option \"zz\""),
        ("-bad:/x", "volume \"-bad\""),
        ("/host:/x:nocopy", "nocopy applies to volumes only"),
        (":/x", "the source is empty"),
        ("", "must be absolute"),
        ("/a:/b:ro,rw", "\"ro\" and \"rw\" are of one kind"),
        ("v:/b:nocopy,nocopy", "are of one kind"),
        ("/a:/b:z,Z", "are of one kind"),
        ("/a:/b:private,rprivate", "are of one kind"),
        ("/a:/b:cached,delegated", "are of one kind"),
    ] {
        let e = parse_volume(bad).unwrap_err();
        assert_eq!(e.field, "--volume", "{bad}");
        assert_eq!(e.value.as_deref(), Some(bad), "{bad}");
        assert!(e.to_string().contains(fragment), "{bad}: {e}");
    }
}

#[test]
fn docker_options_that_change_nothing_here_are_accepted() {
    for opts in [
        "z",
        "Z",
        "rw,Z",
        "ro,z",
        "cached",
        "delegated",
        "consistent",
        "rprivate",
        "private",
    ] {
        let m = parse_volume(&format!("/src:/d:{opts}")).unwrap();
        assert_eq!(m.read_only(), opts.starts_with("ro"), "{opts}");
    }
    for mode in ["rshared", "shared", "slave", "rslave"] {
        let e = parse_volume(&format!("/src:/d:{mode}")).unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::Unsupported);
        assert!(
            e.to_string().contains("cannot cross the VM boundary"),
            "{e}"
        );
    }
    parse_mount("type=bind,src=/src,dst=/d,bind-propagation=rprivate,consistency=cached").unwrap();
    let e = parse_mount("type=bind,src=/src,dst=/d,bind-propagation=slave").unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::Unsupported);
    let e = parse_mount("type=bind,src=/src,dst=/d,bind-propagation=odd").unwrap_err();
    assert!(e.message.contains("unknown propagation"), "{e}");
}

#[test]
fn mount_flags_parse_every_type() {
    assert_eq!(
        parse_mount("type=bind,source=/srv,target=/h,readonly").unwrap(),
        bind("/srv", "/h", true, false),
        "--mount type=bind never creates its source"
    );
    assert_eq!(
        parse_mount("type=volume,src=v1,dst=/v,ro=false").unwrap(),
        volume(Some("v1"), "/v", false, false)
    );
    assert_eq!(
        parse_mount("type=volume,src=v1,destination=/v,readonly=1").unwrap(),
        volume(Some("v1"), "/v", true, false)
    );
    for nocopy in ["volume-nocopy", "volume-nocopy=true", "volume-nocopy=1"] {
        let m = parse_mount(&format!("type=volume,src=v1,dst=/v,{nocopy}")).unwrap();
        assert_eq!(m, volume(Some("v1"), "/v", false, true), "{nocopy}");
    }
    assert_eq!(
        parse_mount("type=volume,dst=/anon,volume-nocopy").unwrap(),
        volume(None, "/anon", false, true)
    );
    assert_eq!(
        parse_mount("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=700").unwrap(),
        Mount::Tmpfs {
            target: "/t".into(),
            size_bytes: Some(1 << 20),
            mode: Some(0o700),
            read_only: false,
            noexec: false,
        }
    );
}

#[test]
fn mount_flags_refuse_with_a_reason() {
    for (bad, kind, fragment) in [
        (
            "type=bind,target=/x",
            SpecErrorKind::Missing,
            "needs source=",
        ),
        (
            "type=bind,source=rel,target=/x",
            SpecErrorKind::Invalid,
            "must be absolute",
        ),
        (
            "type=nfs,target=/x",
            SpecErrorKind::Invalid,
            "use bind, volume or tmpfs",
        ),
        ("source=v,target=/x", SpecErrorKind::Missing, "no type="),
        ("type=volume,source=v", SpecErrorKind::Missing, "no target="),
        (
            "type=volume,source=v,target=/x,tmpfs-size=1m",
            SpecErrorKind::Invalid,
            "type=tmpfs only",
        ),
        (
            "type=tmpfs,target=/x,tmpfs-mode=99",
            SpecErrorKind::Invalid,
            "not an octal mode",
        ),
        (
            "type=tmpfs,target=/x,tmpfs-mode=17777",
            SpecErrorKind::Invalid,
            "not an octal mode",
        ),
        (
            "type=tmpfs,target=/x,tmpfs-size=0",
            SpecErrorKind::Invalid,
            "size 0",
        ),
        (
            "type=tmpfs,target=/x,tmpfs-size=lots",
            SpecErrorKind::Invalid,
            "size \"lots\"",
        ),
        (
            "type=tmpfs,target=/x,colour=red",
            SpecErrorKind::Invalid,
            "unknown field \"colour\"",
        ),
        (
            "type=tmpfs,target=/x,volume-nocopy",
            SpecErrorKind::Invalid,
            "type=volume only",
        ),
        (
            "type=tmpfs,source=s,target=/x",
            SpecErrorKind::Invalid,
            "a tmpfs has no source",
        ),
        (
            "type=volume,target=/x,volume-nocopy=maybe",
            SpecErrorKind::Invalid,
            "use true or false",
        ),
        (
            "type=volume,target",
            SpecErrorKind::Invalid,
            "target needs a value",
        ),
        (
            "type=volume,src=a/b,target=/x",
            SpecErrorKind::Invalid,
            "volume \"a/b\"",
        ),
        (
            "type=volume,target=x",
            SpecErrorKind::Invalid,
            "must be absolute",
        ),
        ("", SpecErrorKind::Invalid, "unknown field"),
    ] {
        let e = parse_mount(bad).unwrap_err();
        assert_eq!((e.field.as_str(), e.kind), ("--mount", kind), "{bad}: {e}");
        assert!(e.to_string().contains(fragment), "{bad}: {e}");
    }
}

#[test]
fn tmpfs_flags_parse_with_dockers_defaults() {
    assert_eq!(
        parse_tmpfs("/run:size=64m,mode=1770,exec").unwrap(),
        Mount::Tmpfs {
            target: "/run".into(),
            size_bytes: Some(64 << 20),
            mode: Some(0o1770),
            read_only: false,
            noexec: false,
        }
    );
    assert_eq!(
        parse_tmpfs("/t").unwrap(),
        Mount::Tmpfs {
            target: "/t".into(),
            size_bytes: None,
            mode: None,
            read_only: false,
            noexec: true,
        },
        "--tmpfs is noexec unless exec, as in Docker"
    );
    assert!(parse_tmpfs("/t:ro,nosuid,nodev,noexec")
        .unwrap()
        .read_only());
    for (bad, fragment) in [
        ("/t:size=lots", "size \"lots\""),
        ("t", "must be absolute"),
        ("/t:suid", "unknown option \"suid\""),
        ("/t:mode=8", "not an octal mode"),
        ("/:size=1m", "cannot be /"),
    ] {
        let e = parse_tmpfs(bad).unwrap_err();
        assert_eq!(e.field, "--tmpfs");
        assert!(e.to_string().contains(fragment), "{bad}: {e}");
    }
}

#[test]
fn storage_opts_give_the_layer_size() {
    assert_eq!(parse_storage_opt("size=1g").unwrap(), 1 << 30);
    assert_eq!(parse_storage_opt("size=16m").unwrap(), 16 << 20);
    let e = parse_storage_opt("size=1m").unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::OutOfRange);
    assert!(e.message.contains("at least 16 MiB"), "{e}");
    let e = parse_storage_opt("iops=5").unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::Unsupported);
    assert!(e.message.contains("only size=N"), "{e}");
    assert!(parse_storage_opt("size=big")
        .unwrap_err()
        .message
        .contains("e.g. 512m"));
}

#[test]
fn two_mounts_on_one_path_conflict() {
    let spec = StorageSpec {
        mounts: vec![parse_tmpfs("/a").unwrap(), parse_volume("v:/a/").unwrap()],
        ..StorageSpec::default()
    };
    let e = spec.validate().unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::Conflict);
    assert_eq!(e.field, "mounts[1].target");
}

#[test]
fn volumes_from_takes_a_box_and_a_mode() {
    assert_eq!(
        "db:rw".parse::<VolumesFrom>().unwrap(),
        VolumesFrom {
            source: "db".into(),
            mode: Some(AccessMode::Rw)
        }
    );
    let e = "db:z".parse::<VolumesFrom>().unwrap_err();
    assert!(e.to_string().contains("unknown mode \"z\""), "{e}");
}
