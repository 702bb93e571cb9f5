//! The hub daemon: users, login, spawning, the JupyterHub REST API and the OAuth2 provider.
//!
//! Being built. Layers, top down:
//!
//! - HTTP adapters: [`app`] (the router, the server loop), [`api`] (REST handlers, one module
//!   per resource; extractors for callers and bodies; models), [`http`] (common headers),
//!   [`error`] (the `{status, message}` body).
//! - Domain: [`access`] (who is calling, effective scopes), [`rbac`] and [`identity`] (pure
//!   functions: scopes and roles; token hashes, signed cookies, XSRF), [`spawn`] (servers),
//!   [`startup`] (configured entities into the database).
//! - Infrastructure: [`db`] (diesel over SQLite and PostgreSQL), [`proxy`] (driving the
//!   proxy), [`config`] and [`cookie_secret`], [`metrics`], [`state`] (what handlers share).

pub mod access;
pub mod api;
pub mod app;
pub mod config;
pub mod cookie_secret;
pub mod daemon;
pub mod db;
pub mod error;
pub mod http;
pub mod identity;
pub mod identity_cache;
pub mod login;
pub mod metrics;
pub mod oauth2;
pub mod plugins;
pub mod proxy;
pub mod rbac;
pub mod services;
pub mod spawn;
pub mod startup;
pub mod state;
pub mod web;

pub use crate::http::VERSION;
