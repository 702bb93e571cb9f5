//! `/hub/home`: the user's control panel. It lists the default server and, with
//! `hub.allow_named_servers`, the named ones, each with its state, profile, start time and last
//! activity, and links or buttons to open, start, stop and delete them (the buttons call the
//! REST API through `hub.js`).
//!
//! Sharing: for each server the user may share (scope `shares` on it), who has access (users
//! and groups) and the unexpired share links, with forms to share with a user or group, to make
//! a link with an expiry, and to revoke; and the servers others share with the user. The lists
//! are read here; the changes go through the sharing API.

use std::collections::HashMap;

use axum::extract::State;
use chrono::NaiveDateTime;
use http::StatusCode;
use minijinja::context;
use minijinja::value::{Serde, Value};
use serde::Serialize;

use crate::access::{Identity, Principal};
use crate::api::models::{server_url, url_name};
use crate::db::models::spawners::{self, ServerPhase, Spawner};
use crate::db::models::{PageRequest, groups, share_codes, shares, users};
use crate::rbac::{Target, UserGroups};
use crate::spawn::Pending;
use crate::spawn::profiles::PROFILE_OPTION;
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
    /// What is pending (`spawn`, `stop`, `check`, or `queued`: waiting in the spawn page's
    /// line), when `state` is `pending`.
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
    /// The display name of the profile it was last started with.
    pub profile: Option<String>,
}

/// Who a server is shared with, as the home page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ShareView {
    /// `user` or `group`.
    pub kind: &'static str,
    /// The user's or group's name.
    pub name: String,
    /// Since when.
    pub created: Option<When>,
}

/// An unexpired share link of a server.
#[derive(Debug, Clone, Serialize)]
pub struct CodeView {
    /// `sc_<n>`, what revoking names.
    pub id: String,
    /// When it was made.
    pub created: Option<When>,
    /// When it stops working.
    pub expires_at: Option<When>,
    /// How often it was accepted.
    pub exchange_count: i32,
}

/// The sharing panel of one of the user's servers.
#[derive(Debug, Clone, Serialize)]
pub struct SharingView {
    /// Server name ("" = default).
    pub name: String,
    /// Label in text.
    pub label: String,
    /// An id-safe key for element ids (`default`, or `s-<n>`).
    pub key: String,
    /// Whether the server runs.
    pub ready: bool,
    /// `shares/<owner>/<server>` under the API.
    pub shares_api: String,
    /// `share-codes/<owner>/<server>` under the API.
    pub codes_api: String,
    /// Users and groups with access.
    pub shares: Vec<ShareView>,
    /// Unexpired links.
    pub codes: Vec<CodeView>,
}

/// A server someone shares with the user.
#[derive(Debug, Clone, Serialize)]
pub struct ReceivedView {
    /// Its owner.
    pub owner: String,
    /// Its name ("" = default).
    pub server_name: String,
    /// `owner` or `owner/server`.
    pub label: String,
    /// Where it is.
    pub url: String,
    /// Whether it runs.
    pub ready: bool,
    /// The group the share was made to, when not to the user.
    pub via_group: Option<String>,
    /// `users/<me>/shared/<owner>/<server>` under the API (leaving a share made to the user).
    pub leave_api: String,
}

/// Share-link lifetimes offered: seconds and label.
const LINK_LIFETIMES: [(u32, &str); 5] = [
    (3600, "1 hour"),
    (86_400, "1 day"),
    (7 * 86_400, "1 week"),
    (30 * 86_400, "30 days"),
    (365 * 86_400, "1 year"),
];

/// The state of `row` as pages show it: the operation in flight in this hub first, then the
/// persisted phase.
pub fn server_state(state: &AppState, row: &Spawner) -> (&'static str, Option<&'static str>) {
    if row.id != 0 && state.spawn_queue.place(row.id).is_some() {
        return ("pending", Some("queued"));
    }
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
        profile: row
            .user_options
            .get(PROFILE_OPTION)
            .and_then(serde_json::Value::as_str)
            .map(|slug| {
                state
                    .config
                    .profiles
                    .iter()
                    .find(|p| p.slug == slug)
                    .map_or_else(|| slug.to_owned(), |p| p.label().to_owned())
            }),
    }
}

/// The API path of a server's shares or share codes: `<kind>/<owner>/<server>` (a trailing
/// `/` for the default server).
fn sharing_path(kind: &str, owner: &str, server: &str) -> String {
    format!("{kind}/{}/{}", url_name(owner), url_name(server))
}

/// Everything about sharing the home page shows.
struct Sharing {
    mine: Vec<SharingView>,
    received: Vec<ReceivedView>,
}

