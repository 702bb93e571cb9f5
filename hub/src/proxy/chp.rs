//! REST client for the configurable-http-proxy API (`/api/routes`), spoken by `chp-proxy` and by
//! the real configurable-http-proxy alike.
//!
//! Mirrors JupyterHub's `ConfigurableHTTPProxy` client (`jupyterhub/proxy.py`): routespecs map to
//! API paths and back exactly as there (`_routespec_to_chp_path`, `_routespec_from_chp_path`),
//! every call carries `Authorization: token <t>`, at most `concurrency` calls run at once, and
//! connection errors and 5xx answers are retried with exponential backoff for `retry_timeout`.
//! On top of that, routespecs that the proxy would mangle or choke on (dot segments, broken
//! percent-escapes, control characters) are refused before anything is sent.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use hub_api::chp::{AUTH_SCHEME, RouteData};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use reqwest::{Method, StatusCode, header::HeaderValue};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::Url;

use super::ProxyError;

/// Characters Python's `quote(s, safe='@/~')` leaves alone: letters, digits, `_.-~` and `@/`.
const ROUTE_KEY_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b'@')
    .remove(b'/');

/// First wait between two attempts; doubled after each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How much of an error body goes into a [`ProxyError::Status`].
const ERROR_BODY_LIMIT: usize = 300;

// === routespecs ===

/// Checks a routespec against the routing mode and adds the trailing slash (JupyterHub's
/// `Proxy.validate_routespec`).
///
/// `/` is always accepted (the hub's catch-all route). With host routing every other routespec
/// must start with a host (`host.example/path/`); without it, with `/`.
pub fn validate_routespec(routespec: &str, host_routing: bool) -> Result<String, ProxyError> {
    let invalid = |reason| ProxyError::InvalidRoutespec {
        routespec: routespec.to_owned(),
        reason,
    };
    if routespec == "/" {
        return Ok(routespec.to_owned());
    }
    if routespec.is_empty() {
        return Err(invalid("it is empty"));
    }
    let host_route = !routespec.starts_with('/');
    if host_route && !host_routing {
        return Err(invalid(
            "a route without a leading '/' is a host route, and host routing is off",
        ));
    }
    if host_routing && !host_route {
        return Err(invalid(
            "host routing is on, so a route must start with a host name",
        ));
    }
    let mut spec = routespec.to_owned();
    if !spec.ends_with('/') {
        spec.push('/');
    }
    Ok(spec)
}

/// The API path for a routespec: `/user/alice/` → `/user/alice`, `/` → `/`, and with host
/// routing `host.example/path/` → `/host.example/path`.
///
/// Routespecs are URL-escaped already (`/has%20space/`); existing `%XX` escapes are kept, and any
/// character a URL path cannot carry raw (space, `?`, `#`, non-ASCII...) is escaped as UTF-8.
/// Refused, because the proxy would mis-store them or never answer: broken or non-UTF-8
/// escapes, control characters, and `.`/`..` segments (which URL normalisation would resolve).
pub fn routespec_to_api_path(routespec: &str, host_routing: bool) -> Result<String, ProxyError> {
    let invalid = |reason| ProxyError::InvalidRoutespec {
        routespec: routespec.to_owned(),
        reason,
    };
    let spec = validate_routespec(routespec, host_routing)?;
    let mut path = if spec.starts_with('/') {
        spec
    } else {
        format!("/{spec}")
    };
    // JupyterHub strips every trailing slash (`path.rstrip('/')`), keeping the root as `/`.
    if path != "/" {
        path.truncate(path.trim_end_matches('/').len());
        if path.is_empty() {
            path.push('/');
        }
    }

    let mut encoded = String::with_capacity(path.len());
    let mut decoded = Vec::with_capacity(path.len());
    let mut rest = path.as_str();
    while let Some(c) = rest.chars().next() {
        if c == '%' {
            let byte = rest
                .get(1..3)
                .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| invalid("'%' must start a two-digit hex escape"))?;
            encoded.push_str(&rest[..3]);
            decoded.push(byte);
            rest = &rest[3..];
            continue;
        }
        let len = c.len_utf8();
        let raw = &rest[..len];
        encoded.extend(utf8_percent_encode(raw, ROUTE_KEY_SAFE));
        decoded.extend_from_slice(raw.as_bytes());
        rest = &rest[len..];
    }

    let decoded =
        String::from_utf8(decoded).map_err(|_| invalid("its percent-escapes are not UTF-8"))?;
    if decoded.chars().any(char::is_control) {
        return Err(invalid("it contains control characters"));
    }
    if decoded
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(invalid("it contains a '.' or '..' segment"));
    }
    Ok(encoded)
}

