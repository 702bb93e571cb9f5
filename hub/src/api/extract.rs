//! Extractors of the REST API: who is calling ([`Caller`], [`MaybeCaller`]) and JSON bodies
//! ([`ApiJson`]), with JupyterHub's rejections.
//!
//! Credentials, in order: `Authorization: token|bearer <t>` (never XSRF-checked), then the
//! `jupyterhub-hub-login` cookie, which is subject to JupyterHub's XSRF rules and ignored on
//! POSTs whose `Content-Type` is not JSON.

use axum::extract::{FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use chrono::Utc;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE};
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::access::{self, Identity};
use crate::db::DbError;
use crate::db::models::{api_tokens, users};
use crate::error::{ApiError, ApiResult};
use crate::identity::cookies::{self, HUB_LOGIN_COOKIE, SESSION_COOKIE};
use crate::identity::{tokens, xsrf};
use crate::rbac::{Access, GroupMembership, Target};
use crate::state::AppState;

/// Token and user activity is written at most this often per token (`activity_resolution`).
const ACTIVITY_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// Maps database failures to API errors: unavailable → 503, anything else → 500.
pub fn db_error(e: DbError) -> ApiError {
    match e {
        DbError::Unavailable(_) | DbError::Busy(_) => {
            tracing::error!("database unavailable: {e}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database is unavailable; try again shortly.",
            )
        }
        other => ApiError::internal(other),
    }
}

/// The caller, if the request carries a valid credential.
#[derive(Debug, Clone)]
pub struct MaybeCaller(pub Option<Identity>);

/// The caller; requests without a valid credential get 403 `Missing or invalid credentials.`
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl std::ops::Deref for Caller {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        &self.0
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        match MaybeCaller::from_request_parts(parts, state).await?.0 {
            Some(identity) => Ok(Self(identity)),
            None => Err(ApiError::forbidden(
                crate::rbac::scope_set::MISSING_CREDENTIALS_MESSAGE,
            )),
        }
    }
}

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        if let Some(token) = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(tokens::parse_authorization)
        {
            if let Some(identity) = state.identities.get(token) {
                return Ok(Self(Some(identity)));
            }
            let generation = state.identities.generation();
            let token = token.to_owned();
            let st = state.clone();
            let resolved = state
                .db
                .run(move |conn| {
                    let identity = access::resolve_token(&st, conn, &token)?;
                    if let Some(identity) = &identity {
                        record_token_activity(conn, identity)?;
                    }
                    Ok(identity.map(|identity| (token, identity)))
                })
                .await
                .map_err(db_error)?;
            if let Some((token, identity)) = resolved {
                state.identities.put(&token, identity.clone(), generation);
                return Ok(Self(Some(identity)));
            }
        }
        cookie_identity(parts, state).await.map(Self)
    }
}

fn record_token_activity(
    conn: &mut crate::db::DbConnection,
    identity: &Identity,
) -> diesel::QueryResult<()> {
    let Some(token) = &identity.token else {
        return Ok(());
    };
    let now = Utc::now().naive_utc();
    if token
        .last_activity
        .is_some_and(|t| now - t < ACTIVITY_RESOLUTION)
    {
        return Ok(());
    }
    api_tokens::touch(conn, token.id, now)?;
    // A server's own token reports activity through the activity endpoint instead.
    if let access::Principal::User(user) = &identity.principal
        && !token.note.starts_with("Server at ")
    {
        users::touch_last_activity(conn, user.id, now)?;
    }
    Ok(())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn cookie_identity(parts: &Parts, state: &AppState) -> ApiResult<Option<Identity>> {
    let Some(cookie_header) = header(&parts.headers, COOKIE.as_str()) else {
        return Ok(None);
    };
    let Some(signed) = cookies::get_cookie(cookie_header, HUB_LOGIN_COOKIE) else {
        return Ok(None);
    };
    let now = Utc::now().timestamp();
    let max_age = state.config.hub.cookie_max_age_days.duration();
    let Ok(cookie_id) = cookies::decode_signed_value(
        state.cookie_secret.as_bytes(),
        HUB_LOGIN_COOKIE,
        &signed,
        max_age,
        now,
    ) else {
        return Ok(None);
    };
    let Ok(cookie_id) = String::from_utf8(cookie_id) else {
        return Ok(None);
    };
    let method = parts.method.as_str();
    // Cookie-authenticated posts must be JSON (or say nothing): a form post from another site
    // cannot then ride on the cookie.
    if !xsrf::cookie_auth_allowed(method, header(&parts.headers, CONTENT_TYPE.as_str())) {
        return Ok(None);
    }
    let st = state.clone();
    let lookup_id = cookie_id.clone();
    let identity = state
        .db
        .run(move |conn| access::resolve_cookie_user(&st, conn, &lookup_id))
        .await
        .map_err(db_error)?;
    let Some(identity) = identity else {
        return Ok(None);
    };

    let request = xsrf::XsrfRequest {
        kind: xsrf::HandlerKind::Api,
        method,
        auth: xsrf::RequestAuth::Cookie,
        has_origin: parts.headers.contains_key(http::header::ORIGIN),
        sec_fetch_mode: header(&parts.headers, "sec-fetch-mode"),
        sec_fetch_site: header(&parts.headers, "sec-fetch-site"),
    };
    if xsrf::xsrf_check_required(&request) {
        let argument = parts.uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "_xsrf")
                .map(|(_, v)| v.into_owned())
        });
        let submitted = xsrf::submitted_xsrf_token(
            argument.as_deref(),
            header(&parts.headers, "x-xsrftoken"),
            header(&parts.headers, "x-csrftoken"),
        );
        let session_id = cookies::get_cookie(cookie_header, SESSION_COOKIE).unwrap_or_default();
        let expected = xsrf::logged_in_xsrf_id(&session_id, &cookie_id);
        xsrf::verify_xsrf(
            state.cookie_secret.as_bytes(),
            Some(cookie_header),
            &expected,
            method,
            submitted,
            now,
        )
        .map_err(|e| ApiError::forbidden(e.to_string()))?;
    }
    Ok(Some(identity))
}

/// Checks that `caller` holds one of `scopes` for `target`: 403 when they hold none in any
/// form, 404 when they hold one only for other resources (JupyterHub's rules).
///
/// # Errors
/// The refusal, as an API error.
pub fn require(
    caller: &Identity,
    scopes: &[&str],
    target: &Target<'_>,
    membership: &(impl GroupMembership + ?Sized),
) -> ApiResult<()> {
    match caller.scopes.check(scopes, target, membership) {
        Access::Allowed => Ok(()),
        refused => Err(ApiError {
            status: StatusCode::from_u16(refused.status()).unwrap_or(StatusCode::FORBIDDEN),
            message: refused.message(),
            headers: Vec::new(),
        }),
    }
}

/// A JSON request body; an empty body is `None`. Malformed JSON gets JupyterHub's 400.
#[derive(Debug)]
pub struct ApiJson<T>(pub Option<T>);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> ApiResult<Self> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
            } else {
                ApiError::bad_request(format!("Could not read the request body: {e}"))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| ApiError::bad_request("Invalid JSON in body of request"))?;
        if value.is_null() {
            return Ok(Self(None));
        }
        serde_json::from_value(value)
            .map(|v| Self(Some(v)))
            .map_err(|e| ApiError::bad_request(format!("Invalid JSON in body of request: {e}")))
    }
}

/// The last value of query argument `name`, whitespace-trimmed (tornado's `get_argument`).
pub fn query_arg(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == name)
        .last()
        .map(|(_, v)| v.trim().to_owned())
}
