//! Validation of `next=` targets (login, spawn, OAuth): only paths on this hub's own host
//! survive, so a crafted link can never send a browser elsewhere after it logs in
//! (CVE-2019-10255, CVE-2026-33709).
//!
//! Accepted: a path that starts with exactly one `/` (not `//`, not `/\`), or an absolute
//! `http(s)` URL whose host is the request's `Host` or the public URL's host, which is cut down
//! to its path. Anything with control characters, whitespace or backslashes is refused outright:
//! browsers drop tabs and newlines and read `\` as `/`, which turns harmless-looking text into
//! a redirect to another site.

use url::Url;

/// The local form of `next`, or `None` when it may not be followed.
pub fn validate(
    next: &str,
    request_host: Option<&str>,
    public_url: Option<&Url>,
) -> Option<String> {
    if next.is_empty()
        || next
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return None;
    }
    let path = if next.starts_with('/') {
        next.to_owned()
    } else {
        let url = Url::parse(next).ok()?;
        if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() {
            return None;
        }
        let host = url.host_str()?;
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let same_host = request_host.is_some_and(|h| h.eq_ignore_ascii_case(&authority))
            || public_url.is_some_and(|p| {
                p.host_str().is_some_and(|h| h.eq_ignore_ascii_case(host))
                    && p.port_or_known_default() == url.port_or_known_default()
            });
        if !same_host {
            return None;
        }
        let mut path = url.path().to_owned();
        if let Some(query) = url.query() {
            path.push('?');
            path.push_str(query);
        }
        if let Some(fragment) = url.fragment() {
            path.push('#');
            path.push_str(fragment);
        }
        // `https://hub//evil.com/` has the path `//evil.com/`: collapse the leading slashes so
        // the result cannot be read as a protocol-relative URL.
        format!("/{}", path.trim_start_matches('/'))
    };
    if path.starts_with("//") {
        return None;
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "hub.example.org:8000";

    fn check(next: &str) -> Option<String> {
        validate(next, Some(HOST), None)
    }

    #[test]
    fn local_paths_survive() {
        for ok in [
            "/",
            "/hub/home",
            "/user/alice/lab?x=1#frag",
            "/hub/spawn/a%2Fb",
            "/x/?a=//b",
        ] {
            assert_eq!(check(ok).as_deref(), Some(ok), "{ok}");
        }
    }

    #[test]
    fn same_host_urls_become_paths() {
        assert_eq!(
            check("http://hub.example.org:8000/user/a/?x=1").as_deref(),
            Some("/user/a/?x=1")
        );
        assert_eq!(
            check("https://HUB.example.org:8000//evil.com/").as_deref(),
            Some("/evil.com/")
        );
        assert_eq!(
            check("http://hub.example.org:8000////evil.com").as_deref(),
            Some("/evil.com")
        );
        let public = Url::parse("https://jupyter.example.org/").unwrap();
        assert_eq!(
            validate(
                "https://jupyter.example.org/hub/home",
                Some("internal:8081"),
                Some(&public)
            )
            .as_deref(),
            Some("/hub/home")
        );
    }

    #[test]
    fn everything_else_is_refused() {
        let vectors = [
            "",
            "https://other.example.org/",
            "http://hub.example.org/",
            "http://hub.example.org:8000.evil.com/",
            "http://user@hub.example.org:8000/",
            "ftp://hub.example.org:8000/x",
            "//evil.com",
            "///evil.com",
            "////evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "\\/evil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            "/ /evil.com",
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "evil.com",
            "hub/home",
            "http:evil.com",
            "https:/evil.com",
            "http:///evil.com",
            "://evil.com",
            "\u{0}/evil",
        ];
        for bad in vectors {
            assert_eq!(check(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn full_width_slashes_stay_on_this_host() {
        // Browsers do not read U+FF0F as a separator in a path: it stays a local path.
        assert_eq!(
            check("/\u{ff0f}evil.com").as_deref(),
            Some("/\u{ff0f}evil.com")
        );
        assert_eq!(check("\u{ff0f}\u{ff0f}evil.com"), None);
    }
}
