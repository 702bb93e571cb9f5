//! `/groups`, `/groups/{name}`, `/groups/{name}/users` and `/groups/{name}/properties`
//! (hub-protocol §1.3): listing, creating and deleting groups, changing members and properties,
//! with JupyterHub 6.1.1's statuses and messages.
//!
//! Creating groups through `POST /groups` needs the unfiltered `admin:groups`
//! (GHSA-69wv-m5fw-2fhp). Adding members is refused when the group's roles would give the new
//! member scopes a non-admin caller does not hold ([`crate::rbac::escalation`]); JupyterHub
//! allows that on purpose.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use crate::access::Identity;
use crate::api::extract::{Caller, db_error, query_arg, require};
use crate::api::pagination::Page;
use crate::api::pagination::request_url;
use crate::api::python::{py_type, truthy};
use crate::api::users::{FieldType, JsonBody, NameParam, check_model, escalation_error, str_items};
use crate::db::DbConnection;
use crate::db::models::{PageRequest, groups, roles, users};
use crate::error::{ApiError, ApiResult};
use crate::rbac::escalation;
use crate::rbac::fields::{group_model_keys, retain_keys};
use crate::rbac::{FilterKind, ListFilter, NoGroups, Owner, ScopeSet, Target, UserGroups};
use crate::state::AppState;

/// Routes under `/hub/api`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/groups", get(list_groups).post(create_groups))
        .route(
            "/groups/{name}",
            get(get_group).post(create_group).delete(delete_group),
        )
        .route(
            "/groups/{name}/users",
            post(add_members).delete(remove_members),
        )
        .route("/groups/{name}/properties", put(set_properties))
}

/// The keys a group model in a request may have (JupyterHub's `_group_model_types`).
const GROUP_MODEL_TYPES: &[(&str, FieldType)] = &[
    ("name", FieldType::Str),
    ("users", FieldType::StrList),
    ("roles", FieldType::StrList),
];

/// A group with its member and role names.
#[derive(Debug, Clone)]
pub struct GroupFacts {
    /// The row.
    pub group: groups::Group,
    /// Member names, sorted.
    pub users: Vec<String>,
    /// Names of the roles granted to the group.
    pub roles: Vec<String>,
}

/// Loads members and roles of several groups in a fixed number of queries.
///
/// # Errors
/// Database failures.
pub fn load_group_facts(
    conn: &mut DbConnection,
    list: Vec<groups::Group>,
) -> diesel::QueryResult<Vec<GroupFacts>> {
    let ids: Vec<i32> = list.iter().map(|g| g.id).collect();
    let mut members = groups::member_names_by_group(conn, &ids)?;
    let mut role_names = roles::names_by_group(conn, &ids)?;
    Ok(list
        .into_iter()
        .map(|group| GroupFacts {
            users: members.remove(&group.id).unwrap_or_default(),
            roles: role_names.remove(&group.id).unwrap_or_default(),
            group,
        })
        .collect())
}

/// The group model as `scopes` may see it (hub-protocol §1.2).
pub fn group_model(scopes: &ScopeSet, facts: &GroupFacts) -> Value {
    let keys = group_model_keys(scopes, &facts.group.name);
    let mut m = Map::new();
    m.insert("kind".into(), json!("group"));
    m.insert("name".into(), json!(facts.group.name));
    m.insert("roles".into(), json!(facts.roles));
    m.insert("users".into(), json!(facts.users));
    m.insert(
        "properties".into(),
        Value::Object(facts.group.properties.clone()),
    );
    retain_keys(&mut m, &keys);
    Value::Object(m)
}

fn no_such_group(name: &str) -> ApiError {
    ApiError::not_found(format!("No such group: {name}"))
}

fn load_group_blocking(
    conn: &mut DbConnection,
    name: &str,
) -> diesel::QueryResult<Option<GroupFacts>> {
    match groups::find_by_name(conn, name)? {
        Some(group) => Ok(load_group_facts(conn, vec![group])?.pop()),
        None => Ok(None),
    }
}

/// Checks `scopes` on group `name`, then loads it: 404 `No such group: x` if it does not exist.
async fn authorized_group(
    state: &AppState,
    caller: &Identity,
    scopes: &[&str],
    name: &str,
) -> ApiResult<GroupFacts> {
    require(caller, scopes, &Target::Group(name), &NoGroups)?;
    let lookup = name.to_owned();
    state
        .db
        .run(move |conn| load_group_blocking(conn, &lookup))
        .await
        .map_err(db_error)?
        .ok_or_else(|| no_such_group(name))
}

