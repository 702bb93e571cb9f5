//! `/users`, `/users/{name}` and `/users/{name}/admin-access` (hub-protocol §1.3): listing,
//! creating, reading, changing and deleting users, with JupyterHub 6.1.1's statuses and messages.
//!
//! Also the request helpers the users, groups and activity handlers share: a body extractor that
//! defers JSON errors until after the scope check ([`JsonBody`]), the URL name parameter
//! ([`NameParam`]), and Python-style renderings of JSON values for JupyterHub's messages
//! ([`py_repr`], [`py_type`], [`check_model`]).
//!
//! Escalation rules (CVE-2024-41942, GHSA-69wv-m5fw-2fhp): creating users needs the unfiltered
//! `admin:users`; only admins create admins, promote users or change admins; roles and group
//! memberships handed out by a non-admin must stay within what the caller holds
//! ([`crate::rbac::escalation`]).

use std::collections::BTreeSet;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Map, Value};

use crate::access::{Identity, Principal};
use crate::api::extract::{Caller, db_error, query_arg, require};
use crate::api::model_views::UserView;
use crate::api::models::{self, UserFacts, load_user_facts, user_model};
use crate::api::pagination::{Page, request_url};
use crate::api::python::{py_repr, py_str_repr, py_type, truthy};
use crate::db::models::spawners::{ServerPhase, Spawner};
use crate::db::models::{PageRequest, groups, roles, spawners, users};
use crate::db::{DbConnection, DbError};
use crate::error::{ApiError, ApiResult};
use crate::identity::tokens;
use crate::rbac::escalation::{self, EscalationError};
use crate::rbac::{FilterKind, ListFilter, NoGroups, Owner, Target, UserGroups};
use crate::spawn::{Pending, ServerError, StopResult};
use crate::state::AppState;

/// Routes under `/hub/api`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users).post(create_users))
        .route(
            "/users/{name}",
            get(get_user)
                .post(create_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/users/{name}/admin-access", post(admin_access))
}

/// Any of these lets a caller read a user model (`GET /users/{name}`).
const READ_USER_SCOPES: [&str; 6] = [
    "read:users",
    "read:users:name",
    "read:servers",
    "read:users:groups",
    "read:users:activity",
    "read:roles:users",
];

// === shared request helpers ===

/// A JSON request body, read without rejecting the request: a malformed or oversized body is
/// kept as an error that the handler reports *after* its scope check, so a caller without
/// permission always gets the 403/404 first, as in JupyterHub. An empty body or JSON `null` is
/// `None`.
#[derive(Debug)]
pub struct JsonBody(pub ApiResult<Option<Value>>);

impl FromRequest<AppState> for JsonBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let parsed = match Bytes::from_request(req, state).await {
            Ok(bytes) => parse_json_body(&bytes),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large",
            )),
            Err(e) => Err(ApiError::bad_request(format!(
                "Could not read the request body: {e}"
            ))),
        };
        Ok(Self(parsed))
    }
}

impl JsonBody {
    /// The body, or the error met reading it.
    ///
    /// # Errors
    /// 400 for malformed JSON, 413 for an oversized body.
    pub fn into_value(self) -> ApiResult<Option<Value>> {
        self.0
    }
}

/// JupyterHub's `get_json_body`: nothing → `None`, malformed → 400.
///
/// # Errors
/// 400 `Invalid JSON in body of request`.
pub fn parse_json_body(bytes: &[u8]) -> ApiResult<Option<Value>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|_| ApiError::bad_request("Invalid JSON in body of request"))?;
    Ok((!value.is_null()).then_some(value))
}

/// The `{name}` segment of a route, percent-decoded. A segment that does not decode to UTF-8
/// names nothing: JSON 404.
#[derive(Debug, Clone)]
pub struct NameParam(pub String);

impl FromRequestParts<AppState> for NameParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(name)) => Ok(Self(name)),
            Err(_) => Err(ApiError::bare(StatusCode::NOT_FOUND)),
        }
    }
}

/// The JSON type a model key must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A string.
    Str,
    /// A boolean.
    Bool,
    /// A list; the lists of these models hold names, so every item must be a string.
    StrList,
    /// An object.
    Dict,
}

