//! Security checklist group A (authentication): the cases not already covered by the page and
//! API tests, each sent to the real hub on SQLite and PostgreSQL. The checklist lives in the
//! shared security reference, §5 A.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::large_futures,
    missing_docs
)]

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{Backend, CookieJar, PageResponse, TestHub};
use hub::cookie_secret::CookieSecret;
use hub::db::models::users;
use hub::identity::cookies::{self, HUB_LOGIN_COOKIE};
use hub_plugin::test_util::DummyAuthenticator;
use hub_plugin::{AuthError, AuthModel, Authenticator, LoginForm};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

// === helpers ===

/// Runs `$body` against a hub with `$auth` as its authenticator and `$config`, on both
/// databases.
macro_rules! with_auth_test {
    ($name:ident, $config:expr, $auth:expr, |$hub:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $crate::each_backend!(run);

            async fn run(backend: Backend) {
                let auth: Arc<dyn Authenticator> = $auth;
                let owned = TestHub::start_with_authenticator(backend, $config, None, auth).await;
                {
                    let $hub = &owned;
                    $body.await;
                }
                owned.stop().await;
            }
        }
    };
}

/// Logs in through the form at `/hub/login` (fetching the form first for its `_xsrf`).
async fn log_in(hub: &TestHub, username: &str, password: &str) -> (CookieJar, PageResponse) {
    let form = hub.get_page("/hub/login", None).await;
    assert_eq!(form.status, StatusCode::OK);
    let mut jar = CookieJar::default();
    jar.update(&form);
    let xsrf = form.xsrf_field().unwrap();
    let resp = hub
        .page(
            Method::POST,
            "/hub/login",
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

fn assert_no_login_cookie(resp: &PageResponse) {
    assert!(
        resp.set_cookie(HUB_LOGIN_COOKIE).is_none(),
        "{:?}",
        resp.set_cookies()
    );
}

async fn user_row(hub: &TestHub, name: &str) -> Option<users::User> {
    let name = name.to_owned();
    hub.state
        .db
        .run(move |c| users::find_by_name(c, &name))
        .await
        .unwrap()
}

async fn user_count(hub: &TestHub) -> usize {
    hub.state
        .db
        .run(|c| {
            use diesel::prelude::*;
            hub::db::schema::users::table.count().get_result::<i64>(c)
        })
        .await
        .unwrap()
        .try_into()
        .unwrap()
}

/// An authenticator that vouches for the name given as the *password*, unchanged (so the
/// hub's own normalisation and validation are what decides).
#[derive(Debug, Default)]
struct NameFromPassword;

#[async_trait]
impl Authenticator for NameFromPassword {
    fn kind(&self) -> &str {
        "name-from-password"
    }

    async fn authenticate(&self, form: &LoginForm) -> Result<Option<AuthModel>, AuthError> {
        Ok(Some(AuthModel {
            name: form.password.clone(),
            ..AuthModel::default()
        }))
    }
}

/// An authenticator as slow as a PAM stack that waits on a remote directory: every check
/// takes `delay` on a blocking thread, then fails.
#[derive(Debug)]
struct SlowAuthenticator {
    delay: Duration,
    finished: AtomicUsize,
}

#[async_trait]
impl Authenticator for SlowAuthenticator {
    fn kind(&self) -> &str {
        "slow"
    }

    async fn authenticate(&self, _form: &LoginForm) -> Result<Option<AuthModel>, AuthError> {
        let delay = self.delay;
        tokio::task::spawn_blocking(move || std::thread::sleep(delay))
            .await
            .unwrap();
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(None)
    }
}

/// Everything this test binary logs, in one buffer (a global subscriber: nextest runs each
/// test in its own process).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_logs() -> Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        captured
    })
    .clone()
}

// === A.3 ===

