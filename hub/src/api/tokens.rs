//! API tokens of users: `GET/POST /users/{name}/tokens`, `GET/DELETE /users/{name}/tokens/{id}`
//! (hub-protocol §1.3, §2.1).
//!
//! Tokens are stored as a clear 4-character prefix plus a one-round salted hash (they are
//! random, so one round is enough); the secret itself appears once, in the reply that creates
//! it. A token's `scopes` in the model are its *effective* scopes: its own scopes intersected
//! with what its owner holds now. Only users have this endpoint; services get tokens from
//! configuration or from `POST /services/{name}`.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{NaiveDateTime, TimeDelta};
use http::StatusCode;
use http::header::CONTENT_TYPE;
use hub_plugin::LoginForm;
use serde_json::{Map, Value, json};

use crate::access::{self, Identity, Principal, Via};
use crate::api::extract::{ApiJson, Caller, MaybeCaller, db_error, require};
use crate::api::models::iso;
use crate::api::python::{py_repr, py_str_repr, truthy};
use crate::db::DbConnection;
use crate::db::models::{api_tokens, groups, oauth_clients, users};
use crate::error::{ApiError, ApiResult};
use crate::identity::tokens::{self, HashedToken};
use crate::rbac::grants::{GrantError, TokenScopes, check_token_scopes};
use crate::rbac::{Owner, ScopeError, ScopeSet, Target, UserGroups};
use crate::state::AppState;

/// The note of a token requested without one.
pub const DEFAULT_NOTE: &str = "Requested via api";

/// Longest note accepted (JupyterHub's column holds 1023 characters).
pub const MAX_NOTE_CHARS: usize = 1023;

/// Routes under `/hub/api`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/{name}/tokens", get(list_tokens).post(create_token))
        .route(
            "/users/{name}/tokens/{token_id}",
            get(get_token).delete(delete_token),
        )
}

// === shared helpers (also used by the other modules of this crate's API) ===

/// A user and the names of their groups (the membership oracle for group-filtered scopes).
pub(crate) async fn find_user_with_groups(
    state: &AppState,
    name: &str,
) -> ApiResult<Option<(users::User, Vec<String>)>> {
    let name = name.to_owned();
    state
        .db
        .run(move |conn| {
            let Some(user) = users::find_by_name(conn, &name)? else {
                return Ok(None);
            };
            let groups = groups::for_user(conn, user.id)?
                .into_iter()
                .map(|g| g.name)
                .collect();
            Ok(Some((user, groups)))
        })
        .await
        .map_err(db_error)
}

/// A scope error as the token API reports it. JupyterHub raises unknown scopes as a
/// `KeyError`, whose text Python quotes: `"Scope 'nope' for token does not exist"` arrives with
/// the double quotes.
pub(crate) fn scope_error_message(e: &ScopeError) -> String {
    match e {
        ScopeError::Unknown { .. } | ScopeError::DraftAll | ScopeError::UnknownFilter { .. } => {
            py_str_repr(&e.to_string())
        }
        other => other.to_string(),
    }
}

// === the token model ===

/// Descriptions of the OAuth clients that issued `rows`: the description, or the identifier
/// when it has none (`JupyterHub` for plain API tokens).
fn client_descriptions(
    conn: &mut DbConnection,
    rows: &[api_tokens::ApiToken],
) -> diesel::QueryResult<std::collections::HashMap<String, String>> {
    let mut ids: Vec<&str> = rows.iter().map(|r| r.client_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(oauth_clients::find_by_identifiers(conn, &ids)?
        .into_iter()
        .map(|c| {
            let description = if c.description.is_empty() {
                c.identifier.clone()
            } else {
                c.description
            };
            (c.identifier, description)
        })
        .collect())
}

/// The Token models of `rows`, all owned by `user` (one computation of the owner's scopes).
fn token_models(
    state: &AppState,
    conn: &mut DbConnection,
    user: &users::User,
    rows: &[api_tokens::ApiToken],
) -> diesel::QueryResult<Vec<Value>> {
    let (owner_scopes, groups) = access::user_scopes(state, conn, user)?;
    let membership = UserGroups {
        user: &user.name,
        groups: &groups,
    };
    let clients = client_descriptions(conn, rows)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let scopes = access::stored_token_scopes(
            state,
            conn,
            row,
            Owner::User(&user.name),
            &owner_scopes,
            &membership,
        )?;
        let client = clients
            .get(&row.client_id)
            .cloned()
            .unwrap_or_else(|| row.client_id.clone());
        out.push(token_model(&user.name, row, &scopes, &client));
    }
    Ok(out)
}

