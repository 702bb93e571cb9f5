//! Forwarding an admitted request to the app, websockets included, with `http-forward`'s
//! mechanics (hop-by-hop headers, upgrade detection, splicing). Bodies stream both ways.
//!
//! What changes on the way in: the client's `Authorization` header (a hub token) is removed
//! and the app's own token, if it has one, is sent instead; the shim's cookies (the login
//! cookie holding an OAuth token, the OAuth state cookies, the hub's session id) are removed,
//! so neither the app nor anyone it serves ever sees another user's credentials; a `token`
//! query argument the shim consumed is removed. `Host` is kept, so the app builds its URLs
//! and checks `Origin` as the browser sees them.
//!
//! What changes on the way out: hop-by-hop headers go, `X-JupyterHub-Version` is added, the
//! `frame-ancestors` directive of `Content-Security-Policy` is set, and `Set-Cookie` headers
//! for the cookies the shim owns are dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, Uri, Version};
use http_body_util::{Either, Empty};
use http_forward::headers::remove_hop_by_hop;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::child::{Endpoint, Target};

/// Body of a request sent to the app.
pub type UpstreamBody = Either<Incoming, Empty<Bytes>>;

/// How long the second direction of a websocket may stay open after the first has closed.
pub const WEBSOCKET_LINGER: Duration = Duration::from_secs(30);

/// Pooled HTTP/1.1 connections to the app.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// Over loopback TCP.
    Tcp(Client<HttpConnector, UpstreamBody>, SocketAddr),
    /// Over the unix socket.
    Unix(Client<FixedUnix, UpstreamBody>),
}

impl Upstream {
    /// A client toward `endpoint`.
    pub fn new(endpoint: &Endpoint) -> Self {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .set_host(false);
        match endpoint {
            Endpoint::Tcp(addr) => {
                let mut http = HttpConnector::new();
                http.set_nodelay(true);
                http.set_connect_timeout(Some(Duration::from_secs(10)));
                Self::Tcp(builder.build(http), *addr)
            }
            Endpoint::Unix(path) => Self::Unix(builder.build(FixedUnix(path.clone()))),
        }
    }

    /// The authority put in request URIs (the unix client ignores it).
    pub fn authority(&self) -> String {
        match self {
            Self::Tcp(_, addr) => addr.to_string(),
            Self::Unix(_) => "localhost".to_owned(),
        }
    }

    /// Sends a request whose URI already names the app.
    pub fn send(&self, req: Request<UpstreamBody>) -> hyper_util::client::legacy::ResponseFuture {
        match self {
            Self::Tcp(client, _) => client.request(req),
            Self::Unix(client) => client.request(req),
        }
    }

    /// A URI on the app for `path_and_query`.
    ///
    /// # Errors
    /// When the path is not a valid URI path.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme("http")
            .authority(self.authority())
            .path_and_query(path_and_query)
            .build()
    }
}

/// Connects every request to one unix socket.
#[derive(Debug, Clone)]
pub struct FixedUnix(PathBuf);

impl tower_service::Service<Uri> for FixedUnix {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) })
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The query string without `token=` arguments.
pub fn strip_token_arg(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            name != "token" && !pair.is_empty()
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Request headers toward the app.
pub struct RequestEdit<'a> {
    /// The app's address and token.
    pub target: &'a Target,
    /// Whether this is a websocket handshake.
    pub websocket: bool,
    /// The client's IP, when known.
    pub client_ip: Option<std::net::IpAddr>,
    /// `https` when the client reached the shim over TLS.
    pub proto: &'static str,
    /// Cookies to remove.
    pub drop_cookie: &'a (dyn Fn(&str) -> bool + Sync),
}

impl std::fmt::Debug for RequestEdit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestEdit")
            .field("target", self.target)
            .field("websocket", &self.websocket)
            .finish_non_exhaustive()
    }
}

