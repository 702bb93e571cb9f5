//! Differential tests: the same requests go through the reference configurable-http-proxy
//! 5.3.0 and through `chp-proxy`, against the same upstreams, and the results are compared:
//! status codes, the headers that matter (content type, location, X-Forwarded-*), what the
//! upstream saw (method, path, query, headers, body), and the REST API's JSON.
//!
//! Where our proxy differs on purpose, each test asserts both sides' known behaviour.
//!
//! Needs the reference CHP: run `scripts/test-deps.sh` (or set `CHP_REAL_BIN`). Without it
//! every test here fails with a message saying so.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use workspace_tests::proxy::{Proxy, ProxyBuilder};
use workspace_tests::raw::{Conn, Liveness, RawRequest, RawResponse, ws_upgrade};
use workspace_tests::tls::TestCerts;
use workspace_tests::upstream::{Upstream, UpstreamMode};
use workspace_tests::{free_port, ws};

type TestResult = anyhow::Result<()>;

/// The Host header both proxies see, so that Host-derived values (X-Forwarded-Host/Port,
/// rewritten locations) are comparable.
const HOST: &str = "proxy.test:8000";

/// The two proxies under comparison.
struct Pair {
    real: Proxy,
    ours: Proxy,
}

impl Pair {
    /// Starts the reference CHP and ours with the same configuration.
    async fn start(configure: impl Fn(ProxyBuilder) -> ProxyBuilder) -> Pair {
        // Fails with instructions (scripts/test-deps.sh) when the reference is missing.
        workspace_tests::bins::chp_real();
        let (real, ours) = tokio::join!(
            configure(Proxy::real()).start(),
            configure(Proxy::ours()).start()
        );
        Pair {
            real: real.expect("starting the reference configurable-http-proxy"),
            ours: ours.expect("starting chp-proxy"),
        }
    }

    fn each(&self) -> [(&'static str, &Proxy); 2] {
        [("real", &self.real), ("ours", &self.ours)]
    }

    async fn add_route(&self, path: &str, target: &str) {
        for (side, p) in self.each() {
            p.add_route(path, target)
                .await
                .unwrap_or_else(|e| panic!("{side}: adding {path}: {e:#}"));
        }
    }

    /// Sends `req` (with `Host: proxy.test:8000` unless it has a Host) to both public ports.
    async fn request(&self, req: &RawRequest) -> (RawResponse, RawResponse) {
        let req = with_host(req);
        let real = self.real.request(&req).await;
        let ours = self.ours.request(&req).await;
        (
            real.unwrap_or_else(|e| panic!("real: {} {}: {e:#}", req.method, req.target)),
            ours.unwrap_or_else(|e| panic!("ours: {} {}: {e:#}", req.method, req.target)),
        )
    }

    /// Sends `req` to both and asserts the comparable views are equal; returns them.
    async fn same(&self, req: &RawRequest) -> (RawResponse, RawResponse) {
        let (real, ours) = self.request(req).await;
        assert_eq!(
            view(&real),
            view(&ours),
            "{} {} differs (left: real CHP, right: ours)",
            req.method,
            req.target
        );
        (real, ours)
    }

    async fn api(&self, req: RawRequest) -> (RawResponse, RawResponse) {
        let real = self.real.api_request(req.clone()).await;
        let ours = self.ours.api_request(req.clone()).await;
        (
            real.unwrap_or_else(|e| panic!("real API: {} {}: {e:#}", req.method, req.target)),
            ours.unwrap_or_else(|e| panic!("ours API: {} {}: {e:#}", req.method, req.target)),
        )
    }

    /// Sends an API request to both and asserts status and body are equal.
    async fn api_same(&self, req: RawRequest) -> (RawResponse, RawResponse) {
        let (real, ours) = self.api(req.clone()).await;
        assert_eq!(
            (real.status, real.text()),
            (ours.status, ours.text()),
            "API {} {} differs (left: real CHP, right: ours)",
            req.method,
            req.target
        );
        (real, ours)
    }
}

fn with_host(req: &RawRequest) -> RawRequest {
    if req.omit_host
        || req
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("host"))
    {
        req.clone()
    } else {
        req.clone().header("Host", HOST)
    }
}

/// Request headers (as seen by the upstream) that both proxies must agree on.
const COMPARED_HEADERS: &[&str] = &[
    "host",
    "x-forwarded-for",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-forwarded-host",
    "content-length",
    "content-type",
    "cookie",
    "authorization",
    "trailer",
    "k1",
    "k2",
    "x-test",
];

/// The parts of a response both proxies must agree on.
fn view(resp: &RawResponse) -> Value {
    let mut v = json!({
        "status": resp.status,
        "content-type": resp.header("content-type"),
        "location": resp.header("location"),
    });
    let echoed = resp
        .json()
        .ok()
        .filter(|j| j.get("url").is_some() && j.get("headers").is_some());
    match echoed {
        Some(e) => {
            let mut headers = serde_json::Map::new();
            for name in COMPARED_HEADERS {
                if let Some(value) = e["headers"].get(*name) {
                    headers.insert((*name).to_owned(), value.clone());
                }
            }
            v["upstream"] = json!({
                "name": e["name"],
                "method": e["method"],
                "url": e["url"],
                "body": e["body"],
                "headers": headers,
            });
        }
        // JSON bodies (healthz) compare as values: CHP writes `{"status":"OK"}`, spacing is
        // not part of the contract.
        None => match resp.json() {
            Ok(body) if resp.media_type().as_deref() == Some("application/json") => {
                v["json"] = body;
            }
            _ => v["body"] = json!(resp.text()),
        },
    }
    v
}

