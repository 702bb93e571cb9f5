//! Users' servers (hub-protocol §1.3–§1.5): `/users/{name}/server` (the default server) and
//! `/users/{name}/servers/{server}` (named servers; an empty `{server}` is the default server,
//! which the admin UI uses), start, stop, read, create, change, and the progress event stream.
//!
//! Scopes: `start:servers` to start, create and change (`servers` implies it), `read:servers`
//! to read and follow progress, `delete:servers` to stop and delete; each filtered by
//! `!server=<user>/<server>` (or `!user=`, `!group=`) from the URL.
//!
//! Deviation: `PATCH` with unknown keys answers 400; JupyterHub 6.1.1 crashes with a 500.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::api::extract::{Caller, db_error, require};
use crate::api::models::{server_model, server_url};
use crate::api::python::truthy;
use crate::api::users::JsonBody;
use crate::db::DbError;
use crate::db::models::spawners::{self, NewSpawner, ServerPhase, Spawner};
use crate::db::models::{groups, users};
use crate::error::{ApiError, ApiResult};
use crate::rbac::fields::server_state_visible;
use crate::rbac::{Target, UserGroups};
use crate::spawn::names::{log_name, validate_display_name, validate_server_name};
use crate::spawn::progress::{self, Subscription, is_terminal};
use crate::spawn::{self, Pending, ServerError, StartResult, StopResult};
use crate::state::AppState;

/// How often the progress stream writes a blank line to keep proxies from closing it.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(8);

/// Routes under `/hub/api`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/users/{name}/server",
            post(start_default).get(get_default).delete(stop_default),
        )
        .route("/users/{name}/server/progress", get(progress_default))
        .route(
            "/users/{name}/servers/",
            post(start_default)
                .get(get_default)
                .delete(stop_default)
                .put(put_default)
                .patch(patch_default),
        )
        .route(
            "/users/{name}/servers/{server}",
            post(start_named)
                .get(get_named)
                .delete(stop_named)
                .put(put_named)
                .patch(patch_named),
        )
        .route(
            "/users/{name}/servers/{server}/progress",
            get(progress_named),
        )
}

// === request pieces ===

/// `{name}`, or `{name}` and `{server}`, percent-decoded; undecodable segments name nothing
/// (JSON 404).
#[derive(Debug)]
struct ServerPath {
    user: String,
    server: String,
}

impl FromRequestParts<AppState> for ServerPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        if let Ok(Path((user, server))) =
            Path::<(String, String)>::from_request_parts(parts, state).await
        {
            return Ok(ServerPath { user, server });
        }
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(user)) => Ok(ServerPath {
                user,
                server: String::new(),
            }),
            Err(_) => Err(ApiError::bare(StatusCode::NOT_FOUND)),
        }
    }
}

/// The target user and their groups (for group-filtered scopes).
struct Owner {
    user: users::User,
    groups: Vec<String>,
}

impl Owner {
    fn membership(&self) -> UserGroups<'_> {
        UserGroups {
            user: &self.user.name,
            groups: &self.groups,
        }
    }
}

/// Checks `scopes` on server `server` of user `name`, then insists the user exists (bare 404
/// otherwise).
async fn authorize(
    state: &AppState,
    caller: &Caller,
    scopes: &[&str],
    path: &ServerPath,
) -> ApiResult<Owner> {
    let name = path.user.clone();
    let found = state
        .db
        .run(move |conn| match users::find_by_name(conn, &name)? {
            Some(user) => {
                let groups = groups::for_user(conn, user.id)?
                    .into_iter()
                    .map(|g| g.name)
                    .collect();
                Ok(Some(Owner { user, groups }))
            }
            None => Ok(None),
        })
        .await
        .map_err(db_error)?;
    let none = Vec::new();
    let membership = UserGroups {
        user: &path.user,
        groups: found.as_ref().map_or(&none, |o| &o.groups),
    };
    require(
        caller,
        scopes,
        &Target::Server {
            user: &path.user,
            server: &path.server,
        },
        &membership,
    )?;
    found.ok_or_else(|| ApiError::bare(StatusCode::NOT_FOUND))
}

fn named_servers_disabled() -> ApiError {
    ApiError::bad_request("Named servers are not enabled.")
}

