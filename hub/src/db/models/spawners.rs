//! `spawners`: one row per server of a user (`name` "" is the default server), holding the
//! spawner's opaque state, the last user options, and, while the server is active, its address.
//!
//! The address is kept in `server_*` columns rather than JupyterHub's separate `servers` table:
//! a server address only ever belongs to one spawner row, so one row read gives the
//! orchestrator everything, and one UPDATE changes phase and address together.
//!
//! The server's OAuth client is the `oauth_clients` row whose `spawner_id` is this row's id, and
//! its own API token the `api_tokens` row with this `spawner_id`: both are deleted with the row.
//! (JupyterHub points the other way, `spawners.oauth_client_id`; owning the client from its
//! server makes deletion cascade without application code.)
//!
//! The lifecycle is persisted in `phase` (see [`ServerPhase`]) so that after a restart the hub
//! knows what it was doing. The transitions are compare-and-set updates: a spawn only begins if
//! the server was stopped, which also keeps two hubs on one database from both starting it.

use std::fmt;

use chrono::NaiveDateTime;
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::prelude::*;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use serde_json::{Map, Value};

use super::{IdFilter, expect_one};
use crate::db::connection::DbConnection;
use crate::db::json::{JsonText, to_json};
use crate::db::schema::{spawners, users};

/// The persisted lifecycle phase of a server.
///
/// JupyterHub's runtime `pending` values map onto it: `spawn` → `Spawning`, `stop` →
/// `Stopping`; `ready` is `Running`. Short runtime actions (`check`, `rename`) are not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum ServerPhase {
    /// Not running; no address.
    Stopped,
    /// A spawn was requested and has not finished (start, readiness check, proxy route).
    /// After a restart: poll with the saved state, then adopt or clean up.
    Spawning,
    /// Started, ready and routed.
    Running,
    /// A stop was requested and has not finished. After a restart: stop again.
    Stopping,
}

impl ServerPhase {
    /// All phases.
    pub const ALL: [ServerPhase; 4] = [
        ServerPhase::Stopped,
        ServerPhase::Spawning,
        ServerPhase::Running,
        ServerPhase::Stopping,
    ];

    /// The value stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerPhase::Stopped => "stopped",
            ServerPhase::Spawning => "spawning",
            ServerPhase::Running => "running",
            ServerPhase::Stopping => "stopping",
        }
    }

    /// Parses a stored value.
    pub fn parse(value: &str) -> Option<ServerPhase> {
        ServerPhase::ALL.into_iter().find(|p| p.as_str() == value)
    }

    /// Active means "not stopped" (JupyterHub: pending or ready).
    pub fn is_active(self) -> bool {
        self != ServerPhase::Stopped
    }
}

impl fmt::Display for ServerPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<DB> ToSql<Text, DB> for ServerPhase
where
    DB: Backend,
    str: ToSql<Text, DB>,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
        self.as_str().to_sql(out)
    }
}

impl<DB> FromSql<Text, DB> for ServerPhase
where
    DB: Backend,
    String: FromSql<Text, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        let text = String::from_sql(bytes)?;
        ServerPhase::parse(&text).ok_or_else(|| format!("unknown server phase {text:?}").into())
    }
}

/// Where a server listens, as reported by the spawner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    /// `http` or `https`.
    pub proto: String,
    /// Host name or IP address (IPv6 without brackets).
    pub ip: String,
    /// TCP port.
    pub port: i32,
    /// The server's URL prefix, e.g. `/user/alice/`.
    pub base_url: String,
}

impl ServerAddress {
    /// `proto://host:port`, bracketing IPv6 addresses: the proxy target.
    pub fn origin(&self) -> String {
        if self.ip.contains(':') && !self.ip.starts_with('[') {
            format!("{}://[{}]:{}", self.proto, self.ip, self.port)
        } else {
            format!("{}://{}:{}", self.proto, self.ip, self.port)
        }
    }
}

