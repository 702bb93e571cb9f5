//! `/hub/login` and `/hub/logout` (hub-protocol §9).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use hub_plugin::LoginForm;
use minijinja::context;

use crate::db::models::{api_tokens, spawners, users};
use crate::login::{self, LoginError};
use crate::state::AppState;
use crate::web::{Browser, ErrorPage, PageForm, QueryArgs, found, render};

/// Longest username a login may give (JupyterHub's column holds 255 characters). Longer ones
/// are refused before the authenticator sees them.
pub const MAX_USERNAME_CHARS: usize = 255;

/// Where a logged-in user goes when no (valid) `next` was given: `hub.default_url`, else the
/// spawn page (which opens a running server, or starts it) when `redirect_to_server` is on,
/// else home.
pub fn default_next(state: &AppState) -> String {
    let hub = &state.config.hub;
    if let Some(url) = &hub.default_url {
        return url.to_string();
    }
    let prefix = hub.hub_prefix();
    if hub.redirect_to_server {
        format!("{prefix}spawn")
    } else {
        format!("{prefix}home")
    }
}

fn login_action(state: &AppState, next: Option<&str>) -> String {
    super::session::login_url(state, next)
}

fn login_form_page(
    state: &AppState,
    browser: &Browser,
    status: StatusCode,
    next: Option<&str>,
    username: &str,
    error: Option<&str>,
) -> Response {
    render(
        state,
        Some(browser),
        status,
        "login.html",
        context! {
            login_url => login_action(state, next),
            username => username,
            login_error => error,
            next => next,
        },
    )
}

/// `GET /hub/login`: the form, or straight on to `next` when already logged in.
pub async fn login_page(
    State(state): State<AppState>,
    query: QueryArgs,
    browser: Browser,
) -> Response {
    let next = browser.safe_next(&state, query.get("next"));
    if browser.user.is_some() {
        let target = next.unwrap_or_else(|| default_next(&state));
        return browser.with_cookies(&state, found(&target));
    }
    if state.authenticator.external_login_url("", "").is_some() {
        let external = super::external_login::oauth_login_url(&state, next.as_deref());
        if state.config.authenticator.auto_login {
            return browser.with_cookies(&state, found(&external));
        }
        return render(
            &state,
            Some(&browser),
            StatusCode::OK,
            "login.html",
            context! {
                external_login_url => external,
                login_service => state.authenticator.kind(),
                next => next,
            },
        );
    }
    login_form_page(&state, &browser, StatusCode::OK, next.as_deref(), "", None)
}

/// `POST /hub/login`: checks `_xsrf` before anything else, then the authenticator and the
/// hub's rules. Success: cookies and 302 to `next`; failure: 403 with the form again.
pub async fn login_submit(
    State(state): State<AppState>,
    query: QueryArgs,
    headers: HeaderMap,
    browser: Browser,
    PageForm(mut fields): PageForm,
) -> Response {
    let xsrf_field = fields
        .iter()
        .rev()
        .find(|(k, _)| k == "_xsrf")
        .map(|(_, v)| v.clone());
    if let Err(refusal) = browser.check_xsrf(&state, &headers, xsrf_field.as_deref()) {
        return refusal.into_response();
    }
    let next = browser.safe_next(&state, query.get("next"));
    let mut form = LoginForm::default();
    for (key, value) in fields.drain(..) {
        match key.as_str() {
            "_xsrf" => {}
            "username" => form.username = value.trim().to_owned(),
            "password" => form.password = value,
            _ => {
                form.extra.insert(key, value);
            }
        }
    }
    let refused = |message: &str| {
        // Echo back at most a sane amount of what was typed.
        let shown: String = form.username.chars().take(256).collect();
        login_form_page(
            &state,
            &browser,
            StatusCode::FORBIDDEN,
            next.as_deref(),
            &shown,
            Some(message),
        )
    };
    if form.username.chars().count() > MAX_USERNAME_CHARS {
        tracing::warn!(
            "refused login: username of {} bytes starting {}",
            form.username.len(),
            auth_pam::loggable(&form.username)
        );
        return refused(&LoginError::Invalid.to_string());
    }
    let accepted = match login::authenticate(&state, &form).await {
        Ok(accepted) => accepted,
        Err(LoginError::Failed(_)) => {
            return refused("Login failed because of a problem on the server; try again later.");
        }
        Err(e) => return refused(&e.to_string()),
    };
    let user = match login::record(&state, accepted).await {
        Ok(user) => user,
        Err(e) => {
            tracing::error!("recording a login: {e}");
            return ErrorPage::new(StatusCode::SERVICE_UNAVAILABLE)
                .message("The hub's database is unavailable; try again shortly.")
                .render(&state, Some(&browser));
        }
    };
    tracing::info!(user = %user.name, "user logged in");
    let target = next.unwrap_or_else(|| default_next(&state));
    browser.log_in(&state, &user, found(&target))
}

/// `GET /hub/logout`: ends the browser's session: OAuth tokens issued to it are deleted (only
/// when the request is authenticated, so a forged session cookie deletes nothing), servers are
/// stopped when `shutdown_on_logout` is set, and every hub cookie is cleared.
pub async fn logout(State(state): State<AppState>, browser: Browser) -> Response {
    if let Some(identity) = &browser.user {
        let crate::access::Principal::User(user) = &identity.principal else {
            return browser.log_out(&state, found(&login_action(&state, None)));
        };
        if let Some(session_id) = browser.session_id.clone() {
            let result = state
                .db
                .run(move |conn| api_tokens::delete_for_session(conn, &session_id))
                .await;
            match result {
                Ok(n) if n > 0 => {
                    tracing::info!(user = %user.name, "logout revoked {n} OAuth tokens")
                }
                Ok(_) => {}
                Err(e) => tracing::error!("logout: revoking session tokens: {e}"),
            }
            state.identities.invalidate();
        }
        if state.config.hub.shutdown_on_logout {
            stop_servers(&state, user).await;
        }
        tracing::info!(user = %user.name, "user logged out");
    }
    browser.log_out(&state, found(&login_action(&state, None)))
}

/// Stops every active server of `user` (`shutdown_on_logout`), without waiting for slow ones.
async fn stop_servers(state: &AppState, user: &users::User) {
    let user_id = user.id;
    let rows = match state
        .db
        .run(move |conn| spawners::list_for_user(conn, user_id))
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!("logout: listing servers of {}: {e}", user.name);
            return;
        }
    };
    for row in rows.into_iter().filter(spawners::Spawner::is_active) {
        if let Err(e) = crate::spawn::stop(state, user, row.id, false).await {
            tracing::warn!(
                "logout: stopping {}'s server {:?}: {e}",
                user.name,
                row.name
            );
        }
    }
}
