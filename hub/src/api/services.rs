//! Services: `GET /services` (a dict keyed by name, never paginated), `GET /services/{name}`,
//! and services created at runtime: `POST` and `DELETE /services/{name}` (hub-protocol §1.3).
//!
//! A runtime service is stored like a configured one (`from_config = false`) with its API
//! token (hashed like any user-provided token) and, when it has a URL or OAuth settings, its
//! OAuth client. Configured services cannot be deleted through the API (405), and the hub does
//! not start processes for runtime services (`command` is refused).

use std::collections::BTreeSet;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use serde_json::{Map, Value};

use crate::access::{Identity, Principal};
use crate::api::extract::{ApiJson, Caller, db_error, require};
use crate::api::models::{self, url_name};
use crate::api::python::{py_repr, truthy};
use crate::api::tokens::scope_error_message;
use crate::db::DbError;
use crate::db::models::{api_tokens, oauth_clients, roles, services};
use crate::error::{ApiError, ApiResult};
use crate::identity::tokens::{self, HashedToken};
use crate::proxy::DesiredRoute;
use crate::proxy::sync::routespec;
use crate::rbac::grants::{GrantError, TokenScopes, access_scope, check_token_scopes};
use crate::rbac::roles::ADMIN_ROLE_SCOPES;
use crate::rbac::{ClientTarget, NoGroups, Owner, Target};
use crate::state::AppState;

/// Routes under `/hub/api`.
pub fn router() -> Router<AppState> {
    Router::new().route("/services", get(list_services)).route(
        "/services/{name}",
        get(get_service).post(create_service).delete(delete_service),
    )
}

/// The role names shown in a service model: its granted roles, plus `admin` for admin
/// services (the default role they hold).
fn role_names(service: &services::Service, granted: Option<Vec<String>>) -> Vec<String> {
    let mut names = granted.unwrap_or_default();
    if service.admin {
        names.push("admin".to_owned());
    }
    names.sort();
    names.dedup();
    names
}

// === GET /services ===

async fn list_services(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let access = caller.scopes.check_post_filter(&["list:services"]);
    if !access.is_allowed() {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: access.message(),
            headers: Vec::new(),
        });
    }
    let filter = caller.scopes.filter_for_list("list:services");
    let (list, mut granted) = state
        .db
        .run(|conn| {
            let list = services::list(conn)?;
            let ids: Vec<i32> = list.iter().map(|s| s.id).collect();
            let granted = roles::names_by_service(conn, &ids)?;
            Ok((list, granted))
        })
        .await
        .map_err(db_error)?;
    let mut out = Map::new();
    for service in list {
        if !filter.matches(&Target::Service(&service.name), &NoGroups) {
            continue;
        }
        let roles = role_names(&service, granted.remove(&service.id));
        out.insert(
            service.name.clone(),
            models::managed_service_model(&state, &caller.scopes, &service, &roles),
        );
    }
    Ok(Json(Value::Object(out)))
}

// === GET /services/{name} ===

async fn find_service(
    state: &AppState,
    name: &str,
) -> ApiResult<Option<(services::Service, Vec<String>)>> {
    let name = name.to_owned();
    state
        .db
        .run(move |conn| {
            let Some(service) = services::find_by_name(conn, &name)? else {
                return Ok(None);
            };
            let granted = roles::names_by_service(conn, &[service.id])?.remove(&service.id);
            let roles = role_names(&service, granted);
            Ok(Some((service, roles)))
        })
        .await
        .map_err(db_error)
}

