//! The hub's XSRF rules (JupyterHub 4.1+, as in 6.1.1 `_xsrf_utils.py` and the `check_xsrf_cookie`
//! overrides of `handlers/base.py` and `apihandlers/base.py`), as pure functions:
//!
//! 1. [`xsrf_check_required`]: whether a request must carry a token at all. Token-authenticated
//!    requests never do; navigations and same-origin `no-cors` reads are exempt.
//! 2. [`submitted_xsrf_token`]: where the token comes from (`_xsrf` argument, `X-XSRFToken`,
//!    `X-CSRFToken`).
//! 3. The `_xsrf` cookie: URL-safe base64 (no padding) of a tornado v2 signed value named
//!    `_xsrf` whose payload is the *xsrf id*: `<session_id>:<cookie_id>` when logged in,
//!    `<session_id or None>:<anonymous id>` otherwise. A cookie only counts if its signature is
//!    valid (31 days) and its id is the one expected for this request ([`verify_xsrf`]).
//!
//! Error messages are JupyterHub's (403 `'_xsrf' argument missing from POST`, 403
//! `XSRF cookie does not match POST argument`).

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::identity::cookies::{
    XSRF_COOKIE, create_signed_value, decode_signed_value, parse_cookie_header,
};

/// How long a signed `_xsrf` value stays valid.
pub const XSRF_MAX_AGE: Duration = Duration::from_secs(31 * 86_400);

/// `Max-Age` of an anonymous `_xsrf` cookie (logged-in ones are session cookies).
pub const ANONYMOUS_XSRF_COOKIE_MAX_AGE_SECS: u32 = 3600;

/// Headers hashed into the anonymous id by default (`JUPYTERHUB_XSRF_ANONYMOUS_ID_HEADERS`).
pub const DEFAULT_ANONYMOUS_ID_HEADERS: &[&str] = &["User-Agent"];

// === when the check applies ===

/// Which kind of handler serves the request: API handlers check GETs too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerKind {
    /// Under `/hub/api`.
    Api,
    /// HTML pages (and other non-API handlers).
    Page,
}

/// How the request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestAuth {
    /// By an `Authorization` header token: never XSRF-checked.
    Token,
    /// By the hub login cookie.
    Cookie,
    /// Not authenticated.
    Anonymous,
}

/// The facts about a request that decide whether XSRF is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XsrfRequest<'a> {
    /// API or page handler.
    pub kind: HandlerKind,
    /// The HTTP method.
    pub method: &'a str,
    /// How the request was authenticated.
    pub auth: RequestAuth,
    /// Whether an `Origin` header is present.
    pub has_origin: bool,
    /// The `Sec-Fetch-Mode` header, if present.
    pub sec_fetch_mode: Option<&'a str>,
    /// The `Sec-Fetch-Site` header, if present.
    pub sec_fetch_site: Option<&'a str>,
}

fn is_read_only(method: &str) -> bool {
    ["GET", "HEAD", "OPTIONS"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
}

/// Whether the request must carry a matching XSRF token:
/// - never for HEAD/OPTIONS, nor for GET on pages;
/// - never when token-authenticated;
/// - not for unauthenticated API requests without `Origin` (nothing to protect, and answering
///   differently to cross-site requests would reveal whether credentials are present);
/// - not for websockets, for read-only navigations (or requests without `Sec-Fetch-Mode`), nor
///   for read-only same-origin `no-cors` requests (images). Cross-site `no-cors` form posts are
///   checked (CVE-2026-40864).
pub fn xsrf_check_required(req: &XsrfRequest<'_>) -> bool {
    let method = req.method;
    let exempt_method = match req.kind {
        HandlerKind::Api => ["HEAD", "OPTIONS"]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(method)),
        HandlerKind::Page => is_read_only(method),
    };
    if exempt_method || req.auth == RequestAuth::Token {
        return false;
    }
    if req.kind == HandlerKind::Api && req.auth == RequestAuth::Anonymous && !req.has_origin {
        return false;
    }
    let read_only = is_read_only(method);
    // JupyterHub reads a missing header as "unspecified" and treats both alike.
    let mode = req.sec_fetch_mode.unwrap_or("unspecified");
    let exempt = mode == "websocket"
        || (read_only && matches!(mode, "navigate" | "unspecified"))
        || (read_only && mode == "no-cors" && req.sec_fetch_site == Some("same-origin"));
    !exempt
}

/// Whether a cookie may authenticate this API request: a POST whose `Content-Type` is present
/// but not `application/json` is a possible cross-site form post, so its cookie is ignored
/// (`APIHandler.check_post_content_type`). Other methods are not affected.
pub fn cookie_auth_allowed(method: &str, content_type: Option<&str>) -> bool {
    if !method.eq_ignore_ascii_case("POST") {
        return true;
    }
    let Some(content_type) = content_type.filter(|c| !c.is_empty()) else {
        return true;
    };
    content_type
        .to_ascii_lowercase()
        .split(';')
        .any(|field| field.trim_start().starts_with("application/json"))
}

