//! Reverse-proxy mechanics shared by `chp-proxy` and the single-user shim.
//!
//! - [`path`]: checking a request path so that the route chosen and the backend's reading of
//!   the path cannot differ, and joining it onto a target's path.
//! - [`headers`]: hop-by-hop headers, websocket upgrade detection, `X-Forwarded-*`.
//! - [`body`]: a body wrapper that reports data and the end of the stream (activity tracking).
//! - [`splice`]: copying bytes both ways between an upgraded client and upstream connection.

pub mod body;
pub mod headers;
pub mod path;
pub mod splice;