fn no_such_server(user: &str, server: &str) -> ApiError {
    ApiError::not_found(format!("{user} has no server named '{server}'"))
}

fn server_error(e: ServerError) -> ApiError {
    match e {
        ServerError::Refused {
            status,
            message,
            retry_after,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut error = ApiError::new(status, message);
            if let Some(seconds) = retry_after {
                error = error.with_header(RETRY_AFTER, HeaderValue::from(seconds));
            }
            error
        }
        ServerError::Db(e) => db_error(e),
    }
}

/// The empty `text/plain` replies of start and stop.
fn empty(status: StatusCode) -> Response {
    (status, [(CONTENT_TYPE, "text/plain")], "").into_response()
}

async fn find_server(state: &AppState, user_id: i32, server: &str) -> ApiResult<Option<Spawner>> {
    let server = server.to_owned();
    state
        .db
        .run(move |conn| spawners::find(conn, user_id, &server))
        .await
        .map_err(db_error)
}

/// A default server that was never used has no row yet; it is shown stopped.
fn unused_default_server(user: &users::User) -> Spawner {
    Spawner {
        id: 0,
        user_id: user.id,
        name: String::new(),
        display_name: String::new(),
        state: Map::new(),
        user_options: Map::new(),
        phase: ServerPhase::Stopped,
        phase_changed: user.created,
        started: None,
        last_activity: None,
        server_proto: None,
        server_ip: None,
        server_port: None,
        server_base_url: None,
    }
}

/// `ServerRequest` (§1.4): `{"display_name"?, "user_options"?}`; a body with neither key is
/// the user options themselves (5.x clients). Empty options mean "reuse the saved ones".
#[derive(Debug, Default)]
struct ServerRequest {
    display_name: Option<String>,
    user_options: Option<Map<String, Value>>,
}

impl ServerRequest {
    fn parse(body: Option<Value>) -> ApiResult<Self> {
        let map = match body {
            None => return Ok(Self::default()),
            Some(Value::Object(map)) => map,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "The request body must be a JSON object",
                ));
            }
        };
        if !map.contains_key("display_name") && !map.contains_key("user_options") {
            return Ok(Self {
                display_name: None,
                user_options: (!map.is_empty()).then_some(map),
            });
        }
        let display_name = match map.get("display_name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                validate_display_name(s).map_err(ApiError::bad_request)?;
                Some(s.clone())
            }
            Some(_) => return Err(ApiError::bad_request("display_name must be a string")),
        };
        let user_options = match map.get("user_options") {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => (!o.is_empty()).then(|| o.clone()),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "user_options must be an object or null",
                ));
            }
        };
        Ok(Self {
            display_name,
            user_options,
        })
    }
}

/// Options as the spawner accepts them.
fn validate_options(
    state: &AppState,
    options: Map<String, Value>,
) -> ApiResult<Map<String, Value>> {
    match spawn::profiles::spawner_validate(state, options) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(ApiError::internal(
            "the spawner's validate_options returned something other than an object",
        )),
        Err(hub_plugin::SpawnError::Refused { message, status }) => Err(ApiError::new(
            StatusCode::from_u16(status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::BAD_REQUEST),
            message,
        )),
        Err(e) => Err(ApiError::bad_request(format!("Invalid user options: {e}"))),
    }
}

/// Checks a new named server against the name rules and `named_server_limit_per_user`.
async fn check_new_named(state: &AppState, user: &users::User, server: &str) -> ApiResult<()> {
    validate_server_name(server).map_err(ApiError::bad_request)?;
    if let Some(limit) = state.config.hub.named_server_limit_per_user.get() {
        let user_id = user.id;
        let count = state
            .db
            .run(move |conn| spawners::count_named(conn, user_id))
            .await
            .map_err(db_error)?;
        if count >= i64::from(limit) {
            return Err(ApiError::bad_request(format!(
                "User {} already has the maximum of {limit} named servers.  One must be deleted \
                 before a new server can be created",
                user.name
            )));
        }
    }
    Ok(())
}

