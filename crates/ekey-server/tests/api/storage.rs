//! Files on S3: an instance configured with `storage_url = "s3://…"` against a real S3
//! emulator (`moto_server` on 127.0.0.1; the test fails, never skips, without it) keeps
//! uploads and generated documents in the bucket, and serves a document from there.

use ekey_store::blob::{BlobStore, ObjectBlobStore, S3Settings};
use ekey_testkit::{MOTO_ACCESS_KEY_ID, MOTO_SECRET_ACCESS_KEY, Moto};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Row;

use crate::support::*;

const BUCKET: &str = "ekey-api";
const PREFIX: &str = "instance-a";

/// The whole bucket, seen through a client of its own (not the server's).
fn bucket(moto: &Moto) -> ObjectBlobStore {
    ObjectBlobStore::s3(&S3Settings {
        endpoint: Some(moto.endpoint()),
        access_key_id: Some(MOTO_ACCESS_KEY_ID.into()),
        secret_access_key: Some(MOTO_SECRET_ACCESS_KEY.into()),
        ..S3Settings::from_url(&format!("s3://{BUCKET}")).unwrap()
    })
    .unwrap()
}

async fn download(s: &TestServer, token: &str, path: &str) -> Vec<u8> {
    let res = s
        .client
        .get(s.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    res.bytes().await.unwrap().to_vec()
}

async fn downloads_audited(s: &TestServer, id: &str) -> i64 {
    sqlx::query(
        "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'document.download' AND object_id = $1",
    )
    .bind(id)
    .fetch_one(s.raw().pool())
    .await
    .unwrap()
    .try_get("n")
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_and_documents_live_in_s3() {
    let moto = Moto::start().expect("moto_server for the S3 storage test");
    moto.create_bucket(BUCKET).unwrap();
    let endpoint = moto.endpoint();
    let s = TestServer::start_with(Db::Sqlite, default_start(), move |c| {
        c.storage_url = Some(format!("s3://{BUCKET}/{PREFIX}"));
        c.s3_endpoint = Some(endpoint);
        c.s3_access_key_id = Some(MOTO_ACCESS_KEY_ID.into());
        c.s3_secret_access_key = Some(MOTO_SECRET_ACCESS_KEY.into());
    })
    .await;
    let bucket = bucket(&moto);
    let ent = s.login("demo@ekey.example").await;

    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            first_request("liming@example.com"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/submit"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");

    // An upload goes to the bucket, under the configured prefix, byte for byte; nothing
    // is written into the local data directory.
    upload_all(&s, &ent, &id, &SIX[..1]).await;
    let uploaded = bucket
        .keys(&format!("{PREFIX}/materials/{id}"))
        .await
        .unwrap();
    assert_eq!(uploaded.len(), 1, "{uploaded:?}");
    assert!(
        uploaded[0].starts_with(&format!("{PREFIX}/materials/{id}/{}/", SIX[0])),
        "{uploaded:?}"
    );
    assert_eq!(bucket.get(&uploaded[0]).await.unwrap(), png(2000));
    assert!(
        !s.data_dir.join("files").join("materials").exists(),
        "an upload landed on the local disk"
    );
    // And it is read back from there.
    let back = download(
        &s,
        &ent,
        &format!("/api/v1/requests/{id}/materials/{}", SIX[0]),
    )
    .await;
    assert_eq!(back, png(2000));

    // The first download makes the form and stores it in the bucket.
    let path = format!("/api/v1/requests/{id}/documents/application-form.pdf");
    let docs_prefix = format!("{PREFIX}/documents/requests/{id}");
    assert!(bucket.keys(&docs_prefix).await.unwrap().is_empty());
    let first = download(&s, &ent, &path).await;
    assert!(first.starts_with(b"%PDF-"), "not a PDF");
    let stored = bucket.keys(&docs_prefix).await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let key = &stored[0];
    let name = key.rsplit('/').next().unwrap();
    assert!(
        name.starts_with("application-form-") && name.ends_with(".pdf"),
        "{key}"
    );
    assert_eq!(bucket.get(key).await.unwrap(), first);

    // A second download, days later (a form made again would carry a new date), serves
    // the same bytes, and makes no second copy.
    s.clock.advance(chrono::Duration::days(3));
    let ent = s.login("demo@ekey.example").await;
    let second = download(&s, &ent, &path).await;
    assert!(
        second == first,
        "the second download differs from the first"
    );
    assert_eq!(bucket.keys(&docs_prefix).await.unwrap(), stored);

    // What is served is what the bucket holds (as another instance would have stored it).
    let planted = b"%PDF-1.7\n% the copy another instance stored\n".to_vec();
    bucket.put(key, &planted).await.unwrap();
    assert_eq!(download(&s, &ent, &path).await, planted);

    // Each document has its own object; every download is still audited.
    let letter = download(
        &s,
        &ent,
        &format!("/api/v1/requests/{id}/documents/confirmation-letter.pdf"),
    )
    .await;
    let stored = bucket.keys(&docs_prefix).await.unwrap();
    assert_eq!(stored.len(), 2, "{stored:?}");
    let letter_key = stored
        .iter()
        .find(|k| k.contains("/confirmation-letter-"))
        .expect("the confirmation letter in the bucket");
    assert_eq!(bucket.get(letter_key).await.unwrap(), letter);
    assert_eq!(downloads_audited(&s, &id).await, 4);

    // Another province's agency still cannot fetch it, stored or not.
    let beijing = s.login("agency-110000").await;
    let res = s
        .client
        .get(s.url(&path))
        .bearer_auth(&beijing)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_bucket_stops_the_start_with_a_clear_error() {
    let moto = Moto::start().expect("moto_server for the S3 storage test");
    let dir = tempfile::tempdir().unwrap();
    let config = ekey_server::Config {
        database_url: format!("sqlite:{}", dir.path().join("ekey.db").display()),
        data_dir: dir.path().join("data"),
        storage_url: Some("s3://no-such-bucket".into()),
        s3_endpoint: Some(moto.endpoint()),
        s3_access_key_id: Some(MOTO_ACCESS_KEY_ID.into()),
        s3_secret_access_key: Some(MOTO_SECRET_ACCESS_KEY.into()),
        ..ekey_server::Config::default()
    };
    let e = ekey_server::build_default(config)
        .await
        .err()
        .expect("a start on a missing bucket fails");
    let text = format!("{e:#}");
    assert!(text.contains("file storage"), "{text}");
    assert!(text.contains("s3://no-such-bucket"), "{text}");
}
