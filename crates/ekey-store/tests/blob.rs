//! The blob store's contract, run on a local directory and on S3 (a real `moto_server` on
//! 127.0.0.1; the S3 tests fail, never skip, when moto is not installed).

use std::time::{Duration, Instant};

use ekey_store::StoreError;
use ekey_store::blob::{BlobStore, ObjectBlobStore, S3Settings};
use ekey_testkit::{MOTO_ACCESS_KEY_ID, MOTO_SECRET_ACCESS_KEY, Moto};

/// Deterministic, incompressible-looking bytes (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// What every blob store must do.
async fn contract(store: &ObjectBlobStore) {
    // Put, get.
    store.put("materials/r1/id_card/1", b"abc").await.unwrap();
    assert_eq!(store.get("materials/r1/id_card/1").await.unwrap(), b"abc");

    // Overwrite.
    store
        .put("materials/r1/id_card/1", b"second version")
        .await
        .unwrap();
    assert_eq!(
        store.get("materials/r1/id_card/1").await.unwrap(),
        b"second version"
    );

    // Empty content is content.
    store.put("materials/r1/empty", b"").await.unwrap();
    assert_eq!(store.get("materials/r1/empty").await.unwrap(), b"");

    // Not found.
    let e = store.get("materials/r1/none").await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound), "{e:?}");
    let e = store.get("nothing/here/at/all").await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound), "{e:?}");

    // Delete; deleting what is absent is fine.
    store.delete("materials/r1/id_card/1").await.unwrap();
    let e = store.get("materials/r1/id_card/1").await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound), "{e:?}");
    store.delete("materials/r1/id_card/1").await.unwrap();
    store.delete("never/was").await.unwrap();

    // Put if absent: the first writer wins, the second leaves the content alone.
    assert!(
        store
            .put_if_absent("documents/r1/form-a.pdf", b"first")
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_if_absent("documents/r1/form-a.pdf", b"second")
            .await
            .unwrap()
    );
    assert_eq!(
        store.get("documents/r1/form-a.pdf").await.unwrap(),
        b"first"
    );

    // Invalid keys are refused before anything is touched.
    for bad in [
        "",
        "../escape",
        "materials/../../escape",
        "/abs",
        "a//b",
        "trailing/",
        "./here",
        "材料/1",
        "a b",
        "a#1",
    ] {
        assert!(store.put(bad, b"x").await.is_err(), "put {bad:?}");
        assert!(
            store.put_if_absent(bad, b"x").await.is_err(),
            "put_if_absent {bad:?}"
        );
        let e = store.get(bad).await.unwrap_err();
        assert!(!matches!(e, StoreError::NotFound), "get {bad:?}: {e:?}");
        assert!(store.delete(bad).await.is_err(), "delete {bad:?}");
    }

    // A 5 MB object (a phone photo before downscaling) comes back byte for byte.
    let big = noise(5 * 1024 * 1024 + 7, 42);
    store.put("materials/r2/photo/1.jpg", &big).await.unwrap();
    let back = store.get("materials/r2/photo/1.jpg").await.unwrap();
    assert_eq!(back.len(), big.len());
    assert!(back == big, "5 MB object changed on the way");

    // Listing (operations, tests) sees exactly what is there.
    assert_eq!(
        store.keys("materials").await.unwrap(),
        vec!["materials/r1/empty", "materials/r2/photo/1.jpg"]
    );
    assert_eq!(
        store.keys("documents/r1").await.unwrap(),
        vec!["documents/r1/form-a.pdf"]
    );
    store.check().await.unwrap();
}