impl FieldType {
    /// How Python names the type in messages (`<class 'str'>`).
    pub fn python_name(self) -> &'static str {
        match self {
            FieldType::Str => "<class 'str'>",
            FieldType::Bool => "<class 'bool'>",
            FieldType::StrList => "<class 'list'>",
            FieldType::Dict => "<class 'dict'>",
        }
    }

    fn accepts(self, value: &Value) -> bool {
        match self {
            FieldType::Str => value.is_string(),
            FieldType::Bool => value.is_boolean(),
            FieldType::StrList => value.is_array(),
            FieldType::Dict => value.is_object(),
        }
    }
}

/// The keys a user model in a request may have (JupyterHub's `_user_model_types`).
pub const USER_MODEL_TYPES: &[(&str, FieldType)] = &[
    ("name", FieldType::Str),
    ("admin", FieldType::Bool),
    ("groups", FieldType::StrList),
    ("roles", FieldType::StrList),
    ("auth_state", FieldType::Dict),
];

/// Checks a request model as JupyterHub's `_check_model` does: an object, known keys only, each
/// of its type. Lists must hold strings (JupyterHub fails later with a 500 when they do not).
///
/// # Errors
/// 400 `Invalid JSON data: …`, `Invalid JSON keys: …`, `<model>.<key> must be <class …>, not: …`.
pub fn check_model<'a>(
    model: &'a Value,
    types: &[(&str, FieldType)],
    name: &str,
) -> ApiResult<&'a Map<String, Value>> {
    let Value::Object(map) = model else {
        return Err(ApiError::bad_request(format!(
            "Invalid JSON data: {}",
            py_repr(model)
        )));
    };
    if map.keys().any(|k| !types.iter().any(|(t, _)| t == k)) {
        return Err(ApiError::bad_request(format!(
            "Invalid JSON keys: {}",
            py_repr(model)
        )));
    }
    for (key, value) in map {
        let Some((_, ty)) = types.iter().find(|(t, _)| t == key) else {
            continue;
        };
        if !ty.accepts(value) {
            return Err(ApiError::bad_request(format!(
                "{name}.{key} must be {}, not: {}",
                ty.python_name(),
                py_type(value)
            )));
        }
        if let (FieldType::StrList, Value::Array(items)) = (ty, value)
            && let Some(bad) = items.iter().find(|v| !v.is_string())
        {
            return Err(ApiError::bad_request(format!(
                "{name}.{key} must be a list of {}, not: {}",
                FieldType::Str.python_name(),
                py_type(bad)
            )));
        }
    }
    Ok(map)
}

