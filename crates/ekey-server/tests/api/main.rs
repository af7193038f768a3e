//! The API integration suite: one binary, every test against a real server on 127.0.0.1,
//! each on SQLite and on PostgreSQL.

/// Runs an `async fn(Db)` on SQLite and on PostgreSQL, as `<name>::sqlite` / `<name>::postgres`.
macro_rules! on_both_databases {
    ($name:ident $(, $($attr:tt)+)?) => {
        mod $name {
            use crate::support::Db;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            $(#[$($attr)+])?
            async fn sqlite() {
                super::$name(Db::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            $(#[$($attr)+])?
            async fn postgres() {
                super::$name(Db::Postgres).await
            }
        }
    };
}

mod support;

mod agent;
mod authz;
mod bad_input;
mod browser;
mod csr_issue;
mod deadlines;
mod digests;
mod doors;
mod edge;
mod flow;
mod headers;
mod info_change;
mod key_pin;
mod lifecycle;
mod notify;
mod pages;
mod papers;
mod provisional;
mod reminders;
mod renewal_expiry;
mod replacement;
mod replacement_pages;
mod returns;
mod revocation;
mod scans;
mod softhsm;
mod storage;
mod throttle;
mod unlock;
mod window;
mod wording;
