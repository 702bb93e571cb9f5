//! The shim in front of a web app started through `--command`, with the hub double.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use http::header;
use serde_json::Value;

use crate::common::*;

struct Setup {
    hub: MockHub,
    shim: Shim,
}

async fn setup(extra_args: &[&str]) -> Setup {
    setup_with(extra_args, &[]).await
}

async fn setup_with(extra_args: &[&str], extra_env: &[(&str, &str)]) -> Setup {
    let hub = MockHub::start().await;
    let port = free_port();
    let mut env = hub.env_for_alice(port);
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let command = echo_command("");
    let mut args = vec!["--command", command.as_str()];
    args.extend_from_slice(extra_args);
    let shim = tokio::task::block_in_place(|| start_shim(port, &env, &args));
    Setup { hub, shim }
}

async fn json(resp: reqwest::Response) -> Value {
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_and_routing() {
    let s = setup(&[]).await;
    let http = client();
    // The hub's readiness check: no credentials, any status below 500, with the version.
    let resp = http
        .get(s.shim.url("/user/alice/api"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(
        resp.headers()["x-jupyterhub-version"]
            .to_str()
            .unwrap()
            .starts_with("6.1.1+rs.")
    );
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    assert!(
        resp.headers().get(header::SET_COOKIE).is_none(),
        "no state cookie for APIs"
    );
    let body = json(resp).await;
    assert_eq!(body["status"], 403);
    // The prefix without its slash, and paths outside it.
    let resp = http
        .get(s.shim.url("/user/alice?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()[header::LOCATION], "/user/alice/?x=1");
    let resp = http.get(s.shim.url("/user/bob/")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    // Paths a backend could read two ways are refused before anything else.
    let addr = format!("127.0.0.1:{}", s.shim.port);
    for path in [
        "/user/alice/../bob/x",
        "/user/alice/%2e%2e/bob",
        "/user/alice%2F..%2Fbob/",
    ] {
        let status = raw_status(&addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
        assert!(status.contains(" 400 "), "{path}: {status}");
    }
    // Every answer carries the frame-ancestors policy.
    let resp = http.get(s.shim.url("/user/bob/")).send().await.unwrap();
    assert_eq!(
        resp.headers()[header::CONTENT_SECURITY_POLICY],
        "frame-ancestors 'none'"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_header_access() {
    let s = setup(&[]).await;
    let http = client();
    let alice = s.hub.token_for("alice");
    let bob = s.hub.token_for("bob");
    let root = s.hub.token_for("root");

    let resp = http
        .post(s.shim.url("/user/alice/api/contents?x=1"))
        .header(header::AUTHORIZATION, format!("token {alice}"))
        .header(header::COOKIE, "jupyterhub-session-id=abc; appcookie=1")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-jupyterhub-version"));
    let echo = json(resp).await;
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/user/alice/api/contents?x=1");
    assert_eq!(echo["body"], "hello");
    // The hub token never reaches the app, nor the hub's session cookie.
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    assert_eq!(echo["headers"]["cookie"][0], "appcookie=1");
    assert!(
        echo["headers"]["x-forwarded-for"][0]
            .as_str()
            .unwrap()
            .contains("127.0.0.1")
    );

    // `bearer` works too; an admin-like token with unfiltered access:servers gets in.
    let resp = http
        .get(s.shim.url("/user/alice/x"))
        .header(header::AUTHORIZATION, format!("Bearer {root}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Another user's token: 403 with JupyterHub's message.
    let resp = http
        .get(s.shim.url("/user/alice/api/x"))
        .header(header::AUTHORIZATION, format!("token {bob}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(json(resp).await["message"], "user bob is not allowed.");

    // An unknown token.
    let resp = http
        .get(s.shim.url("/user/alice/api/x"))
        .header(header::AUTHORIZATION, "token nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // ?token= is ignored on plain requests (JUPYTERHUB_ALLOW_TOKEN_IN_URL is off).
    let resp = http
        .get(s.shim.url(&format!("/user/alice/api/x?token={alice}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_checks_are_cached_and_revocation_counts_within_the_lifetime() {
    let s = setup(&["--auth-cache-ttl", "1"]).await;
    let http = client();
    let alice = s.hub.token_for("alice");
    let get = || {
        http.get(s.shim.url("/user/alice/x"))
            .header(header::AUTHORIZATION, format!("token {alice}"))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(get().await.unwrap().status(), 200);
    }
    assert_eq!(s.hub.identify_calls(), 1, "one hub call for five requests");
    s.hub.revoke(&alice);
    let revoked_at = Instant::now();
    let refused = eventually(Duration::from_secs(5), async || {
        get().await.unwrap().status() == 403
    })
    .await;
    assert!(refused, "revocation never took effect");
    let latency = revoked_at.elapsed();
    assert!(latency < Duration::from_millis(2500), "took {latency:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_down_keeps_known_users_and_fails_new_ones_fast() {
    let s = setup(&["--auth-cache-ttl", "0.5", "--hub-down-grace", "30"]).await;
    let http = client();
    let alice = s.hub.token_for("alice");
    let newcomer = s.hub.token_for("alice");
    let get = |token: &str| {
        http.get(s.shim.url("/user/alice/x"))
            .header(header::AUTHORIZATION, format!("token {token}"))
            .send()
    };
    assert_eq!(get(&alice).await.unwrap().status(), 200);
    s.hub.set_down(true);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        get(&alice).await.unwrap().status(),
        200,
        "cached user keeps working"
    );
    let started = Instant::now();
    let resp = get(&newcomer).await.unwrap();
    assert_eq!(resp.status(), 502);
    assert!(started.elapsed() < Duration::from_secs(2));
    // A browser login fails fast too.
    let mut browser = Browser::new(&s.hub, &s.shim);
    let resp = browser.login("alice", "/user/alice/tree").await;
    assert_eq!(resp.status(), 502);
    s.hub.set_down(false);
    assert_eq!(get(&newcomer).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_login_through_the_hub() {
    let s = setup(&[]).await;
    let mut browser = Browser::new(&s.hub, &s.shim);
    browser.jar.set("mock-hub-user", "alice");

    // First request: redirect to the hub's authorize URL with state and PKCE.
    let resp = browser.navigate("/user/alice/tree/notes?x=1").await;
    assert_eq!(resp.status(), 302);
    let location = resp.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let url = url::Url::parse(&browser.absolute(&location)).unwrap();
    assert_eq!(url.path(), "/hub/api/oauth2/authorize");
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], "jupyterhub-user-alice");
    assert_eq!(q["redirect_uri"], "/user/alice/oauth_callback");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    let state_cookie = browser.jar.seen.last().unwrap().clone();
    assert!(
        state_cookie.starts_with("jupyterhub-user-alice-oauth-state="),
        "{state_cookie}"
    );
    for attr in ["Path=/user/alice/", "Max-Age=600", "HttpOnly"] {
        assert!(state_cookie.contains(attr), "{state_cookie}");
    }

    // The hub sends the browser back; the shim exchanges the code and sets its cookie.
    let resp = browser.navigate(&location).await;
    assert_eq!(resp.status(), 302);
    let callback = resp.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(callback.starts_with("/user/alice/oauth_callback?code="));
    let resp = browser.navigate(&callback).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()[header::LOCATION],
        "/user/alice/tree/notes?x=1"
    );
    let login = browser
        .jar
        .seen
        .iter()
        .find(|c| c.starts_with("jupyterhub-user-alice="))
        .unwrap()
        .clone();
    for attr in ["Path=/user/alice/", "HttpOnly"] {
        assert!(login.contains(attr), "{login}");
    }
    assert!(
        browser
            .jar
            .get("jupyterhub-user-alice-oauth-state")
            .is_none(),
        "state cleared"
    );

    // Now the app answers, without ever seeing the login cookie.
    let resp = browser.navigate("/user/alice/tree/notes?x=1").await;
    assert_eq!(resp.status(), 200);
    let echo = json(resp).await;
    let cookies = echo["headers"]["cookie"][0].as_str().unwrap_or_default();
    assert!(!cookies.contains("jupyterhub-user-alice"), "{cookies}");
    assert_eq!(
        s.hub
            .state
            .token_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // The app may not set the shim's cookies.
    let resp = browser.navigate("/user/alice/set-cookie").await;
    let set: Vec<_> = resp.headers().get_all(header::SET_COOKIE).iter().collect();
    assert_eq!(set.len(), 2, "{set:?}");
    assert!(
        set.iter()
            .all(|c| !c.to_str().unwrap().starts_with("jupyterhub-user-alice="))
    );

    // Logout clears the cookie here and goes on to the hub's logout.
    let resp = browser.navigate("/user/alice/logout").await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()[header::LOCATION], "/hub/logout");
    assert!(browser.jar.get("jupyterhub-user-alice").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_logout_ends_access_on_the_next_check() {
    let s = setup(&["--auth-cache-ttl", "0.5"]).await;
    let mut browser = Browser::new(&s.hub, &s.shim);
    assert_eq!(browser.login("alice", "/user/alice/").await.status(), 200);
    // The hub deletes the session's OAuth tokens at logout.
    s.hub.revoke_all();
    browser.jar.remove("mock-hub-user");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let resp = browser.navigate("/user/alice/").await;
    assert_eq!(resp.status(), 302, "sent to log in again");
    let location = resp.headers()[header::LOCATION].to_str().unwrap();
    assert!(location.starts_with("/hub/api/oauth2/authorize?"));
    assert!(
        browser.jar.get("jupyterhub-user-alice").is_none(),
        "stale cookie cleared"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth_callback_errors() {
    let s = setup(&[]).await;
    let http = client();
    let get = |path: &str, cookie: &str| {
        http.get(s.shim.url(path))
            .header(header::COOKIE, cookie.to_owned())
            .send()
    };
    let r = get("/user/alice/oauth_callback?state=x", "").await.unwrap();
    assert_eq!(r.status(), 400);
    let r = get("/user/alice/oauth_callback?code=x", "").await.unwrap();
    assert_eq!(r.status(), 400);
    let r = get("/user/alice/oauth_callback?error=access_denied", "")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("access_denied"));
    // A state without its cookie, and a forged cookie.
    let r = get("/user/alice/oauth_callback?code=x&state=y", "")
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = get(
        "/user/alice/oauth_callback?code=x&state=y",
        "jupyterhub-user-alice-oauth-state=y",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);

    // A real state cookie, but another state in the URL.
    let mut browser = Browser::new(&s.hub, &s.shim);
    let resp = browser.navigate("/user/alice/").await;
    assert_eq!(resp.status(), 302);
    let r = get(
        "/user/alice/oauth_callback?code=x&state=other",
        &browser.jar.header(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    // No token was ever requested from the hub.
    assert_eq!(
        s.hub
            .state
            .token_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_logins_in_two_tabs() {
    let s = setup(&[]).await;
    let mut browser = Browser::new(&s.hub, &s.shim);
    browser.jar.set("mock-hub-user", "alice");
    let first = browser.navigate("/user/alice/a").await;
    let first = first.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let second = browser.navigate("/user/alice/b").await;
    let second = second.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let names = browser.jar.names();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("jupyterhub-user-alice-oauth-state-")),
        "{names:?}"
    );
    // The second tab finishes first, then the first one.
    let (resp, _) = browser.follow(&second).await;
    assert_eq!(json(resp).await["path"], "/user/alice/b");
    let (resp, visited) = browser.follow(&first).await;
    assert_eq!(resp.status(), 200, "{visited:?}");
    assert_eq!(json(resp).await["path"], "/user/alice/a");
    // The late callback of the first tab found the browser logged in: no second token.
    assert_eq!(
        s.hub
            .state
            .token_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let names = browser.jar.names();
    assert!(
        names.iter().all(|n| !n.contains("oauth-state")),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn users_without_access_are_refused_at_login() {
    let s = setup(&[]).await;
    let mut browser = Browser::new(&s.hub, &s.shim);
    let resp = browser.login("bob", "/user/alice/").await;
    assert_eq!(resp.status(), 403);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("user bob is not allowed.")
    );
    assert!(browser.jar.get("jupyterhub-user-alice").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_requests_that_are_not_navigations_get_403() {
    let s = setup(&[]).await;
    let http = client();
    for (method, mode) in [("GET", "cors"), ("POST", "navigate"), ("GET", "no-cors")] {
        let resp = http
            .request(method.parse().unwrap(), s.shim.url("/user/alice/page"))
            .header("sec-fetch-mode", mode)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{method} {mode}");
        assert!(resp.headers().get(header::SET_COOKIE).is_none());
    }
}

/// A logged-in browser (same-origin policy, the default for --command).
async fn logged_in(s: &Setup) -> Browser {
    let mut browser = Browser::new(&s.hub, &s.shim);
    assert_eq!(browser.login("alice", "/user/alice/").await.status(), 200);
    browser
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_site_requests_are_refused_same_origin_policy() {
    let s = setup(&[]).await;
    let browser = logged_in(&s).await;
    let host = format!("127.0.0.1:{}", s.shim.port);
    let post = |headers: Vec<(&'static str, String)>| {
        let mut req = browser
            .http
            .post(s.shim.url("/user/alice/api/contents"))
            .header(header::COOKIE, browser.jar.header())
            .body("x");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    // Same-origin fetch: allowed.
    let ok = post(vec![
        ("sec-fetch-site", "same-origin".into()),
        ("sec-fetch-mode", "cors".into()),
        ("origin", format!("http://{host}")),
    ])
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    // Cross-site form post, foreign Origin, and no browser evidence at all: refused.
    for headers in [
        vec![
            ("sec-fetch-site", "cross-site".to_owned()),
            ("sec-fetch-mode", "navigate".into()),
        ],
        vec![("origin", "http://evil.example".to_owned())],
        vec![("sec-fetch-site", "same-site".to_owned())],
        vec![],
    ] {
        let resp = post(headers.clone()).await.unwrap();
        assert_eq!(resp.status(), 403, "{headers:?}");
    }
    // Cookie-less token requests are not subject to it.
    let token = s.hub.token_for("alice");
    let resp = browser
        .http
        .post(s.shim.url("/user/alice/api/contents"))
        .header(header::AUTHORIZATION, format!("token {token}"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn xsrf_token_policy() {
    let s = setup(&["--xsrf", "token"]).await;
    let browser = logged_in(&s).await;
    let xsrf = browser
        .jar
        .get("_xsrf")
        .expect("the _xsrf cookie is set at login")
        .to_owned();
    let xsrf_cookie = browser
        .jar
        .seen
        .iter()
        .find(|c| c.starts_with("_xsrf="))
        .unwrap();
    assert!(
        !xsrf_cookie.contains("HttpOnly"),
        "front ends must read it: {xsrf_cookie}"
    );
    let post = |token: Option<&str>, query: &str| {
        let mut req = browser
            .http
            .post(s.shim.url(&format!("/user/alice/api/contents{query}")))
            .header(header::COOKIE, browser.jar.header())
            .header("sec-fetch-site", "same-origin")
            .header("sec-fetch-mode", "cors");
        if let Some(t) = token {
            req = req.header("x-xsrftoken", t.to_owned());
        }
        req.send()
    };
    let missing = post(None, "").await.unwrap();
    assert_eq!(missing.status(), 403);
    assert_eq!(
        json(missing).await["message"],
        "'_xsrf' argument missing from POST"
    );
    let wrong = post(Some("nope"), "").await.unwrap();
    assert_eq!(wrong.status(), 403);
    assert_eq!(post(Some(&xsrf), "").await.unwrap().status(), 200);
    assert_eq!(
        post(None, &format!("?_xsrf={xsrf}"))
            .await
            .unwrap()
            .status(),
        200
    );
    // A same-origin fetch GET needs it too; a navigation does not.
    let cors_get = browser
        .http
        .get(s.shim.url("/user/alice/api/contents"))
        .header(header::COOKIE, browser.jar.header())
        .header("sec-fetch-mode", "cors")
        .send()
        .await
        .unwrap();
    assert_eq!(cors_get.status(), 403);
    // A tossed _xsrf cookie from elsewhere is worthless: the token is bound to the session.
    let resp = browser
        .http
        .post(s.shim.url("/user/alice/api/contents"))
        .header(
            header::COOKIE,
            format!("{}; _xsrf=forged", browser.jar.header()),
        )
        .header("x-xsrftoken", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn websockets() {
    let s = setup(&[]).await;
    let ws_url = format!(
        "ws://127.0.0.1:{}/user/alice/api/kernels/k/channels",
        s.shim.port
    );
    let origin = s.shim.origin();

    // No credentials: refused.
    let err = tokio_tungstenite::connect_async(ws_request(&ws_url, &[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");

    // A token header.
    let token = s.hub.token_for("alice");
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(
        &ws_url,
        &[("authorization", &format!("token {token}"))],
    ))
    .await
    .unwrap();
    assert_eq!(ws_echo(&mut ws, "hi").await, "echo:hi");
    drop(ws);

    // ?token= is allowed on websockets, and does not reach the app.
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(
        &format!("{ws_url}?session_id=1&token={token}"),
        &[],
    ))
    .await
    .unwrap();
    assert_eq!(ws_echo(&mut ws, "q").await, "echo:q");
    drop(ws);

    // The login cookie with the server's own origin works; another origin is refused.
    let browser = logged_in(&s).await;
    let cookie = browser.jar.header();
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(
        &ws_url,
        &[("cookie", &cookie), ("origin", &origin)],
    ))
    .await
    .unwrap();
    for i in 0..20 {
        assert_eq!(
            ws_echo(&mut ws, &format!("m{i}")).await,
            format!("echo:m{i}")
        );
    }
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    let err = tokio_tungstenite::connect_async(ws_request(
        &ws_url,
        &[("cookie", &cookie), ("origin", "http://evil.example")],
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_stream() {
    let s = setup(&[]).await;
    let token = s.hub.token_for("alice");
    let started = Instant::now();
    let resp = client()
        .get(s.shim.url("/user/alice/stream"))
        .header(header::AUTHORIZATION, format!("token {token}"))
        .send()
        .await
        .unwrap();
    let mut resp = resp;
    let first = resp.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"first\n");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "first chunk held back"
    );
    let second = resp.chunk().await.unwrap().unwrap();
    assert_eq!(&second[..], b"second\n");
    assert!(started.elapsed() >= Duration::from_millis(1500));

    // A large upload streams through as well.
    let big = "x".repeat(3 * 1024 * 1024);
    let resp = client()
        .put(s.shim.url("/user/alice/upload"))
        .header(header::AUTHORIZATION, format!("token {token}"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["body"].as_str().unwrap().len(), big.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn activity_is_reported() {
    let s = setup(&["--activity-interval", "1"]).await;
    let token = s.hub.token_for("alice");
    // Nothing to report before the first authorized request.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.hub.activity().is_empty());
    let unauthorized = client()
        .get(s.shim.url("/user/alice/api/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 403);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        s.hub.activity().is_empty(),
        "refused requests are not activity"
    );
    let resp = client()
        .get(s.shim.url("/user/alice/x"))
        .header(header::AUTHORIZATION, format!("token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let reported = eventually(Duration::from_secs(5), async || {
        !s.hub.activity().is_empty()
    })
    .await;
    assert!(reported);
    let (user, body) = s.hub.activity()[0].clone();
    assert_eq!(user, "alice");
    let t = body["last_activity"].as_str().unwrap();
    assert_eq!(body["servers"][""]["last_activity"], t);
    assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
    // No new report without new activity.
    let count = s.hub.activity().len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(s.hub.activity().len(), count);
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_app_and_app_token() {
    let hub = MockHub::start().await;
    let port = free_port();
    let env = hub.env_for_alice(port);
    let command = format!(
        "python3 {} --socket {{socket}} --token {{token}}",
        echo_app()
    );
    let shim = tokio::task::block_in_place(|| start_shim(port, &env, &["--command", &command]));
    let token = hub.token_for("alice");
    let resp = client()
        .get(shim.url("/user/alice/x"))
        .header(header::AUTHORIZATION, format!("token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the app saw its own token");
    let echo = json(resp).await;
    let auth = echo["headers"]["authorization"][0].as_str().unwrap();
    assert!(auth.starts_with("token ") && !auth.contains(&token));
    // Websockets over the socket.
    let ws_url = format!("ws://127.0.0.1:{port}/user/alice/ws");
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(
        &ws_url,
        &[("authorization", &format!("token {token}"))],
    ))
    .await
    .unwrap();
    assert_eq!(ws_echo(&mut ws, "sock").await, "echo:sock");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_apps_exit_ends_the_shim_with_its_code() {
    let hub = MockHub::start().await;
    // Before it ever listens.
    let env = hub.env_for_alice(free_port());
    let mut child = spawn_shim(&env, &["--command", "sh -c 'exit 7' {port}"]);
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert_eq!(status.code(), Some(7));
    // After serving for a while.
    let port = free_port();
    let env = hub.env_for_alice(port);
    let command = echo_command("--exit-after 1.5 --exit-code 3");
    let mut shim = tokio::task::block_in_place(|| start_shim(port, &env, &["--command", &command]));
    let status = tokio::task::block_in_place(|| shim.wait_exit(Duration::from_secs(20))).unwrap();
    assert_eq!(status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_are_passed_on() {
    let hub = MockHub::start().await;
    let port = free_port();
    let env = hub.env_for_alice(port);
    let dir = tempdir();
    let pidfile = dir.path().join("app.pid");
    // The app records its pid, then runs the echo server.
    let command = format!(
        "sh -c 'echo $$ > {}; exec python3 {} --port \"$0\"' {{port}}",
        pidfile.display(),
        echo_app()
    );
    let mut shim = tokio::task::block_in_place(|| start_shim(port, &env, &["--command", &command]));
    let app_pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(app_pid));
    shim.signal(nix::sys::signal::Signal::SIGTERM);
    let status = tokio::task::block_in_place(|| shim.wait_exit(Duration::from_secs(20))).unwrap();
    // Python dies of the SIGTERM it was passed: 128 + 15.
    assert_eq!(status.code(), Some(143));
    assert!(!alive(app_pid), "the app is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_app_dies_with_a_killed_shim() {
    let hub = MockHub::start().await;
    let port = free_port();
    let mut env = hub.env_for_alice(port);
    let dir = tempdir();
    // A killed shim cannot remove its private directory: keep it inside the test's.
    env.push(("TMPDIR".into(), dir.path().display().to_string()));
    let pidfile = dir.path().join("app.pid");
    let command = format!(
        "sh -c 'echo $$ > {}; exec python3 {} --port \"$0\"' {{port}}",
        pidfile.display(),
        echo_app()
    );
    let mut shim = tokio::task::block_in_place(|| start_shim(port, &env, &["--command", &command]));
    let app_pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    shim.signal(nix::sys::signal::Signal::SIGKILL);
    tokio::task::block_in_place(|| shim.wait_exit(Duration::from_secs(5))).unwrap();
    let gone = eventually(Duration::from_secs(5), async || !alive(app_pid)).await;
    assert!(gone, "the app outlived the shim");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_configuration_exits_64_with_a_message() {
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(SHIM)
            .env_clear()
            .arg("--command")
            .arg("app {port}")
            .output()
            .unwrap()
    });
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("JUPYTERHUB_SERVICE_URL"), "{err}");
    let hub = MockHub::start().await;
    let env = hub.env_for_alice(free_port());
    let out = tokio::task::block_in_place(|| {
        let mut cmd = std::process::Command::new(SHIM);
        cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        cmd.args(["--command", "app --port {prot}"])
            .output()
            .unwrap()
    });
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("{prot}"));
    let help = tokio::task::block_in_place(|| {
        std::process::Command::new(SHIM)
            .arg("--help")
            .output()
            .unwrap()
    });
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--command",
        "--auth-cache-ttl",
        "--xsrf",
        "JUPYTERHUB_SHIM_COMMAND",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}

/// A CA, and a server and a client certificate it signed, as PEM files in `dir`.
fn certificates(dir: &std::path::Path) -> [std::path::PathBuf; 5] {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>, usage| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(
        vec!["client.test".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let files = [
        ("ca.pem", ca.pem()),
        ("server.pem", server_cert),
        ("server.key", server_key),
        ("client.pem", client_cert),
        ("client.key", client_key),
    ];
    files.map(|(name, pem)| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_tls_with_client_certificates() {
    daemon_support::install_crypto_provider();
    let hub = MockHub::start().await;
    let port = free_port();
    let dir = tempdir();
    let [ca, server_cert, server_key, client_cert, client_key] = certificates(dir.path());
    let mut env: Vec<(String, String)> = hub
        .env_for_alice(port)
        .into_iter()
        .filter(|(k, _)| k != "JUPYTERHUB_SERVICE_URL")
        .collect();
    for (k, v) in [
        (
            "JUPYTERHUB_SERVICE_URL",
            format!("https://127.0.0.1:{port}/user/alice/"),
        ),
        ("JUPYTERHUB_SSL_KEYFILE", server_key.display().to_string()),
        ("JUPYTERHUB_SSL_CERTFILE", server_cert.display().to_string()),
        ("JUPYTERHUB_SSL_CLIENT_CA", ca.display().to_string()),
    ] {
        env.push((k.to_owned(), v));
    }
    let command = echo_command("");
    let shim = tokio::task::block_in_place(|| start_shim(port, &env, &["--command", &command]));
    let token = hub.token_for("alice");
    let tls_client = |with_certificate: bool| {
        let tls = daemon_support::tls::ClientTls {
            ca: Some(ca.clone()),
            cert: with_certificate.then(|| client_cert.clone()),
            key: with_certificate.then(|| client_key.clone()),
            insecure: false,
        }
        .build()
        .unwrap();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .build()
            .unwrap()
    };
    let url = format!("https://127.0.0.1:{port}/user/alice/x");
    let resp = tls_client(true)
        .get(&url)
        .header(header::AUTHORIZATION, format!("token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo = json(resp).await;
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");
    // Without a client certificate from the CA, no TLS session.
    assert!(tls_client(false).get(&url).send().await.is_err());
    drop(shim);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cookie_secret_file_keeps_logins_across_restarts() {
    let hub = MockHub::start().await;
    let port = free_port();
    let env = hub.env_for_alice(port);
    let dir = tempdir();
    let key = dir.path().join("cookie_secret");
    let key_arg = key.display().to_string();
    let command = echo_command("");
    let args = [
        "--command",
        command.as_str(),
        "--cookie-secret-file",
        key_arg.as_str(),
    ];
    let shim = tokio::task::block_in_place(|| start_shim(port, &env, &args));
    let mut browser = Browser::new(&hub, &shim);
    assert_eq!(browser.login("alice", "/user/alice/").await.status(), 200);
    let calls = hub
        .state
        .token_calls
        .load(std::sync::atomic::Ordering::SeqCst);
    drop(shim);
    let shim = tokio::task::block_in_place(|| start_shim(port, &env, &args));
    let resp = browser.navigate("/user/alice/").await;
    assert_eq!(resp.status(), 200, "the cookie survived the restart");
    assert_eq!(
        hub.state
            .token_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        calls,
        "no new login"
    );
    drop(shim);
    // Without the file, a restart means a new key: the browser logs in again.
    let args = ["--command", command.as_str()];
    let _shim = tokio::task::block_in_place(|| start_shim(port, &env, &args));
    let resp = browser.navigate("/user/alice/").await;
    assert_eq!(resp.status(), 302);
}

#[tokio::test(flavor = "multi_thread")]
async fn host_prefixed_cookies() {
    let s = setup_with(&[], &[("JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED", "1")]).await;
    let mut browser = Browser::new(&s.hub, &s.shim);
    assert_eq!(browser.login("alice", "/user/alice/").await.status(), 200);
    let state = browser
        .jar
        .seen
        .iter()
        .find(|c| c.starts_with("__Host-jupyterhub-user-alice-oauth-state="))
        .unwrap();
    let login = browser
        .jar
        .seen
        .iter()
        .find(|c| c.starts_with("__Host-jupyterhub-user-alice="))
        .unwrap();
    for cookie in [state, login] {
        assert!(
            cookie.contains("Path=/;") && cookie.contains("Secure"),
            "{cookie}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_credential_reaches_the_log() {
    let hub = MockHub::start().await;
    let port = free_port();
    let mut env = hub.env_for_alice(port);
    env.push(("RUST_LOG".into(), "debug".into()));
    let dir = tempdir();
    let log = dir.path().join("shim.log");
    let command = echo_command("");
    let shim = tokio::task::block_in_place(|| {
        start_shim_logging_to(
            port,
            &env,
            &["--command", &command, "--xsrf", "token"],
            Some(&log),
        )
    });
    // A browser login, cookie requests (one refused), token requests, a websocket with ?token=.
    let mut browser = Browser::new(&hub, &shim);
    assert_eq!(browser.login("alice", "/user/alice/").await.status(), 200);
    let refused = browser
        .http
        .post(shim.url("/user/alice/api/x"))
        .header(header::COOKIE, browser.jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let token = hub.token_for("alice");
    let bob = hub.token_for("bob");
    for t in [&token, &bob, &"not-a-token".to_owned()] {
        client()
            .get(shim.url("/user/alice/api/x"))
            .header(header::AUTHORIZATION, format!("token {t}"))
            .send()
            .await
            .unwrap();
    }
    let ws_url = format!("ws://127.0.0.1:{port}/user/alice/ws?token={token}");
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(&ws_url, &[]))
        .await
        .unwrap();
    assert_eq!(ws_echo(&mut ws, "x").await, "echo:x");
    drop(ws);
    let mut shim = shim;
    shim.signal(nix::sys::signal::Signal::SIGTERM);
    tokio::task::block_in_place(|| shim.wait_exit(Duration::from_secs(20))).unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("logged in"), "the log has the login:\n{text}");
    let mut secrets = hub.all_tokens();
    secrets.push(SERVER_TOKEN.to_owned());
    secrets.extend(browser.jar.cookies.iter().map(|(_, v, _)| v.clone()));
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(
            !text.contains(secret.as_str()),
            "{secret} is in the log:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_during_startup_are_passed_on() {
    // The hub does not answer, so the shim is still checking its version when the signal
    // comes: the app gets it and the shim leaves with the app's status, without waiting.
    let hub = MockHub::start().await;
    let port = free_port();
    let mut env = hub.env_for_alice(port);
    let nowhere = free_port();
    for (k, v) in &mut env {
        if k == "JUPYTERHUB_API_URL" {
            *v = format!("http://127.0.0.1:{nowhere}/hub/api");
        }
    }
    let mut child = spawn_shim(&env, &["--command", &echo_command("")]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(child.try_wait().unwrap().is_none(), "still starting");
    let started = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert_eq!(status.code(), Some(143));
    assert!(started.elapsed() < Duration::from_secs(5));
}
