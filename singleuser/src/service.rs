//! One request through the shim: where it goes (the OAuth callback, logout, or the app), who
//! sent it, whether they may, and then the app's answer.
//!
//! ```text
//! path check ─ outside the prefix ─▶ 404 (the prefix without its slash: redirect)
//!     │
//!     ├─ <prefix>oauth_callback ─▶ finish login, set the login cookie
//!     ├─ <prefix>logout ────────▶ clear cookies, go to the hub's logout
//!     ├─ Jupyter's <prefix>api ─▶ the app (public version endpoint, the hub's readiness check)
//!     ▼
//! credential: Authorization header │ ?token= (websockets, or when allowed) │ login cookie
//!     │ none ─▶ browser navigation: redirect to the hub's authorize URL; else 403
//!     ▼
//! cookie only: XSRF / Origin checks (xsrf.rs)
//!     ▼
//! the hub (through the cache): 403 invalid ─▶ as if none │ hub down ─▶ 502
//!     ▼
//! access scopes (access.rs) ─ not granted ─▶ 403 "<kind> <name> is not allowed."
//!     ▼
//! the app (forward.rs)
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::Utc;
use daemon_support::listen::ConnInfo;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_forward::headers::is_websocket_upgrade;
use http_forward::path::Segments;
use hyper::body::Incoming;

use crate::activity::Activity;
use crate::body::ShimBody;
use crate::child::Target;
use crate::config::Config;
use crate::cookies::{self, SetCookie};
use crate::forward::{self, RequestEdit, ResponseEdit, Upstream};
use crate::hub_client::{HubClient, HubError, HubUser};
use crate::oauth::{self, OAuthStates};
use crate::session::Sessions;
use crate::signing::CookieKey;
use crate::xsrf::{self, RequestFacts};

/// Name of the XSRF cookie (what Jupyter front ends read).
pub const XSRF_COOKIE: &str = "_xsrf";
/// The hub's session cookie: never forwarded to the app.
const HUB_SESSION_COOKIE: &str = "jupyterhub-session-id";

/// Everything requests share.
#[derive(Debug)]
pub struct Shim {
    /// The configuration.
    pub config: Config,
    /// Signs cookies, derives XSRF tokens.
    pub key: CookieKey,
    /// Token → owner cache.
    pub sessions: Sessions,
    /// Logins in flight.
    pub states: OAuthStates,
    /// Calls to the hub.
    pub hub: HubClient,
    /// Connections to the app.
    pub upstream: Upstream,
    /// The app's address and token.
    pub target: Target,
    /// Client activity (for apps that do not report their own).
    pub traffic: Arc<Activity>,
    /// `X-JupyterHub-Version`.
    pub version: HeaderValue,
    /// Name of the login cookie.
    pub login_cookie: String,
    /// Name (prefix) of the state cookies.
    pub state_cookie: String,
    /// Path of the login and state cookies.
    pub cookie_path: String,
    /// Whether the app is Jupyter.
    pub jupyter: bool,
}

/// The per-connection hyper service.
#[derive(Debug, Clone)]
pub struct ShimService {
    /// Shared state.
    pub shim: Arc<Shim>,
    /// The connection.
    pub conn: ConnInfo,
}

impl hyper::service::Service<Request<Incoming>> for ShimService {
    type Response = Response<ShimBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ShimBody>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let shim = self.shim.clone();
        let conn = self.conn;
        Box::pin(async move { Ok(handle(&shim, conn, req).await) })
    }
}

/// How the request authenticated.
#[derive(Debug)]
enum Credential {
    /// `Authorization: token|bearer <t>`.
    Header(String),
    /// `?token=<t>`.
    Url(String),
    /// The login cookie.
    Cookie(String),
}

impl Credential {
    fn token(&self) -> &str {
        match self {
            Self::Header(t) | Self::Url(t) | Self::Cookie(t) => t,
        }
    }
}

/// How errors are answered: JSON for APIs and scripts, a small page for browsers.
#[derive(Debug, Clone)]
struct Reply {
    json: bool,
    home: String,
    secure: bool,
}

