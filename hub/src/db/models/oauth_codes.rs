//! `oauth_codes`: authorization codes between `/oauth2/authorize` and `/oauth2/token`. Codes
//! are stored as a digest computed by the caller (the code itself is random and single-use, so
//! an unsalted digest is enough and allows an indexed equality lookup). [`take`] deletes and
//! returns a code in one statement, so a code is redeemed at most once even across hubs.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::expect_one;
use crate::db::connection::DbConnection;
use crate::db::json::{JsonText, to_json};
use crate::db::schema::oauth_codes;

/// A row of `oauth_codes`.
#[derive(Clone, PartialEq, Eq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = oauth_codes)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct OAuthCode {
    /// Database id.
    pub id: i32,
    /// Digest of the code.
    pub code_hash: String,
    /// The client the code was issued to.
    pub client_id: String,
    /// The user who authorized.
    pub user_id: i32,
    /// The browser session (`jupyterhub-session-id`), copied to the token.
    pub session_id: Option<String>,
    /// Must match the token request's `redirect_uri` exactly.
    pub redirect_uri: String,
    /// Granted (raw) scopes, copied to the token.
    #[diesel(deserialize_as = JsonText<Vec<String>>)]
    pub scopes: Vec<String>,
    /// PKCE challenge, if the client sent one.
    pub code_challenge: Option<String>,
    /// `S256` or `plain`.
    pub code_challenge_method: Option<String>,
    /// When the code was issued.
    pub created: NaiveDateTime,
    /// When the code stops being accepted.
    pub expires_at: NaiveDateTime,
}

impl std::fmt::Debug for OAuthCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthCode")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("user_id", &self.user_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.scopes)
            .field("code_challenge_method", &self.code_challenge_method)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A code to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOAuthCode<'a> {
    /// Digest of the code.
    pub code_hash: &'a str,
    /// Client identifier.
    pub client_id: &'a str,
    /// Authorizing user.
    pub user_id: i32,
    /// Browser session.
    pub session_id: Option<&'a str>,
    /// Redirect URI of the request.
    pub redirect_uri: &'a str,
    /// Granted scopes.
    pub scopes: &'a [String],
    /// PKCE challenge.
    pub code_challenge: Option<&'a str>,
    /// PKCE method.
    pub code_challenge_method: Option<&'a str>,
    /// Expiry (JupyterHub: five minutes).
    pub expires_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = oauth_codes)]
struct CodeRow<'a> {
    code_hash: &'a str,
    client_id: &'a str,
    user_id: i32,
    session_id: Option<&'a str>,
    redirect_uri: &'a str,
    scopes: String,
    code_challenge: Option<&'a str>,
    code_challenge_method: Option<&'a str>,
    created: NaiveDateTime,
    expires_at: NaiveDateTime,
}

/// Stores a code. An unknown client is a foreign-key violation.
pub fn insert(conn: &mut DbConnection, new: &NewOAuthCode<'_>) -> QueryResult<OAuthCode> {
    diesel::insert_into(oauth_codes::table)
        .values(CodeRow {
            code_hash: new.code_hash,
            client_id: new.client_id,
            user_id: new.user_id,
            session_id: new.session_id,
            redirect_uri: new.redirect_uri,
            scopes: to_json(new.scopes)?,
            code_challenge: new.code_challenge,
            code_challenge_method: new.code_challenge_method,
            created: crate::db::now(),
            expires_at: new.expires_at,
        })
        .returning(oauth_codes::all_columns)
        .get_result(conn)
}

/// The unexpired code with this digest issued to `client_id`, without using it up (to check
/// PKCE before redeeming: a failed check must leave the code usable).
pub fn find_valid(
    conn: &mut DbConnection,
    code_hash: &str,
    client_id: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<OAuthCode>> {
    oauth_codes::table
        .filter(oauth_codes::code_hash.eq(code_hash))
        .filter(oauth_codes::client_id.eq(client_id))
        .filter(oauth_codes::expires_at.gt(now))
        .select(OAuthCode::as_select())
        .first(conn)
        .optional()
}

/// Redeems a code: deletes the unexpired code with this digest issued to `client_id` and
/// returns it. `None` if there is no such code (unknown, expired, other client, or already
/// redeemed by a concurrent request).
pub fn take(
    conn: &mut DbConnection,
    code_hash: &str,
    client_id: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<OAuthCode>> {
    diesel::delete(
        oauth_codes::table
            .filter(oauth_codes::code_hash.eq(code_hash))
            .filter(oauth_codes::client_id.eq(client_id))
            .filter(oauth_codes::expires_at.gt(now)),
    )
    .returning(oauth_codes::all_columns)
    .get_result(conn)
    .optional()
}

/// Deletes one code.
pub fn delete(conn: &mut DbConnection, id: i32) -> QueryResult<()> {
    expect_one(diesel::delete(oauth_codes::table.find(id)).execute(conn)?)
}

/// Deletes every code that expired at or before `now`; returns how many.
pub fn purge_expired(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(oauth_codes::table.filter(oauth_codes::expires_at.le(now))).execute(conn)
}
