//! The hub's HTTP server loop and its limits; headers every hub response carries, and the
//! JSON 404 for unknown API paths.
//!
//! - `X-JupyterHub-Version` (a PEP 440 version: single-user servers and the idle culler parse
//!   it, and crash on anything else);
//! - `Access-Control-Allow-Headers: accept, content-type, authorization`;
//! - `Content-Security-Policy`: `frame-ancestors 'none'; report-uri <hub>/security/csp-report`,
//!   plus `; default-src 'none'` on API responses.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use daemon_support::listen::{ConnInfo, HttpOptions, Listener};
use http::header::{ACCESS_CONTROL_ALLOW_HEADERS, CONNECTION, CONTENT_SECURITY_POLICY};
use http::{HeaderName, HeaderValue, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};

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

/// Limits of the hub's HTTP server (`[hub] http_header_timeout`, `http_body_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// How long a client may take to send a request head, and how long an idle keep-alive
    /// connection stays open.
    pub header_timeout: Duration,
    /// How long a client may take to send a whole request body, counted from its head.
    pub body_timeout: Duration,
}

/// Largest request head the hub accepts (tornado's default); larger ones get 431. At most 100
/// header lines are accepted either way.
pub const MAX_HEADER_SIZE: usize = 64 * 1024;

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish
/// (for at most 10 s). The listener's accept queue is raised to
/// [`daemon_support::listen::LISTEN_BACKLOG`].
///
/// HTTP/1.1 only, like every daemon of this project: a client that sends no complete request
/// head within `header_timeout` is disconnected (slowloris), a head over [`MAX_HEADER_SIZE`]
/// or with more than 100 lines gets 431, and a request body still arriving `body_timeout`
/// after its head makes reading the body fail (the request is answered with an error and the
/// connection closed). Handlers see the peer address as axum's `ConnectInfo<SocketAddr>`.
///
/// # Errors
/// When the listener's accept queue cannot be raised.
pub async fn serve(
    router: axum::Router,
    listener: tokio::net::TcpListener,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let options = HttpOptions {
        header_timeout: limits.header_timeout,
        max_header_size: MAX_HEADER_SIZE,
        ..HttpOptions::default()
    };
    let listener = Listener::from_tcp(listener)?;
    daemon_support::listen::serve(
        listener,
        None,
        options,
        move |conn: ConnInfo| HubService {
            router: router.clone(),
            peer: conn.peer,
            body_timeout: limits.body_timeout,
        },
        shutdown,
    )
    .await;
    Ok(())
}

/// The router as a hyper service for one connection.
#[derive(Debug, Clone)]
struct HubService {
    router: axum::Router,
    peer: Option<SocketAddr>,
    body_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for HubService {
    type Response = Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let deadline = Instant::now() + self.body_timeout;
        let mut req = req.map(|body| {
            axum::body::Body::new(DeadlineBody {
                inner: body,
                deadline,
                limit: self.body_timeout,
                sleep: None,
            })
        });
        if let Some(peer) = self.peer {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        let mut router = self.router.clone();
        tower::Service::call(&mut router, req)
    }
}

/// The error of a request body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(Duration);

/// A request body that fails once its deadline has passed.
#[derive(Debug)]
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// The timeout the deadline came from, for the error.
    limit: Duration,
    /// Armed on the first poll that has to wait.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                tracing::debug!("request body timed out");
                Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.limit)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
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
