//! `chp-proxy`: a drop-in replacement for configurable-http-proxy (CHP) 5.x.
//!
//! - [`cli`]: CHP's flags, validated into a [`cli::Config`].
//! - [`routes`] and [`trie`]: the route table, longest-prefix match by path segment.
//! - [`forward`]: the public server; [`upstream`]: pooled connections to targets;
//!   [`error_pages`]: 400/404/500/503 answers; [`activity`]: `last_activity` from traffic.
//! - [`api`]: the REST API; [`metrics`]: Prometheus metrics with CHP's names.
//! - [`run`]: binds the listeners and serves until shutdown.
//!
//! Where this proxy deliberately differs from CHP, the module that does it says so; the list
//! is in `docs/reference/chp-proxy.md`.

pub mod activity;
pub mod api;
pub mod body;
pub mod cli;
pub mod error_pages;
pub mod forward;
pub mod metrics;
pub mod routes;
pub mod time;
pub mod trie;
pub mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use daemon_support::batched::Batcher;
use daemon_support::listen::{ConnInfo, HttpOptions, Listener, serve};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::cli::{Bind, Config};
use crate::error_pages::ErrorPages;
use crate::metrics::Metrics;
use crate::routes::{Route, RouteTable, Target};
use crate::upstream::Upstream;

/// Options of the forwarding path, from the command line.
#[derive(Debug, Clone)]
pub struct ForwardOptions {
    pub x_forward: bool,
    pub prepend_path: bool,
    pub include_prefix: bool,
    pub auto_rewrite: bool,
    pub change_origin: bool,
    pub protocol_rewrite: Option<String>,
    pub custom_headers: Vec<(HeaderName, HeaderValue)>,
    pub host_routing: bool,
    pub timeout: Option<Duration>,
    pub proxy_timeout: Option<Duration>,
    /// `Keep-Alive: timeout=N` sent to HTTP/1.1 clients.
    pub keep_alive_header: HeaderValue,
}

/// State shared by every connection of every listener.
#[derive(Debug)]
pub struct Shared {
    pub routes: RouteTable,
    pub metrics: Arc<Metrics>,
    pub upstream: Upstream,
    pub errors: ErrorPages,
    pub options: ForwardOptions,
    pub auth_token: Option<String>,
    /// Sends the writes of the public port's and the targets' TCP connections once per round;
    /// `None` without io_uring.
    pub batcher: Option<Batcher>,
}

impl Shared {
    /// Shared state for `config`, with the default route if one is configured.
    ///
    /// # Errors
    /// When the client TLS files cannot be read.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let client_tls = config
            .client_tls
            .build()
            .context("client TLS (--client-ssl-*)")?;
        let secs = config.keep_alive_timeout.as_secs().max(1);
        let batcher = if config.io_uring {
            Batcher::new()
                .inspect_err(|e| {
                    tracing::info!("io_uring unavailable ({e}); writing to each socket directly");
                })
                .ok()
        } else {
            None
        };
        let shared = Self {
            routes: RouteTable::default(),
            metrics: Arc::new(Metrics::default()),
            upstream: Upstream::new(client_tls, batcher.clone()),
            errors: ErrorPages {
                target: config.error_target.clone(),
                dir: config.error_path.clone(),
            },
            options: ForwardOptions {
                x_forward: config.x_forward,
                prepend_path: config.prepend_path,
                include_prefix: config.include_prefix,
                auto_rewrite: config.auto_rewrite,
                change_origin: config.change_origin,
                protocol_rewrite: config.protocol_rewrite.clone(),
                custom_headers: config.custom_headers.clone(),
                host_routing: config.host_routing,
                timeout: config.timeout,
                proxy_timeout: config.proxy_timeout,
                keep_alive_header: HeaderValue::from_str(&format!("timeout={secs}"))
                    .unwrap_or(HeaderValue::from_static("timeout=5")),
            },
            auth_token: config.auth_token.clone(),
            batcher,
        };
        if let Some(default) = &config.default_target {
            let target = Target::parse(default).context("--default-target")?;
            let data = serde_json::json!({ "target": default }).to_string();
            tracing::info!("Adding route / -> {default}");
            shared
                .routes
                .insert(Route::new("/".into(), target, data.into()));
            tracing::info!("Route added / -> {default}");
        }
        Ok(shared)
    }
}

async fn bind(bind: &Bind) -> anyhow::Result<Listener> {
    match bind {
        Bind::Tcp(host, port) => {
            let addr = cli::resolve(host, *port)
                .await
                .with_context(|| format!("resolving {host:?}"))?;
            match Listener::bind_tcp(addr).await {
                Ok(l) => Ok(l),
                // A host without IPv6 cannot bind [::]; all IPv4 interfaces will do.
                Err(_) if host.is_empty() => Ok(Listener::bind_tcp(([0, 0, 0, 0], *port).into())
                    .await
                    .with_context(|| format!("binding port {port}"))?),
                Err(e) => Err(e).with_context(|| format!("binding {addr}")),
            }
        }
        Bind::Unix(path) => {
            Listener::bind_unix(path).with_context(|| format!("binding {}", path.display()))
        }
    }
}

fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// Binds every listener, then serves until `shutdown` resolves; open requests may finish.
///
/// # Errors
/// When TLS files cannot be read or a listener cannot be bound.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let public_tls = config
        .public_tls
        .as_ref()
        .map(daemon_support::tls::ServerTls::build)
        .transpose()
        .context("TLS of the public port (--ssl-key, --ssl-cert)")?;
    let api_tls = config
        .api_tls
        .as_ref()
        .map(daemon_support::tls::ServerTls::build)
        .transpose()
        .context("TLS of the API (--api-ssl-*)")?;
    let shared = Arc::new(Shared::new(&config)?);

    let public = bind(&config.public).await?;
    let api = bind(&config.api).await?;
    if let Bind::Unix(path) = &config.api {
        // The API changes every route: only the proxy's own user may connect, whatever the umask.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private (mode 0600)", path.display()))?;
    }
    let metrics = match &config.metrics {
        Some(b) => Some(bind(b).await?),
        None => None,
    };
    let redirect = match config.redirect {
        Some((from, _)) => Some(bind(&Bind::Tcp(String::new(), from)).await?),
        None => None,
    };

    if shared.auth_token.is_none() {
        tracing::warn!("REST API is not authenticated.");
    }
    let default = config
        .default_target
        .as_deref()
        .unwrap_or("(no default target)");
    tracing::info!(
        "Proxying {}://{} to {default}",
        scheme(public_tls.is_some()),
        public.describe()
    );
    tracing::info!(
        "Proxy API at {}://{}/api/routes",
        scheme(api_tls.is_some()),
        api.describe()
    );
    if let Some(m) = &metrics {
        tracing::info!("Serve metrics at http://{}/metrics", m.describe());
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let public_options = HttpOptions {
        header_timeout: config.keep_alive_timeout,
        batcher: shared.batcher.clone(),
        ..HttpOptions::default()
    };
    let mut tasks = tokio::task::JoinSet::new();
    {
        let shared = shared.clone();
        tasks.spawn(serve(
            public,
            public_tls,
            public_options,
            move |conn: ConnInfo| forward::PublicService {
                shared: shared.clone(),
                conn,
            },
            stopped(),
        ));
    }
    {
        let shared = shared.clone();
        tasks.spawn(serve(
            api,
            api_tls,
            HttpOptions::default(),
            move |_| api::ApiService {
                shared: shared.clone(),
            },
            stopped(),
        ));
    }
    if let Some(listener) = metrics {
        let metrics = shared.metrics.clone();
        tasks.spawn(serve(
            listener,
            None,
            HttpOptions::default(),
            move |_| MetricsService(metrics.clone()),
            stopped(),
        ));
    }
    if let (Some(listener), Some((from, to))) = (redirect, config.redirect) {
        tracing::info!("Added HTTP to HTTPS redirection from port {from} to {to}");
        tasks.spawn(serve(
            listener,
            None,
            HttpOptions::default(),
            move |_| RedirectService(to),
            stopped(),
        ));
    }

    shutdown.await;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

type Simple = Response<Full<Bytes>>;
type SimpleFuture = std::future::Ready<Result<Simple, Infallible>>;

/// `GET /metrics` on the metrics listener.
#[derive(Debug, Clone)]
struct MetricsService(Arc<Metrics>);

impl hyper::service::Service<Request<Incoming>> for MetricsService {
    type Response = Simple;
    type Error = Infallible;
    type Future = SimpleFuture;

    fn call(&self, req: Request<Incoming>) -> SimpleFuture {
        let exact = req
            .uri()
            .path_and_query()
            .map(http::uri::PathAndQuery::as_str)
            == Some("/metrics");
        let resp = if exact {
            let mut r = Response::new(Full::new(Bytes::from(self.0.render())));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        } else {
            status_text(StatusCode::NOT_FOUND, "Not Found")
        };
        std::future::ready(Ok(resp))
    }
}

/// Answers every request with a 301 to the same URL over HTTPS.
#[derive(Debug, Clone, Copy)]
struct RedirectService(u16);

impl hyper::service::Service<Request<Incoming>> for RedirectService {
    type Response = Simple;
    type Error = Infallible;
    type Future = SimpleFuture;

    fn call(&self, req: Request<Incoming>) -> SimpleFuture {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| match h.rfind(']') {
                Some(i) => &h[..=i],
                None => h.rsplit_once(':').map_or(h, |(n, _)| n),
            })
            .filter(|h| !h.is_empty());
        let resp = match host {
            None => status_text(
                StatusCode::BAD_REQUEST,
                "This server redirects to HTTPS and needs a Host header to do so.",
            ),
            Some(host) => {
                let port = if self.0 == 443 {
                    String::new()
                } else {
                    format!(":{}", self.0)
                };
                let path = req
                    .uri()
                    .path_and_query()
                    .map_or("/", http::uri::PathAndQuery::as_str);
                let location = format!("https://{host}{port}{path}");
                match HeaderValue::from_str(&location) {
                    Ok(v) => {
                        let mut r = status_text(StatusCode::MOVED_PERMANENTLY, "");
                        r.headers_mut().insert(http::header::LOCATION, v);
                        r
                    }
                    Err(_) => status_text(StatusCode::BAD_REQUEST, "Invalid Host header"),
                }
            }
        };
        std::future::ready(Ok(resp))
    }
}

fn status_text(status: StatusCode, body: &'static str) -> Simple {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}
