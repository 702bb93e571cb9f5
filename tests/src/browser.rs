//! A minimal browser: keeps cookies the way a browser does (by name and path, with deletion
//! by `Max-Age`/`Expires`) and follows redirects one hop at a time, so that tests can assert
//! every hop of a login or OAuth flow.

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::header::{CONTENT_TYPE, COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use url::Url;

/// One stored cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    /// Name.
    pub name: String,
    /// Value, exactly as sent (tornado quotes values that contain `|`).
    pub value: String,
    /// The path it is sent for.
    pub path: String,
    /// Whether it was set `HttpOnly`.
    pub http_only: bool,
    /// The whole `Set-Cookie` header that set it.
    pub raw: String,
}

/// One response the browser received.
#[derive(Debug, Clone)]
pub struct Response {
    /// The request method.
    pub method: Method,
    /// The request URL.
    pub url: Url,
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body, as text (lossy).
    pub body: String,
}

impl Response {
    /// The `Location` header, resolved against the request URL.
    pub fn location(&self) -> Option<Url> {
        let raw = self.headers.get(LOCATION)?.to_str().ok()?;
        self.url.join(raw).ok()
    }

    /// Whether this is a redirect a browser follows.
    pub fn is_redirect(&self) -> bool {
        self.status.is_redirection() && self.headers.contains_key(LOCATION)
    }

    /// The request's path and query (`/hub/login?next=...`).
    pub fn target(&self) -> String {
        path_and_query(&self.url)
    }

    /// The body as JSON.
    ///
    /// # Errors
    /// When it is not JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("{self}: body is not JSON: {:.300}", self.body))
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The `Set-Cookie` headers of this response.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.method, self.target(), self.status)?;
        if let Some(location) = self.headers.get(LOCATION) {
            write!(
                f,
                " (Location: {})",
                location.to_str().unwrap_or("<binary>")
            )?;
        }
        Ok(())
    }
}