async fn insert_server(
    state: &AppState,
    user: &users::User,
    server: &str,
    display_name: &str,
    options: Map<String, Value>,
) -> ApiResult<Result<Spawner, ()>> {
    let (user_id, name, display) = (user.id, server.to_owned(), display_name.to_owned());
    match state
        .db
        .run(move |conn| {
            spawners::insert(
                conn,
                &NewSpawner {
                    user_id,
                    name: &name,
                    display_name: &display,
                    user_options: options,
                },
            )
        })
        .await
    {
        Ok(row) => Ok(Ok(row)),
        Err(DbError::UniqueViolation(_)) => Ok(Err(())),
        Err(e) => Err(db_error(e)),
    }
}

// === POST: start ===

async fn start_default(
    state: State<AppState>,
    caller: Caller,
    path: ServerPath,
    body: JsonBody,
) -> ApiResult<Response> {
    start_server(state, caller, path, body).await
}

async fn start_named(
    state: State<AppState>,
    caller: Caller,
    path: ServerPath,
    body: JsonBody,
) -> ApiResult<Response> {
    start_server(state, caller, path, body).await
}

async fn start_server(
    State(state): State<AppState>,
    caller: Caller,
    path: ServerPath,
    body: JsonBody,
) -> ApiResult<Response> {
    let owner = authorize(&state, &caller, &["start:servers"], &path).await?;
    let user = &owner.user;
    let server = path.server.as_str();
    if !server.is_empty() && !state.config.hub.allow_named_servers {
        return Err(named_servers_disabled());
    }
    let request = ServerRequest::parse(body.into_value()?)?;
    let options = request
        .user_options
        .map(|o| validate_options(&state, o))
        .transpose()?;
    let row = match find_server(&state, user.id, server).await? {
        Some(row) => {
            if let Some(display_name) = request.display_name {
                let id = row.id;
                state
                    .db
                    .run(move |conn| spawners::set_display_name(conn, id, &display_name))
                    .await
                    .map_err(db_error)?;
            }
            row
        }
        None => {
            if !server.is_empty() {
                check_new_named(&state, user, server).await?;
            }
            let display_name = request.display_name.unwrap_or_default();
            match insert_server(&state, user, server, &display_name, Map::new()).await? {
                Ok(row) => row,
                // Created by a concurrent request.
                Err(()) => find_server(&state, user.id, server)
                    .await?
                    .ok_or_else(|| ApiError::bare(StatusCode::NOT_FOUND))?,
            }
        }
    };
    match spawn::start(&state, user, row.id, options).await {
        Ok(StartResult::Ready) => Ok(empty(StatusCode::CREATED)),
        Ok(StartResult::Pending) => Ok(empty(StatusCode::ACCEPTED)),
        Err(e) => Err(server_error(e)),
    }
}

// === GET: the server model ===

async fn get_default(
    state: State<AppState>,
    caller: Caller,
    path: ServerPath,
) -> ApiResult<Json<Value>> {
    get_server(state, caller, path).await
}

async fn get_named(
    state: State<AppState>,
    caller: Caller,
    path: ServerPath,
) -> ApiResult<Json<Value>> {
    get_server(state, caller, path).await
}

fn model(state: &AppState, caller: &Caller, owner: &Owner, row: &Spawner) -> Value {
    let with_state = server_state_visible(
        &caller.scopes,
        &owner.user.name,
        &row.name,
        &owner.membership(),
    );
    Value::Object(server_model(state, &owner.user.name, row, with_state))
}

async fn get_server(
    State(state): State<AppState>,
    caller: Caller,
    path: ServerPath,
) -> ApiResult<Json<Value>> {
    let owner = authorize(&state, &caller, &["read:servers"], &path).await?;
    let row = match find_server(&state, owner.user.id, &path.server).await? {
        Some(row) => row,
        None if path.server.is_empty() => unused_default_server(&owner.user),
        None => return Err(no_such_server(&owner.user.name, &path.server)),
    };
    Ok(Json(model(&state, &caller, &owner, &row)))
}

// === PUT: create a named server without starting it ===

async fn put_default(
    State(state): State<AppState>,
    caller: Caller,
    path: ServerPath,
    _body: JsonBody,
) -> ApiResult<Response> {
    authorize(&state, &caller, &["start:servers"], &path).await?;
    Err(ApiError::conflict("A named server needs a name"))
}

