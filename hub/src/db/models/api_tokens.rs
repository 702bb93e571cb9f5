//! `api_tokens`: API tokens and OAuth access tokens, stored only as a clear prefix plus a salted
//! hash. Lookup is "rows with this prefix that have not expired", then a constant-time hash
//! comparison by the caller (`identity`); this module never sees a whole token.
//!
//! `client_id` is `jupyterhub` for ordinary API tokens and the OAuth client's identifier for
//! OAuth tokens, whose rows vanish with their client. `spawner_id` marks a server's own token
//! (`$JUPYTERHUB_API_TOKEN`), which vanishes with its server.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::expect_one;
use super::oauth_clients::JUPYTERHUB_CLIENT_ID;
use crate::db::connection::DbConnection;
use crate::db::json::{JsonText, to_json};
use crate::db::schema::api_tokens;

/// A row of `api_tokens`. `Debug` shows the prefix but not the hash.
#[derive(Clone, PartialEq, Eq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = api_tokens)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct ApiToken {
    /// Database id; the API shows it as `a<id>`.
    pub id: i32,
    /// The token's first characters, in clear.
    pub prefix: String,
    /// `sha512:<rounds>:<salt>:<digest>`.
    pub hashed: String,
    /// Owning user (exactly one of `user_id`/`service_id` is set).
    pub user_id: Option<i32>,
    /// Owning service.
    pub service_id: Option<i32>,
    /// The server this token was issued to, for a server's own API token.
    pub spawner_id: Option<i32>,
    /// Issuing OAuth client; `jupyterhub` for API tokens.
    pub client_id: String,
    /// Browser session that obtained the token through OAuth.
    pub session_id: Option<String>,
    /// Free text.
    pub note: String,
    /// Raw (unexpanded) scopes.
    #[diesel(deserialize_as = JsonText<Vec<String>>)]
    pub scopes: Vec<String>,
    /// Creation time.
    pub created: NaiveDateTime,
    /// Expiry, if any.
    pub expires_at: Option<NaiveDateTime>,
    /// Last use.
    pub last_activity: Option<NaiveDateTime>,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .field("prefix", &self.prefix)
            .field("user_id", &self.user_id)
            .field("service_id", &self.service_id)
            .field("spawner_id", &self.spawner_id)
            .field("client_id", &self.client_id)
            .field("note", &self.note)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl ApiToken {
    /// The owner.
    pub fn owner(&self) -> Option<TokenOwner> {
        match (self.user_id, self.service_id) {
            (Some(id), _) => Some(TokenOwner::User(id)),
            (None, Some(id)) => Some(TokenOwner::Service(id)),
            (None, None) => None,
        }
    }

    /// Whether the token has expired at `now`.
    pub fn is_expired(&self, now: NaiveDateTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether this is an OAuth access token rather than an API token.
    pub fn is_oauth(&self) -> bool {
        self.client_id != JUPYTERHUB_CLIENT_ID
    }
}

/// Who a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenOwner {
    /// A user, by id.
    User(i32),
    /// A service, by id.
    Service(i32),
}

/// A token to store. The caller generates the token and hashes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiToken<'a> {
    /// Clear prefix of the token.
    pub prefix: &'a str,
    /// Salted hash of the token.
    pub hashed: &'a str,
    /// Owner.
    pub owner: TokenOwner,
    /// For a server's own token.
    pub spawner_id: Option<i32>,
    /// Issuing client; [`JUPYTERHUB_CLIENT_ID`] for API tokens.
    pub client_id: &'a str,
    /// Browser session, for OAuth tokens.
    pub session_id: Option<&'a str>,
    /// Free text.
    pub note: &'a str,
    /// Raw scopes.
    pub scopes: &'a [String],
    /// Expiry, if any.
    pub expires_at: Option<NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = api_tokens)]
struct ApiTokenRow<'a> {
    prefix: &'a str,
    hashed: &'a str,
    user_id: Option<i32>,
    service_id: Option<i32>,
    spawner_id: Option<i32>,
    client_id: &'a str,
    session_id: Option<&'a str>,
    note: &'a str,
    scopes: String,
    created: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
}

/// Stores a token. An unknown client id is a foreign-key violation.
pub fn insert(conn: &mut DbConnection, new: &NewApiToken<'_>) -> QueryResult<ApiToken> {
    let (user_id, service_id) = match new.owner {
        TokenOwner::User(id) => (Some(id), None),
        TokenOwner::Service(id) => (None, Some(id)),
    };
    diesel::insert_into(api_tokens::table)
        .values(ApiTokenRow {
            prefix: new.prefix,
            hashed: new.hashed,
            user_id,
            service_id,
            spawner_id: new.spawner_id,
            client_id: new.client_id,
            session_id: new.session_id,
            note: new.note,
            scopes: to_json(new.scopes)?,
            created: crate::db::now(),
            expires_at: new.expires_at,
        })
        .returning(api_tokens::all_columns)
        .get_result(conn)
}

