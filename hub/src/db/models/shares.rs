//! `shares`: a server shared with one user or one group, with the scopes the share grants
//! (default `access:servers!server=<owner>/<name>`). One row per (server, recipient); granting
//! again merges scopes. Shares vanish with their server, its owner, or the recipient.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::spawners::ServerPhase;
use super::{Page, PageRequest, expect_one};
use crate::db::connection::{DbConnection, MultiBackend};
use crate::db::json::{JsonText, to_json};
use crate::db::schema::{groups, shares, spawners, user_group_map, users};
use crate::db::write_transaction;

/// A row of `shares`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = shares)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct Share {
    /// Database id.
    pub id: i32,
    /// The shared server.
    pub spawner_id: i32,
    /// Recipient user (exactly one of `user_id`/`group_id` is set).
    pub user_id: Option<i32>,
    /// Recipient group.
    pub group_id: Option<i32>,
    /// Granted scopes.
    #[diesel(deserialize_as = JsonText<Vec<String>>)]
    pub scopes: Vec<String>,
    /// When the share was first made.
    pub created_at: NaiveDateTime,
}

impl Share {
    /// The recipient.
    pub fn recipient(&self) -> Option<ShareWith> {
        match (self.user_id, self.group_id) {
            (Some(id), _) => Some(ShareWith::User(id)),
            (None, Some(id)) => Some(ShareWith::Group(id)),
            (None, None) => None,
        }
    }
}

/// The recipient of a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShareWith {
    /// A user, by id.
    User(i32),
    /// A group, by id.
    Group(i32),
}

#[derive(Insertable)]
#[diesel(table_name = shares)]
struct ShareRow {
    spawner_id: i32,
    user_id: Option<i32>,
    group_id: Option<i32>,
    scopes: String,
    created_at: NaiveDateTime,
}

fn for_recipient(spawner_id: i32, with: ShareWith) -> shares::BoxedQuery<'static, MultiBackend> {
    let q = shares::table
        .filter(shares::spawner_id.eq(spawner_id))
        .into_boxed();
    match with {
        ShareWith::User(id) => q.filter(shares::user_id.eq(id)),
        ShareWith::Group(id) => q.filter(shares::group_id.eq(id)),
    }
}

/// Shares server `spawner_id` with `with`, or adds `scopes` to the existing share (keeping
/// its creation time). Scopes are kept sorted and without duplicates.
pub fn grant(
    conn: &mut DbConnection,
    spawner_id: i32,
    with: ShareWith,
    scopes: &[String],
    at: NaiveDateTime,
) -> QueryResult<Share> {
    write_transaction(conn, |conn| match find(conn, spawner_id, with)? {
        Some(existing) => {
            let merged = merge(existing.scopes.iter().chain(scopes));
            diesel::update(shares::table.find(existing.id))
                .set(shares::scopes.eq(to_json(&merged)?))
                .returning(shares::all_columns)
                .get_result(conn)
        }
        None => {
            let (user_id, group_id) = match with {
                ShareWith::User(id) => (Some(id), None),
                ShareWith::Group(id) => (None, Some(id)),
            };
            diesel::insert_into(shares::table)
                .values(ShareRow {
                    spawner_id,
                    user_id,
                    group_id,
                    scopes: to_json(&merge(scopes.iter()))?,
                    created_at: at,
                })
                .returning(shares::all_columns)
                .get_result(conn)
        }
    })
}

fn merge<'a>(scopes: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut merged: Vec<String> = scopes.cloned().collect();
    merged.sort();
    merged.dedup();
    merged
}

