//! The browser's side of a page request: who is logged in (the `jupyterhub-hub-login` cookie
//! only: pages never accept tokens), the session id, the `_xsrf` token for forms, and the
//! cookies a response sets or clears (hub-protocol §2.3, §5.1).

use axum::extract::FromRequestParts;
use axum::response::Response;
use chrono::Utc;
use http::header::{COOKIE, HOST, SET_COOKIE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::access::{self, Identity};
use crate::db::models::users;
use crate::identity::cookies::{self, HUB_LOGIN_COOKIE, SESSION_COOKIE, XSRF_COOKIE};
use crate::identity::tokens;
use crate::identity::xsrf::{self, XsrfToken};
use crate::state::AppState;
use crate::web::{ErrorPage, Halt, found, next_url, query_value};

/// The anonymous `_xsrf` cookie's lifetime.
const ANONYMOUS_XSRF_MAX_AGE: u32 = 3600;

/// What a page handler knows about the browser.
#[derive(Debug, Clone)]
pub struct Browser {
    /// The logged-in user, if the login cookie is valid and names an existing user.
    pub user: Option<Identity>,
    /// The `cookie_id` the login cookie carries (when `user` is set).
    pub cookie_id: Option<String>,
    /// The `jupyterhub-session-id` cookie.
    pub session_id: Option<String>,
    /// The `_xsrf` token for this page's forms and API calls.
    pub xsrf: XsrfToken,
    /// The id the `_xsrf` token must carry for this browser.
    xsrf_id: String,
    /// The raw `Cookie` header.
    cookie_header: Option<String>,
    method: Method,
    sec_fetch_mode: Option<String>,
    sec_fetch_site: Option<String>,
    has_origin: bool,
    /// A login cookie was sent but is not valid (expired, forged, or its user is gone).
    stale_login: bool,
    /// Cookies get `Secure`.
    secure: bool,
    /// The `Host` the browser asked for, for validating absolute `next` URLs.
    host: Option<String>,
    /// The path and query of the request.
    path_and_query: String,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The client address as tornado's `xheaders` see it: `X-Real-Ip`, else the last entry of
/// `X-Forwarded-For` (the proxy in front of the hub appends the real peer).
fn client_ip(headers: &HeaderMap) -> String {
    if let Some(ip) = header(headers, "x-real-ip") {
        return ip.trim().to_owned();
    }
    header(headers, "x-forwarded-for")
        .and_then(|v| v.rsplit(',').next().map(|s| s.trim().to_owned()))
        .unwrap_or_default()
}

/// Networks given by `JUPYTERHUB_XSRF_ANONYMOUS_IP_CIDRS`, read once.
fn anonymous_cidrs() -> &'static [xsrf::IpCidr] {
    static CIDRS: std::sync::OnceLock<Vec<xsrf::IpCidr>> = std::sync::OnceLock::new();
    CIDRS.get_or_init(|| {
        std::env::var("JUPYTERHUB_XSRF_ANONYMOUS_IP_CIDRS")
            .ok()
            .and_then(|v| match xsrf::parse_ip_cidrs(&v) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!("JUPYTERHUB_XSRF_ANONYMOUS_IP_CIDRS ignored: {e}");
                    None
                }
            })
            .unwrap_or_default()
    })
}

/// Whether cookies should be `Secure`: the public URL is https, or (without one) the request
/// reached the proxy over https.
fn wants_secure(state: &AppState, headers: &HeaderMap) -> bool {
    match &state.config.hub.public_url {
        Some(url) => url.scheme() == "https",
        None => header(headers, "x-forwarded-proto")
            .or_else(|| header(headers, "x-scheme"))
            .is_some_and(|p| p.split(',').next().is_some_and(|p| p.trim() == "https")),
    }
}

