//! Sharing (JupyterHub 5.0+): granting other users or groups access to one server.
//!
//! - `/shares/{owner}[/{server}]`: list (`read:shares`), grant (`POST`), revoke (`PATCH`) and
//!   revoke all (`DELETE`) (`shares`).
//! - `/share-codes/{owner}[/{server}]`: codes a recipient exchanges for a share on the
//!   accept-share page ([`accept_code`]); stored hashed, shown once.
//! - `/users/{name}/shared[/{owner}/{server}]` and `/groups/{name}/shared[...]`: what a user or
//!   group received, and leaving a share.
//!
//! Every list answers with the pagination envelope, whatever the `Accept` header says. A share
//! grants its scopes only on its server (`<scope>!server=<owner>/<server>`), and only scopes
//! the granting caller holds on that server; the recipient's scopes include them at once (see
//! [`crate::access::share_scopes`]).

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::Router;
use axum::extract::{OriginalUri, Path, State};
use axum::response::Response;
use axum::routing::get;
use chrono::{NaiveDateTime, TimeDelta};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::access::Identity;
use crate::api::extract::query_arg;
use crate::api::extract::{ApiJson, Caller, db_error, require};
use crate::api::models::{iso, server_url};
use crate::api::pagination::{Page, request_url};
use crate::api::python::{py_repr, truthy};
use crate::api::tokens::{find_user_with_groups, scope_error_message};
use crate::db::models::spawners::{self, ServerPhase, Spawner};
use crate::db::models::{PageRequest, groups, share_codes, shares, users};
use crate::db::{DbConnection, DbError};
use crate::error::{ApiError, ApiResult};
use crate::identity::tokens::{self, HashedToken};
use crate::rbac::grants::apply_share_filter;
use crate::rbac::{NoGroups, Target, UserGroups};
use crate::state::AppState;

/// Shortest lifetime of a share code, in seconds.
pub const CODE_MIN_EXPIRES_IN: i64 = 60;
/// Longest lifetime of a share code (a year), in seconds.
pub const CODE_MAX_EXPIRES_IN: i64 = 525_600 * 60;
/// Lifetime of a share code when none is requested (a day), in seconds.
pub const CODE_DEFAULT_EXPIRES_IN: i64 = 86_400;

/// Routes under `/hub/api`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/shares/{owner}",
            get(list_owner_shares)
                .post(shares_owner_only)
                .patch(shares_owner_only)
                .delete(shares_owner_only),
        )
        .route("/shares/{owner}/", server_shares_routes())
        .route("/shares/{owner}/{server}", server_shares_routes())
        .route(
            "/share-codes/{owner}",
            get(list_owner_codes)
                .post(shares_owner_only)
                .delete(shares_owner_only),
        )
        .route("/share-codes/{owner}/", server_codes_routes())
        .route("/share-codes/{owner}/{server}", server_codes_routes())
        .route("/users/{name}/shared", get(list_user_shared))
        .route(
            "/users/{name}/shared/{owner}/",
            get(get_user_share).delete(delete_user_share),
        )
        .route(
            "/users/{name}/shared/{owner}/{server}",
            get(get_user_share).delete(delete_user_share),
        )
        .route("/groups/{name}/shared", get(list_group_shared))
        .route(
            "/groups/{name}/shared/{owner}/",
            get(get_group_share).delete(delete_group_share),
        )
        .route(
            "/groups/{name}/shared/{owner}/{server}",
            get(get_group_share).delete(delete_group_share),
        )
}

fn server_shares_routes() -> axum::routing::MethodRouter<AppState> {
    get(list_server_shares)
        .post(grant_share)
        .patch(revoke_share)
        .delete(revoke_all_shares)
}

fn server_codes_routes() -> axum::routing::MethodRouter<AppState> {
    get(list_server_codes)
        .post(create_code)
        .delete(delete_codes)
}

// === paths, lookups, checks ===

/// `{owner}` plus `{server}`; a missing server segment (a trailing `/`) is the default server.
#[derive(Debug, Deserialize)]
struct ServerPath {
    owner: String,
    #[serde(default)]
    server: String,
}

/// `{name}` (recipient user or group), `{owner}` and `{server}`.
#[derive(Debug, Deserialize)]
struct SharedPath {
    name: String,
    owner: String,
    #[serde(default)]
    server: String,
}

#[derive(Debug, Deserialize)]
struct OwnerPath {
    owner: String,
}

/// The owner named in the path: the user (if any) and their groups, for group-filtered
/// scopes.
struct OwnerInfo {
    name: String,
    user: Option<users::User>,
    groups: Vec<String>,
}

