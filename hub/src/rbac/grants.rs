//! What a credential is granted (§3.3 of the protocol notes): a token's effective scopes (its
//! own scopes intersected with its owner's current ones), the checks at token creation and at
//! OAuth authorization, server tokens, identify and access scopes, and share filters.
//!
//! Mirrors `scopes.py` (`get_scopes_for` for tokens, `_check_token_scopes`,
//! `_resolve_requested_scopes`, `identify_scopes`, `access_scopes`), `user.py` (server token
//! scopes at spawn) and `orm.py` (`Share.apply_filter`).

use std::collections::BTreeSet;

use crate::rbac::roles::SERVER_ROLE_SCOPES;
use crate::rbac::scope_set::{GroupMembership, ScopeSet};
use crate::rbac::scopes::{ClientTarget, ExpandContext, Filter, Owner, ScopeError, ScopeRegistry};

/// Raw identify scopes of a user, before `!user` is resolved. OAuth requests without a `scope`
/// parameter get these on top of the client's allowed scopes.
pub const IDENTIFY_RAW_SCOPES: [&str; 2] = ["read:users:groups!user", "read:users:name!user"];

/// Why a token or share was refused its scopes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// A requested scope does not exist or is malformed.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// The request asks for more than the owner holds (400 on the token API).
    #[error("Not assigning requested scopes {} not held by {owner}", .scopes.join(","))]
    NotHeld {
        /// The excess scopes, sorted.
        scopes: Vec<String>,
        /// `User alice` or `Service culler`.
        owner: String,
    },
    /// A share scope filtered to something other than the shared server.
    #[error("!{filter} not allowed on sharing {scope}, only !{allowed}")]
    ShareFilter {
        /// The offending filter (after `!`).
        filter: String,
        /// The whole scope.
        scope: String,
        /// The only filter allowed: `server=<owner>/<server>`.
        allowed: String,
    },
}

/// The identify scopes of an owner: `read:users:name` and `read:users:groups` for a user,
/// `read:services:name` for a service, filtered to the owner.
pub fn identify_scopes(owner: Owner<'_>) -> ScopeSet {
    let mut set = ScopeSet::new();
    match owner {
        Owner::User(name) => {
            for base in ["read:users:name", "read:users:groups"] {
                set.insert(base, Some(Filter::User(name.to_owned())));
            }
        }
        Owner::Service(name) => {
            set.insert("read:services:name", Some(Filter::Service(name.to_owned())));
        }
    }
    set
}

fn access_grant(client: ClientTarget<'_>) -> (&'static str, Filter) {
    match client {
        ClientTarget::Server { user, server } => ("access:servers", Filter::server(user, server)),
        ClientTarget::Service(name) => ("access:services", Filter::Service(name.to_owned())),
    }
}

/// The scope needed to reach an OAuth client's resource: `access:servers!server=<u>/<s>` or
/// `access:services!service=<name>`.
pub fn access_scope(client: ClientTarget<'_>) -> String {
    let (base, filter) = access_grant(client);
    format!("{base}!{filter}")
}

/// [`access_scope`] as a set.
pub fn access_scope_set(client: ClientTarget<'_>) -> ScopeSet {
    let (base, filter) = access_grant(client);
    let mut set = ScopeSet::new();
    set.insert(base, Some(filter));
    set
}

/// The default `$JUPYTERHUB_OAUTH_ACCESS_SCOPES` of a user's server: the server itself, or any
/// server of its owner.
pub fn server_oauth_access_scopes(user: &str, server: &str) -> Vec<String> {
    vec![
        format!("access:servers!server={user}/{server}"),
        format!("access:servers!user={user}"),
    ]
}

/// The default `$JUPYTERHUB_OAUTH_ACCESS_SCOPES` of a managed service.
pub fn service_oauth_access_scopes(name: &str) -> Vec<String> {
    vec![
        "access:services".to_owned(),
        format!("access:services!service={name}"),
    ]
}

/// The token being evaluated: its raw scopes as stored, its owner, and the resource of the
/// OAuth client that issued it (`None` for the `jupyterhub` client, i.e. plain API tokens).
#[derive(Debug, Clone, Copy)]
pub struct TokenScopes<'a, S> {
    /// Raw scopes as stored with the token.
    pub raw: &'a [S],
    /// The token's owner.
    pub owner: Owner<'a>,
    /// The issuing OAuth client's resource, if the token came from OAuth.
    pub client: Option<ClientTarget<'a>>,
}

/// A token's effective scopes, recomputed on every request so that demoting the owner weakens
/// the token at once:
/// - with `inherit`: exactly `owner_scopes`;
/// - otherwise: the token's scopes (expanded against its owner and client), plus the client's
///   access scope for OAuth tokens, plus the owner's identify scopes, intersected with
///   `owner_scopes`.
///
/// `owner_scopes` is the owner's expanded role scopes (including group roles), plus shares for
/// users. The result never grants anything `owner_scopes` does not.
pub fn effective_token_scopes<S, M>(
    registry: &ScopeRegistry,
    token: &TokenScopes<'_, S>,
    owner_scopes: &ScopeSet,
    membership: &M,
) -> Result<ScopeSet, ScopeError>
where
    S: AsRef<str>,
    M: GroupMembership + ?Sized,
{
    if token.raw.iter().any(|s| s.as_ref() == "inherit") {
        return Ok(owner_scopes.clone());
    }
    let ctx = ExpandContext::owner(token.owner).with_client(token.client);
    let mut own = registry.expand(token.raw, &ctx)?;
    if let Some(client) = token.client {
        own.extend(&access_scope_set(client));
    }
    own.extend(&identify_scopes(token.owner));
    Ok(own.intersection(owner_scopes, membership))
}