async fn put_named(
    State(state): State<AppState>,
    caller: Caller,
    path: ServerPath,
    body: JsonBody,
) -> ApiResult<Response> {
    let owner = authorize(&state, &caller, &["start:servers"], &path).await?;
    let user = &owner.user;
    let server = path.server.as_str();
    if !state.config.hub.allow_named_servers {
        return Err(named_servers_disabled());
    }
    let exists = || ApiError::conflict(format!("Server {server} already exists"));
    if find_server(&state, user.id, server).await?.is_some() {
        return Err(exists());
    }
    check_new_named(&state, user, server).await?;
    let request = ServerRequest::parse(body.into_value()?)?;
    let options = request
        .user_options
        .map(|o| validate_options(&state, o))
        .transpose()?
        .unwrap_or_default();
    let display_name = request.display_name.unwrap_or_default();
    let row = insert_server(&state, user, server, &display_name, options)
        .await?
        .map_err(|()| exists())?;
    tracing::info!(server = %log_name(&user.name, server), "created server");
    Ok((
        StatusCode::CREATED,
        Json(model(&state, &caller, &owner, &row)),
    )
        .into_response())
}

// === PATCH: rename, display name, user options ===

async fn patch_default(
    state: State<AppState>,
    caller: Caller,
    path: ServerPath,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    patch_server(state, caller, path, body).await
}

async fn patch_named(
    state: State<AppState>,
    caller: Caller,
    path: ServerPath,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    patch_server(state, caller, path, body).await
}

/// The changes a PATCH asks for, checked.
#[derive(Debug, Default)]
struct ServerPatch {
    name: Option<String>,
    display_name: Option<String>,
    user_options: Option<Map<String, Value>>,
}

const PATCH_KEYS: [&str; 3] = ["name", "display_name", "user_options"];

fn parse_patch(state: &AppState, body: Option<Value>, current: &Spawner) -> ApiResult<ServerPatch> {
    let Some(Value::Object(map)) = body else {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object with name, display_name or user_options",
        ));
    };
    let mut unknown: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|k| !PATCH_KEYS.contains(k))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        return Err(ApiError::bad_request(format!(
            "Invalid keys in request body: {}; allowed: {}",
            unknown.join(", "),
            PATCH_KEYS.join(", ")
        )));
    }
    if map.is_empty() {
        return Err(ApiError::bad_request(
            "Nothing to change: give name, display_name or user_options",
        ));
    }
    let mut patch = ServerPatch::default();
    match map.get("name") {
        None => {}
        Some(Value::String(new_name)) if *new_name == current.name => {}
        Some(Value::String(new_name)) => {
            if current.name.is_empty() {
                return Err(ApiError::bad_request(
                    "The default server cannot be renamed",
                ));
            }
            if !state.config.hub.allow_named_servers {
                return Err(named_servers_disabled());
            }
            validate_server_name(new_name).map_err(ApiError::bad_request)?;
            patch.name = Some(new_name.clone());
        }
        Some(_) => return Err(ApiError::bad_request("name must be a string")),
    }
    match map.get("display_name") {
        None => {}
        Some(Value::String(s)) => {
            validate_display_name(s).map_err(ApiError::bad_request)?;
            patch.display_name = Some(s.clone());
        }
        Some(Value::Null) => patch.display_name = Some(String::new()),
        Some(_) => return Err(ApiError::bad_request("display_name must be a string")),
    }
    match map.get("user_options") {
        None => {}
        Some(Value::Object(o)) => patch.user_options = Some(validate_options(state, o.clone())?),
        Some(Value::Null) => patch.user_options = Some(Map::new()),
        Some(_) => return Err(ApiError::bad_request("user_options must be an object")),
    }
    Ok(patch)
}

