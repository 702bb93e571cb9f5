//! Conformance of `chp-proxy` with configurable-http-proxy 5.x, as seen from outside: every
//! behaviour of CHP's own test suite that applies to a standalone binary, the behaviours that
//! suite does not cover, and the deliberate differences of our proxy.
//!
//! Each test starts its own proxy on free loopback ports with in-process upstreams.
//! Run `cargo build -p chp-proxy` first (or set `CHP_PROXY_BIN`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use workspace_tests::proxy::{Endpoint, Proxy, ProxyBuilder};
use workspace_tests::raw::{Conn, Liveness, RawRequest, RawResponse, ws_upgrade};
use workspace_tests::tls::TestCerts;
use workspace_tests::upstream::{Upstream, UpstreamMode};
use workspace_tests::{TOKEN, free_port, ws};

type TestResult = anyhow::Result<()>;

async fn echo(name: &str) -> Upstream {
    Upstream::echo(name)
        .await
        .expect("starting an echo upstream")
}

async fn start(builder: ProxyBuilder) -> Proxy {
    builder.start().await.expect("starting chp-proxy")
}

async fn with_default(up: &Upstream) -> Proxy {
    start(Proxy::ours().default_target(&up.url())).await
}

fn name(echo: &Value) -> &str {
    echo["name"].as_str().unwrap_or_default()
}

fn url(echo: &Value) -> &str {
    echo["url"].as_str().unwrap_or_default()
}

fn hdr<'a>(echo: &'a Value, header: &str) -> Option<&'a str> {
    echo["headers"][header].as_str()
}

/// Lets asynchronous bookkeeping (activity updates after a response) settle.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(80)).await;
}

/// Makes sure the millisecond clock moves on before the next action.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// A target URL on a loopback port where nothing listens.
fn dead_target() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

fn certs() -> Arc<TestCerts> {
    Arc::new(TestCerts::generate("chp").expect("generating test certificates"))
}