/// The users named in a request, normalised: `(name, id)` in request order, or 400
/// `No such user: x` for the first unknown one.
async fn resolve_users(state: &AppState, names: &[String]) -> ApiResult<Vec<(String, i32)>> {
    let normalized: Vec<String> = names
        .iter()
        .map(|n| state.authenticator.normalize_username(n))
        .collect();
    let lookup = normalized.clone();
    let found: HashMap<String, i32> = state
        .db
        .run(move |conn| users::find_by_names(conn, &lookup))
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|u| (u.name, u.id))
        .collect();
    let mut out: Vec<(String, i32)> = Vec::with_capacity(normalized.len());
    for name in normalized {
        let Some(&id) = found.get(&name) else {
            return Err(ApiError::bad_request(format!("No such user: {name}")));
        };
        if !out.iter().any(|(_, known)| *known == id) {
            out.push((name, id));
        }
    }
    Ok(out)
}

// === GET /groups ===

async fn list_groups(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Json<Value>> {
    if !caller
        .scopes
        .check_post_filter(&["list:groups"])
        .is_allowed()
    {
        require(&caller, &["list:groups"], &Target::None, &NoGroups)?;
    }
    let only: Option<Vec<String>> = match caller
        .scopes
        .filter_for_list("list:groups")
        .restrict_to(&[FilterKind::Group])
    {
        Err(kind) => {
            tracing::warn!(caller = %caller.principal.name(), "invalid {kind} filter on list:groups");
            return Err(ApiError::bare(StatusCode::FORBIDDEN));
        }
        Ok(ListFilter::All) => None,
        Ok(ListFilter::Only(filters)) => Some(filters.groups().iter().cloned().collect()),
        Ok(ListFilter::Nothing) => return Err(ApiError::bare(StatusCode::FORBIDDEN)),
    };
    let hub = &state.config.hub;
    let page = Page::parse(
        &headers,
        uri.query(),
        hub.api_page_default_limit.get() as usize,
        hub.api_page_max_limit.get() as usize,
    )?;
    let request = PageRequest::new(
        i64::try_from(page.offset).unwrap_or(i64::MAX),
        i64::try_from(page.limit).unwrap_or(i64::MAX),
    );
    // Not in JupyterHub 6.1: `name_filter` as for `GET /users` (the admin page's group search).
    let name_filter = query_arg(uri.query(), "name_filter").filter(|s| !s.is_empty());
    let (facts, total) = state
        .db
        .run(move |conn| {
            let found =
                groups::list_matching(conn, request, only.as_deref(), name_filter.as_deref())?;
            Ok((load_group_facts(conn, found.items)?, found.total))
        })
        .await
        .map_err(db_error)?;
    let items: Vec<Value> = facts
        .iter()
        .map(|f| group_model(&caller.scopes, f))
        .collect();
    let total = usize::try_from(total).unwrap_or_default();
    if !page.envelope && page.offset == 0 && total > items.len() {
        tracing::warn!(
            "Truncated group list in request that does not expect pagination. Replying with {} of {total} total groups.",
            items.len()
        );
    }
    Ok(Json(page.reply(items, total, &request_url(&headers, &uri))))
}

// === POST /groups ===

async fn create_groups(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> ApiResult<Response> {
    // No name in the URL: only the unfiltered scope creates groups (GHSA-69wv-m5fw-2fhp).
    require(&caller, &["admin:groups"], &Target::None, &NoGroups)?;
    let missing = || ApiError::bad_request("Must specify at least one group to create");
    let Some(Value::Object(mut model)) = body.into_value()? else {
        return Err(missing());
    };
    let names = model.shift_remove("groups").unwrap_or(Value::Null);
    if !truthy(&names) {
        return Err(missing());
    }
    let Value::Array(names) = names else {
        return Err(ApiError::bad_request(format!(
            "groups must be {}, not: {}",
            FieldType::StrList.python_name(),
            py_type(&names)
        )));
    };
    let mut group_names: Vec<String> = Vec::with_capacity(names.len());
    for name in &names {
        let Some(name) = name.as_str() else {
            return Err(ApiError::bad_request(format!(
                "group names must be {}, not: {}",
                FieldType::Str.python_name(),
                py_type(name)
            )));
        };
        check_group_name(name)?;
        if group_names.iter().any(|n| n == name) {
            return Err(ApiError::conflict(format!("Group {name} already exists")));
        }
        group_names.push(name.to_owned());
    }
    let model = Value::Object(model);
    let model = check_model(&model, GROUP_MODEL_TYPES, "group")?;
    let members = resolve_users(&state, &str_items(model.get("users"))).await?;
    let member_ids: Vec<i32> = members.iter().map(|(_, id)| *id).collect();
    let lookup = group_names.clone();
    let existing = state
        .db
        .run(move |conn| groups::find_by_names(conn, &lookup))
        .await
        .map_err(db_error)?;
    if let Some(name) = group_names
        .iter()
        .find(|n| existing.iter().any(|g| &g.name == *n))
    {
        return Err(ApiError::conflict(format!("Group {name} already exists")));
    }
    // All or nothing: JupyterHub commits group by group and may leave the first ones behind.
    let created = state
        .db
        .transaction(move |conn| {
            let created = groups::insert_many_with_members(conn, &group_names, &member_ids)?;
            load_group_facts(conn, created)
        })
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                ApiError::conflict("Group already exists")
            } else {
                db_error(e)
            }
        })?;
    for f in &created {
        tracing::info!(caller = %caller.principal.name(), group = %f.group.name, users = f.users.len(), "created group");
    }
    let models: Vec<Value> = created
        .iter()
        .map(|f| group_model(&caller.scopes, f))
        .collect();
    Ok((StatusCode::CREATED, Json(Value::Array(models))).into_response())
}