impl FromRequestParts<AppState> for Browser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let headers = &parts.headers;
        let cookie_header = header(headers, COOKIE.as_str());
        let now = Utc::now().timestamp();
        let session_id = cookie_header
            .as_deref()
            .and_then(|h| cookies::get_cookie(h, SESSION_COOKIE))
            .filter(|s| !s.is_empty() && s.len() <= 64);
        let signed_login = cookie_header
            .as_deref()
            .and_then(|h| cookies::get_cookie(h, HUB_LOGIN_COOKIE));
        let cookie_id = signed_login.as_deref().and_then(|signed| {
            cookies::decode_signed_value(
                state.cookie_secret.as_bytes(),
                HUB_LOGIN_COOKIE,
                signed,
                state.config.hub.cookie_max_age_days.duration(),
                now,
            )
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
        });
        let user = match cookie_id.clone() {
            Some(id) => {
                let st = state.clone();
                state
                    .db
                    .run(move |conn| access::resolve_cookie_user(&st, conn, &id))
                    .await
                    .map_err(|e| {
                        tracing::error!("resolving a login cookie: {e}");
                        ErrorPage::new(StatusCode::SERVICE_UNAVAILABLE)
                            .message("The hub's database is unavailable; try again shortly.")
                            .render(state, None)
                    })?
            }
            None => None,
        };
        let stale_login = signed_login.is_some() && user.is_none();
        let xsrf_id = match (&user, &cookie_id) {
            (Some(_), Some(cookie_id)) => {
                xsrf::logged_in_xsrf_id(session_id.as_deref().unwrap_or_default(), cookie_id)
            }
            _ => anonymous_xsrf_id(headers, session_id.as_deref()),
        };
        let sec_fetch_mode = header(headers, "sec-fetch-mode");
        let found = cookie_header
            .as_deref()
            .and_then(|h| xsrf::find_xsrf_cookie(state.cookie_secret.as_bytes(), h, now));
        let xsrf = xsrf::xsrf_token_for_request(
            state.cookie_secret.as_bytes(),
            found.as_ref(),
            &xsrf_id,
            sec_fetch_mode.as_deref(),
            now,
        );
        Ok(Self {
            cookie_id: cookie_id.filter(|_| user.is_some()),
            user,
            session_id,
            xsrf,
            xsrf_id,
            cookie_header,
            method: parts.method.clone(),
            sec_fetch_mode,
            sec_fetch_site: header(headers, "sec-fetch-site"),
            has_origin: headers.contains_key(http::header::ORIGIN),
            stale_login,
            secure: wants_secure(state, headers),
            host: header(headers, HOST.as_str()),
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        })
    }
}

fn anonymous_xsrf_id(headers: &HeaderMap, session_id: Option<&str>) -> String {
    let ip = client_ip(headers);
    let ip = xsrf::generalise_ip(&ip, anonymous_cidrs());
    let agent = header(headers, "user-agent").unwrap_or_default();
    xsrf::anonymous_xsrf_id(session_id, &xsrf::anonymous_id(&ip, &[agent.as_str()]))
}