/// The routespec for a key of the proxy's route table (keys come back percent-decoded and
/// without the trailing slash): re-escape with `quote(key, safe='@/~')`, drop the leading `/`
/// with host routing, add the trailing `/` (JupyterHub's `_routespec_from_chp_path`).
pub fn routespec_from_api_key(key: &str, host_routing: bool) -> String {
    let quoted = utf8_percent_encode(key, ROUTE_KEY_SAFE).to_string();
    let mut spec = if host_routing {
        quoted.trim_start_matches('/').to_owned()
    } else {
        quoted
    };
    if !spec.ends_with('/') {
        spec.push('/');
    }
    spec
}

/// The form in which a routespec comes back from the proxy's listing, so that routespecs
/// written differently (`%c3%bc` vs `%C3%BC`, raw `ü`, a missing trailing slash) compare equal.
pub fn canonical_routespec(routespec: &str, host_routing: bool) -> Result<String, ProxyError> {
    let path = routespec_to_api_path(routespec, host_routing)?;
    // Cannot fail: the path was just checked to decode to UTF-8.
    let key = percent_decode_str(&path).decode_utf8_lossy();
    Ok(routespec_from_api_key(&key, host_routing))
}

// === configuration ===

/// TLS settings toward an `https://` proxy API (JupyterHub's `internal_ssl`).
#[derive(Debug, Clone, Default)]
pub struct ApiTls {
    /// PEM bundle of the CAs the API's certificate must chain to; when set, only these are
    /// trusted. Without it the system's roots are used.
    pub ca: Option<PathBuf>,
    /// PEM client certificate (chain) presented to the API, together with `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
}

/// Options of a [`ChpClient`].
#[derive(Clone)]
pub struct ChpClientConfig {
    /// The API's base URL: `http://127.0.0.1:8001` (default), `https://...`, or
    /// `http+unix://%2Fpath%2Fto%2Fapi.sock` for a unix socket.
    pub api_url: Url,
    /// The token sent as `Authorization: token <t>` (`CONFIGPROXY_AUTH_TOKEN`).
    pub auth_token: String,
    /// The proxy routes on the Host header (`--host-routing`, JupyterHub's `subdomain_host`).
    pub host_routing: bool,
    /// Most API calls in flight at once (JupyterHub's `concurrency`, 10).
    pub concurrency: usize,
    /// How long connection errors and 5xx answers are retried before giving up (30 s).
    pub retry_timeout: Duration,
    /// Limit for one attempt, from connecting to the end of the body (20 s).
    pub request_timeout: Duration,
    /// Limit for establishing one connection (5 s).
    pub connect_timeout: Duration,
    /// TLS toward an `https://` API.
    pub tls: ApiTls,
}

impl ChpClientConfig {
    /// Defaults for everything but the URL and the token.
    pub fn new(api_url: Url, auth_token: impl Into<String>) -> Self {
        ChpClientConfig {
            api_url,
            auth_token: auth_token.into(),
            host_routing: false,
            concurrency: 10,
            retry_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            tls: ApiTls::default(),
        }
    }

