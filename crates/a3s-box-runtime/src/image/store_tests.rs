use std::io::Write;

use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

fn tmp_is_empty(store: &Store) -> bool {
    fs::read_dir(store.root().join(TMP_DIR))
        .unwrap()
        .next()
        .is_none()
}

#[test]
fn verified_blob_lands_under_its_digest() {
    let (_d, store) = store();
    let digest = store.put_blob(b"hello", None).unwrap();
    assert_eq!(digest, Digest::of(b"hello"));
    assert!(store.has_blob(&digest, Some(5)));
    assert!(!store.has_blob(&digest, Some(6)));
    assert_eq!(store.read_blob(&digest).unwrap(), b"hello");
    assert!(store
        .blob_path(&digest)
        .ends_with(format!("blobs/sha256/{}", digest.hex())));
    assert!(tmp_is_empty(&store));
}

#[test]
fn wrong_digest_leaves_nothing() {
    let (_d, store) = store();
    let claimed = Digest::of(b"other");
    let err = store.put_blob(b"hello", Some(&claimed)).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(!store.has_blob(&claimed, None));
    assert!(tmp_is_empty(&store));
}

#[test]
fn truncated_or_oversized_blob_leaves_nothing() {
    let (_d, store) = store();
    let digest = Digest::of(b"hello world");
    let mut w = store.blob_writer(digest.clone(), 11).unwrap();
    w.write_all(b"hello").unwrap();
    let err = w.commit().unwrap_err();
    assert!(
        matches!(err, StoreError::SizeMismatch { actual: 5, .. }),
        "{err}"
    );
    let mut w = store.blob_writer(digest.clone(), 3).unwrap();
    assert!(w.write_all(b"hello").is_err());
    drop(w);
    assert!(!store.has_blob(&digest, None));
    assert!(tmp_is_empty(&store));
    assert!(matches!(
        store.read_blob(&digest),
        Err(StoreError::BlobNotFound { .. })
    ));
}

#[test]
fn refs_are_set_resolved_and_removed() {
    let (_d, store) = store();
    let a = Digest::of(b"a");
    assert_eq!(store.resolve("x:1").unwrap(), None);
    store.set_ref("x:1", &a).unwrap();
    store.set_ref("y:2", &a).unwrap();
    assert_eq!(store.resolve("x:1").unwrap(), Some(a.clone()));
    assert_eq!(store.refs().unwrap().len(), 2);
    assert_eq!(store.remove_ref("x:1").unwrap(), Some(a));
    assert_eq!(store.resolve("x:1").unwrap(), None);
    // Reopening sees the same index.
    let again = Store::open(store.root()).unwrap();
    assert_eq!(again.refs().unwrap().keys().collect::<Vec<_>>(), ["y:2"]);
}

#[test]
fn concurrent_writers_lose_no_reference_and_share_blobs() {
    let (_d, store) = store();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                for j in 0..10 {
                    let shared = store.put_blob(b"shared layer", None).unwrap();
                    store.set_ref(&format!("img{i}:{j}"), &shared).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.refs().unwrap().len(), 80);
    assert!(store.has_blob(&Digest::of(b"shared layer"), Some(12)));
    assert!(tmp_is_empty(&store));
}