// === where the token comes from ===

/// The token a request submits: the `_xsrf` query or form argument (whitespace-trimmed, as
/// tornado's `get_argument` does), else `X-XSRFToken`, else `X-CSRFToken`. Empty values count
/// as absent.
pub fn submitted_xsrf_token<'a>(
    argument: Option<&'a str>,
    x_xsrf_token: Option<&'a str>,
    x_csrf_token: Option<&'a str>,
) -> Option<&'a str> {
    argument
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .or(x_xsrf_token.filter(|v| !v.is_empty()))
        .or(x_csrf_token.filter(|v| !v.is_empty()))
}

/// A failed XSRF check; always 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XsrfError {
    /// No token submitted.
    #[error("'_xsrf' argument missing from {method}")]
    Missing {
        /// The request method, as received.
        method: String,
    },
    /// A token was submitted but does not match a valid `_xsrf` cookie for this session.
    #[error("XSRF cookie does not match {} argument", .method.to_ascii_uppercase())]
    Mismatch {
        /// The request method, as received.
        method: String,
    },
}

/// Compares the submitted token with the one expected for this request (constant time).
pub fn check_xsrf_token(
    method: &str,
    submitted: Option<&str>,
    expected_token: &str,
) -> Result<(), XsrfError> {
    let Some(submitted) = submitted else {
        return Err(XsrfError::Missing {
            method: method.to_owned(),
        });
    };
    if bool::from(submitted.as_bytes().ct_eq(expected_token.as_bytes())) {
        Ok(())
    } else {
        Err(XsrfError::Mismatch {
            method: method.to_owned(),
        })
    }
}

// === xsrf ids ===

/// The xsrf id of a logged-in browser: `<session_id>:<cookie_id>`.
pub fn logged_in_xsrf_id(session_id: &str, cookie_id: &str) -> String {
    format!("{session_id}:{cookie_id}")
}

/// The xsrf id of an anonymous browser: `<session_id>:<anonymous_id>`. Without a session cookie
/// JupyterHub 6.1.1 writes the literal `None` (Python's `f"{None}"`); kept for compatibility.
pub fn anonymous_xsrf_id(session_id: Option<&str>, anonymous_id: &str) -> String {
    format!("{}:{anonymous_id}", session_id.unwrap_or("None"))
}

/// The anonymous id: URL-safe base64 (with padding) of SHA-256 over the client IP text, then
/// each configured header's value (`""` when missing) followed by a `0xff` byte. `client_ip` is
/// the address as text, already generalised by [`generalise_ip`] if CIDRs are configured.
pub fn anonymous_id(client_ip: &str, header_values: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(client_ip.as_bytes());
    for value in header_values {
        hasher.update(value.as_bytes());
        // A byte that never occurs in UTF-8 separates the fields.
        hasher.update([0xff]);
    }
    base64::engine::general_purpose::URL_SAFE.encode(hasher.finalize())
}

/// An IP network from `JUPYTERHUB_XSRF_ANONYMOUS_IP_CIDRS` (`;`-separated). Clients inside one
/// (typically proxies on a private network) are hashed as the network, not their own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpCidr {
    network: IpAddr,
    prefix: u8,
}

/// A CIDR that is malformed or has host bits set (as Python's strict `ip_network`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid network {0:?}")]
pub struct CidrError(pub String);

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn mask(width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        (u128::MAX << (128 - u32::from(prefix))) >> (128 - u32::from(width))
    }
}

impl IpCidr {
    /// Whether `ip` is inside this network (an IPv4 address is never inside an IPv6 network).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, width) = bits(self.network);
        let (addr, addr_width) = bits(ip);
        let m = mask(width, self.prefix);
        width == addr_width && addr & m == net & m
    }
}

impl FromStr for IpCidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || CidrError(text.to_owned());
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr.trim().parse().map_err(|_| err())?;
        let (net_bits, width) = bits(network);
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| err())?,
            None => width,
        };
        if prefix > width || net_bits & !mask(width, prefix) & mask(width, width) != 0 {
            return Err(err());
        }
        Ok(IpCidr { network, prefix })
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Parses `JUPYTERHUB_XSRF_ANONYMOUS_IP_CIDRS` (`;`-separated; empty means none).
pub fn parse_ip_cidrs(value: &str) -> Result<Vec<IpCidr>, CidrError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value.split(';').map(str::parse).collect()
}

