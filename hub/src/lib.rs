//! The hub daemon: users, login, spawning, the JupyterHub REST API and the OAuth2 provider.
//!
//! Being built: the modules below are the parts that exist so far.
//!
//! - [`error`]: API errors as JupyterHub's `{status, message}` bodies.
//! - [`http`]: headers every response carries, the JSON 404 for unknown API paths.
//! - [`api`]: REST API building blocks.
//! - [`rbac`]: scopes, roles and their checks (pure functions).
//! - [`identity`]: tokens, signed cookies and XSRF rules (pure functions).
//! - [`config`]: the layered configuration (TOML file, environment, flags) and its docs.
//! - [`cookie_secret`]: loading or creating the secret that signs login cookies.
//! - [`proxy`]: driving the proxy: REST client, managed child process, route reconciliation.

pub mod access;
pub mod api;
pub mod app;
pub mod config;
pub mod cookie_secret;
pub mod db;
pub mod error;
pub mod http;
pub mod identity;
pub mod proxy;
pub mod rbac;
pub mod startup;
pub mod state;

pub use crate::http::VERSION;