async fn get_service(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    require(
        &caller,
        &["read:services", "read:services:name", "read:roles:services"],
        &Target::Service(&name),
        &NoGroups,
    )?;
    let (service, roles) = find_service(&state, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such service: {name}")))?;
    Ok(Json(models::managed_service_model(
        &state,
        &caller.scopes,
        &service,
        &roles,
    )))
}

// === POST /services/{name} ===

/// The keys a service spec may have, with the Python type JupyterHub requires of each.
const SPEC_TYPES: &[(&str, &str)] = &[
    ("name", "str"),
    ("admin", "bool"),
    ("url", "str"),
    ("oauth_client_allowed_scopes", "list"),
    ("api_token", "str"),
    ("info", "dict"),
    ("display", "bool"),
    ("oauth_no_confirm", "bool"),
    ("command", "list"),
    ("cwd", "str"),
    ("environment", "dict"),
    ("user", "str"),
    ("oauth_client_id", "str"),
    ("oauth_redirect_uri", "str"),
];

/// The Python type name of a decoded JSON value.
fn py_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// JupyterHub's model check: known keys only, each of the right type.
fn check_spec(spec: &Map<String, Value>) -> ApiResult<()> {
    if !spec
        .keys()
        .all(|k| SPEC_TYPES.iter().any(|(known, _)| known == k))
    {
        return Err(ApiError::bad_request(format!(
            "Invalid JSON keys: {}",
            py_repr(&Value::Object(spec.clone()))
        )));
    }
    for (key, value) in spec {
        let expected = SPEC_TYPES
            .iter()
            .find(|(k, _)| k == key)
            .map_or("object", |(_, t)| *t);
        let actual = py_type(value);
        if actual != expected {
            return Err(ApiError::bad_request(format!(
                "service.{key} must be <class '{expected}'>, not: <class '{actual}'>"
            )));
        }
    }
    Ok(())
}

fn str_of<'a>(spec: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    spec.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn bool_of(spec: &Map<String, Value>, key: &str, default: bool) -> bool {
    spec.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// Refuses specs asking for more than the requester holds: an admin service needs every scope
/// of the `admin` role, and OAuth clients may only be allowed scopes the requester holds.
/// The requester's effective scopes are used (those of the token making the request).
fn check_requested_scopes(
    state: &AppState,
    caller: &Identity,
    spec: &Map<String, Value>,
) -> ApiResult<()> {
    let mut requested: Vec<String> = Vec::new();
    if bool_of(spec, "admin", false) {
        requested.extend(ADMIN_ROLE_SCOPES.iter().map(|s| (*s).to_owned()));
    }
    if let Some(Value::Array(items)) = spec.get("oauth_client_allowed_scopes") {
        for item in items {
            let Value::String(scope) = item else {
                return Err(ApiError::bad_request(format!(
                    "service.oauth_client_allowed_scopes must be a list of strings, not {}",
                    py_repr(&Value::Array(items.clone()))
                )));
            };
            requested.push(scope.clone());
        }
    }
    if requested.is_empty() {
        return Ok(());
    }
    let owner = match &caller.principal {
        Principal::User(u) => Owner::User(&u.name),
        Principal::Service(s) => Owner::Service(&s.name),
    };
    check_token_scopes(
        &state.registry,
        &TokenScopes {
            raw: &requested,
            owner,
            client: None,
        },
        &caller.scopes,
        &caller.own_groups(),
    )
    .map_err(|e| match e {
        GrantError::Scope(e) => ApiError::bad_request(scope_error_message(&e)),
        other => ApiError::bad_request(other.to_string()),
    })
}

/// What a valid spec turns into.
struct NewService {
    name: String,
    admin: bool,
    url: Option<String>,
    info: Map<String, Value>,
    display: bool,
    oauth_no_confirm: bool,
    api_token: Option<String>,
    oauth: Option<NewClient>,
}

struct NewClient {
    identifier: String,
    redirect_uri: String,
    allowed_scopes: Vec<String>,
}

fn build_service(state: &AppState, name: &str, spec: &Map<String, Value>) -> ApiResult<NewService> {
    let failed = || ApiError::bad_request(format!("Failed to create service {name}"));
    let url = match str_of(spec, "url") {
        None => None,
        Some(text) => {
            let parsed = url::Url::parse(text).map_err(|_| failed())?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(failed());
            }
            Some(text.to_owned())
        }
    };
    let api_token = match str_of(spec, "api_token") {
        None => None,
        Some(token) => {
            tokens::check_user_provided_token(token).map_err(|e| {
                ApiError::bad_request(format!("Failed to create service {name}: api {e}"))
            })?;
            Some(token.to_owned())
        }
    };
    let client_id = str_of(spec, "oauth_client_id");
    let redirect = str_of(spec, "oauth_redirect_uri");
    let oauth_no_confirm = bool_of(spec, "oauth_no_confirm", false);
    // JupyterHub: OAuth is available with a URL, or when any OAuth setting is given.
    let oauth = if url.is_some() || client_id.is_some() || redirect.is_some() || oauth_no_confirm {
        let identifier = client_id.map_or_else(|| format!("service-{name}"), str::to_owned);
        if !identifier.starts_with("service-") {
            return Err(failed());
        }
        let redirect_uri = match (redirect, &url) {
            (Some(r), _) => r.to_owned(),
            (None, Some(_)) => format!(
                "{}services/{}/oauth_callback",
                state.config.hub.base_url.as_str(),
                url_name(name)
            ),
            // An external service without a route needs an explicit redirect URI.
            (None, None) => return Err(failed()),
        };
        let mut allowed: BTreeSet<String> = match spec.get("oauth_client_allowed_scopes") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => BTreeSet::new(),
        };
        allowed.insert(access_scope(ClientTarget::Service(name)));
        Some(NewClient {
            identifier,
            redirect_uri,
            allowed_scopes: allowed.into_iter().collect(),
        })
    } else {
        None
    };
    let info = match spec.get("info") {
        Some(Value::Object(info)) => info.clone(),
        _ => Map::new(),
    };
    Ok(NewService {
        name: name.to_owned(),
        admin: bool_of(spec, "admin", false),
        url,
        info,
        display: bool_of(spec, "display", true),
        oauth_no_confirm,
        api_token,
        oauth,
    })
}

