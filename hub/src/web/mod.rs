//! The hub's HTML side: pages rendered from templates operators can override, static files,
//! and the browser session (login cookie, `_xsrf`, `next=`).
//!
//! Pages authenticate by the login cookie only; state-changing requests need the `_xsrf` token
//! (form field or header). Every value a template shows is HTML-escaped.
//!
//! The URL map (hub-protocol §9), under the hub prefix (`{base_url}hub/`):
//!
//! - `hub` → `hub/`; `hub/` → the logged-in user's default page, or the login page;
//! - `login`, `logout` ([`auth_pages`]);
//! - `home`, `token` ([`home`], [`token_page`]);
//! - `admin` ([`admin`]), `accept-share` ([`accept_share`]);
//! - `spawn[/<user>[/<server>]]`, `spawn-pending/<user>[/<server>]`,
//!   `spawn-queue/<user>[/<server>]`, `user/<name>/<path>`, `user-redirect/<path>`
//!   ([`servers`], [`queue`]);
//! - `security/csp-report`, `static/…`, `logo`, `error/<code>`;
//! - anything else under the prefix: an HTML 404 page; any other path that reaches the hub is
//!   sent to the same path under the prefix ([`fallback`]).

pub mod accept_share;
pub mod admin;
pub mod auth_pages;
pub mod external_login;
pub mod home;
pub mod next_url;
pub mod queue;
pub mod servers;
pub mod session;
pub mod templates;
pub mod token_page;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use minijinja::context;
use minijinja::value::Value;
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};

pub use session::Browser;
pub use templates::Templates;

use crate::db::DbError;
use crate::state::AppState;

/// Page routes (mounted with full paths under the hub prefix `prefix`).
pub fn router(prefix: &str) -> Router<AppState> {
    let bare = prefix.trim_end_matches('/');
    Router::new()
        .route(bare, get(add_slash))
        .route(prefix, get(root))
        .route(
            &format!("{prefix}login"),
            get(auth_pages::login_page).post(auth_pages::login_submit),
        )
        .route(&format!("{prefix}logout"), get(auth_pages::logout))
        .route(
            &format!("{prefix}oauth_login"),
            get(external_login::oauth_login),
        )
        .route(
            &format!("{prefix}oauth_callback"),
            get(external_login::oauth_callback),
        )
        .route(&format!("{prefix}home"), get(home::home_page))
        .route(&format!("{prefix}admin"), get(admin::admin_page))
        .route(
            &format!("{prefix}accept-share"),
            get(accept_share::accept_share_page).post(accept_share::accept_share_submit),
        )
        .route(
            &format!("{prefix}token"),
            get(token_page::token_page).post(token_page::token_submit),
        )
        .route(
            &format!("{prefix}spawn"),
            get(servers::spawn_page).post(servers::spawn_submit),
        )
        .route(
            &format!("{prefix}spawn/{{*rest}}"),
            get(servers::spawn_page).post(servers::spawn_submit),
        )
        .route(
            &format!("{prefix}spawn-pending/{{*rest}}"),
            get(servers::spawn_pending_page).post(servers::spawn_pending_submit),
        )
        .route(
            &format!("{prefix}spawn-queue/{{*rest}}"),
            get(servers::spawn_queue_status),
        )
        .route(
            &format!("{prefix}user/{{*rest}}"),
            axum::routing::any(servers::user_not_running),
        )
        .route(
            &format!("{prefix}user-redirect"),
            get(servers::user_redirect),
        )
        .route(
            &format!("{prefix}user-redirect/"),
            get(servers::user_redirect),
        )
        .route(
            &format!("{prefix}user-redirect/{{*rest}}"),
            get(servers::user_redirect),
        )
        .route(&format!("{prefix}security/csp-report"), post(csp_report))
        .route(&format!("{prefix}static/{{*path}}"), get(static_file))
        .route(&format!("{prefix}logo"), get(logo))
        .route(&format!("{prefix}error/{{code}}"), get(error_code_page))
}

/// A response that ends a page handler early: a redirect to log in, a refusal. Handlers
/// return `Result<Response, Halt>` and use `?`.
#[derive(Debug)]
pub struct Halt(Box<Response>);