with_auth_test!(
    password_whitespace_is_kept,
    "[authenticator]\nclass = \"dummy\"\n",
    Arc::new(DummyAuthenticator {
        password: Some(" pass word ".into()),
    }),
    |hub| async move {
        // Security checklist A.3: the username is trimmed, the password never is.
        for trimmed in ["pass word", " pass word", "pass word "] {
            let (_, resp) = log_in(hub, "spiff", trimmed).await;
            assert_eq!(resp.status, StatusCode::FORBIDDEN, "{trimmed:?}");
            assert_no_login_cookie(&resp);
        }
        let (_, resp) = log_in(hub, " spiff ", " pass word ").await;
        assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.body);
        assert!(resp.set_cookie(HUB_LOGIN_COOKIE).is_some());
        assert!(user_row(hub, "spiff").await.is_some());
    }
);

// === A.4 ===

with_auth_test!(
    config_lists_match_after_normalisation,
    "[authenticator]\nallowed_users = [\"Alice\"]\nadmin_users = [\"ROOT\"]\nblocked_users = [\"MALLORY\"]\n",
    Arc::new(DummyAuthenticator::default()),
    |hub| async move {
        // Security checklist A.4: `allowed_users`, `admin_users` and `blocked_users` are
        // compared after normalisation, and an unlisted user is refused.
        {
            let (_, resp) = log_in(hub, "ALICE", "x").await;
            assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.body);
            let alice = user_row(hub, "alice").await.unwrap();
            assert!(!alice.admin);
            let (_, resp) = log_in(hub, "Root", "x").await;
            assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.body);
            assert!(user_row(hub, "root").await.unwrap().admin);
            for refused in ["mallory", "Mallory", "eve"] {
                let (_, resp) = log_in(hub, refused, "x").await;
                assert_eq!(resp.status, StatusCode::FORBIDDEN, "{refused}");
                assert_no_login_cookie(&resp);
            }
            assert!(user_row(hub, "mallory").await.is_none());
            assert!(user_row(hub, "eve").await.is_none());
        }
    }
);

// === A.5 ===

with_auth_test!(
    invalid_names_are_refused_at_login,
    "[authenticator]\nallow_all = true\n",
    Arc::new(NameFromPassword),
    |hub| async move {
        // Security checklist A.5: whatever the authenticator vouches for, the hub refuses
        // empty names, names with `/`, edge whitespace and dot-only names, and writes nothing.
        let before = user_count(hub).await;
        for name in ["", "a/b", "/", " x", "x ", "\tx", "x\n", ".", ".."] {
            let (_, resp) = log_in(hub, "anyone", name).await;
            assert_eq!(
                resp.status,
                StatusCode::FORBIDDEN,
                "{name:?}: {}",
                resp.body
            );
            assert!(
                resp.body.contains("Invalid username or password"),
                "{name:?}"
            );
            assert_no_login_cookie(&resp);
        }
        assert_eq!(user_count(hub).await, before);
    }
);

// === A.6 and F.64 ===

hub_test!(
    huge_and_control_character_names_are_logged_bounded,
    config = "[authenticator]\nclass = \"dummy\"\nallowed_users = [\"someone\"]\n",
    |hub| async move {
        // Security checklist A.6 / F.64: a 1 MB username and a name with a forged log line
        // are refused quickly, and every log line stays short and on one line.
        let captured = captured_logs();
        let huge = "a".repeat(1024 * 1024);
        let started = Instant::now();
        let (_, resp) = log_in(hub, &huge, "x").await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_no_login_cookie(&resp);
        let forged = "eve\nERROR forged line\u{1b}[31m";
        let (_, resp) = log_in(hub, forged, "x").await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN);
        // Through the API's body credentials too (within the API's 1 MiB body limit).
        let resp = hub
            .client
            .post(hub.api_url("/users/x/tokens"))
            .json(&json!({"username": &huge[..512 * 1024], "password": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);

        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("(1048576 bytes)"), "{text:.2000}");
        for line in text.lines() {
            assert!(line.len() <= 400, "{} bytes: {line:.200}", line.len());
            assert!(!line.contains(&"a".repeat(65)), "{line:.200}");
            assert!(!line.starts_with("ERROR forged"), "{line}");
            assert!(!line.contains('\u{1b}'), "{line}");
        }
    }
);

// === A.9 ===

