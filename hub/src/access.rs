//! Who is calling, and what they may do: credentials (API tokens, the login cookie) resolved
//! against the database into an [`Identity`] with its effective scopes.
//!
//! Scopes are recomputed from roles, groups and the token on every resolution, so demoting a
//! user or revoking a role takes effect at once; a token never exceeds what its owner holds now.

use chrono::Utc;

use crate::db::DbConnection;
use crate::db::models::{
    api_tokens, groups, oauth_clients, roles, services, shares, spawners, users,
};
use crate::identity::tokens;
use crate::rbac::grants::{TokenScopes, apply_share_filter, effective_token_scopes};
use crate::rbac::roles::{default_service_role_names, default_user_role_names};
use crate::rbac::{ClientTarget, ExpandContext, GroupMembership, Owner, ScopeSet, UserGroups};
use crate::state::AppState;

/// The user or service behind a credential.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A user.
    User(users::User),
    /// A service.
    Service(services::Service),
}

impl Principal {
    /// The name.
    pub fn name(&self) -> &str {
        match self {
            Self::User(u) => &u.name,
            Self::Service(s) => &s.name,
        }
    }

    /// Whether the principal is an admin.
    pub fn admin(&self) -> bool {
        match self {
            Self::User(u) => u.admin,
            Self::Service(s) => s.admin,
        }
    }

    /// The rbac owner.
    pub fn owner(&self) -> Owner<'_> {
        match self {
            Self::User(u) => Owner::User(&u.name),
            Self::Service(s) => Owner::Service(&s.name),
        }
    }
}

/// How the request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: token|bearer …`.
    Token,
    /// The hub login cookie.
    Cookie,
}

/// A resolved caller.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Who.
    pub principal: Principal,
    /// The groups of a user principal (for group-filtered scopes).
    pub groups: Vec<String>,
    /// Effective, expanded scopes.
    pub scopes: ScopeSet,
    /// The token used, if any.
    pub token: Option<api_tokens::ApiToken>,
    /// How.
    pub via: Via,
}

impl Identity {
    /// A membership oracle for the caller's own groups.
    pub fn own_groups(&self) -> UserGroups<'_> {
        UserGroups {
            user: self.principal.name(),
            groups: &self.groups,
        }
    }
}

/// Failure to resolve a credential for reasons other than "not valid": the database.
pub type AccessResult<T> = diesel::QueryResult<T>;

/// Whether `name` is in `authenticator.blocked_users`, compared after normalisation.
pub fn is_blocked(state: &AppState, name: &str) -> bool {
    state
        .config
        .authenticator
        .blocked_users
        .iter()
        .any(|blocked| state.authenticator.normalize_username(blocked) == name)
}

/// The scopes a user holds now: their roles, their groups' roles, the default roles. A user
/// blocked in the configuration holds none (JupyterHub strips a blocked user's roles and
/// groups at startup), so their tokens, cookie and shares stop working.
pub fn user_scopes(
    state: &AppState,
    conn: &mut DbConnection,
    user: &users::User,
) -> AccessResult<(ScopeSet, Vec<String>)> {
    if is_blocked(state, &user.name) {
        return Ok((ScopeSet::default(), Vec::new()));
    }
    let group_names: Vec<String> = groups::for_user(conn, user.id)?
        .into_iter()
        .map(|g| g.name)
        .collect();
    let mut names: Vec<String> = roles::effective_for_user(conn, user.id)?
        .into_iter()
        .map(|r| r.name)
        .collect();
    names.extend(
        default_user_role_names(user.admin)
            .into_iter()
            .map(str::to_owned),
    );
    let mut scopes = state
        .roles
        .expand_for(
            &state.registry,
            names.iter().map(String::as_str),
            Owner::User(&user.name),
        )
        .unwrap_or_else(|e| {
            tracing::error!(user = %user.name, "role scopes do not expand: {e}");
            ScopeSet::default()
        });
    scopes.extend(&share_scopes(state, conn, user)?);
    Ok((scopes, group_names))
}

/// The scopes a user holds through shares made to them or to one of their groups. Each share
/// grants its scopes only on the shared server, under the server's current owner and name:
/// whatever filter a stored scope carries is replaced, so a share can never reach further than
/// its server (not even after a rename). Scopes that no longer exist are skipped.
pub fn share_scopes(
    state: &AppState,
    conn: &mut DbConnection,
    user: &users::User,
) -> AccessResult<ScopeSet> {
    let mut out = ScopeSet::new();
    let ctx = ExpandContext::owner(Owner::User(&user.name));
    for share in shares::received_scopes(conn, user.id)? {
        let bases: Vec<&str> = share
            .scopes
            .iter()
            .map(|s| s.split_once('!').map_or(s.as_str(), |(base, _)| base))
            .collect();
        let filtered = match apply_share_filter(&bases, &share.owner_name, &share.server_name) {
            Ok(filtered) => filtered,
            Err(e) => {
                tracing::warn!(user = %user.name, "share scopes ignored: {e}");
                continue;
            }
        };
        for scope in &filtered {
            match state.registry.expand([scope.as_str()], &ctx) {
                Ok(expanded) => out.extend(&expanded),
                Err(e) => tracing::warn!(user = %user.name, "share scope ignored: {e}"),
            }
        }
    }
    Ok(out)
}