async fn patch_server(
    State(state): State<AppState>,
    caller: Caller,
    path: ServerPath,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let owner = authorize(&state, &caller, &["start:servers"], &path).await?;
    let user = &owner.user;
    let row = match find_server(&state, user.id, &path.server).await? {
        Some(row) => row,
        None if path.server.is_empty() => {
            match insert_server(&state, user, "", "", Map::new()).await? {
                Ok(row) => row,
                Err(()) => find_server(&state, user.id, "")
                    .await?
                    .ok_or_else(|| ApiError::bare(StatusCode::NOT_FOUND))?,
            }
        }
        None => return Err(no_such_server(&user.name, &path.server)),
    };
    let name = log_name(&user.name, &row.name);
    let active = || ApiError::bad_request(format!("{name} is active; stop it before changing it"));
    if row.is_active() || state.servers.current(row.id).is_some() {
        return Err(active());
    }
    let patch = parse_patch(&state, body.into_value()?, &row)?;
    let id = row.id;
    let user_id = user.id;
    let new_name = patch.name.clone();
    let outcome = state
        .db
        .transaction(move |conn| {
            let Some(current) = spawners::find_by_id(conn, id)? else {
                return Ok(Err(StatusCode::NOT_FOUND));
            };
            if current.is_active() {
                return Ok(Err(StatusCode::BAD_REQUEST));
            }
            if let Some(new_name) = &patch.name {
                if spawners::find(conn, user_id, new_name)?.is_some() {
                    return Ok(Err(StatusCode::CONFLICT));
                }
                spawners::rename(conn, id, new_name)?;
            }
            if let Some(display_name) = &patch.display_name {
                spawners::set_display_name(conn, id, display_name)?;
            }
            if let Some(options) = &patch.user_options {
                spawners::set_user_options(conn, id, options)?;
            }
            Ok(Ok(spawners::find_by_id(conn, id)?))
        })
        .await;
    let conflict = || {
        ApiError::conflict(format!(
            "{} already has a server named '{}'",
            user.name,
            new_name.as_deref().unwrap_or_default()
        ))
    };
    let updated = match outcome {
        Ok(Ok(Some(row))) => row,
        Ok(Ok(None)) | Ok(Err(StatusCode::NOT_FOUND)) => {
            return Err(no_such_server(&user.name, &path.server));
        }
        Ok(Err(StatusCode::CONFLICT)) | Err(DbError::UniqueViolation(_)) => {
            return Err(conflict());
        }
        Ok(Err(_)) => return Err(active()),
        Err(e) => return Err(db_error(e)),
    };
    if let Some(new_name) = &new_name {
        tracing::info!(server = %name, "renamed to {new_name}");
    }
    Ok(Json(model(&state, &caller, &owner, &updated)))
}

// === DELETE: stop (and remove) ===

async fn stop_default(
    state: State<AppState>,
    caller: Caller,
    path: ServerPath,
    body: JsonBody,
) -> ApiResult<Response> {
    stop_server(state, caller, path, body).await
}

async fn stop_named(
    state: State<AppState>,
    caller: Caller,
    path: ServerPath,
    body: JsonBody,
) -> ApiResult<Response> {
    stop_server(state, caller, path, body).await
}

async fn stop_server(
    State(state): State<AppState>,
    caller: Caller,
    path: ServerPath,
    body: JsonBody,
) -> ApiResult<Response> {
    let owner = authorize(&state, &caller, &["delete:servers"], &path).await?;
    let user = &owner.user;
    let server = path.server.as_str();
    let remove = match body.into_value()? {
        None => false,
        Some(Value::Object(map)) => map.get("remove").is_some_and(truthy),
        Some(_) => {
            return Err(ApiError::bad_request(
                "The request body must be a JSON object",
            ));
        }
    };
    if !server.is_empty() && !state.config.hub.allow_named_servers {
        return Err(named_servers_disabled());
    }
    if server.is_empty() && remove {
        return Err(ApiError::bad_request("Cannot delete the default server"));
    }
    let Some(row) = find_server(&state, user.id, server).await? else {
        return if server.is_empty() {
            Ok(empty(StatusCode::NO_CONTENT))
        } else {
            Err(no_such_server(&user.name, server))
        };
    };
    match spawn::stop(&state, user, row.id, remove).await {
        Ok(StopResult::Stopped) => Ok(empty(StatusCode::NO_CONTENT)),
        Ok(StopResult::Pending) => Ok(empty(StatusCode::ACCEPTED)),
        Err(e) => Err(server_error(e)),
    }
}

// === GET …/progress: the event stream ===

