//! Security checklist group C (cookies, CSRF, headers): the cases not already covered by the
//! page and API tests, each sent to the real hub on SQLite and PostgreSQL. The checklist lives
//! in the shared security reference, §5 C.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::large_futures,
    missing_docs
)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{CookieJar, PageResponse, TestHub};
use hub::identity::cookies::{HUB_LOGIN_COOKIE, SESSION_COOKIE, XSRF_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const CROSS_SITE: [(&str, &str); 2] = [
    ("Sec-Fetch-Mode", "no-cors"),
    ("Sec-Fetch-Site", "cross-site"),
];

/// The login form as a browser with `agent` sees it: its jar and the form's token.
async fn login_form(hub: &TestHub, agent: &str) -> (CookieJar, String) {
    let page = hub
        .page(
            Method::GET,
            "/hub/login",
            None,
            None,
            &[("User-Agent", agent)],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let mut jar = CookieJar::default();
    jar.update(&page);
    (jar, page.xsrf_field().unwrap())
}

async fn post_login(hub: &TestHub, jar: &CookieJar, xsrf: &str, agent: &str) -> PageResponse {
    hub.page(
        Method::POST,
        "/hub/login",
        Some(&jar.header()),
        Some(&[("username", "alice"), ("password", "x"), ("_xsrf", xsrf)]),
        &[("User-Agent", agent)],
    )
    .await
}

// === C.27 ===

hub_test!(
    cross_site_accept_share_posts_are_refused,
    |hub| async move {
        // Security checklist C.27: a cross-site form post to `/hub/accept-share` is refused
        // before the share code is looked at, with or without the right `_xsrf`.
        let bob = hub.browser("bob").await;
        for fields in [
            vec![("code", "whatever-code")],
            vec![("code", "whatever-code"), ("_xsrf", bob.xsrf.as_str())],
        ] {
            let resp = hub
                .page(
                    Method::POST,
                    "/hub/accept-share",
                    Some(&bob.cookie),
                    Some(&fields),
                    &CROSS_SITE,
                )
                .await;
            assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
        }
    }
);

// === C.28 ===

hub_test!(
    xsrf_tokens_are_bound_to_user_session_and_browser,
    config = "[authenticator]\nclass = \"dummy\"\n",
    |hub| async move {
        // Security checklist C.28: an `_xsrf` token minted for user bob (sent with alice's
        // cookies) is refused, as is an anonymous token used from another User-Agent.
        hub.user("root", true).await;
        let alice = hub.browser("root").await;
        let bob = hub.browser("bob").await;
        for mode in [Some("cors"), None] {
            let mut req = hub
                .client
                .post(format!("{}?_xsrf={}", hub.api_url("/users"), bob.xsrf))
                .header("Cookie", &alice.cookie)
                .json(&json!({"usernames": ["forged"]}));
            if let Some(mode) = mode {
                req = req.header("Sec-Fetch-Mode", mode);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{mode:?}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["status"], 403);
            // bob's token in both the cookie and the argument: still not alice's.
            let cookie = alice.cookie.replace(
                &format!("{XSRF_COOKIE}={}", alice.xsrf),
                &format!("{XSRF_COOKIE}={}", bob.xsrf),
            );
            let resp = hub
                .client
                .post(format!("{}?_xsrf={}", hub.api_url("/users"), bob.xsrf))
                .header("Cookie", cookie)
                .header("Sec-Fetch-Mode", "cors")
                .json(&json!({"usernames": ["forged"]}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        }
        let root = hub.user("root", true).await;
        let (status, _) = hub.get("/users/forged", Some(&root)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Anonymous: the token of one User-Agent does not work from another.
        let (jar, xsrf) = login_form(hub, "Browser A").await;
        let resp = post_login(hub, &jar, &xsrf, "Browser B").await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
        assert!(resp.set_cookie(HUB_LOGIN_COOKIE).is_none());
        let resp = post_login(hub, &jar, &xsrf, "Browser A").await;
        assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.body);
    }
);

// === C.29 ===

hub_test!(xsrf_cookies_only_on_navigations, |hub| async move {
    // Security checklist C.29: the `_xsrf` cookie is set on navigations (`Sec-Fetch-Mode:
    // navigate`, or no header), never on fetches, and never by the API.
    for (headers, expected) in [
        (vec![("Sec-Fetch-Mode", "navigate")], true),
        (vec![], true),
        (vec![("Sec-Fetch-Mode", "cors")], false),
        (vec![("Sec-Fetch-Mode", "no-cors")], false),
        (vec![("Sec-Fetch-Mode", "same-origin")], false),
    ] {
        let page = hub
            .page(Method::GET, "/hub/login", None, None, &headers)
            .await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(
            page.set_cookie(XSRF_COOKIE).is_some(),
            expected,
            "{headers:?}: {:?}",
            page.set_cookies()
        );
    }
    let alice = hub.browser("alice").await;
    for mode in [None, Some("navigate"), Some("cors")] {
        let mut req = hub
            .client
            .get(hub.api_url("/user"))
            .header("Cookie", "_xsrf=junk");
        if let Some(mode) = mode {
            req = req.header("Sec-Fetch-Mode", mode);
        }
        let resp = req.send().await.unwrap();
        assert!(resp.headers().get("set-cookie").is_none(), "{mode:?}");
        let resp = hub
            .client
            .get(hub.api_url("/user"))
            .header("Cookie", &alice.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get("set-cookie").is_none());
    }
});

// === C.31 ===

hub_test!(
    cookies_are_secure_behind_an_https_public_url,
    config =
        "[hub]\npublic_url = \"https://hub.example.org/\"\n[authenticator]\nclass = \"dummy\"\n",
    |hub| async move {
        // Security checklist C.31: with an https public URL, every cookie the hub sets is
        // `Secure`; login and session cookies are HttpOnly, `_xsrf` is not; paths as in
        // JupyterHub.
        let (mut jar, xsrf) = login_form(hub, "A").await;
        let resp = post_login(hub, &jar, &xsrf, "A").await;
        assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.body);
        jar.update(&resp);
        for (name, path, http_only) in [
            (HUB_LOGIN_COOKIE, "/hub/", true),
            (SESSION_COOKIE, "/", true),
            (XSRF_COOKIE, "/hub/", false),
        ] {
            let set = resp
                .set_cookie(name)
                .unwrap_or_else(|| panic!("{name}: {:?}", resp.set_cookies()));
            assert!(set.contains("; Secure"), "{set}");
            assert!(set.contains(&format!("Path={path}")), "{set}");
            assert_eq!(set.contains("HttpOnly"), http_only, "{set}");
        }
    }
);

// === C.33 ===

hub_test!(api_responses_carry_the_strict_policy, |hub| async move {
    // Security checklist C.33: API answers, errors included, carry `frame-ancestors 'none'`
    // and `default-src 'none'`, and the version header; pages carry `frame-ancestors 'none'`.
    let alice = hub.user("alice", false).await;
    for (path, who) in [
        ("/user", Some(&alice)),
        ("/user", None),
        ("/users/nobody", Some(&alice)),
        ("/no-such-endpoint", None),
        ("/", None),
    ] {
        let (_, headers, _) = hub.call(Method::GET, path, who, None).await;
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(headers.contains_key("x-jupyterhub-version"), "{path}");
    }
    for path in ["/hub/login", "/hub/home", "/hub/nope"] {
        let page = hub.get_page(path, None).await;
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(page.headers.contains_key("x-jupyterhub-version"), "{path}");
    }
});

// === C.34 ===

hub_test!(
    logout_is_a_get_as_in_jupyterhub,
    config = "[hub]\nshutdown_on_logout = true\n",
    |hub| async move {
        // Security checklist C.34 (decision): logout stays a GET, as in JupyterHub, so a
        // cross-site top-level navigation to `/hub/logout` logs the user out and, with
        // `shutdown_on_logout`, stops their servers. A POST is not a logout.
        let alice = hub.browser("alice").await;
        let (status, _) = alice
            .with_xsrf(Method::POST, "/users/alice/server", Some(json!({})))
            .await;
        assert!(status.is_success(), "{status}");
        assert_eq!(hub.spawner.running(), 1);
        let resp = hub
            .page(Method::POST, "/hub/logout", Some(&alice.cookie), None, &[])
            .await;
        assert_ne!(resp.status, StatusCode::FOUND);
        assert!(resp.set_cookie(HUB_LOGIN_COOKIE).is_none());
        assert_eq!(hub.spawner.running(), 1);
        let resp = hub
            .page(
                Method::GET,
                "/hub/logout",
                Some(&alice.cookie),
                None,
                &[
                    ("Sec-Fetch-Mode", "navigate"),
                    ("Sec-Fetch-Site", "cross-site"),
                ],
            )
            .await;
        assert_eq!(resp.status, StatusCode::FOUND);
        assert!(
            resp.set_cookie(HUB_LOGIN_COOKIE)
                .unwrap()
                .contains("Max-Age=0")
        );
        for _ in 0..50 {
            if hub.spawner.stops.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(hub.spawner.stops.load(Ordering::SeqCst), 1);
    }
);