async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(workspace_tests::loopback(port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_for_output(proxy: &Proxy, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if proxy.stdout().contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

fn assert_bare(resp: &RawResponse, status: u16) {
    assert_eq!(resp.status, status, "status of {resp:?}");
    assert_eq!(
        resp.header("content-length"),
        Some("0"),
        "bare response needs Content-Length: 0: {resp:?}"
    );
    assert!(resp.body.is_empty(), "bare response has a body: {resp:?}");
}

// -------------------------------------------------------------------------------------------
mod api {
    use super::*;

    #[tokio::test]
    async fn listing_includes_default_route() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let routes = p.routes().await?;
        assert_eq!(routes.keys().collect::<Vec<_>>(), vec!["/"], "{routes:?}");
        assert_eq!(routes["/"]["target"], json!(up.url()));
        let la = routes["/"]["last_activity"].as_str().unwrap_or_default();
        workspace_tests::parse_last_activity(la)?;
        Ok(())
    }

    #[tokio::test]
    async fn listing_is_json_with_and_without_trailing_slash() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        for path in ["", "/"] {
            let resp = p.api_get(path).await?;
            assert_eq!(resp.status, 200, "GET /api/routes{path}");
            assert_eq!(resp.media_type().as_deref(), Some("application/json"));
            let listing = resp.json()?;
            assert!(listing.get("/").is_some(), "{listing}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn default_target_serves_root_and_any_path() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        for path in ["/", "/any/random/url", "/any/random/url?x=1"] {
            let e = p.get_echo(path).await?;
            assert_eq!(name(&e), "default");
            assert_eq!(url(&e), path);
        }
        Ok(())
    }

    #[tokio::test]
    async fn get_single_route_returns_data_object_only() -> TestResult {
        let up = echo("u").await;
        let p = with_default(&up).await;
        let data =
            json!({"target": up.url(), "jupyterhub": true, "user": "foo", "server_name": ""});
        p.add_route_data("/user/foo", &data).await?;
        let resp = p.api_get("/user/foo").await?;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.media_type().as_deref(), Some("application/json"));
        let got = resp.json()?;
        assert_eq!(got["target"], json!(up.url()));
        assert_eq!(got["jupyterhub"], json!(true));
        assert_eq!(got["user"], json!("foo"));
        assert_eq!(got["server_name"], json!(""));
        assert!(got.get("/user/foo").is_none(), "no key wrapper: {got}");
        workspace_tests::parse_last_activity(got["last_activity"].as_str().unwrap_or_default())?;
        // The trailing-slash form names the same route.
        assert_eq!(p.api_get("/user/foo/").await?.status, 200);
        Ok(())
    }

    #[tokio::test]
    async fn get_missing_route_is_404_with_empty_body() -> TestResult {
        let up = echo("u").await;
        let p = with_default(&up).await;
        let resp = p.api_get("/user/nobody").await?;
        assert_eq!(resp.status, 404);
        assert!(resp.body.is_empty(), "{:?}", resp.text());
        Ok(())
    }

    #[tokio::test]
    async fn post_creates_route_with_empty_201() -> TestResult {
        let default = echo("default").await;
        let foo = echo("foo").await;
        let p = with_default(&default).await;
        let resp = p
            .api_post("/user/foo", &json!({"target": foo.url()}))
            .await?;
        assert_eq!(resp.status, 201);
        assert!(resp.body.is_empty(), "{:?}", resp.text());
        let routes = p.routes().await?;
        assert_eq!(routes["/user/foo"]["target"], json!(foo.url()));
        let la = workspace_tests::parse_last_activity(
            routes["/user/foo"]["last_activity"]
                .as_str()
                .unwrap_or_default(),
        )?;
        let age = chrono::Utc::now() - la;
        assert!(
            age < chrono::TimeDelta::seconds(10) && age > chrono::TimeDelta::seconds(-2),
            "last_activity {la} is not 'now'"
        );
        assert_eq!(name(&p.get_echo("/user/foo/x").await?), "foo");
        assert_eq!(name(&p.get_echo("/user/foox").await?), "default");
        Ok(())
    }

    #[tokio::test]
    async fn post_decodes_uri_escapes_in_keys() -> TestResult {
        let default = echo("default").await;
        let foo = echo("foo@bar").await;
        let p = with_default(&default).await;
        p.add_route("/user/foo%40bar", &foo.url()).await?;
        let routes = p.routes().await?;
        assert!(routes.contains_key("/user/foo@bar"), "{routes:?}");
        assert!(!routes.contains_key("/user/foo%40bar"), "{routes:?}");
        assert_eq!(name(&p.get_echo("/user/foo@bar/path").await?), "foo@bar");
        assert_eq!(name(&p.get_echo("/user/foo%40bar/path").await?), "foo@bar");
        assert_eq!(p.api_get("/user/foo@bar").await?.status, 200);
        Ok(())
    }

    #[tokio::test]
    async fn post_without_path_creates_root_route() -> TestResult {
        let up = echo("root").await;
        let p = start(Proxy::ours()).await;
        assert!(p.routes().await?.is_empty());
        p.add_route("", &up.url()).await?;
        assert_eq!(
            p.routes().await?.keys().collect::<Vec<_>>(),
            vec!["/"],
            "POST /api/routes"
        );
        p.delete_route("/").await?;
        assert!(p.routes().await?.is_empty());
        p.add_route("/", &up.url()).await?;
        assert_eq!(
            p.routes().await?.keys().collect::<Vec<_>>(),
            vec!["/"],
            "POST /api/routes/"
        );
        assert_eq!(name(&p.get_echo("/whatever").await?), "root");
        Ok(())
    }

    #[tokio::test]
    async fn delete_removes_route_with_empty_204() -> TestResult {
        let up = echo("u").await;
        let p = start(Proxy::ours()).await;
        p.add_route("/user/foo", &up.url()).await?;
        assert_eq!(p.get("/user/foo/x").await?.status, 200);
        let resp = p.api_delete("/user/foo").await?;
        assert_eq!(resp.status, 204);
        assert!(resp.body.is_empty());
        assert_eq!(p.api_get("/user/foo").await?.status, 404);
        assert_eq!(p.get("/user/foo/x").await?.status, 404);
        assert_eq!(p.api_delete("/user/foo").await?.status, 404);
        Ok(())
    }

    /// Deliberate difference: CHP never answers `DELETE /api/routes` (no slash).
    #[tokio::test]
    async fn delete_without_slash_deletes_root() -> TestResult {
        let up = echo("u").await;
        let p = with_default(&up).await;
        let resp = p
            .api_request(RawRequest::new("DELETE", "/api/routes"))
            .await?;
        assert_eq!(resp.status, 204);
        assert!(p.routes().await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn inactive_since_invalid_is_400() -> TestResult {
        let up = echo("u").await;
        let p = with_default(&up).await;
        for param in ["inactive_since", "inactiveSince"] {
            let resp = p.api_get(&format!("?{param}=bogus")).await?;
            assert_eq!(resp.status, 400, "{param}");
            assert_eq!(resp.text(), "Invalid datestamp 'bogus' must be ISO8601.");
        }
        Ok(())
    }

    #[tokio::test]
    async fn inactive_since_filters_strictly_earlier() -> TestResult {
        let up = echo("u").await;
        let p = start(Proxy::ours()).await;
        p.add_route("/yesterday", &up.url()).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mid = workspace_tests::format_js_date(chrono::Utc::now());
        tokio::time::sleep(Duration::from_millis(50)).await;
        p.add_route("/today", &up.url()).await?;
        let future =
            workspace_tests::format_js_date(chrono::Utc::now() + chrono::TimeDelta::hours(1));
        let keys = |v: Value| -> Vec<String> {
            let mut k: Vec<String> = v
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            k.sort();
            k
        };
        let list = |q: String| {
            let p = &p;
            async move {
                let resp = p.api_get(&q).await?;
                anyhow::ensure!(resp.status == 200, "{q}: {}", resp.status);
                resp.json()
            }
        };
        for param in ["inactive_since", "inactiveSince"] {
            let none = list(format!("?{param}=1970-01-01T00:00:00.000Z")).await?;
            assert_eq!(keys(none), Vec::<String>::new(), "{param}=epoch");
            let some = list(format!("?{param}={mid}")).await?;
            assert_eq!(keys(some), vec!["/yesterday"], "{param}={mid}");
            let all = list(format!("?{param}={future}")).await?;
            assert_eq!(keys(all), vec!["/today", "/yesterday"], "{param}={future}");
            let date_only = list(format!("?{param}=2000-01-01")).await?;
            assert_eq!(keys(date_only), Vec::<String>::new(), "{param}=2000-01-01");
        }
        // Strictly earlier: a route whose last_activity equals the cutoff is not listed.
        let routes = p.routes().await?;
        let exact = routes["/yesterday"]["last_activity"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let at = list(format!("?inactive_since={exact}")).await?;
        assert_eq!(keys(at), Vec::<String>::new(), "cutoff == last_activity");
        let just_after = workspace_tests::format_js_date(
            workspace_tests::parse_last_activity(&exact)? + chrono::TimeDelta::milliseconds(1),
        );
        let after = list(format!("?inactive_since={just_after}")).await?;
        assert_eq!(keys(after), vec!["/yesterday"], "cutoff 1 ms later");
        // The camel-case parameter wins when both are given.
        let both = list(format!(
            "?inactive_since={future}&inactiveSince=1970-01-01T00:00:00.000Z"
        ))
        .await?;
        assert_eq!(keys(both), Vec::<String>::new(), "inactiveSince wins");
        Ok(())
    }

    #[tokio::test]
    async fn auth_rejects_missing_and_wrong_credentials() -> TestResult {
        let up = echo("u").await;
        let p = with_default(&up).await;
        // Proxy::api_request adds the token, so the unauthenticated request goes by hand.
        let mut conn = p.api.connect().await?;
        let resp = conn.exchange(&RawRequest::get("/api/routes")).await?;
        assert_eq!(resp.status, 403, "no Authorization header");
        assert!(resp.body.is_empty(), "403 body: {:?}", resp.text());
        for value in [
            "token wrong",
            "token",
            "Bearer secret",
            "secret",
            "xtoken secret",
            "token secret extra",
            "token secretx",
            "token secre",
        ] {
            let resp = p
                .api_request(RawRequest::get("/api/routes").header("Authorization", value))
                .await?;
            assert_eq!(resp.status, 403, "Authorization: {value}");
            assert!(
                resp.body.is_empty(),
                "403 body for {value}: {:?}",
                resp.text()
            );
        }
        Ok(())
    }

    /// Deliberate difference: the scheme is matched case-insensitively (CHP: case-sensitive).
    #[tokio::test]
    async fn auth_scheme_is_case_insensitive() -> TestResult {
        let up = echo("u").await;
        let p = with_default(&up).await;
        for value in ["token secret", "Token secret", "TOKEN secret"] {
            let resp = p
                .api_request(RawRequest::get("/api/routes").header("Authorization", value))
                .await?;
            assert_eq!(resp.status, 200, "Authorization: {value}");
        }
        Ok(())
    }

    /// Deliberate difference: the token is checked before the body is read (CHP: 400 first).
    #[tokio::test]
    async fn auth_is_checked_before_the_body() -> TestResult {
        let up = echo("u").await;
        let p = with_default(&up).await;
        for auth in [None, Some("token wrong")] {
            let mut req = RawRequest::new("POST", "/api/routes/x").body("{not json");
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let resp = p.api.connect().await?.exchange(&req).await?;
            assert_eq!(resp.status, 403, "auth {auth:?} with invalid JSON");
        }
        let resp = p
            .api_request(RawRequest::new("POST", "/api/routes/x").body("{not json"))
            .await?;
        assert_eq!(resp.status, 400, "valid token with invalid JSON");
        Ok(())
    }

    #[tokio::test]
    async fn auth_applies_to_post_and_delete() -> TestResult {
        let up = echo("u").await;
        let p = with_default(&up).await;
        let body = json!({"target": up.url()}).to_string();
        let resp = p
            .api
            .connect()
            .await?
            .exchange(&RawRequest::new("POST", "/api/routes/x").body(body))
            .await?;
        assert_eq!(resp.status, 403);
        let resp = p
            .api
            .connect()
            .await?
            .exchange(&RawRequest::new("DELETE", "/api/routes/"))
            .await?;
        assert_eq!(resp.status, 403);
        let routes = p.routes().await?;
        assert_eq!(routes.keys().collect::<Vec<_>>(), vec!["/"], "{routes:?}");
        Ok(())
    }

    #[tokio::test]
    async fn no_token_means_open_api() -> TestResult {
        let up = echo("u").await;
        let p = start(Proxy::ours().no_token()).await;
        let mut conn = p.api.connect().await?;
        let resp = conn
            .exchange(
                &RawRequest::new("POST", "/api/routes/open")
                    .body(json!({"target": up.url()}).to_string()),
            )
            .await?;
        assert_eq!(resp.status, 201);
        let resp = p
            .api
            .connect()
            .await?
            .exchange(&RawRequest::get("/api/routes"))
            .await?;
        assert_eq!(resp.status, 200);
        assert!(resp.json()?.get("/open").is_some());
        Ok(())
    }

    #[tokio::test]
    async fn empty_token_means_open_api() -> TestResult {
        let p = start(Proxy::ours().token("")).await;
        let resp = p
            .api
            .connect()
            .await?
            .exchange(&RawRequest::get("/api/routes"))
            .await?;
        assert_eq!(resp.status, 200);
        Ok(())
    }

    #[tokio::test]
    async fn unsupported_methods_are_405_even_without_auth() -> TestResult {
        let p = start(Proxy::ours()).await;
        for method in ["PUT", "PATCH"] {
            for path in ["/api/routes", "/api/routes/x"] {
                let resp = p
                    .api
                    .connect()
                    .await?
                    .exchange(&RawRequest::new(method, path).body("{}"))
                    .await?;
                assert_eq!(resp.status, 405, "{method} {path} without auth");
                assert_eq!(resp.text(), "Method not supported");
                let resp = p
                    .api_request(RawRequest::new(method, path).body("{}"))
                    .await?;
                assert_eq!(resp.status, 405, "{method} {path} with auth");
            }
        }
        Ok(())
    }

    #[tokio::test]
    async fn other_api_paths_are_404() -> TestResult {
        let p = start(Proxy::ours()).await;
        for path in ["/api/", "/api", "/", "/other", "/_chp_healthz"] {
            let resp = p.api_request(RawRequest::get(path)).await?;
            assert_eq!(resp.status, 404, "GET {path} on the API port");
        }
        let resp = p.api_request(RawRequest::get("/api/")).await?;
        assert_eq!(resp.text(), "Not Found");
        Ok(())
    }

    #[tokio::test]
    async fn invalid_json_is_400() -> TestResult {
        let p = start(Proxy::ours()).await;
        for body in ["{not json", "", "{\"target\": \"http://x\""] {
            let resp = p
                .api_request(RawRequest::new("POST", "/api/routes/x").body(body))
                .await?;
            assert_eq!(resp.status, 400, "body {body:?}");
            assert!(
                resp.text().starts_with("Body not valid JSON: "),
                "body {body:?} gave {:?}",
                resp.text()
            );
        }
        assert!(p.routes().await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn target_must_be_a_string() -> TestResult {
        let p = start(Proxy::ours()).await;
        for body in [
            json!({"target": 5}),
            json!([]),
            json!(["http://127.0.0.1:1"]),
            json!(null),
            json!({}),
            json!({"targets": "http://127.0.0.1:1"}),
            json!({"target": null}),
        ] {
            let resp = p.api_post("/x", &body).await?;
            assert_eq!(resp.status, 400, "body {body}");
            assert_eq!(
                resp.text(),
                "Must specify 'target' as string",
                "body {body}"
            );
        }
        assert!(p.routes().await?.is_empty());
        Ok(())
    }

    /// Deliberate difference: CHP accepts any string and fails at request time with 500.
    #[tokio::test]
    async fn target_must_be_a_valid_url() -> TestResult {
        let p = start(Proxy::ours()).await;
        for target in [
            "not a url",
            "ftp://127.0.0.1/x",
            "/relative/path",
            "ws://127.0.0.1:1",
        ] {
            let resp = p.api_post("/x", &json!({ "target": target })).await?;
            assert_eq!(resp.status, 400, "target {target:?}");
            assert_eq!(
                resp.text(),
                "Must specify 'target' as a valid URL",
                "target {target:?}"
            );
        }
        assert!(p.routes().await?.is_empty());
        for (i, target) in [
            "http://127.0.0.1:1",
            "https://127.0.0.1:1/prefix",
            "http+unix://%2Ftmp%2Fsock",
            "unix+http://%2Ftmp%2Fsock",
        ]
        .iter()
        .enumerate()
        {
            let resp = p
                .api_post(&format!("/ok{i}"), &json!({ "target": target }))
                .await?;
            assert_eq!(resp.status, 201, "target {target:?}: {:?}", resp.text());
        }
        Ok(())
    }

    /// Deliberate difference: CHP has no body-size limit.
    #[tokio::test]
    async fn body_over_one_mib_is_413() -> TestResult {
        let up = echo("u").await;
        let p = start(Proxy::ours()).await;
        let big = json!({"target": up.url(), "pad": "x".repeat(1024 * 1024 + 100)});
        let resp = p.api_post("/big", &big).await?;
        assert_eq!(resp.status, 413);
        let fits = json!({"target": up.url(), "pad": "x".repeat(900 * 1024)});
        let resp = p.api_post("/fits", &fits).await?;
        assert_eq!(resp.status, 201);
        let routes = p.routes().await?;
        assert!(routes.contains_key("/fits") && !routes.contains_key("/big"));
        Ok(())
    }

    #[tokio::test]
    async fn unauthenticated_oversized_body_is_403() -> TestResult {
        let p = start(Proxy::ours()).await;
        let big = "x".repeat(2 * 1024 * 1024);
        let resp = p
            .api
            .connect()
            .await?
            .exchange(&RawRequest::new("POST", "/api/routes/big").body(big))
            .await?;
        assert_eq!(resp.status, 403);
        Ok(())
    }

    /// Deliberate difference: CHP never answers these.
    #[tokio::test]
    async fn malformed_escape_in_api_path_is_400() -> TestResult {
        let up = echo("u").await;
        let p = with_default(&up).await;
        for path in ["/api/routes/%", "/api/routes/%zz", "/api/routes/a%2"] {
            let resp = p.api_request(RawRequest::get(path)).await?;
            assert_eq!(resp.status, 400, "GET {path}");
            let resp = p
                .api_request(
                    RawRequest::new("POST", path).body(json!({"target": up.url()}).to_string()),
                )
                .await?;
            assert_eq!(resp.status, 400, "POST {path}");
            let resp = p.api_request(RawRequest::new("DELETE", path)).await?;
            assert_eq!(resp.status, 400, "DELETE {path}");
        }
        assert_eq!(p.routes().await?.len(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn keys_are_normalised() -> TestResult {
        let up = echo("u").await;
        let p = start(Proxy::ours()).await;
        p.add_route("/a/", &up.url()).await?;
        p.add_route("/c//d", &up.url()).await?;
        p.add_route("/q?x=1", &up.url()).await?;
        p.add_route("/user/a%2Fb", &up.url()).await?;
        let mut keys: Vec<String> = p.routes().await?.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, vec!["/a", "/c//d", "/q", "/user/a/b"]);
        assert_eq!(p.api_get("/a/").await?.status, 200);
        assert_eq!(p.api_get("/a").await?.status, 200);
        p.delete_route("/a/").await?;
        assert_eq!(p.api_get("/a").await?.status, 404);
        Ok(())
    }

    #[tokio::test]
    async fn post_replaces_data_and_overrides_last_activity() -> TestResult {
        let up = echo("u").await;
        let p = start(Proxy::ours()).await;
        p.add_route_data("/r", &json!({"target": up.url(), "a": 1}))
            .await?;
        p.add_route_data(
            "/r",
            &json!({"target": up.url(), "b": {"nested": [1, 2]}, "last_activity": "2000-01-01T00:00:00.000Z"}),
        )
        .await?;
        let data = p.api_get("/r").await?.json()?;
        assert!(data.get("a").is_none(), "old data kept: {data}");
        assert_eq!(data["b"], json!({"nested": [1, 2]}));
        let la = data["last_activity"].as_str().unwrap_or_default();
        assert_ne!(la, "2000-01-01T00:00:00.000Z");
        let la = workspace_tests::parse_last_activity(la)?;
        assert!(chrono::Utc::now() - la < chrono::TimeDelta::seconds(10));
        Ok(())
    }

    #[tokio::test]
    async fn special_keys_round_trip() -> TestResult {
        let up = echo("special").await;
        let p = start(Proxy::ours()).await;
        let cases = [
            ("/has%20space/foo", "/has space/foo"),
            ("/has/@", "/has/@"),
            ("/has/%40x", "/has/@x"),
            ("/~user/x", "/~user/x"),
            ("/%C3%BC%C3%B1%C3%AE%C3%A7%C3%B8%E2%88%82%C3%A9", "/üñîçø∂é"),
        ];
        for (path, key) in cases {
            p.add_route(path, &up.url()).await?;
            let routes = p.routes().await?;
            assert!(routes.contains_key(key), "{path} -> {key}: {routes:?}");
            let resp = p.api_get(path).await?;
            assert_eq!(resp.status, 200, "GET {path}");
            assert_eq!(resp.json()?["target"], json!(up.url()));
            let resp = p.get(&format!("{path}/sub")).await?;
            assert_eq!(resp.status, 200, "proxied {path}/sub");
            p.delete_route(path).await?;
            assert!(!p.routes().await?.contains_key(key));
        }
        Ok(())
    }

    #[tokio::test]
    async fn listing_is_compact_with_raw_utf8() -> TestResult {
        let up = echo("u").await;
        let p = start(Proxy::ours()).await;
        p.add_route("/%C3%BC", &up.url()).await?;
        let resp = p.api_get("").await?;
        let text = resp.text();
        assert!(text.contains("\"/ü\""), "{text}");
        assert!(!text.contains('\n'), "{text}");
        Ok(())
    }
}

// -------------------------------------------------------------------------------------------
mod cli {
    use super::*;

    #[tokio::test]
    async fn default_target_is_logged_and_served() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        assert_eq!(name(&p.get_echo("/").await?), "default");
        assert!(
            wait_for_output(&p, "Route added / ->").await,
            "no 'Route added / ->' on stdout\n{}",
            p.output()
        );
        let listening = format!("Proxying http://127.0.0.1:{}", p.port());
        assert!(
            wait_for_output(&p, &listening).await,
            "no '{listening}' on stdout\n{}",
            p.output()
        );
        Ok(())
    }

    #[tokio::test]
    async fn basic_https_request() -> TestResult {
        let c = certs();
        let up = echo("default").await;
        let p = start(Proxy::ours().default_target(&up.url()).public_tls(&c)).await;
        let client = c.reqwest_client(false)?;
        let resp = client.get(p.url("/some/path")).send().await?;
        assert_eq!(resp.status(), 200);
        let e: Value = resp.json().await?;
        assert_eq!(name(&e), "default");
        assert_eq!(url(&e), "/some/path");
        assert_eq!(hdr(&e, "x-forwarded-proto"), Some("https"));
        Ok(())
    }

    #[tokio::test]
    async fn redirect_port_sends_301_to_https() -> TestResult {
        let c = certs();
        let up = echo("default").await;
        let redirect = free_port();
        let p = start(
            Proxy::ours()
                .default_target(&up.url())
                .public_tls(&c)
                .args(["--redirect-port", &redirect.to_string()]),
        )
        .await;
        wait_for_port(redirect).await;
        let resp = RawRequest::get("/some/path?q=1")
            .header("Host", &format!("127.0.0.1:{redirect}"))
            .send(redirect)
            .await?;
        assert_eq!(resp.status, 301);
        let location = resp.header("location").unwrap_or_default().to_owned();
        assert_eq!(
            location,
            format!("https://127.0.0.1:{}/some/path?q=1", p.port())
        );
        let followed = c.reqwest_client(false)?.get(&location).send().await?;
        assert_eq!(followed.status(), 200);
        let e: Value = followed.json().await?;
        assert_eq!(url(&e), "/some/path?q=1");
        Ok(())
    }

    #[tokio::test]
    async fn redirect_to_sets_the_port() -> TestResult {
        let c = certs();
        let up = echo("default").await;
        // Port 443 may be written out or left implicit: both are the same URL.
        for (to, expected) in [
            ("9443", &["https://127.0.0.1:9443/x"][..]),
            (
                "443",
                &["https://127.0.0.1/x", "https://127.0.0.1:443/x"][..],
            ),
        ] {
            let redirect = free_port();
            let _p = start(
                Proxy::ours()
                    .default_target(&up.url())
                    .public_tls(&c)
                    .args([
                        "--redirect-port",
                        &redirect.to_string(),
                        "--redirect-to",
                        to,
                    ]),
            )
            .await;
            wait_for_port(redirect).await;
            let resp = RawRequest::get("/x")
                .header("Host", &format!("127.0.0.1:{redirect}"))
                .send(redirect)
                .await?;
            assert_eq!(resp.status, 301);
            let location = resp.header("location").unwrap_or_default();
            assert!(
                expected.contains(&location),
                "--redirect-to {to}: {location}"
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn redirect_without_host_is_400() -> TestResult {
        let c = certs();
        let up = echo("default").await;
        let redirect = free_port();
        let _p = start(
            Proxy::ours()
                .default_target(&up.url())
                .public_tls(&c)
                .args(["--redirect-port", &redirect.to_string()]),
        )
        .await;
        wait_for_port(redirect).await;
        let mut conn = Conn::tcp(redirect).await?;
        conn.write(b"GET /x HTTP/1.0\r\n\r\n").await?;
        let resp = workspace_tests::within("redirect reply", conn.read_response(false)).await??;
        assert_eq!(resp.status, 400);
        Ok(())
    }

    #[tokio::test]
    async fn redirect_port_requires_tls() -> TestResult {
        let exited = Proxy::ours().run_to_exit(
            &[
                "--ip",
                "127.0.0.1",
                "--port",
                &free_port().to_string(),
                "--api-ip",
                "127.0.0.1",
                "--api-port",
                &free_port().to_string(),
                "--redirect-port",
                &free_port().to_string(),
            ],
            Duration::from_secs(5),
        )?;
        assert!(!exited.status.success(), "{exited:?}");
        Ok(())
    }

    #[tokio::test]
    async fn custom_headers_reach_upstream() -> TestResult {
        let up = echo("default").await;
        let p = start(Proxy::ours().default_target(&up.url()).args([
            "--custom-header",
            "k1: v1",
            "--custom-header",
            " k2 : host:123 ",
        ]))
        .await;
        let e = p.get_echo("/").await?;
        assert_eq!(hdr(&e, "k1"), Some("v1"));
        assert_eq!(hdr(&e, "k2"), Some("host:123"));
        // A client header of the same name is overridden.
        let resp = p
            .request(&RawRequest::get("/").header("k1", "from-client"))
            .await?;
        assert_eq!(hdr(&resp.json()?, "k1"), Some("v1"));
        Ok(())
    }

    #[tokio::test]
    async fn invalid_custom_header_exits() -> TestResult {
        for bad in ["invalid", ": value"] {
            let exited = Proxy::ours().run_to_exit(
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
                Duration::from_secs(5),
            )?;
            assert!(
                !exited.status.success(),
                "--custom-header {bad:?}: {exited:?}"
            );
            assert!(
                exited.stderr.to_lowercase().contains("colon was expected"),
                "--custom-header {bad:?}: stderr {:?}",
                exited.stderr
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn error_target_and_error_path_conflict() -> TestResult {
        let dir = tempfile::tempdir()?;
        let exited = Proxy::ours().run_to_exit(
            &[
                "--ip",
                "127.0.0.1",
                "--port",
                &free_port().to_string(),
                "--api-ip",
                "127.0.0.1",
                "--api-port",
                &free_port().to_string(),
                "--error-target",
                "http://127.0.0.1:1/err",
                "--error-path",
                &dir.path().to_string_lossy(),
            ],
            Duration::from_secs(5),
        )?;
        assert!(!exited.status.success(), "{exited:?}");
        Ok(())
    }

    #[tokio::test]
    async fn unknown_storage_backend_exits() -> TestResult {
        let exited = Proxy::ours().run_to_exit(
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
            Duration::from_secs(5),
        )?;
        assert!(!exited.status.success(), "{exited:?}");
        Ok(())
    }

    #[tokio::test]
    async fn socket_cannot_be_combined_with_port() -> TestResult {
        let dir = tempfile::tempdir()?;
        let sock = dir.path().join("p.sock");
        let exited = Proxy::ours().run_to_exit(
            &[
                "--socket",
                &sock.to_string_lossy(),
                "--port",
                &free_port().to_string(),
                "--api-ip",
                "127.0.0.1",
                "--api-port",
                &free_port().to_string(),
            ],
            Duration::from_secs(5),
        )?;
        assert!(!exited.status.success(), "{exited:?}");
        Ok(())
    }

    #[tokio::test]
    async fn version_flag_prints_version() -> TestResult {
        let exited = Proxy::ours().run_to_exit(&["--version"], Duration::from_secs(5))?;
        assert!(exited.status.success(), "{exited:?}");
        assert!(
            exited.stdout.chars().any(|c| c.is_ascii_digit()),
            "{exited:?}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn api_port_defaults_to_port_plus_one() -> TestResult {
        // Find a port P with P+1 free as well.
        let mut port = 0;
        for _ in 0..50 {
            let p = free_port();
            if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                port = p;
                break;
            }
        }
        assert_ne!(port, 0, "no pair of consecutive free ports");
        let p = start(
            Proxy::ours()
                .args([
                    "--ip",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--api-ip",
                    "127.0.0.1",
                ])
                .public_given(Endpoint::Tcp(port))
                .api_given(Endpoint::Tcp(port + 1)),
        )
        .await;
        assert!(p.routes().await?.is_empty());
        Ok(())
    }

    async fn signal_exit(signal: nix::sys::signal::Signal) -> TestResult {
        let dir = tempfile::tempdir()?;
        let pid_file = dir.path().join("proxy.pid");
        let mut p = start(Proxy::ours().args(["--pid-file", &pid_file.to_string_lossy()])).await;
        let written = std::fs::read_to_string(&pid_file)?;
        assert_eq!(written.trim(), p.pid().to_string());
        // Give the process a moment after its listeners open: a signal that arrives before
        // its handlers are installed takes the default action and would kill it outright.
        tokio::time::sleep(Duration::from_millis(300)).await;
        p.signal(signal)?;
        let status = p.wait_exit(Duration::from_secs(5)).await?;
        assert_eq!(status.code(), Some(2), "{signal:?}: {status:?}");
        assert!(!pid_file.exists(), "pid file left behind after {signal:?}");
        Ok(())
    }

    #[tokio::test]
    async fn sigterm_exits_2_and_removes_pid_file() -> TestResult {
        signal_exit(nix::sys::signal::Signal::SIGTERM).await
    }

    #[tokio::test]
    async fn sigint_exits_2_and_removes_pid_file() -> TestResult {
        signal_exit(nix::sys::signal::Signal::SIGINT).await
    }

    #[tokio::test]
    async fn log_level_is_case_insensitive() -> TestResult {
        let up = echo("default").await;
        let p = start(
            Proxy::ours()
                .default_target(&up.url())
                .args(["--log-level", "WARN"]),
        )
        .await;
        assert_eq!(p.get("/").await?.status, 200);
        Ok(())
    }

    #[tokio::test]
    async fn keep_alive_timeout_closes_idle_connections() -> TestResult {
        let up = echo("default").await;
        let p = start(
            Proxy::ours()
                .default_target(&up.url())
                .args(["--keep-alive-timeout", "500"]),
        )
        .await;
        let mut conn = Conn::tcp(p.port()).await?;
        let resp = conn.exchange(&RawRequest::get("/").keep_alive()).await?;
        assert_eq!(resp.status, 200);
        assert_eq!(
            conn.liveness(Duration::from_millis(2500)).await,
            Liveness::Closed
        );
        // With the default (5 s) the connection stays open for a while.
        let p = with_default(&up).await;
        let mut conn = Conn::tcp(p.port()).await?;
        conn.exchange(&RawRequest::get("/").keep_alive()).await?;
        assert_eq!(
            conn.liveness(Duration::from_millis(1500)).await,
            Liveness::Open
        );
        Ok(())
    }
}

// -------------------------------------------------------------------------------------------
mod proxy {
    use super::*;

    #[tokio::test]
    async fn basic_http_request_updates_activity() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let before = p.last_activity("/").await?;
        tick().await;
        let e = p.get_echo("/some/path").await?;
        assert_eq!(url(&e), "/some/path");
        assert_eq!(e["method"], json!("GET"));
        settle().await;
        assert!(p.last_activity("/").await? > before);
        Ok(())
    }

    #[tokio::test]
    async fn keep_alive_connection_is_reused() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let mut conn = Conn::tcp(p.port()).await?;
        for i in 0..3 {
            let resp = conn
                .exchange(&RawRequest::get(&format!("/k{i}")).keep_alive())
                .await?;
            assert_eq!(resp.status, 200);
            assert_ne!(
                resp.header("connection").map(str::to_ascii_lowercase),
                Some("close".to_owned())
            );
            assert_eq!(url(&resp.json()?), format!("/k{i}"));
        }
        Ok(())
    }

    #[tokio::test]
    async fn target_connections_are_reused_across_requests_and_clients() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        // One client connection per request (`Connection: close`) ...
        for i in 0..20 {
            assert_eq!(url(&p.get_echo(&format!("/c{i}")).await?), format!("/c{i}"));
        }
        // ... and many requests on one keep-alive connection.
        let mut conn = Conn::tcp(p.port()).await?;
        for i in 0..20 {
            let resp = conn
                .exchange(&RawRequest::get(&format!("/k{i}")).keep_alive())
                .await?;
            assert_eq!(url(&resp.json()?), format!("/k{i}"));
        }
        assert_eq!(
            up.accepted_connections(),
            1,
            "every request should reuse the first connection to the target"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_target_closing_idle_connections_costs_no_request() -> TestResult {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        // A target that answers one request per connection, keeps it alive in name, and closes
        // it 30 ms later, as servers with a short keep-alive timeout do.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let server = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                });
            }
        });
        let p = start(Proxy::ours().default_target(&format!("http://127.0.0.1:{port}"))).await;
        for i in 0..10 {
            let resp = p.get(&format!("/r{i}")).await?;
            assert_eq!(resp.status, 200, "request {i}: {resp:?}");
            assert_eq!(resp.body, b"ok");
            tokio::time::sleep(Duration::from_millis(80)).await;
        }
        server.abort();
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 10);
        Ok(())
    }

    #[tokio::test]
    async fn target_path_is_prepended() -> TestResult {
        let up = echo("t").await;
        let p = start(Proxy::ours()).await;
        p.add_route("/bar", &up.url_with("/foo")).await?;
        let e = p.get_echo("/bar/rest/of/it").await?;
        assert_eq!(url(&e), "/foo/bar/rest/of/it");
        let e = p.get_echo("/bar?query=foo").await?;
        assert_eq!(url(&e), "/foo/bar?query=foo");
        let e = p.get_echo("/bar").await?;
        assert_eq!(url(&e), "/foo/bar");
        Ok(())
    }

    #[tokio::test]
    async fn target_query_is_merged_target_first() -> TestResult {
        let up = echo("t").await;
        let p = start(Proxy::ours()).await;
        p.add_route("/q", &up.url_with("/T4?tq=1")).await?;
        assert_eq!(url(&p.get_echo("/q/z?rq=2").await?), "/T4/q/z?tq=1&rq=2");
        assert_eq!(url(&p.get_echo("/q/z").await?), "/T4/q/z?tq=1");
        Ok(())
    }

    #[tokio::test]
    async fn seam_slash_is_collapsed() -> TestResult {
        let up = echo("t").await;
        let p = start(Proxy::ours()).await;
        p.add_route("/user", &up.url_with("/T5/")).await?;
        assert_eq!(url(&p.get_echo("/user/trail").await?), "/T5/user/trail");
        Ok(())
    }

    #[tokio::test]
    async fn uri_encoding_is_kept() -> TestResult {
        let up = echo("t").await;
        let p = start(Proxy::ours()).await;
        p.add_route("/b%40r/b%20r", &up.url_with("/foo")).await?;
        let e = p.get_echo("/b%40r/b%20r/rest/of/it").await?;
        assert_eq!(url(&e), "/foo/b%40r/b%20r/rest/of/it");
        let e = p.get_echo("/b@r/b%20r/rest/of/it").await?;
        assert_eq!(url(&e), "/foo/b@r/b%20r/rest/of/it");
        Ok(())
    }

    #[tokio::test]
    async fn no_prepend_path() -> TestResult {
        let up = echo("t").await;
        let p = start(Proxy::ours().arg("--no-prepend-path")).await;
        p.add_route("/bar", &up.url_with("/foo")).await?;
        assert_eq!(
            url(&p.get_echo("/bar/rest/of/it").await?),
            "/bar/rest/of/it"
        );
        Ok(())
    }

    #[tokio::test]
    async fn no_include_prefix() -> TestResult {
        let up = echo("t").await;
        let p = start(Proxy::ours().arg("--no-include-prefix")).await;
        p.add_route("/bar", &up.url_with("/foo")).await?;
        assert_eq!(
            url(&p.get_echo("/bar/rest/of/it").await?),
            "/foo/rest/of/it"
        );
        assert_eq!(url(&p.get_echo("/bar/rest?x=1").await?), "/foo/rest?x=1");
        Ok(())
    }

    #[tokio::test]
    async fn no_include_prefix_and_no_prepend_path() -> TestResult {
        let up = echo("t").await;
        let p = start(
            Proxy::ours()
                .arg("--no-include-prefix")
                .arg("--no-prepend-path"),
        )
        .await;
        p.add_route("/bar", &up.url_with("/foo")).await?;
        assert_eq!(url(&p.get_echo("/bar/rest/of/it").await?), "/rest/of/it");
        Ok(())
    }

    /// Deliberate difference: CHP cuts the length of the decoded prefix from the raw path.
    #[tokio::test]
    async fn no_include_prefix_strips_the_raw_prefix() -> TestResult {
        let up = echo("t").await;
        let p = start(Proxy::ours().arg("--no-include-prefix")).await;
        p.add_route("/user/b%40r", &up.url()).await?;
        assert_eq!(url(&p.get_echo("/user/b%40r/x").await?), "/x");
        assert_eq!(url(&p.get_echo("/user/b@r/x").await?), "/x");
        Ok(())
    }

    #[tokio::test]
    async fn whole_segment_matching() -> TestResult {
        let default = echo("default").await;
        let al = echo("al").await;
        let p = with_default(&default).await;
        p.add_route("/user/al", &al.url()).await?;
        for (path, expected) in [
            ("/user/al", "al"),
            ("/user/al/", "al"),
            ("/user/al/x", "al"),
            ("/user/alice", "default"),
            ("/user/alx/y", "default"),
            ("/User/al", "default"),
            ("/user/AL/x", "default"),
        ] {
            assert_eq!(name(&p.get_echo(path).await?), expected, "{path}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn longest_prefix_wins_and_subpaths_fall_back() -> TestResult {
        let default = echo("default").await;
        let tree = echo("tree").await;
        let prefix = echo("prefix").await;
        let p = with_default(&default).await;
        p.add_route("/prefix/sub/tree", &tree.url()).await?;
        assert_eq!(name(&p.get_echo("/prefix").await?), "default");
        assert_eq!(name(&p.get_echo("/prefix/sub").await?), "default");
        assert_eq!(name(&p.get_echo("/prefix/sub/tree/x").await?), "tree");
        p.add_route("/prefix", &prefix.url()).await?;
        assert_eq!(name(&p.get_echo("/prefix").await?), "prefix");
        assert_eq!(name(&p.get_echo("/prefix/sub").await?), "prefix");
        assert_eq!(name(&p.get_echo("/prefix/sub/tree").await?), "tree");
        p.delete_route("/prefix/").await?;
        assert_eq!(name(&p.get_echo("/prefix/sub").await?), "default");
        assert_eq!(name(&p.get_echo("/prefix/sub/tree").await?), "tree");
        Ok(())
    }

    #[tokio::test]
    async fn intermediate_nodes_do_not_match() -> TestResult {
        let up = echo("d").await;
        let p = start(Proxy::ours()).await;
        p.add_route("/b/c/d", &up.url()).await?;
        assert_eq!(p.get("/b/c").await?.status, 404);
        assert_eq!(p.get("/b").await?.status, 404);
        assert_eq!(p.get("/b/c/dword").await?.status, 404);
        assert_eq!(name(&p.get_echo("/b/c/d/word").await?), "d");
        Ok(())
    }

    #[tokio::test]
    async fn empty_inner_segments_are_kept() -> TestResult {
        let up = echo("alice").await;
        let p = start(Proxy::ours()).await;
        p.add_route("/user/alice", &up.url()).await?;
        assert_eq!(p.get("/user//alice/x").await?.status, 404);
        let e = p.get_echo("/user/alice//x").await?;
        assert_eq!(url(&e), "/user/alice//x");
        Ok(())
    }

    /// Deliberate difference: CHP drops the first segment of a `//` path.
    #[tokio::test]
    async fn leading_double_slash_keeps_first_segment() -> TestResult {
        let default = echo("default").await;
        let dbl = echo("dbl").await;
        let x = echo("x").await;
        let p = with_default(&default).await;
        p.add_route("/dbl", &dbl.url()).await?;
        p.add_route("/x", &x.url()).await?;
        let e = p.get_echo("//dbl/x").await?;
        assert_eq!(name(&e), "dbl");
        assert!(url(&e).ends_with("dbl/x"), "{e}");
        Ok(())
    }

    #[tokio::test]
    async fn query_is_ignored_for_routing() -> TestResult {
        let default = echo("default").await;
        let bar = echo("bar").await;
        let p = with_default(&default).await;
        p.add_route("/bar", &bar.url()).await?;
        assert_eq!(name(&p.get_echo("/foo?x=/bar").await?), "default");
        assert_eq!(name(&p.get_echo("/bar?x=/foo").await?), "bar");
        Ok(())
    }

    #[tokio::test]
    async fn healthz_answers_any_method_and_host() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        for method in ["GET", "POST", "DELETE", "PUT"] {
            let resp = p
                .request(
                    &RawRequest::new(method, "/_chp_healthz").header("Host", "anything.example"),
                )
                .await?;
            assert_eq!(resp.status, 200, "{method}");
            assert_eq!(resp.media_type().as_deref(), Some("application/json"));
            assert_eq!(resp.json()?, json!({"status": "OK"}));
        }
        assert!(up.requests().is_empty(), "healthz reached the upstream");
        // Only the exact path: with a query or a trailing slash it is proxied.
        assert_eq!(
            url(&p.get_echo("/_chp_healthz?x=1").await?),
            "/_chp_healthz?x=1"
        );
        assert_eq!(url(&p.get_echo("/_chp_healthz/").await?), "/_chp_healthz/");
        Ok(())
    }

    #[tokio::test]
    async fn host_header_is_forwarded_unchanged() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let resp = p
            .request(&RawRequest::get("/").header("Host", "example.test:8123"))
            .await?;
        assert_eq!(hdr(&resp.json()?, "host"), Some("example.test:8123"));
        Ok(())
    }

    #[tokio::test]
    async fn change_origin_sets_target_host() -> TestResult {
        let up = echo("default").await;
        let p = start(
            Proxy::ours()
                .default_target(&up.url())
                .arg("--change-origin"),
        )
        .await;
        let resp = p
            .request(&RawRequest::get("/").header("Host", "example.test:8123"))
            .await?;
        let e = resp.json()?;
        assert_eq!(
            hdr(&e, "host"),
            Some(format!("127.0.0.1:{}", up.port()).as_str())
        );
        assert_eq!(hdr(&e, "x-forwarded-host"), Some("example.test:8123"));
        Ok(())
    }

    #[tokio::test]
    async fn x_forwarded_headers_are_added() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let e = p
            .request(&RawRequest::get("/").header("Host", "example.test:8123"))
            .await?
            .json()?;
        assert_eq!(hdr(&e, "x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(hdr(&e, "x-forwarded-port"), Some("8123"));
        assert_eq!(hdr(&e, "x-forwarded-proto"), Some("http"));
        assert_eq!(hdr(&e, "x-forwarded-host"), Some("example.test:8123"));
        let e = p
            .request(&RawRequest::get("/").header("Host", "example.test"))
            .await?
            .json()?;
        assert_eq!(hdr(&e, "x-forwarded-port"), Some("80"));
        Ok(())
    }

    #[tokio::test]
    async fn x_forwarded_headers_are_appended() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let e = p
            .request(
                &RawRequest::get("/")
                    .header("Host", "example.test:8123")
                    .header("X-Forwarded-For", "1.2.3.4")
                    .header("X-Forwarded-Proto", "https")
                    .header("X-Forwarded-Port", "443")
                    .header("X-Forwarded-Host", "orig.example"),
            )
            .await?
            .json()?;
        assert_eq!(hdr(&e, "x-forwarded-for"), Some("1.2.3.4,127.0.0.1"));
        assert_eq!(hdr(&e, "x-forwarded-proto"), Some("https,http"));
        assert_eq!(hdr(&e, "x-forwarded-port"), Some("443,8123"));
        assert_eq!(hdr(&e, "x-forwarded-host"), Some("orig.example"));
        Ok(())
    }

    #[tokio::test]
    async fn no_x_forward() -> TestResult {
        let up = echo("default").await;
        let p = start(
            Proxy::ours()
                .default_target(&up.url())
                .arg("--no-x-forward"),
        )
        .await;
        let e = p.get_echo("/").await?;
        for h in [
            "x-forwarded-for",
            "x-forwarded-port",
            "x-forwarded-proto",
            "x-forwarded-host",
        ] {
            assert_eq!(hdr(&e, h), None, "{h} added despite --no-x-forward");
        }
        let e = p
            .request(&RawRequest::get("/").header("X-Forwarded-For", "1.2.3.4"))
            .await?
            .json()?;
        assert_eq!(hdr(&e, "x-forwarded-for"), Some("1.2.3.4"));
        Ok(())
    }

    #[tokio::test]
    async fn methods_and_bodies_are_forwarded() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let resp = p
            .request(&RawRequest::new("PUT", "/put").body("hello"))
            .await?;
        let e = resp.json()?;
        assert_eq!(e["method"], json!("PUT"));
        assert_eq!(e["body"], json!("hello"));
        let big = "y".repeat(300 * 1024);
        let resp = p
            .request(&RawRequest::new("POST", "/post").body(big.clone()))
            .await?;
        let e = resp.json()?;
        assert_eq!(e["body"].as_str().map(str::len), Some(big.len()));
        // A chunked request body is forwarded too.
        let resp = p
            .request(
                &RawRequest::new("POST", "/chunked")
                    .header("Transfer-Encoding", "chunked")
                    .body("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            )
            .await?;
        assert_eq!(resp.json()?["body"], json!("hello world"));
        Ok(())
    }

    #[tokio::test]
    async fn delete_and_options_without_body_get_content_length_zero() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        for method in ["DELETE", "OPTIONS"] {
            let e = p.request(&RawRequest::new(method, "/x")).await?.json()?;
            assert_eq!(e["method"], json!(method));
            assert_eq!(hdr(&e, "content-length"), Some("0"), "{method}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn trailer_request_header_is_removed() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let e = p
            .request(&RawRequest::get("/").header("Trailer", "X-Foo"))
            .await?
            .json()?;
        assert_eq!(hdr(&e, "trailer"), None);
        Ok(())
    }

    #[tokio::test]
    async fn upstream_status_and_headers_are_relayed() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let resp = p
            .request(
                &RawRequest::get("/teapot")
                    .header("x-echo-status", "418")
                    .header("x-echo-content-type", "application/x-test"),
            )
            .await?;
        assert_eq!(resp.status, 418);
        assert_eq!(resp.header("content-type"), Some("application/x-test"));
        assert_eq!(url(&resp.json()?), "/teapot");
        let resp = p
            .request(&RawRequest::get("/nf").header("x-echo-status", "404"))
            .await?;
        assert_eq!(resp.status, 404);
        assert_eq!(
            resp.media_type().as_deref(),
            Some("application/json"),
            "upstream 404 body"
        );
        Ok(())
    }

    #[tokio::test]
    async fn streaming_response_is_relayed() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let resp = p
            .request(
                &RawRequest::get("/stream")
                    .header("x-echo-chunks", "50")
                    .header("x-echo-chunk-ms", "1"),
            )
            .await?;
        assert_eq!(resp.status, 200);
        let text = resp.text();
        assert_eq!(text.lines().count(), 50);
        assert!(text.ends_with("chunk 49\n"));
        Ok(())
    }

    #[tokio::test]
    async fn location_untouched_without_rewrite_options() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let location = format!("http://127.0.0.1:{}/whatever", up.port());
        let resp = p
            .request(
                &RawRequest::get("/r")
                    .header("x-echo-status", "301")
                    .header("x-echo-location", &location),
            )
            .await?;
        assert_eq!(resp.status, 301);
        assert_eq!(resp.header("location"), Some(location.as_str()));
        Ok(())
    }

    #[tokio::test]
    async fn location_rewritten_with_auto_and_protocol_rewrite() -> TestResult {
        let up = echo("default").await;
        let p = start(Proxy::ours().default_target(&up.url()).args([
            "--auto-rewrite",
            "--protocol-rewrite",
            "https",
        ]))
        .await;
        let upstream_location = format!("https://127.0.0.1:{}/whatever", up.port());
        let expected = format!("https://127.0.0.1:{}/whatever", p.port());
        for status in ["201", "301", "302", "307", "308"] {
            let resp = p
                .request(
                    &RawRequest::get("/r")
                        .header("x-echo-status", status)
                        .header("x-echo-location", &upstream_location),
                )
                .await?;
            assert_eq!(
                resp.header("location"),
                Some(expected.as_str()),
                "status {status}"
            );
        }
        // Other statuses and other hosts are left alone.
        let resp = p
            .request(
                &RawRequest::get("/r")
                    .header("x-echo-status", "303")
                    .header("x-echo-location", &upstream_location),
            )
            .await?;
        assert_eq!(
            resp.header("location"),
            Some(upstream_location.as_str()),
            "303"
        );
        let elsewhere = "https://elsewhere.example:9999/x";
        let resp = p
            .request(
                &RawRequest::get("/r")
                    .header("x-echo-status", "302")
                    .header("x-echo-location", elsewhere),
            )
            .await?;
        assert_eq!(resp.header("location"), Some(elsewhere), "other host");
        Ok(())
    }

    #[tokio::test]
    async fn auto_rewrite_alone_uses_client_host() -> TestResult {
        let up = echo("default").await;
        let p = start(
            Proxy::ours()
                .default_target(&up.url())
                .arg("--auto-rewrite"),
        )
        .await;
        let resp = p
            .request(
                &RawRequest::get("/r")
                    .header("Host", "public.example:8443")
                    .header("x-echo-status", "302")
                    .header(
                        "x-echo-location",
                        &format!("http://127.0.0.1:{}/w?a=1", up.port()),
                    ),
            )
            .await?;
        assert_eq!(
            resp.header("location"),
            Some("http://public.example:8443/w?a=1")
        );
        Ok(())
    }

    #[tokio::test]
    async fn protocol_rewrite_alone_changes_scheme() -> TestResult {
        let up = echo("default").await;
        let p = start(
            Proxy::ours()
                .default_target(&up.url())
                .args(["--protocol-rewrite", "https"]),
        )
        .await;
        let location = format!("http://127.0.0.1:{}/w", up.port());
        let resp = p
            .request(
                &RawRequest::get("/r")
                    .header("x-echo-status", "302")
                    .header("x-echo-location", &location),
            )
            .await?;
        assert_eq!(
            resp.header("location"),
            Some(format!("https://127.0.0.1:{}/w", up.port()).as_str())
        );
        Ok(())
    }

    #[tokio::test]
    async fn unix_socket_targets() -> TestResult {
        let up = Upstream::start_unix("unix", UpstreamMode::Echo).await?;
        let p = start(Proxy::ours()).await;
        p.add_route("/unix", &up.url()).await?;
        let alias = up.url().replacen("http+unix://", "unix+http://", 1);
        p.add_route("/alias", &alias).await?;
        let e = p.get_echo("/unix/x?y=1").await?;
        assert_eq!(name(&e), "unix");
        assert_eq!(url(&e), "/unix/x?y=1");
        let e = p.get_echo("/alias/z").await?;
        assert_eq!(url(&e), "/alias/z");
        Ok(())
    }
}

// -------------------------------------------------------------------------------------------
mod errors {
    use super::*;

    #[tokio::test]
    async fn builtin_404_page() -> TestResult {
        let p = start(Proxy::ours()).await;
        let resp = p.get("/nothing/here").await?;
        assert_eq!(resp.status, 404);
        assert_eq!(resp.media_type().as_deref(), Some("text/html"));
        assert!(resp.text().contains("404:"), "{}", resp.text());
        Ok(())
    }

    #[tokio::test]
    async fn builtin_503_page_when_upstream_is_down() -> TestResult {
        let p = start(Proxy::ours().default_target(&dead_target())).await;
        let resp = p.get("/x").await?;
        assert_eq!(resp.status, 503);
        assert_eq!(resp.media_type().as_deref(), Some("text/html"));
        assert!(resp.text().contains("503:"), "{}", resp.text());
        assert!(p.request(&RawRequest::get("/_chp_healthz")).await?.status == 200);
        Ok(())
    }

    #[tokio::test]
    async fn error_target_renders_404() -> TestResult {
        let errors = Upstream::start("errors", UpstreamMode::ErrorPages).await?;
        let p = start(Proxy::ours().error_target(&errors.url_with("/hub/error"))).await;
        let resp = p
            .request(
                &RawRequest::get("/nothing/here?x=1&y=%20")
                    .header("X-Client-Secret", "s3cret")
                    .header("Cookie", "session=abc"),
            )
            .await?;
        assert_eq!(resp.status, 404, "the client gets the proxy's code");
        assert_eq!(resp.media_type().as_deref(), Some("text/plain"));
        assert_eq!(resp.text(), "/nothing/here?x=1&y=%20");
        let seen = errors.last_request().expect("the error target was asked");
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.path(), "/hub/error/404");
        assert_eq!(
            workspace_tests::query_param(seen.query().unwrap_or_default(), "url").as_deref(),
            Some("/nothing/here?x=1&y=%20")
        );
        assert_eq!(
            seen.header("x-client-secret"),
            None,
            "client headers leaked"
        );
        assert_eq!(seen.header("cookie"), None, "client cookie leaked");
        Ok(())
    }

    #[tokio::test]
    async fn error_target_renders_503() -> TestResult {
        let errors = Upstream::start("errors", UpstreamMode::ErrorPages).await?;
        let p = start(
            Proxy::ours()
                .default_target(&dead_target())
                .error_target(&errors.url_with("/hub/error/")),
        )
        .await;
        let resp = p.get("/user/x").await?;
        assert_eq!(resp.status, 503);
        assert_eq!(resp.text(), "/user/x");
        let seen = errors.last_request().expect("the error target was asked");
        assert_eq!(seen.path(), "/hub/error/503", "one slash at the seam");
        Ok(())
    }

    #[tokio::test]
    async fn unreachable_error_target_keeps_the_code() -> TestResult {
        let p = start(Proxy::ours().error_target(&dead_target())).await;
        let resp = p.get("/nothing").await?;
        assert_eq!(resp.status, 404);
        Ok(())
    }

    #[tokio::test]
    async fn error_target_on_unix_socket() -> TestResult {
        let errors = Upstream::start_unix("errors", UpstreamMode::ErrorPages).await?;
        let p = start(Proxy::ours().error_target(&errors.url_with("/err"))).await;
        let resp = p.get("/foo/bar").await?;
        assert_eq!(resp.status, 404);
        assert_eq!(resp.media_type().as_deref(), Some("text/plain"));
        assert_eq!(resp.text(), "/foo/bar");
        assert_eq!(
            errors
                .last_request()
                .map(|r| r.path().to_owned())
                .as_deref(),
            Some("/err/404")
        );
        Ok(())
    }

    #[tokio::test]
    async fn error_path_files() -> TestResult {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("404.html"), "<p>custom 404 page</p>")?;
        std::fs::write(dir.path().join("error.html"), "<p>generic error page</p>")?;
        let p = start(
            Proxy::ours()
                .args(["--error-path", &dir.path().to_string_lossy()])
                .default_target(&dead_target()),
        )
        .await;
        let resp = p.get("/x").await?;
        assert_eq!(resp.status, 503);
        assert_eq!(resp.media_type().as_deref(), Some("text/html"));
        assert!(
            resp.text().contains("generic error page"),
            "{}",
            resp.text()
        );
        p.delete_route("/").await?;
        let resp = p.get("/x").await?;
        assert_eq!(resp.status, 404);
        assert_eq!(resp.media_type().as_deref(), Some("text/html"));
        assert!(resp.text().contains("custom 404 page"), "{}", resp.text());
        Ok(())
    }

    /// Deliberate difference: CHP answers 500 for a malformed escape; we refuse with 400,
    /// through the error target like any other error.
    #[tokio::test]
    async fn bad_escape_goes_through_error_target_as_400() -> TestResult {
        let up = echo("default").await;
        let errors = Upstream::start("errors", UpstreamMode::ErrorPages).await?;
        let p = start(
            Proxy::ours()
                .default_target(&up.url())
                .error_target(&errors.url_with("/hub/error")),
        )
        .await;
        let resp = p.get("/%").await?;
        assert_eq!(resp.status, 400);
        assert_eq!(resp.media_type().as_deref(), Some("text/plain"));
        assert_eq!(resp.text(), "/%");
        let seen = errors.last_request().expect("the error target was asked");
        assert_eq!(seen.path(), "/hub/error/400");
        assert_eq!(
            workspace_tests::query_param(seen.query().unwrap_or_default(), "url").as_deref(),
            Some("/%")
        );
        assert!(up.requests().is_empty());
        Ok(())
    }

    const REFUSED_PATHS: &[&str] = &[
        "/user/bob/../alice/x",
        "/user/bob/./x",
        "/user/bob/..",
        "/user/bob/.",
        "/..",
        "/./x",
        "/user/%2e%2e/alice",
        "/user/%2E%2e/alice",
        "/user/%2e/x",
        "/user/bob/.%2e/alice",
        "/user/bob/%2e./alice",
        "/user/alice%2Fx",
        "/user/alice%2fx",
        "/user/alice%5cx",
        "/user/alice%5Cx",
        "/user/a%00b",
        "/%",
        "/user/%",
        "/user/%zz",
        "/user/%2",
        "/user/%252e%252e/x",
        "/user/%252E/x",
        "/user/%252fx",
        "/user/%252F",
        "/user/alice%2F..%2Fbob",
    ];

    /// Deliberate difference: CHP resolves or decodes these and routes them.
    #[tokio::test]
    async fn ambiguous_paths_are_refused_with_400() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        for path in REFUSED_PATHS {
            let resp = p.get(path).await?;
            assert_eq!(resp.status, 400, "GET {path}: {:?}", resp.text());
        }
        assert!(
            up.requests().is_empty(),
            "refused paths reached the upstream: {:?}",
            up.requests()
                .iter()
                .map(|r| r.url.clone())
                .collect::<Vec<_>>()
        );
        assert_eq!(p.get("/_chp_healthz").await?.status, 200);
        Ok(())
    }

    #[tokio::test]
    async fn refused_paths_use_the_error_page() -> TestResult {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("error.html"), "<p>generic error page</p>")?;
        let up = echo("default").await;
        let p = start(
            Proxy::ours()
                .default_target(&up.url())
                .args(["--error-path", &dir.path().to_string_lossy()]),
        )
        .await;
        let resp = p.get("/a/../b").await?;
        assert_eq!(resp.status, 400);
        assert!(
            resp.text().contains("generic error page"),
            "{}",
            resp.text()
        );
        Ok(())
    }

    #[tokio::test]
    async fn harmless_dots_and_escapes_pass() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        for path in [
            "/user/.hidden/x",
            "/user/a..b/x",
            "/user/.../x",
            "/user/..x",
            "/user/a%20b",
            "/user/%40x",
            "/user/%E2%88%82",
            "/user/a%25b",
            "/user/x?next=/../etc&y=%2e%2e%2f",
        ] {
            let e = p.get_echo(path).await?;
            assert_eq!(url(&e), path, "forwarded unchanged");
        }
        Ok(())
    }

    #[tokio::test]
    async fn proxy_timeout_gives_503() -> TestResult {
        let up = echo("default").await;
        let p = start(
            Proxy::ours()
                .default_target(&up.url())
                .args(["--proxy-timeout", "300"]),
        )
        .await;
        let started = Instant::now();
        let resp = p
            .request(&RawRequest::get("/slow").header("x-echo-delay-ms", "3000"))
            .await?;
        assert_eq!(resp.status, 503);
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{:?}",
            started.elapsed()
        );
        let resp = p
            .request(&RawRequest::get("/fast").header("x-echo-delay-ms", "20"))
            .await?;
        assert_eq!(resp.status, 200);
        Ok(())
    }

    #[tokio::test]
    async fn timeout_drops_the_connection() -> TestResult {
        let up = echo("default").await;
        let p = start(
            Proxy::ours()
                .default_target(&up.url())
                .args(["--timeout", "300"]),
        )
        .await;
        let started = Instant::now();
        let mut conn = Conn::tcp(p.port()).await?;
        let result = conn
            .exchange(&RawRequest::get("/slow").header("x-echo-delay-ms", "3000"))
            .await;
        assert!(result.is_err(), "got a response: {result:?}");
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{:?}",
            started.elapsed()
        );
        let resp = p.get("/fast").await?;
        assert_eq!(resp.status, 200);
        Ok(())
    }

    #[tokio::test]
    async fn oversized_headers_are_431() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let ok = p
            .request(&RawRequest::get("/").header("X-Big", &"a".repeat(8 * 1024)))
            .await?;
        assert_eq!(ok.status, 200);
        up.clear();
        // The proxy may answer 431 and close before reading everything, in which case the
        // kernel can turn the close into a reset that hides the answer; either way the request
        // must not be forwarded.
        match p
            .request(&RawRequest::get("/big").header("X-Big", &"a".repeat(100 * 1024)))
            .await
        {
            Ok(resp) => assert_eq!(resp.status, 431),
            Err(e) => assert!(
                format!("{e:#}").contains("reset") || format!("{e:#}").contains("closed"),
                "{e:#}"
            ),
        }
        assert!(
            up.requests().is_empty(),
            "the oversized request was forwarded"
        );
        assert_eq!(p.get("/_chp_healthz").await?.status, 200);
        Ok(())
    }
}

