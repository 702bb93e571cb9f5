//! The hub as an OAuth2 provider (hub-protocol §4): single-user servers and services send
//! browsers to `/hub/api/oauth2/authorize` and exchange the code they get back at
//! `/hub/api/oauth2/token` for an access token, which then works on `GET /hub/api/user`.
//!
//! - [`authorize`]: `GET` (validate, confirm or grant) and `POST` (the confirmation form) of
//!   `/hub/api/oauth2/authorize`.
//! - [`token`]: `POST /hub/api/oauth2/token`, the `authorization_code` grant only.
//!
//! Rules that matter for security:
//! - an unknown client or a `redirect_uri` that is not byte-for-byte the registered one is
//!   answered with an error page, never with a redirect;
//! - codes live five minutes, are stored as a digest, are bound to their client and redirect
//!   URI, carry the PKCE challenge, and are redeemed at most once;
//! - a granted scope never exceeds what the client may request nor what the user holds, and a
//!   user without access to the client's server or service gets no code at all;
//! - access tokens are tied to the browser session, so logging out of the hub revokes them.
//!
//! The pure rules (parameter checks, scope selection, PKCE, URLs) live here and are unit
//! tested; the handlers add the database and HTTP around them.

pub mod authorize;
pub mod token;

use std::collections::BTreeSet;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::db::DbConnection;
use crate::db::models::oauth_clients::{self, OAuthClient};
use crate::db::models::{services, spawners, users};
use crate::rbac::grants::IDENTIFY_RAW_SCOPES;
use crate::rbac::{ClientTarget, RoleTable, ScopeRegistry};
use crate::state::AppState;

/// How long an authorization code may be redeemed (JupyterHub: five minutes).
pub const CODE_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::seconds(300);

/// Longest accepted PKCE `code_challenge` (RFC 7636: 43 to 128 characters).
pub const MAX_CODE_CHALLENGE_LEN: usize = 128;

/// The deprecated scope older clients request; it grants nothing beyond identification.
pub const IDENTIFY_SCOPE: &str = "identify";

/// The provider's routes, with full paths under the hub prefix (e.g. `/hub/`). They sit beside
/// the nested REST API (a more specific route wins over the API's catch-all), because the
/// authorization page is a page: it needs the browser's real path for `next=` links.
pub fn router(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(
            &format!("{prefix}api/oauth2/authorize"),
            get(authorize::get).post(authorize::post),
        )
        .route(
            &format!("{prefix}api/oauth2/token"),
            post(token::post).options(token::options),
        )
        .layer(DefaultBodyLimit::max(crate::app::MAX_API_BODY))
}

/// The path of the authorization endpoint under `hub_prefix`: HTML is served there, so it gets
/// the pages' headers rather than the API's.
pub fn authorize_path(hub_prefix: &str) -> String {
    format!("{hub_prefix}api/oauth2/authorize")
}

// === request parameters ===

/// Query or form parameters in order of appearance, duplicates kept (OAuth refuses some
/// duplicates; the authorization form repeats `scopes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes `application/x-www-form-urlencoded` text (a query string or a form body).
    /// Decoding never fails: invalid escapes are kept as they are.
    pub fn parse(text: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(text)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Appends `other`'s parameters after these (a form body after the query string).
    pub fn extend(&mut self, other: Params) {
        self.0.extend(other.0);
    }

    /// The last value of `name` (later values win, as in a body that follows the query), empty
    /// values counting as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first of `names` given more than once.
    pub fn first_duplicate<'n>(&self, names: &[&'n str]) -> Option<&'n str> {
        names
            .iter()
            .copied()
            .find(|name| self.0.iter().filter(|(k, _)| k == name).count() > 1)
    }
}

// === clients ===

/// What an OAuth client gives access to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A user's server.
    Server {
        /// The owner's user id.
        owner_id: i32,
        /// The owner's name.
        owner: String,
        /// The server name, `""` for the default server.
        server: String,
    },
    /// A service.
    Service {
        /// The service name.
        name: String,
        /// Users logging in to it skip the confirmation page.
        no_confirm: bool,
    },
}

/// A client able to take part in the authorization-code flow: registered, with a redirect URI,
/// and belonging to a server or a service.
#[derive(Debug, Clone)]
pub struct Client {
    /// The stored client.
    pub row: OAuthClient,
    /// What it gives access to.
    pub resource: Resource,
}

