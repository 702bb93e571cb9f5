//! `POST /hub/api/oauth2/token`: a client redeems an authorization code for an access token
//! (the `authorization_code` grant; there are no refresh tokens). Parameters come from the
//! form body or the query string; client credentials are `client_id` and `client_secret`
//! parameters (no HTTP Basic). Every reply is JSON with `Cache-Control: no-store` and
//! `Pragma: no-cache` (hub-protocol §4.3).
//!
//! Order of checks, as oauthlib makes them: duplicated parameters, `grant_type`, `code`
//! present, client credentials (401), the code (unknown, expired, used, or another client's:
//! `invalid_grant`), PKCE, the redirect URI. A code is used up only by a successful exchange,
//! so a request that forgot its PKCE verifier can be repeated.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use http::header::{CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde::Serialize;

use super::{Client, Params, code_digest, load_client, verify_pkce};
use crate::db::DbError;
use crate::db::models::api_tokens::{self, NewApiToken, TokenOwner};
use crate::db::models::oauth_codes::{self, OAuthCode};
use crate::identity::tokens::{self, HashedToken};
use crate::state::AppState;

/// The only grant type supported.
pub const AUTHORIZATION_CODE: &str = "authorization_code";

/// Parameters that may appear at most once.
const SINGLE_PARAMS: [&str; 3] = ["client_id", "grant_type", "redirect_uri"];

/// An error reply: `{"error": …, "error_description": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    /// HTTP status (400, or 401 for client authentication).
    pub status: StatusCode,
    /// The `error` code.
    pub error: &'static str,
    /// The `error_description`, if any.
    pub description: Option<&'static str>,
}

impl TokenError {
    const fn new(
        status: StatusCode,
        error: &'static str,
        description: Option<&'static str>,
    ) -> Self {
        Self {
            status,
            error,
            description,
        }
    }

    /// `invalid_request` with a description.
    pub const fn invalid_request(description: &'static str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some(description),
        )
    }

    /// `invalid_grant`: the code is unknown, expired, used, another client's, or its PKCE
    /// verifier is wrong.
    pub const INVALID_GRANT: Self = Self::new(StatusCode::BAD_REQUEST, "invalid_grant", None);

    /// `invalid_client`: unknown client or wrong secret.
    pub const INVALID_CLIENT: Self = Self::new(StatusCode::UNAUTHORIZED, "invalid_client", None);

    /// `unsupported_grant_type`.
    pub const UNSUPPORTED_GRANT_TYPE: Self =
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", None);

    fn db(e: &DbError) -> Self {
        match e {
            DbError::Unavailable(_) | DbError::Busy(_) => {
                tracing::error!("oauth token: database unavailable: {e}");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    None,
                )
            }
            other => {
                tracing::error!("oauth token: {other}");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None)
            }
        }
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'static str>,
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenReply {
    /// The new access token.
    pub access_token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// The granted raw scopes, space-separated.
    pub scope: String,
}

