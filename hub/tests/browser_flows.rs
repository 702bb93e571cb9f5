//! The hub's pages in a real browser (headless Chromium through `chromedriver`), in front of a
//! real `chp-proxy`: logging in, starting and opening a server, tokens, the admin page, sharing
//! a server, cancelling a start (and the line of throttled starts), and accessibility checks
//! (labels, contrast, keyboard use, narrow screens). Every test saves screenshots under
//! `<target>/screenshots/<test>/` and asserts what the pages show.
//!
//! "Opening a server" is real: servers are `singleuser-auth-shim` in front of a tiny web app
//! (`python3 -m http.server`), so the browser goes through the hub's OAuth login, and a user
//! without access is turned away by the server, as with `jupyterhub-singleuser`.
//!
//! Needs `chromium` and `chromium-driver` (scripts/test-deps.sh installs them; without them the
//! tests are skipped, except under `CI=true`), and the `chp-proxy` and `singleuser-auth-shim`
//! binaries (`cargo build -p chp-proxy -p singleuser`).

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::large_futures,
    missing_docs
)]

mod browser;
mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use browser::{Driver, Session, assert_accessible, keys};
use common::{Backend, TestHub};
use hub::db::models::users;
use hub::proxy::DesiredRoute;
use hub_plugin::test_util::{MockSpawner, NeverSpawner};
use hub_plugin::{PollStatus, ServerRef, SpawnContext, SpawnError, Spawner, Started};
use reqwest::StatusCode;
use serde_json::{Value, json};

// === servers: the real auth shim in front of a tiny web app ===

/// Starts `singleuser-auth-shim` with the hub's environment, in front of
/// `python3 -m http.server` serving a page that names the server.
#[derive(Debug)]
struct ShimSpawner {
    /// The hub's own address, for the shim's API calls (the test hub does not listen where
    /// the configuration says).
    hub_origin: OnceLock<String>,
    site: tempfile::TempDir,
    delay: Duration,
    children: Mutex<HashMap<u64, tokio::process::Child>>,
    next: AtomicU64,
}

