//! The configurable-http-proxy REST API: `GET/POST/DELETE /api/routes[/<prefix>]`.
//!
//! The proxy keeps whatever JSON object a client posts as a route's data and adds
//! `last_activity`. JupyterHub marks its own routes with `"jupyterhub": true` and adds `user`
//! and `server_name`, `service`, or `hub`. [`RouteData`] names those keys and keeps every other
//! key in [`RouteData::extra`], so a route round-trips unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Header that carries the proxy API token: `Authorization: token <CONFIGPROXY_AUTH_TOKEN>`.
pub const AUTH_SCHEME: &str = "token";

/// Environment variable holding the proxy API token.
pub const AUTH_TOKEN_ENV: &str = "CONFIGPROXY_AUTH_TOKEN";

/// The path of the proxy health check on the public port.
pub const HEALTH_PATH: &str = "/_chp_healthz";

/// The data kept with one route.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RouteData {
    /// Where requests for this prefix go, e.g. `http://127.0.0.1:50123`.
    pub target: String,
    /// Set by JupyterHub on routes it manages; routes without it are left alone by the hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jupyterhub: Option<bool>,
    /// Owner of a user-server route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Server name of a user-server route (`""` for the default server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Name of a service route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Set on the hub's own route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<bool>,
    /// ISO 8601 UTC with milliseconds (`2026-11-23T10:51:16.658Z`); set by the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<String>,
    /// Any other keys the client posted, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `GET /api/routes`: route key (decoded prefix, no trailing slash) → data.
pub type RouteTable = std::collections::BTreeMap<String, RouteData>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_round_trip() {
        let json = r#"{"target":"http://127.0.0.1:1","jupyterhub":true,"user":"a","server_name":"","custom":[1,2],"last_activity":"2026-11-23T10:51:16.658Z"}"#;
        let data: RouteData = serde_json::from_str(json).unwrap();
        assert_eq!(data.user.as_deref(), Some("a"));
        assert_eq!(data.extra["custom"], serde_json::json!([1, 2]));
        let back: Value = serde_json::to_value(&data).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(json).unwrap());
    }
}