fn query_arg(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn header_str<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `Authorization: token X` or `bearer X` (any case), as the hub reads it.
fn header_token(req: &Request<Incoming>) -> Option<String> {
    let value = header_str(req, "authorization")?.trim();
    let (scheme, token) = value.split_once(char::is_whitespace)?;
    let token = token.trim();
    ((scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        && !token.is_empty()
        && !token.contains(char::is_whitespace))
    .then(|| token.to_owned())
}

fn is_api(rel: &str) -> bool {
    rel == "api" || rel.starts_with("api/")
}

impl Shim {
    fn now() -> i64 {
        Utc::now().timestamp()
    }

    /// The token in a valid login cookie of the request, if any.
    fn cookie_token(&self, req: &Request<Incoming>) -> Option<String> {
        let now = Self::now();
        cookies::values(req.headers(), &self.login_cookie).find_map(|v| {
            self.key
                .verify(&self.login_cookie, v, self.config.auth.cookie_max_age, now)
        })
    }

    /// The XSRF token of the session that holds `token`.
    pub fn xsrf_token(&self, token: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.key.derive("xsrf", token.as_bytes()))
    }

    fn secure(&self, conn: &ConnInfo, req: &Request<Incoming>) -> bool {
        conn.tls
            || self.config.auth.public_https
            || self.config.auth.cookie_host_prefix
            || req
                .headers()
                .get_all("x-forwarded-proto")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|p| p.trim().eq_ignore_ascii_case("https"))
    }

    fn owned_cookie(&self, name: &str) -> bool {
        name == self.login_cookie
            || name.starts_with(&self.state_cookie)
            || name == HUB_SESSION_COOKIE
    }

    fn login_cookie_header(&self, token: &str, secure: bool) -> Option<HeaderValue> {
        let value = self.key.sign(&self.login_cookie, token, Self::now());
        SetCookie {
            name: &self.login_cookie,
            value: &value,
            path: &self.cookie_path,
            max_age: Some(self.config.auth.cookie_max_age),
            http_only: true,
            secure,
        }
        .to_header()
    }

    fn xsrf_cookie_header(&self, token: &str, secure: bool) -> Option<HeaderValue> {
        SetCookie {
            name: XSRF_COOKIE,
            value: &self.xsrf_token(token),
            path: &self.config.prefix,
            max_age: None,
            // Front ends read it from JavaScript.
            http_only: false,
            secure,
        }
        .to_header()
    }

    fn clear_state_cookies(&self, req: &Request<Incoming>, secure: bool) -> Vec<HeaderValue> {
        let mut names: Vec<&str> = cookies::iter(req.headers())
            .map(|(n, _)| n)
            .filter(|n| n.starts_with(&self.state_cookie))
            .collect();
        names.dedup();
        names
            .into_iter()
            .filter_map(|n| cookies::clear(n, &self.cookie_path, secure))
            .collect()
    }

    fn allowed<'a>(&'a self, user: &HubUser) -> Option<&'a str> {
        crate::access::granted(&self.config.hub.access_scopes, &user.scopes)
    }
}

fn with_headers(
    mut resp: Response<ShimBody>,
    headers: impl IntoIterator<Item = (header::HeaderName, HeaderValue)>,
) -> Response<ShimBody> {
    for (name, value) in headers {
        resp.headers_mut().append(name, value);
    }
    resp
}