/// The strings of a list already checked by [`check_model`].
pub fn str_items(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// An escalation refusal as an API error (403, or 500 for a broken role definition).
pub fn escalation_error(e: EscalationError) -> ApiError {
    match e {
        EscalationError::Scope(_) => ApiError::internal(e),
        other => ApiError::forbidden(other.to_string()),
    }
}

/// A `200` with an empty body and `Content-Type: application/json`, as JupyterHub's API handlers
/// answer when they write nothing.
pub fn empty_json_ok() -> Response {
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

// === loading ===

/// The user called `name` with everything a model needs, or `None`.
async fn load_user(state: &AppState, name: &str) -> ApiResult<Option<UserFacts>> {
    let name = name.to_owned();
    state
        .db
        .run(move |conn| load_user_blocking(conn, &name))
        .await
        .map_err(db_error)
}

fn load_user_blocking(
    conn: &mut DbConnection,
    name: &str,
) -> diesel::QueryResult<Option<UserFacts>> {
    match users::find_by_name(conn, name)? {
        Some(user) => Ok(load_user_facts(conn, vec![user])?.pop()),
        None => Ok(None),
    }
}

/// Checks `scopes` on user `name` (group filters resolved with the user's groups, if the user
/// exists), then insists the user exists: bare 404 otherwise, as JupyterHub.
async fn authorized_user(
    state: &AppState,
    caller: &Identity,
    scopes: &[&str],
    name: &str,
) -> ApiResult<UserFacts> {
    let facts = load_user(state, name).await?;
    let no_groups: Vec<String> = Vec::new();
    let membership = UserGroups {
        user: name,
        groups: facts.as_ref().map_or(&no_groups, |f| &f.groups),
    };
    require(caller, scopes, &Target::User(name), &membership)?;
    facts.ok_or_else(|| ApiError::bare(StatusCode::NOT_FOUND))
}

fn new_user<'a>(name: &'a str, admin: bool, cookie_id: &'a str) -> users::NewUser<'a> {
    users::NewUser {
        name,
        admin,
        cookie_id,
    }
}

/// Creates a user with its (stopped) default server, as JupyterHub does when it first wraps a
/// user. A taken name is a unique violation.
fn insert_user(conn: &mut DbConnection, name: &str, admin: bool) -> diesel::QueryResult<i32> {
    let cookie_id = tokens::new_session_id();
    let user = users::insert(conn, &new_user(name, admin, &cookie_id))?;
    spawners::find_or_insert(conn, user.id, "")?;
    Ok(user.id)
}

fn conflict_or(e: DbError, message: impl FnOnce() -> ApiError) -> ApiError {
    if e.is_unique_violation() {
        message()
    } else {
        db_error(e)
    }
}

/// Normalises and validates a username with the authenticator.
fn normalized_name(state: &AppState, name: &str) -> Result<String, String> {
    let normalized = state.authenticator.normalize_username(name);
    if state.authenticator.validate_username(&normalized) {
        Ok(normalized)
    } else {
        Err(normalized)
    }
}

fn models_of(state: &AppState, caller: &Identity, facts: &[UserFacts]) -> Vec<Value> {
    facts
        .iter()
        .map(|f| user_model(state, &caller.scopes, f, false))
        .collect()
}

// === GET /users ===

async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    if !caller
        .scopes
        .check_post_filter(&["list:users"])
        .is_allowed()
    {
        require(&caller, &["list:users"], &Target::None, &NoGroups)?;
    }
    let query = uri.query();
    let sort_param = query_arg(query, "sort").unwrap_or_else(|| "id".to_owned());
    let sort = users::UserSort::parse(&sort_param).ok_or_else(|| {
        ApiError::bad_request(format!(
            "sort must be 'id', 'name', or 'last_activity', not '{sort_param}'"
        ))
    })?;
    let hub = &state.config.hub;
    let page = Page::parse(
        &headers,
        query,
        hub.api_page_default_limit.get() as usize,
        hub.api_page_max_limit.get() as usize,
    )?;
    let state_filter = match query_arg(query, "state").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(users::ServerStateFilter::parse(&s).ok_or_else(|| {
            ApiError::bad_request(format!("Unrecognized state filter: {}", py_str_repr(&s)))
        })?),
    };
    let only = match caller
        .scopes
        .filter_for_list("list:users")
        .restrict_to(&[FilterKind::User, FilterKind::Group])
    {
        Err(kind) => {
            tracing::warn!(caller = %caller.principal.name(), "invalid {kind} filter on list:users");
            return Err(ApiError::bare(StatusCode::FORBIDDEN));
        }
        Ok(ListFilter::All) => None,
        Ok(ListFilter::Only(filters)) => Some(users::UserScopeFilter {
            users: filters.users().iter().cloned().collect(),
            groups: filters.groups().iter().cloned().collect(),
        }),
        Ok(ListFilter::Nothing) => return Err(ApiError::bare(StatusCode::FORBIDDEN)),
    };
    let name_filter = query_arg(query, "name_filter").filter(|s| !s.is_empty());
    let include_stopped = models::flag(query_arg(query, "include_stopped_servers").as_deref());
    let db_query = users::UserQuery {
        page: PageRequest::new(
            i64::try_from(page.offset).unwrap_or(i64::MAX),
            i64::try_from(page.limit).unwrap_or(i64::MAX),
        ),
        sort,
        name_filter,
        state: state_filter,
        only,
    };
    let (facts, total) = state
        .db
        .run(move |conn| {
            let found = users::list(conn, &db_query)?;
            Ok((load_user_facts(conn, found.items)?, found.total))
        })
        .await
        .map_err(db_error)?;
    let items: Vec<UserView<'_>> = facts
        .iter()
        .filter_map(|f| UserView::new(&state, &caller.scopes, f, include_stopped))
        .collect();
    let total = usize::try_from(total).unwrap_or_default();
    if !page.envelope && page.offset == 0 && total > items.len() {
        tracing::warn!(
            "Truncated user list in request that does not expect pagination. Processing {} of {total} total users.",
            items.len()
        );
    }
    Ok(page.reply_json(&items, total, &request_url(&headers, &uri)))
}

// === POST /users ===

