//! The hub's pages: the login flow through the real form, login refusals, sessions and
//! logout, `next=` handling, escaping, cross-site form posts, root and prefix redirects, error
//! pages, template overrides, a non-root base URL, the token page and CSP reports; each on
//! SQLite and PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::large_futures,
    missing_docs
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{Backend, CookieJar, PageResponse, TestHub};
use hub::db::models::{api_tokens, oauth_clients, users};
use hub::identity::cookies::{HUB_LOGIN_COOKIE, SESSION_COOKIE, XSRF_COOKIE};
use hub::identity::tokens::{self, HashedToken};
use hub_plugin::test_util::DummyAuthenticator;
use hub_plugin::{AuthError, AuthModel, Authenticator, LoginForm};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A [`DummyAuthenticator`] with a password, counting its calls.
#[derive(Debug, Default)]
struct CountingAuthenticator {
    inner: DummyAuthenticator,
    calls: AtomicUsize,
}

#[async_trait]
impl Authenticator for CountingAuthenticator {
    fn kind(&self) -> &str {
        "counting"
    }

    async fn authenticate(&self, form: &LoginForm) -> Result<Option<AuthModel>, AuthError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.authenticate(form).await
    }
}

/// Defines `name::sqlite` and `name::postgres` with a hub whose authenticator wants the
/// password `secret` and counts its calls (bound to `$auth`).
macro_rules! auth_test {
    ($name:ident, $config:expr, |$hub:ident, $auth:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $crate::each_backend!(run);

            async fn run(backend: Backend) {
                let $auth = Arc::new(CountingAuthenticator {
                    inner: DummyAuthenticator {
                        password: Some("secret".into()),
                    },
                    calls: AtomicUsize::new(0),
                });
                let dynamic: Arc<dyn Authenticator> = $auth.clone();
                let owned =
                    TestHub::start_with_authenticator(backend, $config, None, dynamic).await;
                {
                    let $hub = &owned;
                    $body.await;
                }
                owned.stop().await;
            }
        }
    };
}

/// Defines `name::sqlite` and `name::postgres` with a hub started from `config`.
macro_rules! config_test {
    ($name:ident, $config:expr, |$hub:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $crate::each_backend!(run);

            async fn run(backend: Backend) {
                let config: String = $config;
                let owned = TestHub::start(backend, &config).await;
                {
                    let $hub = &owned;
                    $body.await;
                }
                owned.stop().await;
            }
        }
    };
}

// === helpers ===

/// Everyone the authenticator accepts may log in.
const OPEN: &str = "[authenticator]\nclass = \"dummy\"\n";

