//! The hub's server pages: spawn (with and without an options form), spawn-pending, the
//! `/hub/user/…` handler for servers the proxy has no route for, the home page, named servers,
//! limits and access to other users' servers; each on SQLite and PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::large_futures,
    missing_docs
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{Backend, PageResponse, TestHub};
use hub::db::models::spawners::{self, ServerPhase, Spawner as SpawnerRow};
use hub::db::models::users;
use hub_plugin::test_util::{
    FailingSpawner, MockSpawner, NeverSpawner, RecordingSpawner, SlowSpawner,
};
use hub_plugin::{PollStatus, ServerRef, SpawnContext, SpawnError, Spawner, Started};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Defines `name::sqlite` and `name::postgres`: a hub with `config` and the spawner `spawner`
/// (an `Arc` of a concrete type, bound to `$sp` in the body).
macro_rules! servers_test {
    ($name:ident, $config:expr, $spawner:expr, |$hub:ident, $sp:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $crate::each_backend!(run);

            async fn run(backend: Backend) {
                #[allow(unused_variables)]
                let $sp = $spawner;
                let dynamic: Arc<dyn Spawner> = $sp.clone();
                let config: String = $config;
                let owned = TestHub::start_with(backend, &config, Some(dynamic)).await;
                {
                    let $hub = &owned;
                    $body.await;
                }
                owned.stop().await;
            }
        }
    };
}

/// A [`MockSpawner`] with an options form: `profile` is `small` or `large`.
#[derive(Debug, Default)]
struct FormSpawner {
    inner: MockSpawner,
}

/// The options form of [`FormSpawner`].
const FORM: &str = "<label for=\"profile\">Profile</label><select id=\"profile\" name=\"profile\">\
                    <option>small</option><option>large</option></select>";

#[async_trait]
impl Spawner for FormSpawner {
    fn kind(&self) -> &str {
        "form"
    }

    async fn start(&self, ctx: &SpawnContext) -> Result<Started, SpawnError> {
        self.inner.start(ctx).await
    }

    async fn poll(&self, server: &ServerRef, state: &Value) -> Result<PollStatus, SpawnError> {
        self.inner.poll(server, state).await
    }

    async fn stop(&self, server: &ServerRef, state: &Value, now: bool) -> Result<(), SpawnError> {
        self.inner.stop(server, state, now).await
    }

    fn options_form(&self, _server: &ServerRef) -> Option<String> {
        Some(FORM.to_owned())
    }

    fn validate_options(&self, options: Value) -> Result<Value, SpawnError> {
        match options.get("profile").and_then(Value::as_str) {
            Some("small" | "large") => Ok(options),
            other => Err(SpawnError::Refused {
                message: format!("No such profile: {}", other.unwrap_or("(none)")),
                status: 400,
            }),
        }
    }
}

// === helpers ===

async fn row(hub: &TestHub, user: &str, server: &str) -> Option<SpawnerRow> {
    let (user, server) = (user.to_owned(), server.to_owned());
    hub.state
        .db
        .run(move |c| {
            let Some(user) = users::find_by_name(c, &user)? else {
                return Ok(None);
            };
            spawners::find(c, user.id, &server)
        })
        .await
        .unwrap()
}

