//! The REST API: `GET/POST/DELETE /api/routes[/<prefix>]`, as configurable-http-proxy's.
//!
//! Differences, each a fix: the token is checked (in constant time, with an anchored
//! `token <t>` header) before the body is read; bodies are capped at [`MAX_BODY`] (413);
//! malformed `%` escapes get 400 and `DELETE /api/routes` deletes the root route, where
//! configurable-http-proxy never answers; targets must be http(s) or http+unix URLs.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::Shared;
use crate::metrics::inc;
use crate::routes::{Route, Target, key_segments, normalize_key};

/// Largest accepted request body.
pub const MAX_BODY: usize = 1024 * 1024;

const ROUTES: &str = "/api/routes";

/// The per-connection service of the API port.
#[derive(Debug, Clone)]
pub struct ApiService {
    pub shared: Arc<Shared>,
}

impl hyper::service::Service<Request<Incoming>> for ApiService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let method = req.method().clone();
            let path = req.uri().path().to_owned();
            let (resp, note) = handle(&shared, req).await;
            let status = resp.status().as_u16();
            shared.metrics.api_status(status);
            if status >= 400 {
                tracing::warn!("{status} {method} {path} {note}");
            } else {
                tracing::info!("{status} {method} {path} {note}");
            }
            Ok(resp)
        })
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let body = body.into();
    let mut resp = Response::new(Full::new(body.clone()));
    *resp.status_mut() = status;
    if !body.is_empty() {
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    resp
}