/// GET the login page (as a fresh browser), returning the jar with its `_xsrf` cookie and the
/// form's token.
async fn login_form(hub: &TestHub, path: &str) -> (CookieJar, String, PageResponse) {
    let page = hub.get_page(path, None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let mut jar = CookieJar::default();
    jar.update(&page);
    let xsrf = page.xsrf_field().expect("login form has _xsrf");
    (jar, xsrf, page)
}

/// Logs in through the form at `login_path` with `username`/`password`.
async fn log_in_as(
    hub: &TestHub,
    login_path: &str,
    username: &str,
    password: &str,
) -> (CookieJar, PageResponse) {
    let (mut jar, xsrf, _) = login_form(hub, login_path).await;
    let resp = hub
        .page(
            Method::POST,
            login_path,
            Some(&jar.header()),
            Some(&[
                ("username", username),
                ("password", password),
                ("_xsrf", &xsrf),
            ]),
            &[],
        )
        .await;
    jar.update(&resp);
    (jar, resp)
}

async fn user_exists(hub: &TestHub, name: &str) -> bool {
    let name = name.to_owned();
    hub.state
        .db
        .run(move |c| users::find_by_name(c, &name))
        .await
        .unwrap()
        .is_some()
}

fn assert_no_login_cookie(resp: &PageResponse) {
    assert!(
        resp.set_cookie(HUB_LOGIN_COOKIE).is_none(),
        "{:?}",
        resp.set_cookies()
    );
}

/// Inserts an OAuth client and a token it issued to `user` for browser session `session`.
async fn oauth_token(hub: &TestHub, user: &str, client: &str, session: Option<&str>) -> String {
    let token = tokens::new_api_token();
    let hashed = HashedToken::new(&token, tokens::GENERATED_ROUNDS).to_string();
    let prefix = tokens::token_prefix(&token).to_owned();
    let (user, client, session) = (
        user.to_owned(),
        client.to_owned(),
        session.map(str::to_owned),
    );
    hub.state
        .db
        .run(move |c| {
            let u = users::find_by_name(c, &user)?.unwrap();
            if oauth_clients::find_by_identifier(c, &client)?.is_none() {
                oauth_clients::insert(
                    c,
                    &oauth_clients::NewOAuthClient {
                        identifier: &client,
                        description: "My notebook service",
                        secret: "unused-secret",
                        redirect_uri: "/services/x/oauth_callback",
                        allowed_scopes: &[],
                        owner: oauth_clients::ClientOwner::None,
                    },
                )?;
            }
            api_tokens::insert(
                c,
                &api_tokens::NewApiToken {
                    prefix: &prefix,
                    hashed: &hashed,
                    owner: api_tokens::TokenOwner::User(u.id),
                    spawner_id: None,
                    client_id: &client,
                    session_id: session.as_deref(),
                    note: "oauth",
                    scopes: &["identify".to_owned()],
                    expires_at: None,
                },
            )?;
            Ok(())
        })
        .await
        .unwrap();
    token
}

async fn token_count(hub: &TestHub, user: &str) -> usize {
    let user = user.to_owned();
    hub.state
        .db
        .run(move |c| {
            let u = users::find_by_name(c, &user)?.unwrap();
            api_tokens::list_for_owner(c, api_tokens::TokenOwner::User(u.id), hub::db::now())
        })
        .await
        .unwrap()
        .len()
}

// === the login flow ===

config_test!(login_through_the_form, OPEN.to_owned(), |hub| async move {
    let (jar, xsrf, page) = login_form(hub, "/hub/login").await;
    assert!(page.body.contains("name=\"username\""));
    assert!(page.body.contains("name=\"password\""));
    assert!(page.body.contains("action=\"/hub/login\""));
    let anon = page
        .set_cookie(XSRF_COOKIE)
        .expect("anonymous _xsrf cookie");
    assert!(anon.contains("Path=/hub/"), "{anon}");
    assert!(anon.contains("Max-Age=3600"), "{anon}");
    assert!(!anon.contains("HttpOnly"), "{anon}");
    assert_eq!(jar.get(XSRF_COOKIE), Some(xsrf.as_str()));

    let (jar, resp) = log_in_as(hub, "/hub/login", "Alice", "anything").await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.body);
    assert_eq!(resp.location(), Some("/hub/spawn"));
    let login = resp.set_cookie(HUB_LOGIN_COOKIE).expect("login cookie");
    assert!(
        login.contains("Path=/hub/") && login.contains("HttpOnly"),
        "{login}"
    );
    let session = resp.set_cookie(SESSION_COOKIE).expect("session cookie");
    assert!(
        session.contains("Path=/;") || session.ends_with("Path=/"),
        "{session}"
    );
    let fresh = resp.set_cookie(XSRF_COOKIE).expect("fresh _xsrf");
    assert!(!fresh.contains("Max-Age"), "{fresh}");
    assert_ne!(jar.get(XSRF_COOKIE), Some(xsrf.as_str()));
    assert!(user_exists(hub, "alice").await);

    let home = hub.get_page("/hub/home", Some(&jar.header())).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(home.body.contains(">alice<"), "{}", home.body);
    // The fresh token is the one pages now carry.
    assert_eq!(home.xsrf_field(), None);
    assert!(home.body.contains(jar.get(XSRF_COOKIE).unwrap()));

    // Logged in, the login page goes straight on.
    let again = hub
        .get_page("/hub/login?next=/hub/token", Some(&jar.header()))
        .await;
    assert_eq!(again.status, StatusCode::FOUND);
    assert_eq!(again.location(), Some("/hub/token"));
});

config_test!(
    usernames_are_trimmed_and_normalised,
    OPEN.to_owned(),
    |hub| async move {
        let (_, resp) = log_in_as(hub, "/hub/login", " spiff ", "x").await;
        assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.body);
        assert!(user_exists(hub, "spiff").await);
        assert!(!user_exists(hub, " spiff ").await);
        let (jar, resp) = log_in_as(hub, "/hub/login", "SPIFF", "x").await;
        assert_eq!(resp.status, StatusCode::FOUND);
        let home = hub.get_page("/hub/home", Some(&jar.header())).await;
        assert!(home.body.contains(">spiff<"));
    }
);

