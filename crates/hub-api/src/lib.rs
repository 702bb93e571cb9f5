//! Wire types only: what crosses the network between the hub, `chp-proxy`, the single-user
//! shim and their clients. No I/O, no runtime: every daemon and plugin can depend on this crate
//! cheaply.
//!
//! - [`error`]: JupyterHub's `{"status": N, "message": "..."}` error body.
//! - [`chp`]: the configurable-http-proxy route API (`/api/routes`).
//! - [`mod@env`]: the `JUPYTERHUB_*` environment variable names a spawner passes to a server.

pub mod chp;
pub mod env;
pub mod error;