impl RequestEdit<'_> {
    /// Rewrites `headers` for the app.
    pub fn apply(&self, headers: &mut HeaderMap) {
        remove_hop_by_hop(headers, self.websocket);
        headers.remove(header::AUTHORIZATION);
        if let Some(token) = &self.target.token
            && let Ok(v) = HeaderValue::from_str(&format!("token {token}"))
        {
            headers.insert(header::AUTHORIZATION, v);
        }
        crate::cookies::remove(headers, self.drop_cookie);
        if let Some(ip) = self.client_ip {
            let ip = ip.to_canonical().to_string();
            let joined = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
                Some(existing) => format!("{existing},{ip}"),
                None => ip,
            };
            if let Ok(v) = HeaderValue::from_str(&joined) {
                headers.insert(X_FORWARDED_FOR.clone(), v);
            }
        }
        // The proxy in front already says how the browser connected; only fill in when no one
        // did (a direct connection).
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(
                X_FORWARDED_PROTO.clone(),
                HeaderValue::from_static(self.proto),
            );
        }
    }
}

/// Builds the request to the app from the client's.
///
/// # Errors
/// When the rewritten URI is invalid.
pub fn build_request(
    upstream: &Upstream,
    req: Request<Incoming>,
    edit: &RequestEdit<'_>,
    strip_token: bool,
) -> Result<Request<UpstreamBody>, http::Error> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path();
    let query = parts.uri.query().map(|q| {
        if strip_token {
            strip_token_arg(q)
        } else {
            q.to_owned()
        }
    });
    let path_and_query = http_forward::path::join("", None, path, query.as_deref());
    parts.uri = upstream.uri(&path_and_query)?;
    parts.version = Version::HTTP_11;
    edit.apply(&mut parts.headers);
    let body = if edit.websocket {
        Either::Right(Empty::new())
    } else {
        Either::Left(body)
    };
    Ok(Request::from_parts(parts, body))
}

/// Response headers toward the client.
pub struct ResponseEdit<'a> {
    /// `X-JupyterHub-Version`.
    pub version: &'a HeaderValue,
    /// The `frame-ancestors` sources to enforce, if any.
    pub frame_ancestors: Option<&'a str>,
    /// `Set-Cookie` names the app may not set.
    pub owned_cookie: &'a (dyn Fn(&str) -> bool + Sync),
}

impl std::fmt::Debug for ResponseEdit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseEdit")
            .field("frame_ancestors", &self.frame_ancestors)
            .finish_non_exhaustive()
    }
}

impl ResponseEdit<'_> {
    /// Rewrites `headers` for the client; `upgraded` keeps the upgrade headers of a 101.
    pub fn apply(&self, headers: &mut HeaderMap, upgraded: bool) {
        if !upgraded {
            remove_hop_by_hop(headers, false);
        }
        let cookies: Vec<HeaderValue> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .cloned()
            .collect();
        if cookies
            .iter()
            .any(|c| crate::cookies::set_cookie_name(c).is_some_and(self.owned_cookie))
        {
            headers.remove(header::SET_COOKIE);
            for c in cookies {
                if !crate::cookies::set_cookie_name(&c).is_some_and(self.owned_cookie) {
                    headers.append(header::SET_COOKIE, c);
                }
            }
        }
        add_common(headers, self.version, self.frame_ancestors);
    }
}

/// Adds the headers every shim response carries.
pub fn add_common(headers: &mut HeaderMap, version: &HeaderValue, frame_ancestors: Option<&str>) {
    headers.insert(
        HeaderName::from_static("x-jupyterhub-version"),
        version.clone(),
    );
    if let Some(sources) = frame_ancestors {
        set_frame_ancestors(headers, sources);
    }
}