/// Deviation: JupyterHub accepts the empty name too, which no URL can then reach.
fn check_group_name(name: &str) -> ApiResult<()> {
    if name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Invalid group name: {}",
            crate::api::python::py_str_repr(name)
        )));
    }
    Ok(())
}

// === /groups/{name} ===

async fn get_group(
    State(state): State<AppState>,
    caller: Caller,
    NameParam(name): NameParam,
) -> ApiResult<Json<Value>> {
    let facts = authorized_group(
        &state,
        &caller,
        &["read:groups", "read:groups:name", "read:roles:groups"],
        &name,
    )
    .await?;
    Ok(Json(group_model(&caller.scopes, &facts)))
}

async fn create_group(
    State(state): State<AppState>,
    caller: Caller,
    NameParam(name): NameParam,
    body: JsonBody,
) -> ApiResult<Response> {
    require(&caller, &["admin:groups"], &Target::Group(&name), &NoGroups)?;
    let model = body.into_value()?.unwrap_or_else(|| json!({}));
    let model = check_model(&model, GROUP_MODEL_TYPES, "group")?;
    let lookup = name.clone();
    let exists = state
        .db
        .run(move |conn| groups::find_by_name(conn, &lookup))
        .await
        .map_err(db_error)?
        .is_some();
    if exists {
        return Err(ApiError::conflict(format!("Group {name} already exists")));
    }
    let members = resolve_users(&state, &str_items(model.get("users"))).await?;
    let member_ids: Vec<i32> = members.iter().map(|(_, id)| *id).collect();
    let new_name = name.clone();
    let created = state
        .db
        .transaction(move |conn| {
            let created = groups::insert_many_with_members(conn, &[new_name], &member_ids)?;
            load_group_facts(conn, created)
        })
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                ApiError::conflict(format!("Group {name} already exists"))
            } else {
                db_error(e)
            }
        })?;
    let Some(facts) = created.first() else {
        return Err(ApiError::internal("created group vanished"));
    };
    tracing::info!(caller = %caller.principal.name(), group = %facts.group.name, users = facts.users.len(), "created group");
    Ok((
        StatusCode::CREATED,
        Json(group_model(&caller.scopes, facts)),
    )
        .into_response())
}

async fn delete_group(
    State(state): State<AppState>,
    caller: Caller,
    NameParam(name): NameParam,
) -> ApiResult<Response> {
    let facts = authorized_group(&state, &caller, &["delete:groups"], &name).await?;
    let id = facts.group.id;
    match state
        .db
        .transaction(move |conn| groups::delete(conn, id))
        .await
    {
        Ok(()) | Err(crate::db::DbError::NotFound) => {}
        Err(e) => return Err(db_error(e)),
    }
    tracing::info!(caller = %caller.principal.name(), group = %name, "deleted group");
    Ok(StatusCode::NO_CONTENT.into_response())
}

// === /groups/{name}/users ===

/// The `users` of a membership request, after the checks JupyterHub makes.
fn member_names(body: Option<Value>, verb: &str) -> ApiResult<Vec<String>> {
    let body = body.unwrap_or(Value::Null);
    let model = check_model(&body, GROUP_MODEL_TYPES, "group")?;
    if !model.contains_key("users") {
        return Err(ApiError::bad_request(format!(
            "Must specify users to {verb}"
        )));
    }
    Ok(str_items(model.get("users")))
}