/// `path?query` of a URL.
pub fn path_and_query(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// A browser talking to one origin.
#[derive(Debug)]
pub struct Browser {
    /// Who this browser belongs to, for messages.
    pub who: String,
    client: reqwest::Client,
    origin: Url,
    jar: Vec<Cookie>,
}

impl Browser {
    /// A browser with no cookies, for `http://127.0.0.1:<port>/`.
    ///
    /// # Panics
    /// If the HTTP client cannot be built.
    pub fn new(who: &str, port: u16) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Starting a server may hold a page for several seconds.
            .timeout(Duration::from_secs(60))
            .user_agent("jhrs-e2e-browser")
            .build()
            .expect("building the HTTP client");
        let origin = Url::parse(&format!("http://127.0.0.1:{port}/")).expect("origin URL");
        Self {
            who: who.to_owned(),
            client,
            origin,
            jar: Vec::new(),
        }
    }

    /// A browser with no cookies, for `origin` (such as `http://10.200.1.2:8000/`).
    ///
    /// # Errors
    /// When `origin` is not a URL.
    pub fn with_origin(who: &str, origin: &str) -> anyhow::Result<Self> {
        let mut browser = Self::new(who, 0);
        browser.origin = Url::parse(origin)?.join("/")?;
        Ok(browser)
    }

    /// The origin this browser talks to, as `Origin` headers write it
    /// (`http://127.0.0.1:8000`).
    pub fn origin(&self) -> String {
        self.origin.origin().ascii_serialization()
    }

    /// The `Cookie` header this browser sends to `path`, if any cookie matches.
    pub fn cookie_header_for(&self, path: &str) -> Option<String> {
        self.cookie_header(path)
    }

    /// A request as a page's script sends it (`fetch`): `headers` added (the `Cookie` header
    /// comes from the jar), `body` sent as is. Not following redirects.
    ///
    /// # Errors
    /// On connection errors and timeouts.
    pub async fn request(
        &mut self,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> anyhow::Result<Response> {
        let url = self.url(target)?;
        let mut request = self.client.request(method.clone(), url.clone());
        if let Some(cookies) = self.cookie_header(url.path()) {
            request = request.header(COOKIE, cookies);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        self.receive(method, url, request).await
    }

    /// The absolute URL of `target` (a path, or a full URL that must be on this origin).
    ///
    /// # Errors
    /// When `target` is not a URL of this origin.
    pub fn url(&self, target: &str) -> anyhow::Result<Url> {
        let url = self.origin.join(target)?;
        anyhow::ensure!(
            url.origin() == self.origin.origin(),
            "{target} leaves the hub's origin {}",
            self.origin
        );
        Ok(url)
    }

    /// The stored cookies.
    pub fn cookies(&self) -> &[Cookie] {
        &self.jar
    }

    /// The cookie `name` stored for exactly `path`.
    pub fn cookie(&self, name: &str, path: &str) -> Option<&Cookie> {
        self.jar.iter().find(|c| c.name == name && c.path == path)
    }

    /// Forgets every cookie.
    pub fn clear_cookies(&mut self) {
        self.jar.clear();
    }

    /// `GET target`, not following redirects.
    ///
    /// # Errors
    /// On connection errors and timeouts.
    pub async fn get(&mut self, target: &str) -> anyhow::Result<Response> {
        let url = self.url(target)?;
        self.send(Method::GET, url, None).await
    }

    /// `POST target` with a form-encoded body, not following redirects.
    ///
    /// # Errors
    /// On connection errors and timeouts.
    pub async fn post_form(
        &mut self,
        target: &str,
        fields: &[(&str, &str)],
    ) -> anyhow::Result<Response> {
        let url = self.url(target)?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(Method::POST, url, Some(body)).await
    }

    async fn send(
        &mut self,
        method: Method,
        url: Url,
        form: Option<String>,
    ) -> anyhow::Result<Response> {
        let mut request = self.client.request(method.clone(), url.clone());
        if let Some(cookies) = self.cookie_header(url.path()) {
            request = request.header(COOKIE, cookies);
        }
        if let Some(body) = form {
            request = request
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body);
        }
        self.receive(method, url, request).await
    }

    /// Sends `request` and stores the cookies of its answer.
    async fn receive(
        &mut self,
        method: Method,
        url: Url,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<Response> {
        let reply = request
            .send()
            .await
            .with_context(|| format!("{}: {method} {url}", self.who))?;
        let status = reply.status();
        let headers = reply.headers().clone();
        let body = reply
            .bytes()
            .await
            .with_context(|| format!("{}: body of {method} {url}", self.who))?;
        let response = Response {
            method,
            url,
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        for set in response.set_cookies() {
            self.store(set, response.url.path());
        }
        Ok(response)
    }

    /// Follows redirects from `first` (up to `max_hops`). Returns every response, `first`
    /// included; the last one is not a redirect.
    ///
    /// # Errors
    /// On request errors, a redirect off this origin, or more than `max_hops` redirects.
    pub async fn follow(
        &mut self,
        first: Response,
        max_hops: usize,
    ) -> anyhow::Result<Vec<Response>> {
        let mut hops = vec![first];
        loop {
            let Some(last) = hops.last() else {
                unreachable!("hops starts non-empty")
            };
            if !last.is_redirect() {
                return Ok(hops);
            }
            anyhow::ensure!(
                hops.len() <= max_hops,
                "{}: more than {max_hops} redirects:\n{}",
                self.who,
                describe(&hops)
            );
            let next = last
                .location()
                .with_context(|| format!("{last}: unusable Location"))?;
            anyhow::ensure!(
                next.origin() == self.origin.origin(),
                "{}: redirected off the hub's origin to {next}:\n{}",
                self.who,
                describe(&hops)
            );
            let response = self.send(Method::GET, next, None).await?;
            hops.push(response);
        }
    }

    /// `GET target` and follow its redirects.
    ///
    /// # Errors
    /// See [`Browser::follow`].
    pub async fn visit(&mut self, target: &str) -> anyhow::Result<Vec<Response>> {
        let first = self.get(target).await?;
        self.follow(first, 20).await
    }

    fn cookie_header(&self, path: &str) -> Option<String> {
        let mut matching: Vec<&Cookie> = self
            .jar
            .iter()
            .filter(|c| path_matches(path, &c.path))
            .collect();
        // Longer paths first, as browsers send them.
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let header = matching
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect::<Vec<_>>()
            .join("; ");
        (!header.is_empty()).then_some(header)
    }

    fn store(&mut self, set_cookie: &str, request_path: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        let mut path = None;
        let mut http_only = false;
        let mut expired = false;
        let mut max_age_seen = false;
        for attr in parts {
            let (key, val) = match attr.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim()),
                None => (attr.trim().to_ascii_lowercase(), ""),
            };
            match key.as_str() {
                "path" if val.starts_with('/') => path = Some(val.to_owned()),
                "httponly" => http_only = true,
                "max-age" => {
                    max_age_seen = true;
                    expired = val.parse::<i64>().is_ok_and(|s| s <= 0);
                }
                "expires" if !max_age_seen => {
                    expired = chrono::DateTime::parse_from_rfc2822(val)
                        .is_ok_and(|t| t < chrono::Utc::now());
                }
                _ => {}
            }
        }
        let path = path.unwrap_or_else(|| default_path(request_path));
        self.jar.retain(|c| !(c.name == name && c.path == path));
        if !expired {
            self.jar.push(Cookie {
                name,
                value,
                path,
                http_only,
                raw: set_cookie.to_owned(),
            });
        }
    }
}

/// RFC 6265 path-match.
fn path_matches(request: &str, cookie: &str) -> bool {
    request == cookie
        || (request.starts_with(cookie)
            && (cookie.ends_with('/') || request[cookie.len()..].starts_with('/')))
}

/// RFC 6265 default-path: the request path up to its last `/`.
fn default_path(request: &str) -> String {
    match request.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => request[..i].to_owned(),
    }
}

