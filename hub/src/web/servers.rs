//! Pages that start and find users' servers (hub-protocol §9):
//!
//! - `/hub/spawn[/<user>[/<server>]]`: opens a ready server, follows one being started, shows
//!   the spawner's options form, or starts the server and goes to its spawn-pending page.
//!   Another user's server needs the `servers` scope on it (404 otherwise).
//! - `/hub/spawn-pending/<user>[/<server>]`: the progress of a start (live, from the progress
//!   event stream), or the reason the server is not running.
//! - `/hub/user/<name>/<path>`: where the proxy sends requests for a server it has no route
//!   for. A ready server gets the request back (with loop protection), a starting one its
//!   spawn-pending page, a stopped one 424 and a link to start it. Tokens are accepted here.
//! - `/hub/user-redirect/<path>`: `<path>` on the logged-in user's own server.

use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use hub_plugin::{ServerRef, SpawnError};
use minijinja::context;
use minijinja::value::Serde;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::access::{Identity, Via};
use crate::api::extract::MaybeCaller;
use crate::api::models::{server_url, url_name, user_url};
use crate::db::DbError;
use crate::db::models::spawners::{self, NewSpawner, ServerPhase, Spawner};
use crate::db::models::{groups, users};
use crate::rbac::{Target, UserGroups};
use crate::spawn::names::validate_server_name;
use crate::spawn::profiles::{self, ProfileError};
use crate::spawn::{self, Failure, Pending, ServerError};
use crate::state::AppState;
use crate::web::queue::Place;
use crate::web::{
    Browser, ErrorPage, Halt, PageForm, PageResult, QueryArgs, db_unavailable, decode_segment,
    found, redirect, render, session, with_next,
};

/// How long the spawn page waits for a start to be under way (or refused) before it moves on
/// to the spawn-pending page anyway.
const SPAWN_PAGE_WAIT: Duration = Duration::from_secs(3);

/// Redirects back to a ready server before `/hub/user/…` gives up with a loop error.
pub const MAX_REDIRECTS: u32 = 4;

/// The owner of a server, with their groups (for group-filtered scopes).
#[derive(Debug, Clone)]
struct Owner {
    user: users::User,
    groups: Vec<String>,
}

async fn load_owner(state: &AppState, name: &str) -> Result<Option<Owner>, DbError> {
    let name = name.to_owned();
    state
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
}

/// Whether `identity` holds `scope` on server `server` of `user`.
fn may(identity: &Identity, scope: &str, user: &str, server: &str, groups: &[String]) -> bool {
    identity.scopes.allows(
        scope,
        &Target::Server { user, server },
        &UserGroups { user, groups },
    )
}

fn no_access(state: &AppState, browser: &Browser) -> Halt {
    ErrorPage::new(StatusCode::NOT_FOUND)
        .message("No access to resources or resources not found")
        .halt(state, Some(browser))
}

/// The owner of server `server` of `user`, when `identity` holds `scope` on it; the same 404
/// for "no such user" and "not yours".
async fn authorize(
    state: &AppState,
    browser: &Browser,
    identity: &Identity,
    scope: &str,
    user: &str,
    server: &str,
) -> Result<Owner, Halt> {
    let owner = load_owner(state, user)
        .await
        .map_err(|e| db_unavailable(state, Some(browser), &e))?;
    let groups = owner.as_ref().map_or(&[][..], |o| o.groups.as_slice());
    if !may(identity, scope, user, server, groups) {
        return Err(no_access(state, browser));
    }
    owner.ok_or_else(|| no_access(state, browser))
}

/// `<user>[/<server>]` (one optional trailing slash), percent-decoded.
fn parse_server_path(rest: &str) -> Option<(String, String)> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut parts = rest.split('/');
    let user = decode_segment(parts.next()?)?;
    let server = match parts.next() {
        Some(segment) => decode_segment(segment)?,
        None => String::new(),
    };
    if user.is_empty() || parts.next().is_some() || (rest.contains('/') && server.is_empty()) {
        return None;
    }
    Some((user, server))
}

/// The user and server a `spawn…` page is about: `<page>/<user>[/<server>]`, or (for `spawn`
/// alone) the logged-in user's default server.
fn page_target(
    state: &AppState,
    browser: &Browser,
    uri: &Uri,
    page: &str,
    me: &str,
) -> Result<(String, String), Halt> {
    let base = format!("{}{page}", state.config.hub.hub_prefix());
    let rest = uri.path().strip_prefix(&base).unwrap_or("");
    if rest.is_empty() || rest == "/" {
        return Ok((me.to_owned(), String::new()));
    }
    rest.strip_prefix('/')
        .and_then(parse_server_path)
        .ok_or_else(|| {
            ErrorPage::new(StatusCode::NOT_FOUND)
                .message("No such page")
                .halt(state, Some(browser))
        })
}