/// The check at token creation: requesting scopes the owner does not hold is refused with
/// JupyterHub's 400 message (`Not assigning requested scopes … not held by User alice`).
/// `inherit` alone always passes.
pub fn check_token_scopes<S, M>(
    registry: &ScopeRegistry,
    token: &TokenScopes<'_, S>,
    owner_scopes: &ScopeSet,
    membership: &M,
) -> Result<(), GrantError>
where
    S: AsRef<str>,
    M: GroupMembership + ?Sized,
{
    registry.check_scopes_exist(token.raw, Some("token"))?;
    let requested: Vec<&str> = token
        .raw
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| *s != "inherit")
        .collect();
    let ctx = ExpandContext::owner(token.owner).with_client(token.client);
    let expanded = registry.expand(&requested, &ctx)?;
    let held = expanded.intersection(owner_scopes, membership);
    let excess = expanded.difference(&held);
    if excess.is_empty() {
        Ok(())
    } else {
        Err(GrantError::NotHeld {
            scopes: excess.to_strings(),
            owner: format!("{} {}", token.owner.kind_label(), token.owner.name()),
        })
    }
}

/// Splits raw scopes requested for `user` (through OAuth, or for a server token) into those
/// granted and those refused, given the raw scopes the user holds. A requested scope passes if
/// it is held verbatim, or if its expansion is covered by the expansion of what is held; a
/// partly covered scope contributes its covered expanded scopes. Mirrors
/// `_resolve_requested_scopes`; `client` is `None` for the `jupyterhub` client.
pub fn resolve_requested_scopes<M: GroupMembership + ?Sized>(
    registry: &ScopeRegistry,
    requested: &BTreeSet<String>,
    have: &BTreeSet<String>,
    user: &str,
    client: Option<ClientTarget<'_>>,
    membership: &M,
) -> Result<(BTreeSet<String>, BTreeSet<String>), ScopeError> {
    let mut allowed: BTreeSet<String> = requested.intersection(have).cloned().collect();
    let mut refused: BTreeSet<String> = requested.difference(have).cloned().collect();
    if refused.is_empty() {
        return Ok((allowed, refused));
    }
    let ctx = ExpandContext::owner(Owner::User(user)).with_client(client);
    let expanded_have = registry.expand(have, &ctx)?;
    let mut expanded_allowed = registry.expand(&allowed, &ctx)?;
    for scope in refused.clone() {
        let wanted = registry
            .expand([scope.as_str()], &ctx)?
            .difference(&expanded_allowed);
        let covered = wanted.intersection(&expanded_have, membership);
        if covered == wanted {
            // Everything the scope expands to is held (or already granted): keep the raw form.
            allowed.insert(scope.clone());
            refused.remove(&scope);
        } else if !covered.is_empty() {
            // Grant the covered part; the raw scope still counts as refused.
            allowed.extend(covered.to_strings());
        } else {
            continue;
        }
        expanded_allowed = registry.expand(&allowed, &ctx)?;
    }
    Ok((allowed, refused))
}

/// The raw scopes requested for a server's own API token at spawn: `Spawner.server_token_scopes`
/// or, if empty, the `server` role's scopes; bare `!server` resolved to this server (the token
/// is not issued by the server's OAuth client, so expansion could not resolve it); and
/// `users:activity!user` added unless activity is already requested. The result is then passed
/// through [`resolve_requested_scopes`] with the user's raw role scopes plus `inherit`.
pub fn server_token_requested_scopes<S: AsRef<str>>(
    configured: &[S],
    user: &str,
    server: &str,
) -> BTreeSet<String> {
    let requested: Vec<&str> = if configured.is_empty() {
        SERVER_ROLE_SCOPES.to_vec()
    } else {
        configured.iter().map(AsRef::as_ref).collect()
    };
    let mut out: BTreeSet<String> = requested
        .into_iter()
        .map(|scope| {
            if scope.ends_with("!server") {
                format!("{scope}={user}/{server}")
            } else {
                scope.to_owned()
            }
        })
        .collect();
    let activity = "users:activity!user";
    if ![activity, "users:activity", "inherit"]
        .iter()
        .any(|s| out.contains(*s))
    {
        out.insert(activity.to_owned());
    }
    out
}

/// Forces every share scope onto the shared server: `<base>!server=<owner>/<server>`. A scope
/// already filtered to another resource is refused. Mirrors `Share.apply_filter`.
pub fn apply_share_filter<S: AsRef<str>>(
    scopes: &[S],
    owner: &str,
    server: &str,
) -> Result<BTreeSet<String>, GrantError> {
    let allowed = format!("server={owner}/{server}");
    scopes
        .iter()
        .map(|scope| {
            let scope = scope.as_ref();
            let (base, filter) = scope.split_once('!').unwrap_or((scope, ""));
            if !filter.is_empty() && filter != allowed {
                return Err(GrantError::ShareFilter {
                    filter: filter.to_owned(),
                    scope: scope.to_owned(),
                    allowed: allowed.clone(),
                });
            }
            Ok(format!("{base}!{allowed}"))
        })
        .collect()
}

#[cfg(test)]
mod tests;
