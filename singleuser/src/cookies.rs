//! Reading the `Cookie` request header and writing `Set-Cookie` values.
//!
//! Parsing follows what browsers send (`a=1; b=2`), tolerates the double-quoted values tornado
//! writes, and keeps every cookie of a name: a browser sends several when cookies of the same
//! name exist on several paths, most specific path first.

use std::time::Duration;

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};

/// Every `(name, value)` pair in the request's `Cookie` headers, in order.
pub fn iter(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            let name = name.trim();
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            (!name.is_empty()).then_some((name, value))
        })
}

/// The values of every cookie called `name`.
pub fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    iter(headers)
        .filter(move |(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Rewrites the `Cookie` headers without the cookies `drop` selects; removes the header when
/// nothing is left.
pub fn remove(headers: &mut HeaderMap, drop: impl Fn(&str) -> bool) {
    if !headers.contains_key(COOKIE) {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
            !pair.is_empty() && !drop(name)
        })
        .map(str::to_owned)
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(COOKIE, v);
    }
}

/// One `Set-Cookie` value.
#[derive(Debug, Clone)]
pub struct SetCookie<'a> {
    /// Cookie name.
    pub name: &'a str,
    /// Cookie value (must already be cookie-safe).
    pub value: &'a str,
    /// `Path`.
    pub path: &'a str,
    /// `Max-Age`; `None` makes a session cookie.
    pub max_age: Option<Duration>,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `Secure`.
    pub secure: bool,
}

impl SetCookie<'_> {
    /// The header value.
    pub fn to_header(&self) -> Option<HeaderValue> {
        let mut out = format!("{}={}; Path={}", self.name, self.value, self.path);
        if let Some(age) = self.max_age {
            out.push_str(&format!("; Max-Age={}", age.as_secs()));
            if age.is_zero() {
                out.push_str("; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
            }
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        if self.secure {
            out.push_str("; Secure");
        }
        // Lax keeps the cookie on top-level navigations (the OAuth redirect back from the hub)
        // and off cross-site subrequests.
        out.push_str("; SameSite=Lax");
        HeaderValue::from_str(&out).ok()
    }
}

/// A `Set-Cookie` value that deletes the cookie `name` on `path`.
pub fn clear(name: &str, path: &str, secure: bool) -> Option<HeaderValue> {
    SetCookie {
        name,
        value: "",
        path,
        max_age: Some(Duration::ZERO),
        http_only: true,
        secure,
    }
    .to_header()
}

/// The name of a cookie a `Set-Cookie` header value sets.
pub fn set_cookie_name(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let pair = text.split(';').next()?;
    Some(pair.split_once('=')?.0.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn parses_pairs_quotes_and_duplicates() {
        let h = headers(&["a=1; _xsrf=\"2|x\"; junk; =nameless", "a=3;b="]);
        let all: Vec<_> = iter(&h).collect();
        assert_eq!(all, [("a", "1"), ("_xsrf", "2|x"), ("a", "3"), ("b", "")]);
        assert_eq!(values(&h, "a").collect::<Vec<_>>(), ["1", "3"]);
    }

    #[test]
    fn removes_selected_cookies() {
        let mut h = headers(&[
            "keep=1; jupyterhub-user-a=secret; x-oauth-state=s",
            "other=2",
        ]);
        remove(&mut h, |n| {
            n.starts_with("jupyterhub-user-a") || n == "x-oauth-state"
        });
        assert_eq!(h.get_all(COOKIE).iter().count(), 1);
        assert_eq!(h[COOKIE], "keep=1; other=2");
        remove(&mut h, |_| true);
        assert!(h.get(COOKIE).is_none());
    }

    #[test]
    fn set_cookie_attributes() {
        let v = SetCookie {
            name: "n",
            value: "v",
            path: "/user/a/",
            max_age: Some(Duration::from_secs(600)),
            http_only: true,
            secure: true,
        }
        .to_header()
        .unwrap();
        assert_eq!(
            v,
            "n=v; Path=/user/a/; Max-Age=600; HttpOnly; Secure; SameSite=Lax"
        );
        assert_eq!(set_cookie_name(&v), Some("n"));
        let c = clear("n", "/user/a/", false).unwrap();
        assert!(
            c.to_str()
                .unwrap()
                .starts_with("n=; Path=/user/a/; Max-Age=0; Expires=")
        );
    }
}