impl OwnerInfo {
    async fn load(state: &AppState, name: &str) -> ApiResult<Self> {
        let found = find_user_with_groups(state, name).await?;
        let (user, groups) = match found {
            Some((user, groups)) => (Some(user), groups),
            None => (None, Vec::new()),
        };
        Ok(Self {
            name: name.to_owned(),
            user,
            groups,
        })
    }

    fn membership(&self) -> UserGroups<'_> {
        UserGroups {
            user: &self.name,
            groups: &self.groups,
        }
    }

    fn require(&self, caller: &Identity, scope: &str, server: Option<&str>) -> ApiResult<()> {
        let target = match server {
            Some(server) => Target::Server {
                user: &self.name,
                server,
            },
            None => Target::User(&self.name),
        };
        require(caller, &[scope], &target, &self.membership())
    }
}

fn no_such_server(owner: &str, server: &str) -> ApiError {
    ApiError::not_found(format!("No such server: {owner}/{server}"))
}

/// The owner's server, 404 `No such server: owner/server` when there is none. Every user has a
/// default server, so its row is created on first use.
async fn lookup_spawner(state: &AppState, owner: &OwnerInfo, server: &str) -> ApiResult<Spawner> {
    let user_id = owner
        .user
        .as_ref()
        .map(|u| u.id)
        .ok_or_else(|| no_such_server(&owner.name, server))?;
    let name = server.to_owned();
    state
        .db
        .run(move |conn| {
            if name.is_empty() {
                spawners::find_or_insert(conn, user_id, &name).map(Some)
            } else {
                spawners::find(conn, user_id, &name)
            }
        })
        .await
        .map_err(db_error)?
        .ok_or_else(|| no_such_server(&owner.name, server))
}

/// The page asked for; share lists always use the envelope, with the limit a request without
/// the pagination `Accept` header gets (the maximum).
fn share_page(state: &AppState, headers: &HeaderMap, uri: &http::Uri) -> ApiResult<Page> {
    let hub = &state.config.hub;
    let mut page = Page::parse(
        headers,
        uri.query(),
        usize::try_from(hub.api_page_default_limit.get()).unwrap_or(50),
        usize::try_from(hub.api_page_max_limit.get()).unwrap_or(200),
    )?;
    page.envelope = true;
    Ok(page)
}

fn page_request(page: &Page) -> PageRequest {
    PageRequest::new(
        i64::try_from(page.offset).unwrap_or(i64::MAX),
        i64::try_from(page.limit).unwrap_or(i64::MAX),
    )
}

/// `POST`/`PATCH`/`DELETE` on `/shares/{owner}` or `/share-codes/{owner}` without a server:
/// after the scope check, 405.
async fn shares_owner_only(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<OwnerPath>,
) -> ApiResult<Response> {
    let owner = OwnerInfo::load(&state, &path.owner).await?;
    owner.require(&caller, "shares", None)?;
    Err(ApiError::bare(StatusCode::METHOD_NOT_ALLOWED))
}

// === models ===

/// The part of the server model a share shows: owner, name, URLs, readiness.
fn shared_server_model(state: &AppState, owner: &str, server: &str, phase: ServerPhase) -> Value {
    let url = server_url(state, owner, server);
    let full_url = public_url(state, &url);
    json!({
        "user": {"name": owner},
        "name": server,
        "url": url,
        "full_url": full_url,
        "ready": phase == ServerPhase::Running,
    })
}

/// `path` on the configured `public_url`, or null without one.
fn public_url(state: &AppState, path: &str) -> Value {
    match &state.config.hub.public_url {
        Some(public) => {
            let public = public.as_url();
            let origin = public.origin().ascii_serialization();
            Value::String(format!("{origin}{path}"))
        }
        None => Value::Null,
    }
}

fn share_model(state: &AppState, d: &shares::ShareDetails) -> Value {
    json!({
        "server": shared_server_model(state, &d.owner_name, &d.server_name, d.server_phase),
        "scopes": d.share.scopes,
        "user": d.user_name.as_ref().map(|name| json!({"name": name})),
        "group": d.group_name.as_ref().map(|name| json!({"name": name})),
        "kind": if d.group_name.is_some() { "group" } else { "user" },
        "created_at": iso(Some(d.share.created_at)),
    })
}

fn code_model(
    state: &AppState,
    code: &share_codes::ShareCode,
    owner: &str,
    spawner: &Spawner,
) -> Value {
    json!({
        "server": shared_server_model(state, owner, &spawner.name, spawner.phase),
        "scopes": code.scopes,
        "id": format!("sc_{}", code.id),
        "created_at": iso(Some(code.created_at)),
        "expires_at": iso(code.expires_at),
        "exchange_count": code.exchange_count,
        "last_exchanged_at": iso(code.last_exchanged_at),
    })
}