auth_test!(login_failures, OPEN, |hub, auth| async move {
    // Wrong password: 403, the form again with the error, no login cookie.
    let (_, resp) = log_in_as(hub, "/hub/login?next=/hub/token", "alice", "wrong").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(
        resp.body.contains("Invalid username or password"),
        "{}",
        resp.body
    );
    assert!(resp.body.contains("name=\"password\""));
    assert!(resp.body.contains("value=\"alice\""));
    assert!(
        resp.body
            .contains("action=\"/hub/login?next=%2Fhub%2Ftoken\"")
    );
    assert_no_login_cookie(&resp);
    assert!(!user_exists(hub, "alice").await);
    assert_eq!(auth.calls.load(Ordering::SeqCst), 1);

    // The right one works.
    let (_, resp) = log_in_as(hub, "/hub/login", "alice", "secret").await;
    assert_eq!(resp.status, StatusCode::FOUND);
    assert_eq!(auth.calls.load(Ordering::SeqCst), 2);

    // Missing or wrong `_xsrf`: 403 before the authenticator is asked.
    let (jar, _, _) = login_form(hub, "/hub/login").await;
    let fields = [("username", "alice"), ("password", "secret")];
    let resp = hub
        .page(
            Method::POST,
            "/hub/login",
            Some(&jar.header()),
            Some(&fields),
            &[],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(resp.body.contains("_xsrf"), "{}", resp.body);
    assert_no_login_cookie(&resp);
    let resp = hub
        .page(
            Method::POST,
            "/hub/login",
            Some(&jar.header()),
            Some(&[
                ("username", "alice"),
                ("password", "secret"),
                ("_xsrf", "2|deadbeef|00|not-a-token"),
            ]),
            &[],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_no_login_cookie(&resp);
    // A token without its cookie.
    let (_, xsrf, _) = login_form(hub, "/hub/login").await;
    let resp = hub
        .page(
            Method::POST,
            "/hub/login",
            None,
            Some(&[
                ("username", "alice"),
                ("password", "secret"),
                ("_xsrf", &xsrf),
            ]),
            &[],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_no_login_cookie(&resp);
    assert_eq!(auth.calls.load(Ordering::SeqCst), 2);

    // A 1 MB username: refused quickly, nothing stored, the hub still answers.
    let huge = "a".repeat(1024 * 1024);
    let started = Instant::now();
    let (_, resp) = log_in_as(hub, "/hub/login", &huge, "secret").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        resp.body.len() < 64 * 1024,
        "the page echoes {} bytes",
        resp.body.len()
    );
    assert_no_login_cookie(&resp);
    assert_eq!(auth.calls.load(Ordering::SeqCst), 2);
    let health = hub.get_page("/hub/health", None).await;
    assert_eq!(health.status, StatusCode::OK);
});

config_test!(
    blocked_users_cannot_log_in,
    "[authenticator]\nblocked_users = [\"Bob\"]\nallow_all = true\n".to_owned(),
    |hub| async move {
        for name in ["bob", "BOB", " Bob "] {
            let (_, resp) = log_in_as(hub, "/hub/login", name, "x").await;
            assert_eq!(resp.status, StatusCode::FORBIDDEN, "{name}");
            assert!(resp.body.contains("Invalid username or password"));
            assert_no_login_cookie(&resp);
        }
        assert!(!user_exists(hub, "bob").await);
        let (_, resp) = log_in_as(hub, "/hub/login", "carol", "x").await;
        assert_eq!(resp.status, StatusCode::FOUND);
    }
);

hub_test!(tokens_never_log_in_on_pages, |hub| async move {
    let alice = hub.user("alice", false).await;
    let with_query = hub
        .get_page(&format!("/hub/home?token={}", alice.token), None)
        .await;
    assert_eq!(with_query.status, StatusCode::FOUND);
    assert!(
        with_query
            .location()
            .unwrap()
            .starts_with("/hub/login?next=")
    );
    assert_no_login_cookie(&with_query);
    for header in [
        format!("token {}", alice.token),
        format!("Bearer {}", alice.token),
    ] {
        let resp = hub
            .page(
                Method::GET,
                "/hub/home",
                None,
                None,
                &[("Authorization", &header)],
            )
            .await;
        assert_eq!(resp.status, StatusCode::FOUND);
        assert!(resp.location().unwrap().starts_with("/hub/login"));
        let token_page = hub
            .page(
                Method::GET,
                "/hub/token",
                None,
                None,
                &[("Authorization", &header)],
            )
            .await;
        assert_eq!(token_page.status, StatusCode::FOUND);
    }
    let login = hub
        .get_page(&format!("/hub/login?token={}", alice.token), None)
        .await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.contains("name=\"password\""));
    assert_no_login_cookie(&login);
});

config_test!(
    next_targets_stay_on_this_host,
    OPEN.to_owned(),
    |hub| async move {
        let host = hub.origin.trim_start_matches("http://").to_owned();
        // (next, where a successful login may go: Some(exact path) or None for the default).
        let vectors: Vec<(String, Option<&str>)> = vec![
            ("/hub/token".into(), Some("/hub/token")),
            (
                "/user/alice/lab?x=1#y".into(),
                Some("/user/alice/lab?x=1#y"),
            ),
            (format!("http://{host}/hub/home"), Some("/hub/home")),
            (format!("http://{host}//evil.com/"), Some("/evil.com/")),
            (format!("http://{host}////evil.com"), Some("/evil.com")),
            ("http://evil.com/".into(), None),
            ("https://evil.com/hub/".into(), None),
            ("//evil.com".into(), None),
            ("///evil.com".into(), None),
            ("////evil.com".into(), None),
            ("/\\evil.com".into(), None),
            ("\\\\evil.com".into(), None),
            ("\\/evil.com".into(), None),
            ("/\t/evil.com".into(), None),
            ("/\n/evil.com".into(), None),
            ("/\r\n/evil.com".into(), None),
            ("javascript:alert(1)".into(), None),
            ("JavaScript:alert(document.cookie)".into(), None),
            ("data:text/html,<script>alert(1)</script>".into(), None),
            (format!("http://{host}.evil.com/"), None),
            (format!("http://user@{host}/hub/home"), None),
            (format!("http://evil.com@{host}/"), None),
            ("http:evil.com".into(), None),
            ("https:/evil.com".into(), None),
            ("evil.com".into(), None),
            ("\u{ff0f}\u{ff0f}evil.com".into(), None),
            ("\u{0}/evil.com".into(), None),
        ];
        let default = "/hub/spawn";
        for (next, expected) in &vectors {
            let login_path = format!("/hub/login?next={}", urlencode(next));
            let (jar, resp) = log_in_as(hub, &login_path, "alice", "x").await;
            assert_eq!(resp.status, StatusCode::FOUND, "{next:?}");
            let location = resp.location().unwrap();
            assert_eq!(location, expected.unwrap_or(default), "{next:?}");
            assert_same_host(hub, location, next);
            // Already logged in, the login page applies the same rule.
            let again = hub.get_page(&login_path, Some(&jar.header())).await;
            assert_eq!(again.status, StatusCode::FOUND);
            assert_eq!(
                again.location().unwrap(),
                expected.unwrap_or(default),
                "{next:?}"
            );
            // The form never carries a refused target.
            let form = hub.get_page(&login_path, None).await;
            if expected.is_none() {
                assert!(form.body.contains("action=\"/hub/login\""), "{next:?}");
            }
        }
    }
);

fn urlencode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `location`, resolved against the hub's origin, stays on the hub's host.
fn assert_same_host(hub: &TestHub, location: &str, next: &str) {
    assert!(location.starts_with('/'), "{next:?} -> {location}");
    assert!(!location.starts_with("//"), "{next:?} -> {location}");
    assert!(!location.contains('\\'), "{next:?} -> {location}");
    let base = url::Url::parse(&hub.origin).unwrap();
    let resolved = base.join(location).unwrap();
    assert_eq!(
        resolved.host_str(),
        base.host_str(),
        "{next:?} -> {location}"
    );
}

config_test!(user_values_are_escaped, OPEN.to_owned(), |hub| async move {
    let evil = "'\"><img src=x onerror=alert(1)>";
    // In `next`, on the login form.
    let page = hub
        .get_page(&format!("/hub/login?next=/x{}", urlencode(evil)), None)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("<img src=x"), "{}", page.body);
    // A refused login echoes the name escaped.
    let (_, resp) = log_in_as(hub, "/hub/login", &format!(" {evil}/ "), "x").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert!(!resp.body.contains("<img src=x"));
    assert!(resp.body.contains("&lt;img src=x"), "{}", resp.body);
    // As a username, in the navigation bar, the page data and the home page.
    let (jar, resp) = log_in_as(hub, "/hub/login", evil, "x").await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.body);
    let home = hub.get_page("/hub/home", Some(&jar.header())).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(!home.body.contains("<img src=x"), "{}", home.body);
    assert!(
        home.body.contains("&#x27;&quot;&gt;&lt;img src=x"),
        "{}",
        home.body
    );
    let token = hub.get_page("/hub/token", Some(&jar.header())).await;
    assert!(!token.body.contains("<img src=x"));
    // A display name with markup.
    let admin = hub.user("admin", true).await;
    let alice = hub.browser("alice").await;
    let (status, _, _) = hub
        .call(
            Method::PATCH,
            "/users/alice/servers/",
            Some(&admin),
            Some(json!({"display_name": "My <script>alert(1)</script> box"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let home = hub.get_page("/hub/home", Some(&alice.cookie)).await;
    assert!(!home.body.contains("<script>alert(1)"), "{}", home.body);
    assert!(home.body.contains("&lt;script&gt;"), "{}", home.body);
    let not_running = hub
        .get_page("/hub/spawn-pending/alice", Some(&alice.cookie))
        .await;
    assert!(!not_running.body.contains("<script>alert(1)"));
    // In an unknown path, on the 404 page.
    let missing = hub
        .get_page(&format!("/hub/{}", urlencode(evil)), Some(&alice.cookie))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(!missing.body.contains("<img src=x"));
});

// === logout ===

config_test!(
    logout_clears_cookies_and_revokes_session_tokens,
    OPEN.to_owned(),
    |hub| async move {
        let (jar, _) = log_in_as(hub, "/hub/login", "alice", "x").await;
        let session = jar.get(SESSION_COOKIE).unwrap().to_owned();
        oauth_token(hub, "alice", "service-x", Some(&session)).await;
        oauth_token(hub, "alice", "service-x", Some("another-session")).await;
        assert_eq!(token_count(hub, "alice").await, 2);

        // A forged session cookie on an anonymous logout deletes nothing.
        let forged = format!("{SESSION_COOKIE}={session}");
        let anon = hub.get_page("/hub/logout", Some(&forged)).await;
        assert_eq!(anon.status, StatusCode::FOUND);
        assert_eq!(token_count(hub, "alice").await, 2);

        let resp = hub.get_page("/hub/logout", Some(&jar.header())).await;
        assert_eq!(resp.status, StatusCode::FOUND);
        assert_eq!(resp.location(), Some("/hub/login"));
        for (name, path) in [
            (HUB_LOGIN_COOKIE, "/hub/"),
            (SESSION_COOKIE, "/"),
            (XSRF_COOKIE, "/hub/"),
            ("jupyterhub-services", "/services"),
        ] {
            let cleared = resp
                .set_cookie(name)
                .unwrap_or_else(|| panic!("{name} cleared"));
            assert!(cleared.contains(&format!("Path={path}")), "{cleared}");
            assert!(cleared.contains("Max-Age=0"), "{cleared}");
        }
        // Only the tokens of this browser's session are gone.
        assert_eq!(token_count(hub, "alice").await, 1);
        let mut after = jar.clone();
        after.update(&resp);
        let home = hub.get_page("/hub/home", Some(&after.header())).await;
        assert_eq!(home.status, StatusCode::FOUND);
    }
);

// === cross-site posts ===

hub_test!(cross_site_form_posts_are_refused, |hub| async move {
    let alice = hub.browser("alice").await;
    let cross = [
        ("Sec-Fetch-Mode", "no-cors"),
        ("Sec-Fetch-Site", "cross-site"),
    ];
    for path in ["/hub/login", "/hub/spawn", "/hub/spawn/alice", "/hub/token"] {
        // Without a token, and even with the right one.
        for fields in [
            vec![("username", "alice"), ("password", "x")],
            vec![
                ("username", "alice"),
                ("_xsrf", alice.xsrf.as_str()),
                ("note", "n"),
            ],
        ] {
            let resp = hub
                .page(
                    Method::POST,
                    path,
                    Some(&alice.cookie),
                    Some(&fields),
                    &cross,
                )
                .await;
            assert_eq!(resp.status, StatusCode::FORBIDDEN, "{path}: {}", resp.body);
            assert_no_login_cookie(&resp);
        }
        // Anonymous too.
        let resp = hub
            .page(
                Method::POST,
                path,
                None,
                Some(&[("username", "alice")]),
                &cross,
            )
            .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(hub.spawner.starts.load(Ordering::SeqCst), 0);
    assert_eq!(token_count(hub, "alice").await, 0);
    // A same-origin no-cors GET (an image, a stylesheet) is fine.
    let resp = hub
        .page(
            Method::GET,
            "/hub/home",
            Some(&alice.cookie),
            None,
            &[
                ("Sec-Fetch-Mode", "no-cors"),
                ("Sec-Fetch-Site", "same-origin"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
});

// === redirects and error pages ===

hub_test!(root_and_prefix_redirects, |hub| async move {
    let resp = hub.get_page("/hub", None).await;
    assert_eq!(resp.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(resp.location(), Some("/hub/"));
    let resp = hub.get_page("/hub?x=1", None).await;
    assert_eq!(resp.location(), Some("/hub/?x=1"));
    let resp = hub.get_page("/hub/", None).await;
    assert_eq!(resp.status, StatusCode::FOUND);
    assert_eq!(resp.location(), Some("/hub/login?next=%2Fhub%2F"));
    let alice = hub.browser("alice").await;
    let resp = hub.get_page("/hub/", Some(&alice.cookie)).await;
    assert_eq!(resp.status, StatusCode::FOUND);
    assert_eq!(resp.location(), Some("/hub/spawn"));

    for (path, target) in [
        ("/", "/hub/"),
        ("/user/bob/tree?x=1", "/hub/user/bob/tree?x=1"),
        ("/user/bob/", "/hub/user/bob/"),
        ("/user/bob", "/user/bob/"),
        ("/services/svc", "/services/svc/"),
        ("/services/svc/x", "/hub/services/svc/x"),
        ("/favicon.ico", "/hub/favicon.ico"),
        ("//evil.com/x", "/hub//evil.com/x"),
    ] {
        let resp = hub.get_page(path, None).await;
        assert_eq!(resp.status, StatusCode::FOUND, "{path}");
        assert_eq!(resp.location(), Some(target), "{path}");
        let head = hub.page(Method::HEAD, path, None, None, &[]).await;
        assert_eq!(head.status, StatusCode::FOUND, "HEAD {path}");
    }
    let resp = hub
        .page(Method::POST, "/user/bob/api/x", None, Some(&[]), &[])
        .await;
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    // Cookie-authenticated without `_xsrf`: 403 first.
    let resp = hub
        .page(
            Method::POST,
            "/user/bob/api/x",
            Some(&alice.cookie),
            Some(&[]),
            &[],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);

    // Unknown hub pages: an HTML 404; unknown API paths keep their JSON 404.
    let resp = hub.get_page("/hub/nope", Some(&alice.cookie)).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let content_type = resp.headers["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(resp.body.contains("404"));
    assert!(
        resp.body.contains(">alice<"),
        "the page knows who is logged in"
    );
    assert!(resp.headers.contains_key("x-jupyterhub-version"));
    let csp = resp.headers["content-security-policy"].to_str().unwrap();
    assert_eq!(
        csp,
        "frame-ancestors 'none'; report-uri /hub/security/csp-report"
    );
    let (status, body) = hub.get("/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"status": 404, "message": null}));
    // Bad percent-encoding in a page path is a 404, not a failure.
    let resp = hub.get_page("/hub/spawn/%ff", Some(&alice.cookie)).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    let resp = hub.get_page("/hub/error/503", None).await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.body.contains("/hub/home"));
});

config_test!(
    default_url_and_redirect_to_server,
    format!("[hub]\nredirect_to_server = false\n{OPEN}"),
    |hub| async move {
        let alice = hub.browser("alice").await;
        let resp = hub.get_page("/hub/", Some(&alice.cookie)).await;
        assert_eq!(resp.location(), Some("/hub/home"));
        let (_, resp) = log_in_as(hub, "/hub/login", "bob", "x").await;
        assert_eq!(resp.location(), Some("/hub/home"));
    }
);

config_test!(
    default_url_wins,
    "[hub]\ndefault_url = \"/hub/token\"\n".to_owned(),
    |hub| async move {
        let alice = hub.browser("alice").await;
        let resp = hub.get_page("/hub/", Some(&alice.cookie)).await;
        assert_eq!(resp.location(), Some("/hub/token"));
    }
);

hub_test!(user_redirect, |hub| async move {
    let resp = hub.get_page("/hub/user-redirect/lab/tree?x=1", None).await;
    assert_eq!(resp.status, StatusCode::FOUND);
    assert_eq!(
        resp.location(),
        Some("/hub/login?next=%2Fhub%2Fuser%2Dredirect%2Flab%2Ftree%3Fx%3D1")
    );
    let alice = hub.browser("alice").await;
    let resp = hub
        .get_page("/hub/user-redirect/lab/tree?x=1", Some(&alice.cookie))
        .await;
    assert_eq!(resp.status, StatusCode::FOUND);
    assert_eq!(
        resp.location(),
        Some("/hub/spawn/alice?next=%2Fuser%2Falice%2Flab%2Ftree%3Fx%3D1")
    );
    let resp = hub
        .get_page("/hub/user-redirect/", Some(&alice.cookie))
        .await;
    assert_eq!(
        resp.location(),
        Some("/hub/spawn/alice?next=%2Fuser%2Falice%2F")
    );
});

// === templates ===

mod template_override {
    use super::*;

    async fn run(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("home.html"),
            "{% extends \"page.html\" %}{% block main %}<p id=custom>Custom home of {{ user.name }} \
             ({{ motd }})</p>{% endblock %}",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("error.html"),
            "{% extends \"page.html\" %}{% block main %}<p>Oops {{ status_code }}: {{ message }}</p>{% endblock %}",
        )
        .unwrap();
        let config = format!(
            "[hub]\ntemplate_paths = [\"{}\"]\ntemplate_vars = {{ motd = \"<b>hello</b>\" }}\n",
            dir.path().display()
        );
        let hub = TestHub::start(backend, &config).await;
        let alice = hub.browser("alice").await;
        let home = hub.get_page("/hub/home", Some(&alice.cookie)).await;
        assert_eq!(home.status, StatusCode::OK);
        assert!(
            home.body
                .contains("<p id=custom>Custom home of alice (&lt;b&gt;hello&lt;/b&gt;)</p>"),
            "{}",
            home.body
        );
        // The built-in layout is still used around it.
        assert!(home.body.contains("Log out"));
        let missing = hub.get_page("/hub/nope", Some(&alice.cookie)).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert!(missing.body.contains("Oops 404"), "{}", missing.body);
        // Other pages keep the built-in templates.
        let token = hub.get_page("/hub/token", Some(&alice.cookie)).await;
        assert!(token.body.contains("Request new API token"));
        hub.stop().await;
    }

    crate::each_backend!(run);
}

// === a non-root base URL ===

config_test!(
    non_root_base_url,
    format!("[hub]\nbase_url = \"/jh/\"\n{OPEN}"),
    |hub| async move {
        let resp = hub.get_page("/jh/hub", None).await;
        assert_eq!(resp.status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(resp.location(), Some("/jh/hub/"));
        let resp = hub.get_page("/jh/hub/", None).await;
        assert_eq!(resp.location(), Some("/jh/hub/login?next=%2Fjh%2Fhub%2F"));
        for (path, target) in [
            ("/jh/", "/jh/hub/"),
            ("/jh", "/jh/hub/"),
            ("/jh/user/bob/tree?x=1", "/jh/hub/user/bob/tree?x=1"),
            ("/jh/user/bob", "/jh/user/bob/"),
            ("/other", "/jh/hub/other"),
        ] {
            let resp = hub.get_page(path, None).await;
            assert_eq!(resp.status, StatusCode::FOUND, "{path}");
            assert_eq!(resp.location(), Some(target), "{path}");
        }

        let (jar, xsrf, page) = login_form(hub, "/jh/hub/login?next=/jh/hub/home").await;
        assert!(
            page.body
                .contains("action=\"/jh/hub/login?next=%2Fjh%2Fhub%2Fhome\"")
        );
        assert!(page.body.contains("/jh/hub/static/style.css"));
        assert!(
            page.set_cookie(XSRF_COOKIE)
                .unwrap()
                .contains("Path=/jh/hub/")
        );
        let mut jar = jar;
        let resp = hub
            .page(
                Method::POST,
                "/jh/hub/login?next=/jh/hub/home",
                Some(&jar.header()),
                Some(&[("username", "alice"), ("password", "x"), ("_xsrf", &xsrf)]),
                &[],
            )
            .await;
        assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.body);
        assert_eq!(resp.location(), Some("/jh/hub/home"));
        assert!(
            resp.set_cookie(HUB_LOGIN_COOKIE)
                .unwrap()
                .contains("Path=/jh/hub/")
        );
        assert!(
            resp.set_cookie(SESSION_COOKIE)
                .unwrap()
                .contains("Path=/jh/")
        );
        jar.update(&resp);
        let home = hub.get_page("/jh/hub/home", Some(&jar.header())).await;
        assert_eq!(home.status, StatusCode::OK);
        assert!(
            home.body.contains("href=\"/jh/hub/spawn/alice\""),
            "{}",
            home.body
        );
        assert!(home.body.contains("href=\"/jh/hub/logout\""));

        let resp = hub.get_page("/jh/hub/spawn", Some(&jar.header())).await;
        assert_eq!(resp.status, StatusCode::FOUND);
        assert_eq!(resp.location(), Some("/jh/hub/spawn-pending/alice"));
        let mut ready = false;
        for _ in 0..100 {
            let resp = hub
                .get_page("/jh/hub/spawn-pending/alice", Some(&jar.header()))
                .await;
            if resp.status == StatusCode::FOUND {
                assert_eq!(resp.location(), Some("/jh/user/alice/"));
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ready);
        let resp = hub
            .get_page("/jh/hub/user/alice/tree?x=1", Some(&jar.header()))
            .await;
        assert_eq!(resp.location(), Some("/jh/user/alice/tree?x=1&redirects=1"));
        let resp = hub
            .get_page("/jh/hub/user-redirect/lab", Some(&jar.header()))
            .await;
        assert_eq!(
            resp.location(),
            Some("/jh/hub/spawn/alice?next=%2Fjh%2Fuser%2Falice%2Flab")
        );
        let missing = hub.get_page("/jh/hub/nope", Some(&jar.header())).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        let api = hub.get_page("/jh/hub/api/nope", None).await;
        assert_eq!(api.status, StatusCode::NOT_FOUND);
        assert!(api.body.contains("\"status\":404"));
        let logout = hub.get_page("/jh/hub/logout", Some(&jar.header())).await;
        assert_eq!(logout.location(), Some("/jh/hub/login"));
    }
);

// === the token page ===

hub_test!(token_page_lists_creates_and_revokes, |hub| async move {
    let anon = hub.get_page("/hub/token", None).await;
    assert_eq!(anon.status, StatusCode::FOUND);
    assert_eq!(anon.location(), Some("/hub/login?next=%2Fhub%2Ftoken"));

    let alice = hub.browser("alice").await;
    let (status, _, created) = hub
        .call(
            Method::POST,
            "/users/alice/tokens",
            Some(&hub.user("alice", false).await),
            Some(json!({"note": "for my <script>", "expires_in": 3600})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let page = hub.get_page("/hub/token", Some(&alice.cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("for my &lt;script&gt;"), "{}", page.body);
    assert!(page.body.contains(created["id"].as_str().unwrap()));
    assert!(!page.body.contains(created["token"].as_str().unwrap()));
    // Scopes to choose from, and lifetimes.
    assert!(
        page.body.contains("value=\"read:servers!user=alice\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("<option value=\"3600\">1 hour</option>"));
    assert!(
        page.body
            .contains("<option value=\"\" selected>Never</option>")
    );

    // Created through the form (the page without scripts).
    let before = token_count(hub, "alice").await;
    let resp = hub
        .page(
            Method::POST,
            "/hub/token",
            Some(&alice.cookie),
            Some(&[
                ("_xsrf", &alice.xsrf),
                ("action", "create"),
                ("note", "ci"),
                ("expires_in", "86400"),
                ("scopes", "read:servers!user=alice"),
            ]),
            &[],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let start =
        resp.body.find("<code id=\"new-token\">").unwrap() + "<code id=\"new-token\">".len();
    let secret = &resp.body[start..start + 32];
    assert!(secret.chars().all(|c| c.is_ascii_hexdigit()), "{secret}");
    assert_eq!(token_count(hub, "alice").await, before + 1);
    let resp = hub
        .client
        .get(hub.api_url("/users/alice/server"))
        .header("Authorization", format!("token {secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = hub
        .client
        .get(hub.api_url("/users/alice/tokens"))
        .header("Authorization", format!("token {secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::FORBIDDEN,
        "only the chosen scope"
    );

    // Refusals are shown on the page.
    let resp = hub
        .page(
            Method::POST,
            "/hub/token",
            Some(&alice.cookie),
            Some(&[("_xsrf", &alice.xsrf), ("scopes", "admin:users")]),
            &[],
        )
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert!(resp.body.contains("role=\"alert\""), "{}", resp.body);
    let resp = hub
        .page(
            Method::POST,
            "/hub/token",
            Some(&alice.cookie),
            Some(&[("_xsrf", &alice.xsrf), ("expires_in", "soon")]),
            &[],
        )
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(token_count(hub, "alice").await, before + 1);
    // Without `_xsrf`: refused.
    let resp = hub
        .page(
            Method::POST,
            "/hub/token",
            Some(&alice.cookie),
            Some(&[("note", "x")]),
            &[],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);

    // What the page's script does: the API with the cookie and `_xsrf`.
    let (status, body) = alice
        .with_xsrf(
            Method::POST,
            "/users/alice/tokens",
            Some(json!({"note": "from js", "expires_in": null})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Revoke through the form.
    let id = created["id"].as_str().unwrap();
    let resp = hub
        .page(
            Method::POST,
            "/hub/token",
            Some(&alice.cookie),
            Some(&[
                ("_xsrf", &alice.xsrf),
                ("action", "revoke"),
                ("token_id", id),
            ]),
            &[],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    assert_eq!(resp.location(), Some("/hub/token"));
    let page = hub.get_page("/hub/token", Some(&alice.cookie)).await;
    assert!(!page.body.contains("for my &lt;script&gt;"));
    // Someone else's token id: not found, shown on the page.
    let bob = hub.user("bob", false).await;
    let (_, bobs) = hub
        .post("/users/bob/tokens", Some(&bob), json!({"note": "bob's"}))
        .await;
    let resp = hub
        .page(
            Method::POST,
            "/hub/token",
            Some(&alice.cookie),
            Some(&[
                ("_xsrf", &alice.xsrf),
                ("action", "revoke"),
                ("token_id", bobs["id"].as_str().unwrap()),
            ]),
            &[],
        )
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(token_count(hub, "bob").await, 2);
});

hub_test!(
    token_page_lists_and_revokes_authorized_clients,
    |hub| async move {
        let alice = hub.browser("alice").await;
        oauth_token(hub, "alice", "service-notes", Some("s1")).await;
        oauth_token(hub, "alice", "service-notes", Some("s2")).await;
        let page = hub.get_page("/hub/token", Some(&alice.cookie)).await;
        assert!(page.body.contains("My notebook service"), "{}", page.body);
        assert!(page.body.contains("data-client-id=\"service-notes\""));
        let start = page.body.find("data-client-id=\"service-notes\"").unwrap();
        let row = &page.body[start..];
        let marker = "name=\"token_id\" value=\"";
        let id_start = row.find(marker).unwrap() + marker.len();
        let id = &row[id_start..id_start + row[id_start..].find('"').unwrap()];
        let resp = hub
            .page(
                Method::POST,
                "/hub/token",
                Some(&alice.cookie),
                Some(&[
                    ("_xsrf", &alice.xsrf),
                    ("action", "revoke"),
                    ("token_id", id),
                ]),
                &[],
            )
            .await;
        assert_eq!(resp.status, StatusCode::SEE_OTHER);
        assert_eq!(token_count(hub, "alice").await, 0);
        let page = hub.get_page("/hub/token", Some(&alice.cookie)).await;
        assert!(
            page.body
                .contains("You have not authorized any applications.")
        );
    }
);

config_test!(
    token_page_respects_the_maximum_lifetime,
    "[hub]\ntoken_expires_in_max_seconds = 86400\n".to_owned(),
    |hub| async move {
        let alice = hub.browser("alice").await;
        let page = hub.get_page("/hub/token", Some(&alice.cookie)).await;
        assert!(!page.body.contains(">Never<"), "{}", page.body);
        assert!(
            page.body
                .contains("<option value=\"86400\" selected>1 day</option>")
        );
        assert!(!page.body.contains("1 week"));
    }
);

// === CSP reports ===

hub_test!(csp_reports_are_counted, |hub| async move {
    let before = hub.state.metrics.csp_reports_total.load(Ordering::Relaxed);
    let alice = hub.browser("alice").await;
    let report = json!({"csp-report": {"blocked-uri": "inline", "violated-directive": "x"}});
    let resp = hub
        .client
        .post(hub.url("/hub/security/csp-report"))
        .header("Cookie", &alice.cookie)
        .header("Content-Type", "application/csp-report")
        .body(report.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    // Too large: refused (the hub may close the connection before reading it all, so this
    // goes on a connection of its own).
    let resp = reqwest::Client::new()
        .post(hub.url("/hub/security/csp-report"))
        .header("Cookie", &alice.cookie)
        .body(vec![b'x'; 200 * 1024])
        .send()
        .await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    let resp = hub
        .client
        .post(hub.url("/hub/security/csp-report"))
        .body(report.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        hub.state.metrics.csp_reports_total.load(Ordering::Relaxed),
        before + 1
    );
});