impl Client {
    /// The client's resource, as scope expansion takes it.
    pub fn target(&self) -> ClientTarget<'_> {
        match &self.resource {
            Resource::Server { owner, server, .. } => ClientTarget::Server {
                user: owner,
                server,
            },
            Resource::Service { name, .. } => ClientTarget::Service(name),
        }
    }

    /// The scopes every grant to this client includes: the identify scopes of the user and the
    /// scope that reaches the client's resource.
    pub fn required_scopes(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = IDENTIFY_RAW_SCOPES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        out.insert(crate::rbac::grants::access_scope(self.target()));
        out
    }
}

/// Loads the client `identifier`. `None` for unknown clients, for the built-in `jupyterhub`
/// client, and for clients without a redirect URI or without a server or service (none of which
/// can complete a flow).
///
/// # Errors
/// Database failures.
pub fn load_client(
    conn: &mut DbConnection,
    identifier: &str,
) -> diesel::QueryResult<Option<Client>> {
    if identifier == oauth_clients::JUPYTERHUB_CLIENT_ID {
        return Ok(None);
    }
    let Some(row) = oauth_clients::find_by_identifier(conn, identifier)? else {
        return Ok(None);
    };
    if row.redirect_uri.is_empty() {
        return Ok(None);
    }
    let resource = if let Some(spawner_id) = row.spawner_id {
        let Some(spawner) = spawners::find_by_id(conn, spawner_id)? else {
            return Ok(None);
        };
        let Some(owner) = users::find_by_id(conn, spawner.user_id)? else {
            return Ok(None);
        };
        Resource::Server {
            owner_id: owner.id,
            owner: owner.name,
            server: spawner.name,
        }
    } else if let Some(service_id) = row.service_id {
        let Some(service) = services::find_by_id(conn, service_id)? else {
            return Ok(None);
        };
        Resource::Service {
            name: service.name,
            no_confirm: service.oauth_no_confirm,
        }
    } else {
        return Ok(None);
    };
    Ok(Some(Client { row, resource }))
}

// === codes and PKCE ===

/// The digest under which a code is stored: hex SHA-256. Codes are random and single-use, so an
/// unsalted digest suffices and allows an indexed lookup, while a copy of the database does not
/// reveal usable codes.
pub fn code_digest(code: &str) -> String {
    hex::encode(Sha256::digest(code.as_bytes()))
}

/// PKCE methods the provider accepts.
pub const PKCE_METHODS: [&str; 2] = ["S256", "plain"];

/// Whether a `code_challenge` is well formed: 1 to [`MAX_CODE_CHALLENGE_LEN`] characters from
/// RFC 7636's unreserved set (`A-Z a-z 0-9 - . _ ~`).
pub fn valid_code_challenge(challenge: &str) -> bool {
    !challenge.is_empty()
        && challenge.len() <= MAX_CODE_CHALLENGE_LEN
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether `verifier` answers `challenge` under `method` (`S256`: unpadded base64url of the
/// verifier's SHA-256; `plain`: the verifier itself). Constant-time; unknown methods fail.
pub fn verify_pkce(method: &str, challenge: &str, verifier: &str) -> bool {
    let expected = match method {
        "S256" => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
        "plain" => verifier.to_owned(),
        _ => return false,
    };
    bool::from(expected.as_bytes().ct_eq(challenge.as_bytes()))
}

// === redirects ===

/// `uri` with `params` added to its query (after `&` if it already has one, before any
/// fragment), each value URL-encoded.
pub fn add_query_params(uri: &str, params: &[(&str, &str)]) -> String {
    let (base, fragment) = match uri.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (uri, None),
    };
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        encoded.append_pair(k, v);
    }
    let encoded = encoded.finish();
    let mut out = String::with_capacity(uri.len() + encoded.len() + 1);
    out.push_str(base);
    if !encoded.is_empty() {
        match base.split_once('?') {
            None => out.push('?'),
            Some((_, "")) => {}
            Some((_, query)) if query.ends_with('&') => {}
            Some(_) => out.push('&'),
        }
        out.push_str(&encoded);
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

// === scopes ===

/// An OAuth error sent back to the client's redirect URI (RFC 6749 §4.1.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectError {
    /// The `error` code, e.g. `invalid_scope`.
    pub error: &'static str,
    /// The `error_description`, if any.
    pub description: Option<String>,
}

impl RedirectError {
    /// An error with a description.
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: Some(description.into()),
        }
    }
}