    /// Where the API listens, derived from [`Self::api_url`].
    pub fn api_address(&self) -> Result<ApiAddress, ProxyError> {
        let url = &self.api_url;
        let bad = |reason: &str| ProxyError::Config(format!("proxy API URL {url}: {reason}"));
        match url.scheme() {
            "http" | "https" => {
                let host = url.host_str().ok_or_else(|| bad("it has no host"))?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let port = url
                    .port_or_known_default()
                    .ok_or_else(|| bad("it has no port"))?;
                Ok(ApiAddress::Tcp {
                    host: host.to_owned(),
                    port,
                })
            }
            "http+unix" | "https+unix" => {
                let host = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| bad("the socket path must be the URL-escaped host"))?;
                let path = percent_decode_str(host).decode_utf8_lossy().into_owned();
                Ok(ApiAddress::Unix(PathBuf::from(path)))
            }
            other => Err(bad(&format!("unsupported scheme {other:?}"))),
        }
    }
}

impl fmt::Debug for ChpClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChpClientConfig")
            .field("api_url", &self.api_url.as_str())
            .field("auth_token", &"<redacted>")
            .field("host_routing", &self.host_routing)
            .field("concurrency", &self.concurrency)
            .field("retry_timeout", &self.retry_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Where the proxy API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAddress {
    /// A TCP address (`--api-ip`, `--api-port`); IPv6 hosts without brackets.
    Tcp {
        /// Host name or IP.
        host: String,
        /// Port.
        port: u16,
    },
    /// A unix socket (`--api-socket`).
    Unix(PathBuf),
}

// === routes ===

/// One route as read from the proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyRoute {
    /// JupyterHub's form of the key: URL-escaped, trailing `/`, no leading `/` with host routing.
    pub routespec: String,
    /// Where the proxy forwards the route's requests (also in `data.target`).
    pub target: String,
    /// The data stored with the route, as the proxy returned it.
    pub data: RouteData,
    /// Whether the route carries the `jupyterhub` marker, i.e. belongs to the hub.
    pub jupyterhub: bool,
    /// `data.last_activity` parsed; `None` if absent or unparseable.
    pub last_activity: Option<DateTime<Utc>>,
}

/// Parses the proxy's `last_activity` (`2026-11-23T10:51:16.658Z`); a time without zone is UTC.
pub fn parse_last_activity(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// Reads one route's data leniently: known keys of an unexpected type are kept in `extra`
/// rather than failing the whole listing (other clients may write anything).
fn route_data_from_json(object: Map<String, Value>) -> RouteData {
    let value = Value::Object(object);
    if let Ok(data) = serde_json::from_value::<RouteData>(value.clone()) {
        return data;
    }
    let Value::Object(object) = value else {
        return RouteData::default();
    };
    let mut data = RouteData::default();
    for (key, value) in object {
        match (key.as_str(), value) {
            ("target", Value::String(s)) => data.target = s,
            ("jupyterhub", Value::Bool(b)) => data.jupyterhub = Some(b),
            ("user", Value::String(s)) => data.user = Some(s),
            ("server_name", Value::String(s)) => data.server_name = Some(s),
            ("service", Value::String(s)) => data.service = Some(s),
            ("hub", Value::Bool(b)) => data.hub = Some(b),
            ("last_activity", Value::String(s)) => data.last_activity = Some(s),
            (_, value) => {
                data.extra.insert(key, value);
            }
        }
    }
    data
}

// === client ===

/// Client for the proxy's REST API. Cloning is cheap; clones share connections and the
/// concurrency limit.
#[derive(Clone)]
pub struct ChpClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: ChpClientConfig,
    http: reqwest::Client,
    /// `<scheme>://<authority><path prefix>` without trailing slash; `/api/routes...` is appended.
    base: String,
    auth: HeaderValue,
    permits: Semaphore,
}

impl fmt::Debug for ChpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChpClient")
            .field("api_url", &self.inner.config.api_url.as_str())
            .field("host_routing", &self.inner.config.host_routing)
            .finish_non_exhaustive()
    }
}

/// A response read to the end.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

