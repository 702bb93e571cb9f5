//! `groups` and their membership (`user_group_map`). Deleting a group removes its memberships,
//! role grants and the shares made to it.

use std::collections::HashMap;

use diesel::prelude::*;
use serde_json::{Map, Value};

use super::{IdFilter, Page, PageRequest, expect_one, lower};
use crate::db::connection::DbConnection;
use crate::db::json::{JsonText, to_json};
use crate::db::schema::{groups, user_group_map, users};
use crate::db::write_transaction;

/// A row of `groups`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = groups)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct Group {
    /// Database id.
    pub id: i32,
    /// Unique name.
    pub name: String,
    /// Free-form properties (`PUT /groups/{name}/properties`).
    #[diesel(deserialize_as = JsonText<Map<String, Value>>)]
    pub properties: Map<String, Value>,
}

#[derive(Insertable)]
#[diesel(table_name = groups)]
struct GroupRow<'a> {
    name: &'a str,
    properties: String,
}

/// Creates a group; a taken name is a unique violation.
pub fn insert(
    conn: &mut DbConnection,
    name: &str,
    properties: &Map<String, Value>,
) -> QueryResult<Group> {
    diesel::insert_into(groups::table)
        .values(GroupRow {
            name,
            properties: to_json(properties)?,
        })
        .returning(groups::all_columns)
        .get_result(conn)
}

/// Creates several empty-property groups and gives each the same members (`POST /groups`):
/// all or nothing.
pub fn insert_many_with_members<S: AsRef<str>>(
    conn: &mut DbConnection,
    names: &[S],
    member_ids: &[i32],
) -> QueryResult<Vec<Group>> {
    write_transaction(conn, |conn| {
        let mut created = Vec::with_capacity(names.len());
        for name in names {
            let group = insert(conn, name.as_ref(), &Map::new())?;
            add_members(conn, group.id, member_ids)?;
            created.push(group);
        }
        Ok(created)
    })
}

/// A group by exact name.
pub fn find_by_name(conn: &mut DbConnection, name: &str) -> QueryResult<Option<Group>> {
    groups::table
        .filter(groups::name.eq(name))
        .select(Group::as_select())
        .first(conn)
        .optional()
}

/// A group by id.
pub fn find_by_id(conn: &mut DbConnection, id: i32) -> QueryResult<Option<Group>> {
    groups::table
        .find(id)
        .select(Group::as_select())
        .first(conn)
        .optional()
}

/// The groups with these names, ordered by id; unknown names are absent.
pub fn find_by_names<S: AsRef<str>>(
    conn: &mut DbConnection,
    names: &[S],
) -> QueryResult<Vec<Group>> {
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    groups::table
        .filter(groups::name.eq_any(names))
        .order(groups::id)
        .select(Group::as_select())
        .load(conn)
}

/// Lists groups in id order (as `GET /groups`). `only`: restrict to these names (a filtered
/// `list:groups` scope).
pub fn list(
    conn: &mut DbConnection,
    page: PageRequest,
    only: Option<&[String]>,
) -> QueryResult<Page<Group>> {
    list_matching(conn, page, only, None)
}

/// Like [`list`], keeping only groups whose name holds `name_filter` (case-insensitive).
pub fn list_matching(
    conn: &mut DbConnection,
    page: PageRequest,
    only: Option<&[String]>,
    name_filter: Option<&str>,
) -> QueryResult<Page<Group>> {
    let pattern = name_filter.map(|f| format!("%{}%", super::users::escape_like(f)));
    let filtered = || {
        let mut q = groups::table.into_boxed();
        if let Some(names) = only {
            q = q.filter(groups::name.eq_any(names.to_vec()));
        }
        if let Some(pattern) = &pattern {
            q = q.filter(
                lower(groups::name)
                    .like(lower(pattern.clone()))
                    .escape('\\'),
            );
        }
        q
    };
    let total = filtered().count().get_result(conn)?;
    let items = filtered()
        .order(groups::id.asc())
        .offset(page.offset())
        .limit(page.limit())
        .select(Group::as_select())
        .load(conn)?;
    Ok(Page { items, total })
}

/// Replaces the properties.
pub fn set_properties(
    conn: &mut DbConnection,
    id: i32,
    properties: &Map<String, Value>,
) -> QueryResult<()> {
    let properties = to_json(properties)?;
    expect_one(
        diesel::update(groups::table.find(id))
            .set(groups::properties.eq(properties))
            .execute(conn)?,
    )
}

/// Deletes a group (memberships, role grants and shares go with it).
pub fn delete(conn: &mut DbConnection, id: i32) -> QueryResult<()> {
    expect_one(diesel::delete(groups::table.find(id)).execute(conn)?)
}

#[derive(Insertable)]
#[diesel(table_name = user_group_map)]
struct MembershipRow {
    user_id: i32,
    group_id: i32,
}

