//! The hub daemon: users, login, spawning, the JupyterHub REST API and the OAuth2 provider.
//!
//! Being built: the modules below are the parts that exist so far.
//!
//! - [`error`]: API errors as JupyterHub's `{status, message}` bodies.
//! - [`http`]: headers every response carries, the JSON 404 for unknown API paths.
//! - [`api`]: REST API building blocks.
//! - [`rbac`]: scopes, roles and their checks (pure functions).
//! - [`identity`]: tokens, signed cookies and XSRF rules (pure functions).

pub mod api;
pub mod error;
pub mod http;
pub mod identity;
pub mod rbac;

pub use crate::http::VERSION;