fn redirect(location: &str) -> Response<ShimBody> {
    let mut resp = Response::new(ShimBody::empty());
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn error(reply: &Reply, status: StatusCode, message: &str) -> Response<ShimBody> {
    let (body, content_type) = if reply.json {
        (
            serde_json::to_vec(&hub_api::error::ErrorBody::new(status.as_u16(), message))
                .unwrap_or_default(),
            "application/json",
        )
    } else {
        let title = format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error")
        );
        (
            format!(
                "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
                 <body><h1>{title}</h1><p>{}</p><p><a href=\"{}\">Home</a></p></body></html>\n",
                escape_html(message),
                escape_html(&reply.home),
            )
            .into_bytes(),
            "text/html; charset=utf-8",
        )
    };
    let mut resp = Response::new(ShimBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Handles one request; every answer carries the common headers.
pub async fn handle(shim: &Shim, conn: ConnInfo, req: Request<Incoming>) -> Response<ShimBody> {
    let mut resp = route(shim, conn, req).await;
    forward::add_common(
        resp.headers_mut(),
        &shim.version,
        shim.config.frame_ancestors.as_deref(),
    );
    resp
}

async fn route(shim: &Shim, conn: ConnInfo, req: Request<Incoming>) -> Response<ShimBody> {
    let config = &shim.config;
    let prefix = config.prefix.as_str();
    let path = req.uri().path().to_owned();
    let websocket = is_websocket_upgrade(&req);
    let rel = path.strip_prefix(prefix).map(str::to_owned);
    let accept_json = header_str(&req, "accept")
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
    let reply = Reply {
        json: websocket
            || accept_json
            || !matches!(*req.method(), Method::GET | Method::HEAD)
            || rel.as_deref().is_some_and(is_api),
        home: format!("{}{}home", config.hub.hub_host, config.hub.hub_prefix),
        secure: shim.secure(&conn, &req),
    };

    if let Err(e) = Segments::parse(&path) {
        tracing::info!(path, "400 refused path: {e}");
        return error(&reply, StatusCode::BAD_REQUEST, &e.to_string());
    }
    let Some(rel) = rel else {
        if format!("{path}/") == prefix {
            let target = match req.uri().query() {
                Some(q) => format!("{prefix}?{q}"),
                None => prefix.to_owned(),
            };
            return redirect(&target);
        }
        return error(&reply, StatusCode::NOT_FOUND, "Not Found");
    };

    if path == config.hub.callback_path {
        return oauth_callback(shim, &reply, &req).await;
    }
    if config.auth.logout_path.as_deref() == Some(rel.as_str()) {
        return logout(shim, &reply, &req);
    }
    if shim.jupyter
        && rel == "api"
        && matches!(*req.method(), Method::GET | Method::HEAD)
        && !websocket
    {
        // Jupyter's version endpoint is public; the hub checks readiness with it.
        return forward_to_app(shim, conn, req, &reply, None).await;
    }
    if shim.jupyter
        && *req.method() == Method::OPTIONS
        && req.headers().contains_key("access-control-request-method")
    {
        // CORS preflights never carry credentials; Jupyter answers them itself (with its
        // `allow_origin` settings) and does nothing else on OPTIONS.
        return forward_to_app(shim, conn, req, &reply, None).await;
    }

    let credential = header_token(&req)
        .map(Credential::Header)
        .or_else(|| {
            (websocket || config.auth.allow_token_in_url)
                .then(|| query_arg(req.uri().query(), "token"))
                .flatten()
                .filter(|t| !t.is_empty())
                .map(Credential::Url)
        })
        .or_else(|| shim.cookie_token(&req).map(Credential::Cookie));
    let Some(credential) = credential else {
        return unauthenticated(shim, &reply, &req, &rel, websocket, false);
    };

    if let Credential::Cookie(token) = &credential {
        let expected = shim.xsrf_token(token);
        let query_xsrf = query_arg(req.uri().query(), "_xsrf");
        let facts = RequestFacts::read(
            req.method(),
            req.headers(),
            query_xsrf.as_deref(),
            websocket,
        );
        if let Err(refused) = xsrf::check_cookie_request(
            config.auth.xsrf,
            &facts,
            &expected,
            &config.auth.extra_origins,
        ) {
            tracing::warn!(method = %req.method(), path, "403 refused cookie request: {refused}");
            return error(&reply, StatusCode::FORBIDDEN, &refused.to_string());
        }
    }

    match shim.sessions.check(credential.token()).await {
        Ok(Some(user)) => {
            if shim.allowed(&user).is_none() {
                tracing::warn!(user.name = %user.name, kind = %user.kind, "403 not allowed: no access scope");
                let message = format!("{} {} is not allowed.", user.kind, user.name);
                return error(&reply, StatusCode::FORBIDDEN, &message);
            }
            tracing::debug!(user.name = %user.name, method = %req.method(), path, "forwarding");
            forward_to_app(shim, conn, req, &reply, Some(&credential)).await
        }
        Ok(None) => match credential {
            Credential::Cookie(_) => {
                tracing::info!(path, "the token in the login cookie is no longer valid");
                unauthenticated(shim, &reply, &req, &rel, websocket, true)
            }
            Credential::Header(_) | Credential::Url(_) => {
                error(&reply, StatusCode::FORBIDDEN, "Invalid or expired token.")
            }
        },
        Err(e) => hub_failure(&reply, &e, "check authorization"),
    }
}

fn hub_failure(reply: &Reply, e: &HubError, what: &str) -> Response<ShimBody> {
    if e.is_unavailable() {
        tracing::error!("cannot {what}: {e}");
        error(
            reply,
            StatusCode::BAD_GATEWAY,
            &format!("Failed to {what} with the hub; it may be restarting. Try again shortly."),
        )
    } else {
        tracing::error!("cannot {what}: {e}");
        error(
            reply,
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Failed to {what}."),
        )
    }
}

/// No usable credential: browsers navigating to a page go through the hub's login; anything
/// else gets 403 (and no state cookie).
fn unauthenticated(
    shim: &Shim,
    reply: &Reply,
    req: &Request<Incoming>,
    rel: &str,
    websocket: bool,
    clear_login: bool,
) -> Response<ShimBody> {
    let navigation = matches!(*req.method(), Method::GET | Method::HEAD)
        && !websocket
        && matches!(header_str(req, "sec-fetch-mode"), None | Some("navigate"))
        && !is_api(rel);
    let clear = clear_login
        .then(|| cookies::clear(&shim.login_cookie, &shim.cookie_path, reply.secure))
        .flatten()
        .map(|v| (header::SET_COOKIE, v));
    if !navigation {
        let resp = error(
            reply,
            StatusCode::FORBIDDEN,
            "Missing or invalid credentials.",
        );
        return with_headers(resp, clear);
    }
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let next_url = oauth::local_next_url(target, &shim.config.prefix);
    let cookie_name = if cookies::iter(req.headers()).any(|(n, _)| n == shim.state_cookie) {
        // Another login is in flight in this browser (another tab): keep both.
        let suffix: String = (0..8)
            .map(|_| char::from(b'a' + rand::random_range(0..26u8)))
            .collect();
        format!("{}-{suffix}", shim.state_cookie)
    } else {
        shim.state_cookie.clone()
    };
    let login = shim.states.begin(next_url, cookie_name.clone());
    let state_value = shim.key.sign(&cookie_name, &login.state, Shim::now());
    let state_cookie = SetCookie {
        name: &cookie_name,
        value: &state_value,
        path: &shim.cookie_path,
        max_age: Some(oauth::STATE_TTL),
        http_only: true,
        secure: reply.secure,
    }
    .to_header()
    .map(|v| (header::SET_COOKIE, v));
    tracing::debug!(path = req.uri().path(), "redirecting to the hub to log in");
    with_headers(
        redirect(&oauth::authorize_url(&shim.config.hub, &login)),
        clear.into_iter().chain(state_cookie),
    )
}

/// `GET <prefix>oauth_callback?code=…&state=…`.
async fn oauth_callback(shim: &Shim, reply: &Reply, req: &Request<Incoming>) -> Response<ShimBody> {
    let reply = &Reply {
        json: false,
        ..reply.clone()
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return error(reply, StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let query = req.uri().query();
    if let Some(e) = query_arg(query, "error") {
        let description = query_arg(query, "error_description").unwrap_or(e);
        return error(
            reply,
            StatusCode::BAD_REQUEST,
            &format!("Error in oauth: {description}"),
        );
    }
    let Some(code) = query_arg(query, "code").filter(|c| !c.is_empty()) else {
        return error(
            reply,
            StatusCode::BAD_REQUEST,
            "OAuth callback made without a token",
        );
    };
    let Some(state) = query_arg(query, "state").filter(|s| !s.is_empty()) else {
        return error(
            reply,
            StatusCode::BAD_REQUEST,
            "OAuth state is missing. Try logging in again.",
        );
    };
    let pending = shim.states.get(&state);
    let cookie_name = pending
        .as_ref()
        .map_or(shim.state_cookie.as_str(), |p| p.cookie_name.as_str());
    let now = Shim::now();
    let cookie_state = cookies::values(req.headers(), cookie_name)
        .find_map(|v| shim.key.verify(cookie_name, v, oauth::STATE_TTL, now));
    let clear_states = shim
        .clear_state_cookies(req, reply.secure)
        .into_iter()
        .map(|v| (header::SET_COOKIE, v));

    let Some(cookie_state) = cookie_state else {
        // A stale state (the browser went back, or a second tab finished first). Someone who is
        // logged in already just goes on to where the login was headed, without a new token.
        if let Some(token) = shim.cookie_token(req)
            && let Ok(Some(user)) = shim.sessions.check(&token).await
            && shim.allowed(&user).is_some()
        {
            tracing::warn!(user.name = %user.name, "OAuth callback after already logging in");
            let next = shim
                .states
                .take(&state)
                .map_or_else(|| shim.config.prefix.clone(), |p| p.next_url);
            return with_headers(redirect(&next), clear_states);
        }
        tracing::warn!("OAuth callback without a matching state cookie");
        return with_headers(
            error(
                reply,
                StatusCode::FORBIDDEN,
                "oauth state does not match. Try logging in again.",
            ),
            clear_states,
        );
    };
    if cookie_state != state {
        tracing::warn!("OAuth state argument does not match the state cookie");
        return with_headers(
            error(
                reply,
                StatusCode::FORBIDDEN,
                "oauth state does not match. Try logging in again.",
            ),
            clear_states,
        );
    }
    let Some(pending) = shim.states.take(&state) else {
        // Signed by us but no longer in memory (expired, or a restart with a kept key): start
        // over.
        tracing::info!("OAuth state expired; starting the login again");
        return with_headers(redirect(&shim.config.prefix), clear_states);
    };

    let token = match shim.hub.exchange_code(&code, &pending.verifier).await {
        Ok(token) => token,
        Err(HubError::Status { status, message }) if (400..500).contains(&status) => {
            tracing::warn!(status, "the hub refused the OAuth code: {message}");
            return with_headers(
                error(
                    reply,
                    StatusCode::BAD_REQUEST,
                    "The hub did not accept this login (the code may have expired). Try logging in again.",
                ),
                clear_states,
            );
        }
        Err(e) => return with_headers(hub_failure(reply, &e, "complete the login"), clear_states),
    };
    let user = match shim.hub.identify(&token).await {
        Ok(Some(user)) => Arc::new(user),
        Ok(None) => {
            tracing::error!("the token from the OAuth exchange identifies nobody");
            return with_headers(
                error(
                    reply,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "oauth callback failed to identify a user",
                ),
                clear_states,
            );
        }
        Err(e) => return with_headers(hub_failure(reply, &e, "identify the user"), clear_states),
    };
    if shim.allowed(&user).is_none() {
        tracing::warn!(user.name = %user.name, "403 login by a user without access to this server");
        let message = format!("{} {} is not allowed.", user.kind, user.name);
        return with_headers(error(reply, StatusCode::FORBIDDEN, &message), clear_states);
    }
    tracing::info!(user.name = %user.name, "logged in");
    shim.sessions.remember(&token, user);
    let mut headers: Vec<(header::HeaderName, HeaderValue)> = clear_states.collect();
    if let Some(v) = shim.login_cookie_header(&token, reply.secure) {
        headers.push((header::SET_COOKIE, v));
    }
    if shim.config.auth.manage_xsrf_cookie
        && let Some(v) = shim.xsrf_cookie_header(&token, reply.secure)
    {
        headers.push((header::SET_COOKIE, v));
    }
    with_headers(redirect(&pending.next_url), headers)
}

/// `<prefix>logout`: forget the login here, then log out at the hub.
fn logout(shim: &Shim, reply: &Reply, req: &Request<Incoming>) -> Response<ShimBody> {
    if let Some(token) = shim.cookie_token(req) {
        shim.sessions.forget(&token);
    }
    let mut headers = Vec::new();
    headers.extend(cookies::clear(
        &shim.login_cookie,
        &shim.cookie_path,
        reply.secure,
    ));
    if shim.config.auth.manage_xsrf_cookie {
        headers.extend(cookies::clear(
            XSRF_COOKIE,
            &shim.config.prefix,
            reply.secure,
        ));
    }
    let hub = &shim.config.hub;
    with_headers(
        redirect(&format!("{}{}logout", hub.hub_host, hub.hub_prefix)),
        headers.into_iter().map(|v| (header::SET_COOKIE, v)),
    )
}

/// Sends an admitted request to the app and relays the answer.
async fn forward_to_app(
    shim: &Shim,
    conn: ConnInfo,
    mut req: Request<Incoming>,
    reply: &Reply,
    credential: Option<&Credential>,
) -> Response<ShimBody> {
    let websocket = is_websocket_upgrade(&req);
    let counts = credential.is_some() && !shim.jupyter;
    if counts {
        shim.traffic.touch();
    }
    // A navigation with the login cookie refreshes a missing or outdated `_xsrf` cookie.
    let xsrf_cookie = match credential {
        Some(Credential::Cookie(token))
            if shim.config.auth.manage_xsrf_cookie
                && *req.method() == Method::GET
                && !websocket
                && matches!(header_str(&req, "sec-fetch-mode"), None | Some("navigate")) =>
        {
            let expected = shim.xsrf_token(token);
            let current: Vec<&str> = cookies::values(req.headers(), XSRF_COOKIE).collect();
            (current != [expected.as_str()])
                .then(|| shim.xsrf_cookie_header(token, reply.secure))
                .flatten()
        }
        _ => None,
    };
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let strip_token = shim.jupyter || matches!(credential, Some(Credential::Url(_)));
    let owned = |name: &str| shim.owned_cookie(name);
    let edit = RequestEdit {
        target: &shim.target,
        websocket,
        client_ip: conn.peer.map(|p| p.ip()),
        proto: if conn.tls { "https" } else { "http" },
        drop_cookie: &owned,
    };
    let upstream_req = match forward::build_request(&shim.upstream, req, &edit, strip_token) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!("400 unforwardable request: {e}");
            return error(reply, StatusCode::BAD_REQUEST, "Bad Request");
        }
    };
    let mut resp = match shim.upstream.send(upstream_req).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!("503 the app did not answer: {e}");
            return error(
                reply,
                StatusCode::SERVICE_UNAVAILABLE,
                "The server's application is not responding.",
            );
        }
    };
    let owned_out = |name: &str| {
        shim.owned_cookie(name) || (shim.config.auth.manage_xsrf_cookie && name == XSRF_COOKIE)
    };
    let response_edit = ResponseEdit {
        version: &shim.version,
        frame_ancestors: shim.config.frame_ancestors.as_deref(),
        owned_cookie: &owned_out,
    };
    if let Some(client_upgrade) = client_upgrade {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let traffic = counts.then(|| shim.traffic.clone());
            tokio::spawn(forward::splice_upgraded(
                client_upgrade,
                upstream_upgrade,
                move || {
                    if let Some(t) = &traffic {
                        t.touch();
                    }
                },
            ));
            let mut out = forward::upgraded_response(resp);
            response_edit.apply(out.headers_mut(), true);
            return out;
        }
        // The app answered the handshake with plain HTTP: relay it, then close.
        let (mut parts, body) = resp.into_parts();
        response_edit.apply(&mut parts.headers, false);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Response::from_parts(parts, ShimBody::Upstream { body });
    }
    let (mut parts, body) = resp.into_parts();
    response_edit.apply(&mut parts.headers, false);
    if let Some(v) = xsrf_cookie {
        parts.headers.append(header::SET_COOKIE, v);
    }
    Response::from_parts(parts, ShimBody::Upstream { body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escaping() {
        assert_eq!(
            escape_html(r#"<img src=x onerror='a()'>&"#),
            "&lt;img src=x onerror=&#x27;a()&#x27;&gt;&amp;"
        );
    }

    #[test]
    fn query_arguments_are_decoded() {
        assert_eq!(
            query_arg(Some("a=1&token=a%2Bb&token=2"), "token").as_deref(),
            Some("a+b")
        );
        assert_eq!(query_arg(None, "token"), None);
    }
}