fn token_model(owner: &str, row: &api_tokens::ApiToken, scopes: &ScopeSet, client: &str) -> Value {
    json!({
        "user": owner,
        "id": tokens::format_token_id(i64::from(row.id)),
        "kind": "api_token",
        "roles": [],
        "scopes": scopes.to_strings(),
        "created": iso(Some(row.created)),
        "last_activity": iso(row.last_activity),
        "expires_at": iso(row.expires_at),
        "note": row.note,
        "session_id": row.session_id,
        "oauth_client": client,
    })
}

// === GET /users/{name}/tokens ===

async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = authorized_user(&state, &caller, &name, "read:tokens").await?;
    let st = state.clone();
    let models = state
        .db
        .run(move |conn| {
            let now = crate::db::now();
            // Expired tokens are useless; listing is where JupyterHub sweeps them away.
            api_tokens::purge_expired(conn, now)?;
            let rows =
                api_tokens::list_for_owner(conn, api_tokens::TokenOwner::User(user.id), now)?;
            token_models(&st, conn, &user, &rows)
        })
        .await
        .map_err(db_error)?;
    Ok(Json(json!({ "api_tokens": models })))
}

/// The scope check of the per-user token endpoints (`scope` for the user in the path, group
/// filters included), then the user: 404 `No such user: x` when absent.
async fn authorized_user(
    state: &AppState,
    caller: &Identity,
    name: &str,
    scope: &str,
) -> ApiResult<users::User> {
    let found = find_user_with_groups(state, name).await?;
    let groups = found.as_ref().map(|(_, g)| g.as_slice()).unwrap_or(&[]);
    require(
        caller,
        &[scope],
        &Target::User(name),
        &UserGroups { user: name, groups },
    )?;
    found
        .map(|(user, _)| user)
        .ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))
}

// === GET/DELETE /users/{name}/tokens/{id} ===

async fn find_token(
    state: &AppState,
    user: &users::User,
    token_id: &str,
) -> ApiResult<api_tokens::ApiToken> {
    let not_found =
        || ApiError::not_found(format!("No such token {token_id} for user {}", user.name));
    let id = tokens::parse_token_id(token_id)
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(not_found)?;
    let owner = api_tokens::TokenOwner::User(user.id);
    state
        .db
        .run(move |conn| api_tokens::find_for_owner(conn, owner, id))
        .await
        .map_err(db_error)?
        .ok_or_else(not_found)
}

async fn get_token(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, token_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user = authorized_user(&state, &caller, &name, "read:tokens").await?;
    let row = find_token(&state, &user, &token_id).await?;
    let st = state.clone();
    let mut models = state
        .db
        .run(move |conn| token_models(&st, conn, &user, &[row]))
        .await
        .map_err(db_error)?;
    Ok(Json(models.pop().unwrap_or(Value::Null)))
}

/// Deletes a token; deleting an OAuth token deletes every token the user holds from that
/// client (JupyterHub revokes the whole authorization).
async fn delete_token(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, token_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let user = authorized_user(&state, &caller, &name, "tokens").await?;
    revoke_user_token(&state, &user, &token_id).await?;
    Ok((StatusCode::NO_CONTENT, [(CONTENT_TYPE, "text/plain")]).into_response())
}

/// Deletes token `token_id` (`a<id>`) of `user`; for an OAuth token, every token `user` holds
/// from the same client.
///
/// # Errors
/// 404 when `user` has no such token; database failures.
pub(crate) async fn revoke_user_token(
    state: &AppState,
    user: &users::User,
    token_id: &str,
) -> ApiResult<()> {
    let row = find_token(state, user, token_id).await?;
    let user_id = user.id;
    state
        .db
        .transaction(move |conn| {
            if row.is_oauth() {
                api_tokens::delete_for_user_client(conn, user_id, &row.client_id)?;
            } else {
                match api_tokens::delete(conn, row.id) {
                    // Deleted meanwhile by another request: the outcome is the same.
                    Err(diesel::result::Error::NotFound) => {}
                    other => other?,
                }
            }
            Ok(())
        })
        .await
        .map_err(db_error)
}

// === POST /users/{name}/tokens ===