/// Why storing a new service failed, beyond the database.
enum StoreError {
    Db(DbError),
    TokenInUse,
}

async fn store_service(state: &AppState, new: NewService) -> Result<services::Service, StoreError> {
    let rounds = if state.config.hub.trust_user_provided_tokens {
        tokens::GENERATED_ROUNDS
    } else {
        tokens::USER_PROVIDED_ROUNDS
    };
    let hashed = new
        .api_token
        .as_deref()
        .map(|t| HashedToken::new(t, rounds).to_string());
    let outcome = state
        .db
        .transaction(move |conn| {
            if let Some(token) = &new.api_token {
                let now = crate::db::now();
                let taken = api_tokens::find_by_prefix(conn, tokens::token_prefix(token), now)?
                    .iter()
                    .any(|row| tokens::verify_token(&row.hashed, token));
                if taken {
                    return Ok(None);
                }
            }
            let service = services::insert(
                conn,
                &services::ServiceSpec {
                    name: &new.name,
                    admin: new.admin,
                    from_config: false,
                    url: new.url.as_deref(),
                    info: new.info.clone(),
                    display: new.display,
                    oauth_no_confirm: new.oauth_no_confirm,
                },
            )?;
            if let (Some(token), Some(hashed)) = (&new.api_token, &hashed) {
                api_tokens::insert(
                    conn,
                    &api_tokens::NewApiToken {
                        prefix: tokens::token_prefix(token),
                        hashed,
                        owner: api_tokens::TokenOwner::Service(service.id),
                        spawner_id: None,
                        client_id: oauth_clients::JUPYTERHUB_CLIENT_ID,
                        session_id: None,
                        note: &format!("Service {} token from API", new.name),
                        scopes: &["inherit".to_owned()],
                        expires_at: None,
                    },
                )?;
            }
            if let Some(client) = &new.oauth {
                let description = format!("JupyterHub service {}", new.name);
                oauth_clients::insert(
                    conn,
                    &oauth_clients::NewOAuthClient {
                        identifier: &client.identifier,
                        description: &description,
                        // The client secret is the service's API token; without one the
                        // client cannot complete a token exchange.
                        secret: hashed.as_deref().unwrap_or(""),
                        redirect_uri: &client.redirect_uri,
                        allowed_scopes: &client.allowed_scopes,
                        owner: oauth_clients::ClientOwner::Service(service.id),
                    },
                )?;
            }
            Ok(Some(service))
        })
        .await
        .map_err(StoreError::Db)?;
    outcome.ok_or(StoreError::TokenInUse)
}

