//! `/hub/api/oauth2/authorize`: a logged-in browser, sent here by a single-user server or a
//! service, gets a code for that client, either at once or after confirming on the
//! "Authorize access" page, whose form posts back to the same URL.
//!
//! Order of checks (hub-protocol §4.2):
//! 1. not logged in: GET → 302 to the login page with `next=` this URL; POST → 403;
//! 2. POST only: the `_xsrf` token;
//! 3. duplicated parameters, unknown client, `redirect_uri` not exactly the registered one →
//!    400 page (never a redirect: the URI is not trusted yet);
//! 4. `response_type`, PKCE, scopes outside the client's allowed set → redirect to the
//!    client with `error=…`;
//! 5. a user without the client's access scope → 403 page;
//! 6. scopes cut down to what the user holds; then a confirmation page or a code.

use std::collections::BTreeSet;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use http::header::LOCATION;
use http::{HeaderMap, HeaderValue, StatusCode};
use minijinja::context;

use super::{
    CODE_LIFETIME, Client, IDENTIFY_SCOPE, PKCE_METHODS, Params, RedirectError, Resource,
    add_query_params, code_digest, describe_scopes, load_client, needs_confirmation,
    requested_scopes, valid_code_challenge,
};
use crate::access::{Identity, Principal};
use crate::db::DbError;
use crate::db::models::oauth_codes::{self, NewOAuthCode};
use crate::db::models::{api_tokens, groups, roles, users};
use crate::identity::cookies::SESSION_COOKIE;
use crate::identity::tokens;
use crate::rbac::grants::resolve_requested_scopes;
use crate::rbac::roles::default_user_role_names;
use crate::rbac::{NoGroups, Target, UserGroups};
use crate::state::AppState;
use crate::web::session::{append_cookies, login_url, set_cookie};
use crate::web::{Browser, ErrorPage};

/// Parameters that may appear at most once in an authorization request.
const SINGLE_PARAMS: [&str; 5] = [
    "client_id",
    "response_type",
    "redirect_uri",
    "scope",
    "state",
];

/// Why a request could not go on: a page shown to the user, or an error for the client.
#[derive(Debug)]
enum Refusal {
    /// An error page (bad client or redirect URI, no access, database trouble).
    Page(StatusCode, String),
    /// An OAuth error sent to the verified redirect URI.
    Redirect {
        redirect_uri: String,
        error: RedirectError,
        state: Option<String>,
    },
}

impl Refusal {
    fn db(e: &DbError) -> Self {
        match e {
            DbError::Unavailable(_) | DbError::Busy(_) => {
                tracing::error!("oauth authorize: database unavailable: {e}");
                Refusal::Page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The hub's database is unavailable; try again shortly.".to_owned(),
                )
            }
            DbError::ForeignKeyViolation(_) => Refusal::Page(
                StatusCode::BAD_REQUEST,
                "This application is no longer registered with the hub.".to_owned(),
            ),
            other => {
                tracing::error!("oauth authorize: {other}");
                Refusal::Page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The authorization could not be completed.".to_owned(),
                )
            }
        }
    }

    fn into_response(self, state: &AppState, browser: &Browser) -> Response {
        match self {
            Refusal::Page(status, message) => ErrorPage::new(status)
                .message(message)
                .render(state, Some(browser)),
            Refusal::Redirect {
                redirect_uri,
                error,
                state: client_state,
            } => {
                tracing::info!(
                    error = error.error,
                    description = error.description.as_deref().unwrap_or(""),
                    "oauth authorize refused"
                );
                let mut params = vec![("error", error.error)];
                if let Some(d) = error.description.as_deref() {
                    params.push(("error_description", d));
                }
                if let Some(s) = client_state.as_deref() {
                    params.push(("state", s));
                }
                let location = add_query_params(&redirect_uri, &params);
                browser.with_cookies(state, found(&location))
            }
        }
    }
}

/// A 302 to `location` (a 400 page if it cannot be sent as a header).
fn found(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::FOUND, [(LOCATION, value)]).into_response(),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            "The redirect URI cannot be used in a redirect.",
        )
            .into_response(),
    }
}

/// The checked parameters of an authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The client.
    pub client_id: String,
    /// Where to send the browser back (the registered URI).
    pub redirect_uri: String,
    /// The client's `state`, echoed back.
    pub state: Option<String>,
    /// The `scope` parameter, split on spaces; `None` when absent or empty.
    pub scope: Option<Vec<String>>,
    /// PKCE challenge and method (`S256` or `plain`).
    pub pkce: Option<(String, String)>,
}