/// Why a page could not start a server: status, message, `Retry-After`.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
    retry_after: Option<u32>,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The refusal of the spawn throttle (`concurrent_spawn_limit`): the start can wait in
    /// the line instead.
    fn is_throttle(&self) -> bool {
        self.status == StatusCode::TOO_MANY_REQUESTS && self.retry_after.is_some()
    }

    fn from_server_error(state: &AppState, e: ServerError) -> Self {
        match e {
            ServerError::Refused {
                status,
                message,
                retry_after,
            } => {
                let status = StatusCode::from_u16(status)
                    .ok()
                    .filter(|s| s.is_client_error() || s.is_server_error())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let message = if status == StatusCode::TOO_MANY_REQUESTS && retry_after.is_some() {
                    let starting = state.servers.spawns_pending();
                    format!("{message} Servers starting right now: {starting}.")
                } else {
                    message
                };
                Self {
                    status,
                    message,
                    retry_after,
                }
            }
            ServerError::Db(e) => {
                tracing::error!("spawn page: database failure: {e}");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The hub's database is unavailable; try again shortly.",
                )
            }
        }
    }

    fn page(self, state: &AppState, browser: &Browser) -> Response {
        let mut resp = ErrorPage::new(self.status)
            .message(self.message)
            .render(state, Some(browser));
        add_retry_after(&mut resp, self.retry_after);
        resp
    }
}

fn add_retry_after(resp: &mut Response, retry_after: Option<u32>) {
    if let Some(seconds) = retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
}

/// The row of server `server` of `owner`. The default server's row is created on first use;
/// a named one only when `create` (checked against the name rules and the per-user limit).
async fn server_row(
    state: &AppState,
    browser: &Browser,
    owner: &Owner,
    server: &str,
    create: bool,
) -> Result<Option<Spawner>, Halt> {
    let user_id = owner.user.id;
    let name = server.to_owned();
    let db_error = |e: DbError| db_unavailable(state, Some(browser), &e);
    if server.is_empty() {
        let row = state
            .db
            .run(move |conn| spawners::find_or_insert(conn, user_id, ""))
            .await
            .map_err(db_error)?;
        return Ok(Some(row));
    }
    let found_row = state
        .db
        .run(move |conn| spawners::find(conn, user_id, &name))
        .await
        .map_err(db_error)?;
    if found_row.is_some() || !create {
        return Ok(found_row);
    }
    let bad = |message: String| {
        ErrorPage::new(StatusCode::BAD_REQUEST)
            .message(message)
            .halt(state, Some(browser))
    };
    validate_server_name(server).map_err(bad)?;
    if let Some(limit) = state.config.hub.named_server_limit_per_user.get() {
        let count = state
            .db
            .run(move |conn| spawners::count_named(conn, user_id))
            .await
            .map_err(db_error)?;
        if count >= i64::from(limit) {
            return Err(bad(format!(
                "{} already has the maximum of {limit} named servers. One must be deleted \
                 before a new server can be created.",
                owner.user.name
            )));
        }
    }
    let name = server.to_owned();
    let inserted = state
        .db
        .run(move |conn| {
            spawners::insert(
                conn,
                &NewSpawner {
                    user_id,
                    name: &name,
                    display_name: "",
                    user_options: Map::new(),
                },
            )
        })
        .await;
    match inserted {
        Ok(row) => Ok(Some(row)),
        // Created by a concurrent request.
        Err(DbError::UniqueViolation(_)) => {
            let name = server.to_owned();
            state
                .db
                .run(move |conn| spawners::find(conn, user_id, &name))
                .await
                .map_err(db_error)
        }
        Err(e) => Err(db_error(e)),
    }
}

/// Where a server stands, for the pages.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    /// Running, nothing pending.
    Ready,
    /// Being started.
    Spawning,
    /// Being stopped or checked.
    Busy(Pending),
    /// The last start failed (and nothing is pending).
    Failed(Failure),
    /// Not running.
    Stopped,
}

fn status(state: &AppState, row: &Spawner) -> Status {
    let snapshot = state.servers.snapshot(row.id);
    match (snapshot.pending, row.phase, snapshot.failure) {
        (Some(Pending::Spawn), _, _) | (None, ServerPhase::Spawning, _) => Status::Spawning,
        // A failed start being cleaned up, or over.
        (Some(_), _, Some(failure)) | (None, ServerPhase::Stopped, Some(failure)) => {
            Status::Failed(failure)
        }
        (Some(kind), _, None) => Status::Busy(kind),
        (None, ServerPhase::Stopping, _) => Status::Busy(Pending::Stop),
        (None, ServerPhase::Running, _) => Status::Ready,
        (None, ServerPhase::Stopped, None) => Status::Stopped,
    }
}

/// `/<user>[/<server>]` as it appears in page URLs.
fn server_suffix(user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("/{}", url_name(user))
    } else {
        format!("/{}/{}", url_name(user), url_name(server))
    }
}

fn spawn_url(state: &AppState, user: &str, server: &str, next: Option<&str>) -> String {
    let path = format!(
        "{}spawn{}",
        state.config.hub.hub_prefix(),
        server_suffix(user, server)
    );
    with_next(&path, next)
}

