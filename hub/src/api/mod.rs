//! The REST API under `/hub/api`: one module per resource, each with its `router()`.

pub mod extract;
pub mod info;
pub mod models;
pub mod pagination;

use axum::Router;

use crate::state::AppState;

/// Every API route, relative to `/hub/api`.
pub fn router() -> Router<AppState> {
    Router::new().merge(info::router())
}