fn json(body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Checks `Authorization: token <t>` against the configured token, in constant time.
pub fn authorized(expected: Option<&str>, header: Option<&HeaderValue>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let Some(value) = header.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let mut parts = value.split_ascii_whitespace();
    let (Some(scheme), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(hub_api::chp::AUTH_SCHEME)
        && bool::from(token.as_bytes().ct_eq(expected.as_bytes()))
}

/// Strict percent-decoding: every `%` must start a valid escape and the result must be UTF-8.
fn decode_path(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if !(bytes.len() > i + 2
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit())
            {
                return None;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> (Response<Full<Bytes>>, String) {
    let path = req.uri().path();
    let Some(rest) = path
        .strip_prefix(ROUTES)
        .filter(|r| r.is_empty() || r.starts_with('/'))
    else {
        return (text(StatusCode::NOT_FOUND, "Not Found"), String::new());
    };
    let method = req.method().clone();
    if ![Method::GET, Method::POST, Method::DELETE].contains(&method) {
        return (
            text(StatusCode::METHOD_NOT_ALLOWED, "Method not supported"),
            String::new(),
        );
    }
    if !authorized(
        shared.auth_token.as_deref(),
        req.headers().get(AUTHORIZATION),
    ) {
        return (text(StatusCode::FORBIDDEN, ""), String::new());
    }
    let Some(decoded) = decode_path(rest) else {
        return (
            text(
                StatusCode::BAD_REQUEST,
                "Invalid percent-encoding in the route path",
            ),
            String::new(),
        );
    };
    match method {
        Method::GET if decoded.is_empty() || decoded == "/" => list(shared, &req),
        Method::GET => {
            let key = normalize_key(&decoded);
            match shared.routes.get(&key) {
                Some(route) => {
                    let mut body = String::with_capacity(256);
                    route.write_json(&mut body);
                    (json(body), String::new())
                }
                None => (text(StatusCode::NOT_FOUND, ""), String::new()),
            }
        }
        Method::POST => add(shared, normalize_key(&decoded), req).await,
        _ => {
            let key = normalize_key(&decoded);
            inc(&shared.metrics.api_route_delete);
            if shared.routes.remove(&key) {
                (
                    text(StatusCode::NO_CONTENT, ""),
                    format!("Removed route {key}"),
                )
            } else {
                (text(StatusCode::NOT_FOUND, ""), format!("No route {key}"))
            }
        }
    }
}

fn list(shared: &Shared, req: &Request<Incoming>) -> (Response<Full<Bytes>>, String) {
    let mut inactive_since = None;
    let mut camel = None;
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match &*k {
            "inactive_since" => inactive_since = Some(v.into_owned()),
            "inactiveSince" => camel = Some(v.into_owned()),
            _ => {}
        }
    }
    let cutoff = match camel.or(inactive_since) {
        None => None,
        Some(v) => match crate::time::parse_datestamp(&v) {
            Some(ms) => Some(ms),
            None => {
                return (
                    text(
                        StatusCode::BAD_REQUEST,
                        format!("Invalid datestamp '{v}' must be ISO8601."),
                    ),
                    String::new(),
                );
            }
        },
    };
    let body = shared.routes.list_json(cutoff);
    inc(&shared.metrics.api_route_get);
    (json(body), String::new())
}

async fn add(
    shared: &Shared,
    key: String,
    req: Request<Incoming>,
) -> (Response<Full<Bytes>>, String) {
    let too_large = || {
        (
            text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Body larger than {MAX_BODY} bytes"),
            ),
            String::new(),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return too_large(),
        Err(e) => {
            return (
                text(
                    StatusCode::BAD_REQUEST,
                    format!("Body could not be read: {e}"),
                ),
                String::new(),
            );
        }
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return (
                text(StatusCode::BAD_REQUEST, format!("Body not valid JSON: {e}")),
                String::new(),
            );
        }
    };
    // `null` counts as an empty object; arrays and scalars have no `target` either.
    let mut data = match value {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let Some(target_raw) = data
        .get("target")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return (
            text(StatusCode::BAD_REQUEST, "Must specify 'target' as string"),
            String::new(),
        );
    };
    let target = match Target::parse(&target_raw) {
        Ok(t) => t,
        Err(e) => return (text(StatusCode::BAD_REQUEST, e.to_string()), String::new()),
    };
    data.remove("last_activity");
    if shared.options.host_routing
        && key != "/"
        && let Some(host) = key_segments(&key).next()
    {
        data.insert("host".to_owned(), Value::String(host.to_owned()));
    }
    let serialized = match serde_json::to_string(&data) {
        Ok(s) => s,
        Err(e) => {
            return (
                text(StatusCode::BAD_REQUEST, format!("Body not valid JSON: {e}")),
                String::new(),
            );
        }
    };
    tracing::info!("Adding route {key} -> {target_raw}");
    shared
        .routes
        .insert(Route::new(key.clone().into(), target, serialized.into()));
    inc(&shared.metrics.api_route_add);
    tracing::info!("Route added {key} -> {target_raw}");
    (text(StatusCode::CREATED, ""), String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_header_rules() {
        let t = Some("secret");
        let h = |v: &'static str| Some(HeaderValue::from_static(v));
        assert!(authorized(t, h("token secret").as_ref()));
        assert!(authorized(t, h("Token secret").as_ref()));
        assert!(authorized(t, h("token   secret ").as_ref()));
        assert!(!authorized(t, h("xtoken secret").as_ref()));
        assert!(!authorized(t, h("token secret extra").as_ref()));
        assert!(!authorized(t, h("Bearer secret").as_ref()));
        assert!(!authorized(t, h("token secre").as_ref()));
        assert!(!authorized(t, None));
        assert!(authorized(None, None));
    }

    #[test]
    fn strict_decoding() {
        assert_eq!(
            decode_path("/user/foo%40bar").as_deref(),
            Some("/user/foo@bar")
        );
        assert_eq!(decode_path("/a%2Fb").as_deref(), Some("/a/b"));
        assert_eq!(decode_path("/%C3%BC").as_deref(), Some("/ü"));
        assert_eq!(decode_path("/%"), None);
        assert_eq!(decode_path("/%zz"), None);
        assert_eq!(decode_path("/%4"), None);
        assert_eq!(decode_path("/%ff"), None);
    }
}