/// A row of `spawners`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = spawners)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct Spawner {
    /// Database id.
    pub id: i32,
    /// Owner.
    pub user_id: i32,
    /// Server name; "" for the default server.
    pub name: String,
    /// Display name (JupyterHub 6.0+); "" when unset.
    pub display_name: String,
    /// The spawner's opaque state (`get_state()`), handed back on poll and stop.
    #[diesel(deserialize_as = JsonText<Map<String, Value>>)]
    pub state: Map<String, Value>,
    /// The last user options used or saved.
    #[diesel(deserialize_as = JsonText<Map<String, Value>>)]
    pub user_options: Map<String, Value>,
    /// Lifecycle phase.
    pub phase: ServerPhase,
    /// When `phase` last changed.
    pub phase_changed: NaiveDateTime,
    /// When the current (or last attempted) spawn began; cleared on stop.
    pub started: Option<NaiveDateTime>,
    /// Last activity seen for this server.
    pub last_activity: Option<NaiveDateTime>,
    /// Address parts; all set while the server has an address.
    pub server_proto: Option<String>,
    /// See `server_proto`.
    pub server_ip: Option<String>,
    /// See `server_proto`.
    pub server_port: Option<i32>,
    /// See `server_proto`.
    pub server_base_url: Option<String>,
}

impl Spawner {
    /// The server's address, if the spawner has reported one.
    pub fn server(&self) -> Option<ServerAddress> {
        Some(ServerAddress {
            proto: self.server_proto.clone()?,
            ip: self.server_ip.clone()?,
            port: self.server_port?,
            base_url: self.server_base_url.clone()?,
        })
    }

    /// JupyterHub's `ready`: running, nothing pending.
    pub fn is_ready(&self) -> bool {
        self.phase == ServerPhase::Running
    }

    /// JupyterHub's `active`: pending or ready.
    pub fn is_active(&self) -> bool {
        self.phase.is_active()
    }
}

/// A server to create (named servers via `PUT /users/{name}/servers/{server}`, or the default
/// server row on first use).
#[derive(Debug, Clone, PartialEq)]
pub struct NewSpawner<'a> {
    /// Owner.
    pub user_id: i32,
    /// Server name; "" for the default server.
    pub name: &'a str,
    /// Display name; "" for none.
    pub display_name: &'a str,
    /// Initial user options.
    pub user_options: Map<String, Value>,
}

#[derive(Insertable)]
#[diesel(table_name = spawners)]
struct SpawnerRow<'a> {
    user_id: i32,
    name: &'a str,
    display_name: &'a str,
    state: String,
    user_options: String,
    phase: ServerPhase,
    phase_changed: NaiveDateTime,
}

/// Creates a stopped server. A name the user already has is a unique violation.
pub fn insert(conn: &mut DbConnection, new: &NewSpawner<'_>) -> QueryResult<Spawner> {
    diesel::insert_into(spawners::table)
        .values(SpawnerRow {
            user_id: new.user_id,
            name: new.name,
            display_name: new.display_name,
            state: "{}".into(),
            user_options: to_json(&new.user_options)?,
            phase: ServerPhase::Stopped,
            phase_changed: crate::db::now(),
        })
        .returning(spawners::all_columns)
        .get_result(conn)
}

/// Returns the user's server called `name`, creating a stopped one if it does not exist yet
/// (also when another connection creates it at the same moment).
pub fn find_or_insert(conn: &mut DbConnection, user_id: i32, name: &str) -> QueryResult<Spawner> {
    if let Some(existing) = find(conn, user_id, name)? {
        return Ok(existing);
    }
    let new = NewSpawner {
        user_id,
        name,
        display_name: "",
        user_options: Map::new(),
    };
    match insert(conn, &new) {
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => find(conn, user_id, name)?.ok_or(diesel::result::Error::NotFound),
        other => other,
    }
}

/// The user's server called `name` ("" for the default server).
pub fn find(conn: &mut DbConnection, user_id: i32, name: &str) -> QueryResult<Option<Spawner>> {
    spawners::table
        .filter(spawners::user_id.eq(user_id))
        .filter(spawners::name.eq(name))
        .select(Spawner::as_select())
        .first(conn)
        .optional()
}

