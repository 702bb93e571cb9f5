//! `users`: hub users. Deleting a user deletes, by cascade, their servers, tokens, OAuth codes,
//! memberships, role grants, shares (made and received) and their servers' OAuth clients.

use std::fmt;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::spawners::ServerPhase;
use super::{Page, PageRequest, expect_one, lower};
use crate::db::connection::{DbConnection, MultiBackend};
use crate::db::schema::{groups, spawners, user_group_map, users};
use crate::db::write_transaction;

/// A row of `users`.
#[derive(Clone, PartialEq, Eq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct User {
    /// Database id.
    pub id: i32,
    /// Unique, already normalised by the authenticator.
    pub name: String,
    /// Whether the user is a hub admin (grants the `admin` role).
    pub admin: bool,
    /// When the user was created.
    pub created: NaiveDateTime,
    /// Last activity of the user or any of their servers.
    pub last_activity: Option<NaiveDateTime>,
    /// The id carried by the signed login cookie.
    pub cookie_id: String,
    /// Authenticator state, encrypted by the caller.
    pub encrypted_auth_state: Option<Vec<u8>>,
}

// Keeps cookie ids and auth state out of logs.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("admin", &self.admin)
            .field("created", &self.created)
            .field("last_activity", &self.last_activity)
            .field("has_auth_state", &self.encrypted_auth_state.is_some())
            .finish_non_exhaustive()
    }
}

/// A user to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewUser<'a> {
    /// The (normalised) name.
    pub name: &'a str,
    /// Admin flag.
    pub admin: bool,
    /// A fresh random cookie id.
    pub cookie_id: &'a str,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
struct UserRow<'a> {
    name: &'a str,
    admin: bool,
    created: NaiveDateTime,
    cookie_id: &'a str,
}

/// Creates a user. A taken name or cookie id is a unique violation.
pub fn insert(conn: &mut DbConnection, new: &NewUser<'_>) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(UserRow {
            name: new.name,
            admin: new.admin,
            created: crate::db::now(),
            cookie_id: new.cookie_id,
        })
        .returning(users::all_columns)
        .get_result(conn)
}

/// Creates several users at once: all of them, or (on any collision) none.
pub fn insert_many(conn: &mut DbConnection, new: &[NewUser<'_>]) -> QueryResult<Vec<User>> {
    write_transaction(conn, |conn| new.iter().map(|n| insert(conn, n)).collect())
}

/// Looks a user up by id.
pub fn find_by_id(conn: &mut DbConnection, id: i32) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// Looks a user up by exact name.
pub fn find_by_name(conn: &mut DbConnection, name: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::name.eq(name))
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// Looks a user up by the id in their login cookie.
pub fn find_by_cookie_id(conn: &mut DbConnection, cookie_id: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::cookie_id.eq(cookie_id))
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// The users with these names, ordered by id; unknown names are simply absent.
pub fn find_by_names<S: AsRef<str>>(
    conn: &mut DbConnection,
    names: &[S],
) -> QueryResult<Vec<User>> {
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    users::table
        .filter(users::name.eq_any(names))
        .order(users::id)
        .select(User::as_select())
        .load(conn)
}

/// How many users exist.
pub fn count(conn: &mut DbConnection) -> QueryResult<i64> {
    users::table.count().get_result(conn)
}

/// Sort order for [`list`], as in `GET /users?sort=` (JupyterHub 5.0+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserSortKey {
    /// Creation order (the default).
    #[default]
    Id,
    /// By name.
    Name,
    /// By last activity; never-active users count as oldest.
    LastActivity,
}

/// A sort key and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserSort {
    /// What to sort by.
    pub key: UserSortKey,
    /// Largest first.
    pub descending: bool,
}

impl UserSort {
    /// Parses the `sort` query parameter: `id`, `name` or `last_activity`, optionally prefixed
    /// with `-` for descending order. `None` for anything else (the API answers 400).
    pub fn parse(value: &str) -> Option<UserSort> {
        let (descending, key) = match value.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        let key = match key {
            "id" => UserSortKey::Id,
            "name" => UserSortKey::Name,
            "last_activity" => UserSortKey::LastActivity,
            _ => return None,
        };
        Some(UserSort { key, descending })
    }
}