/// Waits until server `server` of `user` reaches `phase`.
async fn wait_for(hub: &TestHub, user: &str, server: &str, phase: ServerPhase) {
    for _ in 0..200 {
        if row(hub, user, server)
            .await
            .is_some_and(|r| r.phase == phase)
            && hub
                .state
                .servers
                .current(row(hub, user, server).await.unwrap().id)
                .is_none()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{user}/{server} never reached {phase:?}");
}

async fn make_admin(hub: &TestHub, name: &str) {
    let name = name.to_owned();
    hub.state
        .db
        .run(move |c| {
            let u = users::find_by_name(c, &name)?.unwrap();
            users::set_admin(c, u.id, true)
        })
        .await
        .unwrap();
    hub.state.identities.invalidate();
}

fn assert_redirect(resp: &PageResponse, status: StatusCode, location: &str) {
    assert_eq!(resp.status, status, "{}", resp.body);
    assert_eq!(resp.location(), Some(location), "{}", resp.body);
}

const NAMED: &str = "[hub]\nallow_named_servers = true\n";

// === spawn and spawn-pending ===

servers_test!(
    spawn_then_pending_then_the_server,
    String::new(),
    Arc::new(MockSpawner::new()),
    |hub, sp| async move {
        let anon = hub.get_page("/hub/spawn", None).await;
        assert_redirect(&anon, StatusCode::FOUND, "/hub/login?next=%2Fhub%2Fspawn");
        let alice = hub.browser("alice").await;
        let resp = hub.get_page("/hub/spawn", Some(&alice.cookie)).await;
        assert_redirect(&resp, StatusCode::FOUND, "/hub/spawn-pending/alice");
        wait_for(hub, "alice", "", ServerPhase::Running).await;
        assert_eq!(sp.running(), 1);
        let resp = hub
            .get_page("/hub/spawn-pending/alice", Some(&alice.cookie))
            .await;
        assert_redirect(&resp, StatusCode::FOUND, "/user/alice/");
        // Ready: the spawn page opens the server, or `next` on it.
        let resp = hub.get_page("/hub/spawn", Some(&alice.cookie)).await;
        assert_redirect(&resp, StatusCode::FOUND, "/user/alice/");
        let resp = hub
            .get_page(
                "/hub/spawn/alice?next=%2Fuser%2Falice%2Flab",
                Some(&alice.cookie),
            )
            .await;
        assert_redirect(&resp, StatusCode::FOUND, "/user/alice/lab");
        let resp = hub
            .get_page(
                "/hub/spawn?next=https%3A%2F%2Fevil.com%2F",
                Some(&alice.cookie),
            )
            .await;
        assert_redirect(&resp, StatusCode::FOUND, "/user/alice/");
        let resp = hub
            .get_page(
                "/hub/spawn-pending/alice?next=%2Fuser%2Falice%2Ftree",
                Some(&alice.cookie),
            )
            .await;
        assert_redirect(&resp, StatusCode::FOUND, "/user/alice/tree");
        assert_eq!(sp.running(), 1);

        // The home page shows it running, with open and stop.
        let home = hub.get_page("/hub/home", Some(&alice.cookie)).await;
        assert_eq!(home.status, StatusCode::OK);
        assert!(home.body.contains("href=\"/user/alice/\""), "{}", home.body);
        assert!(
            home.body
                .contains("data-action=\"stop\" data-api=\"users/alice/server\"")
        );
        assert!(home.body.contains("data-state=\"ready\""));
        assert!(home.body.contains("<time datetime="));

        // Stopped: spawn-pending says so, with a link to start it again.
        let (status, _) = alice
            .with_xsrf(Method::DELETE, "/users/alice/server", None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let resp = hub
            .get_page("/hub/spawn-pending/alice", Some(&alice.cookie))
            .await;
        assert_eq!(resp.status, StatusCode::OK);
        assert!(resp.body.contains("Server not running"));
        assert!(
            resp.body.contains("href=\"/hub/spawn/alice\""),
            "{}",
            resp.body
        );
        let home = hub.get_page("/hub/home", Some(&alice.cookie)).await;
        assert!(home.body.contains("href=\"/hub/spawn/alice\""));
        assert!(home.body.contains("data-state=\"stopped\""));
    }
);

servers_test!(
    pending_page_follows_progress,
    String::new(),
    Arc::new(SlowSpawner::new(Duration::from_secs(2))),
    |hub, sp| async move {
        let alice = hub.browser("alice").await;
        let resp = hub
            .get_page("/hub/spawn?next=%2Fuser%2Falice%2Flab", Some(&alice.cookie))
            .await;
        assert_redirect(
            &resp,
            StatusCode::FOUND,
            "/hub/spawn-pending/alice?next=%2Fuser%2Falice%2Flab",
        );
        let page = hub
            .get_page(resp.location().unwrap(), Some(&alice.cookie))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(
            page.body
                .contains("data-progress-url=\"/hub/api/users/alice/server/progress\"")
        );
        assert!(page.body.contains("data-next-url=\"/user/alice/lab\""));
        assert!(page.body.contains("id=\"cancel-spawn\""));
        assert!(page.body.contains("<progress"));
        // Another start while pending goes to the same page.
        let again = hub.get_page("/hub/spawn", Some(&alice.cookie)).await;
        assert_redirect(&again, StatusCode::FOUND, "/hub/spawn-pending/alice");
        // The stream the page's script opens (EventSource: cookie, `_xsrf` in the URL).
        let stream = hub
            .client
            .get(hub.api_url(&format!(
                "/users/alice/server/progress?_xsrf={}",
                alice.xsrf
            )))
            .header("Cookie", &alice.cookie)
            .header("Sec-Fetch-Mode", "cors")
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), StatusCode::OK);
        assert_eq!(stream.headers()["content-type"], "text/event-stream");
        let text = tokio::time::timeout(Duration::from_secs(10), stream.text())
            .await
            .unwrap()
            .unwrap();
        assert!(
            text.contains("\"ready\": true") || text.contains("\"ready\":true"),
            "{text}"
        );
        wait_for(hub, "alice", "", ServerPhase::Running).await;
        let done = hub
            .get_page(
                "/hub/spawn-pending/alice?next=%2Fuser%2Falice%2Flab",
                Some(&alice.cookie),
            )
            .await;
        assert_redirect(&done, StatusCode::FOUND, "/user/alice/lab");
        assert_eq!(sp.inner.running(), 1);
    }
);

servers_test!(
    failed_spawns_show_why,
    String::new(),
    Arc::new(FailingSpawner::default()),
    |hub, _sp| async move {
        let alice = hub.browser("alice").await;
        let resp = hub.get_page("/hub/spawn", Some(&alice.cookie)).await;
        assert_redirect(&resp, StatusCode::FOUND, "/hub/spawn-pending/alice");
        wait_for(hub, "alice", "", ServerPhase::Stopped).await;
        let page = hub
            .get_page("/hub/spawn-pending/alice", Some(&alice.cookie))
            .await;
        assert_eq!(
            page.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            page.body
        );
        assert!(page.body.contains("Spawn failed"), "{}", page.body);
        assert!(page.body.contains("href=\"/hub/spawn/alice\""));
        // Requests for the server go to that page.
        let resp = hub
            .get_page("/hub/user/alice/tree", Some(&alice.cookie))
            .await;
        assert_redirect(
            &resp,
            StatusCode::SEE_OTHER,
            "/hub/spawn-pending/alice?next=%2Fuser%2Falice%2Ftree",
        );
    }
);

