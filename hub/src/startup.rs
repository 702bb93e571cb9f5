//! Ordered startup steps, each a named function: declared entities from the configuration
//! into the database (JupyterHub's `init_role_creation`, `init_users`, `init_groups`,
//! `init_services`, `init_api_tokens`).
//!
//! Everything here runs in one transaction per step, so a bad configuration leaves the
//! database as it was.

use chrono::Utc;
use diesel::QueryResult;
use serde_json::{Map, Value};

use crate::db::models::{api_tokens, groups, oauth_clients, roles, services, users};
use crate::db::{DbConnection, DbError};
use crate::identity::tokens::{self, HashedToken};
use crate::state::AppState;

/// A startup step that failed.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database refused.
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// The configuration names something impossible.
    #[error("{0}")]
    Config(String),
}

fn find_or_create_user(
    conn: &mut DbConnection,
    name: &str,
    admin: Option<bool>,
) -> QueryResult<users::User> {
    match users::find_by_name(conn, name)? {
        Some(user) => {
            if let Some(admin) = admin.filter(|a| *a != user.admin) {
                users::set_admin(conn, user.id, admin)?;
                return users::find_by_id(conn, user.id)?.ok_or(diesel::result::Error::NotFound);
            }
            Ok(user)
        }
        None => {
            let cookie_id = tokens::new_session_id();
            users::insert(
                conn,
                &users::NewUser {
                    name,
                    admin: admin.unwrap_or(false),
                    cookie_id: &cookie_id,
                },
            )
        }
    }
}