/// Revokes `scopes` from a share (`None`: all of them). A share left without scopes is
/// deleted. Returns the remaining share, or `None` if it is gone (or never existed).
pub fn revoke(
    conn: &mut DbConnection,
    spawner_id: i32,
    with: ShareWith,
    scopes: Option<&[String]>,
) -> QueryResult<Option<Share>> {
    write_transaction(conn, |conn| {
        let Some(existing) = find(conn, spawner_id, with)? else {
            return Ok(None);
        };
        let remaining: Vec<String> = match scopes {
            None => Vec::new(),
            Some(revoked) => existing
                .scopes
                .iter()
                .filter(|s| !revoked.contains(s))
                .cloned()
                .collect(),
        };
        if remaining.is_empty() {
            diesel::delete(shares::table.find(existing.id)).execute(conn)?;
            return Ok(None);
        }
        diesel::update(shares::table.find(existing.id))
            .set(shares::scopes.eq(to_json(&remaining)?))
            .returning(shares::all_columns)
            .get_result(conn)
            .map(Some)
    })
}

/// The share of a server with one recipient.
pub fn find(
    conn: &mut DbConnection,
    spawner_id: i32,
    with: ShareWith,
) -> QueryResult<Option<Share>> {
    for_recipient(spawner_id, with)
        .select(Share::as_select())
        .first(conn)
        .optional()
}

/// A share by id.
pub fn find_by_id(conn: &mut DbConnection, id: i32) -> QueryResult<Option<Share>> {
    shares::table
        .find(id)
        .select(Share::as_select())
        .first(conn)
        .optional()
}

fn page_of(
    conn: &mut DbConnection,
    query: impl Fn() -> shares::BoxedQuery<'static, MultiBackend>,
    page: PageRequest,
) -> QueryResult<Page<Share>> {
    let total = query().count().get_result(conn)?;
    let items = query()
        .order(shares::id.asc())
        .offset(page.offset())
        .limit(page.limit())
        .select(Share::as_select())
        .load(conn)?;
    Ok(Page { items, total })
}

/// Shares of one server, in creation order.
pub fn list_for_spawner(
    conn: &mut DbConnection,
    spawner_id: i32,
    page: PageRequest,
) -> QueryResult<Page<Share>> {
    page_of(
        conn,
        || {
            shares::table
                .filter(shares::spawner_id.eq(spawner_id))
                .into_boxed()
        },
        page,
    )
}

/// Shares of all servers of one owner (`GET /shares/{owner}`).
pub fn list_for_owner(
    conn: &mut DbConnection,
    owner_id: i32,
    page: PageRequest,
) -> QueryResult<Page<Share>> {
    page_of(
        conn,
        || {
            shares::table
                .filter(
                    shares::spawner_id.eq_any(
                        spawners::table
                            .filter(spawners::user_id.eq(owner_id))
                            .select(spawners::id),
                    ),
                )
                .into_boxed()
        },
        page,
    )
}

/// Shares made to a user; with `include_groups`, also those made to the user's groups
/// (`GET /users/{name}/shared`, and the scopes a user gains from shares).
pub fn list_for_user(
    conn: &mut DbConnection,
    user_id: i32,
    include_groups: bool,
    page: PageRequest,
) -> QueryResult<Page<Share>> {
    page_of(
        conn,
        || {
            let direct = shares::user_id.eq(user_id);
            if include_groups {
                let my_groups = user_group_map::table
                    .filter(user_group_map::user_id.eq(user_id))
                    .select(user_group_map::group_id.nullable());
                shares::table
                    .filter(direct.or(shares::group_id.eq_any(my_groups)))
                    .into_boxed()
            } else {
                shares::table.filter(direct).into_boxed()
            }
        },
        page,
    )
}

/// Shares made to a group (`GET /groups/{name}/shared`).
pub fn list_for_group(
    conn: &mut DbConnection,
    group_id: i32,
    page: PageRequest,
) -> QueryResult<Page<Share>> {
    page_of(
        conn,
        || {
            shares::table
                .filter(shares::group_id.eq(group_id))
                .into_boxed()
        },
        page,
    )
}

/// Deletes one share.
pub fn delete(conn: &mut DbConnection, id: i32) -> QueryResult<()> {
    expect_one(diesel::delete(shares::table.find(id)).execute(conn)?)
}

