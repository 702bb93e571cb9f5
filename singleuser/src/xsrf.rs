//! Refusing cross-site requests that ride on the login cookie.
//!
//! The shim turns a browser's cookie into requests the app trusts completely, so it must stop
//! other sites from making the browser send such requests (security.md C and D.44). Requests
//! authenticated by an `Authorization` header are not affected: a browser never adds one on
//! its own.
//!
//! Which cookie requests are checked follows JupyterHub 4.1+ (`_xsrf_utils.py`
//! `_needs_check_xsrf`): not reads that are navigations or carry no `Sec-Fetch-Mode`, not
//! same-origin `no-cors` reads (images), not websocket handshakes (those get the Origin check
//! instead); everything else is. A checked request passes under
//!
//! - [`Policy::Token`]: when it carries this session's XSRF token in `X-XSRFToken`,
//!   `X-CSRFToken` or the `_xsrf` query argument. The token is the one in the `_xsrf` cookie
//!   the shim sets, which Jupyter front ends send back by themselves. It is derived from the
//!   session, so a cookie tossed in by another site is worthless.
//! - [`Policy::SameOrigin`]: as above, or when the browser says the request comes from the
//!   same origin (`Sec-Fetch-Site: same-origin`, or, from browsers without Fetch Metadata, a
//!   matching `Origin`). For apps that know nothing of the shim's token.
//!
//! Under both policies a request whose `Origin` names another host is refused first, and so
//! is a websocket handshake from another origin.

use http::{HeaderMap, Method};
use subtle::ConstantTimeEq as _;

/// How checked cookie requests are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The session's XSRF token is required.
    Token,
    /// The XSRF token, or Fetch Metadata / `Origin` proving a same-origin request.
    SameOrigin,
}

/// Why a request was refused; the message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No token where one is required.
    #[error("'_xsrf' argument missing from {0}")]
    Missing(Method),
    /// A token that is not this session's.
    #[error("XSRF cookie does not match {0} argument")]
    Mismatch(Method),
    /// `Origin` names another host.
    #[error("Blocking cross-origin request from {0}")]
    CrossOrigin(String),
    /// No proof of a same-origin request (same-origin policy).
    #[error("Blocking cross-site {0} request")]
    CrossSite(Method),
}

/// What the checks read from a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The method.
    pub method: &'a Method,
    /// `Sec-Fetch-Mode`.
    pub fetch_mode: Option<&'a str>,
    /// `Sec-Fetch-Site`.
    pub fetch_site: Option<&'a str>,
    /// `Origin`.
    pub origin: Option<&'a str>,
    /// `Host`.
    pub host: Option<&'a str>,
    /// The token from `X-XSRFToken`, `X-CSRFToken` or `?_xsrf=`.
    pub submitted: Option<&'a str>,
    /// Whether this is a websocket handshake.
    pub websocket: bool,
}

impl<'a> RequestFacts<'a> {
    /// Reads the facts from headers; `query_token` is the `_xsrf` query argument, if any.
    pub fn read(
        method: &'a Method,
        headers: &'a HeaderMap,
        query_token: Option<&'a str>,
        websocket: bool,
    ) -> Self {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            method,
            fetch_mode: get("sec-fetch-mode"),
            fetch_site: get("sec-fetch-site"),
            origin: get("origin"),
            host: get("host"),
            submitted: get("x-xsrftoken")
                .or_else(|| get("x-csrftoken"))
                .or(query_token)
                .filter(|t| !t.is_empty()),
            websocket,
        }
    }
}