/// The `state` filter of `GET /users`, applied in SQL from the persisted server phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStateFilter {
    /// Users with at least one server that is spawning, running or stopping.
    Active,
    /// Users with at least one running (ready) server.
    Ready,
    /// Users with no active server.
    Inactive,
}

impl ServerStateFilter {
    /// Parses `active`, `ready` or `inactive`.
    pub fn parse(value: &str) -> Option<ServerStateFilter> {
        match value {
            "active" => Some(ServerStateFilter::Active),
            "ready" => Some(ServerStateFilter::Ready),
            "inactive" => Some(ServerStateFilter::Inactive),
            _ => None,
        }
    }
}

/// Restricts a listing to what a filtered `list:users` scope allows: users named in `users`,
/// or members of a group named in `groups`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserScopeFilter {
    /// `!user=` filters.
    pub users: Vec<String>,
    /// `!group=` filters.
    pub groups: Vec<String>,
}

/// Parameters of [`list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// Offset and limit.
    pub page: PageRequest,
    /// Sort order; ties are broken by id.
    pub sort: UserSort,
    /// Case-insensitive substring of the name, as JupyterHub's `name_filter` (`ILIKE %x%`).
    pub name_filter: Option<String>,
    /// Server state filter.
    pub state: Option<ServerStateFilter>,
    /// Scope restriction; `None` means all users.
    pub only: Option<UserScopeFilter>,
}

fn filtered(query: &UserQuery) -> users::BoxedQuery<'static, MultiBackend> {
    let mut q = users::table.into_boxed();
    if let Some(filter) = &query.name_filter {
        let pattern = format!("%{}%", escape_like(filter));
        // lower() on both sides: the same (backend's) case folding for name and pattern.
        q = q.filter(lower(users::name).like(lower(pattern)).escape('\\'));
    }
    match query.state {
        Some(ServerStateFilter::Active) => {
            q = q.filter(
                users::id.eq_any(
                    spawners::table
                        .filter(spawners::phase.ne(ServerPhase::Stopped))
                        .select(spawners::user_id),
                ),
            );
        }
        Some(ServerStateFilter::Ready) => {
            q = q.filter(
                users::id.eq_any(
                    spawners::table
                        .filter(spawners::phase.eq(ServerPhase::Running))
                        .select(spawners::user_id),
                ),
            );
        }
        Some(ServerStateFilter::Inactive) => {
            q = q.filter(
                users::id.ne_all(
                    spawners::table
                        .filter(spawners::phase.ne(ServerPhase::Stopped))
                        .select(spawners::user_id),
                ),
            );
        }
        None => {}
    }
    if let Some(only) = &query.only {
        let members = user_group_map::table
            .inner_join(groups::table)
            .filter(groups::name.eq_any(only.groups.clone()))
            .select(user_group_map::user_id);
        q = q.filter(
            users::name
                .eq_any(only.users.clone())
                .or(users::id.eq_any(members)),
        );
    }
    q
}

/// Expands `$apply!(order)` with the ORDER BY of a [`UserSort`], one arm per order. Ties are
/// broken by id. NULL sorts differently per backend: "never active" is made the smallest
/// `last_activity` everywhere.
macro_rules! by_sort {
    ($sort:expr, $apply:ident) => {
        match ($sort.key, $sort.descending) {
            (UserSortKey::Id, false) => $apply!(users::id.asc()),
            (UserSortKey::Id, true) => $apply!(users::id.desc()),
            (UserSortKey::Name, false) => $apply!((users::name.asc(), users::id.asc())),
            (UserSortKey::Name, true) => $apply!((users::name.desc(), users::id.desc())),
            (UserSortKey::LastActivity, false) => $apply!((
                users::last_activity.is_not_null().asc(),
                users::last_activity.asc(),
                users::id.asc(),
            )),
            (UserSortKey::LastActivity, true) => $apply!((
                users::last_activity.is_null().asc(),
                users::last_activity.desc(),
                users::id.desc(),
            )),
        }
    };
}

