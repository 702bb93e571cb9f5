//! `/hub/token`: the user's API tokens (create with a note, an expiry and chosen scopes; the
//! new token is shown once; list with last use and expiry; revoke) and the applications they
//! authorized through OAuth (revoke).
//!
//! The page works through the REST API (`hub.js`); without scripts its forms post here and
//! get the same rules, the API's own.

use std::collections::BTreeMap;

use axum::extract::State;
use http::{HeaderMap, StatusCode};
use minijinja::context;
use minijinja::value::{Serde, Value};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::access::{Identity, Principal};
use crate::api::models::url_name;
use crate::api::tokens::{create_user_token, revoke_user_token};
use crate::db::models::{api_tokens, oauth_clients, users};
use crate::identity::tokens;
use crate::state::AppState;
use crate::web::home::When;
use crate::web::{Browser, ErrorPage, PageForm, PageResult, db_unavailable, redirect, render};

/// An API token as the page lists it.
#[derive(Debug, Serialize)]
struct TokenView {
    id: String,
    note: String,
    scopes: Vec<String>,
    created: Option<When>,
    last_activity: Option<When>,
    expires_at: Option<When>,
}

/// An OAuth client the user authorized, with the tokens it holds.
#[derive(Debug, Serialize)]
struct ClientView {
    client_id: String,
    description: String,
    /// One of its token ids: revoking it revokes all of them.
    token_id: String,
    tokens: usize,
    created: Option<When>,
    last_activity: Option<When>,
}

/// A scope the user may give a token.
#[derive(Debug, Serialize)]
struct ScopeChoice {
    scope: String,
    description: String,
}

/// A lifetime offered for new tokens.
#[derive(Debug, Serialize)]
struct ExpiryChoice {
    /// Seconds, or "" for no expiry.
    value: String,
    label: &'static str,
    selected: bool,
}

const LIFETIMES: [(u64, &str); 4] = [
    (3600, "1 hour"),
    (86_400, "1 day"),
    (7 * 86_400, "1 week"),
    (30 * 86_400, "30 days"),
];

fn expiry_choices(state: &AppState) -> Vec<ExpiryChoice> {
    let max = state
        .config
        .hub
        .token_expires_in_max_seconds
        .get()
        .map(|d| d.as_secs());
    let mut choices: Vec<ExpiryChoice> = LIFETIMES
        .iter()
        .filter(|(secs, _)| max.is_none_or(|m| *secs <= m))
        .map(|(secs, label)| ExpiryChoice {
            value: secs.to_string(),
            label,
            selected: false,
        })
        .collect();
    match max {
        None => choices.push(ExpiryChoice {
            value: String::new(),
            label: "Never",
            selected: true,
        }),
        Some(max) => {
            if !LIFETIMES.iter().any(|(secs, _)| *secs == max) {
                choices.push(ExpiryChoice {
                    value: max.to_string(),
                    label: "Longest allowed",
                    selected: false,
                });
            }
            if let Some(last) = choices.last_mut() {
                last.selected = true;
            }
        }
    }
    choices
}

/// What the page shows besides the lists: a token just created, or an error.
#[derive(Debug, Default)]
struct Outcome {
    new_token: Option<String>,
    new_note: Option<String>,
    error: Option<String>,
}

async fn page(
    state: &AppState,
    browser: &Browser,
    identity: &Identity,
    user: &users::User,
    status: StatusCode,
    outcome: Outcome,
) -> PageResult {
    let owner = api_tokens::TokenOwner::User(user.id);
    let (rows, clients) = state
        .db
        .run(move |conn| {
            let now = crate::db::now();
            let rows = api_tokens::list_for_owner(conn, owner, now)?;
            let mut ids: Vec<&str> = rows
                .iter()
                .filter(|r| r.is_oauth())
                .map(|r| r.client_id.as_str())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let clients = oauth_clients::find_by_identifiers(conn, &ids)?;
            Ok((rows, clients))
        })
        .await
        .map_err(|e| db_unavailable(state, Some(browser), &e))?;
    let descriptions: BTreeMap<String, String> = clients
        .into_iter()
        .map(|c| {
            let description = if c.description.is_empty() {
                c.identifier.clone()
            } else {
                c.description
            };
            (c.identifier, description)
        })
        .collect();
    let mut api = Vec::new();
    let mut authorized: BTreeMap<String, ClientView> = BTreeMap::new();
    // Newest first.
    for row in rows.iter().rev() {
        let id = tokens::format_token_id(i64::from(row.id));
        if row.is_oauth() {
            let entry = authorized
                .entry(row.client_id.clone())
                .or_insert_with(|| ClientView {
                    client_id: row.client_id.clone(),
                    description: descriptions
                        .get(&row.client_id)
                        .cloned()
                        .unwrap_or_else(|| row.client_id.clone()),
                    token_id: id.clone(),
                    tokens: 0,
                    created: When::of(Some(row.created)),
                    last_activity: When::of(row.last_activity),
                });
            entry.tokens += 1;
            if entry.last_activity.is_none() {
                entry.last_activity = When::of(row.last_activity);
            }
            entry.created = When::of(Some(row.created));
        } else {
            api.push(TokenView {
                id,
                note: row.note.clone(),
                scopes: row.scopes.clone(),
                created: When::of(Some(row.created)),
                last_activity: When::of(row.last_activity),
                expires_at: When::of(row.expires_at),
            });
        }
    }
    let scope_choices: Vec<ScopeChoice> = identity
        .scopes
        .to_strings()
        .into_iter()
        .map(|scope| {
            let base = scope.split_once('!').map_or(scope.as_str(), |(b, _)| b);
            let description = state.registry.description(base).unwrap_or("").to_owned();
            ScopeChoice { scope, description }
        })
        .collect();
    let authorized: Vec<ClientView> = authorized.into_values().collect();
    Ok(render(
        state,
        Some(browser),
        status,
        "token.html",
        context! {
            api_tokens => Value::from(Serde(&api)),
            oauth_clients => Value::from(Serde(&authorized)),
            scope_choices => Value::from(Serde(&scope_choices)),
            expiry_choices => Value::from(Serde(expiry_choices(state))),
            tokens_api_path => format!("users/{}/tokens", url_name(&user.name)),
            new_token => outcome.new_token,
            new_note => outcome.new_note,
            error_message => outcome.error,
        },
    ))
}