fn pending_url(state: &AppState, user: &str, server: &str, next: Option<&str>) -> String {
    let path = format!(
        "{}spawn-pending{}",
        state.config.hub.hub_prefix(),
        server_suffix(user, server)
    );
    with_next(&path, next)
}

/// The label of a server in page text.
fn server_label(owner: &str, row: &Spawner) -> String {
    let name = if row.display_name.is_empty() {
        row.name.as_str()
    } else {
        row.display_name.as_str()
    };
    if name.is_empty() {
        owner.to_owned()
    } else {
        format!("{owner}/{name}")
    }
}

/// For a server that is ready or on its way: where the spawn page sends the browser.
fn redirect_if_active(
    state: &AppState,
    browser: &Browser,
    owner: &str,
    row: &Spawner,
    next: Option<&str>,
) -> Option<Response> {
    if state.spawn_queue.place(row.id).is_some() {
        return Some(
            browser.with_cookies(state, found(&pending_url(state, owner, &row.name, next))),
        );
    }
    match status(state, row) {
        Status::Ready => {
            let target = next.map_or_else(|| server_url(state, owner, &row.name), str::to_owned);
            Some(browser.with_cookies(state, found(&target)))
        }
        Status::Spawning | Status::Busy(_) => {
            Some(browser.with_cookies(state, found(&pending_url(state, owner, &row.name, next))))
        }
        Status::Failed(_) | Status::Stopped => None,
    }
}

/// Submitted values as user options: one value stays a string, repeated keys become a list.
fn options_map<'a>(fields: impl Iterator<Item = (&'a str, &'a str)>) -> Map<String, Value> {
    let mut map = Map::new();
    for (key, value) in fields {
        match map.get_mut(key) {
            None => {
                map.insert(key.to_owned(), Value::String(value.to_owned()));
            }
            Some(Value::Array(items)) => items.push(Value::String(value.to_owned())),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(value.to_owned())]);
            }
        }
    }
    map
}

/// Arguments that are never user options.
const RESERVED_ARGS: [&str; 3] = ["_xsrf", "next", "display_name"];

/// User options given in the query: `opt-<key>=<value>`; when there are none and the spawner
/// has an options form, its fields given directly (`<key>=<value>`, the older form).
fn query_options(query: &QueryArgs, has_form: bool) -> Option<Map<String, Value>> {
    let prefixed = options_map(
        query
            .0
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("opt-")?, v.as_str())))
            .filter(|(k, _)| !k.is_empty()),
    );
    if !prefixed.is_empty() {
        return Some(prefixed);
    }
    if !has_form {
        return None;
    }
    let legacy = options_map(
        query
            .0
            .iter()
            .filter(|(k, _)| !k.is_empty() && !RESERVED_ARGS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    (!legacy.is_empty()).then_some(legacy)
}

/// Options as the spawner accepts them.
fn validate_options(
    state: &AppState,
    options: Map<String, Value>,
) -> Result<Map<String, Value>, Refusal> {
    match profiles::spawner_validate(state, options) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => {
            tracing::error!(
                "the spawner's validate_options returned something other than an object"
            );
            Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server options could not be processed.",
            ))
        }
        Err(SpawnError::Refused { message, status }) => Err(Refusal::new(
            StatusCode::from_u16(status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::BAD_REQUEST),
            message,
        )),
        Err(e) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("Invalid server options: {e}"),
        )),
    }
}

/// Starts server `row` of `owner` and returns once the start is under way (or refused, or
/// after [`SPAWN_PAGE_WAIT`]); the start goes on in the background.
async fn begin_spawn(
    state: &AppState,
    owner: &Owner,
    row: &Spawner,
    options: Option<Map<String, Value>>,
) -> Result<(), Refusal> {
    let st = state.clone();
    let user = owner.user.clone();
    let id = row.id;
    let mut task = tokio::spawn(async move { spawn::start(&st, &user, id, options).await });
    let deadline = tokio::time::Instant::now() + SPAWN_PAGE_WAIT;
    loop {
        tokio::select! {
            joined = &mut task => {
                return match joined {
                    Ok(Ok(_)) => Ok(()),
                    // The start began and failed: its spawn-pending page tells why.
                    Ok(Err(ServerError::Refused { message, .. }))
                        if state
                            .servers
                            .snapshot(id)
                            .failure
                            .is_some_and(|f| f.message == message) =>
                    {
                        Ok(())
                    }
                    Ok(Err(e)) => Err(Refusal::from_server_error(state, e)),
                    Err(e) => {
                        tracing::error!("spawn task ended abnormally: {e}");
                        Err(Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "Spawn failed"))
                    }
                };
            }
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                let started = state
                    .servers
                    .current(id)
                    .is_some_and(|op| op.kind == Pending::Spawn);
                if started || tokio::time::Instant::now() >= deadline {
                    return Ok(());
                }
            }
        }
    }
}

/// What the spawn page needs to show or act on one server.
struct SpawnTarget {
    owner: Owner,
    row: Spawner,
    next: Option<String>,
    form: Option<String>,
    /// The profiles the owner may use (empty without `[[profiles]]`).
    profiles: Vec<ProfileView>,
}

