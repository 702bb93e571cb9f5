//! `/hub/home`: the user's control panel. It lists the default server and, with
//! `hub.allow_named_servers`, the named ones, each with its state, start time and last
//! activity, and links or buttons to open, start, stop and delete them (the buttons call the
//! REST API through `hub.js`).

use axum::extract::State;
use chrono::NaiveDateTime;
use http::StatusCode;
use minijinja::context;
use minijinja::value::{Serde, Value};
use serde::Serialize;

use crate::access::Principal;
use crate::api::models::{server_url, url_name};
use crate::db::models::spawners::{self, ServerPhase, Spawner};
use crate::db::models::users;
use crate::spawn::Pending;
use crate::state::AppState;
use crate::web::{Browser, ErrorPage, PageResult, db_unavailable, render};

/// A timestamp for people (`2026-12-01 16:03 UTC`) and for machines (ISO 8601).
#[derive(Debug, Clone, Serialize)]
pub struct When {
    /// ISO 8601, UTC, for `<time datetime>`.
    pub iso: String,
    /// Minutes precision, UTC.
    pub text: String,
}

impl When {
    /// `None` stays `None`.
    pub fn of(ts: Option<NaiveDateTime>) -> Option<Self> {
        ts.map(|t| When {
            iso: t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            text: t.format("%Y-%m-%d %H:%M UTC").to_string(),
        })
    }
}

/// What the home page shows of one server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerView {
    /// Server name; "" for the default server.
    pub name: String,
    /// The label people see: the display name, else the name, else "Default server".
    pub label: String,
    /// The display name; "" when unset.
    pub display_name: String,
    /// `ready`, `pending` or `stopped`.
    pub state: &'static str,
    /// What is pending (`spawn`, `stop`, `check`), when `state` is `pending`.
    pub pending: Option<&'static str>,
    /// The server's URL.
    pub url: String,
    /// The spawn page that starts it.
    pub spawn_url: String,
    /// The spawn-pending page that follows its start.
    pub pending_url: String,
    /// Its path under `/hub/api/`.
    pub api_path: String,
    /// When it was started.
    pub started: Option<When>,
    /// Its last activity.
    pub last_activity: Option<When>,
}

/// The state of `row` as pages show it: the operation in flight in this hub first, then the
/// persisted phase.
pub fn server_state(state: &AppState, row: &Spawner) -> (&'static str, Option<&'static str>) {
    let pending = state
        .servers
        .current(row.id)
        .map(|op| op.kind)
        .or(match row.phase {
            ServerPhase::Spawning => Some(Pending::Spawn),
            ServerPhase::Stopping => Some(Pending::Stop),
            ServerPhase::Running | ServerPhase::Stopped => None,
        });
    match (pending, row.phase) {
        (Some(kind), _) => ("pending", Some(kind.as_str())),
        (None, ServerPhase::Running) => ("ready", None),
        (None, _) => ("stopped", None),
    }
}

/// The view of server `row` of `user`.
pub fn server_view(state: &AppState, user: &str, row: &Spawner) -> ServerView {
    let prefix = state.config.hub.hub_prefix();
    let (server_state, pending) = server_state(state, row);
    let (label, suffix, api_path) = if row.name.is_empty() {
        (
            "Default server".to_owned(),
            String::new(),
            format!("users/{}/server", url_name(user)),
        )
    } else {
        (
            row.name.clone(),
            format!("/{}", url_name(&row.name)),
            format!("users/{}/servers/{}", url_name(user), url_name(&row.name)),
        )
    };
    let label = if row.display_name.is_empty() {
        label
    } else {
        row.display_name.clone()
    };
    ServerView {
        name: row.name.clone(),
        label,
        display_name: row.display_name.clone(),
        state: server_state,
        pending,
        url: server_url(state, user, &row.name),
        spawn_url: format!("{prefix}spawn/{}{suffix}", url_name(user)),
        pending_url: format!("{prefix}spawn-pending/{}{suffix}", url_name(user)),
        api_path,
        started: When::of(row.started),
        last_activity: When::of(row.last_activity),
    }
}

/// A default server that was never used has no row yet; it is shown stopped.
fn unused_default(user: &users::User) -> Spawner {
    Spawner {
        id: 0,
        user_id: user.id,
        name: String::new(),
        display_name: String::new(),
        state: serde_json::Map::new(),
        user_options: serde_json::Map::new(),
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

/// `GET /hub/home`.
pub async fn home_page(State(state): State<AppState>, browser: Browser) -> PageResult {
    let identity = browser.require_user(&state)?;
    let Principal::User(user) = &identity.principal else {
        return Err(ErrorPage::new(StatusCode::NOT_FOUND).halt(&state, Some(&browser)));
    };
    let user_id = user.id;
    let rows = state
        .db
        .run(move |conn| spawners::list_for_user(conn, user_id))
        .await
        .map_err(|e| db_unavailable(&state, Some(&browser), &e))?;
    let default_row = rows
        .iter()
        .find(|r| r.name.is_empty())
        .cloned()
        .unwrap_or_else(|| unused_default(user));
    let mut named: Vec<ServerView> = rows
        .iter()
        .filter(|r| !r.name.is_empty())
        .map(|r| server_view(&state, &user.name, r))
        .collect();
    named.sort_by(|a, b| a.name.cmp(&b.name));
    let hub = &state.config.hub;
    let limit = hub.named_server_limit_per_user.get();
    let at_limit = limit.is_some_and(|l| named.len() >= usize::try_from(l).unwrap_or(usize::MAX));
    Ok(render(
        &state,
        Some(&browser),
        StatusCode::OK,
        "home.html",
        context! {
            default_server => Value::from(Serde(server_view(&state, &user.name, &default_row))),
            named_servers => Value::from(Serde(&named)),
            allow_named_servers => hub.allow_named_servers,
            named_server_limit => limit,
            at_named_server_limit => at_limit,
            user_url_name => url_name(&user.name),
        },
    ))
}
