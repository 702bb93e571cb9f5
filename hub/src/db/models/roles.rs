//! `roles` and their grants to users, groups and services (`*_role_map`). Role definitions come
//! from configuration plus JupyterHub's defaults; the hub writes them at startup with [`save`].

use std::collections::HashMap;

use diesel::prelude::*;

use super::groups::group_pairs;
use super::{IdFilter, expect_one};
use crate::db::connection::DbConnection;
use crate::db::json::{JsonText, to_json};
use crate::db::schema::{group_role_map, roles, service_role_map, user_group_map, user_role_map};
use crate::db::write_transaction;

/// A row of `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = roles)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct Role {
    /// Database id.
    pub id: i32,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Unexpanded scopes, e.g. `["self"]` or `["read:users!group=x"]`.
    #[diesel(deserialize_as = JsonText<Vec<String>>)]
    pub scopes: Vec<String>,
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = roles)]
#[diesel(treat_none_as_null = true)]
struct RoleRow<'a> {
    name: &'a str,
    description: Option<&'a str>,
    scopes: String,
}

/// Creates a role; a taken name is a unique violation.
pub fn insert(
    conn: &mut DbConnection,
    name: &str,
    description: Option<&str>,
    scopes: &[String],
) -> QueryResult<Role> {
    diesel::insert_into(roles::table)
        .values(RoleRow {
            name,
            description,
            scopes: to_json(scopes)?,
        })
        .returning(roles::all_columns)
        .get_result(conn)
}

/// Creates the role, or updates its description and scopes if it exists (role loading at
/// startup).
pub fn save(
    conn: &mut DbConnection,
    name: &str,
    description: Option<&str>,
    scopes: &[String],
) -> QueryResult<Role> {
    write_transaction(conn, |conn| match find_by_name(conn, name)? {
        Some(existing) => diesel::update(roles::table.find(existing.id))
            .set(RoleRow {
                name,
                description,
                scopes: to_json(scopes)?,
            })
            .returning(roles::all_columns)
            .get_result(conn),
        None => insert(conn, name, description, scopes),
    })
}

/// A role by name.
pub fn find_by_name(conn: &mut DbConnection, name: &str) -> QueryResult<Option<Role>> {
    roles::table
        .filter(roles::name.eq(name))
        .select(Role::as_select())
        .first(conn)
        .optional()
}

/// The roles with these names, ordered by id; unknown names are absent.
pub fn find_by_names<S: AsRef<str>>(
    conn: &mut DbConnection,
    names: &[S],
) -> QueryResult<Vec<Role>> {
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    roles::table
        .filter(roles::name.eq_any(names))
        .order(roles::id)
        .select(Role::as_select())
        .load(conn)
}

/// Every role, by name.
pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<Role>> {
    roles::table
        .order(roles::name.asc())
        .select(Role::as_select())
        .load(conn)
}

/// Deletes a role and all its grants.
pub fn delete(conn: &mut DbConnection, id: i32) -> QueryResult<()> {
    expect_one(diesel::delete(roles::table.find(id)).execute(conn)?)
}

/// Deletes every role whose name is not in `keep` (roles removed from configuration).
/// Returns how many were deleted.
pub fn delete_except<S: AsRef<str>>(conn: &mut DbConnection, keep: &[S]) -> QueryResult<usize> {
    let keep: Vec<&str> = keep.iter().map(AsRef::as_ref).collect();
    diesel::delete(roles::table.filter(roles::name.ne_all(keep))).execute(conn)
}

/// Who a role is granted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grantee {
    /// A user, by id.
    User(i32),
    /// A group, by id.
    Group(i32),
    /// A service, by id.
    Service(i32),
}

