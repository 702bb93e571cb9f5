//! Users' servers through the REST API: start (201/202), stop (204/202), the progress stream,
//! limits, cancellation, credentials and their cleanup, the poller, restart recovery, named
//! servers, PATCH, request bodies and scopes; each on SQLite and PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::large_futures,
    missing_docs
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{Backend, Persona, TestHub};
use diesel::prelude::*;
use hub::cookie_secret::CookieSecret;
use hub::db::models::api_tokens::{self, ApiToken, TokenOwner};
use hub::db::models::oauth_clients::{self, OAuthClient};
use hub::db::models::spawners::{self, ServerPhase, Spawner as SpawnerRow};
use hub::db::models::users;
use hub::identity::tokens::{self, HashedToken};
use hub::spawn::Servers;
use hub::state::AppState;
use hub_plugin::test_util::{
    DummyAuthenticator, FailingSpawner, MockSpawner, NeverSpawner, RecordingSpawner, SlowSpawner,
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
                let owned = TestHub::start_with(backend, $config, Some(dynamic)).await;
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

async fn server_tokens(hub: &TestHub, spawner_id: i32) -> Vec<ApiToken> {
    use hub::db::schema::api_tokens as t;
    hub.state
        .db
        .run(move |c| {
            t::table
                .filter(t::spawner_id.eq(spawner_id))
                .select(ApiToken::as_select())
                .load(c)
        })
        .await
        .unwrap()
}

async fn tokens_of_client(hub: &TestHub, client_id: &str) -> Vec<ApiToken> {
    use hub::db::schema::api_tokens as t;
    let client_id = client_id.to_owned();
    hub.state
        .db
        .run(move |c| {
            t::table
                .filter(t::client_id.eq(client_id))
                .select(ApiToken::as_select())
                .load(c)
        })
        .await
        .unwrap()
}

async fn client(hub: &TestHub, identifier: &str) -> Option<OAuthClient> {
    let identifier = identifier.to_owned();
    hub.state
        .db
        .run(move |c| oauth_clients::find_by_identifier(c, &identifier))
        .await
        .unwrap()
}

/// Asserts that the server left nothing behind: stopped, no address, no token, no client.
async fn assert_cleaned_up(hub: &TestHub, user: &str, server: &str, client_id: &str) {
    let r = row(hub, user, server).await.unwrap();
    assert_eq!(r.phase, ServerPhase::Stopped, "{user}/{server}");
    assert!(r.server().is_none(), "{r:?}");
    assert!(server_tokens(hub, r.id).await.is_empty());
    assert!(client(hub, client_id).await.is_none(), "{client_id}");
    assert!(hub.state.servers.current(r.id).is_none());
}

async fn eventually<F, Fut>(patience: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads a whole progress stream: status, raw text, events.
async fn progress(hub: &TestHub, who: &Persona, path: &str) -> (StatusCode, String, Vec<Value>) {
    let resp = hub
        .client
        .get(hub.api_url(path))
        .header("Authorization", format!("token {}", who.token))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    if status == StatusCode::OK {
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        assert_eq!(resp.headers()["cache-control"], "no-cache");
    }
    let text = tokio::time::timeout(Duration::from_secs(30), resp.text())
        .await
        .expect("the progress stream ends")
        .unwrap();
    let events = text
        .split("\n\n")
        .filter_map(|chunk| chunk.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    (status, text, events)
}

async fn post_empty(hub: &TestHub, path: &str, who: &Persona) -> (StatusCode, Value) {
    let (status, headers, body) = hub.call(Method::POST, path, Some(who), None).await;
    if status.is_success() {
        assert_eq!(headers["content-type"], "text/plain", "{path}");
        assert_eq!(body, Value::Null);
    }
    (status, body)
}

async fn delete_with(
    hub: &TestHub,
    path: &str,
    who: &Persona,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, headers, body) = hub.call(Method::DELETE, path, Some(who), body).await;
    if status.is_success() {
        assert_eq!(headers["content-type"], "text/plain", "{path}");
    }
    (status, body)
}

fn fast(hub: &TestHub) {
    hub.state
        .servers
        .set_slow_timeouts(Duration::from_millis(300), Duration::from_millis(300));
}

/// Starts "successfully" at an address where nothing listens; `exits` makes poll report the
/// process gone with status 3.
#[derive(Debug)]
struct Unreachable {
    exits: bool,
    stops: Mutex<u32>,
}

#[async_trait]
impl Spawner for Unreachable {
    fn kind(&self) -> &str {
        "unreachable"
    }

    async fn start(&self, _ctx: &SpawnContext) -> Result<Started, SpawnError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Ok(Started {
            url: format!("http://127.0.0.1:{port}"),
            state: json!({"pid": 42}),
        })
    }

    async fn poll(&self, _: &ServerRef, _: &Value) -> Result<PollStatus, SpawnError> {
        Ok(if self.exits {
            PollStatus::Stopped(Some(3))
        } else {
            PollStatus::Running
        })
    }

    async fn stop(&self, _: &ServerRef, state: &Value, _: bool) -> Result<(), SpawnError> {
        assert_eq!(state, &json!({"pid": 42}));
        *self.stops.lock().unwrap() += 1;
        Ok(())
    }
}

// === the default server ===

servers_test!(
    default_server_lifecycle,
    "",
    Arc::new(RecordingSpawner::default()),
    |hub, spawner| async move {
        let alice = hub.user("alice", false).await;
        let admin = hub.user("root", true).await;
        let (status, _) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::CREATED);

        let (status, model) = hub.get("/users/alice/server", Some(&alice)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(model["name"], "");
        assert_eq!(model["full_name"], "alice/");
        assert_eq!(model["ready"], true);
        assert_eq!(model["stopped"], false);
        assert_eq!(model["pending"], Value::Null);
        assert_eq!(model["url"], "/user/alice/");
        assert_eq!(
            model["progress_url"],
            "/hub/api/users/alice/server/progress"
        );
        assert!(model["started"].is_string());
        assert!(model.get("state").is_none(), "{model}");
        let (_, model) = hub.get("/users/alice/server", Some(&admin)).await;
        assert!(model["state"]["mock_id"].is_u64(), "{model}");

        // Credentials: the server's token and its OAuth client.
        let r = row(hub, "alice", "").await.unwrap();
        assert_eq!(r.phase, ServerPhase::Running);
        let address = r.server().unwrap();
        assert_eq!(address.base_url, "/user/alice/");
        let toks = server_tokens(hub, r.id).await;
        assert_eq!(toks.len(), 1);
        assert_eq!(toks[0].note, "Server at /user/alice/");
        assert_eq!(toks[0].client_id, "jupyterhub");
        let mut scopes = toks[0].scopes.clone();
        scopes.sort();
        assert_eq!(
            scopes,
            ["access:servers!server=alice/", "users:activity!user"]
        );
        assert!(toks[0].hashed.starts_with("sha512:1:"));
        let c = client(hub, "jupyterhub-user-alice").await.unwrap();
        assert_eq!(c.redirect_uri, "/user/alice/oauth_callback");
        assert_eq!(c.description, "Server at /user/alice/");
        assert_eq!(c.spawner_id, Some(r.id));
        assert!(
            c.allowed_scopes
                .contains(&"access:servers!server=alice/".to_owned())
        );
        // The secret is the server's API token, a generated one: a single hash round.
        assert!(c.secret.starts_with("sha512:1:"));

        // The environment the spawner got, and the token in it.
        let ctx = spawner.last();
        assert_eq!(ctx.prefix, "/user/alice/");
        assert_eq!(ctx.server.user, "alice");
        let env = &ctx.env;
        let token = env["JUPYTERHUB_API_TOKEN"].clone();
        assert_eq!(env["JPY_API_TOKEN"], token);
        assert!(tokens::verify_token(&c.secret, &token));
        assert_eq!(env["JUPYTERHUB_CLIENT_ID"], "jupyterhub-user-alice");
        assert_eq!(env["JUPYTERHUB_API_URL"], "http://127.0.0.1:8081/hub/api");
        assert_eq!(
            env["JUPYTERHUB_ACTIVITY_URL"],
            "http://127.0.0.1:8081/hub/api/users/alice/activity"
        );
        assert_eq!(env["JUPYTERHUB_SERVICE_PREFIX"], "/user/alice/");
        assert_eq!(env["JUPYTERHUB_USER"], "alice");
        assert_eq!(env["JUPYTERHUB_SERVER_NAME"], "");
        assert_eq!(
            env["JUPYTERHUB_OAUTH_ACCESS_SCOPES"],
            r#"["access:servers!server=alice/", "access:servers!user=alice"]"#
        );
        let server = Persona {
            name: "alice".into(),
            token,
        };
        let (status, me) = hub.get("/user", Some(&server)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["name"], "alice");
        assert_eq!(
            me["scopes"],
            json!([
                "access:servers!server=alice/",
                "read:users:activity!user=alice",
                "read:users:groups!user=alice",
                "read:users:name!user=alice",
                "users:activity!user=alice"
            ])
        );

        // Starting again: already running.
        let (status, body) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["message"], "alice is already running");
        let (status, _, events) = progress(hub, &alice, "/users/alice/server/progress").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["ready"], true);
        assert_eq!(events[0]["url"], "/user/alice/");

        // An OAuth token issued through the server's client goes with it at stop.
        let (hash, user_id) = (
            HashedToken::new("oauthtokenoauthtoken", 1).to_string(),
            r.user_id,
        );
        hub.state
            .db
            .run(move |c| {
                api_tokens::insert(
                    c,
                    &api_tokens::NewApiToken {
                        prefix: "oaut",
                        hashed: &hash,
                        owner: TokenOwner::User(user_id),
                        spawner_id: None,
                        client_id: "jupyterhub-user-alice",
                        session_id: Some("s1"),
                        note: "",
                        scopes: &[],
                        expires_at: None,
                    },
                )
            })
            .await
            .unwrap();
        assert_eq!(
            tokens_of_client(hub, "jupyterhub-user-alice").await.len(),
            1
        );

        let (status, _) = delete_with(hub, "/users/alice/server", &alice, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_cleaned_up(hub, "alice", "", "jupyterhub-user-alice").await;
        assert!(
            tokens_of_client(hub, "jupyterhub-user-alice")
                .await
                .is_empty()
        );
        assert_eq!(spawner.mock.running(), 0);
        let (status, me) = hub.get("/user", Some(&server)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{me}");
        let (_, model) = hub.get("/users/alice/server", Some(&alice)).await;
        assert_eq!(model["stopped"], true);
        assert_eq!(model["ready"], false);
        assert_eq!(model["started"], Value::Null);

        // Stopping what is not running; progress of what is not starting.
        let (status, _) = delete_with(hub, "/users/alice/server", &alice, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _, _) = progress(hub, &alice, "/users/alice/server/progress").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (_, body) = hub.get("/users/alice/server/progress", Some(&alice)).await;
        assert_eq!(body["message"], "alice is not starting...");

        // Starting again issues fresh credentials.
        let (status, _) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_ne!(spawner.last().env["JUPYTERHUB_API_TOKEN"], server.token);
        let (status, _) = hub.get("/user", Some(&server)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
);

servers_test!(
    never_used_default_server_reads_as_stopped,
    "",
    Arc::new(MockSpawner::new()),
    |hub, _sp| async move {
        let bob = hub.user("bob", false).await;
        let (status, model) = hub.get("/users/bob/server", Some(&bob)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(model["stopped"], true);
        assert_eq!(model["url"], "/user/bob/");
        let (status, body) = hub.get("/users/bob/server/progress", Some(&bob)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["message"], "bob is not starting...");
        let (status, _) = delete_with(hub, "/users/bob/server", &bob, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let admin = hub.user("root", true).await;
        let (status, body) = hub.get("/users/nobody/server", Some(&admin)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, json!({"status": 404, "message": null}));
        let (status, _) = post_empty(hub, "/users/nobody/server", &admin).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
);

// === slow spawns, progress ===

servers_test!(
    slow_spawn_answers_202_and_streams_progress,
    "",
    Arc::new(SlowSpawner::new(Duration::from_secs(2))),
    |hub, _sp| async move {
        fast(hub);
        let alice = hub.user("alice", false).await;
        let (status, _) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        // A second start while pending: 202 again, no second spawn.
        let (status, _) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (_, model) = hub.get("/users/alice/server", Some(&alice)).await;
        assert_eq!(model["pending"], "spawn");
        assert_eq!(model["ready"], false);
        assert_eq!(model["stopped"], false);
        assert_eq!(
            row(hub, "alice", "").await.unwrap().phase,
            ServerPhase::Spawning
        );

        let early = {
            let (hub_client, url, token) = (
                hub.client.clone(),
                hub.api_url("/users/alice/server/progress"),
                alice.token.clone(),
            );
            tokio::spawn(async move {
                hub_client
                    .get(url)
                    .header("Authorization", format!("token {token}"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(1200)).await;
        // A late listener gets everything from the start.
        let (status, raw, events) = progress(hub, &alice, "/users/alice/server/progress").await;
        assert_eq!(status, StatusCode::OK);
        assert!(raw.starts_with("\n\n"), "{raw:?}");
        assert_eq!(
            events[0],
            json!({"progress": 0, "message": "Server requested"})
        );
        assert!(
            events
                .iter()
                .any(|e| e["message"] == "Waiting (0/2)" && e["progress"] == 10),
            "{events:?}"
        );
        let last = events.last().unwrap();
        assert_eq!(
            last,
            &json!({
                "progress": 100,
                "ready": true,
                "message": "Server ready at /user/alice/",
                "html_message": "Server ready at <a href=\"/user/alice/\">/user/alice/</a>",
                "url": "/user/alice/",
            })
        );
        assert!(
            events[..events.len() - 1]
                .iter()
                .all(|e| e.get("ready").is_none())
        );
        let early = early.await.unwrap();
        let early_events: Vec<&str> = early
            .split("\n\n")
            .filter_map(|c| c.strip_prefix("data: "))
            .collect();
        assert_eq!(early_events.len(), events.len(), "{early:?}");

        let (_, model) = hub.get("/users/alice/server", Some(&alice)).await;
        assert_eq!(model["ready"], true);
        assert_eq!(model["pending"], Value::Null);
        let (_, _, events) = progress(hub, &alice, "/users/alice/server/progress").await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["ready"], true);
        assert_eq!(hub.state.servers.spawns_pending(), 0);
    }
);

// === failures ===

servers_test!(
    failed_spawn_is_cleaned_up_and_reported,
    "",
    Arc::new(FailingSpawner::default()),
    |hub, _sp| async move {
        let alice = hub.user("alice", false).await;
        let (status, body) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let message = body["message"].as_str().unwrap().to_owned();
        // The spawner's internal error text is logged, not shown.
        assert!(!message.contains("I don't work"), "{message}");
        assert_cleaned_up(hub, "alice", "", "jupyterhub-user-alice").await;
        let (_, model) = hub.get("/users/alice/server", Some(&alice)).await;
        assert_eq!(model["stopped"], true);
        assert_eq!(model["pending"], Value::Null);
        let (status, _, events) = progress(hub, &alice, "/users/alice/server/progress").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            events,
            [
                json!({"progress": 100, "failed": true, "message": format!("Spawn failed: {message}")})
            ]
        );
        assert_eq!(hub.state.servers.spawns_pending(), 0);
        // A new attempt is allowed (and fails again).
        let (status, _) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
);

servers_test!(
    spawner_refusals_keep_their_status_and_message,
    "",
    Arc::new(FailingSpawner {
        refusal: Some(("Quota exceeded for alice".into(), 403)),
    }),
    |hub, _sp| async move {
        let alice = hub.user("alice", false).await;
        let (status, body) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["message"], "Quota exceeded for alice");
        let (_, _, events) = progress(hub, &alice, "/users/alice/server/progress").await;
        assert_eq!(
            events[0]["message"],
            "Spawn failed: Quota exceeded for alice"
        );
        assert_cleaned_up(hub, "alice", "", "jupyterhub-user-alice").await;
    }
);

servers_test!(
    server_that_never_answers_times_out,
    "[spawner]\nhttp_timeout = 1\n",
    Arc::new(Unreachable {
        exits: false,
        stops: Mutex::new(0),
    }),
    |hub, spawner| async move {
        fast(hub);
        let alice = hub.user("alice", false).await;
        let (status, _) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (_, _, events) = progress(hub, &alice, "/users/alice/server/progress").await;
        let last = events.last().unwrap();
        assert_eq!(last["failed"], true);
        let message = last["message"].as_str().unwrap();
        assert!(
            message.starts_with("Spawn failed: Server at http://127.0.0.1:")
                && message.ends_with("/user/alice/ didn't respond in 1 seconds"),
            "{message}"
        );
        eventually(Duration::from_secs(5), "cleanup", || async {
            row(hub, "alice", "").await.unwrap().phase == ServerPhase::Stopped
        })
        .await;
        assert_cleaned_up(hub, "alice", "", "jupyterhub-user-alice").await;
        // Stopped with the state start returned.
        assert_eq!(*spawner.stops.lock().unwrap(), 1);
    }
);

servers_test!(
    server_that_exits_while_starting_fails_fast,
    "",
    Arc::new(Unreachable {
        exits: true,
        stops: Mutex::new(0),
    }),
    |hub, _sp| async move {
        let alice = hub.user("alice", false).await;
        let (status, body) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["message"], "Server stopped while starting [status=3]");
        assert_cleaned_up(hub, "alice", "", "jupyterhub-user-alice").await;
    }
);

servers_test!(
    start_timeout_fails_the_spawn,
    "[spawner]\nstart_timeout = 0.5\n",
    Arc::new(NeverSpawner),
    |hub, _sp| async move {
        fast(hub);
        let alice = hub.user("alice", false).await;
        let (status, _) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (_, _, events) = progress(hub, &alice, "/users/alice/server/progress").await;
        assert_eq!(
            events.last().unwrap()["message"],
            "Spawn failed: Server did not start within 0.5 seconds"
        );
        eventually(Duration::from_secs(5), "cleanup", || async {
            hub.state.servers.spawns_pending() == 0
                && row(hub, "alice", "").await.unwrap().phase == ServerPhase::Stopped
        })
        .await;
        assert_cleaned_up(hub, "alice", "", "jupyterhub-user-alice").await;
    }
);

// === cancel ===

servers_test!(
    stop_cancels_a_pending_spawn,
    "",
    Arc::new(NeverSpawner),
    |hub, _sp| async move {
        fast(hub);
        let alice = hub.user("alice", false).await;
        let (status, _) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let r = row(hub, "alice", "").await.unwrap();
        assert_eq!(r.phase, ServerPhase::Spawning);
        assert_eq!(server_tokens(hub, r.id).await.len(), 1);
        assert!(client(hub, "jupyterhub-user-alice").await.is_some());
        let listener = {
            let (c, url, token) = (
                hub.client.clone(),
                hub.api_url("/users/alice/server/progress"),
                alice.token.clone(),
            );
            tokio::spawn(async move {
                c.get(url)
                    .header("Authorization", format!("token {token}"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, _) = delete_with(hub, "/users/alice/server", &alice, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_cleaned_up(hub, "alice", "", "jupyterhub-user-alice").await;
        let (_, model) = hub.get("/users/alice/server", Some(&alice)).await;
        assert_eq!(model["pending"], Value::Null);
        assert_eq!(model["stopped"], true);
        let text = tokio::time::timeout(Duration::from_secs(5), listener)
            .await
            .unwrap()
            .unwrap();
        assert!(text.contains(r#""message":"Server requested""#), "{text}");
        assert!(
            text.trim_end()
                .ends_with(r#"data: {"progress":100,"failed":true,"message":"Spawn cancelled"}"#),
            "{text}"
        );
        let (_, _, events) = progress(hub, &alice, "/users/alice/server/progress").await;
        assert_eq!(events[0]["message"], "Spawn cancelled");
        assert_eq!(hub.state.servers.spawns_pending(), 0);
        // It can be started again.
        let (status, _) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (status, _) = delete_with(hub, "/users/alice/server", &alice, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
);

// === limits ===

servers_test!(
    concurrent_spawn_limit_throttles_with_retry_after,
    "[hub]\nconcurrent_spawn_limit = 1\n",
    Arc::new(NeverSpawner),
    |hub, _sp| async move {
        fast(hub);
        let alice = hub.user("alice", false).await;
        let bob = hub.user("bob", false).await;
        let (status, _) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (status, headers, body) = hub
            .call(Method::POST, "/users/bob/server", Some(&bob), None)
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let retry: u32 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((30..=60).contains(&retry), "{retry}");
        let shown = retry.div_ceil(10) * 10;
        assert_eq!(
            body["message"],
            format!("Too many users trying to log in right now. Try again in {shown} seconds.")
        );
        // Bob's refused spawn left nothing behind.
        let r = row(hub, "bob", "").await.unwrap();
        assert_eq!(r.phase, ServerPhase::Stopped);
        assert!(server_tokens(hub, r.id).await.is_empty());
        // Once alice's spawn is gone, bob may spawn.
        let (status, _) = delete_with(hub, "/users/alice/server", &alice, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(hub.state.servers.spawns_pending(), 0);
        let (status, _) = post_empty(hub, "/users/bob/server", &bob).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (status, _) = delete_with(hub, "/users/bob/server", &bob, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(hub.state.servers.spawns_pending(), 0);
    }
);

servers_test!(
    active_server_limit,
    "[hub]\nactive_server_limit = 1\n",
    Arc::new(MockSpawner::new()),
    |hub, _sp| async move {
        let alice = hub.user("alice", false).await;
        let bob = hub.user("bob", false).await;
        let (status, _) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = post_empty(hub, "/users/bob/server", &bob).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            body["message"],
            "Active user limit exceeded. Try again in a few minutes."
        );
        let (status, _) = delete_with(hub, "/users/alice/server", &alice, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = post_empty(hub, "/users/bob/server", &bob).await;
        assert_eq!(status, StatusCode::CREATED);
    }
);

// === the poller ===

servers_test!(
    poller_cleans_up_a_server_that_died,
    "[spawner]\npoll_interval = 0.2\n",
    Arc::new(MockSpawner::new()),
    |hub, mock| async move {
        let alice = hub.user("alice", false).await;
        let bob = hub.user("bob", false).await;
        for who in [&alice, &bob] {
            let (status, _) = post_empty(hub, &format!("/users/{}/server", who.name), who).await;
            assert_eq!(status, StatusCode::CREATED);
        }
        let poller = hub::spawn::spawn_poller(&hub.state);
        // Kill alice's server behind the hub's back.
        let r = row(hub, "alice", "").await.unwrap();
        let server = ServerRef {
            user: "alice".into(),
            name: String::new(),
        };
        mock.stop(&server, &Value::Object(r.state.clone()), true)
            .await
            .unwrap();
        eventually(Duration::from_secs(5), "the poller notices", || async {
            row(hub, "alice", "").await.unwrap().phase == ServerPhase::Stopped
        })
        .await;
        assert_cleaned_up(hub, "alice", "", "jupyterhub-user-alice").await;
        // Bob's server is untouched.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let b = row(hub, "bob", "").await.unwrap();
        assert_eq!(b.phase, ServerPhase::Running);
        assert_eq!(server_tokens(hub, b.id).await.len(), 1);
        assert_eq!(mock.running(), 1);
        // A fresh start works.
        let (status, _) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::CREATED);
        // Shutdown ends the poller.
        hub.state
            .shutdown
            .request(hub::state::ShutdownRequest::default());
        tokio::time::timeout(Duration::from_secs(2), poller)
            .await
            .unwrap()
            .unwrap();
    }
);

servers_test!(
    starting_a_server_that_died_cleans_it_up_first,
    "",
    Arc::new(MockSpawner::new()),
    |hub, mock| async move {
        let alice = hub.user("alice", false).await;
        let (status, _) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::CREATED);
        let r = row(hub, "alice", "").await.unwrap();
        let server = ServerRef {
            user: "alice".into(),
            name: String::new(),
        };
        mock.stop(&server, &Value::Object(r.state.clone()), true)
            .await
            .unwrap();
        let (status, _) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::CREATED);
        let again = row(hub, "alice", "").await.unwrap();
        assert_eq!(again.phase, ServerPhase::Running);
        assert_ne!(again.state, r.state);
        assert_eq!(server_tokens(hub, again.id).await.len(), 1);
    }
);

// === restart recovery ===

async fn set_phase(hub: &TestHub, user: &str, from: ServerPhase, to: ServerPhase) {
    let user = user.to_owned();
    let changed = hub
        .state
        .db
        .run(move |c| {
            let user = users::find_by_name(c, &user)?.unwrap();
            let row = spawners::find_or_insert(c, user.id, "")?;
            spawners::transition(c, row.id, &[from], to, hub::db::now())
        })
        .await
        .unwrap();
    assert!(changed);
}

servers_test!(
    restart_adopts_live_servers_and_cleans_up_the_rest,
    "",
    Arc::new(MockSpawner::new()),
    |hub, mock| async move {
        for name in ["alice", "bob", "carol", "dave", "erin"] {
            hub.user(name, false).await;
        }
        for name in ["alice", "bob", "erin"] {
            let p = hub.user(name, false).await;
            let (status, _) = post_empty(hub, &format!("/users/{name}/server"), &p).await;
            assert_eq!(status, StatusCode::CREATED);
        }
        // bob's server died while the hub was down.
        let b = row(hub, "bob", "").await.unwrap();
        let bob_server = ServerRef {
            user: "bob".into(),
            name: String::new(),
        };
        mock.stop(&bob_server, &Value::Object(b.state.clone()), true)
            .await
            .unwrap();
        // carol's spawn was interrupted before the spawner answered; dave's stop was
        // interrupted; erin's spawn was interrupted after her server came up.
        set_phase(hub, "carol", ServerPhase::Stopped, ServerPhase::Spawning).await;
        set_phase(hub, "dave", ServerPhase::Stopped, ServerPhase::Stopping).await;
        set_phase(hub, "erin", ServerPhase::Running, ServerPhase::Spawning).await;

        // A second hub process on the same database (and the same servers).
        let dynamic: Arc<dyn Spawner> = mock.clone();
        let second = AppState::new(
            hub.state.config.clone(),
            hub.state.db.clone(),
            CookieSecret::generate(),
            dynamic,
            Arc::new(DummyAuthenticator::default()),
            None,
        )
        .unwrap();
        let report = Servers::resume(&second).await.unwrap();
        assert_eq!(report.adopted, 2, "{report:?}");
        assert_eq!(report.cleaned_up, 2, "{report:?}");
        assert_eq!(report.stopped, 1, "{report:?}");

        let a = row(hub, "alice", "").await.unwrap();
        assert_eq!(a.phase, ServerPhase::Running);
        assert_eq!(server_tokens(hub, a.id).await.len(), 1);
        assert!(client(hub, "jupyterhub-user-alice").await.is_some());
        assert_eq!(
            row(hub, "erin", "").await.unwrap().phase,
            ServerPhase::Running
        );
        assert_cleaned_up(hub, "bob", "", "jupyterhub-user-bob").await;
        assert_cleaned_up(hub, "carol", "", "jupyterhub-user-carol").await;
        assert_cleaned_up(hub, "dave", "", "jupyterhub-user-dave").await;
        assert_eq!(mock.running(), 2);
        assert!(second.servers.current(a.id).is_none());

        // A restart with servers that all died: everything is cleaned up.
        let fresh: Arc<dyn Spawner> = Arc::new(MockSpawner::new());
        let third = AppState::new(
            hub.state.config.clone(),
            hub.state.db.clone(),
            CookieSecret::generate(),
            fresh,
            Arc::new(DummyAuthenticator::default()),
            None,
        )
        .unwrap();
        let report = Servers::resume(&third).await.unwrap();
        assert_eq!(report.cleaned_up, 2, "{report:?}");
        assert_cleaned_up(hub, "alice", "", "jupyterhub-user-alice").await;
        assert_cleaned_up(hub, "erin", "", "jupyterhub-user-erin").await;
    }
);

// === named servers ===

servers_test!(
    named_servers,
    "[hub]\nallow_named_servers = true\nnamed_server_limit_per_user = 2\n",
    Arc::new(RecordingSpawner::default()),
    |hub, spawner| async move {
        let alice = hub.user("alice", false).await;
        // PUT creates without starting.
        let (status, _, model) = hub
            .call(
                Method::PUT,
                "/users/alice/servers/gpu",
                Some(&alice),
                Some(json!({"display_name": "My GPU", "user_options": {"size": "xl"}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{model}");
        assert_eq!(model["name"], "gpu");
        assert_eq!(model["display_name"], "My GPU");
        assert_eq!(model["full_name"], "alice/gpu");
        assert_eq!(model["url"], "/user/alice/gpu/");
        assert_eq!(
            model["progress_url"],
            "/hub/api/users/alice/servers/gpu/progress"
        );
        assert_eq!(model["stopped"], true);
        assert_eq!(model["user_options"], json!({"size": "xl"}));
        let (status, _, _) = hub
            .call(Method::PUT, "/users/alice/servers/gpu", Some(&alice), None)
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _, _) = hub
            .call(Method::PUT, "/users/alice/servers/", Some(&alice), None)
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        for bad in ["Bad", "1gpu", "a--b", "gpu-", "a_b"] {
            let (status, _, body) = hub
                .call(
                    Method::PUT,
                    &format!("/users/alice/servers/{bad}"),
                    Some(&alice),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        }
        let (status, body) = post_empty(hub, "/users/alice/servers/Bad_Name", &alice).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

        // Start the named server: saved options are used.
        let (status, _) = post_empty(hub, "/users/alice/servers/gpu", &alice).await;
        assert_eq!(status, StatusCode::CREATED);
        let ctx = spawner.last();
        assert_eq!(ctx.prefix, "/user/alice/gpu/");
        assert_eq!(ctx.server.name, "gpu");
        assert_eq!(ctx.user_options, json!({"size": "xl"}));
        assert_eq!(ctx.env["JUPYTERHUB_SERVER_NAME"], "gpu");
        assert_eq!(ctx.env["JUPYTERHUB_CLIENT_ID"], "jupyterhub-user-alice-gpu");
        assert_eq!(
            ctx.env["JUPYTERHUB_OAUTH_CALLBACK_URL"],
            "/user/alice/gpu/oauth_callback"
        );
        let c = client(hub, "jupyterhub-user-alice-gpu").await.unwrap();
        assert_eq!(c.description, "Server at /user/alice/gpu/");
        let r = row(hub, "alice", "gpu").await.unwrap();
        let toks = server_tokens(hub, r.id).await;
        let mut scopes = toks[0].scopes.clone();
        scopes.sort();
        assert_eq!(
            scopes,
            ["access:servers!server=alice/gpu", "users:activity!user"]
        );
        let (_, model) = hub.get("/users/alice/servers/gpu", Some(&alice)).await;
        assert_eq!(model["ready"], true);
        let (status, body) = post_empty(hub, "/users/alice/servers/gpu", &alice).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["message"], "alice:gpu is already running");
        let (_, _, events) = progress(hub, &alice, "/users/alice/servers/gpu/progress").await;
        assert_eq!(events[0]["url"], "/user/alice/gpu/");

        // POST creates a missing named server, up to the limit.
        let (status, _) = post_empty(hub, "/users/alice/servers/second", &alice).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = post_empty(hub, "/users/alice/servers/third", &alice).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("User alice already has the maximum of 2 named servers."),
            "{body}"
        );
        // The default server does not count, through either path.
        let (status, _) = post_empty(hub, "/users/alice/servers/", &alice).await;
        assert_eq!(status, StatusCode::CREATED);
        let (_, model) = hub.get("/users/alice/servers/", Some(&alice)).await;
        assert_eq!(model["name"], "");
        assert_eq!(model["ready"], true);
        assert_eq!(spawner.mock.running(), 3);

        // Unknown named servers.
        let (status, body) = hub.get("/users/alice/servers/nope", Some(&alice)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["message"], "alice has no server named 'nope'");
        let (status, _) = delete_with(hub, "/users/alice/servers/nope", &alice, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = hub
            .get("/users/alice/servers/nope/progress", Some(&alice))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Stop and remove.
        let (status, body) = delete_with(
            hub,
            "/users/alice/servers/",
            &alice,
            Some(json!({"remove": true})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["message"], "Cannot delete the default server");
        let (status, _) = delete_with(
            hub,
            "/users/alice/servers/gpu",
            &alice,
            Some(json!({"remove": true})),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(row(hub, "alice", "gpu").await.is_none());
        assert!(client(hub, "jupyterhub-user-alice-gpu").await.is_none());
        assert!(server_tokens(hub, r.id).await.is_empty());
        let (status, _) = hub.get("/users/alice/servers/gpu", Some(&alice)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Stop without removing keeps the server.
        let (status, _) = delete_with(hub, "/users/alice/servers/second", &alice, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, model) = hub.get("/users/alice/servers/second", Some(&alice)).await;
        assert_eq!(model["stopped"], true);
        // Removing a stopped server.
        let (status, _) = delete_with(
            hub,
            "/users/alice/servers/second",
            &alice,
            Some(json!({"remove": true})),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(row(hub, "alice", "second").await.is_none());
        // Room for new ones again.
        let (status, _) = post_empty(hub, "/users/alice/servers/third", &alice).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(spawner.mock.running(), 2);
    }
);

servers_test!(
    named_servers_disabled,
    "",
    Arc::new(MockSpawner::new()),
    |hub, _sp| async move {
        let alice = hub.user("alice", false).await;
        let (status, body) = post_empty(hub, "/users/alice/servers/gpu", &alice).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["message"], "Named servers are not enabled.");
        let (status, _, _) = hub
            .call(Method::PUT, "/users/alice/servers/gpu", Some(&alice), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = delete_with(hub, "/users/alice/servers/gpu", &alice, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // The admin UI's form of the default server still works.
        let (status, _) = post_empty(hub, "/users/alice/servers/", &alice).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = delete_with(hub, "/users/alice/servers/", &alice, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
);

servers_test!(
    patch_servers,
    "[hub]\nallow_named_servers = true\n",
    Arc::new(MockSpawner::new()),
    |hub, _sp| async move {
        let alice = hub.user("alice", false).await;
        let patch = |path: &'static str, body: Value| {
            let alice = alice.clone();
            async move {
                let (s, _, v) = hub
                    .call(Method::PATCH, path, Some(&alice), Some(body))
                    .await;
                (s, v)
            }
        };
        let (status, _, _) = hub
            .call(Method::PUT, "/users/alice/servers/one", Some(&alice), None)
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _, _) = hub
            .call(Method::PUT, "/users/alice/servers/two", Some(&alice), None)
            .await;
        assert_eq!(status, StatusCode::CREATED);

        let (status, model) = patch(
            "/users/alice/servers/one",
            json!({"name": "uno", "display_name": "Number One", "user_options": {"a": 1}}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{model}");
        assert_eq!(model["name"], "uno");
        assert_eq!(model["display_name"], "Number One");
        assert_eq!(model["user_options"], json!({"a": 1}));
        assert_eq!(model["url"], "/user/alice/uno/");
        assert!(row(hub, "alice", "one").await.is_none());
        let (status, _) = patch("/users/alice/servers/one", json!({"name": "x"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        for (body, expected) in [
            (json!({"name": "two"}), StatusCode::CONFLICT),
            (json!({"name": "Bad"}), StatusCode::BAD_REQUEST),
            (json!({"colour": "red"}), StatusCode::BAD_REQUEST),
            (json!({}), StatusCode::BAD_REQUEST),
            (json!({"user_options": [1]}), StatusCode::BAD_REQUEST),
            (json!({"display_name": "  x"}), StatusCode::BAD_REQUEST),
            (json!({"name": 3}), StatusCode::BAD_REQUEST),
            (json!([1, 2]), StatusCode::BAD_REQUEST),
        ] {
            let (status, reply) = patch("/users/alice/servers/uno", body.clone()).await;
            assert_eq!(status, expected, "{body} → {reply}");
        }
        let (_, reply) = patch(
            "/users/alice/servers/uno",
            json!({"colour": "red", "name": "x"}),
        )
        .await;
        assert!(
            reply["message"].as_str().unwrap().contains("colour"),
            "{reply}"
        );
        // Renaming to the same name is a no-op.
        let (status, _) = patch("/users/alice/servers/uno", json!({"name": "uno"})).await;
        assert_eq!(status, StatusCode::OK);

        // The default server: display name and options yes, renaming no.
        let (status, model) = patch(
            "/users/alice/servers/",
            json!({"display_name": "Main", "user_options": {"b": 2}}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{model}");
        assert_eq!(model["display_name"], "Main");
        let (status, _) = patch("/users/alice/servers/", json!({"name": "main"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // Not while active.
        let (status, _) = post_empty(hub, "/users/alice/servers/uno", &alice).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, reply) = patch("/users/alice/servers/uno", json!({"display_name": "x"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            reply["message"]
                .as_str()
                .unwrap()
                .starts_with("alice:uno is active")
        );
        // A renamed server gets its client id from its new name.
        assert!(client(hub, "jupyterhub-user-alice-uno").await.is_some());
    }
);

// === request bodies ===

servers_test!(
    start_request_bodies,
    "",
    Arc::new(RecordingSpawner::default()),
    |hub, spawner| async move {
        let alice = hub.user("alice", false).await;
        let cycle = |body: Option<Value>| {
            let alice = alice.clone();
            async move {
                let (status, _, reply) = hub
                    .call(Method::POST, "/users/alice/server", Some(&alice), body)
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{reply}");
                let (status, _) = delete_with(hub, "/users/alice/server", &alice, None).await;
                assert_eq!(status, StatusCode::NO_CONTENT);
            }
        };
        // 5.x: the body is the options; they are saved.
        cycle(Some(json!({"profile": "small"}))).await;
        assert_eq!(spawner.last().user_options, json!({"profile": "small"}));
        let (_, model) = hub.get("/users/alice/server", Some(&alice)).await;
        assert_eq!(model["user_options"], json!({"profile": "small"}));
        // No body: the saved options.
        cycle(None).await;
        assert_eq!(spawner.last().user_options, json!({"profile": "small"}));
        // 6.x.
        cycle(Some(
            json!({"user_options": {"profile": "big"}, "display_name": "Big one"}),
        ))
        .await;
        assert_eq!(spawner.last().user_options, json!({"profile": "big"}));
        let (_, model) = hub.get("/users/alice/server", Some(&alice)).await;
        assert_eq!(model["display_name"], "Big one");
        cycle(Some(json!({"user_options": null}))).await;
        assert_eq!(spawner.last().user_options, json!({"profile": "big"}));
        // Bad bodies.
        for body in [
            json!([1]),
            json!({"user_options": "x"}),
            json!({"display_name": 5}),
        ] {
            let (status, _, _) = hub
                .call(
                    Method::POST,
                    "/users/alice/server",
                    Some(&alice),
                    Some(body),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
        }
        let resp = hub
            .client
            .post(hub.api_url("/users/alice/server"))
            .header("Authorization", format!("token {}", alice.token))
            .header("Content-Type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
);

// === scopes ===

servers_test!(
    server_scopes,
    concat!(
        "[[roles]]\nname = \"watcher\"\nscopes = [\"read:servers!user=alice\"]\nusers = [\"carl\"]\n",
        "[[roles]]\nname = \"starter\"\nscopes = [\"start:servers!server=alice/\"]\nusers = [\"dora\"]\n",
        "[[roles]]\nname = \"stopper\"\nscopes = [\"delete:servers!user=alice\"]\nusers = [\"eve\"]\n",
        "[[roles]]\nname = \"legacy\"\nscopes = [\"servers!user=alice\"]\nusers = [\"fred\"]\n",
    ),
    Arc::new(MockSpawner::new()),
    |hub, _sp| async move {
        let alice = hub.user("alice", false).await;
        let bob = hub.user("bob", false).await;
        let carl = hub.user("carl", false).await;
        let dora = hub.user("dora", false).await;
        let eve = hub.user("eve", false).await;
        let fred = hub.user("fred", false).await;
        hub.user("admin", true).await;

        let (status, _) = hub.get("/users/alice/server", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = hub.get("/users/alice/server", Some(&bob)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body["message"],
            "No access to resources or resources not found"
        );
        let (status, _) = post_empty(hub, "/users/alice/server", &bob).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (status, _) = hub.get("/users/alice/server", Some(&carl)).await;
        assert_eq!(status, StatusCode::OK);
        // carl starts his own servers (`self`), not alice's: 404.
        let (status, _) = post_empty(hub, "/users/alice/server", &carl).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // A token with nothing but the read scope: 403.
        let reader = hub
            .user_with_scopes("carl", false, &["read:servers!user=alice"])
            .await;
        let (status, _) = hub.get("/users/alice/server", Some(&reader)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = post_empty(hub, "/users/alice/server", &reader).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body["message"],
            "Action is not authorized with current scopes; requires any of [start:servers]"
        );
        let (status, _) = delete_with(hub, "/users/alice/server", &reader, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let (status, _) = post_empty(hub, "/users/alice/server", &dora).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = delete_with(hub, "/users/alice/server", &dora, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // `…/servers/` is the default server too, so dora's `!server=alice/` covers it.
        let (status, body) = post_empty(hub, "/users/alice/servers/", &dora).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["message"], "alice is already running");
        let (status, _) = hub.get("/users/alice/server/progress", Some(&carl)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = delete_with(hub, "/users/alice/server", &eve, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        // 5.x clients hold `servers`, which implies `start:servers`.
        let (status, _) = post_empty(hub, "/users/alice/server", &fred).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = delete_with(hub, "/users/alice/server", &fred, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = post_empty(hub, "/users/alice/server", &alice).await;
        assert_eq!(status, StatusCode::CREATED);
    }
);

// JupyterHub counts a start as activity of the server and of its owner, so a server that
// never reports is judged (by the culler) from its start, not from some older time.
hub_test!(a_start_is_activity, |hub| async move {
    let alice = hub.user("alice", false).await;
    let before = TestHub::now();
    let (status, body) = hub
        .post("/users/alice/server", Some(&alice), serde_json::json!({}))
        .await;
    assert!(status.is_success(), "{status} {body}");
    let (_, model) = hub.get("/users/alice", Some(&alice)).await;
    let server = &model["servers"][""];
    assert_eq!(server["last_activity"], server["started"], "{model}");
    let user_activity = chrono::DateTime::parse_from_rfc3339(
        model["last_activity"].as_str().expect("user last_activity"),
    )
    .expect("timestamp");
    assert!(
        user_activity >= before - chrono::TimeDelta::seconds(1),
        "{model}"
    );
});