impl SpawnTarget {
    /// Whether the page asks before starting: the spawner has an options form, or there is a
    /// choice of profiles.
    fn asks(&self) -> bool {
        self.form.is_some() || self.profiles.len() > 1
    }
}

/// A profile as the spawn page offers it.
#[derive(Debug, Clone, Serialize)]
struct ProfileView {
    slug: String,
    label: String,
    description: String,
    /// What it sets, as `key: value` texts.
    settings: Vec<String>,
    checked: bool,
}

/// The profiles `owner` may use, the last chosen one (else the default) checked.
fn profile_views(state: &AppState, owner: &Owner, row: &Spawner) -> Vec<ProfileView> {
    let visible = profiles::visible(&state.config, &owner.user.name, &owner.groups);
    let last = row
        .user_options
        .get(profiles::PROFILE_OPTION)
        .and_then(Value::as_str)
        .filter(|slug| visible.iter().any(|p| p.slug == *slug));
    let checked = last.or_else(|| profiles::default_of(&visible).map(|p| p.slug.as_str()));
    visible
        .iter()
        .map(|p| ProfileView {
            slug: p.slug.clone(),
            label: p.label().to_owned(),
            description: p.description.clone(),
            settings: p
                .user_options
                .iter()
                .map(|(key, value)| match value {
                    Value::String(text) => format!("{key}: {text}"),
                    other => format!("{key}: {other}"),
                })
                .collect(),
            checked: Some(p.slug.as_str()) == checked,
        })
        .collect()
}

/// Resolves the server of a spawn request: access, named-server rules, the row (created when
/// new), the validated `next`, the spawner's options form.
async fn spawn_target(
    state: &AppState,
    browser: &Browser,
    identity: &Identity,
    uri: &Uri,
    next: Option<&str>,
) -> Result<SpawnTarget, Halt> {
    let me = identity.principal.name();
    let (user, server) = page_target(state, browser, uri, "spawn", me)?;
    let owner = authorize(state, browser, identity, "servers", &user, &server).await?;
    if !server.is_empty() && !state.config.hub.allow_named_servers {
        return Err(ErrorPage::new(StatusCode::BAD_REQUEST)
            .message("Named servers are not enabled.")
            .halt(state, Some(browser)));
    }
    let row = server_row(state, browser, &owner, &server, true)
        .await?
        .ok_or_else(|| no_access(state, browser))?;
    let form = state.spawner.options_form(&ServerRef {
        user: owner.user.name.clone(),
        name: row.name.clone(),
    });
    let profiles = profile_views(state, &owner, &row);
    if !state.config.profiles.is_empty() && profiles.is_empty() {
        return Err(ErrorPage::new(StatusCode::FORBIDDEN)
            .message(ProfileError::NoneAvailable.to_string())
            .halt(state, Some(browser)));
    }
    Ok(SpawnTarget {
        next: browser.safe_next(state, next),
        owner,
        row,
        form,
        profiles,
    })
}

/// The spawn page with the profiles and the spawner's options form (and an error from the
/// last submission).
fn form_page(
    state: &AppState,
    browser: &Browser,
    target: &SpawnTarget,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let owner = &target.owner.user.name;
    let me = browser.user_name().unwrap_or_default();
    render(
        state,
        Some(browser),
        status,
        "spawn.html",
        context! {
            for_user => (owner != me).then_some(owner),
            server_name => target.row.name.clone(),
            server_label => server_label(owner, &target.row),
            spawner_options_form => target.form.clone(),
            profiles => (target.profiles.len() > 1)
                .then(|| minijinja::Value::from(Serde(&target.profiles))),
            url => spawn_url(state, owner, &target.row.name, target.next.as_deref()),
            error_message => error,
        },
    )
}

/// Starts the server and sends the browser to its spawn-pending page; a refusal is shown on
/// the options form when there is one, else on an error page.
async fn launch(
    state: &AppState,
    browser: &Browser,
    target: &SpawnTarget,
    options: Option<Map<String, Value>>,
) -> Response {
    let owner = &target.owner.user.name;
    let to_pending = || {
        browser.with_cookies(
            state,
            found(&pending_url(
                state,
                owner,
                &target.row.name,
                target.next.as_deref(),
            )),
        )
    };
    let result = match options.map(|o| validate_options(state, o)).transpose() {
        // Others wait already: this start waits behind them.
        Ok(options) if !state.spawn_queue.is_empty() => {
            state
                .spawn_queue
                .join(state, target.row.id, &target.owner.user, options);
            return to_pending();
        }
        Ok(options) => {
            match begin_spawn(state, &target.owner, &target.row, options.clone()).await {
                Err(refusal) if refusal.is_throttle() => {
                    state
                        .spawn_queue
                        .join(state, target.row.id, &target.owner.user, options);
                    return to_pending();
                }
                other => other,
            }
        }
        Err(refusal) => Err(refusal),
    };
    match result {
        Ok(()) => to_pending(),
        Err(refusal) if target.asks() => {
            let mut resp = form_page(
                state,
                browser,
                target,
                refusal.status,
                Some(&refusal.message),
            );
            add_retry_after(&mut resp, refusal.retry_after);
            resp
        }
        Err(refusal) => refusal.page(state, browser),
    }
}