async fn add_members(
    State(state): State<AppState>,
    caller: Caller,
    NameParam(name): NameParam,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let facts = authorized_group(&state, &caller, &["groups"], &name).await?;
    let names = member_names(body.into_value()?, "add")?;
    let members = resolve_users(&state, &names).await?;
    let joining: Vec<(String, i32)> = members
        .into_iter()
        .filter(|(n, _)| !facts.users.contains(n))
        .collect();
    check_membership_grant(&state, &caller, &facts, &joining).await?;
    let group_id = facts.group.id;
    let ids: Vec<i32> = joining.iter().map(|(_, id)| *id).collect();
    let updated = state
        .db
        .transaction(move |conn| {
            groups::add_members(conn, group_id, &ids)?;
            reload(conn, group_id)
        })
        .await
        .map_err(db_error)?
        .ok_or_else(|| no_such_group(&name))?;
    tracing::info!(caller = %caller.principal.name(), group = %name, added = joining.len(), "added users to group");
    Ok(Json(group_model(&caller.scopes, &updated)))
}

async fn remove_members(
    State(state): State<AppState>,
    caller: Caller,
    NameParam(name): NameParam,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let facts = authorized_group(&state, &caller, &["groups"], &name).await?;
    let names = member_names(body.into_value()?, "delete")?;
    let members = resolve_users(&state, &names).await?;
    let group_id = facts.group.id;
    let ids: Vec<i32> = members.iter().map(|(_, id)| *id).collect();
    let updated = state
        .db
        .transaction(move |conn| {
            groups::remove_members(conn, group_id, &ids)?;
            reload(conn, group_id)
        })
        .await
        .map_err(db_error)?
        .ok_or_else(|| no_such_group(&name))?;
    tracing::info!(caller = %caller.principal.name(), group = %name, removed = members.len(), "removed users from group");
    Ok(Json(group_model(&caller.scopes, &updated)))
}

fn reload(conn: &mut DbConnection, group_id: i32) -> diesel::QueryResult<Option<GroupFacts>> {
    match groups::find_by_id(conn, group_id)? {
        Some(group) => Ok(load_group_facts(conn, vec![group])?.pop()),
        None => Ok(None),
    }
}

/// A non-admin may not make someone a member of a group whose roles grant that user scopes the
/// caller does not hold (this covers a caller adding themselves to an admin group).
async fn check_membership_grant(
    state: &AppState,
    caller: &Identity,
    group: &GroupFacts,
    joining: &[(String, i32)],
) -> ApiResult<()> {
    if caller.principal.admin() || group.roles.is_empty() || joining.is_empty() {
        return Ok(());
    }
    let ids: Vec<i32> = joining.iter().map(|(_, id)| *id).collect();
    let mut current = state
        .db
        .run(move |conn| groups::names_by_user(conn, &ids))
        .await
        .map_err(db_error)?;
    for (user, id) in joining {
        let user_groups = current.remove(id).unwrap_or_default();
        let membership = UserGroups {
            user,
            groups: &user_groups,
        };
        escalation::check_role_grant(
            &state.registry,
            &state.roles,
            false,
            &caller.scopes,
            group.roles.iter().map(String::as_str),
            Owner::User(user),
            &membership,
        )
        .map_err(escalation_error)?;
    }
    Ok(())
}

// === PUT /groups/{name}/properties ===

async fn set_properties(
    State(state): State<AppState>,
    caller: Caller,
    NameParam(name): NameParam,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let facts = authorized_group(&state, &caller, &["groups"], &name).await?;
    let Some(Value::Object(properties)) = body.into_value()? else {
        return Err(ApiError::bad_request("Must specify properties"));
    };
    let group_id = facts.group.id;
    let updated = state
        .db
        .transaction(move |conn| {
            groups::set_properties(conn, group_id, &properties)?;
            reload(conn, group_id)
        })
        .await
        .map_err(db_error)?
        .ok_or_else(|| no_such_group(&name))?;
    tracing::info!(caller = %caller.principal.name(), group = %name, "updated group properties");
    Ok(Json(group_model(&caller.scopes, &updated)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_gated() {
        let facts = GroupFacts {
            group: groups::Group {
                id: 1,
                name: "g".into(),
                properties: Map::new(),
            },
            users: vec!["a".into()],
            roles: vec!["r".into()],
        };
        let mut scopes = ScopeSet::new();
        scopes.insert("read:groups:name", None);
        let m = group_model(&scopes, &facts);
        assert_eq!(m, json!({"kind": "group", "name": "g"}));
    }
}