servers_test!(
    spawner_refusals_are_shown,
    String::new(),
    Arc::new(FailingSpawner {
        refusal: Some(("Quota exceeded: <b>too many</b>".into(), 403)),
    }),
    |hub, _sp| async move {
        let alice = hub.browser("alice").await;
        let resp = hub.get_page("/hub/spawn", Some(&alice.cookie)).await;
        let page = if resp.status == StatusCode::FOUND {
            wait_for(hub, "alice", "", ServerPhase::Stopped).await;
            hub.get_page(resp.location().unwrap(), Some(&alice.cookie))
                .await
        } else {
            resp
        };
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        assert!(
            page.body
                .contains("Quota exceeded: &lt;b&gt;too many&lt;/b&gt;")
        );
    }
);

servers_test!(
    options_form,
    String::new(),
    Arc::new(FormSpawner::default()),
    |hub, sp| async move {
        let alice = hub.browser("alice").await;
        let page = hub.get_page("/hub/spawn", Some(&alice.cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains(FORM), "the operator's form, as written");
        assert_eq!(page.xsrf_field().as_deref(), Some(alice.xsrf.as_str()));
        assert!(page.body.contains("action=\"/hub/spawn/alice\""));
        assert_eq!(sp.inner.starts.load(std::sync::atomic::Ordering::SeqCst), 0);

        // Without `_xsrf`: refused.
        let resp = hub
            .page(
                Method::POST,
                "/hub/spawn",
                Some(&alice.cookie),
                Some(&[("profile", "large")]),
                &[],
            )
            .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN);
        // Invalid options: the form again, with the spawner's message.
        let resp = hub
            .page(
                Method::POST,
                "/hub/spawn/alice?next=%2Fuser%2Falice%2Flab",
                Some(&alice.cookie),
                Some(&[("_xsrf", &alice.xsrf), ("profile", "huge<script>")]),
                &[],
            )
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST);
        assert!(
            resp.body.contains("No such profile: huge&lt;script&gt;"),
            "{}",
            resp.body
        );
        assert!(resp.body.contains(FORM));
        assert!(
            resp.body
                .contains("action=\"/hub/spawn/alice?next=%2Fuser%2Falice%2Flab\"")
        );
        // Valid options: started with them.
        let resp = hub
            .page(
                Method::POST,
                "/hub/spawn/alice?next=%2Fuser%2Falice%2Flab",
                Some(&alice.cookie),
                Some(&[("_xsrf", &alice.xsrf), ("profile", "large")]),
                &[],
            )
            .await;
        assert_redirect(
            &resp,
            StatusCode::FOUND,
            "/hub/spawn-pending/alice?next=%2Fuser%2Falice%2Flab",
        );
        wait_for(hub, "alice", "", ServerPhase::Running).await;
        let saved = row(hub, "alice", "").await.unwrap();
        assert_eq!(
            Value::Object(saved.user_options),
            json!({"profile": "large"})
        );
        let (status, _) = alice
            .with_xsrf(Method::DELETE, "/users/alice/server", None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);

        // Options in the query skip the form: `opt-<key>`, or the form's own field names.
        let resp = hub
            .get_page("/hub/spawn?opt-profile=small", Some(&alice.cookie))
            .await;
        assert_redirect(&resp, StatusCode::FOUND, "/hub/spawn-pending/alice");
        wait_for(hub, "alice", "", ServerPhase::Running).await;
        let saved = row(hub, "alice", "").await.unwrap();
        assert_eq!(
            Value::Object(saved.user_options),
            json!({"profile": "small"})
        );
        let (status, _) = alice
            .with_xsrf(Method::DELETE, "/users/alice/server", None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let resp = hub
            .get_page("/hub/spawn?profile=bogus", Some(&alice.cookie))
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST);
        assert!(resp.body.contains("No such profile: bogus"));
    }
);

// === access to other users' servers ===

servers_test!(
    other_users_servers,
    String::new(),
    Arc::new(MockSpawner::new()),
    |hub, sp| async move {
        let alice = hub.browser("alice").await;
        let bob = hub.browser("bob").await;
        for path in [
            "/hub/spawn/alice",
            "/hub/spawn-pending/alice",
            "/hub/user/alice/tree",
            "/hub/spawn/nobody",
            "/hub/spawn-pending/nobody",
            "/hub/user/nobody/tree",
        ] {
            let resp = hub.get_page(path, Some(&bob.cookie)).await;
            assert_eq!(resp.status, StatusCode::NOT_FOUND, "{path}");
            assert!(
                resp.body
                    .contains("No access to resources or resources not found"),
                "{path}"
            );
        }
        let resp = hub
            .page(
                Method::POST,
                "/hub/spawn/alice",
                Some(&bob.cookie),
                Some(&[("_xsrf", &bob.xsrf)]),
                &[],
            )
            .await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND);
        assert_eq!(sp.running(), 0);
        let resp = hub
            .get_page("/hub/user/alice/api/contents", Some(&bob.cookie))
            .await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND);
        assert!(resp.body.starts_with('{'));

        // An admin may start another user's server.
        make_admin(hub, "bob").await;
        let resp = hub.get_page("/hub/spawn/alice", Some(&bob.cookie)).await;
        assert_redirect(&resp, StatusCode::FOUND, "/hub/spawn-pending/alice");
        wait_for(hub, "alice", "", ServerPhase::Running).await;
        let resp = hub
            .get_page("/hub/spawn-pending/alice", Some(&bob.cookie))
            .await;
        assert_redirect(&resp, StatusCode::FOUND, "/user/alice/");
        let _ = alice;
    }
);

