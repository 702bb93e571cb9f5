//! The public server: find the route of each request and forward it, websockets included.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use daemon_support::listen::ConnInfo;
use http::header::{self, HeaderValue, LOCATION};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::{Either, Empty};
use http_forward::body::Tapped;
use http_forward::headers::{Forwarded, host_name, is_websocket_upgrade, remove_hop_by_hop};
use http_forward::path::{Segments, join, raw_prefix_len};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::Shared;
use crate::activity::{Activity, RequestActivity, ResponseActivity};
use crate::body::ProxyBody;
use crate::metrics::inc;
use crate::routes::{Route, Transport};

/// How long the second direction of a websocket may stay open after the first has closed.
const WEBSOCKET_LINGER: Duration = Duration::from_secs(30);

/// Returned instead of a response when the connection must be dropped without one
/// (`--timeout` expired), as configurable-http-proxy does.
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request timed out; connection dropped")
    }
}

impl std::error::Error for Dropped {}

/// The per-connection service of the public port.
#[derive(Debug, Clone)]
pub struct PublicService {
    pub shared: Arc<Shared>,
    pub conn: ConnInfo,
}

impl hyper::service::Service<Request<Incoming>> for PublicService {
    type Response = Response<ProxyBody>;
    type Error = Dropped;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Dropped>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        Box::pin(handle(self.shared.clone(), self.conn, req))
    }
}

/// Handles one request on the public port.
pub async fn handle(
    shared: Arc<Shared>,
    conn: ConnInfo,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Dropped> {
    if req
        .uri()
        .path_and_query()
        .map(http::uri::PathAndQuery::as_str)
        == Some(hub_api::chp::HEALTH_PATH)
    {
        return Ok(health());
    }
    let websocket = is_websocket_upgrade(&req);
    inc(if websocket {
        &shared.metrics.requests_ws
    } else {
        &shared.metrics.requests_web
    });

    let started = Instant::now();
    let found = find_route(&shared, &req);
    shared
        .metrics
        .find_target_for_req
        .observe(started.elapsed());
    let (route, depth) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(error(&shared, &req, StatusCode::NOT_FOUND, websocket).await),
        Err(e) => {
            tracing::info!(path = %req.uri().path(), "400 refused path: {e}");
            return Ok(error(&shared, &req, StatusCode::BAD_REQUEST, websocket).await);
        }
    };
    tracing::debug!(
        "PROXY {} {} to {}",
        if websocket { "WS" } else { "WEB" },
        req.uri().path(),
        route.key
    );

    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let client_version = req.version();
    let keep_alive = req.version() == Version::HTTP_11
        && !req.headers().get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("close"))
        });
    let client_host = req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let error_path = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let activity = Activity::new(route.clone(), shared.metrics.clone());

    let upstream_req = match build_request(
        &shared,
        &conn,
        req,
        &route,
        depth,
        websocket,
        client_host.clone(),
        &activity,
    ) {
        Some(r) => r,
        None => {
            shared.metrics.proxy_status(500);
            return Ok(shared
                .errors
                .respond(
                    &shared.upstream,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &error_path,
                    websocket,
                )
                .await);
        }
    };

    // An upgraded connection is not reused: websockets go through hyper's pool.
    let sent = shared.upstream.send_to(&route, upstream_req, !websocket);
    let opts = &shared.options;
    let result = if websocket {
        sent.await
    } else {
        tokio::select! {
            r = sent => r,
            () = sleep_or_never(opts.proxy_timeout) => {
                tracing::error!("503 {} {} proxy timeout", route.key, error_path);
                return Ok(error_for(&shared, &error_path, StatusCode::SERVICE_UNAVAILABLE, false).await);
            }
            () = sleep_or_never(opts.timeout) => return Err(Dropped),
        }
    };
    let (mut resp, lease) = match result {
        Ok(sent) => sent,
        Err(e) => {
            tracing::error!(
                "503 {error_path} -> {}: {}",
                target_display(&route),
                error_chain(&*e)
            );
            return Ok(error_for(
                &shared,
                &error_path,
                StatusCode::SERVICE_UNAVAILABLE,
                websocket,
            )
            .await);
        }
    };
    let status = resp.status();
    shared.metrics.proxy_status(status.as_u16());

    if let Some(client_upgrade) = client_upgrade {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                let (client, upstream) = match tokio::join!(client_upgrade, upstream_upgrade) {
                    (Ok(c), Ok(u)) => (c, u),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::debug!(error = %e, "websocket upgrade failed");
                        return;
                    }
                };
                let touch = move || activity.touch();
                if let Err(e) = http_forward::splice::splice(
                    TokioIo::new(client),
                    TokioIo::new(upstream),
                    touch,
                    WEBSOCKET_LINGER,
                )
                .await
                {
                    tracing::debug!(error = %e, "websocket closed with an error");
                }
            });
            let (parts, _) = resp.into_parts();
            return Ok(Response::from_parts(parts, ProxyBody::empty()));
        }
        // The target answered the upgrade with plain HTTP: relay it, then close.
        let (mut parts, body) = resp.into_parts();
        remove_hop_by_hop(&mut parts.headers, false);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(Response::from_parts(parts, ProxyBody::Stream { body }));
    }

    let (mut parts, body) = resp.into_parts();
    parts.version = client_version;
    remove_hop_by_hop(&mut parts.headers, false);
    if opts.auto_rewrite || opts.protocol_rewrite.is_some() {
        rewrite_location(
            &shared,
            &mut parts.headers,
            status,
            &route,
            client_host.as_ref(),
        );
    }
    if keep_alive {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        parts
            .headers
            .insert("keep-alive", opts.keep_alive_header.clone());
    }
    let tap = ResponseActivity {
        activity: (status.as_u16() < 300).then_some(activity),
        lease,
    };
    Ok(Response::from_parts(
        parts,
        ProxyBody::Upstream {
            body: Tapped::new(body, tap),
        },
    ))
}