fn read_only(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a cookie request needs the XSRF check (JupyterHub's `_needs_check_xsrf`).
pub fn needs_check(facts: &RequestFacts<'_>) -> bool {
    let reads = read_only(facts.method);
    let mode = facts.fetch_mode.unwrap_or("unspecified");
    let site = facts.fetch_site.unwrap_or("unspecified");
    !(facts.websocket
        || mode == "websocket"
        || (reads && (mode == "navigate" || mode == "unspecified"))
        || (reads && mode == "no-cors" && site == "same-origin"))
}

/// Whether `origin` (an `Origin` header value) is this server's own: the same host and port as
/// the `Host` header, or one of `extra` (e.g. the public URL's origin).
pub fn origin_allowed(origin: &str, host: Option<&str>, extra: &[String]) -> bool {
    let origin = origin.trim().to_ascii_lowercase();
    if extra
        .iter()
        .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(&origin))
    {
        return true;
    }
    let Some(host) = host else {
        // No Host to compare with (HTTP/2 without :authority does not reach us): a request
        // that names an origin is then only let through when it is explicitly allowed.
        return false;
    };
    let Some((scheme, netloc)) = origin.split_once("://") else {
        // `Origin: null` (sandboxed frames, some redirects) is never same-origin.
        return false;
    };
    let host = host.to_ascii_lowercase();
    let default_port = match scheme {
        "https" | "wss" => ":443",
        _ => ":80",
    };
    netloc == host
        || netloc.strip_suffix(default_port) == Some(host.as_str())
        || host.strip_suffix(default_port) == Some(netloc)
}

/// Checks a request authenticated by the login cookie. `expected` is the session's XSRF token.
///
/// # Errors
/// When the request must be refused.
pub fn check_cookie_request(
    policy: Policy,
    facts: &RequestFacts<'_>,
    expected: &str,
    extra_origins: &[String],
) -> Result<(), Refused> {
    if let Some(origin) = facts.origin
        && !origin_allowed(origin, facts.host, extra_origins)
    {
        // A foreign Origin on a plain navigation is not an attack (a link followed from
        // another site carries none for GET, but a form GET may); everything else is refused.
        let navigation = read_only(facts.method)
            && !facts.websocket
            && matches!(facts.fetch_mode, None | Some("navigate"));
        if !navigation {
            return Err(Refused::CrossOrigin(origin.to_owned()));
        }
    }
    if !needs_check(facts) {
        return Ok(());
    }
    let token_ok = facts
        .submitted
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(expected.as_bytes())));
    if token_ok {
        return Ok(());
    }
    match policy {
        Policy::Token => Err(match facts.submitted {
            None => Refused::Missing(facts.method.clone()),
            Some(_) => Refused::Mismatch(facts.method.clone()),
        }),
        Policy::SameOrigin => {
            let same_origin = match facts.fetch_site {
                Some(site) => site == "same-origin",
                // Without Fetch Metadata, a matching Origin (checked above) is the proof.
                None => facts.origin.is_some(),
            };
            if same_origin {
                Ok(())
            } else {
                Err(Refused::CrossSite(facts.method.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "session-token";

    fn facts<'a>(method: &'a Method) -> RequestFacts<'a> {
        RequestFacts {
            method,
            fetch_mode: None,
            fetch_site: None,
            origin: None,
            host: Some("hub.example:8000"),
            submitted: None,
            websocket: false,
        }
    }

    fn check(policy: Policy, f: &RequestFacts<'_>) -> Result<(), Refused> {
        check_cookie_request(policy, f, TOKEN, &[])
    }

    #[test]
    fn reads_that_need_no_token() {
        let get = Method::GET;
        for (mode, site) in [
            (None, None),
            (Some("navigate"), Some("cross-site")),
            (Some("no-cors"), Some("same-origin")),
        ] {
            let f = RequestFacts {
                fetch_mode: mode,
                fetch_site: site,
                ..facts(&get)
            };
            assert_eq!(check(Policy::Token, &f), Ok(()), "{mode:?} {site:?}");
        }
    }

    #[test]
    fn token_policy_table() {
        let post = Method::POST;
        let get = Method::GET;
        let base = facts(&post);
        assert_eq!(
            check(Policy::Token, &base),
            Err(Refused::Missing(Method::POST))
        );
        let wrong = RequestFacts {
            submitted: Some("other"),
            ..base
        };
        assert_eq!(
            check(Policy::Token, &wrong),
            Err(Refused::Mismatch(Method::POST))
        );
        let right = RequestFacts {
            submitted: Some(TOKEN),
            ..base
        };
        assert_eq!(check(Policy::Token, &right), Ok(()));
        // A same-origin fetch still needs the token under the token policy.
        let cors = RequestFacts {
            fetch_mode: Some("cors"),
            fetch_site: Some("same-origin"),
            ..facts(&get)
        };
        assert_eq!(
            check(Policy::Token, &cors),
            Err(Refused::Missing(Method::GET))
        );
        // Cross-site no-cors reads (an <img> on another site) are checked.
        let img = RequestFacts {
            fetch_mode: Some("no-cors"),
            fetch_site: Some("cross-site"),
            ..facts(&get)
        };
        assert!(check(Policy::Token, &img).is_err());
    }

    #[test]
    fn foreign_origin_refused_even_with_token() {
        let post = Method::POST;
        let f = RequestFacts {
            origin: Some("https://evil.example"),
            submitted: Some(TOKEN),
            ..facts(&post)
        };
        assert_eq!(
            check(Policy::Token, &f),
            Err(Refused::CrossOrigin("https://evil.example".into()))
        );
        let allowed = check_cookie_request(
            Policy::Token,
            &f,
            TOKEN,
            &["https://evil.example/".to_owned()],
        );
        assert_eq!(allowed, Ok(()));
    }

    #[test]
    fn same_origin_policy_table() {
        let post = Method::POST;
        let ok_fetch = RequestFacts {
            fetch_mode: Some("cors"),
            fetch_site: Some("same-origin"),
            origin: Some("http://hub.example:8000"),
            ..facts(&post)
        };
        assert_eq!(check(Policy::SameOrigin, &ok_fetch), Ok(()));
        let cross = RequestFacts {
            fetch_site: Some("cross-site"),
            origin: None,
            ..ok_fetch
        };
        assert_eq!(
            check(Policy::SameOrigin, &cross),
            Err(Refused::CrossSite(Method::POST))
        );
        let same_site = RequestFacts {
            fetch_site: Some("same-site"),
            ..cross
        };
        assert!(check(Policy::SameOrigin, &same_site).is_err());
        // Old browser: no Fetch Metadata, matching Origin.
        let old = RequestFacts {
            fetch_mode: None,
            fetch_site: None,
            ..ok_fetch
        };
        assert_eq!(check(Policy::SameOrigin, &old), Ok(()));
        // Neither header: not a browser on our page; needs the token.
        let bare = facts(&post);
        assert!(check(Policy::SameOrigin, &bare).is_err());
        let token = RequestFacts {
            submitted: Some(TOKEN),
            ..bare
        };
        assert_eq!(check(Policy::SameOrigin, &token), Ok(()));
    }

    #[test]
    fn websocket_origin_check() {
        let get = Method::GET;
        let ws = RequestFacts {
            websocket: true,
            fetch_mode: Some("websocket"),
            ..facts(&get)
        };
        assert_eq!(check(Policy::Token, &ws), Ok(()));
        let same = RequestFacts {
            origin: Some("http://HUB.example:8000"),
            ..ws
        };
        assert_eq!(check(Policy::Token, &same), Ok(()));
        for bad in [
            "http://evil.example",
            "http://hub.example:8001",
            "https://hub.example.evil:8000",
            "null",
        ] {
            let f = RequestFacts {
                origin: Some(bad),
                ..ws
            };
            assert!(check(Policy::Token, &f).is_err(), "{bad}");
            assert!(check(Policy::SameOrigin, &f).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_ports_compare_equal() {
        assert!(origin_allowed(
            "https://hub.example",
            Some("hub.example:443"),
            &[]
        ));
        assert!(origin_allowed(
            "http://hub.example:80",
            Some("hub.example"),
            &[]
        ));
        assert!(!origin_allowed(
            "https://hub.example",
            Some("hub.example:80"),
            &[]
        ));
        assert!(!origin_allowed("http://hub.example", None, &[]));
    }

    #[test]
    fn reads_facts_from_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-csrftoken", "b".parse().unwrap());
        h.insert("sec-fetch-mode", "cors".parse().unwrap());
        let get = Method::GET;
        let f = RequestFacts::read(&get, &h, Some("q"), false);
        assert_eq!(f.submitted, Some("b"));
        h.insert("x-xsrftoken", "a".parse().unwrap());
        let f = RequestFacts::read(&get, &h, Some("q"), false);
        assert_eq!(f.submitted, Some("a"));
        let empty = HeaderMap::new();
        let f = RequestFacts::read(&get, &empty, Some(""), false);
        assert_eq!(f.submitted, None);
    }
}
