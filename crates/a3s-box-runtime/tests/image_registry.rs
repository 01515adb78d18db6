//! Pull fixture images (built by scripts/build-test-images.sh with umoci and python, pushed
//! with skopeo) from Debian's docker-registry on loopback, then unpack and check them.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use a3s_box_runtime::image::registry::{
    self, ClientOptions, CredentialStore, Credentials, Platform, RegistryClient, RegistryError,
};
use a3s_box_runtime::image::unpack::unpack_layers;
use a3s_box_runtime::image::{Reference, Store};

// One registry/fixture helper for every crate's tests.
#[path = "../../a3s-box/tests/registry/mod.rs"]
mod registry_helper;

use registry_helper::{fixtures, push, start_registry, Registry, PASS, USER};

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    rootfs: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let rootfs = dir.path().join("rootfs");
    Env {
        _dir: dir,
        store,
        rootfs,
    }
}

fn client(creds: Option<CredentialStore>) -> RegistryClient {
    RegistryClient::new(ClientOptions {
        insecure_registries: vec![],
        credentials: creds,
    })
    .unwrap()
}

fn pull_and_unpack(
    reg: &Registry,
    name: &str,
    env: &Env,
    platform: &Platform,
) -> registry::PulledImage {
    let reference: Reference = format!("{}/{name}", reg.addr).parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let image = rt
        .block_on(registry::pull(
            &client(None),
            &env.store,
            &reference,
            platform,
        ))
        .unwrap();
    let layers: Vec<_> = image
        .layers
        .iter()
        .map(|d| env.store.blob_path(d))
        .collect();
    unpack_layers(&layers, &env.rootfs).unwrap();
    image
}

#[test]
fn multi_layer_image_round_trips_with_all_file_kinds() {
    let reg = start_registry(false);
    push(&reg, "layers", "fixtures/layers:1", None);
    let env = env();
    let image = pull_and_unpack(&reg, "fixtures/layers:1", &env, &Platform::host());
    let r = &env.rootfs;
    assert_eq!(image.layers.len(), 4);
    assert_eq!(image.config.entrypoint, ["/bin/sh"]);
    assert_eq!(image.config.working_dir.as_deref(), Some("/data"));
    assert!(image.config.env.contains(&"FOO=bar".to_owned()));
    assert!(!r.join("etc/deleted.txt").exists(), "whiteout applied");
    assert!(r.join("etc/kept.txt").exists());
    assert!(!r.join("data/old").exists(), "opaque dir hides lower layer");
    assert_eq!(
        std::fs::read_to_string(r.join("data/new-file")).unwrap(),
        "new\n"
    );
    let a = std::fs::metadata(r.join("misc/hard-a")).unwrap();
    assert_eq!(
        a.ino(),
        std::fs::metadata(r.join("misc/hard-b")).unwrap().ino(),
        "hardlink kept"
    );
    assert_eq!(
        std::fs::metadata(r.join("usr/bin/suid-tool"))
            .unwrap()
            .mode()
            & 0o7777,
        0o4755
    );
    assert_eq!(
        std::fs::read_link(r.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        std::fs::read_to_string(r.join("misc/日本語 ☃/ファイル name with spaces.txt")).unwrap(),
        "unicode\n"
    );
    let big = std::fs::read(r.join("misc/big.bin")).unwrap();
    assert!(big.len() >= 20 * 1024 * 1024);
    let want = std::fs::read_to_string(fixtures().join("big.sha256")).unwrap();
    assert_eq!(a3s_box_runtime::image::Digest::of(&big).hex(), want.trim());
    assert_eq!(
        env.store
            .resolve(&format!("{}/fixtures/layers:1", reg.addr))
            .unwrap(),
        Some(image.manifest_digest)
    );
}

#[test]
fn index_resolves_to_the_requested_platform() {
    let reg = start_registry(false);
    push(&reg, "multiarch", "fixtures/multi:1", None);
    for arch in ["amd64", "arm64"] {
        let env = env();
        let platform: Platform = format!("linux/{arch}").parse().unwrap();
        let image = pull_and_unpack(&reg, "fixtures/multi:1", &env, &platform);
        assert!(image.index_digest.is_some());
        assert_eq!(image.config.architecture, arch);
        assert_eq!(
            std::fs::read_to_string(env.rootfs.join("arch"))
                .unwrap()
                .trim(),
            arch
        );
    }
    let reference: Reference = format!("{}/fixtures/multi:1", reg.addr).parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(registry::pull(
            &client(None),
            &env().store,
            &reference,
            &"linux/s390x".parse().unwrap(),
        ))
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::NoMatchingPlatform { .. }),
        "{err}"
    );
}

#[test]
fn zstd_layer_and_hostile_layer() {
    let reg = start_registry(false);
    push(&reg, "zstd", "fixtures/zstd:1", None);
    push(&reg, "hostile", "fixtures/hostile:1", None);
    let env1 = env();
    pull_and_unpack(&reg, "fixtures/zstd:1", &env1, &Platform::host());
    assert_eq!(
        std::fs::read_to_string(env1.rootfs.join("zstd-dir/hello.txt")).unwrap(),
        "from zstd\n"
    );

    let env2 = env();
    let reference: Reference = format!("{}/fixtures/hostile:1", reg.addr).parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let image = rt
        .block_on(registry::pull(
            &client(None),
            &env2.store,
            &reference,
            &Platform::host(),
        ))
        .unwrap();
    let layers: Vec<_> = image
        .layers
        .iter()
        .map(|d| env2.store.blob_path(d))
        .collect();
    let err = unpack_layers(&layers, &env2.rootfs).unwrap_err();
    assert!(err.to_string().contains("outside the root"), "{err}");
    assert!(!env2.rootfs.exists(), "no partial rootfs");
    assert!(!Path::new("/tmp/a3s-hostile-owned").exists());
}

#[test]
fn basic_auth_registry_needs_credentials() {
    let reg = start_registry(true);
    push(
        &reg,
        "amd64",
        "private/app:1",
        Some(&format!("{USER}:{PASS}")),
    );
    let reference: Reference = format!("{}/private/app:1", reg.addr).parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let env = env();
    let err = rt
        .block_on(registry::pull(
            &client(None),
            &env.store,
            &reference,
            &Platform::host(),
        ))
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");

    let creds = CredentialStore::new(env._dir.path().join("credentials.json"), None);
    creds
        .login(
            &reg.addr,
            &Credentials {
                username: USER.into(),
                password: PASS.into(),
            },
        )
        .unwrap();
    let image = rt
        .block_on(registry::pull(
            &client(Some(creds)),
            &env.store,
            &reference,
            &Platform::host(),
        ))
        .unwrap();
    assert_eq!(image.layers.len(), 1);
}

#[test]
fn concurrent_pulls_of_the_same_image_share_one_store() {
    let reg = start_registry(false);
    push(&reg, "layers", "fixtures/shared:1", None);
    let env = env();
    let reference: Reference = format!("{}/fixtures/shared:1", reg.addr).parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt.block_on(async {
        let c = client(None);
        let p = Platform::host();
        let pulls = (0..3).map(|_| registry::pull(&c, &env.store, &reference, &p));
        futures_util::future::join_all(pulls).await
    });
    for r in results {
        r.unwrap();
    }
    let tmp_left = std::fs::read_dir(env.store.root().join("tmp"))
        .unwrap()
        .count();
    assert_eq!(tmp_left, 0);
}