#[tokio::test]
async fn local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = ObjectBlobStore::local(dir.path().join("files")).unwrap();
    contract(&store).await;
    // Plain files under the root, nothing left beside them (no temporary files).
    let root = dir.path().join("files");
    assert_eq!(
        std::fs::read(root.join("documents/r1/form-a.pdf")).unwrap(),
        b"first"
    );
    let mut names: Vec<String> = std::fs::read_dir(root.join("materials/r1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["empty", "id_card"]);
    assert_eq!(
        std::fs::read_dir(root.join("materials/r1/id_card"))
            .unwrap()
            .count(),
        0
    );
    // Nothing escaped the root.
    assert!(!dir.path().join("escape").exists());
}

fn moto_settings(moto: &Moto, bucket: &str) -> S3Settings {
    S3Settings {
        endpoint: Some(moto.endpoint()),
        access_key_id: Some(MOTO_ACCESS_KEY_ID.into()),
        secret_access_key: Some(MOTO_SECRET_ACCESS_KEY.into()),
        ..S3Settings::from_url(&format!("s3://{bucket}")).unwrap()
    }
}

#[tokio::test]
async fn s3_on_moto() {
    let moto = Moto::start().expect("moto_server for the S3 tests");
    moto.create_bucket("ekey-blobs").unwrap();
    let store = ObjectBlobStore::s3(&moto_settings(&moto, "ekey-blobs")).unwrap();
    assert_eq!(store.describe(), "s3://ekey-blobs");
    contract(&store).await;
}

#[tokio::test]
async fn s3_prefix_keeps_to_its_part_of_the_bucket() {
    let moto = Moto::start().expect("moto_server for the S3 tests");
    moto.create_bucket("ekey-shared").unwrap();
    let whole = ObjectBlobStore::s3(&moto_settings(&moto, "ekey-shared")).unwrap();
    let prefixed = ObjectBlobStore::s3(&S3Settings {
        prefix: Some("prod/ekey".into()),
        ..moto_settings(&moto, "ekey-shared")
    })
    .unwrap();
    assert_eq!(prefixed.describe(), "s3://ekey-shared/prod/ekey");
    prefixed.put("materials/r1/a", b"in prod").await.unwrap();
    assert_eq!(
        whole.get("prod/ekey/materials/r1/a").await.unwrap(),
        b"in prod"
    );
    assert!(matches!(
        whole.get("materials/r1/a").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        whole.keys("prod").await.unwrap(),
        vec!["prod/ekey/materials/r1/a"]
    );
    // A prefix given in the storage URL.
    let from_url = S3Settings::from_url("s3://ekey-shared/prod/ekey/").unwrap();
    assert_eq!(from_url.prefix.as_deref(), Some("prod/ekey"));
}

#[tokio::test]
async fn s3_failures_are_errors_not_panics() {
    let moto = Moto::start().expect("moto_server for the S3 tests");
    // A bucket that does not exist: the start-up check and a write say so.
    let missing = ObjectBlobStore::s3(&moto_settings(&moto, "no-such-bucket")).unwrap();
    let e = missing.check().await.unwrap_err();
    assert!(matches!(e, StoreError::Blob(_)), "{e:?}");
    assert!(e.to_string().contains("s3://no-such-bucket"), "{e}");
    let e = missing.put("materials/r1/a", b"x").await.unwrap_err();
    assert!(matches!(e, StoreError::Blob(_)), "{e:?}");

    // Nobody listening: an error within seconds (a few quick retries), not a hang.
    let closed = ekey_testkit::free_port();
    let down = ObjectBlobStore::s3(&S3Settings {
        endpoint: Some(format!("http://127.0.0.1:{closed}")),
        ..moto_settings(&moto, "ekey-blobs")
    })
    .unwrap();
    let started = Instant::now();
    let e = down.put("materials/r1/a", b"x").await.unwrap_err();
    assert!(matches!(e, StoreError::Blob(_)), "{e:?}");
    let e = down.get("materials/r1/a").await.unwrap_err();
    assert!(matches!(e, StoreError::Blob(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // Plain http is refused for an endpoint that is not a loopback address, unless allowed.
    let remote = S3Settings {
        endpoint: Some("http://s3.internal.example:9000".into()),
        ..moto_settings(&moto, "ekey-blobs")
    };
    let e = ObjectBlobStore::s3(&remote).unwrap_err();
    assert!(e.to_string().contains("plain http"), "{e}");
    ObjectBlobStore::s3(&S3Settings {
        allow_http: true,
        ..remote
    })
    .unwrap();

    // Half a credential pair is a configuration error.
    let e = ObjectBlobStore::s3(&S3Settings {
        secret_access_key: None,
        ..moto_settings(&moto, "ekey-blobs")
    })
    .unwrap_err();
    assert!(e.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{e}");
}
