//! A server's credentials: its own API token (`$JUPYTERHUB_API_TOKEN`) and its OAuth client,
//! whose secret is that token. Both are issued fresh at each spawn and revoked at stop
//! (hub-protocol §3.3, §4.1).

use std::collections::BTreeSet;

use diesel::QueryResult;

use crate::api::models::server_url;
use crate::db::models::oauth_clients::{self, ClientOwner, NewOAuthClient};
use crate::db::models::{api_tokens, groups, roles, spawners, users};
use crate::db::{DbConnection, DbError};
use crate::identity::tokens::{self, HashedToken};
use crate::rbac::grants::{access_scope, resolve_requested_scopes, server_token_requested_scopes};
use crate::rbac::roles::{SERVER_ROLE_SCOPES, default_user_role_names};
use crate::rbac::{ClientTarget, UserGroups};
use crate::spawn::names::oauth_client_id;
use crate::state::AppState;

/// What a spawn hands the server.
#[derive(Clone)]
pub struct Issued {
    /// The server's API token, in clear (only ever in the server's environment).
    pub token: String,
    /// The OAuth client id.
    pub client_id: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Why credentials could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Another server already owns the client id this one needs (user and server names that
    /// quote to the same id, e.g. user `a` server `b-c` and user `a-b` server `c`).
    #[error("OAuth client {0} already belongs to another running server")]
    ClientTaken(String),
}

/// The raw scopes of the server's token: `spawner.server_token_scopes` (default: the `server`
/// role), limited to what the user holds.
fn token_scopes(
    state: &AppState,
    user: &users::User,
    server: &str,
    role_names: &[String],
    group_names: &[String],
) -> Vec<String> {
    let configured: Vec<String> = state
        .config
        .spawner
        .server_token_scopes
        .clone()
        .unwrap_or_default();
    let requested = server_token_requested_scopes(&configured, &user.name, server);
    let mut have: BTreeSet<String> = state
        .roles
        .raw_scopes(role_names.iter().map(String::as_str));
    have.insert("inherit".to_owned());
    let membership = UserGroups {
        user: &user.name,
        groups: group_names,
    };
    match resolve_requested_scopes(
        &state.registry,
        &requested,
        &have,
        &user.name,
        None,
        &membership,
    ) {
        Ok((allowed, refused)) => {
            if !refused.is_empty() {
                tracing::warn!(
                    user = %user.name,
                    server,
                    "not granting the server token scopes the user does not hold: {}",
                    refused.into_iter().collect::<Vec<_>>().join(", ")
                );
            }
            allowed.into_iter().collect()
        }
        Err(e) => {
            tracing::error!(
                user = %user.name,
                server,
                "server_token_scopes do not expand ({e}); using the server role's scopes"
            );
            server_token_requested_scopes(&SERVER_ROLE_SCOPES, &user.name, server)
                .into_iter()
                .collect()
        }
    }
}

/// Issues a new token and (re)registers the OAuth client of server `spawner` of `user`,
/// replacing any left from an earlier spawn.
///
/// # Errors
/// Database failures; a client id owned by another active server.
pub async fn issue(
    state: &AppState,
    user: &users::User,
    spawner: &spawners::Spawner,
) -> Result<Issued, IssueError> {
    let user_id = user.id;
    let admin = user.admin;
    let (role_names, group_names) = state
        .db
        .run(move |conn| {
            let mut names: Vec<String> = roles::effective_for_user(conn, user_id)?
                .into_iter()
                .map(|r| r.name)
                .collect();
            names.extend(
                default_user_role_names(admin)
                    .into_iter()
                    .map(str::to_owned),
            );
            let groups: Vec<String> = groups::for_user(conn, user_id)?
                .into_iter()
                .map(|g| g.name)
                .collect();
            Ok((names, groups))
        })
        .await?;
    let scopes = token_scopes(state, user, &spawner.name, &role_names, &group_names);
    let token = tokens::new_api_token();
    let client_id = oauth_client_id(&user.name, &spawner.name);
    let prefix = server_url(state, &user.name, &spawner.name);
    let mut allowed_scopes = state.config.spawner.oauth_client_allowed_scopes.clone();
    let access = access_scope(ClientTarget::Server {
        user: &user.name,
        server: &spawner.name,
    });
    if !allowed_scopes.contains(&access) {
        allowed_scopes.push(access);
    }
    let token_hash = HashedToken::new(&token, tokens::GENERATED_ROUNDS).to_string();
    // The client secret is the same hub-generated token, already stored above with one round:
    // stretching its second copy (JupyterHub uses 16384 rounds) would protect nothing and cost
    // most of a server start's CPU, and again at every OAuth token exchange. The rounds are
    // part of the stored text, so JupyterHub reading this database verifies it all the same.
    let secret_hash = HashedToken::new(&token, tokens::GENERATED_ROUNDS).to_string();
    let prefix_text = tokens::token_prefix(&token).to_owned();
    let spawner_id = spawner.id;
    let id = client_id.clone();
    let taken = state
        .db
        .transaction(move |conn| {
            if let Some(existing) = oauth_clients::find_by_identifier(conn, &id)?
                && let Some(owner) = existing.spawner_id
                && owner != spawner_id
                && spawners::find_by_id(conn, owner)?.is_some_and(|s| s.is_active())
            {
                return Ok(true);
            }
            revoke_in(conn, spawner_id)?;
            let note = format!("Server at {prefix}");
            api_tokens::insert(
                conn,
                &api_tokens::NewApiToken {
                    prefix: &prefix_text,
                    hashed: &token_hash,
                    owner: api_tokens::TokenOwner::User(user_id),
                    spawner_id: Some(spawner_id),
                    client_id: oauth_clients::JUPYTERHUB_CLIENT_ID,
                    session_id: None,
                    note: &note,
                    scopes: &scopes,
                    expires_at: None,
                },
            )?;
            oauth_clients::upsert(
                conn,
                &NewOAuthClient {
                    identifier: &id,
                    description: &note,
                    secret: &secret_hash,
                    redirect_uri: &format!("{prefix}oauth_callback"),
                    allowed_scopes: &allowed_scopes,
                    owner: ClientOwner::Spawner(spawner_id),
                },
            )?;
            Ok(false)
        })
        .await?;
    // Earlier credentials of this server were revoked.
    state.identities.invalidate();
    if taken {
        return Err(IssueError::ClientTaken(client_id));
    }
    Ok(Issued { token, client_id })
}

/// Revokes a server's credentials: its own tokens, and its OAuth client with every token and
/// code issued through it.
pub fn revoke_in(conn: &mut DbConnection, spawner_id: i32) -> QueryResult<()> {
    api_tokens::delete_for_spawner(conn, spawner_id)?;
    for client in oauth_clients::find_for_owner(conn, ClientOwner::Spawner(spawner_id))? {
        oauth_clients::delete_by_identifier(conn, &client.identifier)?;
    }
    Ok(())
}
