//! `oauth_clients`: the hub's OAuth clients. A user server's client is (re)registered at each
//! spawn and owned by its `spawners` row; a service's client is owned by its `services` row; the
//! built-in `jupyterhub` client (created by the first migration) marks plain API tokens.
//! Deleting a client deletes the tokens and codes issued to it.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::connection::DbConnection;
use crate::db::json::{JsonText, to_json};
use crate::db::schema::oauth_clients;
use crate::db::write_transaction;

/// Identifier of the built-in client that plain API tokens carry. It has no secret and no
/// redirect URI, so it cannot complete an OAuth flow. Never delete it.
pub const JUPYTERHUB_CLIENT_ID: &str = "jupyterhub";

/// A row of `oauth_clients`. `Debug` leaves out the secret hash.
#[derive(Clone, PartialEq, Eq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = oauth_clients)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct OAuthClient {
    /// Database id.
    pub id: i32,
    /// The OAuth `client_id`, e.g. `jupyterhub-user-alice` or `service-culler`.
    pub identifier: String,
    /// Shown on the authorization page, e.g. `Server at /user/alice/`.
    pub description: String,
    /// Hash of the client secret, in the token hash format.
    pub secret: String,
    /// The one redirect URI accepted (exact string match).
    pub redirect_uri: String,
    /// Scopes the client may request.
    #[diesel(deserialize_as = JsonText<Vec<String>>)]
    pub allowed_scopes: Vec<String>,
    /// Owning server, for a user server's client.
    pub spawner_id: Option<i32>,
    /// Owning service, for a service's client.
    pub service_id: Option<i32>,
    /// When the row was created.
    pub created: NaiveDateTime,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("id", &self.id)
            .field("identifier", &self.identifier)
            .field("description", &self.description)
            .field("redirect_uri", &self.redirect_uri)
            .field("allowed_scopes", &self.allowed_scopes)
            .field("spawner_id", &self.spawner_id)
            .field("service_id", &self.service_id)
            .finish_non_exhaustive()
    }
}

/// Who owns a client; the client is deleted with its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientOwner {
    /// Nobody (only the built-in client).
    None,
    /// A user server, by spawner id.
    Spawner(i32),
    /// A service, by id.
    Service(i32),
}

/// A client to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOAuthClient<'a> {
    /// The OAuth `client_id`.
    pub identifier: &'a str,
    /// Description.
    pub description: &'a str,
    /// Hash of the secret.
    pub secret: &'a str,
    /// Redirect URI.
    pub redirect_uri: &'a str,
    /// Allowed scopes.
    pub allowed_scopes: &'a [String],
    /// Owner.
    pub owner: ClientOwner,
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = oauth_clients)]
#[diesel(treat_none_as_null = true)]
struct ClientRow<'a> {
    identifier: &'a str,
    description: &'a str,
    secret: &'a str,
    redirect_uri: &'a str,
    allowed_scopes: String,
    spawner_id: Option<i32>,
    service_id: Option<i32>,
}

impl<'a> ClientRow<'a> {
    fn from_new(new: &NewOAuthClient<'a>) -> QueryResult<Self> {
        let (spawner_id, service_id) = match new.owner {
            ClientOwner::None => (None, None),
            ClientOwner::Spawner(id) => (Some(id), None),
            ClientOwner::Service(id) => (None, Some(id)),
        };
        Ok(ClientRow {
            identifier: new.identifier,
            description: new.description,
            secret: new.secret,
            redirect_uri: new.redirect_uri,
            allowed_scopes: to_json(new.allowed_scopes)?,
            spawner_id,
            service_id,
        })
    }
}

/// Registers a client; a taken identifier is a unique violation.
pub fn insert(conn: &mut DbConnection, new: &NewOAuthClient<'_>) -> QueryResult<OAuthClient> {
    diesel::insert_into(oauth_clients::table)
        .values((
            ClientRow::from_new(new)?,
            oauth_clients::created.eq(crate::db::now()),
        ))
        .returning(oauth_clients::all_columns)
        .get_result(conn)
}

/// Registers a client, or replaces the settings of the existing client with that identifier
/// (a server's client is re-registered at every spawn with the new token as secret). Tokens
/// already issued to an existing client are kept.
pub fn upsert(conn: &mut DbConnection, new: &NewOAuthClient<'_>) -> QueryResult<OAuthClient> {
    write_transaction(conn, |conn| {
        match find_by_identifier(conn, new.identifier)? {
            Some(existing) => diesel::update(oauth_clients::table.find(existing.id))
                .set(ClientRow::from_new(new)?)
                .returning(oauth_clients::all_columns)
                .get_result(conn),
            None => insert(conn, new),
        }
    })
}

/// A client by its OAuth `client_id`.
pub fn find_by_identifier(
    conn: &mut DbConnection,
    identifier: &str,
) -> QueryResult<Option<OAuthClient>> {
    oauth_clients::table
        .filter(oauth_clients::identifier.eq(identifier))
        .select(OAuthClient::as_select())
        .first(conn)
        .optional()
}

/// The clients with these identifiers (to show `oauth_client` descriptions on a page of tokens).
pub fn find_by_identifiers<S: AsRef<str>>(
    conn: &mut DbConnection,
    identifiers: &[S],
) -> QueryResult<Vec<OAuthClient>> {
    let identifiers: Vec<&str> = identifiers.iter().map(AsRef::as_ref).collect();
    oauth_clients::table
        .filter(oauth_clients::identifier.eq_any(identifiers))
        .order(oauth_clients::id.asc())
        .select(OAuthClient::as_select())
        .load(conn)
}

/// The clients owned by a server or a service.
pub fn find_for_owner(
    conn: &mut DbConnection,
    owner: ClientOwner,
) -> QueryResult<Vec<OAuthClient>> {
    let q = oauth_clients::table.into_boxed();
    let q = match owner {
        ClientOwner::None => q
            .filter(oauth_clients::spawner_id.is_null())
            .filter(oauth_clients::service_id.is_null()),
        ClientOwner::Spawner(id) => q.filter(oauth_clients::spawner_id.eq(id)),
        ClientOwner::Service(id) => q.filter(oauth_clients::service_id.eq(id)),
    };
    q.order(oauth_clients::id.asc())
        .select(OAuthClient::as_select())
        .load(conn)
}

/// Every client, by identifier.
pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<OAuthClient>> {
    oauth_clients::table
        .order(oauth_clients::identifier.asc())
        .select(OAuthClient::as_select())
        .load(conn)
}

/// Deletes a client with its tokens and codes; returns whether it existed. The built-in
/// `jupyterhub` client is never deleted (that would delete every API token): returns false.
pub fn delete_by_identifier(conn: &mut DbConnection, identifier: &str) -> QueryResult<bool> {
    if identifier == JUPYTERHUB_CLIENT_ID {
        return Ok(false);
    }
    let deleted =
        diesel::delete(oauth_clients::table.filter(oauth_clients::identifier.eq(identifier)))
            .execute(conn)?;
    Ok(deleted > 0)
}