/// One page of shares with their names, and the size of the whole list.
struct DetailsPage {
    items: Vec<shares::ShareDetails>,
    total: i64,
}

/// The common start of listings over all of an owner's servers: the owner exists and the caller
/// may read their shares; the owner, the page asked for, the owner's id and the database page
/// request.
async fn owner_listing(
    state: &AppState,
    caller: &Caller,
    owner: &str,
    headers: &HeaderMap,
    uri: &http::Uri,
) -> ApiResult<(OwnerInfo, Page, i32, PageRequest)> {
    let owner = OwnerInfo::load(state, owner).await?;
    owner.require(caller, "read:shares", None)?;
    let page = share_page(state, headers, uri)?;
    let user = owner
        .user
        .as_ref()
        .ok_or_else(|| ApiError::bare(StatusCode::NOT_FOUND))?;
    let (owner_id, request) = (user.id, page_request(&page));
    Ok((owner, page, owner_id, request))
}

/// The envelope of a page of shares.
fn share_page_reply(
    state: &AppState,
    page: &Page,
    found: DetailsPage,
    headers: &HeaderMap,
    uri: &http::Uri,
) -> Value {
    let items: Vec<Value> = found.items.iter().map(|d| share_model(state, d)).collect();
    page.wrap(
        Value::Array(items),
        usize::try_from(found.total).unwrap_or(0),
        &request_url(headers, uri),
    )
}

/// Loads one page of shares with the names their models show.
async fn load_share_page<F>(state: &AppState, query: F) -> ApiResult<DetailsPage>
where
    F: FnOnce(&mut DbConnection) -> diesel::QueryResult<crate::db::models::Page<shares::Share>>
        + Send
        + 'static,
{
    state
        .db
        .run(move |conn| {
            let page = query(conn)?;
            let total = page.total;
            Ok(DetailsPage {
                items: shares::details(conn, page.items)?,
                total,
            })
        })
        .await
        .map_err(db_error)
}

// === request bodies ===

/// A grant or revoke request: exactly one of `user` and `group`, optional `scopes`.
struct ShareRequest {
    scopes: Option<Vec<String>>,
    with: Recipient,
}

enum Recipient {
    User(String),
    Group(String),
}

/// The body as an object; every falsy body counts as empty (`get_json_body() or {}`).
fn body_object(body: Option<Value>) -> ApiResult<Map<String, Value>> {
    match body {
        Some(Value::Object(map)) => Ok(map),
        other if !other.as_ref().is_some_and(truthy) => Ok(Map::new()),
        Some(other) => Err(ApiError::bad_request(format!(
            "Request body must be a JSON object, not {}",
            py_repr(&other)
        ))),
        None => Ok(Map::new()),
    }
}

fn check_keys(body: &Map<String, Value>, allowed: &[&str]) -> ApiResult<()> {
    let extra: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Extra inputs are not permitted: {}",
            extra.join(", ")
        )))
    }
}

/// `scopes`: null, or a list of existing scopes; an empty list counts as none.
fn requested_scopes(state: &AppState, body: &Map<String, Value>) -> ApiResult<Option<Vec<String>>> {
    let scopes = match body.get("scopes") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect::<Vec<_>>(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "scopes must be a list of strings, not {}",
                py_repr(other)
            )));
        }
    };
    if scopes.is_empty() {
        return Ok(None);
    }
    state
        .registry
        .check_scopes_exist(&scopes, Some("share"))
        .map_err(|e| ApiError::bad_request(scope_error_message(&e)))?;
    Ok(Some(scopes))
}

fn share_request(state: &AppState, body: Option<Value>) -> ApiResult<ShareRequest> {
    let body = body_object(body)?;
    check_keys(&body, &["scopes", "user", "group"])?;
    let name = |key: &str| -> ApiResult<Option<String>> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ApiError::bad_request(format!(
                "{key} must be a string, not {}",
                py_repr(other)
            ))),
        }
    };
    let with = match (name("user")?, name("group")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "Expected exactly one of `user` or `group`, not both.",
            ));
        }
        (Some(user), None) => Recipient::User(user),
        (None, Some(group)) => Recipient::Group(group),
        (None, None) => {
            return Err(ApiError::bad_request(
                "Specify exactly one of `user` or `group`",
            ));
        }
    };
    Ok(ShareRequest {
        scopes: requested_scopes(state, &body)?,
        with,
    })
}

