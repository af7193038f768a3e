//! The agent as the portal's pages use it (router without a socket). The renewal client
//! runs against the real server in ekey-server's API suite (`agent.rs`) and, with a crash
//! at every step, in ekey-cli's `renewal_faults.rs`.

mod api;
mod support;