fn user_of<'a>(
    state: &AppState,
    browser: &Browser,
    identity: &'a Identity,
) -> Result<&'a users::User, crate::web::Halt> {
    match &identity.principal {
        Principal::User(user) => Ok(user),
        Principal::Service(_) => {
            Err(ErrorPage::new(StatusCode::NOT_FOUND).halt(state, Some(browser)))
        }
    }
}

/// `GET /hub/token`.
pub async fn token_page(State(state): State<AppState>, browser: Browser) -> PageResult {
    let identity = browser.require_user(&state)?;
    let user = user_of(&state, &browser, identity)?;
    page(
        &state,
        &browser,
        identity,
        user,
        StatusCode::OK,
        Outcome::default(),
    )
    .await
}

/// `POST /hub/token`: the page's forms without scripts: `action=create` (`note`,
/// `expires_in` in seconds or empty, `scopes` repeated) or `action=revoke` (`token_id`).
pub async fn token_submit(
    State(state): State<AppState>,
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
    let user = user_of(&state, &browser, identity)?;
    let failed = |status: StatusCode, message: Option<String>| Outcome {
        error: Some(message.unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("The request failed")
                .to_owned()
        })),
        ..Outcome::default()
    };
    if form.get("action") == Some("revoke") {
        let token_id = form.get("token_id").unwrap_or_default();
        return match revoke_user_token(&state, user, token_id).await {
            Ok(()) => {
                state.identities.invalidate();
                Ok(browser.with_cookies(
                    &state,
                    redirect(
                        StatusCode::SEE_OTHER,
                        &format!("{}token", state.config.hub.hub_prefix()),
                    ),
                ))
            }
            Err(e) => {
                page(
                    &state,
                    &browser,
                    identity,
                    user,
                    e.status,
                    failed(e.status, e.message),
                )
                .await
            }
        };
    }
    let mut body = Map::new();
    let note = form.get("note").unwrap_or_default().trim();
    if !note.is_empty() {
        body.insert("note".into(), Json::String(note.to_owned()));
    }
    match form
        .get("expires_in")
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        None => {}
        Some(text) => match text.parse::<i64>() {
            Ok(seconds) => {
                body.insert("expires_in".into(), Json::from(seconds));
            }
            Err(_) => {
                let outcome = failed(
                    StatusCode::BAD_REQUEST,
                    Some("The expiry must be a number of seconds.".to_owned()),
                );
                return page(
                    &state,
                    &browser,
                    identity,
                    user,
                    StatusCode::BAD_REQUEST,
                    outcome,
                )
                .await;
            }
        },
    }
    let scopes = form.all("scopes");
    if !scopes.is_empty() {
        body.insert(
            "scopes".into(),
            Json::Array(
                scopes
                    .into_iter()
                    .map(|s| Json::String(s.to_owned()))
                    .collect(),
            ),
        );
    }
    match create_user_token(&state, identity, &user.name, &body).await {
        Ok(model) => {
            let outcome = Outcome {
                new_token: model.get("token").and_then(Json::as_str).map(str::to_owned),
                new_note: model.get("note").and_then(Json::as_str).map(str::to_owned),
                error: None,
            };
            page(&state, &browser, identity, user, StatusCode::OK, outcome).await
        }
        Err(e) => {
            page(
                &state,
                &browser,
                identity,
                user,
                e.status,
                failed(e.status, e.message),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_formats() {
        let t = chrono::NaiveDate::from_ymd_opt(2026, 12, 1)
            .unwrap()
            .and_hms_opt(16, 3, 9)
            .unwrap();
        let w = When::of(Some(t)).unwrap();
        assert_eq!(w.iso, "2026-12-01T16:03:09Z");
        assert_eq!(w.text, "2026-12-01 16:03 UTC");
    }
}
