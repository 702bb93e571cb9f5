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