/// Identifies the requester of a credential-less token request from the body's `auth` object,
/// through the authenticator, as a login would (normalisation, validation, blocked and allowed
/// users) but without logging in. Every failure is a bare 403.
async fn authenticate_body(state: &AppState, auth: Option<&Value>) -> ApiResult<Identity> {
    let refused = || ApiError::bare(StatusCode::FORBIDDEN);
    let Some(Value::Object(auth)) = auth else {
        return Err(refused());
    };
    let mut form = LoginForm::default();
    for (key, value) in auth {
        let Value::String(text) = value else {
            continue;
        };
        match key.as_str() {
            "username" => form.username = text.trim().to_owned(),
            "password" => form.password.clone_from(text),
            _ => {
                form.extra.insert(key.clone(), text.clone());
            }
        }
    }
    let Ok(accepted) = crate::login::authenticate(state, &form).await else {
        return Err(refused());
    };
    let st = state.clone();
    let identity = state
        .db
        .run(move |conn| {
            let Some(user) = users::find_by_name(conn, &accepted.name)? else {
                return Ok(None);
            };
            let (scopes, groups) = access::user_scopes(&st, conn, &user)?;
            Ok(Some(Identity {
                principal: Principal::User(user),
                groups,
                scopes,
                token: None,
                via: Via::Cookie,
            }))
        })
        .await
        .map_err(db_error)?;
    identity.ok_or_else(refused)
}

/// A list of strings from the body, or `None` when absent or null; 400 for anything else.
fn string_list(body: &Map<String, Value>, key: &str) -> ApiResult<Option<Vec<String>>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        )),
        Some(other) => Err(ApiError::bad_request(format!(
            "token {key} must be null or a list of strings, not {}",
            py_repr(other)
        ))),
    }
}

/// `expires_in` as given: `None` when absent or null, an integer otherwise (booleans and
/// fractions are refused).
fn requested_expires_in(body: &Map<String, Value>) -> ApiResult<Option<i64>> {
    match body.get("expires_in") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
            Ok(Some(n.as_i64().unwrap_or(i64::MAX)))
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "token expires_in must be null or integer, not {}",
            py_repr(other)
        ))),
    }
}

/// The expiry of a new token: `expires_in` capped by `token_expires_in_max_seconds`, which is
/// also the default when a maximum is configured. 400 when above the maximum.
fn capped_expires_in(state: &AppState, expires_in: Option<i64>) -> ApiResult<Option<i64>> {
    let Some(max) = state.config.hub.token_expires_in_max_seconds.get() else {
        return Ok(expires_in);
    };
    let max = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
    match expires_in {
        None => Ok(Some(max)),
        Some(n) if n > max => Err(ApiError::bad_request(format!(
            "token expires_in: {n} must not exceed {max}"
        ))),
        some => Ok(some),
    }
}

fn expiry(now: NaiveDateTime, expires_in: Option<i64>) -> ApiResult<Option<NaiveDateTime>> {
    let Some(seconds) = expires_in else {
        return Ok(None);
    };
    if seconds < 1 {
        return Err(ApiError::bad_request(format!(
            "expires_in must be a positive integer or null, not {seconds}"
        )));
    }
    TimeDelta::try_seconds(seconds)
        .and_then(|d| now.checked_add_signed(d))
        .map(Some)
        .ok_or_else(|| ApiError::bad_request(format!("token expires_in: {seconds} is too large")))
}

/// The raw scopes of a new token: the given scopes, or the scopes of the given roles resolved
/// now, or the `token` role's scopes (`inherit` unless configured otherwise).
fn raw_token_scopes(
    state: &AppState,
    scopes: Option<Vec<String>>,
    roles: Option<Vec<String>>,
) -> ApiResult<Vec<String>> {
    match (scopes, roles) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "Can only assign one of scopes or roles when creating tokens.",
        )),
        (Some(scopes), None) => Ok(scopes),
        (None, Some(roles)) => {
            let mut raw = std::collections::BTreeSet::new();
            for name in &roles {
                let role = state
                    .roles
                    .get(name)
                    .ok_or_else(|| ApiError::bad_request(format!("No such role: {name}")))?;
                raw.extend(role.scopes.iter().cloned());
            }
            Ok(raw.into_iter().collect())
        }
        (None, None) => Ok(state
            .roles
            .get("token")
            .map_or_else(|| vec!["inherit".to_owned()], |r| r.scopes.clone())),
    }
}