/// Loads every entity the configuration declares: admin and allowed users, roles with their
/// members, groups with members and properties, services, and API tokens.
///
/// # Errors
/// When the configuration names something invalid, or the database fails.
pub async fn load_config_entities(state: &AppState) -> Result<(), StartupError> {
    let config = &state.config;
    let normalize = |name: &str| state.authenticator.normalize_username(name);

    // Users named by the authenticator settings.
    let admins: Vec<String> = config
        .authenticator
        .admin_users
        .iter()
        .map(|n| normalize(n))
        .collect();
    let allowed: Vec<String> = config
        .authenticator
        .allowed_users
        .iter()
        .map(|n| normalize(n))
        .collect();
    for name in admins.iter().chain(&allowed) {
        if !state.authenticator.validate_username(name) {
            return Err(StartupError::Config(format!(
                "authenticator: invalid username {name:?}"
            )));
        }
    }

    let provided = config
        .hub
        .api_tokens
        .iter()
        .map(|(t, _)| t)
        .chain(config.services.iter().filter_map(|s| s.api_token.as_ref()));
    for token in provided {
        tokens::check_user_provided_token(token.expose())
            .map_err(|e| StartupError::Config(format!("api token: {e}")))?;
    }

    let trusted = config.hub.trust_user_provided_tokens;
    let st = state.clone();
    state
        .db
        .transaction(move |conn| {
            for name in &admins {
                find_or_create_user(conn, name, Some(true))?;
            }
            for name in &allowed {
                find_or_create_user(conn, name, None)?;
            }
            let config = &st.config;
            let normalize = |name: &str| st.authenticator.normalize_username(name);
            for (name, spec) in &config.groups {
                let group = match groups::find_by_name(conn, name)? {
                    Some(g) => {
                        groups::set_properties(conn, g.id, &spec.properties)?;
                        g
                    }
                    None => groups::insert(conn, name, &spec.properties)?,
                };
                let mut ids = Vec::with_capacity(spec.users.len());
                for m in &spec.users {
                    ids.push(find_or_create_user(conn, &normalize(m), None)?.id);
                }
                groups::add_members(conn, group.id, &ids)?;
            }
            // Role definitions: the defaults plus the configured ones; others are removed.
            let keep: Vec<&str> = st.roles.iter().map(|r| r.name.as_str()).collect();
            roles::delete_except(conn, &keep)?;
            for role in st.roles.iter() {
                roles::save(conn, &role.name, role.description.as_deref(), &role.scopes)?;
            }
            let keep_services: Vec<&str> =
                config.services.iter().map(|s| s.name.as_str()).collect();
            services::delete_from_config_except(conn, &keep_services)?;
            for s in &config.services {
                let url = s.url.as_ref().map(|u| u.as_str().to_owned());
                let spec = services::ServiceSpec {
                    name: &s.name,
                    admin: s.admin,
                    from_config: true,
                    url: url.as_deref(),
                    info: s
                        .info
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                    display: s.display,
                    oauth_no_confirm: s.oauth_no_confirm,
                };
                let service = match services::find_by_name(conn, &s.name)? {
                    Some(existing) => services::update(conn, existing.id, &spec)?,
                    None => services::insert(conn, &spec)?,
                };
                if let Some(token) = &s.api_token {
                    let note = format!("Service {} token from config", s.name);
                    ensure_token(
                        conn,
                        token.expose(),
                        api_tokens::TokenOwner::Service(service.id),
                        trusted,
                        &note,
                    )?;
                }
                sync_service_client(conn, &service, s, config.hub.base_url.as_str())?;
            }
            // Role members, once every user, group and service exists.
            for r in &config.roles {
                let Some(role) = roles::find_by_name(conn, &r.name)? else {
                    continue;
                };
                for u in &r.users {
                    let user = find_or_create_user(conn, &normalize(u), None)?;
                    roles::grant(conn, role.id, roles::Grantee::User(user.id))?;
                }
                for g in &r.groups {
                    let group = match groups::find_by_name(conn, g)? {
                        Some(g) => g,
                        None => groups::insert(conn, g, &Map::new())?,
                    };
                    roles::grant(conn, role.id, roles::Grantee::Group(group.id))?;
                }
                for s in &r.services {
                    if let Some(service) = services::find_by_name(conn, s)? {
                        roles::grant(conn, role.id, roles::Grantee::Service(service.id))?;
                    }
                }
            }
            for (token, user) in config.hub.api_tokens.iter() {
                let user = find_or_create_user(conn, &normalize(user), None)?;
                ensure_token(
                    conn,
                    token.expose(),
                    api_tokens::TokenOwner::User(user.id),
                    trusted,
                    "Token from config",
                )?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}

/// Registers or updates the OAuth client of a configured service that can take part in OAuth
/// (it has a `url` or an `oauth_redirect_uri`), as JupyterHub's `init_services` does: id
/// `oauth_client_id` (default `service-<name>`), secret the service's `api_token` (a managed
/// service without one gets its secret with its generated token, see
/// [`generated_service_token`]), redirect URI `oauth_redirect_uri` (default
/// `<base_url>services/<name>/oauth_callback`), allowed scopes `oauth_client_allowed_scopes`
/// plus access to the service. Other clients of the service are removed.
fn sync_service_client(
    conn: &mut DbConnection,
    service: &services::Service,
    config: &crate::config::sections::ServiceConfig,
    base_url: &str,
) -> QueryResult<()> {
    let owner = oauth_clients::ClientOwner::Service(service.id);
    let existing = oauth_clients::find_for_owner(conn, owner)?;
    let wanted = (config.url.is_some() || config.oauth_redirect_uri.is_some()).then(|| {
        config
            .oauth_client_id
            .clone()
            .unwrap_or_else(|| format!("service-{}", config.name))
    });
    for client in &existing {
        if wanted.as_deref() != Some(client.identifier.as_str()) {
            oauth_clients::delete_by_identifier(conn, &client.identifier)?;
        }
    }
    let Some(identifier) = wanted else {
        return Ok(());
    };
    let redirect_uri = config.oauth_redirect_uri.as_ref().map_or_else(
        || {
            format!(
                "{base_url}services/{}/oauth_callback",
                crate::api::models::url_name(&config.name)
            )
        },
        ToString::to_string,
    );
    let mut allowed: std::collections::BTreeSet<String> =
        config.oauth_client_allowed_scopes.iter().cloned().collect();
    allowed.insert(crate::rbac::grants::access_scope(
        crate::rbac::ClientTarget::Service(&config.name),
    ));
    let allowed: Vec<String> = allowed.into_iter().collect();
    let kept = existing
        .iter()
        .find(|c| c.identifier == identifier)
        .map(|c| c.secret.clone());
    let secret = match &config.api_token {
        // Hashed like a password; an unchanged token keeps its stored hash.
        Some(token) => match kept.filter(|h| tokens::verify_token(h, token.expose())) {
            Some(hash) => hash,
            None => HashedToken::new(token.expose(), tokens::USER_PROVIDED_ROUNDS).to_string(),
        },
        None => kept.unwrap_or_default(),
    };
    oauth_clients::upsert(
        conn,
        &oauth_clients::NewOAuthClient {
            identifier: &identifier,
            description: &format!("JupyterHub service {}", config.name),
            secret: &secret,
            redirect_uri: &redirect_uri,
            allowed_scopes: &allowed,
            owner,
        },
    )?;
    Ok(())
}

/// Stores a user-provided token unless it is already stored for that owner.
fn ensure_token(
    conn: &mut DbConnection,
    token: &str,
    owner: api_tokens::TokenOwner,
    trusted: bool,
    note: &str,
) -> QueryResult<()> {
    let now = Utc::now().naive_utc();
    let existing = api_tokens::find_by_prefix(conn, tokens::token_prefix(token), now)?;
    if let Some(row) = existing
        .iter()
        .find(|r| tokens::verify_token(&r.hashed, token))
    {
        if row.owner() == Some(owner) {
            return Ok(());
        }
        // The same secret now belongs to someone else: the old grant must go.
        api_tokens::delete(conn, row.id)?;
    }
    let rounds = if trusted {
        tokens::GENERATED_ROUNDS
    } else {
        tokens::USER_PROVIDED_ROUNDS
    };
    let hashed = HashedToken::new(token, rounds).to_string();
    api_tokens::insert(
        conn,
        &api_tokens::NewApiToken {
            prefix: tokens::token_prefix(token),
            hashed: &hashed,
            owner,
            spawner_id: None,
            client_id: oauth_clients::JUPYTERHUB_CLIENT_ID,
            session_id: None,
            note,
            scopes: &["inherit".to_owned()],
            expires_at: None,
        },
    )?;
    Ok(())
}

/// Gives the configured service `name` a freshly generated API token (stored hashed) and
/// returns it: managed services without a configured `api_token` get one at each startup.
/// Tokens generated at earlier startups are removed first.
///
/// # Errors
/// Database failures, or [`StartupError::Config`] when the service is not in the database.
pub async fn generated_service_token(state: &AppState, name: &str) -> Result<String, StartupError> {
    const NOTE: &str = "generated at startup";
    let token = tokens::new_api_token();
    let hashed = HashedToken::new(&token, tokens::GENERATED_ROUNDS).to_string();
    let name = name.to_owned();
    let secret = token.clone();
    let found = state
        .db
        .transaction(move |conn| {
            let Some(service) = services::find_by_name(conn, &name)? else {
                return Ok(false);
            };
            let owner = api_tokens::TokenOwner::Service(service.id);
            for old in api_tokens::list_for_owner(conn, owner, crate::db::now())? {
                if old.note == NOTE {
                    api_tokens::delete(conn, old.id)?;
                }
            }
            api_tokens::insert(
                conn,
                &api_tokens::NewApiToken {
                    prefix: tokens::token_prefix(&secret),
                    hashed: &hashed,
                    owner,
                    spawner_id: None,
                    client_id: oauth_clients::JUPYTERHUB_CLIENT_ID,
                    session_id: None,
                    note: NOTE,
                    scopes: &["inherit".to_owned()],
                    expires_at: None,
                },
            )?;
            // The token is also the secret of the service's OAuth client.
            let owner = oauth_clients::ClientOwner::Service(service.id);
            let clients = oauth_clients::find_for_owner(conn, owner)?;
            if !clients.is_empty() {
                let client_secret =
                    HashedToken::new(&secret, tokens::USER_PROVIDED_ROUNDS).to_string();
                for client in clients {
                    oauth_clients::upsert(
                        conn,
                        &oauth_clients::NewOAuthClient {
                            identifier: &client.identifier,
                            description: &client.description,
                            secret: &client_secret,
                            redirect_uri: &client.redirect_uri,
                            allowed_scopes: &client.allowed_scopes,
                            owner,
                        },
                    )?;
                }
            }
            Ok(true)
        })
        .await?;
    if found {
        Ok(token)
    } else {
        Err(StartupError::Config(
            "a managed service is missing from the database".to_owned(),
        ))
    }
}