/// Adds users to a group; users already in it are skipped. Returns how many were added.
pub fn add_members(conn: &mut DbConnection, group_id: i32, user_ids: &[i32]) -> QueryResult<usize> {
    write_transaction(conn, |conn| {
        let present: Vec<i32> = user_group_map::table
            .filter(user_group_map::group_id.eq(group_id))
            .filter(user_group_map::user_id.eq_any(user_ids.to_vec()))
            .select(user_group_map::user_id)
            .load(conn)?;
        let mut rows: Vec<MembershipRow> = user_ids
            .iter()
            .filter(|id| !present.contains(id))
            .map(|&user_id| MembershipRow { user_id, group_id })
            .collect();
        rows.sort_by_key(|r| r.user_id);
        rows.dedup_by_key(|r| r.user_id);
        insert_memberships(conn, &rows)
    })
}

/// Removes users from a group; returns how many memberships were removed.
pub fn remove_members(
    conn: &mut DbConnection,
    group_id: i32,
    user_ids: &[i32],
) -> QueryResult<usize> {
    diesel::delete(
        user_group_map::table
            .filter(user_group_map::group_id.eq(group_id))
            .filter(user_group_map::user_id.eq_any(user_ids.to_vec())),
    )
    .execute(conn)
}

/// Makes `group_ids` exactly the user's groups (`PATCH /users/{name}` with `groups`, or an
/// authenticator that manages groups).
pub fn set_user_groups(
    conn: &mut DbConnection,
    user_id: i32,
    group_ids: &[i32],
) -> QueryResult<()> {
    write_transaction(conn, |conn| {
        diesel::delete(
            user_group_map::table
                .filter(user_group_map::user_id.eq(user_id))
                .filter(user_group_map::group_id.ne_all(group_ids.to_vec())),
        )
        .execute(conn)?;
        let present: Vec<i32> = user_group_map::table
            .filter(user_group_map::user_id.eq(user_id))
            .select(user_group_map::group_id)
            .load(conn)?;
        let mut rows: Vec<MembershipRow> = group_ids
            .iter()
            .filter(|id| !present.contains(id))
            .map(|&group_id| MembershipRow { user_id, group_id })
            .collect();
        rows.sort_by_key(|r| r.group_id);
        rows.dedup_by_key(|r| r.group_id);
        insert_memberships(conn, &rows)?;
        Ok(())
    })
}

// Row by row: multi-row VALUES is not available through the multi-backend connection.
fn insert_memberships(conn: &mut DbConnection, rows: &[MembershipRow]) -> QueryResult<usize> {
    let mut inserted = 0;
    for row in rows {
        inserted += diesel::insert_into(user_group_map::table)
            .values(row)
            .execute(conn)?;
    }
    Ok(inserted)
}

/// Names of a group's members, sorted.
pub fn member_names(conn: &mut DbConnection, group_id: i32) -> QueryResult<Vec<String>> {
    user_group_map::table
        .inner_join(users::table)
        .filter(user_group_map::group_id.eq(group_id))
        .order(users::name.asc())
        .select(users::name)
        .load(conn)
}

/// Member names of several groups at once (for a page of group models), sorted per group.
/// Groups without members have no entry.
pub fn member_names_by_group(
    conn: &mut DbConnection,
    group_ids: &[i32],
) -> QueryResult<HashMap<i32, Vec<String>>> {
    let pairs: Vec<(i32, String)> = user_group_map::table
        .inner_join(users::table)
        .filter(user_group_map::group_id.eq_any(group_ids.to_vec()))
        .order((user_group_map::group_id.asc(), users::name.asc()))
        .select((user_group_map::group_id, users::name))
        .load(conn)?;
    Ok(group_pairs(pairs))
}

/// The groups a user belongs to, by name.
pub fn for_user(conn: &mut DbConnection, user_id: i32) -> QueryResult<Vec<Group>> {
    user_group_map::table
        .inner_join(groups::table)
        .filter(user_group_map::user_id.eq(user_id))
        .order(groups::name.asc())
        .select(Group::as_select())
        .load(conn)
}

/// Group names of several users at once (for a page of user models), sorted per user. Users
/// in no group have no entry.
pub fn names_by_user(
    conn: &mut DbConnection,
    user_ids: &[i32],
) -> QueryResult<HashMap<i32, Vec<String>>> {
    let ids = IdFilter::new(user_ids);
    let all = user_group_map::table
        .inner_join(groups::table)
        .order((user_group_map::user_id.asc(), groups::name.asc()))
        .select((user_group_map::user_id, groups::name));
    let mut pairs: Vec<(i32, String)> = match &ids {
        IdFilter::Empty => return Ok(HashMap::new()),
        IdFilter::Range { lo, hi, .. } => all
            .filter(user_group_map::user_id.between(*lo, *hi))
            .load(conn)?,
        IdFilter::List(list) => all
            .filter(user_group_map::user_id.eq_any(list.clone()))
            .load(conn)?,
    };
    pairs.retain(|(id, _)| ids.keeps(*id));
    Ok(group_pairs(pairs))
}

pub(crate) fn group_pairs(pairs: Vec<(i32, String)>) -> HashMap<i32, Vec<String>> {
    let mut map: HashMap<i32, Vec<String>> = HashMap::new();
    for (key, name) in pairs {
        map.entry(key).or_default().push(name);
    }
    map
}
