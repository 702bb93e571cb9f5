//! Logins at an identity provider elsewhere (OAuth, OpenID Connect, SAML authenticators):
//! `/hub/oauth_login` sends the browser to the provider, `/hub/oauth_callback` takes it back.
//!
//! The hub binds each round trip to the browser that started it: a random `state` goes to the
//! provider and, signed together with the validated `next`, into a short-lived HttpOnly cookie.
//! The callback is accepted only when the provider returns that same `state` to that same
//! browser, so a callback link made by someone else cannot log a victim in to the attacker's
//! account (login CSRF), and `next` never comes from the provider.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use http::header::COOKIE;
use http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use crate::identity::cookies;
use crate::identity::tokens;
use crate::login;
use crate::state::AppState;
use crate::web::auth_pages::default_next;
use crate::web::session::{append_cookies, clear_cookie, hub_page_url, set_cookie};
use crate::web::{Browser, ErrorPage, QueryArgs, found};

/// The cookie carrying the signed `state` and `next` of a login in progress.
pub const STATE_COOKIE: &str = "jupyterhub-oauth-state";

/// How long a browser may take at the provider.
const STATE_MAX_AGE: Duration = Duration::from_secs(600);

/// The URL the provider sends the browser back to: on the public URL when configured, else
/// on the scheme and host the browser used.
fn callback_url(state: &AppState, browser: &Browser) -> String {
    let origin = browser
        .origin(state)
        .unwrap_or_else(|| "http://localhost".to_owned());
    format!("{origin}{}oauth_callback", state.config.hub.hub_prefix())
}

/// `/hub/oauth_login?next=`: starts an external login (404 when the authenticator has none).
pub async fn oauth_login(
    State(state): State<AppState>,
    query: QueryArgs,
    browser: Browser,
) -> Response {
    let callback = callback_url(&state, &browser);
    let nonce = tokens::new_oauth_token();
    let Some(provider) = state.authenticator.external_login_url(&callback, &nonce) else {
        return ErrorPage::new(StatusCode::NOT_FOUND)
            .message("This hub's authenticator has no external login.")
            .render(&state, Some(&browser));
    };
    let next = browser
        .safe_next(&state, query.get("next"))
        .unwrap_or_default();
    let signed = cookies::create_signed_value(
        state.cookie_secret.as_bytes(),
        STATE_COOKIE,
        format!("{nonce}\n{next}").as_bytes(),
        Utc::now().timestamp(),
    );
    let mut cookie = set_cookie(
        STATE_COOKIE,
        &cookies::quote_cookie_value(&signed),
        &state.config.hub.hub_prefix(),
        true,
        browser.secure(),
    );
    cookie.push_str(&format!("; Max-Age={}", STATE_MAX_AGE.as_secs()));
    let mut resp = found(&provider);
    append_cookies(&mut resp, vec![cookie]);
    browser.with_cookies(&state, resp)
}

/// The `state` and `next` of the login this browser started, if its cookie is valid.
fn started_login(state: &AppState, headers: &HeaderMap) -> Option<(String, String)> {
    let header = headers.get(COOKIE)?.to_str().ok()?;
    let signed = cookies::get_cookie(header, STATE_COOKIE)?;
    let value = cookies::decode_signed_value(
        state.cookie_secret.as_bytes(),
        STATE_COOKIE,
        &signed,
        STATE_MAX_AGE,
        Utc::now().timestamp(),
    )
    .ok()?;
    let value = String::from_utf8(value).ok()?;
    let (nonce, next) = value.split_once('\n')?;
    Some((nonce.to_owned(), next.to_owned()))
}

/// `/hub/oauth_callback`: finishes an external login.
pub async fn oauth_callback(
    State(state): State<AppState>,
    query: QueryArgs,
    headers: HeaderMap,
    browser: Browser,
) -> Response {
    let refuse = |status: StatusCode, message: &str| {
        let mut resp = ErrorPage::new(status)
            .message(message)
            .render(&state, Some(&browser));
        append_cookies(
            &mut resp,
            vec![clear_cookie(STATE_COOKIE, &state.config.hub.hub_prefix())],
        );
        resp
    };
    let Some((nonce, next)) = started_login(&state, &headers) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "This login was not started in this browser, or took too long. Sign in again.",
        );
    };
    let returned = query.get("state").unwrap_or_default();
    if !bool::from(returned.as_bytes().ct_eq(nonce.as_bytes())) {
        return refuse(
            StatusCode::FORBIDDEN,
            "The identity provider's answer does not belong to this login. Sign in again.",
        );
    }
    if let Some(error) = query.get("error") {
        let shown: String = error.chars().take(200).collect();
        return refuse(
            StatusCode::FORBIDDEN,
            &format!("The identity provider refused the login: {shown}"),
        );
    }
    let params: BTreeMap<String, String> = query.0.iter().cloned().collect();
    let callback = callback_url(&state, &browser);
    let model = match state
        .authenticator
        .complete_external_login(&callback, &params)
        .await
    {
        Ok(Some(model)) => model,
        Ok(None) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "The identity provider did not confirm who you are.",
            );
        }
        Err(e) => {
            tracing::error!("external login failed: {e:#}");
            return refuse(
                StatusCode::BAD_GATEWAY,
                "The login could not be completed because the identity provider could not be \
                 reached; try again later.",
            );
        }
    };
    let accepted = match login::check_allowed(&state, model).await {
        Ok(accepted) => accepted,
        Err(e) => return refuse(StatusCode::FORBIDDEN, &e.to_string()),
    };
    let user = match login::record(&state, accepted).await {
        Ok(user) => user,
        Err(e) => {
            tracing::error!("recording a login: {e}");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "The hub's database is unavailable; try again shortly.",
            );
        }
    };
    tracing::info!(user = %user.name, "user logged in through the identity provider");
    // `next` was validated when the login started; check again, the rules may differ now.
    let target = browser
        .safe_next(
            &state,
            Some(&next).filter(|n| !n.is_empty()).map(String::as_str),
        )
        .unwrap_or_else(|| default_next(&state));
    let mut resp = found(&target);
    append_cookies(
        &mut resp,
        vec![clear_cookie(STATE_COOKIE, &state.config.hub.hub_prefix())],
    );
    browser.log_in(&state, &user, resp)
}

/// `/hub/oauth_login?next=<next>`.
pub fn oauth_login_url(state: &AppState, next: Option<&str>) -> String {
    hub_page_url(state, "oauth_login", next)
}