hub_test!(authorization_header_forms, |hub| async move {
    // Security checklist A.9: `token X` and `bearer X` in any case work; other forms, and
    // the user's cookie id used as a token, get 403 with a JSON error. (Whitespace around a
    // header value is not part of it in HTTP, so ` token X` is `token X`.)
    let alice = hub.user("alice", false).await;
    let t = alice.token.as_str();
    let send = |header: String| async move {
        let resp = hub
            .client
            .get(hub.api_url("/user"))
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    };
    for ok in [
        format!("token {t}"),
        format!("Token {t}"),
        format!("TOKEN {t}"),
        format!("bearer {t}"),
        format!("Bearer {t}"),
        format!("BeArEr {t}"),
    ] {
        let (status, body) = send(ok.clone()).await;
        assert_eq!(status, StatusCode::OK, "{ok}: {body}");
        assert_eq!(body["name"], "alice");
    }
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("alice:{t}"))
    };
    for bad in [
        format!("token: {t}"),
        format!("Basic {basic}"),
        format!("Basic {t}"),
        format!("token {t} extra"),
        format!("token {t} {t}"),
        format!("tokens {t}"),
        format!("token{t}"),
        t.to_owned(),
        "token ".to_owned(),
    ] {
        let (status, body) = send(bad.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{bad:?}");
        assert_eq!(body["status"], 403, "{bad:?}: {body}");
        assert!(body.get("message").is_some(), "{bad:?}: {body}");
    }
    let cookie_id = user_row(hub, "alice").await.unwrap().cookie_id;
    for header in [format!("token {cookie_id}"), format!("bearer {cookie_id}")] {
        let (status, body) = send(header).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["status"], 403);
    }
});

// === A.11 ===

hub_test!(
    tampered_old_and_foreign_cookies_log_nobody_in,
    |hub| async move {
        // Security checklist A.11: a login cookie with a changed signature, one older than
        // `cookie_max_age_days`, and one signed with another secret (a rotated secret) are all
        // treated as anonymous, and pages clear them.
        let browser = hub.browser("alice").await;
        let cookie_id = user_row(hub, "alice").await.unwrap().cookie_id;
        let secret = hub.state.cookie_secret.as_bytes().to_vec();
        let now = chrono::Utc::now().timestamp();
        // The genuine cookie works.
        let home = hub.get_page("/hub/home", Some(&browser.cookie)).await;
        assert_eq!(home.status, StatusCode::OK);

        let good =
            cookies::create_signed_value(&secret, HUB_LOGIN_COOKIE, cookie_id.as_bytes(), now);
        let flipped = {
            let mut bytes = good.clone().into_bytes();
            let last = bytes.len() - 1;
            bytes[last] = if bytes[last] == b'0' { b'1' } else { b'0' };
            String::from_utf8(bytes).unwrap()
        };
        let old = cookies::create_signed_value(
            &secret,
            HUB_LOGIN_COOKIE,
            cookie_id.as_bytes(),
            now - 15 * 24 * 3600,
        );
        let rotated = cookies::create_signed_value(
            CookieSecret::generate().as_bytes(),
            HUB_LOGIN_COOKIE,
            cookie_id.as_bytes(),
            now,
        );
        let renamed = cookies::create_signed_value(
            &secret,
            "jupyterhub-user-alice",
            cookie_id.as_bytes(),
            now,
        );
        for (what, value) in [
            ("flipped signature", flipped),
            ("older than cookie_max_age_days", old),
            ("signed with another secret", rotated),
            ("signed for another cookie name", renamed),
            ("the bare cookie id", cookie_id.clone()),
        ] {
            let cookie = format!("{HUB_LOGIN_COOKIE}={}", cookies::quote_cookie_value(&value));
            let page = hub.get_page("/hub/home", Some(&cookie)).await;
            assert_eq!(page.status, StatusCode::FOUND, "{what}");
            assert!(page.location().unwrap().starts_with("/hub/login"), "{what}");
            let cleared = page
                .set_cookie(HUB_LOGIN_COOKIE)
                .unwrap_or_else(|| panic!("{what}: the cookie is not cleared"));
            assert!(cleared.contains("Max-Age=0"), "{what}: {cleared}");
            assert!(cleared.contains("Path=/hub/"), "{what}: {cleared}");
            let resp = hub
                .client
                .get(hub.api_url("/user"))
                .header("Cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{what}");
        }
    }
);