async fn create_users(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> ApiResult<Response> {
    // Creating users needs the unfiltered scope (GHSA-69wv-m5fw-2fhp): no name in the URL.
    require(&caller, &["admin:users"], &Target::None, &NoGroups)?;
    let body = body.into_value()?;
    let missing = || ApiError::bad_request("Must specify at least one user to create");
    let Some(Value::Object(mut data)) = body else {
        return Err(missing());
    };
    let usernames = data.shift_remove("usernames").unwrap_or(Value::Null);
    if !truthy(&usernames) {
        return Err(missing());
    }
    let Value::Array(usernames) = usernames else {
        return Err(ApiError::bad_request(format!(
            "usernames must be {}, not: {}",
            FieldType::StrList.python_name(),
            py_type(&usernames)
        )));
    };
    let data = Value::Object(data);
    let data = check_model(&data, USER_MODEL_TYPES, "user")?;
    let admin = data.get("admin").and_then(Value::as_bool).unwrap_or(false);
    escalation::check_user_create(caller.principal.admin(), admin).map_err(escalation_error)?;

    let mut names: Vec<String> = Vec::with_capacity(usernames.len());
    let mut invalid: Vec<String> = Vec::new();
    for raw in &usernames {
        let Some(raw) = raw.as_str() else {
            return Err(ApiError::bad_request(format!(
                "usernames must be a list of {}, not: {}",
                FieldType::Str.python_name(),
                py_type(raw)
            )));
        };
        match normalized_name(&state, raw) {
            Ok(name) => {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            Err(name) => invalid.push(name),
        }
    }
    match invalid.as_slice() {
        [] => {}
        [one] => return Err(ApiError::bad_request(format!("Invalid username: {one}"))),
        many => {
            return Err(ApiError::bad_request(format!(
                "Invalid usernames: {}",
                many.join(", ")
            )));
        }
    }
    let requested = usernames.len();
    let created = state
        .db
        .transaction(move |conn| {
            let existing: BTreeSet<String> = users::find_by_names(conn, &names)?
                .into_iter()
                .map(|u| u.name)
                .collect();
            let mut created = Vec::new();
            for name in names.iter().filter(|n| !existing.contains(*n)) {
                created.push(insert_user(conn, name, admin)?);
            }
            let mut list = Vec::with_capacity(created.len());
            for id in created {
                if let Some(user) = users::find_by_id(conn, id)? {
                    list.push(user);
                }
            }
            load_user_facts(conn, list)
        })
        .await
        .map_err(|e| {
            conflict_or(e, || {
                ApiError::conflict(format!("All {requested} users already exist"))
            })
        })?;
    if created.is_empty() {
        return Err(ApiError::conflict(format!(
            "All {requested} users already exist"
        )));
    }
    for f in &created {
        tracing::info!(caller = %caller.principal.name(), user = %f.user.name, admin, "created user");
    }
    Ok((
        StatusCode::CREATED,
        Json(Value::Array(models_of(&state, &caller, &created))),
    )
        .into_response())
}

// === GET /users/{name} ===

async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    NameParam(name): NameParam,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Json<Value>> {
    let facts = authorized_user(&state, &caller, &READ_USER_SCOPES, &name).await?;
    let include_stopped =
        models::flag(query_arg(uri.query(), "include_stopped_servers").as_deref());
    // `auth_state` (present only with `admin:auth_state`) stays null: this hub stores none yet.
    Ok(Json(user_model(
        &state,
        &caller.scopes,
        &facts,
        include_stopped,
    )))
}

// === POST /users/{name} ===

async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    NameParam(name): NameParam,
    body: JsonBody,
) -> ApiResult<Response> {
    let existing = load_user(&state, &name).await?;
    let no_groups: Vec<String> = Vec::new();
    let membership = UserGroups {
        user: &name,
        groups: existing.as_ref().map_or(&no_groups, |f| &f.groups),
    };
    require(&caller, &["admin:users"], &Target::User(&name), &membership)?;
    let data = body.into_value()?;
    // Deviation: JupyterHub stores the URL name as given; we normalise and validate it as for
    // `POST /users`, so a user created here can also log in.
    let name = normalized_name(&state, &name)
        .map_err(|bad| ApiError::bad_request(format!("Invalid username: {bad}")))?;
    if existing.is_some() || load_user(&state, &name).await?.is_some() {
        return Err(ApiError::conflict(format!("User {name} already exists")));
    }
    let mut admin = false;
    if let Some(data) = data.as_ref().filter(|d| truthy(d)) {
        let data = check_model(data, USER_MODEL_TYPES, "user")?;
        admin = data.get("admin").and_then(Value::as_bool).unwrap_or(false);
        escalation::check_user_create(caller.principal.admin(), admin).map_err(escalation_error)?;
    }
    let conflict_name = name.clone();
    let created = state
        .db
        .transaction(move |conn| {
            insert_user(conn, &name, admin)?;
            load_user_blocking(conn, &name)
        })
        .await
        .map_err(|e| {
            conflict_or(e, || {
                ApiError::conflict(format!("User {conflict_name} already exists"))
            })
        })?
        .ok_or_else(|| ApiError::internal("created user vanished"))?;
    tracing::info!(caller = %caller.principal.name(), user = %created.user.name, admin, "created user");
    Ok((
        StatusCode::CREATED,
        Json(user_model(&state, &caller.scopes, &created, false)),
    )
        .into_response())
}

// === PATCH /users/{name} ===

/// What a PATCH changes, resolved and checked before anything is written.
#[derive(Debug, Default)]
struct UserChanges {
    rename: Option<String>,
    admin: Option<bool>,
    group_ids: Option<Vec<i32>>,
    role_ids: Option<Vec<i32>>,
}

async fn patch_user(
    State(state): State<AppState>,
    caller: Caller,
    NameParam(name): NameParam,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let target = authorized_user(&state, &caller, &["admin:users"], &name).await?;
    let data = body.into_value()?.unwrap_or(Value::Null);
    let data = check_model(&data, USER_MODEL_TYPES, "user")?;
    let mut changes = UserChanges::default();
    if let Some(new) = data.get("name").and_then(Value::as_str)
        && new != name
    {
        let new = normalized_name(&state, new)
            .map_err(|bad| ApiError::bad_request(format!("Invalid username: {bad}")))?;
        if load_user(&state, &new).await?.is_some() {
            return Err(ApiError::bad_request(format!(
                "User {new} already exists, username must be unique"
            )));
        }
        changes.rename = Some(new);
    }
    let grants_admin = data.get("admin").and_then(Value::as_bool) == Some(true);
    escalation::check_user_update(caller.principal.admin(), target.user.admin, grants_admin)
        .map_err(escalation_error)?;
    changes.admin = data.get("admin").and_then(Value::as_bool);
    if data.contains_key("auth_state") {
        // coordinate: auth_state needs the crypt-key encryption, which this hub does not have
        // yet; JupyterHub fails with a 500 (EncryptionUnavailable) in the same situation.
        return Err(ApiError::bad_request(
            "Cannot save auth_state: encryption of auth state is not available",
        ));
    }
    let wanted_groups = data
        .contains_key("groups")
        .then(|| str_items(data.get("groups")));
    let wanted_roles = data
        .contains_key("roles")
        .then(|| str_items(data.get("roles")));
    if wanted_groups.is_some() || wanted_roles.is_some() {
        resolve_memberships(
            &state,
            &caller,
            &target,
            wanted_groups,
            wanted_roles,
            &mut changes,
        )
        .await?;
    }

    let user_id = target.user.id;
    let final_name = changes.rename.clone().unwrap_or_else(|| name.clone());
    let log = format!("{changes:?}");
    let rename_conflict = final_name.clone();
    let facts = state
        .db
        .transaction(move |conn| {
            if let Some(new) = &changes.rename {
                users::rename(conn, user_id, new)?;
            }
            if let Some(admin) = changes.admin {
                users::set_admin(conn, user_id, admin)?;
            }
            if let Some(ids) = &changes.group_ids {
                groups::set_user_groups(conn, user_id, ids)?;
            }
            if let Some(ids) = &changes.role_ids {
                roles::set_roles(conn, roles::Grantee::User(user_id), ids)?;
            }
            load_user_blocking(conn, &final_name)
        })
        .await
        .map_err(|e| {
            conflict_or(e, || {
                ApiError::bad_request(format!(
                    "User {rename_conflict} already exists, username must be unique"
                ))
            })
        })?
        .ok_or_else(|| ApiError::bare(StatusCode::NOT_FOUND))?;
    tracing::info!(caller = %caller.principal.name(), user = %name, changes = %log, "updated user");
    let mut model = user_model(&state, &caller.scopes, &facts, false);
    if let Value::Object(m) = &mut model {
        m.insert("auth_state".into(), Value::Null);
    }
    Ok(Json(model))
}

/// Resolves `groups`/`roles` of a PATCH to ids (400 for unknown names) and checks that a
/// non-admin hands out nothing beyond what they hold: new direct roles, and the roles of groups
/// the user joins, expanded for the user, must be within the caller's scopes.
async fn resolve_memberships(
    state: &AppState,
    caller: &Identity,
    target: &UserFacts,
    wanted_groups: Option<Vec<String>>,
    wanted_roles: Option<Vec<String>>,
    changes: &mut UserChanges,
) -> ApiResult<()> {
    let current_groups = target.groups.clone();
    let current_roles = target.roles.clone();
    let (group_rows, group_roles, role_rows) = state
        .db
        .run(move |conn| {
            let group_rows = match &wanted_groups {
                Some(names) => Some((names.clone(), groups::find_by_names(conn, names)?)),
                None => None,
            };
            let joined: Vec<i32> = group_rows
                .iter()
                .flat_map(|(_, rows)| rows.iter())
                .filter(|g| !current_groups.contains(&g.name))
                .map(|g| g.id)
                .collect();
            let group_roles: BTreeSet<String> = roles::names_by_group(conn, &joined)?
                .into_values()
                .flatten()
                .collect();
            let role_rows = match &wanted_roles {
                Some(names) => Some((names.clone(), roles::find_by_names(conn, names)?)),
                None => None,
            };
            Ok((group_rows, group_roles, role_rows))
        })
        .await
        .map_err(db_error)?;
    if let Some((names, rows)) = &group_rows {
        if let Some(missing) = names.iter().find(|n| !rows.iter().any(|g| &g.name == *n)) {
            return Err(ApiError::bad_request(format!("No such group: {missing}")));
        }
        changes.group_ids = Some(rows.iter().map(|g| g.id).collect());
    }
    let mut granted: BTreeSet<String> = group_roles;
    if let Some((names, rows)) = &role_rows {
        if let Some(missing) = names.iter().find(|n| !rows.iter().any(|r| &r.name == *n)) {
            return Err(ApiError::bad_request(format!("No such role: {missing}")));
        }
        granted.extend(
            rows.iter()
                .filter(|r| !current_roles.contains(&r.name))
                .map(|r| r.name.clone()),
        );
        changes.role_ids = Some(rows.iter().map(|r| r.id).collect());
    }
    if !granted.is_empty() {
        let membership = UserGroups {
            user: &target.user.name,
            groups: &target.groups,
        };
        escalation::check_role_grant(
            &state.registry,
            &state.roles,
            caller.principal.admin(),
            &caller.scopes,
            granted.iter().map(String::as_str),
            Owner::User(&target.user.name),
            &membership,
        )
        .map_err(escalation_error)?;
    }
    Ok(())
}

// === DELETE /users/{name} ===

async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    NameParam(name): NameParam,
) -> ApiResult<Response> {
    let target = authorized_user(&state, &caller, &["delete:users"], &name).await?;
    if matches!(&caller.principal, Principal::User(me) if me.id == target.user.id) {
        return Err(ApiError::bad_request("Cannot delete yourself!"));
    }
    // Deviation: JupyterHub lets any `delete:users` holder delete an admin; deleting is the
    // strongest modification, so only admins may delete admins here.
    escalation::check_user_update(caller.principal.admin(), target.user.admin, false)
        .map_err(escalation_error)?;
    let stopping = || {
        ApiError::bad_request(format!(
            "{name}'s server is in the process of stopping, please wait."
        ))
    };
    let stop_pending = |s: &Spawner| {
        s.phase == ServerPhase::Stopping
            || state.servers.snapshot(s.id).pending == Some(Pending::Stop)
    };
    if target.spawners.iter().any(stop_pending) {
        return Err(stopping());
    }
    // Running or starting servers are stopped first (a spawn in flight is cancelled).
    for spawner in &target.spawners {
        let active = spawner.is_active() || state.servers.snapshot(spawner.id).pending.is_some();
        if !active {
            continue;
        }
        match crate::spawn::stop(&state, &target.user, spawner.id, false).await {
            Ok(StopResult::Stopped) => {}
            Ok(StopResult::Pending) => return Err(stopping()),
            Err(ServerError::Refused {
                status, message, ..
            }) => {
                return Err(ApiError::new(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                    message,
                ));
            }
            Err(ServerError::Db(e)) => return Err(db_error(e)),
        }
    }
    for spawner in &target.spawners {
        let server = crate::spawn::lifecycle::server_ref(&target.user, spawner);
        if let Err(e) = state
            .spawner
            .delete_forever(&server, &Value::Object(spawner.state.clone()))
            .await
        {
            tracing::error!(server = %server.full_name(), "error cleaning up persistent resources: {e}");
        }
    }
    let user_id = target.user.id;
    match state
        .db
        .transaction(move |conn| users::delete(conn, user_id))
        .await
    {
        Ok(()) | Err(DbError::NotFound) => {}
        Err(e) => return Err(db_error(e)),
    }
    for spawner in &target.spawners {
        state.servers.forget(spawner.id);
    }
    tracing::info!(caller = %caller.principal.name(), user = %name, "deleted user");
    Ok(StatusCode::NO_CONTENT.into_response())
}