impl IntoResponse for Halt {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<Response> for Halt {
    fn from(resp: Response) -> Self {
        Self(Box::new(resp))
    }
}

/// The result of a page handler.
pub type PageResult = Result<Response, Halt>;

/// The context every page template gets: the logged-in user (for the navigation bar) and the
/// `_xsrf` token. [`render`] adds `template`, the page's template name without `.html`.
pub fn base_context(browser: Option<&Browser>) -> Value {
    let user = browser.and_then(|b| b.user.as_ref()).map(|u| {
        context! {
            name => u.principal.name(),
            admin => u.principal.admin(),
            admin_ui => u.scopes.holds("admin-ui"),
        }
    });
    context! {
        user => user,
        xsrf => browser.map(|b| b.xsrf.token.clone()),
    }
}

/// Renders `template` as an HTML response with `status`, adding the browser's cookies.
pub fn render(
    state: &AppState,
    browser: Option<&Browser>,
    status: StatusCode,
    template: &str,
    ctx: Value,
) -> Response {
    let page = template.strip_suffix(".html").unwrap_or(template);
    let ctx = context! { ..ctx, ..base_context(browser) };
    let ctx = context! { template => page, ..ctx };
    let html = state.templates.render_or_fallback(template, ctx);
    let mut resp = (status, Html(html)).into_response();
    // Pages show per-user state and tokens: never from a shared cache.
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match browser {
        Some(browser) => browser.with_cookies(state, resp),
        None => resp,
    }
}

/// An error page (`error.html`).
#[derive(Debug, Clone)]
pub struct ErrorPage {
    status: StatusCode,
    message: Option<String>,
}

impl ErrorPage {
    /// A page for `status` with no further message.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            message: None,
        }
    }

    /// Adds the message shown under the title.
    #[must_use]
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// The response.
    pub fn render(self, state: &AppState, browser: Option<&Browser>) -> Response {
        render(
            state,
            browser,
            self.status,
            "error.html",
            context! {
                status_code => self.status.as_u16(),
                status_message => self.status.canonical_reason().unwrap_or(""),
                message => self.message,
            },
        )
    }

    /// The response, as a [`Halt`].
    pub fn halt(self, state: &AppState, browser: Option<&Browser>) -> Halt {
        self.render(state, browser).into()
    }
}

/// The 503 page for a database failure (logged; the visitor sees a generic message).
pub fn db_unavailable(state: &AppState, browser: Option<&Browser>, e: &DbError) -> Halt {
    tracing::error!("page: database failure: {e}");
    ErrorPage::new(StatusCode::SERVICE_UNAVAILABLE)
        .message("The hub's database is unavailable; try again shortly.")
        .halt(state, browser)
}

/// Bytes a `Location` header may carry as they are; everything else is percent-encoded
/// (non-ASCII as UTF-8), so no target can break the header or panic the handler.
const LOCATION_UNSAFE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>');

/// A redirect to `location` (a path, or an absolute URL) with `status`.
pub fn redirect(status: StatusCode, location: &str) -> Response {
    let encoded = utf8_percent_encode(location, LOCATION_UNSAFE).to_string();
    let value = HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static("/"));
    let mut resp = status.into_response();
    resp.headers_mut().insert(LOCATION, value);
    resp
}

/// A `302 Found` redirect, as JupyterHub's pages send them.
pub fn found(location: &str) -> Response {
    redirect(StatusCode::FOUND, location)
}

/// `value` as a query-argument value (every reserved character encoded).
pub fn query_value(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}

/// `path` with `?next=<next>` when there is one.
pub fn with_next(path: &str, next: Option<&str>) -> String {
    match next {
        Some(next) => {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}next={}", query_value(next))
        }
        None => path.to_owned(),
    }
}

/// The arguments of the query string, in order. Never fails: malformed escapes decode
/// lossily, repeated keys are kept (the last one wins in [`QueryArgs::get`]).
#[derive(Debug, Clone, Default)]
pub struct QueryArgs(pub Vec<(String, String)>);

impl QueryArgs {
    /// Parses a raw query string.
    pub fn parse(query: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryArgs {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::parse(parts.uri.query()))
    }
}

/// Largest form body a page accepts.
pub const MAX_FORM_BODY: usize = 2 * 1024 * 1024;

/// A form-encoded request body as its fields, in order. Bodies that are too large, or not
/// `application/x-www-form-urlencoded` when a type is given, get an error page.
#[derive(Debug, Clone, Default)]
pub struct PageForm(pub Vec<(String, String)>);