/// Grants a role; granting it again changes nothing. Returns whether a grant was added.
pub fn grant(conn: &mut DbConnection, role_id: i32, to: Grantee) -> QueryResult<bool> {
    write_transaction(conn, |conn| {
        if grant_exists(conn, role_id, to)? {
            return Ok(false);
        }
        let inserted = match to {
            Grantee::User(user_id) => diesel::insert_into(user_role_map::table)
                .values((
                    user_role_map::user_id.eq(user_id),
                    user_role_map::role_id.eq(role_id),
                ))
                .execute(conn)?,
            Grantee::Group(group_id) => diesel::insert_into(group_role_map::table)
                .values((
                    group_role_map::group_id.eq(group_id),
                    group_role_map::role_id.eq(role_id),
                ))
                .execute(conn)?,
            Grantee::Service(service_id) => diesel::insert_into(service_role_map::table)
                .values((
                    service_role_map::service_id.eq(service_id),
                    service_role_map::role_id.eq(role_id),
                ))
                .execute(conn)?,
        };
        Ok(inserted > 0)
    })
}

fn grant_exists(conn: &mut DbConnection, role_id: i32, to: Grantee) -> QueryResult<bool> {
    let count: i64 = match to {
        Grantee::User(id) => user_role_map::table
            .filter(user_role_map::user_id.eq(id))
            .filter(user_role_map::role_id.eq(role_id))
            .count()
            .get_result(conn)?,
        Grantee::Group(id) => group_role_map::table
            .filter(group_role_map::group_id.eq(id))
            .filter(group_role_map::role_id.eq(role_id))
            .count()
            .get_result(conn)?,
        Grantee::Service(id) => service_role_map::table
            .filter(service_role_map::service_id.eq(id))
            .filter(service_role_map::role_id.eq(role_id))
            .count()
            .get_result(conn)?,
    };
    Ok(count > 0)
}

/// Revokes a role; returns whether a grant was removed.
pub fn revoke(conn: &mut DbConnection, role_id: i32, from: Grantee) -> QueryResult<bool> {
    let removed = match from {
        Grantee::User(id) => diesel::delete(
            user_role_map::table
                .filter(user_role_map::user_id.eq(id))
                .filter(user_role_map::role_id.eq(role_id)),
        )
        .execute(conn)?,
        Grantee::Group(id) => diesel::delete(
            group_role_map::table
                .filter(group_role_map::group_id.eq(id))
                .filter(group_role_map::role_id.eq(role_id)),
        )
        .execute(conn)?,
        Grantee::Service(id) => diesel::delete(
            service_role_map::table
                .filter(service_role_map::service_id.eq(id))
                .filter(service_role_map::role_id.eq(role_id)),
        )
        .execute(conn)?,
    };
    Ok(removed > 0)
}

/// Makes `role_ids` exactly the roles granted directly to `grantee` (`PATCH /users/{name}` with
/// `roles`, or re-applying configuration).
pub fn set_roles(conn: &mut DbConnection, grantee: Grantee, role_ids: &[i32]) -> QueryResult<()> {
    write_transaction(conn, |conn| {
        let wanted = role_ids.to_vec();
        match grantee {
            Grantee::User(id) => diesel::delete(
                user_role_map::table
                    .filter(user_role_map::user_id.eq(id))
                    .filter(user_role_map::role_id.ne_all(wanted)),
            )
            .execute(conn)?,
            Grantee::Group(id) => diesel::delete(
                group_role_map::table
                    .filter(group_role_map::group_id.eq(id))
                    .filter(group_role_map::role_id.ne_all(wanted)),
            )
            .execute(conn)?,
            Grantee::Service(id) => diesel::delete(
                service_role_map::table
                    .filter(service_role_map::service_id.eq(id))
                    .filter(service_role_map::role_id.ne_all(wanted)),
            )
            .execute(conn)?,
        };
        for &role_id in role_ids {
            grant(conn, role_id, grantee)?;
        }
        Ok(())
    })
}

