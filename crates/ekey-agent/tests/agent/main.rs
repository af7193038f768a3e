//! The agent as the portal's pages use it (router without a socket), and the renewal
//! client against a stand-in for the eKey server's renewal API.

mod api;
mod mock_server;
mod renewal;
mod support;