/// Makes every `Content-Security-Policy` header carry `frame-ancestors <sources>` (replacing
/// the app's), or adds one with only that directive.
pub fn set_frame_ancestors(headers: &mut HeaderMap, sources: &str) {
    let directive = format!("frame-ancestors {sources}");
    let existing: Vec<String> = headers
        .get_all(header::CONTENT_SECURITY_POLICY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    headers.remove(header::CONTENT_SECURITY_POLICY);
    let policies = if existing.is_empty() {
        vec![directive]
    } else {
        existing
            .iter()
            .map(|policy| {
                let mut parts: Vec<&str> = policy
                    .split(';')
                    .map(str::trim)
                    .filter(|d| {
                        !d.is_empty()
                            && !d
                                .split_whitespace()
                                .next()
                                .is_some_and(|n| n.eq_ignore_ascii_case("frame-ancestors"))
                    })
                    .collect();
                parts.push(&directive);
                parts.join("; ")
            })
            .collect()
    };
    for p in policies {
        if let Ok(v) = HeaderValue::from_str(&p) {
            headers.append(header::CONTENT_SECURITY_POLICY, v);
        }
    }
}

/// Copies bytes between an upgraded client connection and the app's until both close,
/// calling `on_client_data` on every chunk from the client.
pub async fn splice_upgraded(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    on_client_data: impl FnMut() + Unpin,
) {
    let (client, upstream) = match tokio::join!(client, upstream) {
        (Ok(c), Ok(u)) => (c, u),
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(error = %e, "websocket upgrade failed");
            return;
        }
    };
    if let Err(e) = http_forward::splice::splice(
        TokioIo::new(client),
        TokioIo::new(upstream),
        on_client_data,
        WEBSOCKET_LINGER,
    )
    .await
    {
        tracing::debug!(error = %e, "websocket closed with an error");
    }
}

/// A response with the app's status and headers but no body: the handshake answer of a
/// websocket whose bytes are spliced separately.
pub fn upgraded_response<B>(resp: Response<B>) -> Response<crate::body::ShimBody> {
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, crate::body::ShimBody::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_argument_removed() {
        assert_eq!(strip_token_arg("a=1&token=x&b=2"), "a=1&b=2");
        assert_eq!(strip_token_arg("token=x"), "");
        assert_eq!(strip_token_arg("tokens=1&token"), "tokens=1");
    }

    #[test]
    fn request_headers_for_the_app() {
        let target = Target {
            endpoint: Endpoint::Unix("/x".into()),
            token: Some("child".into()),
        };
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "token hubtoken".parse().unwrap());
        h.insert(
            header::COOKIE,
            "jupyterhub-user-a=signed; _xsrf=x; app=1".parse().unwrap(),
        );
        h.insert(header::CONNECTION, "keep-alive".parse().unwrap());
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        RequestEdit {
            target: &target,
            websocket: false,
            client_ip: Some([127, 0, 0, 1].into()),
            proto: "http",
            drop_cookie: &|n| n == "jupyterhub-user-a",
        }
        .apply(&mut h);
        assert_eq!(h[header::AUTHORIZATION], "token child");
        assert_eq!(h[header::COOKIE], "_xsrf=x; app=1");
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(h["x-forwarded-for"], "1.2.3.4,127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn frame_ancestors_enforced() {
        let mut h = HeaderMap::new();
        set_frame_ancestors(&mut h, "'none'");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], "frame-ancestors 'none'");
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; Frame-Ancestors 'self'; report-uri /x"
                .parse()
                .unwrap(),
        );
        set_frame_ancestors(&mut h, "'none'");
        assert_eq!(
            h[header::CONTENT_SECURITY_POLICY],
            "default-src 'self'; report-uri /x; frame-ancestors 'none'"
        );
    }

    #[test]
    fn owned_set_cookies_dropped() {
        let mut h = HeaderMap::new();
        h.append(header::SET_COOKIE, "_xsrf=app; Path=/".parse().unwrap());
        h.append(header::SET_COOKIE, "mine=1; Path=/".parse().unwrap());
        let version = HeaderValue::from_static("6.1.1");
        ResponseEdit {
            version: &version,
            frame_ancestors: None,
            owned_cookie: &|n| n == "_xsrf",
        }
        .apply(&mut h, false);
        let cookies: Vec<_> = h.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["mine=1; Path=/"]);
        assert_eq!(h["x-jupyterhub-version"], "6.1.1");
    }
}
