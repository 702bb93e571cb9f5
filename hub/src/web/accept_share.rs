//! `/hub/accept-share?code=<code>[&next=<url>]`: a share link. `GET` shows, to the logged-in
//! user, whose server the code shares and what it allows; `POST` (with `_xsrf`) accepts it: the
//! user gets a share of the server, then goes on to `next` (validated like every `next`), else
//! to the server when it runs, else home.
//!
//! Every value the page shows (owner, server name, `next`) is HTML-escaped; `next` is also
//! URL-encoded into the form's address (GHSA-c4gm-pwx9-9w8j).

use axum::extract::State;
use http::{HeaderMap, StatusCode};
use minijinja::context;
use minijinja::value::{Serde, Value};
use serde::Serialize;

use crate::access::Principal;
use crate::api::models::server_url;
use crate::api::shares::{AcceptError, accept_code, lookup_code};
use crate::db::models::users;
use crate::state::AppState;
use crate::web::home::When;
use crate::web::{
    Browser, ErrorPage, Halt, PageForm, PageResult, QueryArgs, db_unavailable, found, render,
    with_next,
};

/// Longest code looked up, in bytes (real ones are about 43 characters).
const MAX_CODE_CHARS: usize = 256;

/// A permission a share grants, for people.
#[derive(Debug, Serialize)]
struct Grant {
    scope: String,
    description: String,
}

fn describe(state: &AppState, scope: &str) -> Grant {
    let base = scope.split_once('!').map_or(scope, |(base, _)| base);
    let description = match base {
        "access:servers" => {
            "Open the server and work in it, in your browser or through its API.".to_owned()
        }
        other => state
            .registry
            .description(other)
            .unwrap_or("A permission of the hub")
            .to_owned(),
    };
    Grant {
        scope: scope.to_owned(),
        description,
    }
}

fn the_code<'a>(
    state: &AppState,
    browser: &Browser,
    code: Option<&'a str>,
) -> Result<&'a str, Halt> {
    match code.map(str::trim).filter(|c| !c.is_empty()) {
        // Codes are URL-safe base64; anything else matches none (and never reaches the
        // database, which may refuse bytes such as NUL).
        Some(code)
            if code.len() <= MAX_CODE_CHARS
                && code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')) =>
        {
            Ok(code)
        }
        Some(_) => Err(not_found(state, browser)),
        None => Err(ErrorPage::new(StatusCode::BAD_REQUEST)
            .message("This page needs the code of a share link (accept-share?code=…).")
            .halt(state, Some(browser))),
    }
}

fn not_found(state: &AppState, browser: &Browser) -> Halt {
    ErrorPage::new(StatusCode::NOT_FOUND)
        .message(format!(
            "{}. Share links stop working when they expire or their owner revokes them.",
            AcceptError::NotFound
        ))
        .halt(state, Some(browser))
}

fn me<'a>(state: &AppState, browser: &'a Browser) -> Result<&'a users::User, Halt> {
    let identity = browser.require_user(state)?;
    match &identity.principal {
        Principal::User(user) => Ok(user),
        Principal::Service(_) => Err(ErrorPage::new(StatusCode::FORBIDDEN)
            .message("Only users can accept shares.")
            .halt(state, Some(browser))),
    }
}

/// The label of a shared server in page text: `owner`, or `owner/server`.
fn label(owner: &str, server: &str) -> String {
    if server.is_empty() {
        owner.to_owned()
    } else {
        format!("{owner}/{server}")
    }
}

/// `GET /hub/accept-share?code=…`.
pub async fn accept_share_page(
    State(state): State<AppState>,
    query: QueryArgs,
    browser: Browser,
) -> PageResult {
    let user = me(&state, &browser)?;
    let code = the_code(&state, &browser, query.get("code"))?;
    let pending = lookup_code(&state, code)
        .await
        .map_err(|e| db_unavailable(&state, Some(&browser), &e))?
        .ok_or_else(|| not_found(&state, &browser))?;
    if pending.owner == user.name {
        return Err(ErrorPage::new(StatusCode::BAD_REQUEST)
            .message(format!(
                "{} This link shares your own server.",
                AcceptError::OwnServer
            ))
            .halt(&state, Some(&browser)));
    }
    let next = browser.safe_next(&state, query.get("next"));
    let grants: Vec<Grant> = pending.scopes.iter().map(|s| describe(&state, s)).collect();
    let action = with_next(
        &format!("{}accept-share", state.config.hub.hub_prefix()),
        next.as_deref(),
    );
    Ok(render(
        &state,
        Some(&browser),
        StatusCode::OK,
        "accept_share.html",
        context! {
            owner => pending.owner.clone(),
            server_name => pending.server.clone(),
            server_label => label(&pending.owner, &pending.server),
            ready => pending.ready,
            grants => Value::from(Serde(&grants)),
            expires_at => Value::from(Serde(When::of(pending.expires_at))),
            code => code,
            action => action,
            next_url => next,
        },
    ))
}

/// `POST /hub/accept-share`: form fields `_xsrf` and `code` (or `?code=`), `?next=`.
pub async fn accept_share_submit(
    State(state): State<AppState>,
    query: QueryArgs,
    headers: HeaderMap,
    browser: Browser,
    form: PageForm,
) -> PageResult {
    browser.check_xsrf(&state, &headers, form.get("_xsrf"))?;
    let Some(identity) = &browser.user else {
        return Err(ErrorPage::new(StatusCode::FORBIDDEN)
            .message("You are not logged in.")
            .halt(&state, Some(&browser)));
    };
    let Principal::User(user) = &identity.principal else {
        return Err(ErrorPage::new(StatusCode::FORBIDDEN)
            .message("Only users can accept shares.")
            .halt(&state, Some(&browser)));
    };
    let code = the_code(&state, &browser, form.get("code").or(query.get("code")))?;
    let accepted = match accept_code(&state, user, code).await {
        Ok(accepted) => accepted,
        Err(AcceptError::NotFound) => return Err(not_found(&state, &browser)),
        Err(e @ AcceptError::OwnServer) => {
            return Err(ErrorPage::new(StatusCode::BAD_REQUEST)
                .message(e.to_string())
                .halt(&state, Some(&browser)));
        }
        Err(AcceptError::Db(e)) => return Err(db_unavailable(&state, Some(&browser), &e)),
    };
    tracing::info!(
        user = %auth_pam::loggable(&user.name),
        server = %auth_pam::loggable(&label(&accepted.owner, &accepted.server)),
        "share accepted"
    );
    let target = match browser.safe_next(&state, query.get("next")) {
        Some(next) => next,
        None if accepted.ready => server_url(&state, &accepted.owner, &accepted.server),
        None => format!("{}home", state.config.hub.hub_prefix()),
    };
    Ok(browser.with_cookies(&state, found(&target)))
}