async fn create_token(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Response> {
    // `get_json_body() or {}`: every falsy body counts as empty.
    let body = match body {
        Some(Value::Object(map)) => map,
        other if !other.as_ref().is_some_and(truthy) => Map::new(),
        _ => return Err(ApiError::bad_request("Body must be a JSON dict or empty")),
    };
    let requester = match caller {
        Some(caller) => caller,
        None => authenticate_body(&state, body.get("auth")).await?,
    };
    let model = create_user_token(&state, &requester, &name, &body).await?;
    Ok((StatusCode::CREATED, Json(model)).into_response())
}

/// Creates an API token for user `name` on behalf of `requester` from a `POST
/// /users/{name}/tokens` body (`note`, `expires_in`, `scopes` or `roles`), with every rule of
/// that endpoint. Returns the token model with the secret under `token`.
///
/// # Errors
/// The endpoint's refusals (403 without permission, 400 for bad values or scopes).
pub(crate) async fn create_user_token(
    state: &AppState,
    requester: &Identity,
    name: &str,
    body: &Map<String, Value>,
) -> ApiResult<Value> {
    let state = state.clone();
    let name = name.to_owned();
    let kind = match &requester.principal {
        Principal::User(_) => "user",
        Principal::Service(_) => "service",
    };
    let found = find_user_with_groups(&state, &name).await?;
    let permitted = found.as_ref().is_some_and(|(_, groups)| {
        requester.scopes.allows(
            "tokens",
            &Target::User(&name),
            &UserGroups {
                user: &name,
                groups,
            },
        )
    });
    let Some((user, user_groups)) = found.filter(|_| permitted) else {
        let title = if kind == "user" { "User" } else { "Service" };
        return Err(ApiError::forbidden(format!(
            "{title} {name} not found or no permissions to generate tokens"
        )));
    };

    let same_principal = matches!(&requester.principal, Principal::User(u) if u.id == user.id);
    let note = match body.get("note") {
        Some(Value::String(note)) if !note.is_empty() => note.clone(),
        Some(other) if truthy(other) => {
            return Err(ApiError::bad_request(format!(
                "token note must be a string, not {}",
                py_repr(other)
            )));
        }
        _ if same_principal => DEFAULT_NOTE.to_owned(),
        _ => format!("{DEFAULT_NOTE} by {kind} {}", requester.principal.name()),
    };
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::bad_request(format!(
            "token note must be at most {MAX_NOTE_CHARS} characters"
        )));
    }
    let roles = string_list(body, "roles")?;
    let scopes = string_list(body, "scopes")?;
    let expires_in = capped_expires_in(&state, requested_expires_in(body)?)?;
    let raw = raw_token_scopes(&state, scopes, roles)?;
    state
        .registry
        .check_scopes_exist(&raw, Some("token"))
        .map_err(|e| ApiError::bad_request(scope_error_message(&e)))?;

    // The owner's scopes now, not the requester's: a token never exceeds its owner.
    let st = state.clone();
    let owner = user.clone();
    let (owner_scopes, _) = state
        .db
        .run(move |conn| access::user_scopes(&st, conn, &owner))
        .await
        .map_err(db_error)?;
    check_token_scopes(
        &state.registry,
        &TokenScopes {
            raw: &raw,
            owner: Owner::User(&user.name),
            client: None,
        },
        &owner_scopes,
        &UserGroups {
            user: &user.name,
            groups: &user_groups,
        },
    )
    .map_err(|e| match e {
        GrantError::Scope(e) => ApiError::bad_request(scope_error_message(&e)),
        other => ApiError::bad_request(other.to_string()),
    })?;
    let expires_at = expiry(crate::db::now(), expires_in)?;

    let secret = tokens::new_api_token();
    let hashed = HashedToken::new(&secret, tokens::GENERATED_ROUNDS).to_string();
    let prefix = tokens::token_prefix(&secret).to_owned();
    let st = state.clone();
    let mut models = state
        .db
        .transaction(move |conn| {
            let row = api_tokens::insert(
                conn,
                &api_tokens::NewApiToken {
                    prefix: &prefix,
                    hashed: &hashed,
                    owner: api_tokens::TokenOwner::User(user.id),
                    spawner_id: None,
                    client_id: oauth_clients::JUPYTERHUB_CLIENT_ID,
                    session_id: None,
                    note: &note,
                    scopes: &raw,
                    expires_at,
                },
            )?;
            token_models(&st, conn, &user, &[row])
        })
        .await
        .map_err(db_error)?;
    let mut model = models.pop().unwrap_or(Value::Null);
    if let Value::Object(map) = &mut model {
        map.insert("token".into(), Value::String(secret));
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_reprs() {
        assert_eq!(py_repr(&json!("abc")), "'abc'");
        assert_eq!(py_repr(&json!("it's")), "\"it's\"");
        assert_eq!(py_repr(&json!(3600.0)), "3600.0");
        assert_eq!(py_repr(&json!(1.5)), "1.5");
        assert_eq!(py_repr(&json!(-3)), "-3");
        assert_eq!(py_repr(&json!(null)), "None");
        assert_eq!(py_repr(&json!([true, "x"])), "[True, 'x']");
        assert_eq!(py_repr(&json!({"a": false})), "{'a': False}");
        assert_eq!(py_repr(&json!("a\nb")), "'a\\nb'");
    }

    #[test]
    fn unknown_scopes_are_quoted() {
        let e = ScopeError::Unknown {
            scope: "nope".into(),
            who_for: Some("token".into()),
        };
        assert_eq!(
            scope_error_message(&e),
            "\"Scope 'nope' for token does not exist\""
        );
    }

    #[test]
    fn falsy_values() {}
}
