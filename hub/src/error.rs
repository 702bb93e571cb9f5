//! Errors as the hub answers them.
//!
//! Which error where:
//! - [`ApiError`]: REST API handlers under `/hub/api`. Always JupyterHub's JSON body
//!   `{"status": N, "message": "..."}`; `message` is `null` where JupyterHub sends none (a bad
//!   token on `GET /hub/api/user`). Internal failures are logged in full and answered with a
//!   generic message, never with internals.
//! - Page handlers render HTML error pages (added with the pages).

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};
use serde::Serialize;

/// An API error: a status, a message for people, and optional extra headers (`Retry-After`).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Serialize)]
struct Body<'a> {
    status: u16,
    message: Option<&'a str>,
}

impl ApiError {
    /// An error with a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: Some(message.into()),
            headers: Vec::new(),
        }
    }

    /// An error with `"message": null`, as JupyterHub sends for some refusals.
    pub fn bare(status: StatusCode) -> Self {
        Self {
            status,
            message: None,
            headers: Vec::new(),
        }
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409 with a message.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 403 with a message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// A failure inside the hub: logged with its cause chain, answered with a generic 500.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {error:#}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
    }

    /// Adds a header to the response (e.g. `Retry-After`).
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.status.as_u16(),
            self.message.as_deref().unwrap_or("")
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            status: self.status.as_u16(),
            message: self.message.as_deref(),
        };
        let mut resp = (self.status, Json(body)).into_response();
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

/// The result type of API handlers.
pub type ApiResult<T> = Result<T, ApiError>;