/// Deletes every share of a server (`DELETE /shares/{owner}/{server}`); returns how many.
pub fn delete_for_spawner(conn: &mut DbConnection, spawner_id: i32) -> QueryResult<usize> {
    diesel::delete(shares::table.filter(shares::spawner_id.eq(spawner_id))).execute(conn)
}

/// A share with the names the Share model shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareDetails {
    /// The share.
    pub share: Share,
    /// The server owner's name.
    pub owner_name: String,
    /// The server's name ("" = default server).
    pub server_name: String,
    /// The server's phase (`ready` in the model is `Running`).
    pub server_phase: ServerPhase,
    /// The recipient user's name, for a user share.
    pub user_name: Option<String>,
    /// The recipient group's name, for a group share.
    pub group_name: Option<String>,
}

/// Adds owner, server and recipient names to shares, in three queries whatever their number.
/// Shares whose rows vanished meanwhile are left out.
pub fn details(conn: &mut DbConnection, shares_in: Vec<Share>) -> QueryResult<Vec<ShareDetails>> {
    let spawner_ids: Vec<i32> = shares_in.iter().map(|s| s.spawner_id).collect();
    let servers: HashMap<i32, (String, ServerPhase, String)> = spawners::table
        .inner_join(users::table)
        .filter(spawners::id.eq_any(spawner_ids))
        .select((spawners::id, spawners::name, spawners::phase, users::name))
        .load::<(i32, String, ServerPhase, String)>(conn)?
        .into_iter()
        .map(|(id, name, phase, owner)| (id, (name, phase, owner)))
        .collect();
    let user_ids: Vec<i32> = shares_in.iter().filter_map(|s| s.user_id).collect();
    let user_names: HashMap<i32, String> = users::table
        .filter(users::id.eq_any(user_ids))
        .select((users::id, users::name))
        .load::<(i32, String)>(conn)?
        .into_iter()
        .collect();
    let group_ids: Vec<i32> = shares_in.iter().filter_map(|s| s.group_id).collect();
    let group_names: HashMap<i32, String> = groups::table
        .filter(groups::id.eq_any(group_ids))
        .select((groups::id, groups::name))
        .load::<(i32, String)>(conn)?
        .into_iter()
        .collect();
    Ok(shares_in
        .into_iter()
        .filter_map(|share| {
            let (server_name, server_phase, owner_name) = servers.get(&share.spawner_id)?.clone();
            let user_name = match share.user_id {
                Some(id) => Some(user_names.get(&id)?.clone()),
                None => None,
            };
            let group_name = match share.group_id {
                Some(id) => Some(group_names.get(&id)?.clone()),
                None => None,
            };
            Some(ShareDetails {
                share,
                owner_name,
                server_name,
                server_phase,
                user_name,
                group_name,
            })
        })
        .collect())
}

/// The scopes of one share a user receives, with the shared server's current names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedShare {
    /// The scopes as stored.
    pub scopes: Vec<String>,
    /// The server owner's name.
    pub owner_name: String,
    /// The server's name ("" = default server).
    pub server_name: String,
}

/// Every share a user receives, directly or through one of their groups, in one query (the
/// scopes a user gains from shares, computed on every request).
pub fn received_scopes(conn: &mut DbConnection, user_id: i32) -> QueryResult<Vec<ReceivedShare>> {
    let my_groups = user_group_map::table
        .filter(user_group_map::user_id.eq(user_id))
        .select(user_group_map::group_id.nullable());
    let rows: Vec<(JsonText<Vec<String>>, String, String)> = shares::table
        .inner_join(spawners::table.inner_join(users::table))
        .filter(
            shares::user_id
                .eq(user_id)
                .or(shares::group_id.eq_any(my_groups)),
        )
        .order(shares::id.asc())
        .select((shares::scopes, users::name, spawners::name))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(scopes, owner_name, server_name)| ReceivedShare {
            scopes: scopes.0,
            owner_name,
            server_name,
        })
        .collect())
}
