//! The hub's HTTP application: every router merged under the hub prefix, with the common
//! headers, body limits and the JSON 404 of the API; and the server loop.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use tokio::net::TcpListener;

use crate::api;
use crate::http::{CommonHeaders, api_not_found, common_headers};
use crate::state::AppState;

/// Largest request body the API accepts (JupyterHub/tornado allow 100 MB; nothing the API
/// takes comes near 1 MiB).
pub const MAX_API_BODY: usize = 1024 * 1024;

/// The whole application for `state`.
pub fn router(state: AppState) -> Router {
    let prefix = state.config.hub.hub_prefix();
    let api_path = format!("{prefix}api");
    let api = api::router()
        .fallback(api_not_found)
        .layer(middleware::from_fn(options_ok))
        .layer(DefaultBodyLimit::max(MAX_API_BODY));
    let headers = Arc::new(CommonHeaders::new(&prefix));
    Router::new()
        .nest(&api_path, api)
        .merge(crate::oauth2::router(&prefix))
        .merge(api::info::hub_routes(&prefix))
        .merge(api::metrics::hub_routes(&prefix))
        .merge(crate::web::router(&prefix))
        .fallback(crate::web::fallback)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_duration,
        ))
        .layer(middleware::from_fn_with_state(headers, common_headers))
        .with_state(state)
}

/// Times every request for `request_duration_seconds`, labelled with the route template (not
/// the raw path, which would make one series per user).
async fn record_duration(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let handler = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let resp = next.run(req).await;
    // Any change may weaken a credential (a revoked token, a demoted user, a removed share):
    // resolved identities are not reused across one.
    if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        state.identities.invalidate();
    }
    state.metrics.request_duration_seconds.observe(
        &[method.as_str(), &handler, resp.status().as_str()],
        started.elapsed(),
    );
    resp
}

/// `OPTIONS` on any API path: 200 with an empty body, no authentication (CORS preflight).
async fn options_ok(req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS {
        return StatusCode::OK.into_response();
    }
    next.run(req).await
}

/// Serves `state` on `listener` until `shutdown` resolves, with the limits of `[hub]
/// http_header_timeout` and `http_body_timeout` (see [`crate::http::serve`]).
///
/// # Errors
/// When the listener cannot be set up (accept errors are logged and retried).
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let requested = state.clone();
    let limits = crate::http::ServerLimits {
        header_timeout: state.config.hub.http_header_timeout,
        body_timeout: state.config.hub.http_body_timeout,
    };
    let app = router(state);
    // Ends on the caller's signal or on `POST /hub/api/shutdown`.
    let shutdown = async move {
        tokio::select! {
            () = shutdown => {}
            _ = requested.shutdown.wait() => {}
        }
    };
    crate::http::serve(app, listener, limits, shutdown).await
}