async fn create_service(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Response> {
    require(
        &caller,
        &["admin:services"],
        &Target::Service(&name),
        &NoGroups,
    )?;
    if find_service(&state, &name).await?.is_some() {
        return Err(ApiError::conflict(format!("Service {name} already exists")));
    }
    let mut spec = match body {
        Some(Value::Object(map)) if !map.is_empty() => map,
        _ => return Err(ApiError::bad_request("Invalid service data")),
    };
    spec.insert("name".into(), Value::String(name.clone()));
    check_spec(&spec)?;
    check_requested_scopes(&state, &caller, &spec)?;
    if spec.get("command").is_some_and(truthy) {
        return Err(ApiError::bad_request(format!(
            "Can not create managed service {name} at runtime"
        )));
    }
    let new = build_service(&state, &name, &spec)?;
    let url = new.url.clone();
    let service = match store_service(&state, new).await {
        Ok(service) => service,
        Err(StoreError::TokenInUse) => {
            return Err(ApiError::bad_request(format!(
                "Failed to create service {name}: its api_token is already in use"
            )));
        }
        Err(StoreError::Db(DbError::UniqueViolation(_))) => {
            return Err(ApiError::conflict(format!("Service {name} already exists")));
        }
        Err(StoreError::Db(e)) => return Err(db_error(e)),
    };
    if let (Some(url), Some(proxy)) = (url, &state.proxy) {
        let spec = routespec::service(state.config.hub.base_url.as_str(), None, &name);
        if let Err(e) = proxy
            .add_route(&DesiredRoute::service(spec, url, name.clone()))
            .await
        {
            // The periodic route check adds it later.
            tracing::warn!(service = %name, "adding the service's proxy route failed: {e}");
        }
    }
    let roles = role_names(&service, None);
    Ok((
        StatusCode::CREATED,
        Json(models::service_model(&caller.scopes, &service, &roles)),
    )
        .into_response())
}

// === DELETE /services/{name} ===

async fn delete_service(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require(
        &caller,
        &["admin:services"],
        &Target::Service(&name),
        &NoGroups,
    )?;
    let (service, _) = find_service(&state, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Service {name} does not exist")))?;
    if service.from_config {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Service {name} is not modifiable at runtime"),
        ));
    }
    let id = service.id;
    // Tokens, the OAuth client (with its tokens and codes) and role grants go with the row.
    match state.db.run(move |conn| services::delete(conn, id)).await {
        Ok(()) | Err(DbError::NotFound) => {}
        Err(e) => return Err(db_error(e)),
    }
    if service.url.is_some()
        && let Some(proxy) = &state.proxy
    {
        let spec = routespec::service(state.config.hub.base_url.as_str(), None, &name);
        if let Err(e) = proxy.delete_route(&spec).await {
            tracing::warn!(service = %name, "deleting the service's proxy route failed: {e}");
        }
    }
    Ok((StatusCode::OK, [(CONTENT_TYPE, "application/json")]).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_checks() {
        let spec = |v: Value| v.as_object().unwrap().clone();
        assert!(check_spec(&spec(json!({"name": "x", "url": "http://a:1"}))).is_ok());
        let e = check_spec(&spec(json!({"name": "x", "bogus": 1}))).unwrap_err();
        assert_eq!(
            e.message.as_deref(),
            Some("Invalid JSON keys: {'name': 'x', 'bogus': 1}")
        );
        let e = check_spec(&spec(json!({"name": "x", "admin": 1}))).unwrap_err();
        assert_eq!(
            e.message.as_deref(),
            Some("service.admin must be <class 'bool'>, not: <class 'int'>")
        );
    }
}