/// `GET /hub/spawn[/<user>[/<server>]]`.
pub async fn spawn_page(
    State(state): State<AppState>,
    uri: Uri,
    query: QueryArgs,
    browser: Browser,
) -> PageResult {
    let identity = browser.require_user(&state)?;
    let target = spawn_target(&state, &browser, identity, &uri, query.get("next")).await?;
    if let Some(resp) = redirect_if_active(
        &state,
        &browser,
        &target.owner.user.name,
        &target.row,
        target.next.as_deref(),
    ) {
        return Ok(resp);
    }
    let mut options = query_options(&query, target.asks());
    // `?profile=<slug>` chooses a profile even where nothing else is asked.
    if options.is_none()
        && !state.config.profiles.is_empty()
        && let Some(slug) = query.get(profiles::PROFILE_OPTION)
    {
        let mut chosen = Map::new();
        chosen.insert(
            profiles::PROFILE_OPTION.to_owned(),
            Value::String(slug.to_owned()),
        );
        options = Some(chosen);
    }
    if options.is_none() && target.asks() {
        return Ok(form_page(&state, &browser, &target, StatusCode::OK, None));
    }
    Ok(launch(&state, &browser, &target, options).await)
}

/// `POST /hub/spawn[/<user>[/<server>]]`: the options form's submission.
pub async fn spawn_submit(
    State(state): State<AppState>,
    uri: Uri,
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
    let target = spawn_target(&state, &browser, identity, &uri, query.get("next")).await?;
    if let Some(resp) = redirect_if_active(
        &state,
        &browser,
        &target.owner.user.name,
        &target.row,
        target.next.as_deref(),
    ) {
        return Ok(resp);
    }
    let options = options_map(
        form.0
            .iter()
            .filter(|(k, _)| !k.is_empty() && k != "_xsrf")
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    Ok(launch(&state, &browser, &target, Some(options)).await)
}

/// Where the output of server `server` of `owner` can be read, for the page that says its
/// start failed: the log file of the `local` spawner with `spawner.log_dir`, else the hub's log.
fn log_hint(state: &AppState, owner: &str, server: &str) -> String {
    match &state.config.spawner.log_dir {
        Some(dir) if state.spawner.kind() == "local" => format!(
            "The server's output is in {} on the hub's machine.",
            spawner_local::log_path(dir, owner, server).display()
        ),
        _ => "The hub's log has the details; an administrator can read it.".to_owned(),
    }
}

/// The server a spawn-pending request is about, after the access check.
async fn pending_target(
    state: &AppState,
    browser: &Browser,
    identity: &Identity,
    uri: &Uri,
    page: &str,
) -> Result<(Owner, Spawner), Halt> {
    let me = identity.principal.name().to_owned();
    let (user, server) = page_target(state, browser, uri, page, &me)?;
    let owner = authorize(state, browser, identity, "servers", &user, &server).await?;
    let Some(row) = server_row(state, browser, &owner, &server, false).await? else {
        return Err(ErrorPage::new(StatusCode::NOT_FOUND)
            .message(format!("{} has no server named {server}", owner.user.name))
            .halt(state, Some(browser)));
    };
    Ok((owner, row))
}

/// The API path of a server (`users/<u>/server`, `users/<u>/servers/<s>`).
fn api_path(owner: &str, server: &str) -> String {
    if server.is_empty() {
        format!("users/{}/server", url_name(owner))
    } else {
        format!("users/{}/servers/{}", url_name(owner), url_name(server))
    }
}

/// `GET /hub/spawn-pending/<user>[/<server>]`.
pub async fn spawn_pending_page(
    State(state): State<AppState>,
    uri: Uri,
    query: QueryArgs,
    browser: Browser,
) -> PageResult {
    let identity = browser.require_user(&state)?;
    let me = identity.principal.name().to_owned();
    let (owner, row) = pending_target(&state, &browser, identity, &uri, "spawn-pending").await?;
    let next = browser.safe_next(&state, query.get("next"));
    let owner_name = owner.user.name.as_str();
    let label = server_label(owner_name, &row);
    let prefix = state.config.hub.hub_prefix();
    let not_running = |status: StatusCode, failed: Option<String>, pending: Option<&str>| {
        render(
            &state,
            Some(&browser),
            status,
            "not_running.html",
            context! {
                owner => owner_name,
                is_own => owner_name == me,
                server_name => row.name.clone(),
                server_label => label.clone(),
                spawn_url => spawn_url(&state, owner_name, &row.name, next.as_deref()),
                log_hint => failed.as_ref().map(|_| log_hint(&state, owner_name, &row.name)),
                failed => failed.is_some(),
                failed_message => failed,
                pending => pending,
            },
        )
    };
    let pending_page = |place: Option<Place>| {
        let api_path = api_path(owner_name, &row.name);
        render(
            &state,
            Some(&browser),
            StatusCode::OK,
            "spawn_pending.html",
            context! {
                owner => owner_name,
                server_name => row.name.clone(),
                server_label => label.clone(),
                progress_url => format!("{prefix}api/{api_path}/progress"),
                queue_url => format!("{prefix}spawn-queue{}", server_suffix(owner_name, &row.name)),
                cancel_url => pending_url(&state, owner_name, &row.name, None),
                api_path => api_path,
                server_url => server_url(&state, owner_name, &row.name),
                next_url => next.clone(),
                home_url => format!("{prefix}home"),
                queued => place.map(|p| minijinja::Value::from(Serde(p))),
                starting => state.servers.spawns_pending(),
                spawn_limit => state.config.hub.concurrent_spawn_limit.get(),
            },
        )
    };
    if let Some(place) = state.spawn_queue.place(row.id) {
        return Ok(pending_page(Some(place)));
    }
    Ok(match status(&state, &row) {
        Status::Ready => {
            let target = next
                .clone()
                .unwrap_or_else(|| server_url(&state, owner_name, &row.name));
            browser.with_cookies(&state, found(&target))
        }
        Status::Spawning => pending_page(None),
        Status::Busy(kind) => not_running(StatusCode::OK, None, Some(kind.as_str())),
        Status::Failed(failure) => {
            let status = StatusCode::from_u16(failure.status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            not_running(status, Some(failure.event_message()), None)
        }
        Status::Stopped => not_running(StatusCode::OK, None, None),
    })
}

/// `POST /hub/spawn-pending/<user>[/<server>]` with `action=cancel`: leaves the line, or
/// cancels the start under way (as stopping the server does), then goes home.
pub async fn spawn_pending_submit(
    State(state): State<AppState>,
    uri: Uri,
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
    if form.get("action") != Some("cancel") {
        return Err(ErrorPage::new(StatusCode::BAD_REQUEST)
            .message("Unknown action.")
            .halt(&state, Some(&browser)));
    }
    let (owner, row) = pending_target(&state, &browser, identity, &uri, "spawn-pending").await?;
    let home = format!("{}home", state.config.hub.hub_prefix());
    if !state.spawn_queue.leave(row.id) && status(&state, &row) == Status::Spawning {
        match spawn::stop(&state, &owner.user, row.id, false).await {
            Ok(_) => {}
            Err(ServerError::Refused {
                status, message, ..
            }) => {
                return Err(ErrorPage::new(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                )
                .message(message)
                .halt(&state, Some(&browser)));
            }
            Err(ServerError::Db(e)) => return Err(db_unavailable(&state, Some(&browser), &e)),
        }
    }
    tracing::info!(
        server = %auth_pam::loggable(&server_label(&owner.user.name, &row)),
        by = %auth_pam::loggable(identity.principal.name()),
        "start cancelled from the spawn-pending page"
    );
    Ok(browser.with_cookies(&state, redirect(StatusCode::SEE_OTHER, &home)))
}

/// `GET /hub/spawn-queue/<user>[/<server>]`: the place of a waiting start, as JSON, for the
/// spawn-pending page's script: `{"queued": true, "position", "length", "starting"}`, or
/// `{"queued": false}` once it has left the line.
pub async fn spawn_queue_status(
    State(state): State<AppState>,
    uri: Uri,
    browser: Browser,
) -> PageResult {
    let Some(identity) = &browser.user else {
        return Ok(json_error(StatusCode::FORBIDDEN, "You are not logged in."));
    };
    let (_, row) = pending_target(&state, &browser, identity, &uri, "spawn-queue").await?;
    let body = match state.spawn_queue.place(row.id) {
        Some(place) => json!({
            "queued": true,
            "position": place.position,
            "length": place.length,
            "starting": state.servers.spawns_pending(),
        }),
        None => json!({ "queued": false }),
    };
    Ok((
        [
            (CONTENT_TYPE, "application/json"),
            (http::header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response())
}

/// Whether a request to a user's server looks like an API call (JSON preferred over HTML, or
/// an `api` path segment), which gets JSON errors rather than pages.
fn looks_like_api(headers: &HeaderMap, user_path: &str) -> bool {
    if user_path.split('/').any(|segment| segment == "api") {
        return true;
    }
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let quality = |wanted: &str| -> f32 {
        accept
            .split(',')
            .filter_map(|item| {
                let mut parts = item.split(';');
                let media = parts.next()?.trim().to_ascii_lowercase();
                if media != wanted {
                    return None;
                }
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some(q)
            })
            .fold(0.0, f32::max)
    };
    quality("application/json") > quality("text/html")
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        json!({ "status": status.as_u16(), "message": message }).to_string(),
    )
        .into_response()
}

/// The caller of a `/hub/user/…` request: an API token (`Authorization` header), else the
/// login cookie.
async fn user_page_identity(
    state: &AppState,
    parts: &mut Parts,
    browser: &Browser,
) -> Option<Identity> {
    if parts.headers.contains_key(AUTHORIZATION)
        && let Ok(MaybeCaller(Some(identity))) = MaybeCaller::from_request_parts(parts, state).await
        && identity.via == Via::Token
    {
        return Some(identity);
    }
    browser.user.clone()
}

/// The query of `uri` without `redirects`, re-encoded, and the `redirects` count.
fn split_redirects(query: &QueryArgs) -> (Vec<(String, String)>, u32) {
    let count = query
        .get("redirects")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let rest = query
        .0
        .iter()
        .filter(|(k, _)| k != "redirects")
        .cloned()
        .collect();
    (rest, count)
}

fn encode_query(args: &[(String, String)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in args {
        out.append_pair(k, v);
    }
    out.finish()
}

/// `/hub/user/<name>/<path>` (any method).
pub async fn user_not_running(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    query: QueryArgs,
    headers: HeaderMap,
    mut parts: Parts,
    browser: Browser,
) -> Response {
    match user_not_running_inner(
        &state, &method, &uri, &query, &headers, &mut parts, &browser,
    )
    .await
    {
        Ok(resp) | Err(Halt(resp)) => *resp,
    }
}

async fn user_not_running_inner(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    query: &QueryArgs,
    headers: &HeaderMap,
    parts: &mut Parts,
    browser: &Browser,
) -> Result<Box<Response>, Halt> {
    let prefix = state.config.hub.hub_prefix();
    let base = state.config.hub.base_url.as_str();
    let rest = uri
        .path()
        .strip_prefix(&format!("{prefix}user/"))
        .unwrap_or("");
    let (name_segment, user_path) = match rest.split_once('/') {
        Some((name, path)) => (name, format!("/{path}")),
        None => (rest, String::new()),
    };
    let api = looks_like_api(headers, &user_path);
    let read_only = matches!(*method, Method::GET | Method::HEAD);
    let (other_args, redirects) = split_redirects(query);
    // The URL the browser asked for before the proxy sent it here, without our counter.
    let mut original = format!("{base}user/{rest}");
    if !other_args.is_empty() {
        original.push('?');
        original.push_str(&encode_query(&other_args));
    }
    let Some(identity) = user_page_identity(state, parts, browser).await else {
        if read_only && !api {
            return Ok(Box::new(browser.with_cookies(
                state,
                found(&session::login_url(state, Some(browser.path_and_query()))),
            )));
        }
        return Ok(Box::new(json_error(
            StatusCode::FORBIDDEN,
            crate::rbac::scope_set::MISSING_CREDENTIALS_MESSAGE,
        )));
    };
    if identity.via == Via::Cookie && !read_only {
        let submitted = query.get("_xsrf");
        browser.check_xsrf(state, headers, submitted)?;
    }
    let not_found = || -> Halt {
        if api || !read_only {
            json_error(
                StatusCode::NOT_FOUND,
                "No access to resources or resources not found",
            )
            .into()
        } else {
            no_access(state, browser)
        }
    };
    let Some(user) = decode_segment(name_segment).filter(|n| !n.is_empty()) else {
        return Err(not_found());
    };
    let owner = load_owner(state, &user)
        .await
        .map_err(|e| db_unavailable(state, Some(browser), &e))?;
    // The server: a named server when the path starts with the name of one, else the default.
    let mut row = None;
    if let Some(owner) = &owner {
        let user_id = owner.user.id;
        let candidate = user_path
            .trim_start_matches('/')
            .split('/')
            .next()
            .and_then(decode_segment)
            .filter(|s| !s.is_empty() && state.config.hub.allow_named_servers);
        let found_row = state
            .db
            .run(move |conn| {
                if let Some(name) = candidate
                    && let Some(row) = spawners::find(conn, user_id, &name)?
                {
                    return Ok(Some(row));
                }
                spawners::find(conn, user_id, "")
            })
            .await
            .map_err(|e| db_unavailable(state, Some(browser), &e))?;
        row = found_row;
    }
    let server = row.as_ref().map_or("", |r| r.name.as_str()).to_owned();
    let groups = owner.as_ref().map_or(&[][..], |o| o.groups.as_slice());
    let Some(owner) = owner
        .as_ref()
        .filter(|_| may(&identity, "access:servers", &user, &server, groups))
    else {
        return Err(not_found());
    };
    let owner_name = owner.user.name.as_str();
    let restart_url = spawn_url(state, owner_name, &server, None);
    let not_running_json = || {
        let origin = browser.origin(state).unwrap_or_default();
        let path = format!("{base}user/{rest}");
        (
            StatusCode::FAILED_DEPENDENCY,
            [(CONTENT_TYPE, "application/json")],
            json!({
                "message": format!(
                    "JupyterHub server no longer running at {path}. Restart the server at \
                     {origin}{restart_url}"
                )
            })
            .to_string(),
        )
            .into_response()
    };
    if !read_only {
        return Ok(Box::new(not_running_json()));
    }
    let current = row.as_ref().map_or(Status::Stopped, |r| status(state, r));
    match current {
        Status::Ready => {
            if redirects >= MAX_REDIRECTS {
                tracing::error!(
                    user = %auth_pam::loggable(owner_name),
                    "redirect loop: {} is ready but requests for it keep reaching the hub",
                    auth_pam::loggable(&server_url(state, owner_name, &server))
                );
                let message = "Redirect loop detected: the server is running, but the proxy does \
                               not send requests to it. Try again in a minute, or ask an \
                               administrator.";
                return Err(if api {
                    json_error(StatusCode::INTERNAL_SERVER_ERROR, message).into()
                } else {
                    ErrorPage::new(StatusCode::INTERNAL_SERVER_ERROR)
                        .message(message)
                        .halt(state, Some(browser))
                });
            }
            if let Some(proxy) = &state.proxy {
                // The route is missing or stale: have it put back.
                proxy.request_sync();
            }
            if redirects > 0 {
                let wait = Duration::from_millis(250 * (1 << (redirects - 1).min(3)));
                tokio::time::sleep(wait).await;
            }
            let mut args = other_args;
            args.push(("redirects".to_owned(), (redirects + 1).to_string()));
            let target = format!("{base}user/{rest}?{}", encode_query(&args));
            Ok(Box::new(browser.with_cookies(state, found(&target))))
        }
        Status::Spawning | Status::Failed(_) => Ok(Box::new(browser.with_cookies(
            state,
            redirect(
                StatusCode::SEE_OTHER,
                &pending_url(state, owner_name, &server, Some(&original)),
            ),
        ))),
        Status::Busy(_) | Status::Stopped => {
            if api {
                return Ok(Box::new(not_running_json()));
            }
            let label = row
                .as_ref()
                .map_or_else(|| owner_name.to_owned(), |r| server_label(owner_name, r));
            // Only someone who may start the server gets the link (a share gives access, not
            // the right to start).
            let can_start = may(&identity, "servers", owner_name, &server, &owner.groups);
            Ok(Box::new(render(
                state,
                Some(browser),
                StatusCode::FAILED_DEPENDENCY,
                "not_running.html",
                context! {
                    owner => owner_name,
                    is_own => Some(owner_name) == browser.user_name(),
                    server_name => server.clone(),
                    server_label => label,
                    spawn_url => can_start
                        .then(|| spawn_url(state, owner_name, &server, Some(&original))),
                    failed => false,
                    pending => None::<&str>,
                },
            )))
        }
    }
}

/// `GET /hub/user-redirect/<path>`: `<path>` on the logged-in user's default server, through
/// the spawn page (which starts it when needed).
pub async fn user_redirect(
    State(state): State<AppState>,
    uri: Uri,
    browser: Browser,
) -> PageResult {
    let identity = browser.require_user(&state)?;
    let me = identity.principal.name();
    let here = format!("{}user-redirect", state.config.hub.hub_prefix());
    let rest = uri
        .path()
        .strip_prefix(&here)
        .unwrap_or("")
        .trim_start_matches('/');
    let mut target = format!("{}{rest}", user_url(&state, me));
    if let Some(query) = uri.query() {
        target.push('?');
        target.push_str(query);
    }
    Ok(browser.with_cookies(&state, found(&spawn_url(&state, me, "", Some(&target)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths() {
        assert_eq!(
            parse_server_path("alice"),
            Some(("alice".into(), String::new()))
        );
        assert_eq!(
            parse_server_path("alice/"),
            Some(("alice".into(), String::new()))
        );
        assert_eq!(
            parse_server_path("a%40b/gpu/"),
            Some(("a@b".into(), "gpu".into()))
        );
        for bad in ["", "/", "a//", "a/b/c", "%ff", "a/%ff", "a//b"] {
            assert_eq!(parse_server_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn options_from_fields() {
        let map = options_map([("a", "1"), ("b", "x"), ("a", "2"), ("a", "3")].into_iter());
        assert_eq!(Value::Object(map), json!({"a": ["1", "2", "3"], "b": "x"}));
        let q = QueryArgs::parse(Some("opt-profile=gpu&next=/x&opt-=1"));
        assert_eq!(
            query_options(&q, false).map(Value::Object),
            Some(json!({"profile": "gpu"}))
        );
        let q = QueryArgs::parse(Some("profile=gpu&next=/x&_xsrf=t"));
        assert_eq!(query_options(&q, false), None);
        assert_eq!(
            query_options(&q, true).map(Value::Object),
            Some(json!({"profile": "gpu"}))
        );
        assert_eq!(
            query_options(&QueryArgs::parse(Some("next=/x")), true),
            None
        );
    }

    #[test]
    fn api_requests() {
        let mut headers = HeaderMap::new();
        assert!(looks_like_api(&headers, "/api/contents"));
        assert!(!looks_like_api(&headers, "/lab/tree/api.py"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        assert!(looks_like_api(&headers, "/lab"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,application/json;q=0.9"),
        );
        assert!(!looks_like_api(&headers, "/lab"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("text/html;q=0.5, application/json"),
        );
        assert!(looks_like_api(&headers, "/lab"));
    }
}