/// A server by id.
pub fn find_by_id(conn: &mut DbConnection, id: i32) -> QueryResult<Option<Spawner>> {
    spawners::table
        .find(id)
        .select(Spawner::as_select())
        .first(conn)
        .optional()
}

/// All servers of a user, default server first, then by name.
pub fn list_for_user(conn: &mut DbConnection, user_id: i32) -> QueryResult<Vec<Spawner>> {
    spawners::table
        .filter(spawners::user_id.eq(user_id))
        .order(spawners::name.asc())
        .select(Spawner::as_select())
        .load(conn)
}

/// All servers of several users (for building user models of a page in one query), ordered by
/// user then name.
pub fn list_for_users(conn: &mut DbConnection, user_ids: &[i32]) -> QueryResult<Vec<Spawner>> {
    let ids = IdFilter::new(user_ids);
    let all = spawners::table
        .order((spawners::user_id.asc(), spawners::name.asc()))
        .select(Spawner::as_select());
    let mut rows: Vec<Spawner> = match &ids {
        IdFilter::Empty => return Ok(Vec::new()),
        IdFilter::Range { lo, hi, .. } => {
            all.filter(spawners::user_id.between(*lo, *hi)).load(conn)?
        }
        IdFilter::List(list) => all
            .filter(spawners::user_id.eq_any(list.clone()))
            .load(conn)?,
    };
    rows.retain(|s| ids.keeps(s.user_id));
    Ok(rows)
}

/// Servers in any of `phases`, oldest phase change first: what a restarted hub must resume.
pub fn list_in_phases(
    conn: &mut DbConnection,
    phases: &[ServerPhase],
) -> QueryResult<Vec<Spawner>> {
    spawners::table
        .filter(spawners::phase.eq_any(phases.to_vec()))
        .order((spawners::phase_changed.asc(), spawners::id.asc()))
        .select(Spawner::as_select())
        .load(conn)
}

/// How many active servers exist (for `active_server_limit`).
pub fn count_active(conn: &mut DbConnection) -> QueryResult<i64> {
    spawners::table
        .filter(spawners::phase.ne(ServerPhase::Stopped))
        .count()
        .get_result(conn)
}

/// How many servers are spawning (for `concurrent_spawn_limit`).
pub fn count_in_phase(conn: &mut DbConnection, phase: ServerPhase) -> QueryResult<i64> {
    spawners::table
        .filter(spawners::phase.eq(phase))
        .count()
        .get_result(conn)
}

/// How many named servers (name ≠ "") a user has (for `named_server_limit_per_user`).
pub fn count_named(conn: &mut DbConnection, user_id: i32) -> QueryResult<i64> {
    spawners::table
        .filter(spawners::user_id.eq(user_id))
        .filter(spawners::name.ne(""))
        .count()
        .get_result(conn)
}

/// Compare-and-set of the phase: moves server `id` to `to` only if its phase is one of
/// `from`. Returns false if the phase was something else (or the row does not exist), in which
/// case nothing changed. Leaving `Stopped` for `Spawning` also stamps `started` and the
/// `last_activity` of the server and of its user.
pub fn transition(
    conn: &mut DbConnection,
    id: i32,
    from: &[ServerPhase],
    to: ServerPhase,
    at: NaiveDateTime,
) -> QueryResult<bool> {
    let target = spawners::table
        .find(id)
        .filter(spawners::phase.eq_any(from.to_vec()));
    let changed = if to == ServerPhase::Spawning {
        let changed = diesel::update(target)
            .set((
                spawners::phase.eq(to),
                spawners::phase_changed.eq(at),
                spawners::started.eq(Some(at)),
                spawners::last_activity.eq(Some(at)),
            ))
            .execute(conn)?;
        if changed > 0 {
            // A start is activity of the server and of its owner (as in JupyterHub), so a
            // server that never reports any is still judged from when it started.
            diesel::update(
                users::table
                    .filter(users::id.eq_any(spawners::table.find(id).select(spawners::user_id))),
            )
            .set(users::last_activity.eq(Some(at)))
            .execute(conn)?;
        }
        changed
    } else {
        diesel::update(target)
            .set((spawners::phase.eq(to), spawners::phase_changed.eq(at)))
            .execute(conn)?
    };
    Ok(changed > 0)
}

