//! Integration tests: the shim binary, started as a spawner starts it, in front of real apps,
//! talking to a hub (a double speaking the documented endpoints, or the workspace's real hub).

#![allow(
    clippy::unwrap_used,
    reason = "a failed unwrap is a test failure with a line number"
)]

mod command_app;
mod common;
mod jupyter;
mod jupyterhub_reference;
mod real_hub;
