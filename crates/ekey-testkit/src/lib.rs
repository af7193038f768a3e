//! Test support shared by the eKey integration suites.
//!
//! The main piece is [`PgCluster`]: a throwaway PostgreSQL server started
//! from the locally installed binaries (`initdb`, `pg_ctl`, `psql`), with one
//! fresh database per test via [`PgCluster::create_database`].
//!
//! ```no_run
//! let pg = ekey_testkit::PgCluster::shared()?;
//! let url = pg.create_database("store_roundtrip")?;
//! // connect to `url` with sqlx, run the test ...
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Set `EKEY_TEST_PG_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`)
//! to make [`PgCluster::shared`] use an existing server instead of starting
//! one.
//!
//! [`Moto`] is a local S3 emulator (`moto_server`) for the object-storage tests.

pub mod config;
pub mod crl;
pub mod ident;
mod moto;
mod pg;
pub mod scenario;
pub mod smtp;

pub use moto::{MOTO_ACCESS_KEY_ID, MOTO_SECRET_ACCESS_KEY, Moto, moto_server_path};
pub use pg::{PgCluster, free_port};