/// Checks that can only be answered with a page: duplicated parameters, the client, the
/// redirect URI. `registered` is the client's redirect URI, `None` if the client is unknown or
/// unusable. Returns the redirect URI to use (the registered one; it may be omitted).
///
/// # Errors
/// The message of the 400 page.
pub fn check_client(params: &Params, registered: Option<&str>) -> Result<String, String> {
    if let Some(name) = params.first_duplicate(&SINGLE_PARAMS) {
        return Err(format!("Duplicate {name} parameter."));
    }
    if params.get("client_id").is_none() {
        return Err("Missing client_id parameter.".to_owned());
    }
    let Some(registered) = registered.filter(|r| !r.is_empty()) else {
        return Err("Invalid client_id parameter value.".to_owned());
    };
    match params.get("redirect_uri") {
        // Exact string equality: no normalisation of case, slashes, escapes or userinfo.
        Some(given) if given != registered => Err("Mismatching redirect URI.".to_owned()),
        _ => Ok(registered.to_owned()),
    }
}

/// The remaining checks, answered by redirecting to the client: `response_type`, PKCE
/// (`require_pkce`: `hub.oauth_require_pkce`).
///
/// # Errors
/// The OAuth error for the client.
pub fn check_request(
    params: &Params,
    redirect_uri: String,
    require_pkce: bool,
) -> Result<AuthRequest, (RedirectError, String)> {
    let fail = |e: RedirectError| (e, redirect_uri.clone());
    match params.get("response_type") {
        None => {
            return Err(fail(RedirectError::new(
                "invalid_request",
                "Missing response_type parameter.",
            )));
        }
        Some("code") => {}
        Some(_) => {
            return Err(fail(RedirectError {
                error: "unsupported_response_type",
                description: None,
            }));
        }
    }
    let pkce = match params.get("code_challenge") {
        None if require_pkce => {
            return Err(fail(RedirectError::new(
                "invalid_request",
                "Code challenge required.",
            )));
        }
        None => None,
        Some(challenge) => {
            let method = params.get("code_challenge_method").unwrap_or("plain");
            if !PKCE_METHODS.contains(&method) {
                return Err(fail(RedirectError::new(
                    "invalid_request",
                    "Transform algorithm not supported.",
                )));
            }
            if !valid_code_challenge(challenge) {
                return Err(fail(RedirectError::new(
                    "invalid_request",
                    "Invalid code_challenge parameter.",
                )));
            }
            Some((challenge.to_owned(), method.to_owned()))
        }
    };
    let scope: Vec<String> = params
        .get("scope")
        .map(|s| {
            s.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(AuthRequest {
        client_id: params.get("client_id").unwrap_or_default().to_owned(),
        redirect_uri,
        state: params.get("state").map(str::to_owned),
        scope: (!scope.is_empty()).then_some(scope),
        pkce,
    })
}

/// What the database says about the client and the user.
struct Facts {
    client: Option<Client>,
    /// The user's role names (own, groups', defaults).
    role_names: Vec<String>,
    /// Raw scopes of the user's live tokens from this client.
    earlier: BTreeSet<String>,
    /// Groups of the server's owner, for group-filtered access scopes.
    owner_groups: Vec<String>,
}

async fn load_facts(
    state: &AppState,
    client_id: String,
    user: &users::User,
) -> Result<Facts, DbError> {
    let (user_id, admin) = (user.id, user.admin);
    state
        .db
        .run(move |conn| {
            let Some(client) = load_client(conn, &client_id)? else {
                return Ok(Facts {
                    client: None,
                    role_names: Vec::new(),
                    earlier: BTreeSet::new(),
                    owner_groups: Vec::new(),
                });
            };
            let mut role_names: Vec<String> = roles::effective_for_user(conn, user_id)?
                .into_iter()
                .map(|r| r.name)
                .collect();
            role_names.extend(
                default_user_role_names(admin)
                    .into_iter()
                    .map(str::to_owned),
            );
            let earlier = api_tokens::list_for_user_client(
                conn,
                user_id,
                &client.row.identifier,
                crate::db::now(),
            )?
            .into_iter()
            .flat_map(|t| t.scopes)
            .collect();
            let owner_groups = match &client.resource {
                Resource::Server { owner_id, .. } => groups::for_user(conn, *owner_id)?
                    .into_iter()
                    .map(|g| g.name)
                    .collect(),
                Resource::Service { .. } => Vec::new(),
            };
            Ok(Facts {
                client: Some(client),
                role_names,
                earlier,
                owner_groups,
            })
        })
        .await
}

/// A request that passed every check.
struct Prepared {
    client: Client,
    request: AuthRequest,
    /// The scopes to grant (raw).
    scopes: BTreeSet<String>,
    /// Whether the user must confirm first.
    confirm: bool,
}

/// Runs the checks shared by GET and POST. `submitted`: the scopes of the confirmation form
/// (POST), which replace the request's `scope` parameter.
async fn prepare(
    state: &AppState,
    identity: &Identity,
    user: &users::User,
    params: &Params,
    submitted: Option<Vec<String>>,
) -> Result<Prepared, Refusal> {
    if let Some(name) = params.first_duplicate(&SINGLE_PARAMS) {
        return Err(Refusal::Page(
            StatusCode::BAD_REQUEST,
            format!("Duplicate {name} parameter."),
        ));
    }
    let client_id = params.get("client_id").unwrap_or_default().to_owned();
    let facts = if client_id.is_empty() {
        None
    } else {
        Some(
            load_facts(state, client_id, user)
                .await
                .map_err(|e| Refusal::db(&e))?,
        )
    };
    let client = facts.as_ref().and_then(|f| f.client.clone());
    let redirect_uri = check_client(params, client.as_ref().map(|c| c.row.redirect_uri.as_str()))
        .map_err(|message| Refusal::Page(StatusCode::BAD_REQUEST, message))?;
    let (Some(client), Some(facts)) = (client, facts) else {
        return Err(Refusal::Page(
            StatusCode::BAD_REQUEST,
            "Invalid client_id parameter value.".to_owned(),
        ));
    };
    let client_state = params.get("state").map(str::to_owned);
    let request = check_request(params, redirect_uri, state.config.hub.oauth_require_pkce)
        .map_err(|(error, redirect_uri)| Refusal::Redirect {
            redirect_uri,
            error,
            state: client_state.clone(),
        })?;
    let redirect = |error: RedirectError| Refusal::Redirect {
        redirect_uri: request.redirect_uri.clone(),
        error,
        state: client_state.clone(),
    };

    let required = client.required_scopes();
    let asked = submitted.or_else(|| request.scope.clone());
    let wanted = requested_scopes(
        &state.registry,
        &state.roles,
        asked.as_deref(),
        &client.row.allowed_scopes,
        &required,
    )
    .map_err(redirect)?;

    // The user must be able to reach what the client guards.
    let allowed = match &client.resource {
        Resource::Server { owner, server, .. } => identity.scopes.allows(
            "access:servers",
            &Target::Server {
                user: owner,
                server,
            },
            &UserGroups {
                user: owner,
                groups: &facts.owner_groups,
            },
        ),
        Resource::Service { name, .. } => {
            identity
                .scopes
                .allows("access:services", &Target::Service(name), &NoGroups)
        }
    };
    if !allowed {
        tracing::warn!(user = %user.name, client = %client.row.identifier, "oauth authorize: no access");
        return Err(Refusal::Page(
            StatusCode::FORBIDDEN,
            format!(
                "You do not have permission to access {}",
                client.row.description
            ),
        ));
    }

    // Cut the request down to what the user holds (raw scopes, as tokens store them).
    let mut have = state
        .roles
        .raw_scopes(facts.role_names.iter().map(String::as_str));
    have.insert("inherit".to_owned());
    have.extend(required.iter().cloned());
    let membership = identity.own_groups();
    let scopes = match resolve_requested_scopes(
        &state.registry,
        &wanted,
        &have,
        &user.name,
        Some(client.target()),
        &membership,
    ) {
        Ok((granted, refused)) => {
            if !refused.is_empty() {
                tracing::info!(
                    user = %user.name,
                    client = %client.row.identifier,
                    "oauth authorize: not granting scopes the user does not hold: {}",
                    refused.into_iter().collect::<Vec<_>>().join(" ")
                );
            }
            granted
        }
        Err(e) => {
            return Err(redirect(RedirectError::new("invalid_scope", e.to_string())));
        }
    };
    let (own, no_confirm) = match &client.resource {
        Resource::Server { owner_id, .. } => (*owner_id == user.id, false),
        Resource::Service { no_confirm, .. } => (false, *no_confirm),
    };
    let confirm = needs_confirmation(own, no_confirm, &facts.earlier, &scopes);
    Ok(Prepared {
        client,
        request,
        scopes,
        confirm,
    })
}

/// The user behind a login cookie.
fn logged_in_user(identity: Option<&Identity>) -> Option<&users::User> {
    match identity.map(|i| &i.principal) {
        Some(Principal::User(user)) => Some(user),
        _ => None,
    }
}

/// `GET /hub/api/oauth2/authorize`.
pub async fn get(
    State(state): State<AppState>,
    browser: Browser,
    RawQuery(query): RawQuery,
) -> Response {
    let (Some(identity), Some(user)) =
        (browser.user.as_ref(), logged_in_user(browser.user.as_ref()))
    else {
        let login = login_url(&state, Some(browser.path_and_query()));
        return browser.with_cookies(&state, found(&login));
    };
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let prepared = match prepare(&state, identity, user, &params, None).await {
        Ok(p) => p,
        Err(refusal) => return refusal.into_response(&state, &browser),
    };
    if !prepared.confirm {
        tracing::debug!(user = %user.name, client = %prepared.client.row.identifier, "oauth authorize without confirmation");
        return grant(&state, &browser, user, &prepared).await;
    }
    let shown: BTreeSet<String> = prepared
        .scopes
        .iter()
        .filter(|s| *s != IDENTIFY_SCOPE)
        .cloned()
        .collect();
    let descriptions = describe_scopes(
        &state.registry,
        &shown,
        &user.name,
        prepared.client.target(),
    );
    crate::web::render(
        &state,
        Some(&browser),
        StatusCode::OK,
        "oauth.html",
        context! {
            client_description => prepared.client.row.description.clone(),
            client_id => prepared.client.row.identifier.clone(),
            scope_descriptions => descriptions
                .into_iter()
                .map(|d| context! { scope => d.scope, description => d.description, filter => d.filter })
                .collect::<Vec<_>>(),
        },
    )
}

/// `POST /hub/api/oauth2/authorize`: the confirmation form (`_xsrf`, `scopes`…).
pub async fn post(
    State(state): State<AppState>,
    browser: Browser,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let (Some(identity), Some(user)) =
        (browser.user.as_ref(), logged_in_user(browser.user.as_ref()))
    else {
        return ErrorPage::new(StatusCode::FORBIDDEN)
            .message("You must be logged in to authorize an application.")
            .render(&state, Some(&browser));
    };
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let form = Params::parse(&body);
    let xsrf = form.get("_xsrf").or_else(|| params.get("_xsrf"));
    if let Err(halt) = browser.check_xsrf(&state, &headers, xsrf) {
        return halt.into_response();
    }
    let mut scopes: Vec<String> = form
        .all("scopes")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        // An explicitly empty selection means identification only, not the defaults.
        scopes.push(IDENTIFY_SCOPE.to_owned());
    }
    match prepare(&state, identity, user, &params, Some(scopes)).await {
        Ok(prepared) => grant(&state, &browser, user, &prepared).await,
        Err(refusal) => refusal.into_response(&state, &browser),
    }
}

/// Issues a code for `prepared` and sends the browser back to the client with it. The code is
/// bound to the browser's session id, which is created (and set as a cookie) if missing.
async fn grant(
    state: &AppState,
    browser: &Browser,
    user: &users::User,
    prepared: &Prepared,
) -> Response {
    let (session_id, new_session) = match &browser.session_id {
        Some(id) => (id.clone(), false),
        None => (tokens::new_session_id(), true),
    };
    let code = tokens::new_oauth_token();
    let digest = code_digest(&code);
    let now = Utc::now().naive_utc();
    let expires_at = now + CODE_LIFETIME;
    let user_id = user.id;
    let client_id = prepared.client.row.identifier.clone();
    let redirect_uri = prepared.request.redirect_uri.clone();
    let scopes: Vec<String> = prepared.scopes.iter().cloned().collect();
    let pkce = prepared.request.pkce.clone();
    let session = session_id.clone();
    let stored = state
        .db
        .transaction(move |conn| {
            oauth_codes::purge_expired(conn, now)?;
            oauth_codes::insert(
                conn,
                &NewOAuthCode {
                    code_hash: &digest,
                    client_id: &client_id,
                    user_id,
                    session_id: Some(&session),
                    redirect_uri: &redirect_uri,
                    scopes: &scopes,
                    code_challenge: pkce.as_ref().map(|(c, _)| c.as_str()),
                    code_challenge_method: pkce.as_ref().map(|(_, m)| m.as_str()),
                    expires_at,
                },
            )
        })
        .await;
    if let Err(e) = stored {
        return Refusal::db(&e).into_response(state, browser);
    }
    tracing::info!(user = %user.name, client = %prepared.client.row.identifier, "oauth code issued");
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = prepared.request.state.as_deref() {
        params.push(("state", s));
    }
    let location = add_query_params(&prepared.request.redirect_uri, &params);
    let mut resp = found(&location);
    if new_session {
        let base = state.config.hub.base_url.to_string();
        append_cookies(
            &mut resp,
            vec![set_cookie(
                SESSION_COOKIE,
                &session_id,
                &base,
                true,
                browser.secure(),
            )],
        );
    }
    browser.with_cookies(state, resp)
}