servers_test!(
    spawning_for_another_user_shows_whose_form,
    String::new(),
    Arc::new(FormSpawner::default()),
    |hub, _sp| async move {
        hub.browser("alice").await;
        let admin = hub.browser("root").await;
        make_admin(hub, "root").await;
        let page = hub.get_page("/hub/spawn/alice", Some(&admin.cookie)).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            page.body
                .contains("starting a server for <strong>alice</strong>")
        );
    }
);

// === /hub/user/… ===

servers_test!(
    requests_for_servers_without_a_route,
    String::new(),
    Arc::new(MockSpawner::new()),
    |hub, _sp| async move {
        let anon = hub.get_page("/hub/user/alice/tree?x=1", None).await;
        assert_redirect(
            &anon,
            StatusCode::FOUND,
            "/hub/login?next=%2Fhub%2Fuser%2Falice%2Ftree%3Fx%3D1",
        );
        let alice = hub.browser("alice").await;
        // Not running: 424 and a link that starts it and comes back.
        let resp = hub
            .get_page("/hub/user/alice/tree?x=1", Some(&alice.cookie))
            .await;
        assert_eq!(resp.status, StatusCode::FAILED_DEPENDENCY);
        assert!(
            resp.body
                .contains("href=\"/hub/spawn/alice?next=%2Fuser%2Falice%2Ftree%3Fx%3D1\""),
            "{}",
            resp.body
        );
        // API-looking requests get JSON.
        let resp = hub
            .get_page("/hub/user/alice/api/contents", Some(&alice.cookie))
            .await;
        assert_eq!(resp.status, StatusCode::FAILED_DEPENDENCY);
        let body: Value = serde_json::from_str(&resp.body).unwrap();
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with("JupyterHub server no longer running at /user/alice/api/contents."),
            "{message}"
        );
        assert!(
            message.ends_with(&format!(
                "Restart the server at {}/hub/spawn/alice",
                hub.origin
            )),
            "{message}"
        );
        let resp = hub
            .page(
                Method::GET,
                "/hub/user/alice/lab",
                Some(&alice.cookie),
                None,
                &[("Accept", "application/json")],
            )
            .await;
        assert_eq!(resp.status, StatusCode::FAILED_DEPENDENCY);
        assert!(resp.body.starts_with('{'));
        // Tokens work here.
        let token = hub.user("alice", false).await;
        let auth = format!("token {}", token.token);
        let resp = hub
            .page(
                Method::GET,
                "/hub/user/alice/api/kernels",
                None,
                None,
                &[("Authorization", &auth)],
            )
            .await;
        assert_eq!(resp.status, StatusCode::FAILED_DEPENDENCY);
        let resp = hub
            .page(
                Method::POST,
                "/hub/user/alice/api/kernels",
                None,
                None,
                &[("Authorization", &auth)],
            )
            .await;
        assert_eq!(resp.status, StatusCode::FAILED_DEPENDENCY);
        // Cookie-authenticated posts need `_xsrf` first.
        let resp = hub
            .page(
                Method::POST,
                "/hub/user/alice/api/kernels",
                Some(&alice.cookie),
                Some(&[]),
                &[],
            )
            .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN);
        let resp = hub
            .page(
                Method::POST,
                &format!("/hub/user/alice/api/kernels?_xsrf={}", alice.xsrf),
                Some(&alice.cookie),
                Some(&[]),
                &[],
            )
            .await;
        assert_eq!(resp.status, StatusCode::FAILED_DEPENDENCY);
        // Anonymous API calls: 403.
        let resp = hub.get_page("/hub/user/alice/api/contents", None).await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN);

        // Running: back to the server, counting the hops.
        let resp = hub.get_page("/hub/spawn", Some(&alice.cookie)).await;
        assert_eq!(resp.status, StatusCode::FOUND);
        wait_for(hub, "alice", "", ServerPhase::Running).await;
        let resp = hub
            .get_page("/hub/user/alice/tree?x=1", Some(&alice.cookie))
            .await;
        assert_redirect(&resp, StatusCode::FOUND, "/user/alice/tree?x=1&redirects=1");
        let resp = hub
            .get_page("/hub/user/alice/tree?x=1&redirects=2", Some(&alice.cookie))
            .await;
        assert_redirect(&resp, StatusCode::FOUND, "/user/alice/tree?x=1&redirects=3");
        let resp = hub
            .get_page("/hub/user/alice/tree?redirects=4", Some(&alice.cookie))
            .await;
        assert_eq!(resp.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(resp.body.contains("Redirect loop"), "{}", resp.body);
        let resp = hub
            .get_page("/hub/user/alice/api/x?redirects=9", Some(&alice.cookie))
            .await;
        assert_eq!(resp.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(resp.body.starts_with('{'));
    }
);

servers_test!(
    requests_for_a_starting_server_wait_for_it,
    String::new(),
    Arc::new(NeverSpawner),
    |hub, _sp| async move {
        let alice = hub.browser("alice").await;
        let resp = hub.get_page("/hub/spawn", Some(&alice.cookie)).await;
        assert_redirect(&resp, StatusCode::FOUND, "/hub/spawn-pending/alice");
        let resp = hub
            .get_page("/hub/user/alice/lab?x=1", Some(&alice.cookie))
            .await;
        assert_redirect(
            &resp,
            StatusCode::SEE_OTHER,
            "/hub/spawn-pending/alice?next=%2Fuser%2Falice%2Flab%3Fx%3D1",
        );
        let page = hub
            .get_page("/hub/spawn-pending/alice", Some(&alice.cookie))
            .await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("Your server is starting up"));
        let home = hub.get_page("/hub/home", Some(&alice.cookie)).await;
        assert!(home.body.contains("href=\"/hub/spawn-pending/alice\""));
        assert!(home.body.contains("Starting"));
        // Cancel, as the page's button does.
        let (status, _) = alice
            .with_xsrf(Method::DELETE, "/users/alice/server", None)
            .await;
        assert!(status.is_success(), "{status}");
    }
);