// -------------------------------------------------------------------------------------------
mod websockets {
    use super::*;

    #[tokio::test]
    async fn basic_websocket_echo_updates_activity() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let before = p.last_activity("/").await?;
        let (mut sock, resp) = ws::connect(p.port(), "/", &[]).await?;
        assert_eq!(resp.status(), 101);
        assert_eq!(ws::next_text(&mut sock).await?, "connected");
        tick().await;
        assert_eq!(ws::roundtrip(&mut sock, "hi").await?, "hi");
        settle().await;
        assert!(p.last_activity("/").await? > before);
        Ok(())
    }

    #[tokio::test]
    async fn websocket_binary_and_many_messages() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let (mut sock, _) = ws::connect(p.port(), "/", &[]).await?;
        assert_eq!(ws::next_text(&mut sock).await?, "connected");
        use futures_util::{SinkExt, StreamExt};
        sock.send(tokio_tungstenite::tungstenite::Message::binary(vec![
            0u8, 1, 2, 255,
        ]))
        .await?;
        match workspace_tests::within("binary echo", sock.next()).await? {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b))) => {
                assert_eq!(b.as_ref(), &[0u8, 1, 2, 255]);
            }
            other => panic!("expected a binary echo, got {other:?}"),
        }
        for i in 0..100 {
            ws::send_text(&mut sock, &format!("m{i}")).await?;
        }
        for i in 0..100 {
            assert_eq!(ws::next_text(&mut sock).await?, format!("m{i}"));
        }
        Ok(())
    }

    #[tokio::test]
    async fn websocket_path_is_prepended() -> TestResult {
        let up = echo("ws").await;
        let p = start(Proxy::ours()).await;
        p.add_route("/ws", &up.url_with("/backend")).await?;
        let (mut sock, _) = ws::connect(p.port(), "/ws/sock?x=1", &[]).await?;
        assert_eq!(ws::next_text(&mut sock).await?, "connected");
        let hs = ws::upstream_handshake(&mut sock).await?;
        assert_eq!(url(&hs), "/backend/ws/sock?x=1");
        Ok(())
    }

    #[tokio::test]
    async fn websocket_x_forwarded_headers() -> TestResult {
        let up = echo("ws").await;
        let p = with_default(&up).await;
        let (mut sock, _) = ws::connect(p.port(), "/", &[("X-Forwarded-For", "1.2.3.4")]).await?;
        assert_eq!(ws::next_text(&mut sock).await?, "connected");
        let hs = ws::upstream_handshake(&mut sock).await?;
        assert_eq!(hdr(&hs, "x-forwarded-for"), Some("1.2.3.4,127.0.0.1"));
        assert_eq!(hdr(&hs, "x-forwarded-proto"), Some("ws"));
        assert_eq!(
            hdr(&hs, "x-forwarded-port"),
            Some(p.port().to_string().as_str())
        );
        assert_eq!(hdr(&hs, "x-forwarded-host"), None);
        assert_eq!(
            hdr(&hs, "host"),
            Some(format!("127.0.0.1:{}", p.port()).as_str())
        );
        Ok(())
    }

    #[tokio::test]
    async fn websocket_custom_headers() -> TestResult {
        let up = echo("ws").await;
        let p = start(
            Proxy::ours()
                .default_target(&up.url())
                .args(["--custom-header", "k1: v1"]),
        )
        .await;
        let (mut sock, _) = ws::connect(p.port(), "/", &[]).await?;
        assert_eq!(ws::next_text(&mut sock).await?, "connected");
        let hs = ws::upstream_handshake(&mut sock).await?;
        assert_eq!(hdr(&hs, "k1"), Some("v1"));
        Ok(())
    }

    /// Deliberate difference: CHP leaves the socket open after a websocket 404.
    #[tokio::test]
    async fn websocket_without_route_gets_bare_404_and_close() -> TestResult {
        let p = start(Proxy::ours()).await;
        let mut conn = Conn::tcp(p.port()).await?;
        let resp = conn.exchange(&ws_upgrade("/nothing")).await?;
        assert_bare(&resp, 404);
        assert_eq!(
            conn.liveness(Duration::from_secs(2)).await,
            Liveness::Closed
        );
        Ok(())
    }

    #[tokio::test]
    async fn websocket_to_dead_upstream_gets_bare_503_and_close() -> TestResult {
        let p = start(Proxy::ours().default_target(&dead_target())).await;
        let mut conn = Conn::tcp(p.port()).await?;
        let resp = conn.exchange(&ws_upgrade("/x")).await?;
        assert_bare(&resp, 503);
        assert_eq!(
            conn.liveness(Duration::from_secs(2)).await,
            Liveness::Closed
        );
        Ok(())
    }

    #[tokio::test]
    async fn websocket_with_ambiguous_path_gets_bare_400() -> TestResult {
        let up = echo("ws").await;
        let p = with_default(&up).await;
        for path in ["/user/bob/../alice", "/user/%2e%2e/x", "/a%2Fb", "/%"] {
            let mut conn = Conn::tcp(p.port()).await?;
            let resp = conn.exchange(&ws_upgrade(path)).await?;
            assert_bare(&resp, 400);
        }
        assert!(up.requests().is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn websocket_errors_never_contact_the_error_target() -> TestResult {
        let errors = Upstream::start("errors", UpstreamMode::ErrorPages).await?;
        let p = start(Proxy::ours().error_target(&errors.url_with("/hub/error"))).await;
        p.add_route("/dead", &dead_target()).await?;
        for path in ["/nothing", "/dead/x", "/a/../b"] {
            let mut conn = Conn::tcp(p.port()).await?;
            let resp = conn.exchange(&ws_upgrade(path)).await?;
            assert!(resp.status >= 400, "{path}: {resp:?}");
            assert!(resp.body.is_empty(), "{path}: {resp:?}");
        }
        settle().await;
        assert!(errors.requests().is_empty(), "{:?}", errors.requests());
        Ok(())
    }

    #[tokio::test]
    async fn websocket_refused_by_upstream_is_relayed() -> TestResult {
        let up = echo("ws").await;
        let p = with_default(&up).await;
        let mut conn = Conn::tcp(p.port()).await?;
        let resp = conn
            .exchange(&ws_upgrade("/refuse").header("x-echo-status", "403"))
            .await?;
        assert_eq!(resp.status, 403);
        assert_eq!(resp.text(), "upgrade refused by upstream");
        assert_eq!(
            conn.liveness(Duration::from_secs(2)).await,
            Liveness::Closed
        );
        Ok(())
    }

    #[tokio::test]
    async fn websocket_close_reaches_upstream() -> TestResult {
        let up = echo("ws").await;
        let p = with_default(&up).await;
        let (mut sock, _) = ws::connect(p.port(), "/", &[]).await?;
        assert_eq!(ws::next_text(&mut sock).await?, "connected");
        assert_eq!(up.open_websockets(), 1);
        sock.close(None).await?;
        drop(sock);
        let deadline = Instant::now() + Duration::from_secs(3);
        while up.open_websockets() > 0 {
            assert!(Instant::now() < deadline, "upstream websocket still open");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    #[tokio::test]
    async fn websocket_to_unix_socket_target() -> TestResult {
        let up = Upstream::start_unix("unixws", UpstreamMode::Echo).await?;
        let p = start(Proxy::ours()).await;
        p.add_route("/u", &up.url()).await?;
        let (mut sock, _) = ws::connect(p.port(), "/u/ws", &[]).await?;
        assert_eq!(ws::next_text(&mut sock).await?, "connected");
        assert_eq!(ws::roundtrip(&mut sock, "over unix").await?, "over unix");
        assert_eq!(url(&ws::upstream_handshake(&mut sock).await?), "/u/ws");
        Ok(())
    }

    #[tokio::test]
    async fn websocket_over_tls_has_wss_proto() -> TestResult {
        let c = certs();
        let up = echo("ws").await;
        let p = start(Proxy::ours().default_target(&up.url()).public_tls(&c)).await;
        let (mut sock, _) = ws::connect_tls(&c, p.port(), "/secure").await?;
        assert_eq!(ws::next_text(&mut sock).await?, "connected");
        let hs = ws::upstream_handshake(&mut sock).await?;
        assert_eq!(hdr(&hs, "x-forwarded-proto"), Some("wss"));
        assert_eq!(url(&hs), "/secure");
        Ok(())
    }
}

// -------------------------------------------------------------------------------------------
mod host_routing {
    use super::*;

    async fn host_proxy() -> (Upstream, Upstream, Proxy) {
        let default = echo("default").await;
        let host = echo("host").await;
        let p = start(
            Proxy::ours()
                .default_target(&default.url())
                .arg("--host-routing"),
        )
        .await;
        p.add_route("/test.localhost.jovyan.org", &host.url())
            .await
            .expect("adding the host route");
        (default, host, p)
    }

    async fn via_host(p: &Proxy, host: &str, path: &str) -> anyhow::Result<Value> {
        let resp = p
            .request(&RawRequest::get(path).header("Host", host))
            .await?;
        anyhow::ensure!(resp.status == 200, "{host} {path}: {}", resp.status);
        resp.json()
    }

    #[tokio::test]
    async fn routes_by_host() -> TestResult {
        let (_d, _h, p) = host_proxy().await;
        let e = via_host(&p, "test.localhost.jovyan.org", "/some/path").await?;
        assert_eq!(name(&e), "host");
        assert_eq!(url(&e), "/some/path");
        assert_eq!(hdr(&e, "host"), Some("test.localhost.jovyan.org"));
        Ok(())
    }

    #[tokio::test]
    async fn host_port_is_stripped() -> TestResult {
        let (_d, _h, p) = host_proxy().await;
        let e = via_host(&p, "test.localhost.jovyan.org:8080", "/x").await?;
        assert_eq!(name(&e), "host");
        Ok(())
    }

    /// Deliberate difference: CHP routes on the Host as sent (case-sensitive, dot kept).
    #[tokio::test]
    async fn host_is_lowercased_and_trailing_dot_stripped() -> TestResult {
        let (_d, _h, p) = host_proxy().await;
        for host in [
            "TEST.Localhost.Jovyan.ORG",
            "test.localhost.jovyan.org.",
            "Test.localhost.jovyan.org.:8000",
        ] {
            assert_eq!(
                name(&via_host(&p, host, "/x").await?),
                "host",
                "Host: {host}"
            );
        }
        Ok(())
    }

    /// Deliberate difference: CHP cuts the Host at its first `:`.
    #[tokio::test]
    async fn ipv6_literal_host() -> TestResult {
        let (_d, _h, p) = host_proxy().await;
        let v6 = echo("v6").await;
        p.add_route("/%5B%3A%3A1%5D", &v6.url()).await?;
        assert!(p.routes().await?.contains_key("/[::1]"));
        for host in ["[::1]:8000", "[::1]"] {
            assert_eq!(name(&via_host(&p, host, "/x").await?), "v6", "Host: {host}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn unknown_host_falls_back_to_root() -> TestResult {
        let (_d, _h, p) = host_proxy().await;
        let e = via_host(&p, "other.example", "/test.localhost.jovyan.org/x").await?;
        assert_eq!(name(&e), "default");
        Ok(())
    }

    #[tokio::test]
    async fn host_route_with_path() -> TestResult {
        let (_d, _h, p) = host_proxy().await;
        let sub = echo("sub").await;
        p.add_route("/test.localhost.jovyan.org/sub", &sub.url())
            .await?;
        let e = via_host(&p, "test.localhost.jovyan.org", "/sub/x").await?;
        assert_eq!(name(&e), "sub");
        assert_eq!(url(&e), "/sub/x");
        let e = via_host(&p, "test.localhost.jovyan.org", "/other").await?;
        assert_eq!(name(&e), "host");
        Ok(())
    }

    #[tokio::test]
    async fn each_host_reaches_only_its_server() -> TestResult {
        let hub = echo("hub").await;
        let alice = echo("alice").await;
        let bob = echo("bob").await;
        let p = start(
            Proxy::ours()
                .default_target(&hub.url())
                .arg("--host-routing"),
        )
        .await;
        p.add_route("/alice.hub.example", &alice.url()).await?;
        p.add_route("/bob.hub.example", &bob.url()).await?;
        assert_eq!(
            name(&via_host(&p, "bob.hub.example", "/user/alice/").await?),
            "bob"
        );
        assert_eq!(
            name(&via_host(&p, "alice.hub.example", "/user/bob/").await?),
            "alice"
        );
        assert_eq!(
            name(&via_host(&p, "hub.example", "/user/alice/").await?),
            "hub"
        );
        assert_eq!(
            name(&via_host(&p, "evil.bob.hub.example", "/").await?),
            "hub"
        );
        Ok(())
    }

    #[tokio::test]
    async fn post_stores_host_field() -> TestResult {
        let (d, _h, p) = host_proxy().await;
        p.add_route("/h.example.com/x", &d.url()).await?;
        let routes = p.routes().await?;
        assert_eq!(
            routes["/test.localhost.jovyan.org"]["host"],
            json!("test.localhost.jovyan.org")
        );
        assert_eq!(routes["/h.example.com/x"]["host"], json!("h.example.com"));
        assert!(routes["/"].get("host").is_none(), "{routes:?}");
        Ok(())
    }

    /// Deliberate difference: CHP strips the wrong characters here.
    #[tokio::test]
    async fn no_include_prefix_with_host_routing() -> TestResult {
        let up = echo("h1").await;
        let p = start(
            Proxy::ours()
                .arg("--host-routing")
                .arg("--no-include-prefix"),
        )
        .await;
        p.add_route("/h1.example.com/abc", &up.url_with("/H1"))
            .await?;
        p.add_route("/h2.example.com", &up.url_with("/H2")).await?;
        assert_eq!(
            url(&via_host(&p, "h1.example.com", "/abc/klm").await?),
            "/H1/klm"
        );
        assert_eq!(
            url(&via_host(&p, "h2.example.com", "/abcdefghij/klm").await?),
            "/H2/abcdefghij/klm"
        );
        Ok(())
    }

    #[tokio::test]
    async fn websocket_host_routing() -> TestResult {
        let (_d, _h, p) = host_proxy().await;
        let (mut sock, _) =
            ws::connect(p.port(), "/ws", &[("Host", "test.localhost.jovyan.org")]).await?;
        assert_eq!(ws::next_text(&mut sock).await?, "connected");
        let hs = ws::upstream_handshake(&mut sock).await?;
        assert_eq!(name(&hs), "host");
        assert_eq!(url(&hs), "/ws");
        Ok(())
    }
}

// -------------------------------------------------------------------------------------------
mod tls {
    use super::*;

    #[tokio::test]
    async fn public_https_forwarded_headers() -> TestResult {
        let c = certs();
        let up = echo("default").await;
        let p = start(Proxy::ours().default_target(&up.url()).public_tls(&c)).await;
        let e = p
            .request(&RawRequest::get("/x").header("Host", "localhost"))
            .await?
            .json()?;
        assert_eq!(hdr(&e, "x-forwarded-proto"), Some("https"));
        assert_eq!(hdr(&e, "x-forwarded-port"), Some("443"));
        Ok(())
    }

    /// Our TLS listener may offer HTTP/2; whatever is negotiated must work.
    #[tokio::test]
    async fn public_https_with_h2_capable_client() -> TestResult {
        let c = certs();
        let up = echo("default").await;
        let p = start(Proxy::ours().default_target(&up.url()).public_tls(&c)).await;
        let client = c.reqwest_client(false)?;
        for path in ["/a", "/b?c=d"] {
            let resp = client.post(p.url(path)).body("payload").send().await?;
            let version = resp.version();
            assert_eq!(resp.status(), 200, "{version:?}");
            let e: Value = resp.json().await?;
            assert_eq!(url(&e), path, "{version:?}");
            assert_eq!(e["body"], json!("payload"), "{version:?}");
            assert_eq!(hdr(&e, "x-forwarded-proto"), Some("https"));
        }
        Ok(())
    }

    #[tokio::test]
    async fn plain_http_is_http1_only() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let mut conn = Conn::tcp(p.port()).await?;
        // HTTP/2 connection preface followed by an empty SETTINGS frame.
        let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        conn.write(&preface).await?;
        let reply = conn.read_available(Duration::from_secs(2)).await?;
        assert!(
            reply.is_empty() || reply.starts_with(b"HTTP/1."),
            "the plain port answered an HTTP/2 preface with {:?}",
            String::from_utf8_lossy(&reply)
        );
        Ok(())
    }

    #[tokio::test]
    async fn api_over_tls() -> TestResult {
        let c = certs();
        let up = echo("default").await;
        let p = start(Proxy::ours().default_target(&up.url()).api_tls(&c, false)).await;
        assert!(p.routes().await?.contains_key("/"));
        // Plain HTTP on the TLS API port gets no HTTP answer.
        let plain = RawRequest::get("/api/routes")
            .header("Authorization", &format!("token {TOKEN}"))
            .send(p.api_port())
            .await;
        assert!(plain.map(|r| r.status != 200).unwrap_or(true));
        Ok(())
    }

    #[tokio::test]
    async fn api_mtls_requires_client_certificate() -> TestResult {
        let c = certs();
        let up = echo("default").await;
        let p = start(Proxy::ours().default_target(&up.url()).api_tls(&c, true)).await;
        assert!(p.routes().await?.contains_key("/"), "with client cert");
        let without = Endpoint::Tls {
            port: p.api_port(),
            certs: c.clone(),
            client_cert: false,
        };
        let attempt = async {
            let mut conn = without.connect().await?;
            conn.exchange(
                &RawRequest::get("/api/routes").header("Authorization", &format!("token {TOKEN}")),
            )
            .await
        }
        .await;
        assert!(
            attempt.is_err(),
            "served without a client cert: {attempt:?}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn https_target_with_client_certificate() -> TestResult {
        let c = certs();
        let up =
            Upstream::start_tls("secure", UpstreamMode::Echo, c.server_config(true, &[])?).await?;
        let p = start(Proxy::ours().args([
            "--client-ssl-key",
            &c.client_key_path().to_string_lossy(),
            "--client-ssl-cert",
            &c.client_cert_path().to_string_lossy(),
            "--client-ssl-ca",
            &c.ca_path().to_string_lossy(),
        ]))
        .await;
        p.add_route("/s", &up.url()).await?;
        let e = p.get_echo("/s/x").await?;
        assert_eq!(name(&e), "secure");
        assert_eq!(url(&e), "/s/x");
        Ok(())
    }

    #[tokio::test]
    async fn https_target_without_client_certificate_is_503() -> TestResult {
        let c = certs();
        let up =
            Upstream::start_tls("secure", UpstreamMode::Echo, c.server_config(true, &[])?).await?;
        let p =
            start(Proxy::ours().args(["--client-ssl-ca", &c.ca_path().to_string_lossy()])).await;
        p.add_route("/s", &up.url()).await?;
        assert_eq!(p.get("/s/x").await?.status, 503);
        Ok(())
    }

    #[tokio::test]
    async fn untrusted_https_target_is_503() -> TestResult {
        let c = certs();
        let up =
            Upstream::start_tls("secure", UpstreamMode::Echo, c.server_config(false, &[])?).await?;
        let p = start(Proxy::ours()).await;
        p.add_route("/s", &up.url()).await?;
        assert_eq!(p.get("/s/x").await?.status, 503);
        Ok(())
    }

    #[tokio::test]
    async fn trusted_https_target_via_client_ca() -> TestResult {
        let c = certs();
        let up =
            Upstream::start_tls("secure", UpstreamMode::Echo, c.server_config(false, &[])?).await?;
        let p =
            start(Proxy::ours().args(["--client-ssl-ca", &c.ca_path().to_string_lossy()])).await;
        p.add_route("/s", &up.url()).await?;
        assert_eq!(name(&p.get_echo("/s/x").await?), "secure");
        Ok(())
    }

    /// Deliberate difference: CHP 5.1+ ignores `--insecure`.
    #[tokio::test]
    async fn insecure_disables_target_verification() -> TestResult {
        let c = certs();
        let up =
            Upstream::start_tls("secure", UpstreamMode::Echo, c.server_config(false, &[])?).await?;
        let p = start(Proxy::ours().arg("--insecure")).await;
        p.add_route("/s", &up.url()).await?;
        assert_eq!(name(&p.get_echo("/s/x").await?), "secure");
        Ok(())
    }

    #[tokio::test]
    async fn https_error_target_uses_client_ca() -> TestResult {
        let c = certs();
        let errors = Upstream::start_tls(
            "errors",
            UpstreamMode::ErrorPages,
            c.server_config(false, &[])?,
        )
        .await?;
        let p = start(
            Proxy::ours()
                .error_target(&errors.url_with("/err"))
                .args(["--client-ssl-ca", &c.ca_path().to_string_lossy()]),
        )
        .await;
        let resp = p.get("/missing").await?;
        assert_eq!(resp.status, 404);
        assert_eq!(resp.text(), "/missing");
        Ok(())
    }

    #[tokio::test]
    async fn websocket_to_https_target() -> TestResult {
        let c = certs();
        let up = Upstream::start_tls("securews", UpstreamMode::Echo, c.server_config(false, &[])?)
            .await?;
        let p =
            start(Proxy::ours().args(["--client-ssl-ca", &c.ca_path().to_string_lossy()])).await;
        p.add_route("/s", &up.url()).await?;
        let (mut sock, _) = ws::connect(p.port(), "/s/ws", &[]).await?;
        assert_eq!(ws::next_text(&mut sock).await?, "connected");
        assert_eq!(ws::roundtrip(&mut sock, "tls").await?, "tls");
        Ok(())
    }
}

// -------------------------------------------------------------------------------------------
mod unix_sockets {
    use super::*;

    #[tokio::test]
    async fn public_api_and_metrics_on_unix_sockets() -> TestResult {
        let dir = tempfile::tempdir()?;
        let public = dir.path().join("public.sock");
        let api = dir.path().join("api.sock");
        let metrics = dir.path().join("metrics.sock");
        let up = echo("default").await;
        let p = start(
            Proxy::ours()
                .public_socket(&public)
                .api_socket(&api)
                .metrics_socket(&metrics),
        )
        .await;
        // Only the proxy's own user may reach the API, whatever the umask.
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&api)?.permissions().mode() & 0o777, 0o600);
        p.add_route("/", &up.url()).await?;
        let before = p.last_activity("/").await?;
        tick().await;
        let e = p.get_echo("/over/unix").await?;
        assert_eq!(url(&e), "/over/unix");
        settle().await;
        assert!(p.last_activity("/").await? > before);
        let m = p.metrics().await?;
        assert!(m.value_or_zero("requests_web", &[]) >= 1.0, "{m:?}");
        Ok(())
    }

    #[tokio::test]
    async fn websocket_over_public_unix_socket() -> TestResult {
        let dir = tempfile::tempdir()?;
        let public = dir.path().join("public.sock");
        let up = echo("default").await;
        let p = start(
            Proxy::ours()
                .default_target(&up.url())
                .public_socket(&public),
        )
        .await;
        let before = p.last_activity("/").await?;
        let (mut sock, _) = ws::connect_unix(&public, "/ws", &[]).await?;
        assert_eq!(ws::next_text(&mut sock).await?, "connected");
        tick().await;
        assert_eq!(ws::roundtrip(&mut sock, "unix").await?, "unix");
        settle().await;
        assert!(p.last_activity("/").await? > before);
        Ok(())
    }
}

// -------------------------------------------------------------------------------------------
mod metrics {
    use super::*;

    const CHP_NAMES: &[&str] = &[
        "api_route_get",
        "api_route_add",
        "api_route_delete",
        "find_target_for_req_sum",
        "find_target_for_req_count",
        "last_activity_updating_sum",
        "last_activity_updating_count",
        "requests_ws",
        "requests_web",
        "requests_proxy",
        "requests_api",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "process_cpu_seconds_total",
    ];

    #[tokio::test]
    async fn metric_names_and_format() -> TestResult {
        let up = echo("default").await;
        let p = start(Proxy::ours().default_target(&up.url()).metrics()).await;
        // Exercise every family once.
        p.add_route("/x", &up.url()).await?;
        p.routes().await?;
        p.delete_route("/x").await?;
        p.get("/y").await?;
        let (mut sock, _) = ws::connect(p.port(), "/", &[]).await?;
        ws::next_text(&mut sock).await?;
        ws::roundtrip(&mut sock, "hi").await?;
        settle().await;
        let raw = p.metrics_raw("/metrics").await?;
        assert_eq!(raw.status, 200);
        assert_eq!(
            raw.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let m = workspace_tests::metrics::Metrics::parse(&raw.text())?;
        let names = m.names();
        for expected in CHP_NAMES {
            assert!(names.contains(*expected), "missing {expected} in {names:?}");
        }
        assert!(
            !names.iter().any(|n| n.starts_with("nodejs_")),
            "nodejs_* metrics: {names:?}"
        );
        assert!(
            !m.samples.iter().any(|s| s.labels.contains_key("quantile")),
            "summaries must not expose quantiles"
        );
        for summary in ["find_target_for_req", "last_activity_updating"] {
            assert!(
                !names.contains(summary),
                "{summary} exposed as a bare sample"
            );
            assert_eq!(m.types.get(summary).map(String::as_str), Some("summary"));
        }
        for counter in [
            "api_route_get",
            "api_route_add",
            "requests_web",
            "requests_proxy",
        ] {
            assert_eq!(
                m.types.get(counter).map(String::as_str),
                Some("counter"),
                "{counter}"
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn metric_counters_count() -> TestResult {
        let up = echo("default").await;
        let p = start(Proxy::ours().metrics()).await;
        p.add_route("/up", &up.url()).await?;
        let base = p.metrics().await?;
        let delta =
            |after: &workspace_tests::metrics::Metrics, name: &str, labels: &[(&str, &str)]| {
                after.value_or_zero(name, labels) - base.value_or_zero(name, labels)
            };
        for _ in 0..3 {
            assert_eq!(p.get("/up/x").await?.status, 200);
        }
        assert_eq!(p.get("/nothing").await?.status, 404);
        p.add_route("/dead", &dead_target()).await?;
        assert_eq!(p.get("/dead/x").await?.status, 503);
        assert_eq!(p.get("/_chp_healthz").await?.status, 200);
        p.add_route("/more", &up.url()).await?;
        assert_eq!(p.api_delete("/missing").await?.status, 404);
        p.routes().await?;
        let (mut sock, _) = ws::connect(p.port(), "/up/ws", &[]).await?;
        ws::next_text(&mut sock).await?;
        settle().await;
        let after = p.metrics().await?;
        assert_eq!(
            delta(&after, "requests_web", &[]),
            5.0,
            "healthz is not counted"
        );
        assert_eq!(delta(&after, "requests_proxy", &[("status", "200")]), 3.0);
        assert_eq!(delta(&after, "requests_proxy", &[("status", "404")]), 1.0);
        assert_eq!(delta(&after, "requests_proxy", &[("status", "503")]), 1.0);
        assert_eq!(delta(&after, "api_route_add", &[]), 2.0);
        assert_eq!(
            delta(&after, "api_route_delete", &[]),
            1.0,
            "404 deletes count"
        );
        assert_eq!(delta(&after, "api_route_get", &[]), 1.0);
        assert_eq!(delta(&after, "requests_api", &[("status", "201")]), 2.0);
        assert_eq!(delta(&after, "requests_api", &[("status", "404")]), 1.0);
        assert_eq!(delta(&after, "requests_ws", &[]), 1.0);
        assert!(delta(&after, "find_target_for_req_count", &[]) >= 5.0);
        Ok(())
    }

    #[tokio::test]
    async fn only_the_exact_metrics_path() -> TestResult {
        let p = start(Proxy::ours().metrics()).await;
        assert_eq!(p.metrics_raw("/metrics").await?.status, 200);
        assert_eq!(p.metrics_raw("/metrics?x=1").await?.status, 404);
        assert_eq!(p.metrics_raw("/other").await?.status, 404);
        Ok(())
    }

    #[tokio::test]
    async fn process_metrics_are_plausible() -> TestResult {
        let p = start(Proxy::ours().metrics()).await;
        let m = p.metrics().await?;
        let now = chrono::Utc::now().timestamp() as f64;
        let started = m
            .value("process_start_time_seconds", &[])
            .unwrap_or_default();
        assert!(
            (now - started).abs() < 600.0,
            "start time {started} vs now {now}"
        );
        assert!(
            m.value("process_resident_memory_bytes", &[])
                .unwrap_or_default()
                > 1e5
        );
        assert!(m.value("process_open_fds", &[]).unwrap_or_default() >= 3.0);
        Ok(())
    }
}

// -------------------------------------------------------------------------------------------
mod activity {
    use super::*;

    async fn activity_after(
        p: &Proxy,
        key: &str,
        action: impl Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
        let before = p.last_activity(key).await?;
        tick().await;
        action.await?;
        settle().await;
        Ok((before, p.last_activity(key).await?))
    }

    #[tokio::test]
    async fn successful_response_updates() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let (before, after) = activity_after(&p, "/", async {
            assert_eq!(p.get("/ok").await?.status, 200);
            Ok(())
        })
        .await?;
        assert!(after > before);
        Ok(())
    }

    #[tokio::test]
    async fn non_2xx_get_does_not_update() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        for status in ["404", "302", "500", "301"] {
            let (before, after) = activity_after(&p, "/", async {
                let resp = p
                    .request(&RawRequest::get("/x").header("x-echo-status", status))
                    .await?;
                assert_eq!(resp.status.to_string(), status);
                Ok(())
            })
            .await?;
            assert_eq!(after, before, "upstream {status}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn request_body_counts_whatever_the_status() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let (before, after) = activity_after(&p, "/", async {
            let resp = p
                .request(
                    &RawRequest::new("POST", "/x")
                        .header("x-echo-status", "404")
                        .body("some body"),
                )
                .await?;
            assert_eq!(resp.status, 404);
            Ok(())
        })
        .await?;
        assert!(after > before);
        Ok(())
    }

    #[tokio::test]
    async fn flood_of_404s_does_not_keep_a_route_active() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let (before, after) = activity_after(&p, "/", async {
            for _ in 0..25 {
                let resp = p
                    .request(&RawRequest::get("/probe").header("x-echo-status", "404"))
                    .await?;
                assert_eq!(resp.status, 404);
            }
            Ok(())
        })
        .await?;
        assert_eq!(after, before);
        Ok(())
    }

    #[tokio::test]
    async fn proxy_503_does_not_update() -> TestResult {
        let p = start(Proxy::ours().default_target(&dead_target())).await;
        let (before, after) = activity_after(&p, "/", async {
            assert_eq!(p.get("/x").await?.status, 503);
            Ok(())
        })
        .await?;
        assert_eq!(after, before);
        Ok(())
    }

    #[tokio::test]
    async fn unmatched_requests_update_nothing() -> TestResult {
        let up = echo("a").await;
        let p = start(Proxy::ours()).await;
        p.add_route("/a", &up.url()).await?;
        p.add_route("/b", &up.url()).await?;
        let (before, after) = activity_after(&p, "/a", async {
            assert_eq!(p.get("/c").await?.status, 404);
            assert_eq!(p.get("/b/x").await?.status, 200);
            Ok(())
        })
        .await?;
        assert_eq!(after, before, "/a must not move for requests to /b or /c");
        Ok(())
    }

    #[tokio::test]
    async fn streaming_response_counts_only_at_its_end() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let before = p.last_activity("/").await?;
        tick().await;
        let mut conn = Conn::tcp(p.port()).await?;
        conn.write(
            &RawRequest::get("/stream")
                .header("x-echo-chunks", "4")
                .header("x-echo-chunk-ms", "400")
                .to_bytes(&format!("127.0.0.1:{}", p.port())),
        )
        .await?;
        let head = workspace_tests::within("stream head", conn.read_head()).await??;
        assert_eq!(head.status, 200);
        let first = workspace_tests::within("first chunk", conn.read_chunk()).await??;
        assert_eq!(first.as_deref(), Some(&b"chunk 0\n"[..]));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(p.last_activity("/").await?, before, "updated mid-stream");
        while workspace_tests::within("chunks", conn.read_chunk())
            .await??
            .is_some()
        {}
        let ended = chrono::Utc::now();
        settle().await;
        let after = p.last_activity("/").await?;
        assert!(after > before);
        assert!(
            after >= ended - chrono::TimeDelta::milliseconds(150),
            "updated at {after}, stream ended at {ended}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn websocket_client_frames_count_handshake_does_not() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let before = p.last_activity("/").await?;
        tick().await;
        let (mut sock, _) = ws::connect(p.port(), "/", &[]).await?;
        assert_eq!(ws::next_text(&mut sock).await?, "connected");
        settle().await;
        assert_eq!(p.last_activity("/").await?, before, "handshake counted");
        ws::roundtrip(&mut sock, "client frame").await?;
        settle().await;
        assert!(p.last_activity("/").await? > before);
        Ok(())
    }

    #[tokio::test]
    async fn websocket_close_frame_counts() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let (mut sock, _) = ws::connect(p.port(), "/", &[]).await?;
        assert_eq!(ws::next_text(&mut sock).await?, "connected");
        settle().await;
        let before = p.last_activity("/").await?;
        tick().await;
        sock.close(None).await?;
        settle().await;
        assert!(
            p.last_activity("/").await? > before,
            "the client's close frame is activity"
        );
        Ok(())
    }

    #[tokio::test]
    async fn websocket_server_frames_do_not_count() -> TestResult {
        let up = echo("default").await;
        let p = with_default(&up).await;
        let (mut sock, _) = ws::connect(p.port(), "/?push_ms=100", &[]).await?;
        assert_eq!(ws::next_text(&mut sock).await?, "connected");
        let before = p.last_activity("/").await?;
        let mut pushes = 0;
        let until = Instant::now() + Duration::from_millis(700);
        while Instant::now() < until {
            if ws::next_text(&mut sock).await? == "push" {
                pushes += 1;
            }
        }
        assert!(pushes >= 4, "only {pushes} pushes");
        settle().await;
        assert_eq!(p.last_activity("/").await?, before, "server frames counted");
        Ok(())
    }
}

// -------------------------------------------------------------------------------------------
mod security {
    use super::*;

    async fn two_users() -> (Upstream, Upstream, Upstream, Proxy) {
        let hub = echo("hub").await;
        let alice = echo("alice").await;
        let bob = echo("bob").await;
        let p = with_default(&hub).await;
        p.add_route("/user/alice", &alice.url())
            .await
            .expect("route");
        p.add_route("/user/bob", &bob.url()).await.expect("route");
        (hub, alice, bob, p)
    }

    #[tokio::test]
    async fn dot_segments_never_cross_users() -> TestResult {
        let (hub, alice, bob, p) = two_users().await;
        for path in [
            "/user/bob/../alice/x",
            "/user/alice/../bob/x",
            "/user/alice/%2e%2e/bob/x",
            "/user/bob/%2E%2E/alice/x",
            "/user/alice%2F..%2Fbob/x",
            "/user/alice/.%2e/bob",
            "/user/alice/%2e%2e%2fbob",
            "/user/alice/..%5cbob",
        ] {
            let resp = p.get(path).await?;
            assert_eq!(resp.status, 400, "{path}");
        }
        assert!(alice.requests().is_empty(), "{:?}", alice.requests());
        assert!(bob.requests().is_empty(), "{:?}", bob.requests());
        assert!(hub.requests().is_empty(), "{:?}", hub.requests());
        Ok(())
    }

    #[tokio::test]
    async fn encoding_tricks_are_refused_and_process_survives() -> TestResult {
        let (_hub, _alice, _bob, mut p) = two_users().await;
        for path in [
            "/user/alice%2F..%2Fbob",
            "/user/%252e%252e/bob",
            "/user/alice%00",
            "/user/alice/%",
            "/user/alice/%zz",
            "/user/alice/%%32%65",
        ] {
            let resp = p.get(path).await?;
            assert_eq!(resp.status, 400, "{path}");
        }
        assert!(p.is_running());
        assert_eq!(p.get("/_chp_healthz").await?.status, 200);
        assert_eq!(name(&p.get_echo("/user/alice/ok").await?), "alice");
        Ok(())
    }

    #[tokio::test]
    async fn prefix_boundaries() -> TestResult {
        let hub = echo("hub").await;
        let al = echo("al").await;
        let p = with_default(&hub).await;
        p.add_route("/user/al/", &al.url()).await?;
        assert_eq!(name(&p.get_echo("/user/alice").await?), "hub");
        assert_eq!(name(&p.get_echo("/user/alice/").await?), "hub");
        assert_eq!(name(&p.get_echo("/user/al").await?), "al");
        assert_eq!(name(&p.get_echo("/user/al/").await?), "al");
        assert_eq!(name(&p.get_echo("/user/AL/").await?), "hub");
        Ok(())
    }

    #[tokio::test]
    async fn client_forwarded_headers_keep_the_real_peer_last() -> TestResult {
        let hub = echo("hub").await;
        let p = with_default(&hub).await;
        let e = p
            .request(
                &RawRequest::get("/")
                    .header("X-Forwarded-For", "6.6.6.6")
                    .header("X-Forwarded-Proto", "https"),
            )
            .await?
            .json()?;
        let xff = hdr(&e, "x-forwarded-for").unwrap_or_default();
        assert!(xff.ends_with(",127.0.0.1"), "{xff}");
        let proto = hdr(&e, "x-forwarded-proto").unwrap_or_default();
        assert!(proto.ends_with(",http"), "{proto}");
        Ok(())
    }
}