async fn sharing(
    state: &AppState,
    identity: &Identity,
    user: &users::User,
    rows: &[Spawner],
) -> Result<Sharing, crate::db::DbError> {
    let user_id = user.id;
    let (my_groups, given, codes, received) = state
        .db
        .run(move |conn| {
            let my_groups: Vec<String> = groups::for_user(conn, user_id)?
                .into_iter()
                .map(|g| g.name)
                .collect();
            let given = shares::list_for_owner(conn, user_id, PageRequest::ALL)?.items;
            let given = shares::details(conn, given)?;
            let codes =
                share_codes::list_for_owner(conn, user_id, crate::db::now(), PageRequest::ALL)?
                    .items;
            let received = shares::list_for_user(conn, user_id, true, PageRequest::ALL)?.items;
            let received = shares::details(conn, received)?;
            Ok((my_groups, given, codes, received))
        })
        .await?;
    let membership = UserGroups {
        user: &user.name,
        groups: &my_groups,
    };
    let mut by_server: HashMap<i32, Vec<ShareView>> = HashMap::new();
    for d in given {
        let (kind, name) = match (d.user_name, d.group_name) {
            (Some(name), _) => ("user", name),
            (None, Some(name)) => ("group", name),
            (None, None) => continue,
        };
        by_server
            .entry(d.share.spawner_id)
            .or_default()
            .push(ShareView {
                kind,
                name,
                created: When::of(Some(d.share.created_at)),
            });
    }
    let mut codes_by_server: HashMap<i32, Vec<CodeView>> = HashMap::new();
    for code in codes {
        codes_by_server
            .entry(code.spawner_id)
            .or_default()
            .push(CodeView {
                id: format!("sc_{}", code.id),
                created: When::of(Some(code.created_at)),
                expires_at: When::of(code.expires_at),
                exchange_count: code.exchange_count,
            });
    }
    let mut ordered: Vec<&Spawner> = rows.iter().collect();
    ordered.sort_by(|a, b| a.name.cmp(&b.name));
    let mine = ordered
        .into_iter()
        .filter(|row| {
            identity.scopes.allows(
                "shares",
                &Target::Server {
                    user: &user.name,
                    server: &row.name,
                },
                &membership,
            )
        })
        .map(|row| SharingView {
            name: row.name.clone(),
            label: if row.name.is_empty() {
                "your default server".to_owned()
            } else {
                row.name.clone()
            },
            key: if row.name.is_empty() {
                "default".to_owned()
            } else {
                format!("s-{}", row.id)
            },
            ready: row.phase == ServerPhase::Running,
            shares_api: sharing_path("shares", &user.name, &row.name),
            codes_api: sharing_path("share-codes", &user.name, &row.name),
            shares: by_server.remove(&row.id).unwrap_or_default(),
            codes: codes_by_server.remove(&row.id).unwrap_or_default(),
        })
        .collect();
    let mut received: Vec<ReceivedView> = received
        .into_iter()
        .map(|d| {
            let label = if d.server_name.is_empty() {
                d.owner_name.clone()
            } else {
                format!("{}/{}", d.owner_name, d.server_name)
            };
            ReceivedView {
                url: server_url(state, &d.owner_name, &d.server_name),
                ready: d.server_phase == ServerPhase::Running,
                leave_api: format!(
                    "users/{}/shared/{}/{}",
                    url_name(&user.name),
                    url_name(&d.owner_name),
                    url_name(&d.server_name)
                ),
                via_group: d.group_name,
                owner: d.owner_name,
                server_name: d.server_name,
                label,
            }
        })
        .collect();
    received.sort_by(|a, b| a.label.cmp(&b.label).then(a.via_group.cmp(&b.via_group)));
    Ok(Sharing { mine, received })
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
    let mut with_default = rows.clone();
    if !with_default.iter().any(|r| r.name.is_empty()) {
        with_default.push(default_row.clone());
    }
    let sharing = sharing(&state, identity, user, &with_default)
        .await
        .map_err(|e| db_unavailable(&state, Some(&browser), &e))?;
    let hub = &state.config.hub;
    let limit = hub.named_server_limit_per_user.get();
    let at_limit = limit.is_some_and(|l| named.len() >= usize::try_from(l).unwrap_or(usize::MAX));
    let lifetimes: Vec<_> = LINK_LIFETIMES
        .iter()
        .map(|&(seconds, label)| context! { seconds => seconds, label => label })
        .collect();
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
            sharing => Value::from(Serde(&sharing.mine)),
            shared_with_me => Value::from(Serde(&sharing.received)),
            link_lifetimes => lifetimes,
        },
    ))
}