/// The hops, one a line, for failure messages.
pub fn describe(hops: &[Response]) -> String {
    hops.iter()
        .map(|h| format!("  {h}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `value` of the `<input>` named `name` in an HTML page, unescaped.
pub fn form_field(html: &str, name: &str) -> Option<String> {
    let mut rest = html;
    while let Some(start) = rest.find("<input") {
        let tag_end = rest[start..].find('>')? + start;
        let tag = &rest[start..tag_end];
        if attribute(tag, "name").as_deref() == Some(name) {
            return attribute(tag, "value");
        }
        rest = &rest[tag_end..];
    }
    None
}

/// The value of attribute `attr` in an HTML start tag (double or single quoted), unescaped.
fn attribute(tag: &str, attr: &str) -> Option<String> {
    let mut search = tag;
    loop {
        let at = search.find(attr)?;
        let before_ok = search[..at]
            .chars()
            .next_back()
            .is_some_and(char::is_whitespace);
        let after = search[at + attr.len()..].trim_start();
        if before_ok && let Some(after_eq) = after.strip_prefix('=') {
            let after_eq = after_eq.trim_start();
            let quote = after_eq.chars().next()?;
            if quote == '"' || quote == '\'' {
                let value = &after_eq[1..];
                let end = value.find(quote)?;
                return Some(unescape(&value[..end]));
            }
            let end = after_eq
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .unwrap_or(after_eq.len());
            return Some(unescape(&after_eq[..end]));
        }
        search = &search[at + attr.len()..];
    }
}

/// Undoes the HTML escaping of attribute values.
pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_like_browsers() {
        assert!(path_matches("/hub/login", "/hub/"));
        assert!(path_matches("/hub/", "/hub/"));
        assert!(path_matches("/hub", "/hub"));
        assert!(path_matches("/hub/x", "/hub"));
        assert!(!path_matches("/hubx", "/hub"));
        assert!(!path_matches("/hub", "/hub/"));
        assert!(path_matches("/user/a/api", "/"));
        assert_eq!(default_path("/hub/login"), "/hub");
        assert_eq!(default_path("/login"), "/");
    }

    #[test]
    fn cookies_are_stored_replaced_and_deleted() {
        let mut b = Browser::new("t", 1);
        b.store("a=1; Path=/hub/; HttpOnly", "/hub/login");
        b.store(
            "s=\"2|x\"; expires=Thu, 31 Dec 2099 16:03:33 GMT; Path=/",
            "/x",
        );
        assert_eq!(
            b.cookie_header("/hub/api").as_deref(),
            Some("a=1; s=\"2|x\"")
        );
        assert_eq!(b.cookie_header("/user/x").as_deref(), Some("s=\"2|x\""));
        assert!(b.cookie("a", "/hub/").is_some_and(|c| c.http_only));
        b.store("a=2; Path=/hub/", "/hub/login");
        assert_eq!(b.cookie("a", "/hub/").map(|c| c.value.as_str()), Some("2"));
        b.store(
            "a=; expires=Mon, 01 Dec 2025 00:00:00 GMT; Path=/hub/",
            "/hub/",
        );
        b.store("s=; Max-Age=0; Path=/", "/");
        assert!(b.cookies().is_empty(), "{:?}", b.cookies());
    }

    #[test]
    fn form_fields() {
        let html = r#"<form><input type="hidden" name="_xsrf" value="a&#x2f;b=="/>
            <input name='username' value='x'><input id="next" name="next" value="&#x2f;hub&#x2f;"></form>"#;
        assert_eq!(form_field(html, "_xsrf").as_deref(), Some("a/b=="));
        assert_eq!(form_field(html, "username").as_deref(), Some("x"));
        assert_eq!(form_field(html, "next").as_deref(), Some("/hub/"));
        assert_eq!(form_field(html, "password"), None);
    }
}