// === named servers ===

servers_test!(
    named_servers,
    format!("{NAMED}named_server_limit_per_user = 2\n"),
    Arc::new(MockSpawner::new()),
    |hub, _sp| async move {
        let alice = hub.browser("alice").await;
        let home = hub.get_page("/hub/home", Some(&alice.cookie)).await;
        assert!(home.body.contains("You have no named servers yet."));
        assert!(home.body.contains("id=\"new-server-form\""));
        assert!(home.body.contains("data-spawn-base=\"/hub/spawn/alice/\""));

        let resp = hub
            .get_page("/hub/spawn/alice/gpu", Some(&alice.cookie))
            .await;
        assert_redirect(&resp, StatusCode::FOUND, "/hub/spawn-pending/alice/gpu");
        wait_for(hub, "alice", "gpu", ServerPhase::Running).await;
        let resp = hub
            .get_page("/hub/spawn-pending/alice/gpu", Some(&alice.cookie))
            .await;
        assert_redirect(&resp, StatusCode::FOUND, "/user/alice/gpu/");
        // A path under a named server is that server's.
        let resp = hub
            .get_page("/hub/user/alice/gpu/lab", Some(&alice.cookie))
            .await;
        assert_redirect(&resp, StatusCode::FOUND, "/user/alice/gpu/lab?redirects=1");
        // Anything else under the user is the default server's (not running).
        let resp = hub
            .get_page("/hub/user/alice/other/lab", Some(&alice.cookie))
            .await;
        assert_eq!(resp.status, StatusCode::FAILED_DEPENDENCY);
        assert!(
            resp.body
                .contains("href=\"/hub/spawn/alice?next=%2Fuser%2Falice%2Fother%2Flab\"")
        );

        let home = hub.get_page("/hub/home", Some(&alice.cookie)).await;
        assert!(
            home.body.contains("<tr data-server=\"gpu\">"),
            "{}",
            home.body
        );
        assert!(home.body.contains("data-api=\"users/alice/servers/gpu\""));

        // Bad names, and the limit.
        for bad in ["Bad_Name", "a--b", "-x", &"x".repeat(31)] {
            let resp = hub
                .get_page(&format!("/hub/spawn/alice/{bad}"), Some(&alice.cookie))
                .await;
            assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        let resp = hub
            .get_page("/hub/spawn/alice/cpu", Some(&alice.cookie))
            .await;
        assert_eq!(resp.status, StatusCode::FOUND);
        let resp = hub
            .get_page("/hub/spawn/alice/third", Some(&alice.cookie))
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST);
        assert!(
            resp.body.contains("maximum of 2 named servers"),
            "{}",
            resp.body
        );
        wait_for(hub, "alice", "cpu", ServerPhase::Running).await;
        let home = hub.get_page("/hub/home", Some(&alice.cookie)).await;
        assert!(!home.body.contains("id=\"new-server-form\""));
        assert!(home.body.contains("reached the limit"));
        // Unknown named servers have no pending page.
        let resp = hub
            .get_page("/hub/spawn-pending/alice/nope", Some(&alice.cookie))
            .await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND);
    }
);

servers_test!(
    named_servers_off,
    String::new(),
    Arc::new(MockSpawner::new()),
    |hub, sp| async move {
        let alice = hub.browser("alice").await;
        let resp = hub
            .get_page("/hub/spawn/alice/gpu", Some(&alice.cookie))
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST);
        assert!(resp.body.contains("Named servers are not enabled."));
        let home = hub.get_page("/hub/home", Some(&alice.cookie)).await;
        assert!(!home.body.contains("Named servers"));
        assert_eq!(sp.running(), 0);
    }
);

// === limits ===

/// The place of `user`'s default server in the spawn page's line, from the JSON the
/// spawn-pending page's script polls.
async fn queue_place(hub: &TestHub, user: &str, cookie: &str) -> Value {
    let resp = hub
        .get_page(&format!("/hub/spawn-queue/{user}"), Some(cookie))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    serde_json::from_str(&resp.body).unwrap()
}