// === POST /users/{name}/admin-access ===

/// Deprecated since JupyterHub 0.8 and a no-op: 200 when `admin_access` is on and the user
/// exists.
async fn admin_access(
    State(state): State<AppState>,
    caller: Caller,
    NameParam(name): NameParam,
) -> ApiResult<Response> {
    let facts = load_user(&state, &name).await?;
    let no_groups: Vec<String> = Vec::new();
    let membership = UserGroups {
        user: &name,
        groups: facts.as_ref().map_or(&no_groups, |f| &f.groups),
    };
    require(&caller, &["servers"], &Target::User(&name), &membership)?;
    tracing::warn!(
        "Deprecated in JupyterHub 0.8. Admin access API is not needed now that we use OAuth."
    );
    if !state.config.hub.admin_access {
        return Err(ApiError::forbidden("admin access to user servers disabled"));
    }
    if facts.is_none() {
        return Err(ApiError::bare(StatusCode::NOT_FOUND));
    }
    Ok(empty_json_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_reprs() {
        assert_eq!(py_repr(&json!(null)), "None");
        assert_eq!(
            py_repr(&json!({"a": [1, true, "x"]})),
            "{'a': [1, True, 'x']}"
        );
        assert_eq!(py_repr(&json!("it's")), "\"it's\"");
        assert_eq!(py_repr(&json!("a\\b\n")), "'a\\\\b\\n'");
        assert_eq!(py_repr(&json!(1.0)), "1.0");
        assert_eq!(py_repr(&json!(1.5)), "1.5");
        assert_eq!(py_type(&json!(1)), "<class 'int'>");
        assert_eq!(py_type(&json!("x")), "<class 'str'>");
    }

    #[test]
    fn model_checks() {
        let ok = json!({"admin": true, "groups": ["a"]});
        assert!(check_model(&ok, USER_MODEL_TYPES, "user").is_ok());
        let e = check_model(&json!({"nope": 1}), USER_MODEL_TYPES, "user").unwrap_err();
        assert_eq!(e.message.as_deref(), Some("Invalid JSON keys: {'nope': 1}"));
        let e = check_model(&json!({"admin": "yes"}), USER_MODEL_TYPES, "user").unwrap_err();
        assert_eq!(
            e.message.as_deref(),
            Some("user.admin must be <class 'bool'>, not: <class 'str'>")
        );
        let e = check_model(&json!(null), USER_MODEL_TYPES, "user").unwrap_err();
        assert_eq!(e.message.as_deref(), Some("Invalid JSON data: None"));
        assert!(check_model(&json!({"roles": [1]}), USER_MODEL_TYPES, "user").is_err());
    }

    #[test]
    fn truthiness_and_args() {
        for v in [
            json!(null),
            json!(""),
            json!(0),
            json!([]),
            json!({}),
            json!(false),
        ] {
            assert!(!truthy(&v), "{v}");
        }
        assert!(truthy(&json!("x")));
        assert_eq!(query_arg(Some("a=1&a=%202%20"), "a").as_deref(), Some("2"));
        assert_eq!(query_arg(Some("a"), "a").as_deref(), Some(""));
        assert_eq!(query_arg(None, "a"), None);
    }
}