impl PageForm {
    /// The last value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl FromRequest<AppState> for PageForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let form_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        if form_type
            .as_deref()
            .is_some_and(|t| !t.is_empty() && t != "application/x-www-form-urlencoded")
        {
            return Err(ErrorPage::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .message("This page accepts only form submissions.")
                .render(state, None));
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM_BODY)
            .await
            .map_err(|_| {
                ErrorPage::new(StatusCode::PAYLOAD_TOO_LARGE)
                    .message("The submitted form is too large.")
                    .render(state, None)
            })?;
        Ok(Self(
            form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

/// One percent-decoded path segment; `None` when it does not decode to UTF-8.
pub fn decode_segment(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// `GET /hub`: `/hub/`, keeping the query.
async fn add_slash(uri: Uri) -> Response {
    let mut target = format!("{}/", uri.path());
    if let Some(query) = uri.query() {
        target.push('?');
        target.push_str(query);
    }
    redirect(StatusCode::MOVED_PERMANENTLY, &target)
}

/// `GET /hub/`: where a logged-in user belongs, or the login page (which comes back here).
async fn root(State(state): State<AppState>, browser: Browser) -> Response {
    if browser.user.is_some() {
        return browser.with_cookies(&state, found(&auth_pages::default_next(&state)));
    }
    let prefix = state.config.hub.hub_prefix();
    browser.with_cookies(&state, found(&session::login_url(&state, Some(&prefix))))
}

/// Everything no route matched. Under the hub prefix: an HTML 404 page. Elsewhere (the hub is
/// the proxy's default target, so it sees paths whose route is missing): `GET` and `HEAD` go to
/// the same path under the hub prefix, query kept; `/user/<name>` and `/services/<name>` first
/// get their trailing slash; other methods are refused.
pub async fn fallback(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    browser: Browser,
) -> Response {
    let prefix = state.config.hub.hub_prefix();
    let base = state.config.hub.base_url.as_str();
    let path = uri.path();
    if path.starts_with(&prefix) {
        return ErrorPage::new(StatusCode::NOT_FOUND)
            .message(format!("No page at {}", loggable_path(path)))
            .render(&state, Some(&browser));
    }
    if !matches!(method, Method::GET | Method::HEAD) {
        if browser.user.is_some()
            && let Err(refusal) = browser.check_xsrf(&state, &headers, None)
        {
            return refusal.into_response();
        }
        let mut resp =
            ErrorPage::new(StatusCode::METHOD_NOT_ALLOWED).render(&state, Some(&browser));
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let rest = match path.strip_prefix(base) {
        Some(rest) => rest,
        // `/jupyter` for the base URL `/jupyter/`, or a path outside the base URL.
        None if path == base.trim_end_matches('/') => "",
        None => path.trim_start_matches('/'),
    };
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    for space in ["user/", "services/"] {
        if let Some(name) = rest.strip_prefix(space)
            && !name.is_empty()
            && !name.contains('/')
        {
            return found(&format!("{path}/{query}"));
        }
    }
    found(&format!("{prefix}{rest}{query}"))
}

/// A request path as it may appear in a page or a log line: at most 200 characters.
fn loggable_path(path: &str) -> String {
    let mut shown: String = path.chars().take(200).collect();
    if shown.len() < path.len() {
        shown.push('…');
    }
    shown
}

/// The content type of a static file, by its extension.
fn static_content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// An operator's file for `/hub/static/<path>` from `hub.static_paths`: its bytes and a
/// validator (size and modification time). `None` when no directory has it.
async fn operator_static(state: &AppState, path: &str) -> Option<(Vec<u8>, String)> {
    if state.config.hub.static_paths.is_empty()
        || !templates::safe_name(path)
        || path.split('/').any(|seg| seg.starts_with('.'))
    {
        return None;
    }
    for dir in &state.config.hub.static_paths {
        let file = dir.join(path);
        let Ok(meta) = tokio::fs::metadata(&file).await else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        match tokio::fs::read(&file).await {
            Ok(bytes) => {
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                let etag = format!("\"{:x}-{modified:x}\"", bytes.len());
                return Some((bytes, etag));
            }
            Err(e) => {
                tracing::error!("hub.static_paths: cannot read {}: {e}", file.display());
            }
        }
    }
    None
}

/// `GET /hub/static/<path>`: a file from `hub.static_paths` (revalidated on every use, so
/// operators can change it while the hub runs), else a built-in file (cached for long: its
/// URL carries a version tag).
async fn static_file(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some((bytes, etag)) = operator_static(&state, &path).await {
        let fresh = headers
            .get(http::header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
        let etag = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""));
        let mut resp = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            (
                [(
                    CONTENT_TYPE,
                    HeaderValue::from_static(static_content_type(&path)),
                )],
                bytes,
            )
                .into_response()
        };
        let out = resp.headers_mut();
        out.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        out.insert(http::header::ETAG, etag);
        return resp;
    }
    builtin_static(&path)
}

/// A built-in static file, or 404.
fn builtin_static(path: &str) -> Response {
    match templates::STATIC_FILES
        .iter()
        .find(|(name, _, _)| *name == path)
    {
        Some((_, content_type, body)) => (
            [
                (CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=86400"),
                ),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

/// `GET /hub/logo`: `hub.logo_file` when set, else the built-in logo.
async fn logo(State(state): State<AppState>) -> Response {
    if let Some(path) = &state.config.hub.logo_file {
        match tokio::fs::read(path).await {
            Ok(bytes) => {
                let content_type = match path.extension().and_then(|e| e.to_str()) {
                    Some("png") => "image/png",
                    Some("jpg" | "jpeg") => "image/jpeg",
                    Some("gif") => "image/gif",
                    Some("svg") => "image/svg+xml",
                    Some("webp") => "image/webp",
                    _ => "application/octet-stream",
                };
                return ([(CONTENT_TYPE, content_type)], bytes).into_response();
            }
            Err(e) => tracing::error!("hub.logo_file {}: {e}", path.display()),
        }
    }
    builtin_static("logo.svg")
}

/// `GET /hub/error/<code>`: the page the proxy shows when a user's server cannot be reached
/// (its `--error-target`).
async fn error_code_page(
    State(state): State<AppState>,
    Path(code): Path<String>,
    browser: Browser,
) -> Response {
    let status = code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::NOT_FOUND);
    ErrorPage::new(status).render(&state, Some(&browser))
}

/// Largest CSP report read.
const MAX_CSP_REPORT: usize = 64 * 1024;

/// Characters of a CSP report written to the log.
const CSP_LOG_CHARS: usize = 1000;

/// CSP reports logged per minute at most; the rest are only counted.
const CSP_LOGS_PER_MINUTE: u32 = 20;

/// `POST /hub/security/csp-report`: browsers report Content-Security-Policy violations here.
/// Logged users' reports are counted and logged (bounded in size and rate); anonymous ones are
/// refused, so nobody can fill the log.
async fn csp_report(State(state): State<AppState>, browser: Browser, body: Body) -> Response {
    if browser.user.is_none() {
        return StatusCode::FORBIDDEN.into_response();
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_CSP_REPORT).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    state
        .metrics
        .csp_reports_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if csp_log_permit() {
        let text = String::from_utf8_lossy(&bytes);
        let shown: String = text
            .chars()
            .take(CSP_LOG_CHARS)
            .flat_map(char::escape_debug)
            .collect();
        tracing::warn!(
            user = %auth_pam::loggable(browser.user_name().unwrap_or_default()),
            "Content-Security-Policy violation: {shown}"
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Whether one more CSP report may be logged in the current minute.
fn csp_log_permit() -> bool {
    static WINDOW: std::sync::Mutex<Option<(Instant, u32)>> = std::sync::Mutex::new(None);
    let mut window = WINDOW
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = Instant::now();
    match &mut *window {
        Some((start, count)) if now.duration_since(*start) < Duration::from_secs(60) => {
            *count += 1;
            *count <= CSP_LOGS_PER_MINUTE
        }
        slot => {
            *slot = Some((now, 1));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_never_panic_and_keep_targets_readable() {
        let resp = found("/user/émile/?a=b c\n");
        assert_eq!(resp.status(), StatusCode::FOUND);
        assert_eq!(
            resp.headers()[LOCATION].to_str().unwrap(),
            "/user/%C3%A9mile/?a=b%20c%0A"
        );
        let resp = found("/hub/home?next=%2Fx");
        assert_eq!(resp.headers()[LOCATION], "/hub/home?next=%2Fx");
    }

    #[test]
    fn next_arguments() {
        assert_eq!(
            with_next("/hub/spawn/a", Some("/user/a/?x=1&y")),
            "/hub/spawn/a?next=%2Fuser%2Fa%2F%3Fx%3D1%26y"
        );
        assert_eq!(with_next("/x?a=1", Some("/")), "/x?a=1&next=%2F");
        assert_eq!(with_next("/x", None), "/x");
    }

    #[test]
    fn query_args_are_lenient() {
        let q = QueryArgs::parse(Some("next=a&next=b&x=%zz&&=v"));
        assert_eq!(q.get("next"), Some("b"));
        assert_eq!(q.get("x"), Some("%zz"));
        assert_eq!(q.get("missing"), None);
    }

    #[test]
    fn segments() {
        assert_eq!(decode_segment("a%40b").as_deref(), Some("a@b"));
        assert_eq!(decode_segment("%ff"), None);
    }
}