servers_test!(
    spawn_limits_queue_page_starts,
    "[hub]\nconcurrent_spawn_limit = 1\n".to_owned(),
    Arc::new(NeverSpawner),
    |hub, _sp| async move {
        let alice = hub.browser("alice").await;
        let bob = hub.browser("bob").await;
        let carol = hub.browser("carol").await;
        let resp = hub.get_page("/hub/spawn", Some(&alice.cookie)).await;
        assert_redirect(&resp, StatusCode::FOUND, "/hub/spawn-pending/alice");
        // The API refuses at the limit, with Retry-After...
        let (status, body) = bob.with_xsrf(Method::POST, "/users/bob/server", None).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        // ...the pages put the start in a line and show its place.
        let resp = hub.get_page("/hub/spawn", Some(&bob.cookie)).await;
        assert_redirect(&resp, StatusCode::FOUND, "/hub/spawn-pending/bob");
        let resp = hub.get_page("/hub/spawn", Some(&carol.cookie)).await;
        assert_redirect(&resp, StatusCode::FOUND, "/hub/spawn-pending/carol");
        let page = hub
            .get_page("/hub/spawn-pending/carol", Some(&carol.cookie))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(
            page.body.contains("Waiting for a free slot"),
            "{}",
            page.body
        );
        assert!(page.body.contains(
            "<strong id=\"queue-number\">2</strong> of <span id=\"queue-length\">2</span>"
        ));
        assert!(page.body.contains("(at most 1 at a time)"));
        assert!(page.body.contains("data-queued=\"true\""));
        assert_eq!(
            queue_place(hub, "bob", &bob.cookie).await,
            json!({"queued": true, "position": 1, "length": 2, "starting": 1})
        );
        let home = hub.get_page("/hub/home", Some(&bob.cookie)).await;
        assert!(home.body.contains("Waiting to start"), "{}", home.body);
        assert!(home.body.contains("href=\"/hub/spawn-pending/bob\""));
        // Starting again while waiting keeps the place.
        let resp = hub.get_page("/hub/spawn", Some(&bob.cookie)).await;
        assert_redirect(&resp, StatusCode::FOUND, "/hub/spawn-pending/bob");
        assert_eq!(queue_place(hub, "bob", &bob.cookie).await["position"], 1);
        // Someone else's place is not visible.
        let resp = hub
            .get_page("/hub/spawn-queue/bob", Some(&carol.cookie))
            .await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND);
        // Leaving the line needs the form's _xsrf, then goes home.
        let resp = hub
            .page(
                Method::POST,
                "/hub/spawn-pending/carol",
                Some(&carol.cookie),
                Some(&[("action", "cancel")]),
                &[],
            )
            .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN);
        let resp = hub
            .page(
                Method::POST,
                "/hub/spawn-pending/carol",
                Some(&carol.cookie),
                Some(&[("_xsrf", carol.xsrf.as_str()), ("action", "cancel")]),
                &[],
            )
            .await;
        assert_redirect(&resp, StatusCode::SEE_OTHER, "/hub/home");
        assert_eq!(
            queue_place(hub, "carol", &carol.cookie).await,
            json!({"queued": false})
        );
        assert_eq!(queue_place(hub, "bob", &bob.cookie).await["length"], 1);
        let page = hub
            .get_page("/hub/spawn-pending/carol", Some(&carol.cookie))
            .await;
        assert!(page.body.contains("Server not running"), "{}", page.body);
        // Alice cancels her start from her pending page: the slot goes to bob.
        let resp = hub
            .page(
                Method::POST,
                "/hub/spawn-pending/alice",
                Some(&alice.cookie),
                Some(&[("_xsrf", alice.xsrf.as_str()), ("action", "cancel")]),
                &[],
            )
            .await;
        assert_redirect(&resp, StatusCode::SEE_OTHER, "/hub/home");
        let mut started = false;
        for _ in 0..200 {
            if queue_place(hub, "bob", &bob.cookie).await == json!({"queued": false}) {
                let id = row(hub, "bob", "").await.unwrap().id;
                if hub.state.servers.current(id).is_some() {
                    started = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(started, "bob's start never left the line");
        let page = hub
            .get_page("/hub/spawn-pending/bob", Some(&bob.cookie))
            .await;
        assert!(
            page.body.contains("Your server is starting up"),
            "{}",
            page.body
        );
        let (status, _) = bob
            .with_xsrf(Method::DELETE, "/users/bob/server", None)
            .await;
        assert!(status.is_success());
    }
);

servers_test!(
    access_without_the_right_to_start,
    "[[roles]]\nname = \"viewer\"\nscopes = [\"access:servers!user=alice\"]\nusers = [\"bob\"]\n"
        .to_owned(),
    Arc::new(MockSpawner::new()),
    |hub, sp| async move {
        hub.browser("alice").await;
        let bob = hub.browser("bob").await;
        let resp = hub.get_page("/hub/user/alice/lab", Some(&bob.cookie)).await;
        assert_eq!(resp.status, StatusCode::FAILED_DEPENDENCY, "{}", resp.body);
        assert!(!resp.body.contains("/hub/spawn/alice"), "{}", resp.body);
        assert!(
            resp.body
                .contains("Only alice or an administrator can start it.")
        );
        let resp = hub.get_page("/hub/spawn/alice", Some(&bob.cookie)).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND);
        assert_eq!(sp.running(), 0);
    }
);

// === profiles ===

const PROFILES: &str = r#"
[groups.ml]
users = ["bob"]

[[profiles]]
slug = "small"
display_name = "Small <b>box</b>"
description = "One CPU. '\"><img src=x onerror=alert(1)>"
default = true
environment = { PROFILE_SIZE = "small" }
user_options = { cpu_limit = 1 }

[[profiles]]
slug = "gpu"
display_name = "GPU"
description = "For the machine-learning group."
groups = ["ml"]
environment = { PROFILE_SIZE = "gpu", EXTRA = "yes" }
user_options = { image = "gpu-image", cpu_limit = 8 }
"#;