/// The route of a request and the number of path segments its key covers; `Err` for a path
/// that could be read two ways.
fn find_route(
    shared: &Shared,
    req: &Request<Incoming>,
) -> Result<Option<(Arc<Route>, usize)>, http_forward::path::PathError> {
    let segments = Segments::parse(req.uri().path())?;
    if !shared.options.host_routing {
        return Ok(shared.routes.lookup(None, segments.iter()));
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(http::uri::Authority::as_str))
        .map(host_name);
    Ok(match host {
        Some(host) => shared.routes.lookup(Some(&host), segments.iter()),
        // Without a Host header only the default route can apply.
        None => shared.routes.lookup(None, std::iter::empty()),
    })
}

#[allow(
    clippy::too_many_arguments,
    reason = "the pieces of one request, computed once by the caller"
)]
fn build_request(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
    route: &Route,
    depth: usize,
    websocket: bool,
    client_host: Option<HeaderValue>,
    activity: &Activity,
) -> Option<Request<crate::upstream::UpstreamBody>> {
    let opts = &shared.options;
    let target = &route.target;
    let (mut parts, body) = req.into_parts();
    let raw_path = parts.uri.path();
    let forwarded_path = if opts.include_prefix {
        raw_path
    } else {
        &raw_path[raw_prefix_len(raw_path, depth)..]
    };
    let (target_path, target_query) = if opts.prepend_path {
        (&*target.path, target.query.as_deref())
    } else {
        ("", None)
    };
    let path_and_query = join(target_path, target_query, forwarded_path, parts.uri.query());
    parts.uri = Uri::builder()
        .scheme(target.scheme.clone())
        .authority(target.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .ok()?;
    parts.version = Version::HTTP_11;

    let headers = &mut parts.headers;
    remove_hop_by_hop(headers, websocket);
    if let Some(host) = client_host {
        headers.insert(header::HOST, host);
    }
    if opts.x_forward {
        let proto = match (websocket, conn.tls) {
            (false, false) => "http",
            (false, true) => "https",
            (true, false) => "ws",
            (true, true) => "wss",
        };
        Forwarded {
            client_ip: conn.peer.map(|p| p.ip().to_canonical()),
            proto,
            tls: conn.tls,
            set_host: !websocket,
        }
        .apply(headers);
    }
    for (name, value) in &opts.custom_headers {
        headers.insert(name.clone(), value.clone());
    }
    if opts.change_origin {
        let host = match &target.transport {
            Transport::Tcp => HeaderValue::from_str(target.authority.as_str()).ok()?,
            Transport::Unix(_) => HeaderValue::from_static("localhost"),
        };
        headers.insert(header::HOST, host);
    }
    if (parts.method == Method::DELETE || parts.method == Method::OPTIONS)
        && body.is_end_stream()
        && !headers.contains_key(header::CONTENT_LENGTH)
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    let body = if websocket {
        Either::Right(Empty::new())
    } else {
        Either::Left(Tapped::new(body, RequestActivity(activity.clone())))
    };
    Some(Request::from_parts(parts, body))
}

fn rewrite_location(
    shared: &Shared,
    headers: &mut http::HeaderMap,
    status: StatusCode,
    route: &Route,
    client_host: Option<&HeaderValue>,
) {
    if ![201, 301, 302, 307, 308].contains(&status.as_u16()) {
        return;
    }
    let Some(location) = headers.get(LOCATION).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let Ok(url) = url::Url::parse(location) else {
        return;
    };
    let Some(host) = url.host_str() else { return };
    let port = url.port_or_known_default().unwrap_or(80);
    if format!("{host}:{port}") != route.target.authority.as_str() {
        return;
    }
    let mut url = url;
    let opts = &shared.options;
    if opts.auto_rewrite
        && let Some(client_host) = client_host.and_then(|h| h.to_str().ok())
    {
        let name = client_host.rsplit_once(':').map_or(client_host, |(h, _)| h);
        let port = http_forward::headers::host_port(client_host).and_then(|p| p.parse().ok());
        if url.set_host(Some(name)).is_err() || url.set_port(port).is_err() {
            return;
        }
    }
    if let Some(scheme) = &opts.protocol_rewrite {
        let _ = url.set_scheme(scheme);
    }
    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
        headers.insert(LOCATION, v);
    }
}

async fn error(
    shared: &Shared,
    req: &Request<Incoming>,
    code: StatusCode,
    websocket: bool,
) -> Response<ProxyBody> {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    error_for(shared, path, code, websocket).await
}

async fn error_for(
    shared: &Shared,
    path: &str,
    code: StatusCode,
    websocket: bool,
) -> Response<ProxyBody> {
    shared.metrics.proxy_status(code.as_u16());
    shared
        .errors
        .respond(&shared.upstream, code, path, websocket)
        .await
}

fn health() -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(&b"{\"status\": \"OK\"}"[..]));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

fn target_display(route: &Route) -> String {
    match &route.target.transport {
        Transport::Tcp => format!(
            "{}://{}{}",
            route.target.scheme, route.target.authority, route.target.path
        ),
        Transport::Unix(p) => format!("unix:{}", p.display()),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