/// The raw scopes a request asks for, checked against what the client may request:
/// - none requested (`None` or an empty list): the client's allowed scopes;
/// - `identify` is dropped (it only ever meant "who are you", which every grant includes);
/// - names that are not all scopes may all be role names, replaced by their scopes;
/// - `required` (identify and access scopes) is always added and always allowed;
/// - anything else outside `allowed` is an `invalid_scope` error.
///
/// # Errors
/// `invalid_scope`, describing the offending scopes.
pub fn requested_scopes(
    registry: &ScopeRegistry,
    roles: &RoleTable,
    requested: Option<&[String]>,
    allowed: &[String],
    required: &BTreeSet<String>,
) -> Result<BTreeSet<String>, RedirectError> {
    let mut wanted: BTreeSet<String> = match requested {
        Some(list) if !list.is_empty() => list.iter().cloned().collect(),
        _ => allowed.iter().cloned().collect(),
    };
    wanted.remove(IDENTIFY_SCOPE);
    if registry.check_scopes_exist(&wanted, None).is_err() {
        // Role names are accepted instead of scopes (JupyterHub 2.x clients), all or nothing.
        let mut from_roles = BTreeSet::new();
        for name in &wanted {
            match roles.get(name) {
                Some(role) => from_roles.extend(role.scopes.iter().cloned()),
                None => {
                    return Err(RedirectError::new(
                        "invalid_scope",
                        format!("No such scope or role: {name}"),
                    ));
                }
            }
        }
        wanted = from_roles;
    }
    let disallowed: Vec<&str> = wanted
        .iter()
        .filter(|s| !required.contains(*s) && !allowed.contains(*s))
        .map(String::as_str)
        .collect();
    if !disallowed.is_empty() {
        return Err(RedirectError::new(
            "invalid_scope",
            format!(
                "Scopes not allowed for this client: {}",
                disallowed.join(" ")
            ),
        ));
    }
    wanted.extend(required.iter().cloned());
    Ok(wanted)
}

/// Whether the user must confirm before the client gets a code. Not when the client is one of
/// the user's own servers, when it is a service marked `oauth_no_confirm`, nor when the scopes
/// are all covered by earlier grants to the same client (`earlier`: the raw scopes of the
/// user's live tokens from it).
pub fn needs_confirmation(
    own_server: bool,
    no_confirm: bool,
    earlier: &BTreeSet<String>,
    scopes: &BTreeSet<String>,
) -> bool {
    if own_server || no_confirm {
        return false;
    }
    earlier.is_empty() || !scopes.is_subset(earlier)
}

/// One line of the confirmation page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScopeDescription {
    /// The raw scope, submitted back with the form.
    pub scope: String,
    /// What it allows.
    pub description: String,
    /// Which resources it is limited to, in words (empty when unfiltered).
    pub filter: String,
}

/// Describes raw scopes for the user `user` asked by `client`, sorted by scope.
pub fn describe_scopes(
    registry: &ScopeRegistry,
    scopes: &BTreeSet<String>,
    user: &str,
    client: ClientTarget<'_>,
) -> Vec<ScopeDescription> {
    scopes
        .iter()
        .filter(|s| *s != IDENTIFY_SCOPE)
        .map(|scope| {
            let (base, filter) = scope.split_once('!').unwrap_or((scope, ""));
            let description = registry
                .description(base)
                .map_or_else(|| base.to_owned(), str::to_owned);
            let filter = match (filter.split_once('='), filter) {
                (Some(("user", name)), _) => format!("user {name}"),
                (Some(("server", name)), _) => format!("server {name}"),
                (Some(("group", name)), _) => format!("members of group {name}"),
                (Some(("service", name)), _) => format!("service {name}"),
                (None, "user") => format!("user {user}"),
                (None, "server") => match client {
                    ClientTarget::Server { user, server } => format!("server {user}/{server}"),
                    ClientTarget::Service(_) => "this server".to_owned(),
                },
                (None, "service") => match client {
                    ClientTarget::Service(name) => format!("service {name}"),
                    ClientTarget::Server { .. } => "this service".to_owned(),
                },
                (_, other) => other.to_owned(),
            };
            ScopeDescription {
                scope: scope.clone(),
                description,
                filter,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