/// One `Set-Cookie` value.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    http_only: bool,
    secure: bool,
) -> String {
    let mut c = format!("{name}={value}; Path={path}; SameSite=Lax");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// A `Set-Cookie` value that deletes `name` on `path`.
pub(crate) fn clear_cookie(name: &str, path: &str) -> String {
    format!("{name}=\"\"; Path={path}; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
}

impl Browser {
    /// The logged-in user's name.
    pub fn user_name(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.principal.name())
    }

    /// Whether cookies set for this browser get `Secure`.
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// The path and query of this request (for `next=` links back to it).
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// The `Host` the browser asked for.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The scheme and authority browsers use to reach the hub: the public URL's, else the
    /// request's (`https` when the proxy says so); `None` without a `Host`.
    pub fn origin(&self, state: &AppState) -> Option<String> {
        if let Some(url) = &state.config.hub.public_url {
            let url = url.as_url();
            let host = url.host_str()?;
            return Some(match url.port() {
                Some(port) => format!("{}://{host}:{port}", url.scheme()),
                None => format!("{}://{host}", url.scheme()),
            });
        }
        let host = self.host.as_deref()?;
        let scheme = if self.secure { "https" } else { "http" };
        Some(format!("{scheme}://{host}"))
    }

    /// The logged-in user, or a redirect to the login page that comes back here.
    ///
    /// # Errors
    /// The redirect, when nobody is logged in.
    pub fn require_user(&self, state: &AppState) -> Result<&Identity, Halt> {
        match &self.user {
            Some(user) => Ok(user),
            None => Err(self
                .with_cookies(state, found(&login_url(state, Some(&self.path_and_query))))
                .into()),
        }
    }

    /// Checks the `_xsrf` token of a state-changing page request (form field `submitted`, or
    /// the `X-XSRFToken`/`X-CSRFToken` headers). GETs of pages are exempt, as in JupyterHub.
    /// A state-changing request the browser marks as coming from another site
    /// (`Sec-Fetch-Site: cross-site`) is refused whatever it carries.
    ///
    /// # Errors
    /// A 403 page.
    pub fn check_xsrf(
        &self,
        state: &AppState,
        headers: &HeaderMap,
        submitted: Option<&str>,
    ) -> Result<(), Halt> {
        let read_only = matches!(self.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !read_only && self.sec_fetch_site.as_deref() == Some("cross-site") {
            return Err(ErrorPage::new(StatusCode::FORBIDDEN)
                .message("Cross-site form submissions are not accepted.")
                .render(state, Some(self))
                .into());
        }
        let request = xsrf::XsrfRequest {
            kind: xsrf::HandlerKind::Page,
            method: self.method.as_str(),
            auth: xsrf::RequestAuth::Cookie,
            has_origin: self.has_origin,
            sec_fetch_mode: self.sec_fetch_mode.as_deref(),
            sec_fetch_site: self.sec_fetch_site.as_deref(),
        };
        if !xsrf::xsrf_check_required(&request) {
            return Ok(());
        }
        let x_xsrf = header(headers, "x-xsrftoken");
        let x_csrf = header(headers, "x-csrftoken");
        let submitted = xsrf::submitted_xsrf_token(submitted, x_xsrf.as_deref(), x_csrf.as_deref());
        xsrf::verify_xsrf(
            state.cookie_secret.as_bytes(),
            self.cookie_header.as_deref(),
            &self.xsrf_id,
            self.method.as_str(),
            submitted,
            Utc::now().timestamp(),
        )
        .map_err(|e| {
            ErrorPage::new(StatusCode::FORBIDDEN)
                .message(format!(
                    "{e}. The form may have expired: reload the page and try again."
                ))
                .render(state, Some(self))
                .into()
        })
    }

    /// The validated `next` target: a path on this hub's host, or `None`.
    pub fn safe_next(&self, state: &AppState, next: Option<&str>) -> Option<String> {
        next_url::validate(
            next?,
            self.host.as_deref(),
            state.config.hub.public_url.as_ref().map(|u| u.as_url()),
        )
    }

    /// `resp` with the cookies this request needs: a fresh `_xsrf` cookie on navigations when
    /// the browser's does not fit, and the removal of an invalid login cookie.
    pub fn with_cookies(&self, state: &AppState, mut resp: Response) -> Response {
        let prefix = state.config.hub.hub_prefix();
        let mut values = Vec::new();
        if self.stale_login {
            values.push(clear_cookie(HUB_LOGIN_COOKIE, &prefix));
        }
        if self.xsrf.set_cookie {
            let mut c = set_cookie(XSRF_COOKIE, &self.xsrf.token, &prefix, false, self.secure);
            if self.user.is_none() {
                c.push_str(&format!("; Max-Age={ANONYMOUS_XSRF_MAX_AGE}"));
            }
            values.push(c);
        }
        append_cookies(&mut resp, values);
        resp
    }

    /// `resp` logging `user` in: the login cookie (the user's signed `cookie_id`), a session id
    /// (kept when the browser has one) and an `_xsrf` cookie bound to both.
    pub fn log_in(&self, state: &AppState, user: &users::User, mut resp: Response) -> Response {
        let prefix = state.config.hub.hub_prefix();
        let base = state.config.hub.base_url.to_string();
        let now = Utc::now().timestamp();
        let signed = cookies::create_signed_value(
            state.cookie_secret.as_bytes(),
            HUB_LOGIN_COOKIE,
            user.cookie_id.as_bytes(),
            now,
        );
        let session_id = self
            .session_id
            .clone()
            .unwrap_or_else(tokens::new_session_id);
        let xsrf_token = xsrf::create_xsrf_token(
            state.cookie_secret.as_bytes(),
            &xsrf::logged_in_xsrf_id(&session_id, &user.cookie_id),
            now,
        );
        let values = vec![
            set_cookie(
                HUB_LOGIN_COOKIE,
                &cookies::quote_cookie_value(&signed),
                &prefix,
                true,
                self.secure,
            ),
            set_cookie(SESSION_COOKIE, &session_id, &base, true, self.secure),
            set_cookie(XSRF_COOKIE, &xsrf_token, &prefix, false, self.secure),
        ];
        append_cookies(&mut resp, values);
        resp
    }

    /// `resp` clearing every hub cookie (logout).
    pub fn log_out(&self, state: &AppState, mut resp: Response) -> Response {
        let prefix = state.config.hub.hub_prefix();
        let base = state.config.hub.base_url.to_string();
        let services = format!("{base}services");
        let values = vec![
            clear_cookie(SESSION_COOKIE, &base),
            clear_cookie(HUB_LOGIN_COOKIE, &prefix),
            clear_cookie("jupyterhub-services", &services),
            clear_cookie(XSRF_COOKIE, &prefix),
        ];
        append_cookies(&mut resp, values);
        resp
    }
}

pub(crate) fn append_cookies(resp: &mut Response, values: Vec<String>) {
    for value in values {
        match HeaderValue::from_str(&value) {
            Ok(v) => {
                resp.headers_mut().append(SET_COOKIE, v);
            }
            Err(e) => tracing::error!("unsendable cookie: {e}"),
        }
    }
}

/// `/hub/login`, with `?next=` when given.
pub fn login_url(state: &AppState, next: Option<&str>) -> String {
    hub_page_url(state, "login", next)
}

/// The hub page `page` (e.g. `login`), with `?next=` when given.
pub fn hub_page_url(state: &AppState, page: &str, next: Option<&str>) -> String {
    let prefix = state.config.hub.hub_prefix();
    match next {
        Some(next) => format!("{prefix}{page}?next={}", query_value(next)),
        None => format!("{prefix}{page}"),
    }
}
