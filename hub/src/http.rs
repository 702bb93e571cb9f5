//! Headers every hub response carries, and the JSON 404 for unknown API paths.
//!
//! - `X-JupyterHub-Version` (a PEP 440 version: single-user servers and the idle culler parse
//!   it, and crash on anything else);
//! - `Access-Control-Allow-Headers: accept, content-type, authorization`;
//! - `Content-Security-Policy`: `frame-ancestors 'none'; report-uri <hub>/security/csp-report`,
//!   plus `; default-src 'none'` on API responses.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::header::{ACCESS_CONTROL_ALLOW_HEADERS, CONNECTION, CONTENT_SECURITY_POLICY};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::error::ApiError;

/// The version the hub reports: the JupyterHub release whose API it implements, with this
/// implementation's own version as the local part.
pub const VERSION: &str = concat!("6.1.1+rs.", env!("CARGO_PKG_VERSION"));

/// Header carrying [`VERSION`].
pub static VERSION_HEADER: HeaderName = HeaderName::from_static("x-jupyterhub-version");

/// Precomputed header values for one hub prefix.
#[derive(Debug, Clone)]
pub struct CommonHeaders {
    api_prefix: String,
    /// The OAuth authorization endpoint: under the API prefix, but it serves pages.
    authorize_path: String,
    page_csp: HeaderValue,
    api_csp: HeaderValue,
}

impl CommonHeaders {
    /// Headers for a hub mounted at `hub_prefix` (e.g. `/hub/`).
    pub fn new(hub_prefix: &str) -> Self {
        let page = format!("frame-ancestors 'none'; report-uri {hub_prefix}security/csp-report");
        let api = format!("{page}; default-src 'none'");
        Self {
            api_prefix: format!("{hub_prefix}api"),
            authorize_path: crate::oauth2::authorize_path(hub_prefix),
            page_csp: HeaderValue::from_str(&page)
                .unwrap_or(HeaderValue::from_static("frame-ancestors 'none'")),
            api_csp: HeaderValue::from_str(&api).unwrap_or(HeaderValue::from_static(
                "frame-ancestors 'none'; default-src 'none'",
            )),
        }
    }
}

/// Middleware adding the common headers.
pub async fn common_headers(
    axum::extract::State(h): axum::extract::State<std::sync::Arc<CommonHeaders>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let is_api = path.starts_with(&h.api_prefix) && path != h.authorize_path;
    let mut resp = next.run(req).await;
    let refused_body = resp.status() == StatusCode::PAYLOAD_TOO_LARGE;
    let headers = resp.headers_mut();
    if refused_body {
        // The body was refused unread: the connection cannot carry another request, and a
        // client that reused it would fail writing to it.
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    headers.insert(VERSION_HEADER.clone(), HeaderValue::from_static(VERSION));
    headers
        .entry(ACCESS_CONTROL_ALLOW_HEADERS)
        .or_insert(HeaderValue::from_static(
            "accept, content-type, authorization",
        ));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        if is_api {
            h.api_csp.clone()
        } else {
            h.page_csp.clone()
        },
    );
    resp
}

/// The reply to unknown paths under `/hub/api/`.
pub async fn api_not_found() -> ApiError {
    ApiError::bare(StatusCode::NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_pep440_with_local_part() {
        // N.N.N+local where local is dot-separated alphanumerics.
        let (public, local) = VERSION.split_once('+').unwrap();
        assert!(public.split('.').all(|p| p.parse::<u32>().is_ok()));
        assert!(
            local
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
        );
    }
}