/// The scopes of a new share or code, forced onto the server; the default is access to it.
fn share_scopes_for(
    scopes: Option<Vec<String>>,
    owner: &str,
    server: &str,
) -> ApiResult<Vec<String>> {
    let scopes = scopes.unwrap_or_else(|| vec![format!("access:servers!server={owner}/{server}")]);
    apply_share_filter(&scopes, owner, server)
        .map(|set: BTreeSet<String>| set.into_iter().collect())
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Only scopes the caller holds on the server may be shared: 403 otherwise.
fn check_grantable(
    caller: &Identity,
    owner: &OwnerInfo,
    server: &str,
    scopes: &[String],
) -> ApiResult<()> {
    let target = Target::Server {
        user: &owner.name,
        server,
    };
    for scope in scopes {
        let base = scope.split_once('!').map_or(scope.as_str(), |(b, _)| b);
        if !caller.scopes.allows(base, &target, &owner.membership()) {
            return Err(ApiError::forbidden(format!(
                "Do not have permission to grant share with scope {scope}"
            )));
        }
    }
    Ok(())
}

// === /shares ===

async fn list_owner_shares(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<OwnerPath>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Json<Value>> {
    let (_, page, owner_id, request) =
        owner_listing(&state, &caller, &path.owner, &headers, &uri).await?;
    let found = load_share_page(&state, move |conn| {
        shares::list_for_owner(conn, owner_id, request)
    })
    .await?;
    Ok(Json(share_page_reply(&state, &page, found, &headers, &uri)))
}

async fn list_server_shares(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<ServerPath>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Json<Value>> {
    let owner = OwnerInfo::load(&state, &path.owner).await?;
    owner.require(&caller, "read:shares", Some(&path.server))?;
    let page = share_page(&state, &headers, &uri)?;
    let spawner = lookup_spawner(&state, &owner, &path.server).await?;
    let (spawner_id, request) = (spawner.id, page_request(&page));
    let found = load_share_page(&state, move |conn| {
        shares::list_for_spawner(conn, spawner_id, request)
    })
    .await?;
    Ok(Json(share_page_reply(&state, &page, found, &headers, &uri)))
}

async fn share_details(state: &AppState, share: shares::Share) -> ApiResult<Value> {
    let details = state
        .db
        .run(move |conn| shares::details(conn, vec![share]))
        .await
        .map_err(db_error)?;
    Ok(details
        .first()
        .map_or_else(|| json!({}), |d| share_model(state, d)))
}

async fn grant_share(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<ServerPath>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let owner = OwnerInfo::load(&state, &path.owner).await?;
    owner.require(&caller, "shares", Some(&path.server))?;
    let request = share_request(&state, body)?;
    let scopes = share_scopes_for(request.scopes, &owner.name, &path.server)?;
    let spawner = lookup_spawner(&state, &owner, &path.server).await?;
    check_grantable(&caller, &owner, &path.server, &scopes)?;
    let with = match &request.with {
        Recipient::User(name) => {
            let found = find_user_with_groups(&state, name).await?;
            let groups = found.as_ref().map(|(_, g)| g.as_slice()).unwrap_or(&[]);
            if !caller.scopes.allows(
                "read:users:name",
                &Target::User(name),
                &UserGroups { user: name, groups },
            ) {
                return Err(ApiError::forbidden(
                    "Need scope 'read:users:name' to share with users by name",
                ));
            }
            let (user, _) =
                found.ok_or_else(|| ApiError::bad_request(format!("No such user: {name}")))?;
            shares::ShareWith::User(user.id)
        }
        Recipient::Group(name) => {
            if !caller
                .scopes
                .allows("read:groups:name", &Target::Group(name), &NoGroups)
            {
                return Err(ApiError::forbidden(
                    "Need scope 'read:groups:name' to share with groups by name",
                ));
            }
            let lookup = name.clone();
            let group = state
                .db
                .run(move |conn| groups::find_by_name(conn, &lookup))
                .await
                .map_err(db_error)?
                .ok_or_else(|| ApiError::bad_request(format!("No such group: {name}")))?;
            shares::ShareWith::Group(group.id)
        }
    };
    let spawner_id = spawner.id;
    let share = state
        .db
        .run(move |conn| shares::grant(conn, spawner_id, with, &scopes, crate::db::now()))
        .await
        .map_err(db_error)?;
    Ok(Json(share_details(&state, share).await?))
}

/// Scopes to revoke, in the form shares store them: a scope without a filter means that
/// scope on this server.
fn revocation_scopes(scopes: Vec<String>, owner: &str, server: &str) -> Vec<String> {
    scopes
        .into_iter()
        .map(|scope| {
            if scope.contains('!') {
                scope
            } else {
                format!("{scope}!server={owner}/{server}")
            }
        })
        .collect()
}

async fn revoke_share(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<ServerPath>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let owner = OwnerInfo::load(&state, &path.owner).await?;
    owner.require(&caller, "shares", Some(&path.server))?;
    let request = share_request(&state, body)?;
    let spawner = lookup_spawner(&state, &owner, &path.server).await?;
    let scopes = request
        .scopes
        .map(|s| revocation_scopes(s, &owner.name, &path.server));
    let spawner_id = spawner.id;
    let remaining = state
        .db
        .run(move |conn| {
            // An unknown recipient has nothing to revoke.
            let with = match &request.with {
                Recipient::User(name) => match users::find_by_name(conn, name)? {
                    Some(user) => shares::ShareWith::User(user.id),
                    None => return Ok(None),
                },
                Recipient::Group(name) => match groups::find_by_name(conn, name)? {
                    Some(group) => shares::ShareWith::Group(group.id),
                    None => return Ok(None),
                },
            };
            shares::revoke(conn, spawner_id, with, scopes.as_deref())
        })
        .await
        .map_err(db_error)?;
    match remaining {
        Some(share) => Ok(Json(share_details(&state, share).await?)),
        None => Ok(Json(json!({}))),
    }
}

async fn revoke_all_shares(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<ServerPath>,
) -> ApiResult<StatusCode> {
    let owner = OwnerInfo::load(&state, &path.owner).await?;
    owner.require(&caller, "shares", Some(&path.server))?;
    let spawner = lookup_spawner(&state, &owner, &path.server).await?;
    let spawner_id = spawner.id;
    let deleted = state
        .db
        .run(move |conn| shares::delete_for_spawner(conn, spawner_id))
        .await
        .map_err(db_error)?;
    tracing::info!("deleted {deleted} shares of {}/{}", owner.name, path.server);
    Ok(StatusCode::NO_CONTENT)
}

// === /share-codes ===

async fn list_owner_codes(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<OwnerPath>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Json<Value>> {
    let (owner, page, owner_id, request) =
        owner_listing(&state, &caller, &path.owner, &headers, &uri).await?;
    let (codes, servers) = state
        .db
        .run(move |conn| {
            let codes = share_codes::list_for_owner(conn, owner_id, crate::db::now(), request)?;
            let servers: HashMap<i32, Spawner> = spawners::list_for_user(conn, owner_id)?
                .into_iter()
                .map(|s| (s.id, s))
                .collect();
            Ok((codes, servers))
        })
        .await
        .map_err(db_error)?;
    let items: Vec<Value> = codes
        .items
        .iter()
        .filter_map(|c| {
            let spawner = servers.get(&c.spawner_id)?;
            Some(code_model(&state, c, &owner.name, spawner))
        })
        .collect();
    Ok(Json(page.wrap(
        Value::Array(items),
        usize::try_from(codes.total).unwrap_or(0),
        &request_url(&headers, &uri),
    )))
}

async fn list_server_codes(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<ServerPath>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Json<Value>> {
    let owner = OwnerInfo::load(&state, &path.owner).await?;
    owner.require(&caller, "read:shares", Some(&path.server))?;
    let page = share_page(&state, &headers, &uri)?;
    let spawner = lookup_spawner(&state, &owner, &path.server).await?;
    let (spawner_id, request) = (spawner.id, page_request(&page));
    let codes = state
        .db
        .run(move |conn| share_codes::list_for_spawner(conn, spawner_id, crate::db::now(), request))
        .await
        .map_err(db_error)?;
    let items: Vec<Value> = codes
        .items
        .iter()
        .map(|c| code_model(&state, c, &owner.name, &spawner))
        .collect();
    Ok(Json(page.wrap(
        Value::Array(items),
        usize::try_from(codes.total).unwrap_or(0),
        &request_url(&headers, &uri),
    )))
}

/// `expires_in` of a share code: an integer from a minute to a year, a day by default.
fn code_expires_in(body: &Map<String, Value>) -> ApiResult<i64> {
    let bad = |v: &Value| {
        ApiError::bad_request(format!(
            "expires_in must be an integer from {CODE_MIN_EXPIRES_IN} to {CODE_MAX_EXPIRES_IN}, not {}",
            py_repr(v)
        ))
    };
    let Some(value) = body.get("expires_in") else {
        return Ok(CODE_DEFAULT_EXPIRES_IN);
    };
    let seconds = match value {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i,
            // A whole float is an integer (pydantic's lax mode).
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => {
                #[allow(clippy::cast_possible_truncation, reason = "whole and in range")]
                let i = f as i64;
                i
            }
            _ => return Err(bad(value)),
        },
        _ => return Err(bad(value)),
    };
    if (CODE_MIN_EXPIRES_IN..=CODE_MAX_EXPIRES_IN).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(bad(value))
    }
}

/// `/hub/accept-share?code=<code>`.
pub fn accept_url(state: &AppState, code: &str) -> String {
    let code: String = form_urlencoded::byte_serialize(code.as_bytes()).collect();
    format!("{}accept-share?code={code}", state.config.hub.hub_prefix())
}

async fn create_code(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<ServerPath>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let owner = OwnerInfo::load(&state, &path.owner).await?;
    owner.require(&caller, "shares", Some(&path.server))?;
    let body = body_object(body)?;
    check_keys(&body, &["scopes", "expires_in"])?;
    let expires_in = code_expires_in(&body)?;
    let scopes = share_scopes_for(requested_scopes(&state, &body)?, &owner.name, &path.server)?;
    check_grantable(&caller, &owner, &path.server, &scopes)?;
    let spawner = lookup_spawner(&state, &owner, &path.server).await?;

    let code = tokens::new_share_code();
    let hashed = HashedToken::new(&code, tokens::GENERATED_ROUNDS).to_string();
    let prefix = tokens::token_prefix(&code).to_owned();
    let expires_at = crate::db::now() + TimeDelta::seconds(expires_in);
    let spawner_id = spawner.id;
    let row = state
        .db
        .run(move |conn| {
            share_codes::insert(
                conn,
                &share_codes::NewShareCode {
                    spawner_id,
                    prefix: &prefix,
                    hashed: &hashed,
                    scopes: &scopes,
                    expires_at: Some(expires_at),
                },
            )
        })
        .await
        .map_err(db_error)?;
    let mut model = code_model(&state, &row, &owner.name, &spawner);
    let accept = accept_url(&state, &code);
    if let Value::Object(map) = &mut model {
        map.insert("full_accept_url".into(), public_url(&state, &accept));
        map.insert("accept_url".into(), Value::String(accept));
        map.insert("code".into(), Value::String(code));
    }
    Ok(Json(model))
}

/// The unexpired code `code`, optionally only among one server's codes.
fn find_code(
    conn: &mut DbConnection,
    code: &str,
    spawner_id: Option<i32>,
    now: NaiveDateTime,
) -> diesel::QueryResult<Option<share_codes::ShareCode>> {
    if !tokens::is_candidate(code) {
        return Ok(None);
    }
    Ok(
        share_codes::find_by_prefix(conn, tokens::token_prefix(code), now)?
            .into_iter()
            .filter(|c| spawner_id.is_none_or(|id| c.spawner_id == id))
            .find(|c| tokens::verify_token(&c.hashed, code)),
    )
}

/// `sc_<digits>` at the start of `id` (Python's `re.match`), as a database id.
fn parse_code_id(id: &str) -> Option<i32> {
    let digits: String = id
        .strip_prefix("sc_")?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

async fn delete_codes(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<ServerPath>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<StatusCode> {
    let owner = OwnerInfo::load(&state, &path.owner).await?;
    owner.require(&caller, "shares", Some(&path.server))?;
    let code = query_arg(uri.query(), "code").filter(|c| !c.is_empty());
    let id = query_arg(uri.query(), "id").filter(|c| !c.is_empty());
    let spawner = lookup_spawner(&state, &owner, &path.server).await?;
    let spawner_id = spawner.id;
    if let Some(code) = code {
        let found = state
            .db
            .run(move |conn| {
                let Some(found) = find_code(conn, &code, Some(spawner_id), crate::db::now())?
                else {
                    return Ok(false);
                };
                share_codes::delete(conn, found.id)?;
                Ok(true)
            })
            .await
            .map_err(db_error)?;
        if !found {
            return Err(ApiError::not_found("No matching code found"));
        }
    } else if let Some(id) = id {
        let not_found = || ApiError::not_found(format!("No code found matching id={id}"));
        let code_id = parse_code_id(&id).ok_or_else(not_found)?;
        let found = state
            .db
            .run(move |conn| {
                match share_codes::find_by_id(conn, code_id)? {
                    Some(c) if c.spawner_id == spawner_id => {}
                    _ => return Ok(false),
                }
                match share_codes::delete(conn, code_id) {
                    Ok(()) | Err(diesel::result::Error::NotFound) => Ok(true),
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(db_error)?;
        if !found {
            return Err(not_found());
        }
    } else {
        state
            .db
            .run(move |conn| share_codes::delete_for_spawner(conn, spawner_id))
            .await
            .map_err(db_error)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

// === /users/{name}/shared, /groups/{name}/shared ===

async fn list_user_shared(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Json<Value>> {
    let user = OwnerInfo::load(&state, &name).await?;
    user.require(&caller, "read:users:shares", None)?;
    let page = share_page(&state, &headers, &uri)?;
    let user_id = user
        .user
        .as_ref()
        .map(|u| u.id)
        .ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))?;
    let request = page_request(&page);
    let found = load_share_page(&state, move |conn| {
        shares::list_for_user(conn, user_id, true, request)
    })
    .await?;
    Ok(Json(share_page_reply(&state, &page, found, &headers, &uri)))
}

/// The share of `path.owner/path.server` with `with`, if both exist.
async fn find_share(
    state: &AppState,
    owner: &str,
    server: &str,
    with: shares::ShareWith,
) -> ApiResult<Option<shares::Share>> {
    let (owner, server) = (owner.to_owned(), server.to_owned());
    state
        .db
        .run(move |conn| {
            let Some(owner) = users::find_by_name(conn, &owner)? else {
                return Ok(None);
            };
            let Some(spawner) = spawners::find(conn, owner.id, &server)? else {
                return Ok(None);
            };
            shares::find(conn, spawner.id, with)
        })
        .await
        .map_err(db_error)
}

async fn user_share(
    state: &AppState,
    caller: &Identity,
    path: &SharedPath,
    scope: &str,
) -> ApiResult<shares::Share> {
    let user = OwnerInfo::load(state, &path.name).await?;
    user.require(caller, scope, None)?;
    let not_found = || {
        ApiError::not_found(format!(
            "No such share for user {} on {}/{}",
            path.name, path.owner, path.server
        ))
    };
    let user_id = user.user.as_ref().map(|u| u.id).ok_or_else(not_found)?;
    find_share(
        state,
        &path.owner,
        &path.server,
        shares::ShareWith::User(user_id),
    )
    .await?
    .ok_or_else(not_found)
}

async fn get_user_share(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<SharedPath>,
) -> ApiResult<Json<Value>> {
    let share = user_share(&state, &caller, &path, "read:users:shares").await?;
    Ok(Json(share_details(&state, share).await?))
}

async fn delete_share_row(state: &AppState, id: i32) -> ApiResult<StatusCode> {
    match state.db.run(move |conn| shares::delete(conn, id)).await {
        Ok(()) | Err(DbError::NotFound) => Ok(StatusCode::NO_CONTENT),
        Err(e) => Err(db_error(e)),
    }
}

async fn delete_user_share(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<SharedPath>,
) -> ApiResult<StatusCode> {
    let share = user_share(&state, &caller, &path, "users:shares").await?;
    delete_share_row(&state, share.id).await
}

/// The group named in the path after the scope check: 404 `No such group: x`.
async fn find_group(
    state: &AppState,
    caller: &Identity,
    name: &str,
    scope: &str,
) -> ApiResult<groups::Group> {
    require(caller, &[scope], &Target::Group(name), &NoGroups)?;
    let lookup = name.to_owned();
    state
        .db
        .run(move |conn| groups::find_by_name(conn, &lookup))
        .await
        .map_err(db_error)?
        .ok_or_else(|| ApiError::not_found(format!("No such group: {name}")))
}

async fn list_group_shared(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Json<Value>> {
    let group = find_group(&state, &caller, &name, "read:groups:shares").await?;
    let page = share_page(&state, &headers, &uri)?;
    let (group_id, request) = (group.id, page_request(&page));
    let found = load_share_page(&state, move |conn| {
        shares::list_for_group(conn, group_id, request)
    })
    .await?;
    Ok(Json(share_page_reply(&state, &page, found, &headers, &uri)))
}

async fn group_share(
    state: &AppState,
    caller: &Identity,
    path: &SharedPath,
    scope: &str,
) -> ApiResult<shares::Share> {
    let group = find_group(state, caller, &path.name, scope).await?;
    find_share(
        state,
        &path.owner,
        &path.server,
        shares::ShareWith::Group(group.id),
    )
    .await?
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "No such share for group {} on {}/{}",
            path.name, path.owner, path.server
        ))
    })
}

async fn get_group_share(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<SharedPath>,
) -> ApiResult<Json<Value>> {
    let share = group_share(&state, &caller, &path, "read:groups:shares").await?;
    Ok(Json(share_details(&state, share).await?))
}

async fn delete_group_share(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<SharedPath>,
) -> ApiResult<StatusCode> {
    let share = group_share(&state, &caller, &path, "groups:shares").await?;
    delete_share_row(&state, share.id).await
}

// === accepting share codes (for the accept-share page) ===

/// Why a share code could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// No unexpired code matches.
    #[error("Share not found or expired")]
    NotFound,
    /// The code is for one of the accepting user's own servers.
    #[error("You can't share with yourself!")]
    OwnServer,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What a valid share code offers, for the confirmation page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingShare {
    /// The server owner's name.
    pub owner: String,
    /// The server's name ("" = default server).
    pub server: String,
    /// Whether the server is running now.
    pub ready: bool,
    /// The scopes the share would grant.
    pub scopes: Vec<String>,
    /// When the code expires.
    pub expires_at: Option<NaiveDateTime>,
}

/// A share obtained with a code.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedShare {
    /// The server owner's name.
    pub owner: String,
    /// The server's name ("" = default server).
    pub server: String,
    /// Whether the server is running now.
    pub ready: bool,
    /// The resulting Share model (scopes merged with any earlier share).
    pub share: Value,
}

struct CodeTarget {
    code: share_codes::ShareCode,
    owner: users::User,
    spawner: Spawner,
}

fn code_target(
    conn: &mut DbConnection,
    code: &str,
    now: NaiveDateTime,
) -> diesel::QueryResult<Option<CodeTarget>> {
    let Some(code) = find_code(conn, code, None, now)? else {
        return Ok(None);
    };
    let Some(spawner) = spawners::find_by_id(conn, code.spawner_id)? else {
        return Ok(None);
    };
    let Some(owner) = users::find_by_id(conn, spawner.user_id)? else {
        return Ok(None);
    };
    Ok(Some(CodeTarget {
        code,
        owner,
        spawner,
    }))
}

/// What `code` would grant, if it is a valid, unexpired share code (the accept-share page
/// shows this before the user confirms). Looking does not count as an exchange.
///
/// # Errors
/// The database failed.
pub async fn lookup_code(state: &AppState, code: &str) -> Result<Option<PendingShare>, DbError> {
    let code = code.to_owned();
    let found = state
        .db
        .run(move |conn| code_target(conn, &code, crate::db::now()))
        .await?;
    Ok(found.map(|t| PendingShare {
        owner: t.owner.name,
        server: t.spawner.name,
        ready: t.spawner.phase == ServerPhase::Running,
        scopes: t.code.scopes,
        expires_at: t.code.expires_at,
    }))
}

/// Exchanges a share code for a share with `user` (the accept-share page's POST). Codes are
/// not single-use: as in JupyterHub every acceptance before expiry counts in `exchange_count`,
/// and accepting again merges the code's scopes into the existing share. The grant and the
/// count are one transaction.
///
/// # Errors
/// [`AcceptError::NotFound`] for an unknown or expired code, [`AcceptError::OwnServer`] when
/// `user` owns the server, or the database failing.
pub async fn accept_code(
    state: &AppState,
    user: &users::User,
    code: &str,
) -> Result<AcceptedShare, AcceptError> {
    let code = code.to_owned();
    let user_id = user.id;
    let outcome = state
        .db
        .transaction(move |conn| {
            let now = crate::db::now();
            let Some(target) = code_target(conn, &code, now)? else {
                return Ok(Err(AcceptError::NotFound));
            };
            if target.owner.id == user_id {
                return Ok(Err(AcceptError::OwnServer));
            }
            let share = shares::grant(
                conn,
                target.spawner.id,
                shares::ShareWith::User(user_id),
                &target.code.scopes,
                now,
            )?;
            share_codes::record_exchange(conn, target.code.id, now)?;
            let details = shares::details(conn, vec![share])?;
            Ok(Ok((target, details)))
        })
        .await??;
    // The user holds a new share: identities resolved before it lack it.
    state.identities.invalidate();
    let (target, details) = outcome;
    Ok(AcceptedShare {
        owner: target.owner.name,
        ready: target.spawner.phase == ServerPhase::Running,
        server: target.spawner.name,
        share: details
            .first()
            .map_or_else(|| json!({}), |d| share_model(state, d)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_ids() {
        assert_eq!(parse_code_id("sc_12"), Some(12));
        assert_eq!(parse_code_id("sc_12abc"), Some(12));
        assert_eq!(parse_code_id("sc_"), None);
        assert_eq!(parse_code_id("12"), None);
        assert_eq!(parse_code_id("sc_x"), None);
    }

    #[test]
    fn code_lifetimes() {
        let body = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(code_expires_in(&body(json!({}))).unwrap(), 86_400);
        assert_eq!(
            code_expires_in(&body(json!({"expires_in": 60}))).unwrap(),
            60
        );
        assert_eq!(
            code_expires_in(&body(json!({"expires_in": 3600.0}))).unwrap(),
            3600
        );
        for bad in [
            json!(59),
            json!(31_536_001),
            json!("60"),
            json!(null),
            json!(60.5),
        ] {
            assert!(code_expires_in(&body(json!({ "expires_in": bad }))).is_err());
        }
    }

    #[test]
    fn revocations_get_the_server_filter() {
        assert_eq!(
            revocation_scopes(
                vec!["access:servers".into(), "read:servers!server=a/".into()],
                "a",
                ""
            ),
            ["access:servers!server=a/", "read:servers!server=a/"]
        );
    }
}
