//! `services`: external services registered with the hub, from configuration or through
//! `POST /services/{name}`. Runtime facts (command, pid) are not stored. A service's OAuth client
//! is the `oauth_clients` row whose `service_id` points here; its API tokens are `api_tokens`
//! rows with this `service_id`. Both go when the service is deleted.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::{Map, Value};

use super::expect_one;
use crate::db::connection::DbConnection;
use crate::db::json::{JsonText, to_json};
use crate::db::schema::services;

/// A row of `services`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = services)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct Service {
    /// Database id.
    pub id: i32,
    /// Unique name.
    pub name: String,
    /// Whether the service is an admin (grants the `admin` role).
    pub admin: bool,
    /// Defined in the configuration (as opposed to created through the API).
    pub from_config: bool,
    /// Where the hub proxies `/services/{name}/`, if anywhere.
    pub url: Option<String>,
    /// Free-form `info` shown in the service model.
    #[diesel(deserialize_as = JsonText<Map<String, Value>>)]
    pub info: Map<String, Value>,
    /// Whether to list the service on the home page.
    pub display: bool,
    /// Skip the OAuth confirmation page for this service's client.
    pub oauth_no_confirm: bool,
    /// When the row was created.
    pub created: NaiveDateTime,
}

/// The stored settings of a service, for [`insert`] and [`update`].
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec<'a> {
    /// Unique name.
    pub name: &'a str,
    /// Admin flag.
    pub admin: bool,
    /// Defined in the configuration.
    pub from_config: bool,
    /// Proxied URL.
    pub url: Option<&'a str>,
    /// `info`.
    pub info: Map<String, Value>,
    /// Listed on the home page.
    pub display: bool,
    /// Skip OAuth confirmation.
    pub oauth_no_confirm: bool,
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = services)]
#[diesel(treat_none_as_null = true)]
struct ServiceRow<'a> {
    name: &'a str,
    admin: bool,
    from_config: bool,
    url: Option<&'a str>,
    info: String,
    display: bool,
    oauth_no_confirm: bool,
}

impl<'a> ServiceRow<'a> {
    fn from_spec(spec: &ServiceSpec<'a>) -> QueryResult<Self> {
        Ok(ServiceRow {
            name: spec.name,
            admin: spec.admin,
            from_config: spec.from_config,
            url: spec.url,
            info: to_json(&spec.info)?,
            display: spec.display,
            oauth_no_confirm: spec.oauth_no_confirm,
        })
    }
}

/// Creates a service; a taken name is a unique violation.
pub fn insert(conn: &mut DbConnection, spec: &ServiceSpec<'_>) -> QueryResult<Service> {
    diesel::insert_into(services::table)
        .values((
            ServiceRow::from_spec(spec)?,
            services::created.eq(crate::db::now()),
        ))
        .returning(services::all_columns)
        .get_result(conn)
}

/// Replaces every stored setting of service `id` (the name too).
pub fn update(conn: &mut DbConnection, id: i32, spec: &ServiceSpec<'_>) -> QueryResult<Service> {
    diesel::update(services::table.find(id))
        .set(ServiceRow::from_spec(spec)?)
        .returning(services::all_columns)
        .get_result(conn)
}

/// A service by name.
pub fn find_by_name(conn: &mut DbConnection, name: &str) -> QueryResult<Option<Service>> {
    services::table
        .filter(services::name.eq(name))
        .select(Service::as_select())
        .first(conn)
        .optional()
}

/// A service by id.
pub fn find_by_id(conn: &mut DbConnection, id: i32) -> QueryResult<Option<Service>> {
    services::table
        .find(id)
        .select(Service::as_select())
        .first(conn)
        .optional()
}

/// Every service, by name (`GET /services` is a dict keyed by name and never paginated).
pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<Service>> {
    services::table
        .order(services::name.asc())
        .select(Service::as_select())
        .load(conn)
}

/// Deletes a service with its tokens, OAuth client and role grants.
pub fn delete(conn: &mut DbConnection, id: i32) -> QueryResult<()> {
    expect_one(diesel::delete(services::table.find(id)).execute(conn)?)
}

/// Deletes configuration-defined services whose names are not in `keep` (removed from the
/// configuration since the last start). API-created services are left alone. Returns how
/// many were deleted.
pub fn delete_from_config_except<S: AsRef<str>>(
    conn: &mut DbConnection,
    keep: &[S],
) -> QueryResult<usize> {
    let keep: Vec<&str> = keep.iter().map(AsRef::as_ref).collect();
    diesel::delete(
        services::table
            .filter(services::from_config.eq(true))
            .filter(services::name.ne_all(keep)),
    )
    .execute(conn)
}