impl ShimSpawner {
    fn new(delay: Duration) -> Self {
        ShimSpawner {
            hub_origin: OnceLock::new(),
            site: tempfile::tempdir().unwrap(),
            delay,
            children: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    fn binary() -> PathBuf {
        if let Some(path) = std::env::var_os("SINGLEUSER_AUTH_SHIM_BIN") {
            return path.into();
        }
        let exe = std::env::current_exe().unwrap();
        let path = exe
            .parent()
            .and_then(std::path::Path::parent)
            .unwrap()
            .join("singleuser-auth-shim");
        assert!(
            path.is_file(),
            "{} is missing: cargo build -p singleuser (or set SINGLEUSER_AUTH_SHIM_BIN)",
            path.display()
        );
        path
    }
}

#[async_trait]
impl Spawner for ShimSpawner {
    fn kind(&self) -> &str {
        "shim"
    }

    async fn start(&self, ctx: &SpawnContext) -> Result<Started, SpawnError> {
        ctx.progress.send(hub_plugin::ProgressEvent {
            progress: Some(30),
            message: "Preparing the test server…".into(),
            html_message: None,
        });
        tokio::time::sleep(self.delay).await;
        let page = self.site.path().join(ctx.prefix.trim_start_matches('/'));
        std::fs::create_dir_all(&page).unwrap();
        let owner = if ctx.server.name.is_empty() {
            format!("{}'s server", ctx.server.user)
        } else {
            format!("{}'s server {}", ctx.server.user, ctx.server.name)
        };
        std::fs::write(
            page.join("index.html"),
            format!(
                "<!DOCTYPE html><html lang=en><title>Test server</title><h1 id=hello>Hello from {owner}</h1>"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let hub = self.hub_origin.get().unwrap();
        let mut env = ctx.env.clone();
        for value in env.values_mut() {
            *value = value.replace("http://127.0.0.1:8081", hub);
        }
        env.insert(
            "JUPYTERHUB_SERVICE_URL".into(),
            format!("http://127.0.0.1:{port}{}", ctx.prefix),
        );
        let command = format!(
            "python3 -m http.server {{port}} --bind 127.0.0.1 --directory {}",
            self.site.path().display()
        );
        let child = tokio::process::Command::new(Self::binary())
            .args(["--command", &command, "--auth-cache-ttl", "0"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SpawnError::Failed(e.into()))?;
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        self.children.lock().unwrap().insert(id, child);
        ctx.progress.send(hub_plugin::ProgressEvent {
            progress: Some(60),
            message: "Test server started".into(),
            html_message: None,
        });
        Ok(Started {
            url: format!("http://127.0.0.1:{port}"),
            state: json!({ "id": id }),
        })
    }

    async fn poll(&self, _server: &ServerRef, state: &Value) -> Result<PollStatus, SpawnError> {
        let id = state["id"].as_u64().unwrap_or(0);
        let mut children = self.children.lock().unwrap();
        match children.get_mut(&id).map(tokio::process::Child::try_wait) {
            Some(Ok(None)) => Ok(PollStatus::Running),
            Some(Ok(Some(status))) => Ok(PollStatus::Stopped(status.code())),
            _ => Ok(PollStatus::Stopped(None)),
        }
    }

    async fn stop(&self, _server: &ServerRef, state: &Value, _now: bool) -> Result<(), SpawnError> {
        let id = state["id"].as_u64().unwrap_or(0);
        let child = self.children.lock().unwrap().remove(&id);
        if let Some(mut child) = child {
            let _ = child.kill().await;
        }
        Ok(())
    }
}

// === the hub behind the proxy ===

/// A hub behind a real `chp-proxy`, a chromedriver, and the browsers' base URL.
struct Setup {
    hub: TestHub,
    driver: Driver,
    /// `http://127.0.0.1:<proxy port>`: where the browsers go.
    base: String,
    test: &'static str,
}

impl Setup {
    /// `None` when the browser is not installed (outside CI).
    async fn start(test: &'static str, config: &str, spawner: Arc<dyn Spawner>) -> Option<Setup> {
        let driver = Driver::start().await?;
        let config = format!("{config}\n[authenticator]\nclass = \"dummy\"\n");
        let hub = TestHub::start_with_proxy(Backend::Sqlite, &config, Some(spawner)).await;
        hub.state
            .proxy
            .as_ref()
            .unwrap()
            .add_route(&DesiredRoute::hub("/", hub.origin.clone()))
            .await
            .unwrap();
        let base = format!("http://127.0.0.1:{}", hub.proxy.as_ref().unwrap().port);
        Some(Setup {
            hub,
            driver,
            base,
            test,
        })
    }

    async fn browser(&self) -> Session {
        self.driver.session(self.test, 1280, 900).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Logs in through the form, then waits for `lands_on`.
    async fn log_in(&self, s: &Session, user: &str, next: &str, lands_on: &str) {
        let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        s.goto(&self.url(&format!("/hub/login?next={next}"))).await;
        s.find("#username_input").await.send_keys(user).await;
        s.find("#password_input").await.send_keys("password").await;
        s.find("#login_submit").await.click().await;
        s.wait_for_path(lands_on).await;
        assert!(s.body_text().await.contains(user));
    }

    async fn make_admin(&self, name: &str) {
        self.hub.browser(name).await;
        let n = name.to_owned();
        self.hub
            .state
            .db
            .run(move |c| {
                let u = users::find_by_name(c, &n)?.unwrap();
                users::set_admin(c, u.id, true)
            })
            .await
            .unwrap();
        self.hub.state.identities.invalidate();
    }

    /// `GET /hub/api<path>` with `token`.
    async fn api_with(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let resp = self
            .hub
            .client
            .get(self.hub.api_url(path))
            .header("Authorization", format!("token {token}"))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn stop(self) {
        self.hub.stop().await;
    }
}

/// On the hub's OAuth confirmation page (a server of someone else), authorizes; then waits for
/// the server's page that says `hello`.
async fn through_oauth_to(s: &Session, hello: &str) {
    s.wait_until(
        "the server or the OAuth confirmation",
        &format!(
            "document.body && (document.body.innerText.indexOf({}) !== -1 || document.title === 'Authorize access')",
            json!(hello)
        ),
    )
    .await;
    if s.title().await == "Authorize access" {
        s.screenshot("oauth-confirmation").await;
        assert_accessible(s, "OAuth confirmation").await;
        s.find("form button[type=submit]").await.click().await;
    }
    s.wait_for_text("body", hello).await;
}

// === the flows ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_start_and_open_a_server() {
    let spawner = Arc::new(ShimSpawner::new(Duration::from_secs(2)));
    let Some(setup) = Setup::start("log_in_start_and_open_a_server", "", spawner.clone()).await
    else {
        return;
    };
    spawner.hub_origin.set(setup.hub.origin.clone()).unwrap();
    let s = setup.browser().await;

    s.goto(&setup.url("/hub/")).await;
    s.wait_for_path("/hub/login").await;
    s.find("#username_input").await;
    assert_eq!(s.title().await, "Sign in");
    s.screenshot("login-form").await;
    assert_accessible(&s, "login").await;
    s.find("#username_input").await.send_keys("alice").await;
    s.find("#password_input").await.send_keys("password").await;
    s.find("#login_submit").await.click().await;

    // Straight on to start the server: the progress page, then the server through OAuth.
    s.wait_for_path("/hub/spawn-pending/alice").await;
    s.wait_for_text("#progress-log", "Preparing the test server")
        .await;
    assert_eq!(s.title().await, "Starting alice");
    s.screenshot("spawn-pending").await;
    assert_accessible(&s, "spawn-pending").await;
    through_oauth_to(&s, "Hello from alice's server").await;
    assert_eq!(
        s.current_url().await,
        setup.url("/user/alice/"),
        "the server's page"
    );
    s.screenshot("server-open").await;

    // Home shows it running, with its start time; its button opens it again.
    s.goto(&setup.url("/hub/home")).await;
    s.wait_for_text(".server-state", "Running").await;
    let facts = s.find(".facts").await.text().await;
    assert!(facts.contains("Started"), "{facts}");
    assert!(!facts.contains("Started\nNever"), "{facts}");
    s.screenshot("home-running").await;
    assert_accessible(&s, "home").await;
    s.find("#open-default").await.click().await;
    s.wait_for_text("#hello", "Hello from alice's server").await;

    // Stop it from home.
    s.goto(&setup.url("/hub/home")).await;
    s.find("button[data-action=stop]").await.click().await;
    s.wait_for_text(".server-state", "Stopped").await;
    assert!(s.find("#start-default").await.is_displayed().await);
    s.screenshot("home-stopped").await;
    s.quit().await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_revoke_a_token() {
    let Some(setup) = Setup::start(
        "create_and_revoke_a_token",
        "",
        Arc::new(MockSpawner::new()),
    )
    .await
    else {
        return;
    };
    let s = setup.browser().await;
    setup.log_in(&s, "alice", "/hub/token", "/hub/token").await;
    s.find("#no-api-tokens").await;
    s.screenshot("token-page").await;
    assert_accessible(&s, "token").await;

    s.find("#token-note")
        .await
        .send_keys("nightly <report>")
        .await;
    s.find("#token-expiration option[value='86400']")
        .await
        .click()
        .await;
    s.find("input[name=scopes][value='read:servers!user=alice']")
        .await
        .click()
        .await;
    s.find("#request-token-form button[type=submit]")
        .await
        .click()
        .await;
    s.wait_until(
        "the new token",
        "document.getElementById('new-token').textContent.length >= 32",
    )
    .await;
    let token = s.find("#new-token").await.text().await;
    let row = s.find("#api-tokens-body tr").await;
    let cells = row.text().await;
    assert!(cells.contains("nightly <report>"), "{cells}");
    assert!(cells.contains("read:servers!user=alice"), "{cells}");
    let empty = s.try_find("#no-api-tokens").await.unwrap();
    assert!(!empty.is_displayed().await);
    s.screenshot("token-created").await;

    // The token works, with only the chosen permission.
    let (status, me) = setup.api_with(&token, "/user").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["name"], "alice");
    let scopes: Vec<&str> = me["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(scopes.contains(&"read:servers!user=alice"), "{scopes:?}");
    assert!(
        !scopes.iter().any(|s| s.starts_with("tokens")),
        "{scopes:?}"
    );
    let (status, _) = setup.api_with(&token, "/users/alice/tokens").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the token may not list tokens"
    );

    // After a reload the list says when it expires; revoke it there.
    s.goto(&setup.url("/hub/token")).await;
    let row = s.find("#api-tokens-body tr").await;
    assert!(row.text().await.contains("nightly <report>"));
    s.find("#api-tokens-body tr button.danger")
        .await
        .click()
        .await;
    s.wait_until(
        "the token's row to go",
        "document.querySelectorAll('#api-tokens-body tr').length === 0",
    )
    .await;
    s.screenshot("token-revoked").await;
    let (status, _) = setup.api_with(&token, "/user").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    s.goto(&setup.url("/hub/token")).await;
    assert!(s.find("#no-api-tokens").await.is_displayed().await);
    s.quit().await;
    setup.stop().await;
}

/// The names in the admin page's user table, in order.
async fn admin_rows(s: &Session) -> Vec<String> {
    s.execute(
        "return Array.prototype.map.call(document.querySelectorAll('#users-body tr.user-row'), function (r) { return r.getAttribute('data-user'); });",
        vec![],
    )
    .await
    .as_array()
    .unwrap()
    .iter()
    .filter_map(|v| v.as_str().map(str::to_owned))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_adds_a_user_and_starts_their_server() {
    let Some(setup) = Setup::start(
        "admin_adds_a_user_and_starts_their_server",
        "[hub]\nallow_named_servers = true\n",
        Arc::new(MockSpawner::new()),
    )
    .await
    else {
        return;
    };
    setup.make_admin("root").await;
    let s = setup.browser().await;
    setup.log_in(&s, "root", "/hub/admin", "/hub/admin").await;
    s.wait_until(
        "the user list",
        "document.querySelectorAll('#users-body tr.user-row').length === 1",
    )
    .await;
    assert_eq!(admin_rows(&s).await, ["root"]);
    s.screenshot("admin").await;
    assert_accessible(&s, "admin").await;

    // Add two users.
    s.find("#add-users summary").await.click().await;
    s.find("#new-usernames")
        .await
        .send_keys("newbie\nsecond")
        .await;
    s.find("#add-users-submit").await.click().await;
    s.wait_for_text("#admin-status", "Added newbie, second.")
        .await;
    s.wait_until(
        "three users",
        "document.querySelectorAll('#users-body tr.user-row').length === 3",
    )
    .await;
    s.screenshot("users-added").await;

    // Sort by name, both ways.
    s.find("button.sort[data-sort=name]").await.click().await;
    s.wait_until(
        "ascending names",
        "document.querySelector('th[data-sort=name]').getAttribute('aria-sort') === 'ascending'",
    )
    .await;
    s.wait_until(
        "sorted rows",
        "document.querySelector('#users-body tr.user-row').getAttribute('data-user') === 'newbie'",
    )
    .await;
    assert_eq!(admin_rows(&s).await, ["newbie", "root", "second"]);
    s.find("button.sort[data-sort=name]").await.click().await;
    s.wait_until(
        "sorted rows",
        "document.querySelector('#users-body tr.user-row').getAttribute('data-user') === 'second'",
    )
    .await;
    assert_eq!(admin_rows(&s).await, ["second", "root", "newbie"]);

    // Search, then start newbie's server from their row.
    s.find("#user-filter").await.send_keys("newb").await;
    s.wait_until(
        "one match",
        "document.querySelectorAll('#users-body tr.user-row').length === 1",
    )
    .await;
    assert_eq!(admin_rows(&s).await, ["newbie"]);
    assert!(s.current_url().await.contains("name_filter=newb"));
    s.find("tr[data-user=newbie] .start-server")
        .await
        .click()
        .await;
    s.wait_for_text("#admin-status", "Started the server of newbie.")
        .await;
    // Its state, once the hub has it running.
    for _ in 0..50 {
        s.find("#user-search").await;
        s.execute(
            "document.getElementById('user-search').dispatchEvent(new Event('submit', {cancelable: true}));",
            vec![],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let state = s
            .find("tr[data-user=newbie] .server-state")
            .await
            .text()
            .await;
        if state == "Running" {
            break;
        }
    }
    s.wait_for_text("tr[data-user=newbie] .server-state", "Running")
        .await;
    assert!(
        s.find("tr[data-user=newbie] .open-server")
            .await
            .is_displayed()
            .await
    );
    s.find("tr[data-user=newbie] .show-servers")
        .await
        .click()
        .await;
    s.wait_for_text(".servers-row .server-state", "Running")
        .await;
    s.screenshot("server-started").await;
    let admin_token = setup.hub.user("root", true).await;
    let (status, model) = setup.hub.get("/users/newbie", Some(&admin_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(model["servers"][""]["ready"], true, "{model}");

    // A group, then both new users into it with a bulk action.
    s.find("#user-filter").await.clear().await;
    s.execute(
        "document.getElementById('user-search').dispatchEvent(new Event('submit', {cancelable: true}));",
        vec![],
    )
    .await;
    s.wait_until(
        "all users",
        "document.querySelectorAll('#users-body tr.user-row').length === 3",
    )
    .await;
    s.find("#new-group-name").await.send_keys("cohort").await;
    s.find("#new-group-submit").await.click().await;
    s.wait_for_text("#admin-status", "Created the group cohort.")
        .await;
    s.find("tr[data-user=newbie] .select-user")
        .await
        .click()
        .await;
    s.find("tr[data-user=second] .select-user")
        .await
        .click()
        .await;
    s.wait_for_text("#selected-count", "2 selected").await;
    s.find("#bulk-group").await.send_keys("cohort").await;
    s.find("button[data-bulk=group]").await.click().await;
    s.wait_for_text("#admin-status", "Added 2 users to cohort.")
        .await;
    s.wait_for_text("tr[data-group=cohort] .group-members", "2 members")
        .await;
    // A group just created opens its panel; its members are listed there.
    let manage = s.find("tr[data-group=cohort] .manage-group").await;
    assert_eq!(
        manage.attribute("aria-expanded").await.as_deref(),
        Some("true")
    );
    s.wait_for_text(".group-detail .members", "newbie").await;
    s.wait_for_text(".group-detail .members", "second").await;
    s.screenshot("group").await;
    let (_, group) = setup.hub.get("/groups/cohort", Some(&admin_token)).await;
    assert_eq!(group["users"], json!(["newbie", "second"]));

    // Bulk stop.
    s.find("tr[data-user=newbie] .select-user")
        .await
        .click()
        .await;
    s.find("button[data-bulk=stop]").await.click().await;
    s.wait_for_text("#admin-status", "Stopped 1 servers.").await;
    s.screenshot("bulk-stopped").await;
    s.quit().await;
    setup.stop().await;
}

const SHARING: &str =
    "[hub]\nextra_user_scopes = [\"shares!user\", \"read:users:name\", \"read:groups:name\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_a_server_and_open_it_as_someone_else() {
    let spawner = Arc::new(ShimSpawner::new(Duration::ZERO));
    let Some(setup) = Setup::start(
        "share_a_server_and_open_it_as_someone_else",
        SHARING,
        spawner.clone(),
    )
    .await
    else {
        return;
    };
    spawner.hub_origin.set(setup.hub.origin.clone()).unwrap();
    for name in ["bob", "carol", "dave"] {
        setup.hub.browser(name).await;
    }

    // Alice starts her server and shares it with bob.
    let alice = setup.browser().await;
    setup
        .log_in(&alice, "alice", "/hub/home", "/hub/home")
        .await;
    alice.find("#start-default").await.click().await;
    through_oauth_to(&alice, "Hello from alice's server").await;
    alice.goto(&setup.url("/hub/home")).await;
    alice.find("#share-default summary").await.click().await;
    alice
        .find("#share-name-default")
        .await
        .send_keys("bob")
        .await;
    alice
        .find("#share-default form.share-form button[type=submit]")
        .await
        .click()
        .await;
    alice
        .wait_for_text("#share-default .share-list", "bob")
        .await;
    alice.screenshot("shared-with-bob").await;
    assert_accessible(&alice, "home with sharing").await;

    // Bob sees it on his home page and opens it (the hub asks him to confirm, once).
    let bob = setup.browser().await;
    setup.log_in(&bob, "bob", "/hub/home", "/hub/home").await;
    bob.wait_for_text("#shared-with-me", "alice").await;
    bob.screenshot("shared-with-you").await;
    bob.find("#shared-with-me a.button").await.click().await;
    through_oauth_to(&bob, "Hello from alice's server").await;
    bob.screenshot("bob-on-alices-server").await;

    // A share link, for carol.
    alice
        .find("#link-expiry-default option[value='3600']")
        .await
        .click()
        .await;
    alice
        .find("#share-default form.code-form button[type=submit]")
        .await
        .click()
        .await;
    let link_field = alice.find("#new-link-default").await;
    alice
        .wait_until("the link", "document.getElementById('new-link-default').value.indexOf('/hub/accept-share?code=') !== -1")
        .await;
    let link = link_field
        .property("value")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        link.starts_with(&setup.url("/hub/accept-share?code=")),
        "{link}"
    );
    alice.screenshot("share-link").await;

    let carol = setup.browser().await;
    carol.goto(&link).await;
    carol.wait_for_path("/hub/login").await;
    carol.find("#username_input").await.send_keys("carol").await;
    carol.find("#password_input").await.send_keys("pw").await;
    carol.find("#login_submit").await.click().await;
    carol.wait_for_path("/hub/accept-share").await;
    carol
        .wait_for_text("#share-summary", "alice shares their server with you.")
        .await;
    assert!(carol.body_text().await.contains("It is running now."));
    carol.screenshot("accept-share").await;
    assert_accessible(&carol, "accept-share").await;
    carol.find("#accept-share").await.click().await;
    through_oauth_to(&carol, "Hello from alice's server").await;
    carol.screenshot("carol-on-alices-server").await;

    // Dave has no share: the server turns him away.
    let dave = setup.browser().await;
    setup.log_in(&dave, "dave", "/hub/home", "/hub/home").await;
    dave.goto(&setup.url("/user/alice/")).await;
    dave.wait_for_text(
        "body",
        "You do not have permission to access Server at /user/alice/",
    )
    .await;
    assert_eq!(dave.title().await, "403 Forbidden");
    let text = dave.body_text().await;
    assert!(!text.contains("Hello from alice"), "{text}");
    dave.screenshot("dave-refused").await;

    // Alice lists both, revokes bob; the link's share with carol stays.
    alice.goto(&setup.url("/hub/home")).await;
    alice
        .wait_for_text("#share-default .share-list", "carol")
        .await;
    alice.auto_confirm().await;
    alice
        .find("#share-default button[data-kind=user][data-name=bob]")
        .await
        .click()
        .await;
    alice
        .wait_until(
            "bob's share to go",
            "!document.querySelector('#share-default button[data-name=bob]') && document.readyState === 'complete'",
        )
        .await;
    alice
        .wait_for_text("#share-default .share-list", "carol")
        .await;
    alice.screenshot("bob-revoked").await;
    let admin = setup.hub.user("root", true).await;
    let (_, shares) = setup.hub.get("/shares/alice/", Some(&admin)).await;
    let with: Vec<&str> = shares["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["user"]["name"].as_str())
        .collect();
    assert_eq!(with, ["carol"]);
    for s in [alice, bob, carol, dave] {
        s.quit().await;
    }
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_a_pending_spawn_and_wait_in_line() {
    let Some(setup) = Setup::start(
        "cancel_a_pending_spawn_and_wait_in_line",
        "[hub]\nconcurrent_spawn_limit = 1\n",
        Arc::new(NeverSpawner),
    )
    .await
    else {
        return;
    };
    // Alice's start never finishes; she cancels it.
    let alice = setup.browser().await;
    setup
        .log_in(&alice, "alice", "/hub/home", "/hub/home")
        .await;
    alice.find("#start-default").await.click().await;
    alice.wait_for_path("/hub/spawn-pending/alice").await;
    alice
        .wait_for_text("#progress-message", "Server requested")
        .await;
    alice.screenshot("pending").await;

    // Meanwhile bob's start waits in line.
    let bob = setup.browser().await;
    setup
        .log_in(&bob, "bob", "/hub/spawn", "/hub/spawn-pending/bob")
        .await;
    bob.wait_for_text("#pending-title", "Waiting for a free slot")
        .await;
    bob.wait_for_text("#queue-position", "You are number 1 of 1 in the line.")
        .await;
    bob.screenshot("waiting-in-line").await;
    assert_accessible(&bob, "spawn-pending in line").await;

    alice.find("#cancel-spawn").await.click().await;
    alice.wait_for_path("/hub/home").await;
    alice.wait_for_text(".server-state", "Stopped").await;
    alice.screenshot("cancelled").await;

    // Bob's page follows: his start is under way now.
    bob.wait_for_text("#pending-title", "Your server is starting up")
        .await;
    bob.screenshot("started-after-waiting").await;
    bob.find("#cancel-spawn").await.click().await;
    bob.wait_for_path("/hub/home").await;
    bob.wait_for_text(".server-state", "Stopped").await;
    for s in [alice, bob] {
        s.quit().await;
    }
    setup.stop().await;
}

const EVERYTHING: &str = "[hub]\nallow_named_servers = true\nannouncement = \"Maintenance on Saturday\"\nextra_user_scopes = [\"shares!user\", \"read:users:name\", \"read:groups:name\"]\n\n[[profiles]]\nslug = \"small\"\ndisplay_name = \"Small\"\ndescription = \"One CPU, 2 GB.\"\nuser_options = { cpu_limit = 1, mem_limit = \"2G\" }\n\n[[profiles]]\nslug = \"large\"\ndisplay_name = \"Large\"\ndescription = \"Eight CPUs, 32 GB.\"\nuser_options = { cpu_limit = 8, mem_limit = \"32G\" }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_accessible_wide_and_narrow() {
    let Some(setup) = Setup::start(
        "pages_are_accessible_wide_and_narrow",
        EVERYTHING,
        Arc::new(MockSpawner::new()),
    )
    .await
    else {
        return;
    };
    setup.make_admin("alice").await;
    let s = setup.browser().await;

    // Keyboard only: the login form has the focus; Tab to the password, Enter submits.
    s.goto(&setup.url("/hub/login?next=%2Fhub%2Fhome")).await;
    s.find("#username_input").await;
    s.wait_until(
        "the username field to have the focus",
        "document.activeElement && document.activeElement.id === 'username_input'",
    )
    .await;
    s.press("alice").await;
    s.press(keys::TAB).await;
    assert_eq!(
        s.active().await.attribute("id").await.as_deref(),
        Some("password_input")
    );
    s.press("secret").await;
    s.press(keys::ENTER).await;
    s.wait_for_path("/hub/home").await;
    assert!(s.body_text().await.contains("Maintenance on Saturday"));
    // The first Tab reaches the skip link, which is shown and moves the focus to the content.
    s.press(keys::TAB).await;
    let first = s.active().await;
    assert_eq!(first.attribute("class").await.as_deref(), Some("skip"));
    assert!(first.is_displayed().await);
    s.screenshot("skip-link-focused").await;
    s.press(keys::ENTER).await;
    s.wait_until(
        "focus on the content",
        "document.activeElement && document.activeElement.id === 'main'",
    )
    .await;
    s.press(keys::TAB).await;
    let next = s.active().await;
    assert!(
        s.execute(
            "return document.getElementById('main').contains(document.activeElement);",
            vec![]
        )
        .await
            == true,
        "Tab after the skip link stays in the content: {:?}",
        next.attribute("id").await
    );

    let pages = [
        ("home", "/hub/home"),
        ("token", "/hub/token"),
        ("spawn with profiles", "/hub/spawn"),
        ("admin", "/hub/admin"),
        ("not found", "/hub/no-such-page"),
        ("not running", "/hub/user/alice/lab"),
    ];
    for (width, height, label) in [(1280, 900, "wide"), (360, 780, "narrow")] {
        s.set_window_size(width, height).await;
        for (name, path) in pages {
            s.goto(&setup.url(path)).await;
            s.find("h1").await;
            if name == "admin" {
                s.wait_until(
                    "the user list",
                    "document.querySelectorAll('#users-body tr.user-row').length > 0",
                )
                .await;
            }
            if name == "spawn with profiles" {
                assert!(s.find("#profile-small").await.property("checked").await == true);
                s.find("label[for=profile-large]").await;
            }
            s.screenshot(&format!("{label}-{name}")).await;
            assert_accessible(&s, &format!("{name} ({label})")).await;
        }
    }

    // Choose a profile with the keyboard and start.
    s.set_window_size(1280, 900).await;
    s.goto(&setup.url("/hub/spawn")).await;
    s.find("#profile-small").await.click().await;
    s.press(keys::DOWN).await;
    assert!(s.find("#profile-large").await.property("checked").await == true);
    s.press(keys::ENTER).await;
    s.wait_until(
        "the server",
        "location.pathname.indexOf('/user/alice/') === 0 || location.pathname.indexOf('/hub/spawn-pending/') === 0",
    )
    .await;
    let token = setup.hub.user("alice", true).await;
    let (_, model) = setup.hub.get("/users/alice", Some(&token)).await;
    assert_eq!(
        model["servers"][""]["user_options"],
        json!({"profile": "large"}),
        "{model}"
    );
    s.goto(&setup.url("/hub/home")).await;
    s.wait_for_text(".server-profile", "Large").await;
    s.screenshot("home-with-profile").await;
    s.quit().await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_page_with_ten_thousand_users() {
    let Some(setup) = Setup::start(
        "admin_page_with_ten_thousand_users",
        "",
        Arc::new(MockSpawner::new()),
    )
    .await
    else {
        return;
    };
    setup.make_admin("root").await;
    setup
        .hub
        .state
        .db
        .run(|conn| {
            let names: Vec<String> = (0..10_000).map(|i| format!("user{i:05}")).collect();
            let cookies: Vec<String> = (0..10_000)
                .map(|_| hub::identity::tokens::new_session_id())
                .collect();
            let new: Vec<users::NewUser<'_>> = names
                .iter()
                .zip(&cookies)
                .map(|(name, cookie_id)| users::NewUser {
                    name,
                    admin: false,
                    cookie_id,
                })
                .collect();
            users::insert_many(conn, &new).map(|_| ())
        })
        .await
        .unwrap();
    let s = setup.browser().await;
    setup.log_in(&s, "root", "/hub/home", "/hub/home").await;

    let started = std::time::Instant::now();
    s.goto(&setup.url("/hub/admin")).await;
    s.wait_until(
        "the first page of users",
        "document.querySelectorAll('#users-body tr.user-row').length === 50",
    )
    .await;
    let load = started.elapsed();
    s.wait_for_text("#users-summary", "Users 1–50 of 10001")
        .await;
    s.screenshot("first-page").await;

    let started = std::time::Instant::now();
    s.find("#users-next").await.click().await;
    s.wait_for_text("#users-summary", "Users 51–100 of 10001")
        .await;
    let next = started.elapsed();

    let started = std::time::Instant::now();
    s.find("button.sort[data-sort=name]").await.click().await;
    s.find("button.sort[data-sort=name]").await.click().await;
    s.wait_until(
        "the last names first",
        "document.querySelector('#users-body tr.user-row') && document.querySelector('#users-body tr.user-row').getAttribute('data-user') === 'user09999'",
    )
    .await;
    let sort = started.elapsed();
    s.screenshot("sorted").await;

    let started = std::time::Instant::now();
    s.find("#user-filter").await.send_keys("0999").await;
    s.wait_for_text("#users-summary", "of 11").await;
    let search = started.elapsed();
    assert_eq!(admin_rows(&s).await.len(), 11);
    s.screenshot("searched").await;

    // The last page, from the address the page keeps.
    s.goto(&setup.url("/hub/admin?offset=10000&limit=50")).await;
    s.wait_for_text("#users-summary", "Users 10001–10001 of 10001")
        .await;
    assert!(s.find("#users-next").await.property("disabled").await == true);
    assert!(s.find("#users-prev").await.property("disabled").await == false);
    println!(
        "admin page, 10,001 users: load {load:?}, next page {next:?}, sort {sort:?}, search {search:?}"
    );
    for (what, took) in [
        ("load", load),
        ("next", next),
        ("sort", sort),
        ("search", search),
    ] {
        assert!(took < Duration::from_secs(5), "{what} took {took:?}");
    }
    s.quit().await;
    setup.stop().await;
}