/// The effective scopes of a stored token whose owner currently holds `owner_scopes`, as
/// [`resolve_token`] computes them for a request (for the token model of the API).
pub fn stored_token_scopes<M: GroupMembership + ?Sized>(
    state: &AppState,
    conn: &mut DbConnection,
    row: &api_tokens::ApiToken,
    owner: Owner<'_>,
    owner_scopes: &ScopeSet,
    membership: &M,
) -> AccessResult<ScopeSet> {
    let client_resource = client_resource(conn, &row.client_id)?;
    let client = client_resource.as_ref().map(|r| match r {
        ClientResource::Server(user, server) => ClientTarget::Server { user, server },
        ClientResource::Service(name) => ClientTarget::Service(name),
    });
    Ok(effective_token_scopes(
        &state.registry,
        &TokenScopes {
            raw: &row.scopes,
            owner,
            client,
        },
        owner_scopes,
        membership,
    )
    .unwrap_or_else(|e| {
        tracing::warn!(token = %tokens::format_token_id(i64::from(row.id)), "token scopes do not expand: {e}");
        ScopeSet::default()
    }))
}

/// The scopes a service holds now.
pub fn service_scopes(
    state: &AppState,
    conn: &mut DbConnection,
    service: &services::Service,
) -> AccessResult<ScopeSet> {
    let mut names: Vec<String> = roles::granted_to(conn, roles::Grantee::Service(service.id))?
        .into_iter()
        .map(|r| r.name)
        .collect();
    names.extend(
        default_service_role_names(service.admin)
            .into_iter()
            .map(str::to_owned),
    );
    Ok(state
        .roles
        .expand_for(
            &state.registry,
            names.iter().map(String::as_str),
            Owner::Service(&service.name),
        )
        .unwrap_or_else(|e| {
            tracing::error!(service = %service.name, "role scopes do not expand: {e}");
            ScopeSet::default()
        }))
}

/// Resolves an API token. `Ok(None)` when it is not a valid, unexpired token.
pub fn resolve_token(
    state: &AppState,
    conn: &mut DbConnection,
    token: &str,
) -> AccessResult<Option<Identity>> {
    if !tokens::is_candidate(token) {
        return Ok(None);
    }
    let now = Utc::now().naive_utc();
    let candidates = api_tokens::find_by_prefix(conn, tokens::token_prefix(token), now)?;
    let Some(row) = candidates
        .into_iter()
        .find(|row| tokens::verify_token(&row.hashed, token))
    else {
        return Ok(None);
    };
    let (principal, owner_scopes, groups) = match row.owner() {
        Some(api_tokens::TokenOwner::User(id)) => {
            let Some(user) = users::find_by_id(conn, id)? else {
                return Ok(None);
            };
            let (scopes, groups) = user_scopes(state, conn, &user)?;
            (Principal::User(user), scopes, groups)
        }
        Some(api_tokens::TokenOwner::Service(id)) => {
            let Some(service) = services::find_by_id(conn, id)? else {
                return Ok(None);
            };
            let scopes = service_scopes(state, conn, &service)?;
            (Principal::Service(service), scopes, Vec::new())
        }
        None => return Ok(None),
    };
    // The resource of the issuing OAuth client, for `!server`/`!service` filters.
    let client_resource = client_resource(conn, &row.client_id)?;
    let client = client_resource.as_ref().map(|r| match r {
        ClientResource::Server(user, server) => ClientTarget::Server { user, server },
        ClientResource::Service(name) => ClientTarget::Service(name),
    });
    let membership = UserGroups {
        user: principal.name(),
        groups: &groups,
    };
    let scopes = effective_token_scopes(
        &state.registry,
        &TokenScopes {
            raw: &row.scopes,
            owner: principal.owner(),
            client,
        },
        &owner_scopes,
        &membership,
    )
    .unwrap_or_else(|e| {
        tracing::warn!(token = %tokens::format_token_id(i64::from(row.id)), "token scopes do not expand: {e}");
        ScopeSet::default()
    });
    Ok(Some(Identity {
        principal,
        groups,
        scopes,
        token: Some(row),
        via: Via::Token,
    }))
}

/// Resolves the `cookie_id` carried by a valid login cookie.
pub fn resolve_cookie_user(
    state: &AppState,
    conn: &mut DbConnection,
    cookie_id: &str,
) -> AccessResult<Option<Identity>> {
    let Some(user) = users::find_by_cookie_id(conn, cookie_id)? else {
        return Ok(None);
    };
    let (scopes, groups) = user_scopes(state, conn, &user)?;
    Ok(Some(Identity {
        principal: Principal::User(user),
        groups,
        scopes,
        token: None,
        via: Via::Cookie,
    }))
}

enum ClientResource {
    Server(String, String),
    Service(String),
}

fn client_resource(
    conn: &mut DbConnection,
    client_id: &str,
) -> AccessResult<Option<ClientResource>> {
    if client_id == oauth_clients::JUPYTERHUB_CLIENT_ID {
        return Ok(None);
    }
    let Some(client) = oauth_clients::find_by_identifier(conn, client_id)? else {
        return Ok(None);
    };
    if let Some(spawner_id) = client.spawner_id
        && let Some(spawner) = spawners::find_by_id(conn, spawner_id)?
        && let Some(owner) = users::find_by_id(conn, spawner.user_id)?
    {
        return Ok(Some(ClientResource::Server(owner.name, spawner.name)));
    }
    if let Some(service_id) = client.service_id
        && let Some(service) = services::find_by_id(conn, service_id)?
    {
        return Ok(Some(ClientResource::Service(service.name)));
    }
    Ok(None)
}
