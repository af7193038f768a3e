use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use ekey_testkit::PgCluster;

#[test]
fn cluster_starts_creates_databases_and_cleans_up_on_drop() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let port = pg.port().expect("started cluster has a port");
    let dir = pg.dir().expect("started cluster has a dir").to_path_buf();
    assert_eq!(
        pg.url(),
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    );
    assert!(dir.join("data").join("PG_VERSION").is_file());

    let a = pg.create_database("Testkit-A")?;
    let b = pg.create_database("testkit_b")?;
    assert_ne!(a, b);
    assert!(a.starts_with(&format!("postgres://postgres@127.0.0.1:{port}/testkit_a_")));

    assert_eq!(pg.psql(&a, "select 1")?, "1");
    let name = pg.psql(&b, "select current_database()")?;
    assert!(b.ends_with(&format!("/{name}")), "{b} vs {name}");

    drop(pg);
    let connect = TcpStream::connect_timeout(
        &(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_millis(500),
    );
    assert!(connect.is_err(), "port {port} still accepts connections");
    assert!(!dir.exists(), "{} still exists", dir.display());
    Ok(())
}

#[test]
fn shared_cluster_is_started_once() -> anyhow::Result<()> {
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| PgCluster::shared().map(|pg| pg as *const PgCluster as usize))
        })
        .collect();
    let mut addrs = Vec::new();
    for h in handles {
        addrs.push(h.join().expect("thread panicked")?);
    }
    addrs.dedup();
    assert_eq!(addrs.len(), 1, "shared() returned different clusters");

    let pg = PgCluster::shared()?;
    let url = pg.create_database("shared")?;
    assert_eq!(pg.psql(&url, "select 40 + 2")?, "42");
    Ok(())
}