fn echo_url(resp: &RawResponse) -> String {
    resp.json()
        .ok()
        .and_then(|j| j["url"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("<no echo: {} {:?}>", resp.status, resp.text()))
}

fn echo_name(resp: &RawResponse) -> String {
    resp.json()
        .ok()
        .and_then(|j| j["name"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("<no echo: {} {:?}>", resp.status, resp.text()))
}

async fn echo(name: &str) -> Upstream {
    Upstream::echo(name)
        .await
        .expect("starting an echo upstream")
}

fn dead_target() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// Replaces `last_activity` values by a marker after checking their format.
fn normalise_listing(listing: &Value) -> Value {
    let mut out = listing.clone();
    if let Some(map) = out.as_object_mut() {
        for (key, data) in map.iter_mut() {
            normalise_route(key, data);
        }
    }
    out
}

fn normalise_route(key: &str, data: &mut Value) {
    let la = data["last_activity"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    workspace_tests::parse_last_activity(&la).unwrap_or_else(|e| panic!("route {key}: {e:#}"));
    data["last_activity"] = json!("<iso8601 ms Z>");
}

/// Whether the API answers within `wait` (CHP never answers some requests).
async fn answers_within(p: &Proxy, req: RawRequest, wait: Duration) -> Option<RawResponse> {
    let mut conn = p.api.connect().await.expect("API connect");
    let req = req.header("Authorization", "token secret");
    tokio::time::timeout(wait, conn.exchange(&req))
        .await
        .ok()
        .and_then(Result::ok)
}

// -------------------------------------------------------------------------------------------
// REST API

#[tokio::test]
async fn api_listing_and_single_routes_match() -> TestResult {
    let up = echo("up").await;
    let pair = Pair::start(|b| b.default_target(&up.url())).await;
    let data = json!({
        "target": up.url(),
        "jupyterhub": true,
        "user": "a",
        "server_name": "",
        "extra": {"nested": [1, "x", null]},
        "last_activity": "2000-01-01T00:00:00.000Z",
    });
    for path in [
        "/a/",
        "/c//d",
        "/has%20space/foo",
        "/has/@",
        "/%C3%BC%C3%B1%C3%AE%C3%A7%C3%B8%E2%88%82%C3%A9",
        "/q?x=1",
        "/user/foo%40bar",
        "/user/a%2Fb",
        "/~user",
    ] {
        let req = RawRequest::new("POST", &format!("/api/routes{path}"))
            .header("Content-Type", "application/json")
            .body(data.to_string());
        let (real, _) = pair.api_same(req).await;
        assert_eq!(real.status, 201, "POST {path}");
    }
    // Root route by POST without a path (replaces the default target's data).
    pair.api_same(
        RawRequest::new("POST", "/api/routes")
            .body(json!({"target": up.url(), "root": 1}).to_string()),
    )
    .await;

    let (real, ours) = pair.api(RawRequest::get("/api/routes")).await;
    assert_eq!((real.status, ours.status), (200, 200));
    assert_eq!(real.media_type(), ours.media_type());
    assert_eq!(
        normalise_listing(&real.json()?),
        normalise_listing(&ours.json()?),
        "listing (left: real CHP, right: ours)"
    );
    for path in [
        "/a",
        "/a/",
        "/has%20space/foo",
        "/has/@",
        "/user/foo@bar",
        "/user/a/b",
    ] {
        let (real, ours) = pair
            .api(RawRequest::get(&format!("/api/routes{path}")))
            .await;
        assert_eq!(real.status, ours.status, "GET {path}");
        let (mut r, mut o) = (real.json()?, ours.json()?);
        normalise_route(path, &mut r);
        normalise_route(path, &mut o);
        assert_eq!(r, o, "GET /api/routes{path} (left: real CHP, right: ours)");
    }
    for path in ["/a", "/has%20space/foo", "/user/foo@bar", "/"] {
        let (real, _) = pair
            .api_same(RawRequest::new("DELETE", &format!("/api/routes{path}")))
            .await;
        assert_eq!(real.status, 204, "DELETE {path}");
    }
    let (real, ours) = pair.api(RawRequest::get("/api/routes")).await;
    assert_eq!(
        normalise_listing(&real.json()?),
        normalise_listing(&ours.json()?)
    );
    Ok(())
}

/// chp.md says one trailing slash is removed from keys; CHP 5.3.0 removes two
/// (`/b//` is listed as `/b`, `/c///` as `/c/`). A drop-in should list what CHP lists.
#[tokio::test]
async fn double_trailing_slash_keys_match() -> TestResult {
    let up = echo("up").await;
    let pair = Pair::start(|b| b).await;
    pair.add_route("/b//", &up.url()).await;
    pair.add_route("/c///", &up.url()).await;
    let mut keys = Vec::new();
    for (side, p) in pair.each() {
        let mut k: Vec<String> = p.routes().await?.keys().cloned().collect();
        k.sort();
        keys.push((side, k));
    }
    assert_eq!(keys[0].1, vec!["/b", "/c/"], "real CHP");
    assert_eq!(keys[0].1, keys[1].1, "keys (real CHP vs ours)");
    Ok(())
}

#[tokio::test]
async fn api_error_responses_match() -> TestResult {
    let up = echo("up").await;
    let pair = Pair::start(|b| b.default_target(&up.url())).await;
    let cases = vec![
        RawRequest::get("/api/routes/missing"),
        RawRequest::new("DELETE", "/api/routes/missing"),
        RawRequest::get("/api/routes?inactive_since=bogus"),
        RawRequest::get("/api/routes?inactiveSince=not-a-date"),
        RawRequest::new("POST", "/api/routes/x").body(json!({"target": 5}).to_string()),
        RawRequest::new("POST", "/api/routes/x").body("null"),
        RawRequest::new("POST", "/api/routes/x").body("[]"),
        RawRequest::new("POST", "/api/routes/x").body("{}"),
        RawRequest::new("PUT", "/api/routes/x").body("{}"),
        RawRequest::new("PATCH", "/api/routes").body("{}"),
        RawRequest::get("/api/"),
        RawRequest::get("/api"),
        RawRequest::get("/_chp_healthz"),
        RawRequest::get("/api/routes").header("Authorization", "token wrong"),
        RawRequest::get("/api/routes").header("Authorization", "Bearer secret"),
        RawRequest::get("/api/routes").header("Authorization", "secret"),
    ];
    for req in cases {
        pair.api_same(req).await;
    }
    // No Authorization header at all.
    let mut statuses = Vec::new();
    for (_, p) in pair.each() {
        let resp = p
            .api
            .connect()
            .await?
            .exchange(&RawRequest::get("/api/routes"))
            .await?;
        statuses.push((resp.status, resp.text()));
    }
    assert_eq!(statuses[0], statuses[1], "no Authorization (real, ours)");
    assert_eq!(statuses[0].0, 403);
    // Invalid JSON: same status and prefix; the parser's message differs by nature.
    let (real, ours) = pair
        .api(RawRequest::new("POST", "/api/routes/x").body("{not json"))
        .await;
    assert_eq!((real.status, ours.status), (400, 400));
    for (side, r) in [("real", &real), ("ours", &ours)] {
        assert!(
            r.text().starts_with("Body not valid JSON: "),
            "{side}: {:?}",
            r.text()
        );
    }
    Ok(())
}

#[tokio::test]
async fn api_deliberate_differences() -> TestResult {
    let up = echo("up").await;
    let pair = Pair::start(|b| b.default_target(&up.url())).await;
    let get = |auth: &str| RawRequest::get("/api/routes").header("Authorization", auth);
    // Scheme case: CHP is case-sensitive, we are not.
    let (real, ours) = pair.api(get("Token secret")).await;
    assert_eq!((real.status, ours.status), (403, 200), "Token secret");
    // Unanchored match in CHP.
    for auth in ["xtoken secret", "token secret extra"] {
        let (real, ours) = pair.api(get(auth)).await;
        assert_eq!((real.status, ours.status), (200, 403), "{auth}");
    }
    // Body before auth in CHP.
    let mut statuses = Vec::new();
    for (_, p) in pair.each() {
        let resp = p
            .api
            .connect()
            .await?
            .exchange(&RawRequest::new("POST", "/api/routes/x").body("{not json"))
            .await?;
        statuses.push(resp.status);
    }
    assert_eq!(
        statuses,
        vec![400, 403],
        "unauthenticated invalid JSON (real, ours)"
    );
    // Target validation.
    for target in ["not a url", "ftp://127.0.0.1/x"] {
        let (real, ours) = pair
            .api(
                RawRequest::new("POST", "/api/routes/bad")
                    .body(json!({ "target": target }).to_string()),
            )
            .await;
        assert_eq!((real.status, ours.status), (201, 400), "target {target:?}");
        assert_eq!(ours.text(), "Must specify 'target' as a valid URL");
        // CHP fails at request time instead.
        let resp = pair.real.request(&RawRequest::get("/bad/x")).await?;
        assert_eq!(resp.status, 500, "real CHP with target {target:?}");
    }
    // Body size.
    let big = json!({"target": up.url(), "pad": "x".repeat(2 * 1024 * 1024)}).to_string();
    let (real, ours) = pair
        .api(RawRequest::new("POST", "/api/routes/big").body(big))
        .await;
    assert_eq!((real.status, ours.status), (201, 413), "2 MiB body");
    // Requests CHP never answers.
    let wait = Duration::from_millis(1500);
    for req in [
        RawRequest::get("/api/routes/%"),
        RawRequest::new("DELETE", "/api/routes"),
    ] {
        let what = format!("{} {}", req.method, req.target);
        let real = answers_within(&pair.real, req.clone(), wait).await;
        assert!(real.is_none(), "real CHP answered {what}: {real:?}");
        let ours = answers_within(&pair.ours, req, wait).await;
        let expected = if what.starts_with("DELETE") { 204 } else { 400 };
        assert_eq!(ours.map(|r| r.status), Some(expected), "ours: {what}");
    }
    Ok(())
}

#[tokio::test]
async fn inactive_since_filter_matches() -> TestResult {
    let up = echo("up").await;
    let pair = Pair::start(|b| b).await;
    pair.add_route("/old", &up.url()).await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    let mid = workspace_tests::format_js_date(chrono::Utc::now());
    tokio::time::sleep(Duration::from_millis(60)).await;
    pair.add_route("/new", &up.url()).await;
    let future = workspace_tests::format_js_date(chrono::Utc::now() + chrono::TimeDelta::hours(1));
    for query in [
        "?inactive_since=1970-01-01T00:00:00.000Z".to_owned(),
        format!("?inactive_since={mid}"),
        format!("?inactiveSince={mid}"),
        format!("?inactive_since={future}"),
        format!("?inactive_since={future}&inactiveSince=1970-01-01T00:00:00.000Z"),
        "?inactive_since=2000-01-01".to_owned(),
        "?inactive_since=2999-01-01T00:00:00Z".to_owned(),
    ] {
        let (real, ours) = pair
            .api(RawRequest::get(&format!("/api/routes{query}")))
            .await;
        assert_eq!((real.status, ours.status), (200, 200), "{query}");
        let keys = |r: &RawResponse| -> Vec<String> {
            let mut k: Vec<String> = r
                .json()
                .ok()
                .and_then(|v| v.as_object().map(|m| m.keys().cloned().collect()))
                .unwrap_or_default();
            k.sort();
            k
        };
        assert_eq!(keys(&real), keys(&ours), "{query} (real, ours)");
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------
// Proxying

#[tokio::test]
async fn proxied_requests_match() -> TestResult {
    let root = echo("root").await;
    let other = echo("other").await;
    let pair = Pair::start(|b| b.default_target(&root.url())).await;
    pair.add_route("/bar", &other.url_with("/foo")).await;
    pair.add_route("/q", &other.url_with("/T4?tq=1")).await;
    pair.add_route("/user", &other.url_with("/T5/")).await;
    pair.add_route("/b%40r/b%20r", &other.url_with("/foo"))
        .await;
    pair.add_route("/user/alice", &other.url()).await;
    for target in [
        "/",
        "/any/random/url?x=1&y=%20",
        "/bar/rest/of/it",
        "/bar?query=foo",
        "/bar",
        "/barx/y",
        "/q/z?rq=2",
        "/q/z",
        "/user/trail",
        "/b%40r/b%20r/rest/of/it",
        "/b@r/b%20r/rest",
        "/user/alicefoo",
        "/user/alice/",
        "/user/alice//x",
        "/user//alice",
        "/.hidden/x",
        "/a..b",
        "/_chp_healthz",
        "/_chp_healthz?x=1",
        "/_chp_healthz/",
        "/%E2%88%82",
        "/user/alice/x?next=/../etc",
    ] {
        pair.same(&RawRequest::get(target)).await;
    }
    pair.same(&RawRequest::new("POST", "/user/alice/post").body("hello"))
        .await;
    pair.same(
        &RawRequest::new("PUT", "/bar/put")
            .header("Content-Type", "text/plain")
            .body("x".repeat(70_000)),
    )
    .await;
    pair.same(&RawRequest::new("DELETE", "/user/alice/d")).await;
    pair.same(&RawRequest::new("OPTIONS", "/o")).await;
    pair.same(&RawRequest::get("/t").header("Trailer", "X-Foo"))
        .await;
    pair.same(
        &RawRequest::get("/teapot")
            .header("x-echo-status", "418")
            .header("x-echo-content-type", "application/x-test"),
    )
    .await;
    pair.same(&RawRequest::get("/nf").header("x-echo-status", "404"))
        .await;
    pair.same(
        &RawRequest::get("/redir")
            .header("x-echo-status", "302")
            .header("x-echo-location", "http://elsewhere.example/x"),
    )
    .await;
    pair.same(
        &RawRequest::get("/c")
            .header("Cookie", "a=b")
            .header("X-Test", "1"),
    )
    .await;
    let (real, ours) = pair
        .request(&RawRequest::get("/s").header("x-echo-chunks", "20"))
        .await;
    assert_eq!(
        (real.status, real.text()),
        (ours.status, ours.text()),
        "streamed body"
    );
    Ok(())
}

#[tokio::test]
async fn forwarded_headers_match() -> TestResult {
    let up = echo("up").await;
    let pair = Pair::start(|b| b.default_target(&up.url())).await;
    for req in [
        RawRequest::get("/"),
        RawRequest::get("/").header("Host", "proxy.test"),
        RawRequest::get("/").header("Host", "PROXY.test:8080"),
        RawRequest::get("/")
            .header("X-Forwarded-For", "1.2.3.4")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Port", "443")
            .header("X-Forwarded-Host", "orig.example"),
        RawRequest::get("/").header("X-Forwarded-For", "1.2.3.4, 5.6.7.8"),
    ] {
        pair.same(&req).await;
    }
    Ok(())
}

#[tokio::test]
async fn custom_headers_and_change_origin_match() -> TestResult {
    let up = echo("up").await;
    let pair = Pair::start(|b| {
        b.default_target(&up.url()).args([
            "--custom-header",
            "k1: v1",
            "--custom-header",
            " k2 : host:123 ",
            "--change-origin",
        ])
    })
    .await;
    let (real, _) = pair
        .same(&RawRequest::get("/x").header("k1", "client"))
        .await;
    let e = real.json()?;
    assert_eq!(e["headers"]["k1"], json!("v1"));
    assert_eq!(
        e["headers"]["host"],
        json!(format!("127.0.0.1:{}", up.port()))
    );
    Ok(())
}

#[tokio::test]
async fn no_x_forward_matches() -> TestResult {
    let up = echo("up").await;
    let pair = Pair::start(|b| b.default_target(&up.url()).arg("--no-x-forward")).await;
    pair.same(&RawRequest::get("/")).await;
    pair.same(&RawRequest::get("/").header("X-Forwarded-For", "1.2.3.4"))
        .await;
    Ok(())
}

#[tokio::test]
async fn prefix_flags_match_except_encoded_prefixes() -> TestResult {
    let up = echo("up").await;
    for flags in [
        &["--no-prepend-path"][..],
        &["--no-include-prefix"][..],
        &["--no-include-prefix", "--no-prepend-path"][..],
    ] {
        let pair = Pair::start(|b| b.args(flags.iter().copied())).await;
        pair.add_route("/bar", &up.url_with("/foo")).await;
        pair.add_route("/user/b%40r", &up.url()).await;
        for target in ["/bar/rest/of/it", "/bar/rest?x=1", "/user/b@r/x"] {
            pair.same(&RawRequest::get(target)).await;
        }
        if flags.contains(&"--no-include-prefix") {
            // CHP cuts the decoded prefix length from the raw path; we cut the raw prefix.
            let (real, ours) = pair.request(&RawRequest::get("/user/b%40r/x")).await;
            assert!(
                echo_url(&real).ends_with("0r/x"),
                "real CHP: {}",
                echo_url(&real)
            );
            assert_eq!(echo_url(&ours), "/x", "ours with {flags:?}");
        } else {
            pair.same(&RawRequest::get("/user/b%40r/x")).await;
        }
    }
    Ok(())
}

#[tokio::test]
async fn ambiguous_paths_differ_deliberately() -> TestResult {
    let root = echo("root").await;
    let alice = echo("alice").await;
    let bob = echo("bob").await;
    let dbl = echo("dbl").await;
    let x = echo("x").await;
    let pair = Pair::start(|b| b.default_target(&root.url())).await;
    pair.add_route("/user/alice", &alice.url()).await;
    pair.add_route("/user/bob", &bob.url()).await;
    pair.add_route("/dbl", &dbl.url()).await;
    pair.add_route("/x", &x.url()).await;
    // CHP resolves dot segments and decodes %2F before routing.
    for (target, chp_route) in [
        ("/user/bob/../alice/x", "alice"),
        ("/user/bob/%2e%2e/alice/x", "alice"),
        ("/user/bob/%2E%2e/alice/x", "alice"),
        ("/user/alice%2Fx", "alice"),
        ("/user/bob/./x", "bob"),
    ] {
        let (real, ours) = pair.request(&RawRequest::get(target)).await;
        assert_eq!(real.status, 200, "real CHP {target}");
        assert_eq!(echo_name(&real), chp_route, "real CHP {target}");
        assert_eq!(ours.status, 400, "ours {target}");
    }
    // Malformed escapes: CHP 500, ours 400.
    for target in ["/%", "/user/%zz"] {
        let (real, ours) = pair.request(&RawRequest::get(target)).await;
        assert_eq!((real.status, ours.status), (500, 400), "{target}");
    }
    // Leading `//`: CHP drops the first segment from the lookup, we keep it.
    let (real, ours) = pair.request(&RawRequest::get("//dbl/x")).await;
    assert_eq!(echo_name(&real), "x", "real CHP //dbl/x");
    assert_eq!(echo_name(&ours), "dbl", "ours //dbl/x");
    Ok(())
}

#[tokio::test]
async fn builtin_error_pages_match() -> TestResult {
    let pair = Pair::start(|b| b).await;
    pair.add_route("/dead", &dead_target()).await;
    for (target, status, marker) in [("/nothing", 404, "404:"), ("/dead/x", 503, "503:")] {
        let (real, ours) = pair.request(&RawRequest::get(target)).await;
        assert_eq!((real.status, ours.status), (status, status), "{target}");
        assert_eq!(real.media_type(), ours.media_type(), "{target}");
        assert_eq!(ours.media_type().as_deref(), Some("text/html"));
        assert!(
            real.text().contains(marker) && ours.text().contains(marker),
            "{target}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn error_target_requests_match() -> TestResult {
    let errors = Upstream::start("errors", UpstreamMode::ErrorPages).await?;
    let pair = Pair::start(|b| b.error_target(&errors.url_with("/hub/error"))).await;
    pair.add_route("/dead", &dead_target()).await;
    for target in ["/nothing/here?x=1&y=%20", "/dead/x", "/a%20b"] {
        let mut seen = Vec::new();
        let mut views = Vec::new();
        for (side, p) in pair.each() {
            errors.clear();
            let resp = p
                .request(
                    &RawRequest::get(target)
                        .header("Host", HOST)
                        .header("Cookie", "session=abc"),
                )
                .await?;
            views.push(view(&resp));
            let req = errors
                .last_request()
                .unwrap_or_else(|| panic!("{side}: error target not asked for {target}"));
            seen.push(json!({
                "method": req.method,
                "path": req.path(),
                "url": workspace_tests::query_param(req.query().unwrap_or_default(), "url"),
                "cookie": req.header("cookie"),
            }));
        }
        assert_eq!(views[0], views[1], "{target} response (real, ours)");
        assert_eq!(
            seen[0], seen[1],
            "{target} error-target request (real, ours)"
        );
    }
    // A malformed escape: CHP 500, ours 400, both through the error target.
    let mut codes = Vec::new();
    for (_, p) in pair.each() {
        errors.clear();
        let resp = p
            .request(&RawRequest::get("/%").header("Host", HOST))
            .await?;
        let req = errors.last_request().map(|r| r.path().to_owned());
        codes.push((resp.status, req, resp.text()));
    }
    assert_eq!(
        codes,
        vec![
            (500, Some("/hub/error/500".to_owned()), "/%".to_owned()),
            (400, Some("/hub/error/400".to_owned()), "/%".to_owned()),
        ],
        "bad escape (real, ours)"
    );
    Ok(())
}

#[tokio::test]
async fn error_path_matches() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("404.html"), "<p>custom 404 page</p>")?;
    std::fs::write(dir.path().join("error.html"), "<p>generic error page</p>")?;
    let path = dir.path().to_string_lossy().into_owned();
    let pair = Pair::start(|b| b.args(["--error-path", &path])).await;
    pair.add_route("/dead", &dead_target()).await;
    for target in ["/nothing", "/dead/x"] {
        let (real, ours) = pair.request(&RawRequest::get(target)).await;
        assert_eq!(
            (real.status, real.media_type(), real.text()),
            (ours.status, ours.media_type(), ours.text()),
            "{target} (real, ours)"
        );
    }
    Ok(())
}

#[tokio::test]
async fn location_rewrites_match() -> TestResult {
    let up = echo("up").await;
    let upstream_https = format!("https://127.0.0.1:{}/whatever?a=1", up.port());
    let upstream_http = format!("http://127.0.0.1:{}/w", up.port());
    for flags in [
        &[][..],
        &["--auto-rewrite"][..],
        &["--protocol-rewrite", "https"][..],
        &["--auto-rewrite", "--protocol-rewrite", "https"][..],
    ] {
        let pair = Pair::start(|b| b.default_target(&up.url()).args(flags.iter().copied())).await;
        for status in ["201", "301", "302", "303", "307", "308"] {
            for location in [
                &upstream_https,
                &upstream_http,
                &"https://other.example/x".to_owned(),
            ] {
                pair.same(
                    &RawRequest::get("/r")
                        .header("x-echo-status", status)
                        .header("x-echo-location", location),
                )
                .await;
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn host_routing_matches_except_normalisation() -> TestResult {
    let root = echo("root").await;
    let host = echo("host").await;
    let v6 = echo("v6").await;
    let pair = Pair::start(|b| b.default_target(&root.url()).arg("--host-routing")).await;
    pair.add_route("/test.example.org", &host.url()).await;
    pair.add_route("/test.example.org/sub", &host.url_with("/SUB"))
        .await;
    pair.add_route("/%5B%3A%3A1%5D", &v6.url()).await;
    for (h, path) in [
        ("test.example.org", "/some/path"),
        ("test.example.org:8080", "/x?y=1"),
        ("test.example.org", "/sub/x"),
        ("other.example", "/test.example.org/x"),
    ] {
        pair.same(&RawRequest::get(path).header("Host", h)).await;
    }
    let (real, ours) = pair.api(RawRequest::get("/api/routes")).await;
    assert_eq!(
        normalise_listing(&real.json()?),
        normalise_listing(&ours.json()?)
    );
    // CHP routes on the Host as sent and cuts it at the first colon.
    for (h, ours_route) in [
        ("TEST.example.org", "host"),
        ("test.example.org.", "host"),
        ("[::1]:8000", "v6"),
    ] {
        let (real, ours) = pair.request(&RawRequest::get("/x").header("Host", h)).await;
        assert_eq!(echo_name(&real), "root", "real CHP with Host {h}");
        assert_eq!(echo_name(&ours), ours_route, "ours with Host {h}");
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------
// Websockets

#[tokio::test]
async fn websocket_exchanges_match() -> TestResult {
    let root = echo("root").await;
    let pair = Pair::start(|b| b.default_target(&root.url())).await;
    pair.add_route("/ws", &root.url_with("/backend")).await;
    for path in ["/", "/ws/sock?x=1"] {
        let mut results = Vec::new();
        for (_, p) in pair.each() {
            let (mut sock, resp) = ws::connect(
                p.port(),
                path,
                &[("Host", HOST), ("X-Forwarded-For", "1.2.3.4")],
            )
            .await?;
            let first = ws::next_text(&mut sock).await?;
            let echoed = ws::roundtrip(&mut sock, "hi").await?;
            let hs = ws::upstream_handshake(&mut sock).await?;
            let headers: serde_json::Map<String, Value> = COMPARED_HEADERS
                .iter()
                .filter_map(|h| hs["headers"].get(*h).map(|v| ((*h).to_owned(), v.clone())))
                .collect();
            results.push(json!({
                "status": resp.status().as_u16(),
                "first": first,
                "echo": echoed,
                "url": hs["url"],
                "headers": headers,
            }));
        }
        assert_eq!(results[0], results[1], "websocket {path} (real, ours)");
    }
    Ok(())
}

#[tokio::test]
async fn websocket_errors_match_except_open_sockets() -> TestResult {
    let root = echo("root").await;
    let pair = Pair::start(|b| b).await;
    pair.add_route("/dead", &dead_target()).await;
    pair.add_route("/up", &root.url()).await;
    // No route: both send a bare 404; CHP then leaves the socket open, we close it.
    let mut outcomes = Vec::new();
    for (_, p) in pair.each() {
        let mut conn = Conn::tcp(p.port()).await?;
        let resp = conn.exchange(&ws_upgrade("/nothing")).await?;
        outcomes.push((
            resp.status,
            resp.header("content-length").map(str::to_owned),
            conn.liveness(Duration::from_millis(1500)).await,
        ));
    }
    assert_eq!(
        outcomes,
        vec![
            (404, Some("0".to_owned()), Liveness::Open),
            (404, Some("0".to_owned()), Liveness::Closed),
        ],
        "websocket without route (real, ours)"
    );
    // Upstream down: both send a bare 503 and close.
    let mut outcomes = Vec::new();
    for (_, p) in pair.each() {
        let mut conn = Conn::tcp(p.port()).await?;
        let resp = conn.exchange(&ws_upgrade("/dead/x")).await?;
        outcomes.push((
            resp.status,
            resp.header("content-length").map(str::to_owned),
            conn.liveness(Duration::from_millis(1500)).await,
        ));
    }
    assert_eq!(
        outcomes[0], outcomes[1],
        "websocket to a dead upstream (real, ours)"
    );
    assert_eq!(outcomes[0].0, 503);
    // Bad escape: CHP 500 and open, ours a bare 400.
    let mut statuses = Vec::new();
    for (_, p) in pair.each() {
        let mut conn = Conn::tcp(p.port()).await?;
        let resp = conn.exchange(&ws_upgrade("/up/%")).await?;
        statuses.push(resp.status);
    }
    assert_eq!(
        statuses,
        vec![500, 400],
        "websocket with a bad escape (real, ours)"
    );
    // Refused upgrade: relayed by both.
    let mut refused = Vec::new();
    for (_, p) in pair.each() {
        let mut conn = Conn::tcp(p.port()).await?;
        let resp = conn
            .exchange(&ws_upgrade("/up/x").header("x-echo-status", "403"))
            .await?;
        refused.push((resp.status, resp.text()));
    }
    assert_eq!(refused[0], refused[1], "refused upgrade (real, ours)");
    Ok(())
}

// -------------------------------------------------------------------------------------------
// Activity, metrics, timeouts

#[tokio::test]
async fn activity_rules_match() -> TestResult {
    let up = echo("up").await;
    let pair = Pair::start(|b| b.default_target(&up.url())).await;
    let cases: Vec<(&str, RawRequest)> = vec![
        ("GET 200", RawRequest::get("/ok")),
        (
            "GET upstream 404",
            RawRequest::get("/nf").header("x-echo-status", "404"),
        ),
        (
            "GET upstream 302",
            RawRequest::get("/r").header("x-echo-status", "302"),
        ),
        (
            "POST body upstream 404",
            RawRequest::new("POST", "/p")
                .header("x-echo-status", "404")
                .body("data"),
        ),
    ];
    for (what, req) in cases {
        let mut moved = Vec::new();
        for (_, p) in pair.each() {
            let before = p.last_activity("/").await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            p.request(&with_host(&req)).await?;
            tokio::time::sleep(Duration::from_millis(80)).await;
            moved.push(p.last_activity("/").await? > before);
        }
        assert_eq!(moved[0], moved[1], "{what}: activity moved (real, ours)");
    }
    // Websocket: server pushes do not count, client frames do.
    let mut moved = Vec::new();
    for (_, p) in pair.each() {
        let (mut sock, _) = ws::connect(p.port(), "/?push_ms=100", &[]).await?;
        ws::next_text(&mut sock).await?;
        let before = p.last_activity("/").await?;
        for _ in 0..4 {
            ws::next_text(&mut sock).await?;
        }
        tokio::time::sleep(Duration::from_millis(80)).await;
        let after_pushes = p.last_activity("/").await?;
        ws::send_text(&mut sock, "client").await?;
        tokio::time::sleep(Duration::from_millis(80)).await;
        let after_client = p.last_activity("/").await?;
        moved.push((after_pushes > before, after_client > after_pushes));
    }
    assert_eq!(moved[0], moved[1], "websocket activity (real, ours)");
    assert_eq!(moved[0], (false, true));
    Ok(())
}

#[tokio::test]
async fn metrics_match_except_quantiles_and_nodejs() -> TestResult {
    let up = echo("up").await;
    let pair = Pair::start(|b| b.default_target(&up.url()).metrics()).await;
    for (_, p) in pair.each() {
        p.add_route("/x", &up.url()).await?;
        p.routes().await?;
        p.delete_route("/x").await?;
        p.api_delete("/missing").await?;
        for target in ["/a", "/b", "/_chp_healthz"] {
            p.request(&RawRequest::get(target)).await?;
        }
        p.request(&RawRequest::get("/nf").header("x-echo-status", "404"))
            .await?;
        let (mut sock, _) = ws::connect(p.port(), "/", &[]).await?;
        ws::next_text(&mut sock).await?;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let real = pair.real.metrics().await?;
    let ours = pair.ours.metrics().await?;
    for (name, labels) in [
        ("api_route_get", &[][..]),
        ("api_route_add", &[][..]),
        ("api_route_delete", &[][..]),
        ("requests_web", &[][..]),
        ("requests_ws", &[][..]),
        ("requests_proxy", &[("status", "200")][..]),
        ("requests_proxy", &[("status", "404")][..]),
        ("requests_api", &[("status", "200")][..]),
        ("requests_api", &[("status", "201")][..]),
        ("requests_api", &[("status", "204")][..]),
        ("requests_api", &[("status", "404")][..]),
        ("find_target_for_req_count", &[][..]),
    ] {
        assert_eq!(
            real.value_or_zero(name, labels),
            ours.value_or_zero(name, labels),
            "{name}{labels:?} (real, ours)"
        );
    }
    let real_names = real.names();
    let ours_names = ours.names();
    for name in &real_names {
        if name.starts_with("nodejs_") || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            continue;
        }
        let quantile_family = real
            .samples
            .iter()
            .any(|s| &s.name == name && s.labels.contains_key("quantile"));
        if quantile_family {
            assert!(
                !ours_names.contains(name),
                "{name} has no bare samples in ours"
            );
            continue;
        }
        if [
            "process_cpu_user_seconds_total",
            "process_cpu_system_seconds_total",
            "process_virtual_memory_bytes",
            "process_heap_bytes",
            "process_max_fds",
        ]
        .contains(&name.as_str())
        {
            continue;
        }
        assert!(ours_names.contains(name), "ours lacks {name}");
    }
    assert!(real_names.iter().any(|n| n.starts_with("nodejs_")));
    assert!(!ours_names.iter().any(|n| n.starts_with("nodejs_")));
    Ok(())
}

#[tokio::test]
async fn timeouts_match() -> TestResult {
    let up = echo("up").await;
    let pair = Pair::start(|b| b.default_target(&up.url()).args(["--proxy-timeout", "300"])).await;
    let (real, ours) = pair
        .request(&RawRequest::get("/slow").header("x-echo-delay-ms", "2000"))
        .await;
    assert_eq!((real.status, ours.status), (503, 503), "--proxy-timeout");
    let pair = Pair::start(|b| b.default_target(&up.url()).args(["--timeout", "300"])).await;
    for (side, p) in pair.each() {
        let result = p
            .request(&with_host(
                &RawRequest::get("/slow").header("x-echo-delay-ms", "2000"),
            ))
            .await;
        assert!(
            result.is_err(),
            "{side}: --timeout gave a response {result:?}"
        );
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------
// TLS, unix sockets, CLI

#[tokio::test]
async fn insecure_differs_deliberately() -> TestResult {
    let certs = TestCerts::generate("diff")?;
    let secure = Upstream::start_tls(
        "secure",
        UpstreamMode::Echo,
        certs.server_config(false, &[])?,
    )
    .await?;
    let pair = Pair::start(|b| b.arg("--insecure")).await;
    pair.add_route("/s", &secure.url()).await;
    let (real, ours) = pair.request(&RawRequest::get("/s/x")).await;
    assert_eq!(
        (real.status, ours.status),
        (503, 200),
        "--insecure (real, ours)"
    );
    Ok(())
}

#[tokio::test]
async fn client_certificates_toward_targets_match() -> TestResult {
    let certs = TestCerts::generate("diff")?;
    let secure = Upstream::start_tls(
        "secure",
        UpstreamMode::Echo,
        certs.server_config(true, &[])?,
    )
    .await?;
    let key = certs.client_key_path().to_string_lossy().into_owned();
    let cert = certs.client_cert_path().to_string_lossy().into_owned();
    let ca = certs.ca_path().to_string_lossy().into_owned();
    let pair = Pair::start(|b| {
        b.args([
            "--client-ssl-key",
            &key,
            "--client-ssl-cert",
            &cert,
            "--client-ssl-ca",
            &ca,
        ])
    })
    .await;
    pair.add_route("/s", &secure.url()).await;
    // Node takes the TLS server name from the forwarded Host header, so CHP only verifies the
    // target when the client's Host is a name in the target's certificate.
    let (real, _) = pair
        .same(&RawRequest::get("/s/x?y=1").header("Host", "localhost:8000"))
        .await;
    assert_eq!(real.status, 200);
    let resp = pair
        .real
        .request(&RawRequest::get("/s/x").header("Host", HOST))
        .await?;
    assert_eq!(
        resp.status, 503,
        "real CHP checks the target certificate against {HOST}"
    );
    Ok(())
}

#[tokio::test]
async fn public_tls_matches() -> TestResult {
    let certs = Arc::new(TestCerts::generate("diff")?);
    let up = echo("up").await;
    let pair = Pair::start(|b| b.default_target(&up.url()).public_tls(&certs)).await;
    let (real, _) = pair.same(&RawRequest::get("/x?y=1")).await;
    assert_eq!(real.json()?["headers"]["x-forwarded-proto"], json!("https"));
    pair.same(&RawRequest::get("/x").header("Host", "proxy.test"))
        .await;
    Ok(())
}

#[tokio::test]
async fn unix_socket_targets_match() -> TestResult {
    let unix = Upstream::start_unix("unix", UpstreamMode::Echo).await?;
    let pair = Pair::start(|b| b).await;
    pair.add_route("/u", &unix.url()).await;
    pair.add_route(
        "/alias",
        &unix.url().replacen("http+unix://", "unix+http://", 1),
    )
    .await;
    let (real, _) = pair.same(&RawRequest::get("/u/x?y=1")).await;
    assert_eq!(real.status, 200);
    pair.same(&RawRequest::get("/alias/z")).await;
    Ok(())
}

#[tokio::test]
async fn redirect_port_matches() -> TestResult {
    let certs = Arc::new(TestCerts::generate("diff")?);
    let up = echo("up").await;
    let ports = [free_port(), free_port()];
    let real = Proxy::real()
        .default_target(&up.url())
        .public_tls(&certs)
        .args([
            "--redirect-port",
            &ports[0].to_string(),
            "--redirect-to",
            "9443",
        ])
        .start()
        .await?;
    let ours = Proxy::ours()
        .default_target(&up.url())
        .public_tls(&certs)
        .args([
            "--redirect-port",
            &ports[1].to_string(),
            "--redirect-to",
            "9443",
        ])
        .start()
        .await?;
    let mut locations = Vec::new();
    for port in ports {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let resp = loop {
            match RawRequest::get("/some/path?q=1")
                .header("Host", "proxy.test:80")
                .send(port)
                .await
            {
                Ok(resp) => break resp,
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("redirect port {port}: {e:#}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        locations.push((resp.status, resp.header("location").map(str::to_owned)));
    }
    assert_eq!(locations[0], locations[1], "redirect (real, ours)");
    assert_eq!(
        locations[0],
        (
            301,
            Some("https://proxy.test:9443/some/path?q=1".to_owned())
        )
    );
    drop((real, ours));
    Ok(())
}

#[tokio::test]
async fn cli_errors_match() -> TestResult {
    workspace_tests::bins::chp_real();
    let mut storage = Vec::new();
    for builder in [Proxy::real(), Proxy::ours()] {
        let exited = builder.run_to_exit(
            &[
                "--ip",
                "127.0.0.1",
                "--port",
                &free_port().to_string(),
                "--api-ip",
                "127.0.0.1",
                "--api-port",
                &free_port().to_string(),
                "--storage-backend",
                "no-such-backend-module",
            ],
            Duration::from_secs(10),
        )?;
        storage.push(exited.status.success());
    }
    assert_eq!(
        storage,
        vec![false, false],
        "unknown --storage-backend (real, ours)"
    );
    for bad in ["invalid", ": value"] {
        let mut outcomes = Vec::new();
        for builder in [Proxy::real(), Proxy::ours()] {
            let exited = builder.run_to_exit(
                &[
                    "--ip",
                    "127.0.0.1",
                    "--port",
                    &free_port().to_string(),
                    "--api-ip",
                    "127.0.0.1",
                    "--api-port",
                    &free_port().to_string(),
                    "--custom-header",
                    bad,
                ],
                Duration::from_secs(10),
            )?;
            outcomes.push((
                exited.status.success(),
                exited.stderr.to_lowercase().contains("colon was expected"),
            ));
        }
        assert_eq!(
            outcomes,
            vec![(false, true), (false, true)],
            "--custom-header {bad:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn sigterm_matches() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut outcomes = Vec::new();
    for (i, builder) in [Proxy::real(), Proxy::ours()].into_iter().enumerate() {
        let pid_file = dir.path().join(format!("{i}.pid"));
        let mut p = builder
            .args(["--pid-file", &pid_file.to_string_lossy()])
            .start()
            .await?;
        let written = std::fs::read_to_string(&pid_file)?.trim() == p.pid().to_string();
        // A signal that arrives before the handlers are installed takes the default action.
        tokio::time::sleep(Duration::from_millis(300)).await;
        p.signal(nix::sys::signal::Signal::SIGTERM)?;
        let status = p.wait_exit(Duration::from_secs(5)).await?;
        outcomes.push((written, status.code(), pid_file.exists()));
    }
    assert_eq!(outcomes[0], outcomes[1], "SIGTERM (real, ours)");
    assert_eq!(outcomes[0], (true, Some(2), false));
    Ok(())
}