/// The outcome of one attempt that should be retried if time allows.
enum Transient {
    Transport(reqwest::Error),
    Status(StatusCode, String),
}

impl ChpClient {
    /// Builds the client; fails on an unusable URL, token or TLS file.
    pub fn new(config: ChpClientConfig) -> Result<Self, ProxyError> {
        let address = config.api_address()?;
        let mut auth = HeaderValue::from_str(&format!("{AUTH_SCHEME} {}", config.auth_token))
            .map_err(|_| {
                ProxyError::Config(
                    "the proxy API token contains characters not allowed in an HTTP header".into(),
                )
            })?;
        auth.set_sensitive(true);

        let mut builder = reqwest::Client::builder()
            // The API is local infrastructure: never send it through an HTTP(S)_PROXY.
            .no_proxy()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jupyterhub-rs-hub/", env!("CARGO_PKG_VERSION")));
        let base = match &address {
            ApiAddress::Tcp { .. } => config.api_url.as_str().trim_end_matches('/').to_owned(),
            ApiAddress::Unix(path) => {
                builder = builder.unix_socket(path.clone());
                let scheme = if config.api_url.scheme().starts_with("https") {
                    "https"
                } else {
                    "http"
                };
                let prefix = config.api_url.path().trim_end_matches('/');
                format!("{scheme}://localhost{prefix}")
            }
        };
        builder = apply_tls(builder, &config.tls)?;
        let http = builder
            .build()
            .map_err(|e| ProxyError::Config(format!("cannot build the proxy API client: {e}")))?;
        let permits = Semaphore::new(config.concurrency.max(1));
        Ok(ChpClient {
            inner: Arc::new(Inner {
                config,
                http,
                base,
                auth,
                permits,
            }),
        })
    }

    /// The options this client was built with.
    pub fn config(&self) -> &ChpClientConfig {
        &self.inner.config
    }

    /// Whether routespecs are host routes.
    pub fn host_routing(&self) -> bool {
        self.inner.config.host_routing
    }

    /// Adds or replaces the route for `routespec` (`POST /api/routes<path>` with
    /// `{…data, "target": target, "jupyterhub": true}`). The proxy sets `last_activity` to now.
    pub async fn add_route(
        &self,
        routespec: &str,
        target: &str,
        data: &RouteData,
    ) -> Result<(), ProxyError> {
        let path = routespec_to_api_path(routespec, self.host_routing())?;
        let mut body = data.clone();
        body.target = target.to_owned();
        body.jupyterhub = Some(true);
        // Only the proxy may set it; CHP overwrites it anyway.
        body.last_activity = None;
        let body = serde_json::to_vec(&body).map_err(|e| {
            ProxyError::Config(format!("route data for {routespec} is not JSON: {e}"))
        })?;
        let answer = self.call(Method::POST, &path, Some(body)).await?;
        if answer.status.is_success() {
            tracing::debug!(route.spec = %routespec, route.target = %target, "route added");
            Ok(())
        } else {
            Err(self.status_error(Method::POST, &path, &answer))
        }
    }

    /// Deletes the route for `routespec`. A route that does not exist (404) is not an error.
    pub async fn delete_route(&self, routespec: &str) -> Result<(), ProxyError> {
        let path = routespec_to_api_path(routespec, self.host_routing())?;
        let answer = self.call(Method::DELETE, &path, None).await?;
        match answer.status {
            s if s.is_success() => {
                tracing::debug!(route.spec = %routespec, "route deleted");
                Ok(())
            }
            StatusCode::NOT_FOUND => {
                tracing::debug!(route.spec = %routespec, "route already deleted");
                Ok(())
            }
            _ => Err(self.status_error(Method::DELETE, &path, &answer)),
        }
    }

    /// The hub's routes (those with the `jupyterhub` marker), by routespec. Routes of other
    /// clients are left out, as JupyterHub does.
    pub async fn get_all_routes(&self) -> Result<BTreeMap<String, ProxyRoute>, ProxyError> {
        let mut routes = self.get_every_route().await?;
        routes.retain(|_, route| route.jupyterhub);
        Ok(routes)
    }

