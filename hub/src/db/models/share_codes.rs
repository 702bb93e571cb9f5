//! `share_codes`: codes that turn into a share when a user accepts them. Stored like tokens:
//! a clear prefix for lookup plus a salted hash the caller verifies. The API shows ids as
//! `sc_<id>`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Page, PageRequest, expect_one};
use crate::db::connection::{DbConnection, MultiBackend};
use crate::db::json::{JsonText, to_json};
use crate::db::schema::{share_codes, spawners};

/// A row of `share_codes`. `Debug` leaves out the hash.
#[derive(Clone, PartialEq, Eq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = share_codes)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct ShareCode {
    /// Database id.
    pub id: i32,
    /// The shared server.
    pub spawner_id: i32,
    /// Clear prefix of the code.
    pub prefix: String,
    /// Salted hash of the code.
    pub hashed: String,
    /// Scopes a share made from this code grants.
    #[diesel(deserialize_as = JsonText<Vec<String>>)]
    pub scopes: Vec<String>,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Expiry.
    pub expires_at: Option<NaiveDateTime>,
    /// How many times the code was accepted.
    pub exchange_count: i32,
    /// When it was last accepted.
    pub last_exchanged_at: Option<NaiveDateTime>,
}

impl std::fmt::Debug for ShareCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareCode")
            .field("id", &self.id)
            .field("spawner_id", &self.spawner_id)
            .field("prefix", &self.prefix)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .field("exchange_count", &self.exchange_count)
            .finish_non_exhaustive()
    }
}

/// A share code to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewShareCode<'a> {
    /// The shared server.
    pub spawner_id: i32,
    /// Clear prefix of the code.
    pub prefix: &'a str,
    /// Salted hash of the code.
    pub hashed: &'a str,
    /// Scopes to grant.
    pub scopes: &'a [String],
    /// Expiry.
    pub expires_at: Option<NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = share_codes)]
struct ShareCodeRow<'a> {
    spawner_id: i32,
    prefix: &'a str,
    hashed: &'a str,
    scopes: String,
    created_at: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
}

/// Stores a share code.
pub fn insert(conn: &mut DbConnection, new: &NewShareCode<'_>) -> QueryResult<ShareCode> {
    diesel::insert_into(share_codes::table)
        .values(ShareCodeRow {
            spawner_id: new.spawner_id,
            prefix: new.prefix,
            hashed: new.hashed,
            scopes: to_json(new.scopes)?,
            created_at: crate::db::now(),
            expires_at: new.expires_at,
        })
        .returning(share_codes::all_columns)
        .get_result(conn)
}

/// Unexpired codes with this prefix: the candidates to verify a presented code against.
pub fn find_by_prefix(
    conn: &mut DbConnection,
    prefix: &str,
    now: NaiveDateTime,
) -> QueryResult<Vec<ShareCode>> {
    share_codes::table
        .filter(share_codes::prefix.eq(prefix))
        .filter(
            share_codes::expires_at
                .is_null()
                .or(share_codes::expires_at.gt(now)),
        )
        .order(share_codes::id.asc())
        .select(ShareCode::as_select())
        .load(conn)
}

/// A code by id, expired or not.
pub fn find_by_id(conn: &mut DbConnection, id: i32) -> QueryResult<Option<ShareCode>> {
    share_codes::table
        .find(id)
        .select(ShareCode::as_select())
        .first(conn)
        .optional()
}

fn page_of(
    conn: &mut DbConnection,
    query: impl Fn() -> share_codes::BoxedQuery<'static, MultiBackend>,
    page: PageRequest,
) -> QueryResult<Page<ShareCode>> {
    let total = query().count().get_result(conn)?;
    let items = query()
        .order(share_codes::id.asc())
        .offset(page.offset())
        .limit(page.limit())
        .select(ShareCode::as_select())
        .load(conn)?;
    Ok(Page { items, total })
}

/// Unexpired codes of one server, in creation order.
pub fn list_for_spawner(
    conn: &mut DbConnection,
    spawner_id: i32,
    now: NaiveDateTime,
    page: PageRequest,
) -> QueryResult<Page<ShareCode>> {
    page_of(
        conn,
        || {
            share_codes::table
                .filter(share_codes::spawner_id.eq(spawner_id))
                .filter(
                    share_codes::expires_at
                        .is_null()
                        .or(share_codes::expires_at.gt(now)),
                )
                .into_boxed()
        },
        page,
    )
}

/// Unexpired codes of all servers of one owner.
pub fn list_for_owner(
    conn: &mut DbConnection,
    owner_id: i32,
    now: NaiveDateTime,
    page: PageRequest,
) -> QueryResult<Page<ShareCode>> {
    page_of(
        conn,
        || {
            share_codes::table
                .filter(
                    share_codes::spawner_id.eq_any(
                        spawners::table
                            .filter(spawners::user_id.eq(owner_id))
                            .select(spawners::id),
                    ),
                )
                .filter(
                    share_codes::expires_at
                        .is_null()
                        .or(share_codes::expires_at.gt(now)),
                )
                .into_boxed()
        },
        page,
    )
}

/// Counts one acceptance of code `id` at `at`.
pub fn record_exchange(conn: &mut DbConnection, id: i32, at: NaiveDateTime) -> QueryResult<()> {
    expect_one(
        diesel::update(share_codes::table.find(id))
            .set((
                share_codes::exchange_count.eq(share_codes::exchange_count + 1),
                share_codes::last_exchanged_at.eq(Some(at)),
            ))
            .execute(conn)?,
    )
}

/// Deletes one code.
pub fn delete(conn: &mut DbConnection, id: i32) -> QueryResult<()> {
    expect_one(diesel::delete(share_codes::table.find(id)).execute(conn)?)
}

/// Deletes every code of a server; returns how many.
pub fn delete_for_spawner(conn: &mut DbConnection, spawner_id: i32) -> QueryResult<usize> {
    diesel::delete(share_codes::table.filter(share_codes::spawner_id.eq(spawner_id))).execute(conn)
}

/// Deletes every code that expired at or before `now`; returns how many.
pub fn purge_expired(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(share_codes::table.filter(share_codes::expires_at.le(now))).execute(conn)
}
