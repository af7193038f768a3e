//! The API integration suite: one binary, every test against a real server on 127.0.0.1,
//! each on SQLite and on PostgreSQL.

mod support;

mod bad_input;
mod browser;
mod flow;
mod lifecycle;
mod softhsm;