/// The IP text hashed into the anonymous id: the first configured network containing the
/// client, else the client address unchanged (also when it does not parse).
pub fn generalise_ip<'a>(client_ip: &'a str, cidrs: &[IpCidr]) -> Cow<'a, str> {
    let Ok(ip) = client_ip.parse::<IpAddr>() else {
        return Cow::Borrowed(client_ip);
    };
    match cidrs.iter().find(|c| c.contains(ip)) {
        Some(cidr) => Cow::Owned(cidr.to_string()),
        None => Cow::Borrowed(client_ip),
    }
}

// === the _xsrf token and cookie ===

// Accepts tokens with or without padding, as JupyterHub re-pads before decoding.
const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The `_xsrf` token (and cookie value) for an xsrf id, signed at `now` (Unix seconds).
pub fn create_xsrf_token(secret: &[u8], xsrf_id: &str, now: i64) -> String {
    URL_SAFE_NO_PAD.encode(create_signed_value(
        secret,
        XSRF_COOKIE,
        xsrf_id.as_bytes(),
        now,
    ))
}

/// The xsrf id inside a token, if its signature is valid and it is under 31 days old.
pub fn decode_xsrf_token(secret: &[u8], token: &str, now: i64) -> Option<Vec<u8>> {
    let signed = URL_SAFE_ANY_PAD.decode(token).ok()?;
    let signed = String::from_utf8(signed).ok()?;
    decode_signed_value(secret, XSRF_COOKIE, &signed, XSRF_MAX_AGE, now).ok()
}

/// A valid `_xsrf` cookie: its raw value (the token) and the xsrf id it carries.
#[derive(Clone, PartialEq, Eq)]
pub struct XsrfCookie {
    /// The cookie value as sent, which is also the token pages embed.
    pub token: String,
    /// The decoded xsrf id.
    pub id: Vec<u8>,
}

// The token is a bearer secret for the XSRF check; keep it out of logs.
impl fmt::Debug for XsrfCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XsrfCookie")
            .field("id", &String::from_utf8_lossy(&self.id))
            .finish_non_exhaustive()
    }
}

/// The first `_xsrf` cookie in a `Cookie` header with a valid signature. Browsers may send
/// several (set on different paths) in no reliable order; signatures decide.
pub fn find_xsrf_cookie(secret: &[u8], cookie_header: &str, now: i64) -> Option<XsrfCookie> {
    parse_cookie_header(cookie_header)
        .into_iter()
        .filter(|(name, _)| name == XSRF_COOKIE)
        .find_map(|(_, token)| {
            decode_xsrf_token(secret, &token, now).map(|id| XsrfCookie { token, id })
        })
}

/// The token a page should embed, and whether to (re)set the `_xsrf` cookie.
#[derive(Clone, PartialEq, Eq)]
pub struct XsrfToken {
    /// The token for forms, `window.jhdata.xsrf_token` and the cookie.
    pub token: String,
    /// Whether the response should set the `_xsrf` cookie to `token`.
    pub set_cookie: bool,
}

impl fmt::Debug for XsrfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XsrfToken")
            .field("set_cookie", &self.set_cookie)
            .finish_non_exhaustive()
    }
}

/// The token for this request: the cookie's, if it carries the expected id; otherwise a new
/// one, which is sent as a cookie only on navigations (`Sec-Fetch-Mode: navigate` or absent),
/// never on API fetches. Mirrors `get_xsrf_token`.
pub fn xsrf_token_for_request(
    secret: &[u8],
    cookie: Option<&XsrfCookie>,
    expected_id: &str,
    sec_fetch_mode: Option<&str>,
    now: i64,
) -> XsrfToken {
    match cookie {
        Some(cookie) if cookie.id == expected_id.as_bytes() => XsrfToken {
            token: cookie.token.clone(),
            set_cookie: false,
        },
        _ => XsrfToken {
            token: create_xsrf_token(secret, expected_id, now),
            set_cookie: sec_fetch_mode.unwrap_or("navigate") == "navigate",
        },
    }
}

/// The whole check for a request that needs one ([`xsrf_check_required`]): a token must be
/// submitted, and it must equal a valid `_xsrf` cookie carrying the expected id.
pub fn verify_xsrf(
    secret: &[u8],
    cookie_header: Option<&str>,
    expected_id: &str,
    method: &str,
    submitted: Option<&str>,
    now: i64,
) -> Result<(), XsrfError> {
    let expected = cookie_header
        .and_then(|header| find_xsrf_cookie(secret, header, now))
        .filter(|cookie| cookie.id == expected_id.as_bytes());
    match expected {
        Some(cookie) => check_xsrf_token(method, submitted, &cookie.token),
        // No usable cookie: nothing the client can submit matches, but a missing token is
        // still reported as missing.
        None => match submitted {
            None => check_xsrf_token(method, None, ""),
            Some(_) => Err(XsrfError::Mismatch {
                method: method.to_owned(),
            }),
        },
    }
}

#[cfg(test)]
mod tests;