servers_test!(
    profiles_for_each_user,
    PROFILES.to_owned(),
    Arc::new(RecordingSpawner::default()),
    |hub, sp| async move {
        // One profile to choose from: no question, the start uses it.
        let alice = hub.browser("alice").await;
        let resp = hub.get_page("/hub/spawn", Some(&alice.cookie)).await;
        assert_redirect(&resp, StatusCode::FOUND, "/hub/spawn-pending/alice");
        wait_for(hub, "alice", "", ServerPhase::Running).await;
        let ctx = sp.last();
        assert_eq!(
            ctx.user_options,
            json!({"profile": "small", "cpu_limit": 1})
        );
        assert_eq!(ctx.env["PROFILE_SIZE"], "small");
        // What is saved is the choice, not the profile's settings.
        let saved = row(hub, "alice", "").await.unwrap();
        assert_eq!(
            Value::Object(saved.user_options),
            json!({"profile": "small"})
        );
        let home = hub.get_page("/hub/home", Some(&alice.cookie)).await;
        assert!(
            home.body.contains(
                "<dt>Profile</dt><dd class=\"server-profile\">Small &lt;b&gt;box&lt;/b&gt;</dd>"
            ),
            "{}",
            home.body
        );

        // A profile for another group is refused, by the API and by the spawn page.
        hub.browser("dave").await;
        let dave = hub.user("dave", false).await;
        let (status, body) = hub
            .post("/users/dave/server", Some(&dave), json!({"profile": "gpu"}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            body["message"],
            "There is no server profile \"gpu\" you can use."
        );
        let dave_page = hub.browser("dave").await;
        let resp = hub
            .get_page("/hub/spawn?profile=gpu", Some(&dave_page.cookie))
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.body);
        assert!(
            resp.body
                .contains("There is no server profile &quot;gpu&quot; you can use.")
        );
        assert!(row(hub, "dave", "").await.unwrap().user_options.is_empty());

        // Bob, in the group, chooses on the spawn page.
        let bob = hub.browser("bob").await;
        let page = hub.get_page("/hub/spawn", Some(&bob.cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("<legend>Choose a profile</legend>"));
        assert!(page.body.contains("id=\"profile-small\" value=\"small\""));
        assert!(page.body.contains("id=\"profile-gpu\" value=\"gpu\""));
        assert!(
            page.body
                .contains("<label for=\"profile-small\">Small &lt;b&gt;box&lt;/b&gt;</label>")
        );
        assert!(!page.body.contains("<img src=x"), "{}", page.body);
        assert!(page.body.contains("<code>image: gpu-image</code>"));
        // The default is preselected.
        let small = page.body.find("id=\"profile-small\"").unwrap();
        let gpu = page.body.find("id=\"profile-gpu\"").unwrap();
        assert!(page.body[small..gpu].contains(" checked"));
        assert!(
            !page.body[gpu..]
                .split("</div>")
                .next()
                .unwrap()
                .contains(" checked")
        );
        let xsrf = page.xsrf_field().unwrap();
        let resp = hub
            .page(
                Method::POST,
                "/hub/spawn",
                Some(&bob.cookie),
                Some(&[
                    ("_xsrf", xsrf.as_str()),
                    ("profile", "gpu"),
                    ("cpu_limit", "64"),
                ]),
                &[],
            )
            .await;
        assert_redirect(&resp, StatusCode::FOUND, "/hub/spawn-pending/bob");
        wait_for(hub, "bob", "", ServerPhase::Running).await;
        let ctx = sp.last();
        // The profile's settings win over what the form sent.
        assert_eq!(
            ctx.user_options,
            json!({"profile": "gpu", "cpu_limit": 8, "image": "gpu-image"})
        );
        assert_eq!(ctx.env["PROFILE_SIZE"], "gpu");
        assert_eq!(ctx.env["EXTRA"], "yes");
        assert!(ctx.env.contains_key("JUPYTERHUB_API_TOKEN"));
        // Next time the last choice is preselected.
        let (status, _) = bob
            .with_xsrf(Method::DELETE, "/users/bob/server", None)
            .await;
        assert!(status.is_success());
        wait_for(hub, "bob", "", ServerPhase::Stopped).await;
        let page = hub.get_page("/hub/spawn", Some(&bob.cookie)).await;
        let gpu = page.body.find("id=\"profile-gpu\"").unwrap();
        assert!(
            page.body[gpu..]
                .split("</div>")
                .next()
                .unwrap()
                .contains(" checked")
        );
        // A profile chosen in the URL starts at once.
        let resp = hub
            .get_page("/hub/spawn?profile=small", Some(&bob.cookie))
            .await;
        assert_redirect(&resp, StatusCode::FOUND, "/hub/spawn-pending/bob");
        wait_for(hub, "bob", "", ServerPhase::Running).await;
        assert_eq!(sp.last().user_options["profile"], "small");
        assert_eq!(sp.count(), 3);
    }
);

servers_test!(
    no_profile_for_this_user,
    "[[profiles]]\nslug = \"gpu\"\ngroups = [\"ml\"]\n".to_owned(),
    Arc::new(RecordingSpawner::default()),
    |hub, sp| async move {
        let alice = hub.browser("alice").await;
        let resp = hub.get_page("/hub/spawn", Some(&alice.cookie)).await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
        assert!(resp.body.contains("No server profile is available to you"));
        let (status, body) = alice
            .with_xsrf(Method::POST, "/users/alice/server", None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(sp.count(), 0);
    }
);

servers_test!(
    failed_start_says_why_and_where_the_log_is,
    String::new(),
    Arc::new(FailingSpawner {
        refusal: Some(("Quota exceeded: 0 of 2 GPUs free <now>".to_owned(), 403)),
    }),
    |hub, _sp| async move {
        let alice = hub.browser("alice").await;
        let resp = hub.get_page("/hub/spawn", Some(&alice.cookie)).await;
        let page = hub
            .get_page("/hub/spawn-pending/alice", Some(&alice.cookie))
            .await;
        assert_eq!(
            page.status,
            StatusCode::FORBIDDEN,
            "{} {}",
            resp.status,
            page.body
        );
        assert!(page.body.contains("Server failed to start"));
        assert!(
            page.body
                .contains("Spawn failed: Quota exceeded: 0 of 2 GPUs free &lt;now&gt;")
        );
        assert!(page.body.contains("id=\"log-hint\""));
        assert!(page.body.contains("The hub&#x27;s log has the details"));
        assert!(page.body.contains("Try again"));
    }
);

/// A [`RecordingSpawner`] with an options form whose `validate_options` refuses every option
/// but `size`, as spawners that check their options strictly do.
#[derive(Debug, Default)]
struct Strict {
    inner: RecordingSpawner,
}

#[async_trait]
impl Spawner for Strict {
    fn kind(&self) -> &str {
        "strict"
    }

    async fn start(&self, ctx: &SpawnContext) -> Result<Started, SpawnError> {
        self.inner.start(ctx).await
    }

    async fn poll(&self, server: &ServerRef, state: &Value) -> Result<PollStatus, SpawnError> {
        self.inner.poll(server, state).await
    }

    async fn stop(&self, server: &ServerRef, state: &Value, now: bool) -> Result<(), SpawnError> {
        self.inner.stop(server, state, now).await
    }

    fn options_form(&self, _server: &ServerRef) -> Option<String> {
        Some(
            "<label for=\"size\">Size</label><select id=\"size\" name=\"size\"><option>small</option><option>big</option></select>"
                .to_owned(),
        )
    }

    fn validate_options(&self, options: Value) -> Result<Value, SpawnError> {
        match options
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "size"))
        {
            Some(other) => Err(SpawnError::Refused {
                message: format!("Unknown server option {other:?}"),
                status: 400,
            }),
            None => Ok(options),
        }
    }
}

