use ekey_store::{NewAudit, SqlStore, Store};
use std::sync::Arc;
async fn run(url: String) {
    let s = Arc::new(SqlStore::connect(&url).await.unwrap());
    s.migrate().await.unwrap();
    let w = s.clone();
    let writer = tokio::spawn(async move {
        for i in 0..1500 {
            w.append_audit(NewAudit {
                at: chrono::Utc::now(),
                action: format!("x{i}"),
                ..Default::default()
            })
            .await
            .unwrap();
        }
    });
    let mut broken = 0;
    let mut runs = 0;
    while !writer.is_finished() {
        let r = s.verify_audit().await.unwrap();
        runs += 1;
        if let Some(b) = r.first_broken {
            broken += 1;
            if broken < 3 {
                println!("{url}: false alarm {b:?} records {}", r.records);
            }
        }
    }
    println!("{url}: {broken} of {runs} verifications reported a broken chain");
}
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probe_verify_race_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    run(format!("sqlite:{}", dir.path().join("x.db").display())).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probe_verify_race_pg() {
    let url = tokio::task::spawn_blocking(|| {
        ekey_testkit::PgCluster::shared()
            .unwrap()
            .create_database("probe")
            .unwrap()
    })
    .await
    .unwrap();
    run(url).await;
}