/// Unexpired tokens whose prefix is `prefix`: the candidates to compare a presented token
/// against.
pub fn find_by_prefix(
    conn: &mut DbConnection,
    prefix: &str,
    now: NaiveDateTime,
) -> QueryResult<Vec<ApiToken>> {
    api_tokens::table
        .filter(api_tokens::prefix.eq(prefix))
        .filter(
            api_tokens::expires_at
                .is_null()
                .or(api_tokens::expires_at.gt(now)),
        )
        .order(api_tokens::id.asc())
        .select(ApiToken::as_select())
        .load(conn)
}

/// A token by id, expired or not.
pub fn find_by_id(conn: &mut DbConnection, id: i32) -> QueryResult<Option<ApiToken>> {
    api_tokens::table
        .find(id)
        .select(ApiToken::as_select())
        .first(conn)
        .optional()
}

/// Token `id` if it belongs to `owner` (the `GET/DELETE /users/{name}/tokens/{id}` lookup).
pub fn find_for_owner(
    conn: &mut DbConnection,
    owner: TokenOwner,
    id: i32,
) -> QueryResult<Option<ApiToken>> {
    let q = api_tokens::table.find(id).into_boxed();
    let q = match owner {
        TokenOwner::User(user_id) => q.filter(api_tokens::user_id.eq(user_id)),
        TokenOwner::Service(service_id) => q.filter(api_tokens::service_id.eq(service_id)),
    };
    q.select(ApiToken::as_select()).first(conn).optional()
}

/// An owner's unexpired tokens, least recently used first (last activity, else creation), as
/// `GET /users/{name}/tokens` lists them.
pub fn list_for_owner(
    conn: &mut DbConnection,
    owner: TokenOwner,
    now: NaiveDateTime,
) -> QueryResult<Vec<ApiToken>> {
    let q = api_tokens::table
        .filter(
            api_tokens::expires_at
                .is_null()
                .or(api_tokens::expires_at.gt(now)),
        )
        .into_boxed();
    let q = match owner {
        TokenOwner::User(user_id) => q.filter(api_tokens::user_id.eq(user_id)),
        TokenOwner::Service(service_id) => q.filter(api_tokens::service_id.eq(service_id)),
    };
    let mut tokens: Vec<ApiToken> = q
        .order(api_tokens::id.asc())
        .select(ApiToken::as_select())
        .load(conn)?;
    tokens.sort_by_key(|t| (t.last_activity.unwrap_or(t.created), t.id));
    Ok(tokens)
}

/// A user's unexpired tokens from one OAuth client (the "already authorized?" check).
pub fn list_for_user_client(
    conn: &mut DbConnection,
    user_id: i32,
    client_id: &str,
    now: NaiveDateTime,
) -> QueryResult<Vec<ApiToken>> {
    api_tokens::table
        .filter(api_tokens::user_id.eq(user_id))
        .filter(api_tokens::client_id.eq(client_id))
        .filter(
            api_tokens::expires_at
                .is_null()
                .or(api_tokens::expires_at.gt(now)),
        )
        .order(api_tokens::id.asc())
        .select(ApiToken::as_select())
        .load(conn)
}

/// Records a use: moves `last_activity` forward to `at` (older values change nothing).
/// Returns whether the row changed.
pub fn touch(conn: &mut DbConnection, id: i32, at: NaiveDateTime) -> QueryResult<bool> {
    let changed = diesel::update(
        api_tokens::table.find(id).filter(
            api_tokens::last_activity
                .is_null()
                .or(api_tokens::last_activity.lt(at)),
        ),
    )
    .set(api_tokens::last_activity.eq(at))
    .execute(conn)?;
    Ok(changed > 0)
}

/// Deletes one token.
pub fn delete(conn: &mut DbConnection, id: i32) -> QueryResult<()> {
    expect_one(diesel::delete(api_tokens::table.find(id)).execute(conn)?)
}

/// Deletes every token of a user issued by one OAuth client (revoking one OAuth token revokes
/// them all, as JupyterHub does). Returns how many were deleted.
pub fn delete_for_user_client(
    conn: &mut DbConnection,
    user_id: i32,
    client_id: &str,
) -> QueryResult<usize> {
    diesel::delete(
        api_tokens::table
            .filter(api_tokens::user_id.eq(user_id))
            .filter(api_tokens::client_id.eq(client_id)),
    )
    .execute(conn)
}

/// Deletes the OAuth tokens of a browser session (hub logout). API tokens are never tied to a
/// session and are kept. Returns how many were deleted.
pub fn delete_for_session(conn: &mut DbConnection, session_id: &str) -> QueryResult<usize> {
    diesel::delete(
        api_tokens::table
            .filter(api_tokens::session_id.eq(session_id))
            .filter(api_tokens::client_id.ne(JUPYTERHUB_CLIENT_ID)),
    )
    .execute(conn)
}

/// Deletes a server's own tokens (at stop). Returns how many were deleted.
pub fn delete_for_spawner(conn: &mut DbConnection, spawner_id: i32) -> QueryResult<usize> {
    diesel::delete(api_tokens::table.filter(api_tokens::spawner_id.eq(spawner_id))).execute(conn)
}

/// Deletes every token that expired at or before `now`. Returns how many were deleted.
pub fn purge_expired(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(api_tokens::table.filter(api_tokens::expires_at.le(now))).execute(conn)
}