// === A.12 ===

hub_test!(
    blocked_users_lose_their_permissions,
    config = "[authenticator]\nclass = \"dummy\"\nblocked_users = [\"Mallory\"]\n[groups.staff]\nusers = [\"mallory\"]\n[[roles]]\nname = \"staff-admins\"\nscopes = [\"admin:users\"]\ngroups = [\"staff\"]\n",
    |hub| async move {
        // Security checklist A.12: a user who existed before being blocked in the
        // configuration (an admin, with a token, a group with a role and a cookie) can do
        // nothing with any of them.
        let mallory = hub.user("mallory", true).await;
        hub.user("victim", false).await;
        let browser = hub.browser("mallory").await;
        hub.state.identities.invalidate();
        for (method, path, body) in [
            (Method::GET, "/users", None),
            (Method::GET, "/users/victim", None),
            (Method::GET, "/users/mallory/tokens", None),
            (Method::POST, "/users/mallory/tokens", Some(json!({}))),
            (Method::POST, "/users/mallory/server", Some(json!({}))),
            (Method::PATCH, "/users/victim", Some(json!({"admin": true}))),
            (Method::DELETE, "/users/victim", None),
            (Method::GET, "/info", None),
        ] {
            let (status, _, body) = hub.call(method.clone(), path, Some(&mallory), body).await;
            assert!(
                status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
                "{method} {path}: {status} {body}"
            );
        }
        assert!(!user_row(hub, "victim").await.unwrap().admin);
        assert_eq!(hub.spawner.starts.load(Ordering::SeqCst), 0);
        let (status, _) = browser
            .with_xsrf(Method::POST, "/users/mallory/server", Some(json!({})))
            .await;
        assert!(
            status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
            "{status}"
        );
        let (status, _) = browser.with_xsrf(Method::GET, "/users", None).await;
        assert!(
            status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
            "{status}"
        );
    }
);

// === A.13 ===

with_auth_test!(
    slow_login_flood_leaves_other_requests_answering,
    "",
    Arc::new(SlowAuthenticator {
        delay: Duration::from_secs(3),
        finished: AtomicUsize::new(0),
    }),
    |hub| async move {
        // Security checklist A.13: twelve logins stuck in a slow authenticator (more than
        // PAM's four threads) do not hold up the API, static files or the health check.
        let mut forms = Vec::new();
        for _ in 0..12 {
            let form = hub.get_page("/hub/login", None).await;
            let mut jar = CookieJar::default();
            jar.update(&form);
            forms.push((jar.header(), form.xsrf_field().unwrap()));
        }
        let started = Instant::now();
        let mut logins = Vec::new();
        for (i, (cookie, xsrf)) in forms.into_iter().enumerate() {
            let client = hub.client.clone();
            let url = hub.url("/hub/login");
            logins.push(tokio::spawn(async move {
                let body: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("username", &format!("user{i}"))
                    .append_pair("password", "x")
                    .append_pair("_xsrf", &xsrf)
                    .finish();
                client
                    .post(url)
                    .header("Cookie", cookie)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let alice = hub.user("alice", false).await;
        for path in [
            "/hub/health",
            "/hub/api/",
            "/hub/static/hub.js",
            "/hub/login",
        ] {
            let asked = Instant::now();
            let resp = hub.client.get(hub.url(path)).send().await.unwrap();
            assert!(
                asked.elapsed() < Duration::from_secs(1),
                "{path} took {:?}",
                asked.elapsed()
            );
            assert!(resp.status().is_success(), "{path}: {}", resp.status());
        }
        let asked = Instant::now();
        let (status, _) = hub.get("/user", Some(&alice)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(asked.elapsed() < Duration::from_secs(1));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the checks ran while the logins were pending"
        );
        for login in logins {
            assert_eq!(login.await.unwrap(), StatusCode::FORBIDDEN);
        }
    }
);