/// Roles granted directly to `grantee`, by name.
pub fn granted_to(conn: &mut DbConnection, grantee: Grantee) -> QueryResult<Vec<Role>> {
    match grantee {
        Grantee::User(id) => roles::table
            .inner_join(user_role_map::table)
            .filter(user_role_map::user_id.eq(id))
            .order(roles::name.asc())
            .select(Role::as_select())
            .load(conn),
        Grantee::Group(id) => roles::table
            .inner_join(group_role_map::table)
            .filter(group_role_map::group_id.eq(id))
            .order(roles::name.asc())
            .select(Role::as_select())
            .load(conn),
        Grantee::Service(id) => roles::table
            .inner_join(service_role_map::table)
            .filter(service_role_map::service_id.eq(id))
            .order(roles::name.asc())
            .select(Role::as_select())
            .load(conn),
    }
}

/// Every role that applies to a user: granted directly or through any of their groups; each
/// once, by name. This is the input to scope expansion.
pub fn effective_for_user(conn: &mut DbConnection, user_id: i32) -> QueryResult<Vec<Role>> {
    let direct = user_role_map::table
        .filter(user_role_map::user_id.eq(user_id))
        .select(user_role_map::role_id);
    let via_groups = group_role_map::table
        .inner_join(user_group_map::table.on(user_group_map::group_id.eq(group_role_map::group_id)))
        .filter(user_group_map::user_id.eq(user_id))
        .select(group_role_map::role_id);
    roles::table
        .filter(roles::id.eq_any(direct).or(roles::id.eq_any(via_groups)))
        .order(roles::name.asc())
        .select(Role::as_select())
        .load(conn)
}

/// Names of the roles granted directly to each of several users (for a page of user models).
/// Users without roles have no entry.
pub fn names_by_user(
    conn: &mut DbConnection,
    user_ids: &[i32],
) -> QueryResult<HashMap<i32, Vec<String>>> {
    let ids = IdFilter::new(user_ids);
    let all = user_role_map::table
        .inner_join(roles::table)
        .order((user_role_map::user_id.asc(), roles::name.asc()))
        .select((user_role_map::user_id, roles::name));
    let mut pairs: Vec<(i32, String)> = match &ids {
        IdFilter::Empty => return Ok(HashMap::new()),
        IdFilter::Range { lo, hi, .. } => all
            .filter(user_role_map::user_id.between(*lo, *hi))
            .load(conn)?,
        IdFilter::List(list) => all
            .filter(user_role_map::user_id.eq_any(list.clone()))
            .load(conn)?,
    };
    pairs.retain(|(id, _)| ids.keeps(*id));
    Ok(group_pairs(pairs))
}

/// Names of the roles granted to each of several groups.
pub fn names_by_group(
    conn: &mut DbConnection,
    group_ids: &[i32],
) -> QueryResult<HashMap<i32, Vec<String>>> {
    let pairs: Vec<(i32, String)> = group_role_map::table
        .inner_join(roles::table)
        .filter(group_role_map::group_id.eq_any(group_ids.to_vec()))
        .order((group_role_map::group_id.asc(), roles::name.asc()))
        .select((group_role_map::group_id, roles::name))
        .load(conn)?;
    Ok(group_pairs(pairs))
}

/// Names of the roles granted to each of several services.
pub fn names_by_service(
    conn: &mut DbConnection,
    service_ids: &[i32],
) -> QueryResult<HashMap<i32, Vec<String>>> {
    let pairs: Vec<(i32, String)> = service_role_map::table
        .inner_join(roles::table)
        .filter(service_role_map::service_id.eq_any(service_ids.to_vec()))
        .order((service_role_map::service_id.asc(), roles::name.asc()))
        .select((service_role_map::service_id, roles::name))
        .load(conn)?;
    Ok(group_pairs(pairs))
}

/// Ids of the users holding a role directly.
pub fn user_ids_with_role(conn: &mut DbConnection, role_id: i32) -> QueryResult<Vec<i32>> {
    user_role_map::table
        .filter(user_role_map::role_id.eq(role_id))
        .order(user_role_map::user_id.asc())
        .select(user_role_map::user_id)
        .load(conn)
}