/// Records what `Spawner::start` returned: the address and the state to keep. The phase is not
/// changed (it stays `Spawning` until the readiness check and route are done).
pub fn record_started(
    conn: &mut DbConnection,
    id: i32,
    address: &ServerAddress,
    state: &Map<String, Value>,
) -> QueryResult<()> {
    let state = to_json(state)?;
    expect_one(
        diesel::update(spawners::table.find(id))
            .set((
                spawners::server_proto.eq(Some(address.proto.as_str())),
                spawners::server_ip.eq(Some(address.ip.as_str())),
                spawners::server_port.eq(Some(address.port)),
                spawners::server_base_url.eq(Some(address.base_url.as_str())),
                spawners::state.eq(state),
            ))
            .execute(conn)?,
    )
}

/// Marks a server stopped: phase `Stopped`, address and `started` cleared, and the state the
/// spawner left after stopping (usually `{}`) stored.
pub fn record_stopped(
    conn: &mut DbConnection,
    id: i32,
    state: &Map<String, Value>,
    at: NaiveDateTime,
) -> QueryResult<()> {
    let state = to_json(state)?;
    expect_one(
        diesel::update(spawners::table.find(id))
            .set((
                spawners::phase.eq(ServerPhase::Stopped),
                spawners::phase_changed.eq(at),
                spawners::started.eq(None::<NaiveDateTime>),
                spawners::server_proto.eq(None::<String>),
                spawners::server_ip.eq(None::<String>),
                spawners::server_port.eq(None::<i32>),
                spawners::server_base_url.eq(None::<String>),
                spawners::state.eq(state),
            ))
            .execute(conn)?,
    )
}

/// Replaces the spawner state.
pub fn save_state(conn: &mut DbConnection, id: i32, state: &Map<String, Value>) -> QueryResult<()> {
    let state = to_json(state)?;
    expect_one(
        diesel::update(spawners::table.find(id))
            .set(spawners::state.eq(state))
            .execute(conn)?,
    )
}

/// Replaces the saved user options.
pub fn set_user_options(
    conn: &mut DbConnection,
    id: i32,
    options: &Map<String, Value>,
) -> QueryResult<()> {
    let options = to_json(options)?;
    expect_one(
        diesel::update(spawners::table.find(id))
            .set(spawners::user_options.eq(options))
            .execute(conn)?,
    )
}

/// Sets the display name ("" clears it).
pub fn set_display_name(conn: &mut DbConnection, id: i32, display_name: &str) -> QueryResult<()> {
    expect_one(
        diesel::update(spawners::table.find(id))
            .set(spawners::display_name.eq(display_name))
            .execute(conn)?,
    )
}

/// Renames a server; a name the user already has is a unique violation.
pub fn rename(conn: &mut DbConnection, id: i32, new_name: &str) -> QueryResult<()> {
    expect_one(
        diesel::update(spawners::table.find(id))
            .set(spawners::name.eq(new_name))
            .execute(conn)?,
    )
}

/// Moves `last_activity` forward to `at` (older values change nothing); returns whether it
/// changed.
pub fn touch_last_activity(
    conn: &mut DbConnection,
    id: i32,
    at: NaiveDateTime,
) -> QueryResult<bool> {
    let changed = diesel::update(
        spawners::table.find(id).filter(
            spawners::last_activity
                .is_null()
                .or(spawners::last_activity.lt(at)),
        ),
    )
    .set(spawners::last_activity.eq(at))
    .execute(conn)?;
    Ok(changed > 0)
}

/// Deletes a server with its OAuth client, tokens, shares and share codes (by cascade).
pub fn delete(conn: &mut DbConnection, id: i32) -> QueryResult<()> {
    expect_one(diesel::delete(spawners::table.find(id)).execute(conn)?)
}