servers_test!(
    profiles_with_a_strict_spawner_form,
    PROFILES.to_owned(),
    Arc::new(Strict::default()),
    |hub, sp| async move {
        // Bob has two profiles and the spawner's own form: both on one page.
        let bob = hub.browser("bob").await;
        let page = hub.get_page("/hub/spawn", Some(&bob.cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("<legend>Choose a profile</legend>"));
        assert!(
            page.body
                .contains("<div class=\"spawner-options\"><label for=\"size\">Size</label>")
        );
        let xsrf = page.xsrf_field().unwrap();
        let resp = hub
            .page(
                Method::POST,
                "/hub/spawn",
                Some(&bob.cookie),
                Some(&[
                    ("_xsrf", xsrf.as_str()),
                    ("profile", "gpu"),
                    ("size", "big"),
                ]),
                &[],
            )
            .await;
        assert_redirect(&resp, StatusCode::FOUND, "/hub/spawn-pending/bob");
        wait_for(hub, "bob", "", ServerPhase::Running).await;
        assert_eq!(
            sp.inner.last().user_options,
            json!({"profile": "gpu", "size": "big", "image": "gpu-image", "cpu_limit": 8})
        );
        // The spawner still refuses what it does not know; the profile is the hub's.
        let alice = hub.browser("alice").await;
        let (status, body) = alice
            .with_xsrf(
                Method::POST,
                "/users/alice/server",
                Some(json!({"profile": "small", "colour": "red"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["message"], "Unknown server option \"colour\"");
        let (status, body) = alice
            .with_xsrf(
                Method::POST,
                "/users/alice/server",
                Some(json!({"profile": "small", "size": "small"})),
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
        wait_for(hub, "alice", "", ServerPhase::Running).await;
        assert_eq!(
            sp.inner.last().user_options,
            json!({"profile": "small", "size": "small", "cpu_limit": 1})
        );
    }
);

// A profile may set the server command (for spawners that run a program); only the
// configuration can: an option named `cmd` from the user is just an option.
servers_test!(
    profile_commands_come_from_the_configuration_only,
    "[[profiles]]\nslug = \"plain\"\ndefault = true\n\n[[profiles]]\nslug = \"custom\"\ncmd = [\"my-server\", \"--flag\"]\n".to_owned(),
    Arc::new(RecordingSpawner::default()),
    |hub, sp| async move {
        let alice = hub.user("alice", false).await;
        let (status, body) = hub
            .post(
                "/users/alice/server",
                Some(&alice),
                json!({"profile": "custom"}),
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
        wait_for(hub, "alice", "", ServerPhase::Running).await;
        assert_eq!(
            sp.last().command,
            Some(vec!["my-server".to_owned(), "--flag".to_owned()])
        );
        let (status, _) = hub.delete("/users/alice/server", Some(&alice)).await;
        assert!(status.is_success());
        wait_for(hub, "alice", "", ServerPhase::Stopped).await;

        // The default profile sets no command; a user's own `cmd` option changes nothing.
        let (status, body) = hub
            .post(
                "/users/alice/server",
                Some(&alice),
                json!({"cmd": ["/bin/sh", "-c", "id"]}),
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
        wait_for(hub, "alice", "", ServerPhase::Running).await;
        assert_eq!(sp.last().command, None);
    }
);
