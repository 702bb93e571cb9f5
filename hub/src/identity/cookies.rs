//! Tornado v2 signed values (what JupyterHub puts in the `jupyterhub-hub-login` cookie and signs
//! for `_xsrf`), plus quoting and parsing of cookie values the way tornado and Python's
//! `http.cookies` do. The cookie secret is an input; loading it is done elsewhere.
//!
//! A signed value reads
//! `2|1:0|<len>:<timestamp>|<len>:<name>|<len>:<base64(value)>|<hex hmac-sha256>`: every field is
//! length-prefixed, the signature covers everything up to and including the last `|`, and the
//! value is standard base64 with padding. Values are signed, not encrypted.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The hub login cookie; its value is the user's signed `cookie_id`.
pub const HUB_LOGIN_COOKIE: &str = "jupyterhub-hub-login";

/// The browser session id cookie (plain `uuid4().hex`, not signed).
pub const SESSION_COOKIE: &str = "jupyterhub-session-id";

/// The XSRF cookie.
pub const XSRF_COOKIE: &str = "_xsrf";

/// How long the hub accepts its login cookie (`cookie_max_age_days`, default 14).
pub const HUB_LOGIN_MAX_AGE: Duration = Duration::from_secs(14 * 86_400);

type HmacSha256 = Hmac<Sha256>;

fn signature(secret: &[u8], signed_part: &[u8]) -> String {
    // HMAC accepts keys of any length; the error case cannot happen.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
    };
    mac.update(signed_part);
    hex::encode(mac.finalize().into_bytes())
}

fn push_field(out: &mut String, field: &str) {
    out.push_str(&field.len().to_string());
    out.push(':');
    out.push_str(field);
    out.push('|');
}

/// Signs `value` under `name` at `timestamp` (Unix seconds) with key version 0, as tornado's
/// `create_signed_value` (version 2) does.
pub fn create_signed_value(secret: &[u8], name: &str, value: &[u8], timestamp: i64) -> String {
    let mut out = String::from("2|");
    push_field(&mut out, "0");
    push_field(&mut out, &timestamp.to_string());
    push_field(&mut out, name);
    push_field(&mut out, &STANDARD.encode(value));
    let sig = signature(secret, out.as_bytes());
    out.push_str(&sig);
    out
}

/// Why a signed value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignedValueError {
    /// Not a version 2 value, or a field is not length-prefixed correctly.
    #[error("malformed signed value")]
    Malformed,
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
    /// Signed for another name.
    #[error("signed for a different name")]
    WrongName,
    /// Older than the maximum age.
    #[error("signed value expired")]
    Expired,
    /// The value is not valid base64.
    #[error("invalid base64 in signed value")]
    BadValue,
}

// One `<len>:<bytes>|` field; returns the field and the rest after its `|`.
fn take_field(input: &str) -> Result<(&str, &str), SignedValueError> {
    let (len, rest) = input.split_once(':').ok_or(SignedValueError::Malformed)?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignedValueError::Malformed);
    }
    let len: usize = len.parse().map_err(|_| SignedValueError::Malformed)?;
    let field = rest.get(..len).ok_or(SignedValueError::Malformed)?;
    let rest = rest
        .get(len..)
        .and_then(|r| r.strip_prefix('|'))
        .ok_or(SignedValueError::Malformed)?;
    Ok((field, rest))
}

/// Checks and decodes a version 2 signed value made for `name`. Values signed more than
/// `max_age` before `now` (Unix seconds) are refused; as in tornado, future timestamps are not.
/// The signature is compared in constant time, before anything else about the value is trusted.
pub fn decode_signed_value(
    secret: &[u8],
    name: &str,
    signed: &str,
    max_age: Duration,
    now: i64,
) -> Result<Vec<u8>, SignedValueError> {
    let body = signed
        .strip_prefix("2|")
        .ok_or(SignedValueError::Malformed)?;
    let (_key_version, rest) = take_field(body)?;
    let (timestamp, rest) = take_field(rest)?;
    let (signed_name, rest) = take_field(rest)?;
    let (value, passed_sig) = take_field(rest)?;

    let signed_part = &signed[..signed.len() - passed_sig.len()];
    let expected = signature(secret, signed_part.as_bytes());
    if !bool::from(passed_sig.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(SignedValueError::BadSignature);
    }
    if signed_name != name {
        return Err(SignedValueError::WrongName);
    }
    let timestamp: i64 = timestamp.parse().map_err(|_| SignedValueError::Malformed)?;
    if (timestamp as f64) < now as f64 - max_age.as_secs_f64() {
        return Err(SignedValueError::Expired);
    }
    STANDARD
        .decode(value)
        .map_err(|_| SignedValueError::BadValue)
}

// === cookie value quoting ===

// Python's `http.cookies` legal value characters; anything else makes the value quoted.
fn is_legal_cookie_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~:".contains(c)
}

/// Quotes a cookie value as Python's `http.cookies` does for `Set-Cookie`: unchanged if every
/// character is legal, otherwise wrapped in double quotes with `"` and `\` backslash-escaped and
/// control and Latin-1 bytes written as `\ooo`. Signed values get quoted because of `=`/`/`.
pub fn quote_cookie_value(value: &str) -> Cow<'_, str> {
    if value.chars().all(is_legal_cookie_char) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{ff}' => {
                out.push_str(&format!("\\{:03o}", u32::from(c)));
            }
            _ => out.push(c),
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// Undoes cookie quoting: a value wrapped in double quotes loses them, and `\ooo` (octal, up to
/// `\377`) and `\<char>` escapes are resolved. Unquoted values are returned unchanged (tornado's
/// `_unquote_cookie`).
pub fn unquote_cookie_value(value: &str) -> Cow<'_, str> {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return Cow::Borrowed(value);
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        // Python's pattern is `\\[0-3][0-7][0-7]`: at most \377.
        let octal: String = chars.clone().take(3).collect();
        let digits = octal.as_bytes();
        if digits.len() == 3
            && (b'0'..=b'3').contains(&digits[0])
            && digits[1..].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            if let Some(decoded) = u32::from_str_radix(&octal, 8).ok().and_then(char::from_u32) {
                out.push(decoded);
            }
            for _ in 0..3 {
                chars.next();
            }
        } else if let Some(next) = chars.next() {
            out.push(next);
        } else {
            out.push('\\');
        }
    }
    Cow::Owned(out)
}

/// Splits a `Cookie` header into `(name, value)` pairs in order, with values unquoted (tornado's
/// `parse_cookie`): chunks are separated by `;`, a chunk without `=` has an empty name, and
/// names and values are trimmed.
pub fn parse_cookie_header(header: &str) -> Vec<(String, String)> {
    header
        .split(';')
        .filter_map(|chunk| {
            let (name, value) = chunk.split_once('=').unwrap_or(("", chunk));
            let (name, value) = (name.trim(), value.trim());
            (!name.is_empty() || !value.is_empty())
                .then(|| (name.to_owned(), unquote_cookie_value(value).into_owned()))
        })
        .collect()
}

/// The value of cookie `name` in a `Cookie` header. With duplicates the last one wins, as in
/// tornado.
pub fn get_cookie(header: &str, name: &str) -> Option<String> {
    parse_cookie_header(header)
        .into_iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests;