async fn progress_default(
    state: State<AppState>,
    caller: Caller,
    path: ServerPath,
) -> ApiResult<Response> {
    progress_stream(state, caller, path).await
}

async fn progress_named(
    state: State<AppState>,
    caller: Caller,
    path: ServerPath,
) -> ApiResult<Response> {
    progress_stream(state, caller, path).await
}

async fn progress_stream(
    State(state): State<AppState>,
    caller: Caller,
    path: ServerPath,
) -> ApiResult<Response> {
    let owner = authorize(&state, &caller, &["read:servers"], &path).await?;
    let user = &owner.user;
    let name = log_name(&user.name, &path.server);
    let not_starting = || ApiError::bad_request(format!("{name} is not starting..."));
    let row = match find_server(&state, user.id, &path.server).await? {
        Some(row) => row,
        None if path.server.is_empty() => return Err(not_starting()),
        None => return Err(no_such_server(&user.name, &path.server)),
    };
    let known = state.servers.snapshot(row.id);
    let url = server_url(&state, &user.name, &row.name);
    if let (Some(Pending::Spawn), Some(progress)) = (known.pending, &known.progress) {
        return Ok(event_stream(&state, progress.subscribe(), true));
    }
    if row.phase == ServerPhase::Running && known.pending.is_none() {
        return Ok(event_stream(
            &state,
            Subscription {
                past: vec![progress::ready_event(&url)],
                live: None,
            },
            false,
        ));
    }
    if let Some(failure) = known.failure {
        return Ok(event_stream(
            &state,
            Subscription {
                past: vec![progress::failed_event(&failure.event_message())],
                live: None,
            },
            false,
        ));
    }
    Err(not_starting())
}

fn sse(event: &Value) -> Bytes {
    Bytes::from(format!("data: {event}\n\n"))
}

/// The `text/event-stream` reply: a keepalive, the past events, then live events until the
/// terminal one, with a keepalive every [`KEEPALIVE_INTERVAL`].
fn event_stream(state: &AppState, sub: Subscription, keepalive: bool) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let state = state.clone();
    tokio::spawn(async move {
        let keepalive_line = Bytes::from_static(b"\n\n");
        if keepalive && tx.send(keepalive_line.clone()).await.is_err() {
            return;
        }
        for event in &sub.past {
            if tx.send(sse(event)).await.is_err() || is_terminal(event) {
                return;
            }
        }
        let Some(mut live) = sub.live else {
            return;
        };
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + KEEPALIVE_INTERVAL,
            KEEPALIVE_INTERVAL,
        );
        loop {
            tokio::select! {
                event = live.recv() => match event {
                    Ok(event) => {
                        if tx.send(sse(&event)).await.is_err() || is_terminal(&event) {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(skipped)) => {
                        tracing::debug!("progress listener skipped {skipped} event(s)");
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = ticker.tick() => {
                    if tx.send(keepalive_line.clone()).await.is_err() {
                        return;
                    }
                }
                _ = state.shutdown.wait() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<Bytes, Infallible>(chunk), rx))
    });
    (
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_requests() {
        let r = ServerRequest::parse(None).unwrap();
        assert!(r.user_options.is_none() && r.display_name.is_none());
        // 5.x: the body is the options.
        let r = ServerRequest::parse(Some(json!({"profile": "gpu"}))).unwrap();
        assert_eq!(r.user_options.unwrap()["profile"], "gpu");
        // Empty options reuse the saved ones.
        let r = ServerRequest::parse(Some(json!({}))).unwrap();
        assert!(r.user_options.is_none());
        // 6.x.
        let r = ServerRequest::parse(Some(
            json!({"display_name": "My GPU", "user_options": {"a": 1}}),
        ))
        .unwrap();
        assert_eq!(r.display_name.as_deref(), Some("My GPU"));
        assert_eq!(r.user_options.unwrap()["a"], 1);
        let r = ServerRequest::parse(Some(json!({"user_options": null}))).unwrap();
        assert!(r.user_options.is_none());
        for bad in [
            json!([1]),
            json!({"user_options": 3}),
            json!({"display_name": 3}),
            json!({"display_name": " x"}),
        ] {
            assert_eq!(ServerRequest::parse(Some(bad)).unwrap_err().status, 400);
        }
    }
}
