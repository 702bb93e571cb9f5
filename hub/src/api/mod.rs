//! The REST API under `/hub/api`: one module per resource, each with its `router()`.

pub mod activity;
pub mod authorizations;
pub mod batchspawner;
pub mod extract;
pub mod groups;
pub mod info;
pub mod metrics;
pub mod model_views;
pub mod models;
pub mod pagination;
pub mod proxy;
pub mod python;
pub mod servers;
pub mod services;
pub mod shares;
pub mod shutdown;
pub mod tokens;
pub mod users;

use axum::Router;
use http::Method;

use crate::state::AppState;

/// Every API route, relative to `/hub/api`.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(info::router())
        .merge(users::router())
        .merge(groups::router())
        .merge(activity::router())
        .merge(metrics::router())
        .merge(tokens::router())
        .merge(services::router())
        .merge(shares::router())
        .merge(servers::router())
        .merge(proxy::router())
        .merge(shutdown::router())
        .merge(authorizations::router())
        .merge(batchspawner::router())
}

/// Every route [`router`] serves, relative to `/hub/api`, with its methods (in the order GET,
/// HEAD, POST, PUT, PATCH, DELETE). `{name}` marks a path segment. `docs/reference/hub-openapi.yaml`
/// describes exactly these; `hub/tests/openapi_spec.rs` checks this list against the router, the
/// sources and that document.
pub const ROUTES: &[(&str, &[Method])] = &[
    ("/", &[Method::GET]),
    ("/info", &[Method::GET]),
    ("/user", &[Method::GET]),
    ("/health", &[Method::GET, Method::HEAD]),
    ("/metrics", &[Method::GET]),
    ("/shutdown", &[Method::POST]),
    ("/users", &[Method::GET, Method::POST]),
    (
        "/users/{name}",
        &[Method::GET, Method::POST, Method::PATCH, Method::DELETE],
    ),
    ("/users/{name}/admin-access", &[Method::POST]),
    ("/users/{name}/activity", &[Method::POST]),
    ("/users/{name}/tokens", &[Method::GET, Method::POST]),
    (
        "/users/{name}/tokens/{token_id}",
        &[Method::GET, Method::DELETE],
    ),
    ("/groups", &[Method::GET, Method::POST]),
    (
        "/groups/{name}",
        &[Method::GET, Method::POST, Method::DELETE],
    ),
    ("/groups/{name}/users", &[Method::POST, Method::DELETE]),
    ("/groups/{name}/properties", &[Method::PUT]),
    ("/services", &[Method::GET]),
    (
        "/services/{name}",
        &[Method::GET, Method::POST, Method::DELETE],
    ),
    (
        "/users/{name}/server",
        &[Method::GET, Method::POST, Method::DELETE],
    ),
    ("/users/{name}/server/progress", &[Method::GET]),
    ("/users/{name}/servers/", SERVER_METHODS),
    ("/users/{name}/servers/{server}", SERVER_METHODS),
    ("/users/{name}/servers/{server}/progress", &[Method::GET]),
    (
        "/shares/{owner}",
        &[Method::GET, Method::POST, Method::PATCH, Method::DELETE],
    ),
    ("/shares/{owner}/", SHARE_METHODS),
    ("/shares/{owner}/{server}", SHARE_METHODS),
    (
        "/share-codes/{owner}",
        &[Method::GET, Method::POST, Method::DELETE],
    ),
    ("/share-codes/{owner}/", SHARE_CODE_METHODS),
    ("/share-codes/{owner}/{server}", SHARE_CODE_METHODS),
    ("/users/{name}/shared", &[Method::GET]),
    ("/users/{name}/shared/{owner}/", RECEIVED_SHARE_METHODS),
    (
        "/users/{name}/shared/{owner}/{server}",
        RECEIVED_SHARE_METHODS,
    ),
    ("/groups/{name}/shared", &[Method::GET]),
    ("/groups/{name}/shared/{owner}/", RECEIVED_SHARE_METHODS),
    (
        "/groups/{name}/shared/{owner}/{server}",
        RECEIVED_SHARE_METHODS,
    ),
    ("/proxy", &[Method::GET, Method::POST, Method::PATCH]),
    ("/authorizations/token", &[Method::POST]),
    ("/authorizations/token/{token}", &[Method::GET]),
    ("/authorizations/cookie/{name}", &[Method::GET]),
    ("/authorizations/cookie/{name}/{value}", &[Method::GET]),
    ("/batchspawner", &[Method::POST]),
];

const SERVER_METHODS: &[Method] = &[
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];
const SHARE_METHODS: &[Method] = &[Method::GET, Method::POST, Method::PATCH, Method::DELETE];
const SHARE_CODE_METHODS: &[Method] = &[Method::GET, Method::POST, Method::DELETE];
const RECEIVED_SHARE_METHODS: &[Method] = &[Method::GET, Method::DELETE];