fn no_store(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let mut resp = no_store(
            (
                self.status,
                Json(ErrorBody {
                    error: self.error,
                    error_description: self.description,
                }),
            )
                .into_response(),
        );
        if self.status == StatusCode::UNAUTHORIZED
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer error=\"{}\"", self.error))
        {
            resp.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// `OPTIONS`: 200 with an empty body, as on every API endpoint.
pub async fn options() -> StatusCode {
    StatusCode::OK
}

/// `POST /hub/api/oauth2/token`.
pub async fn post(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut params = Params::parse(query.unwrap_or_default().as_bytes());
    params.extend(Params::parse(&body));
    match exchange(&state, &params).await {
        Ok(reply) => no_store(Json(reply).into_response()),
        Err(e) => {
            tracing::info!(error = e.error, "oauth token request refused");
            e.into_response()
        }
    }
}

/// The checks that need no database: duplicates, `grant_type`, `code`. Returns the code.
///
/// # Errors
/// The reply for the client.
pub fn check_params(params: &Params) -> Result<&str, TokenError> {
    if let Some(name) = params.first_duplicate(&SINGLE_PARAMS) {
        return Err(TokenError::invalid_request(match name {
            "client_id" => "Duplicate client_id parameter.",
            "grant_type" => "Duplicate grant_type parameter.",
            _ => "Duplicate redirect_uri parameter.",
        }));
    }
    if params.get("grant_type") != Some(AUTHORIZATION_CODE) {
        return Err(TokenError::UNSUPPORTED_GRANT_TYPE);
    }
    params
        .get("code")
        .ok_or(TokenError::invalid_request("Missing code parameter."))
}

/// The checks of a stored code against the request, once the client is authenticated: PKCE,
/// then the redirect URI (`given`, else the client's; it must be the one the code was issued
/// for, and still the client's).
///
/// # Errors
/// The reply for the client; the code must then be left unused.
pub fn check_code(
    code: &OAuthCode,
    client: &Client,
    verifier: Option<&str>,
    given_redirect_uri: Option<&str>,
    require_pkce: bool,
) -> Result<(), TokenError> {
    match (&code.code_challenge, verifier) {
        (Some(_), None) => return Err(TokenError::invalid_request("Code verifier required.")),
        (Some(challenge), Some(verifier)) => {
            let method = code.code_challenge_method.as_deref().unwrap_or("plain");
            if !verify_pkce(method, challenge, verifier) {
                return Err(TokenError::INVALID_GRANT);
            }
        }
        (None, None) if require_pkce => {
            return Err(TokenError::invalid_request("Code verifier required."));
        }
        (None, Some(_)) if require_pkce => return Err(TokenError::INVALID_GRANT),
        (None, _) => {}
    }
    let redirect_uri = given_redirect_uri.unwrap_or(&client.row.redirect_uri);
    if redirect_uri != code.redirect_uri || redirect_uri != client.row.redirect_uri {
        return Err(TokenError::invalid_request("Mismatching redirect URI."));
    }
    Ok(())
}

/// Whether `secret` is the client's secret. Empty secrets never match, and secrets longer than
/// any token are refused before the (deliberately slow) hash.
fn client_secret_matches(client: &Client, secret: Option<&str>) -> bool {
    let Some(secret) = secret else {
        return false;
    };
    !client.row.secret.is_empty()
        && tokens::is_candidate(secret)
        && tokens::verify_token(&client.row.secret, secret)
}

async fn exchange(state: &AppState, params: &Params) -> Result<TokenReply, TokenError> {
    let code = check_params(params)?.to_owned();
    let Some(client_id) = params.get("client_id").map(str::to_owned) else {
        return Err(TokenError::INVALID_CLIENT);
    };
    let secret = params.get("client_secret").map(str::to_owned);
    let verifier = params.get("code_verifier").map(str::to_owned);
    let redirect_uri = params.get("redirect_uri").map(str::to_owned);
    let require_pkce = state.config.hub.oauth_require_pkce;
    let digest = code_digest(&code);

    // Authenticate the client and check the code without using it up.
    let lookup_id = client_id.clone();
    let lookup_digest = digest.clone();
    let checked = state
        .db
        .run(move |conn| {
            let Some(client) = load_client(conn, &lookup_id)? else {
                return Ok(Err(TokenError::INVALID_CLIENT));
            };
            if !client_secret_matches(&client, secret.as_deref()) {
                tracing::warn!(client = %lookup_id, "oauth token: client authentication failed");
                return Ok(Err(TokenError::INVALID_CLIENT));
            }
            let now = Utc::now().naive_utc();
            let Some(code) = oauth_codes::find_valid(conn, &lookup_digest, &lookup_id, now)? else {
                return Ok(Err(TokenError::INVALID_GRANT));
            };
            Ok(check_code(
                &code,
                &client,
                verifier.as_deref(),
                redirect_uri.as_deref(),
                require_pkce,
            ))
        })
        .await
        .map_err(|e| TokenError::db(&e))?;
    checked?;

    // Redeem the code (at most once, even against a concurrent request) and issue the token.
    let lifetime = state.config.hub.oauth_token_lifetime();
    let expires_in = lifetime.as_secs();
    let access_token = tokens::new_oauth_token();
    let hashed = HashedToken::new(&access_token, tokens::GENERATED_ROUNDS).to_string();
    let prefix = tokens::token_prefix(&access_token).to_owned();
    let issued = state
        .db
        .transaction(move |conn| {
            let now = Utc::now().naive_utc();
            let Some(code) = oauth_codes::take(conn, &digest, &client_id, now)? else {
                return Ok(None);
            };
            let expires_at = chrono::TimeDelta::from_std(lifetime)
                .ok()
                .and_then(|d| now.checked_add_signed(d));
            api_tokens::insert(
                conn,
                &NewApiToken {
                    prefix: &prefix,
                    hashed: &hashed,
                    owner: TokenOwner::User(code.user_id),
                    spawner_id: None,
                    client_id: &client_id,
                    session_id: code.session_id.as_deref(),
                    note: "",
                    scopes: &code.scopes,
                    expires_at,
                },
            )?;
            tracing::info!(client = %client_id, user_id = code.user_id, "oauth token issued");
            Ok(Some(code.scopes))
        })
        .await
        .map_err(|e| TokenError::db(&e))?;
    let Some(scopes) = issued else {
        return Err(TokenError::INVALID_GRANT);
    };
    Ok(TokenReply {
        access_token,
        expires_in,
        token_type: "Bearer",
        scope: scopes.join(" "),
    })
}
