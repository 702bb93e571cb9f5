//! The hub's HTML side: pages rendered from templates operators can override, static files,
//! and the browser session (login cookie, `_xsrf`, `next=`).
//!
//! Pages authenticate by the login cookie only; state-changing requests need the `_xsrf` token
//! (form field or header). Every value a template shows is HTML-escaped.

pub mod auth_pages;
pub mod next_url;
pub mod session;
pub mod templates;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use minijinja::context;
use minijinja::value::Value;

pub use session::Browser;
pub use templates::Templates;

use crate::state::AppState;

/// Page routes, relative to the hub prefix's parent (they are mounted with full paths).
pub fn router(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(
            &format!("{prefix}login"),
            get(auth_pages::login_page).post(auth_pages::login_submit),
        )
        .route(&format!("{prefix}logout"), get(auth_pages::logout))
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

/// The context every page template gets: the logged-in user (for the navigation bar) and the
/// `_xsrf` token.
pub fn base_context(browser: Option<&Browser>) -> Value {
    let user = browser.and_then(|b| b.user.as_ref()).map(|u| {
        context! { name => u.principal.name(), admin => u.principal.admin() }
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
    let ctx = context! { ..ctx, ..base_context(browser) };
    let html = state.templates.render_or_fallback(template, ctx);
    let resp = (status, Html(html)).into_response();
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
}

/// `GET /hub/static/<path>`: the built-in static files, cached for long (their URLs carry a
/// version tag).
async fn static_file(Path(path): Path<String>) -> Response {
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
    static_file(Path("logo.svg".to_owned())).await
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