    /// Every route in the proxy, the hub's and foreign ones, by routespec.
    pub async fn get_every_route(&self) -> Result<BTreeMap<String, ProxyRoute>, ProxyError> {
        let answer = self.call(Method::GET, "", None).await?;
        if answer.status != StatusCode::OK {
            return Err(self.status_error(Method::GET, "", &answer));
        }
        let url = self.url("");
        let table: Map<String, Value> =
            serde_json::from_slice(&answer.body).map_err(|e| ProxyError::BadResponse {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let host_routing = self.host_routing();
        let mut routes = BTreeMap::new();
        for (key, value) in table {
            let Value::Object(object) = value else {
                tracing::warn!(route.key = %key, "ignoring proxy route whose data is not an object");
                continue;
            };
            // JupyterHub tests for the key's presence, whatever its value.
            let jupyterhub = object.contains_key("jupyterhub");
            let data = route_data_from_json(object);
            let routespec = routespec_from_api_key(&key, host_routing);
            let last_activity = data.last_activity.as_deref().and_then(parse_last_activity);
            routes.insert(
                routespec.clone(),
                ProxyRoute {
                    routespec,
                    target: data.target.clone(),
                    data,
                    jupyterhub,
                    last_activity,
                },
            );
        }
        Ok(routes)
    }

    /// The hub's route for `routespec`, if the proxy has one.
    pub async fn get_route(&self, routespec: &str) -> Result<Option<ProxyRoute>, ProxyError> {
        let spec = canonical_routespec(routespec, self.host_routing())?;
        Ok(self.get_all_routes().await?.remove(&spec))
    }

    /// One `GET /api/routes` without retries, for readiness checks: `Ok` on 200, the status
    /// error otherwise (403: the proxy does not accept our token).
    pub async fn ping(&self, timeout: Duration) -> Result<(), ProxyError> {
        let url = self.url("");
        let started = Instant::now();
        let result = self
            .inner
            .http
            .get(&url)
            .header(reqwest::header::AUTHORIZATION, self.inner.auth.clone())
            .timeout(timeout)
            .send()
            .await;
        match result {
            Ok(response) if response.status() == StatusCode::OK => Ok(()),
            Ok(response) => Err(ProxyError::Status {
                method: "GET".into(),
                url,
                status: response.status().as_u16(),
                body: String::new(),
            }),
            Err(source) => Err(ProxyError::Unreachable {
                method: "GET".into(),
                url,
                attempts: 1,
                elapsed: started.elapsed(),
                source,
            }),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.is_empty() {
            format!("{}/api/routes", self.inner.base)
        } else {
            format!("{}/api/routes{path}", self.inner.base)
        }
    }

    fn status_error(&self, method: Method, path: &str, answer: &Answer) -> ProxyError {
        ProxyError::Status {
            method: method.to_string(),
            url: self.url(path),
            status: answer.status.as_u16(),
            body: body_excerpt(&answer.body),
        }
    }

    /// Sends one request, retrying transport errors and 5xx answers with exponential backoff
    /// until `retry_timeout` has passed. Each attempt holds one concurrency permit; waits
    /// between attempts hold none.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ProxyError> {
        let url = self.url(path);
        let started = Instant::now();
        let deadline = started + self.inner.config.retry_timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let failure = match self.attempt(&method, &url, body.as_ref()).await {
                Ok(answer) if answer.status.is_server_error() => {
                    Transient::Status(answer.status, body_excerpt(&answer.body))
                }
                Ok(answer) => return Ok(answer),
                Err(e) if e.is_builder() => {
                    return Err(ProxyError::Config(format!("request to {url}: {e}")));
                }
                Err(e) => Transient::Transport(e),
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(match failure {
                    Transient::Transport(source) => ProxyError::Unreachable {
                        method: method.to_string(),
                        url,
                        attempts,
                        elapsed: now - started,
                        source,
                    },
                    Transient::Status(status, body) => ProxyError::Status {
                        method: method.to_string(),
                        url,
                        status: status.as_u16(),
                        body,
                    },
                });
            }
            // Jitter spreads the retries of many concurrent calls after a proxy restart; the
            // last attempt is made when the time is up.
            let wait = backoff
                .mul_f64(rand::random_range(0.5..=1.0))
                .min(deadline - now);
            let problem = match &failure {
                Transient::Transport(e) => format!("failed ({e})"),
                Transient::Status(status, _) => format!("answered {status}"),
            };
            // The first retry is worth a warning; the rest of a long outage only at debug.
            if attempts == 1 {
                tracing::warn!(
                    "proxy API {method} {url} {problem}; retrying for up to {:?}",
                    deadline - now
                );
            } else {
                tracing::debug!(
                    "proxy API {method} {url} {problem}; attempt {attempts}, retrying in {wait:?}"
                );
            }
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        body: Option<&Vec<u8>>,
    ) -> Result<Answer, reqwest::Error> {
        // The semaphore is never closed, so acquiring only fails if it were; treat as no limit.
        let _permit = self.inner.permits.acquire().await.ok();
        let mut request = self
            .inner
            .http
            .request(method.clone(), url)
            .header(reqwest::header::AUTHORIZATION, self.inner.auth.clone());
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.bytes().await?.to_vec();
        Ok(Answer { status, body })
    }
}

fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(ERROR_BODY_LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn apply_tls(
    mut builder: reqwest::ClientBuilder,
    tls: &ApiTls,
) -> Result<reqwest::ClientBuilder, ProxyError> {
    let read = |path: &PathBuf, what: &str| {
        std::fs::read(path).map_err(|source| ProxyError::Io {
            context: format!("reading the proxy API {what} {}", path.display()),
            source,
        })
    };
    if let Some(ca) = &tls.ca {
        let pem = read(ca, "CA bundle")?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ProxyError::Config(format!("proxy API CA bundle {}: {e}", ca.display()))
        })?;
        builder = builder.tls_certs_only(certs);
    }
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let mut pem = read(cert, "client certificate")?;
            pem.push(b'\n');
            pem.extend(read(key, "client key")?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                ProxyError::Config(format!(
                    "proxy API client certificate {} / key {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => {
            return Err(ProxyError::Config(
                "the proxy API client certificate and key must be given together".into(),
            ));
        }
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(spec: &str) -> String {
        routespec_to_api_path(spec, false).unwrap()
    }

    #[test]
    fn api_paths_follow_jupyterhub() {
        assert_eq!(path("/"), "/");
        assert_eq!(path("/user/alice/"), "/user/alice");
        assert_eq!(path("/user/alice"), "/user/alice");
        assert_eq!(path("/missing-trailing/slash"), "/missing-trailing/slash");
        assert_eq!(path("/has%20space/foo/"), "/has%20space/foo");
        assert_eq!(path("/has/@/"), "/has/@");
        assert_eq!(path("/a~b/"), "/a~b");
        assert_eq!(path("/a//"), "/a");
        assert_eq!(path("//"), "/");
        // Raw characters a URL cannot carry are escaped; existing escapes are kept.
        assert_eq!(path("/has space/"), "/has%20space");
        assert_eq!(
            path("/user/üñîçø∂é/"),
            "/user/%C3%BC%C3%B1%C3%AE%C3%A7%C3%B8%E2%88%82%C3%A9"
        );
        assert_eq!(path("/q?x#y/"), "/q%3Fx%23y");
        assert_eq!(path("/user/a%2bb/"), "/user/a%2bb");
    }

    #[test]
    fn host_routes() {
        assert_eq!(
            routespec_to_api_path("host.name/path/", true).unwrap(),
            "/host.name/path"
        );
        assert_eq!(routespec_to_api_path("/", true).unwrap(), "/");
        assert!(routespec_to_api_path("/user/a/", true).is_err());
        assert!(routespec_to_api_path("host.name/path/", false).is_err());
        assert_eq!(
            routespec_from_api_key("/host.name/path", true),
            "host.name/path/"
        );
        assert_eq!(routespec_from_api_key("/", true), "/");
    }

    #[test]
    fn refused_routespecs() {
        for spec in [
            "",
            "/a%/",
            "/a%2/",
            "/a%zz/",
            "/a%ff/",
            "/user/../x/",
            "/user/%2e%2E/x/",
            "/./",
            "/a\u{1}b/",
            "/a%0Ab/",
        ] {
            assert!(routespec_to_api_path(spec, false).is_err(), "{spec:?}");
        }
    }

    #[test]
    fn keys_are_requoted() {
        assert_eq!(routespec_from_api_key("/", false), "/");
        assert_eq!(routespec_from_api_key("/user/alice", false), "/user/alice/");
        assert_eq!(
            routespec_from_api_key("/has space/foo", false),
            "/has%20space/foo/"
        );
        assert_eq!(routespec_from_api_key("/has/@", false), "/has/@/");
        assert_eq!(routespec_from_api_key("/a~b_c.d-e", false), "/a~b_c.d-e/");
        assert_eq!(routespec_from_api_key("/a+b:c", false), "/a%2Bb%3Ac/");
        assert_eq!(
            routespec_from_api_key("/üñîçø∂é", false),
            "/%C3%BC%C3%B1%C3%AE%C3%A7%C3%B8%E2%88%82%C3%A9/"
        );
    }

    #[test]
    fn canonical_forms_agree() {
        let c = |s| canonical_routespec(s, false).unwrap();
        assert_eq!(c("/user/a%2bb"), "/user/a%2Bb/");
        assert_eq!(
            c("/user/üñîçø∂é/"),
            c("/user/%C3%BC%C3%B1%C3%AE%C3%A7%C3%B8%E2%88%82%C3%A9/")
        );
        assert_eq!(c("/has space/"), "/has%20space/");
        assert_eq!(c("/"), "/");
    }

    #[test]
    fn last_activity_formats() {
        let t = parse_last_activity("2026-11-23T10:51:16.658Z").unwrap();
        assert_eq!(t.timestamp_millis(), 1_795_431_076_658);
        assert_eq!(parse_last_activity("2026-11-23T10:51:16.658"), Some(t));
        assert_eq!(
            parse_last_activity("2026-11-23T11:51:16.658+01:00"),
            Some(t)
        );
        assert_eq!(parse_last_activity("yesterday"), None);
    }

    #[test]
    fn lenient_route_data() {
        let object = serde_json::json!({
            "target": "http://x", "jupyterhub": true, "user": 5, "server_name": "", "k": [1]
        });
        let Value::Object(object) = object else {
            unreachable!()
        };
        let data = route_data_from_json(object);
        assert_eq!(data.target, "http://x");
        assert_eq!(data.jupyterhub, Some(true));
        assert_eq!(data.user, None);
        assert_eq!(data.extra["user"], serde_json::json!(5));
        assert_eq!(data.extra["k"], serde_json::json!([1]));
    }

    #[test]
    fn api_addresses() {
        let addr = |u: &str| {
            ChpClientConfig::new(Url::parse(u).unwrap(), "t")
                .api_address()
                .unwrap()
        };
        assert_eq!(
            addr("http://127.0.0.1:8001"),
            ApiAddress::Tcp {
                host: "127.0.0.1".into(),
                port: 8001
            }
        );
        assert_eq!(
            addr("http://[::1]:8001/"),
            ApiAddress::Tcp {
                host: "::1".into(),
                port: 8001
            }
        );
        assert_eq!(
            addr("http+unix://%2Ftmp%2Fapi.sock"),
            ApiAddress::Unix("/tmp/api.sock".into())
        );
    }

    #[test]
    fn debug_redacts_token() {
        let config = ChpClientConfig::new(Url::parse("http://127.0.0.1:1").unwrap(), "s3cret");
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