/// Lists users with JupyterHub's filters, sort and pagination; `total` counts all matches.
pub fn list(conn: &mut DbConnection, query: &UserQuery) -> QueryResult<Page<User>> {
    if query.name_filter.is_none() && query.state.is_none() && query.only.is_none() {
        return list_unfiltered(conn, query.page, query.sort);
    }
    let total = filtered(query).count().get_result(conn)?;
    let q = filtered(query);
    macro_rules! boxed {
        ($order:expr) => {
            q.order($order)
        };
    }
    let q = by_sort!(query.sort, boxed);
    let items = q
        .offset(query.page.offset())
        .limit(query.page.limit())
        .select(User::as_select())
        .load(conn)?;
    Ok(Page { items, total })
}

/// [`list`] without filters, the common case (every page of `GET /users` for an admin or a
/// service): statements of fixed shape, which the connection keeps prepared, where the boxed
/// query of the filtered case is built and planned again on every call. Same order as [`list`].
fn list_unfiltered(
    conn: &mut DbConnection,
    page: PageRequest,
    sort: UserSort,
) -> QueryResult<Page<User>> {
    let total = users::table.count().get_result(conn)?;
    let (offset, limit) = (page.offset(), page.limit());
    let all = users::table.select(User::as_select());
    // Each order is a query of its own type, so that each is kept prepared.
    macro_rules! sorted {
        ($order:expr) => {
            all.order($order).offset(offset).limit(limit).load(conn)?
        };
    }
    let items = by_sort!(sort, sorted);
    Ok(Page { items, total })
}

/// Escapes LIKE wildcards so a filter matches literally (escape character `\`).
pub(crate) fn escape_like(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Sets or clears the admin flag.
pub fn set_admin(conn: &mut DbConnection, id: i32, admin: bool) -> QueryResult<()> {
    expect_one(
        diesel::update(users::table.find(id))
            .set(users::admin.eq(admin))
            .execute(conn)?,
    )
}

/// Renames a user. Everything else refers to users by id, so nothing else changes; a taken
/// name is a unique violation.
pub fn rename(conn: &mut DbConnection, id: i32, new_name: &str) -> QueryResult<()> {
    expect_one(
        diesel::update(users::table.find(id))
            .set(users::name.eq(new_name))
            .execute(conn)?,
    )
}

/// Replaces the cookie id, which invalidates every login cookie of the user.
pub fn set_cookie_id(conn: &mut DbConnection, id: i32, cookie_id: &str) -> QueryResult<()> {
    expect_one(
        diesel::update(users::table.find(id))
            .set(users::cookie_id.eq(cookie_id))
            .execute(conn)?,
    )
}

/// Stores (or with `None`, clears) the encrypted auth state.
pub fn set_auth_state(
    conn: &mut DbConnection,
    id: i32,
    encrypted: Option<&[u8]>,
) -> QueryResult<()> {
    expect_one(
        diesel::update(users::table.find(id))
            .set(users::encrypted_auth_state.eq(encrypted))
            .execute(conn)?,
    )
}

/// Moves `last_activity` forward to `at`; an older timestamp changes nothing. Returns whether
/// the row changed (false also for an unknown id).
pub fn touch_last_activity(
    conn: &mut DbConnection,
    id: i32,
    at: NaiveDateTime,
) -> QueryResult<bool> {
    let changed = diesel::update(
        users::table.find(id).filter(
            users::last_activity
                .is_null()
                .or(users::last_activity.lt(at)),
        ),
    )
    .set(users::last_activity.eq(at))
    .execute(conn)?;
    Ok(changed > 0)
}

/// Deletes a user and, through the foreign keys, everything that belongs to them.
pub fn delete(conn: &mut DbConnection, id: i32) -> QueryResult<()> {
    expect_one(diesel::delete(users::table.find(id)).execute(conn)?)
}

/// How many users were active at or after `since`.
pub fn count_active_since(conn: &mut DbConnection, since: NaiveDateTime) -> QueryResult<i64> {
    users::table
        .filter(users::last_activity.ge(since))
        .count()
        .get_result(conn)
}
