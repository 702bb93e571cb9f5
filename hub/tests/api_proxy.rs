//! Routes of users' servers in a real `chp-proxy`, `/proxy` (GET, POST, PATCH) and
//! `/shutdown`; each on SQLite and PostgreSQL.
//!
//! Needs the `chp-proxy` binary: `cargo build -p chp-proxy` (or `CHP_PROXY_BIN`).

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::large_futures,
    missing_docs
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, TestHub};
use hub::cookie_secret::CookieSecret;
use hub::db::models::spawners::{self, ServerPhase};
use hub::db::models::users;
use hub::proxy::ProxyRoute;
use hub::spawn::Servers;
use hub::state::AppState;
use hub_plugin::test_util::{DummyAuthenticator, MockSpawner};
use hub_plugin::{ServerRef, Spawner};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Defines `name::sqlite` and `name::postgres` with a `MockSpawner` (bound to `$mock`) and,
/// when `proxy` is true, a real `chp-proxy`.
macro_rules! proxy_test {
    ($name:ident, $config:expr, proxy = $proxy:expr, |$hub:ident, $mock:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $crate::each_backend!(run);

            async fn run(backend: Backend) {
                let mock = Arc::new(MockSpawner::new());
                let dynamic: Arc<dyn Spawner> = mock.clone();
                let owned = if $proxy {
                    TestHub::start_with_proxy(backend, $config, Some(dynamic)).await
                } else {
                    TestHub::start_with(backend, $config, Some(dynamic)).await
                };
                {
                    let $hub = &owned;
                    #[allow(unused_variables)]
                    let $mock = mock;
                    $body.await;
                }
                owned.stop().await;
            }
        }
    };
}

async fn routes(hub: &TestHub) -> std::collections::BTreeMap<String, ProxyRoute> {
    hub.proxy
        .as_ref()
        .unwrap()
        .client()
        .get_all_routes()
        .await
        .unwrap()
}

async fn origin_of(hub: &TestHub, user: &str) -> String {
    let user = user.to_owned();
    hub.state
        .db
        .run(move |c| {
            let user = users::find_by_name(c, &user)?.unwrap();
            spawners::find(c, user.id, "")
        })
        .await
        .unwrap()
        .unwrap()
        .server()
        .unwrap()
        .origin()
}

async fn phase(hub: &TestHub, user: &str) -> ServerPhase {
    let user = user.to_owned();
    hub.state
        .db
        .run(move |c| {
            let user = users::find_by_name(c, &user)?.unwrap();
            spawners::find(c, user.id, "")
        })
        .await
        .unwrap()
        .unwrap()
        .phase
}

async fn start(hub: &TestHub, who: &common::Persona) {
    let (status, _, body) = hub
        .call(
            Method::POST,
            &format!("/users/{}/server", who.name),
            Some(who),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

proxy_test!(
    routes_follow_servers,
    "",
    proxy = true,
    |hub, mock| async move {
        let admin = hub.user("admin", true).await;
        let alice = hub.user("alice", false).await;
        // POST /proxy: reconcile now (adds the hub route).
        let (status, headers, body) = hub.call(Method::POST, "/proxy", Some(&admin), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, Value::Null);
        assert_eq!(headers["content-type"], "text/plain");
        let table = routes(hub).await;
        let hub_route = &table["/"];
        assert_eq!(hub_route.target, "http://127.0.0.1:8081");
        assert_eq!(hub_route.data.hub, Some(true));

        start(hub, &alice).await;
        let target = origin_of(hub, "alice").await;
        let table = routes(hub).await;
        let route = &table["/user/alice/"];
        assert_eq!(route.target, target);
        assert_eq!(route.data.user.as_deref(), Some("alice"));
        assert_eq!(route.data.server_name.as_deref(), Some(""));
        assert!(route.jupyterhub);
        // Requests through the proxy reach alice's server.
        let proxy = hub.proxy.as_ref().unwrap();
        let reply: Value = reqwest::get(format!("http://127.0.0.1:{}/user/alice/api", proxy.port))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(reply["user"], "alice");

        // GET /proxy: JupyterHub's shape, marker stripped.
        let (status, body) = hub.get("/proxy", Some(&admin)).await;
        assert_eq!(status, StatusCode::OK);
        let listed = &body["/user/alice/"];
        assert_eq!(listed["routespec"], "/user/alice/");
        assert_eq!(listed["target"], json!(target));
        assert_eq!(listed["data"]["user"], "alice");
        assert_eq!(listed["data"]["server_name"], "");
        assert!(listed["data"]["last_activity"].is_string());
        assert!(listed["data"].get("jupyterhub").is_none());
        assert!(listed["data"].get("target").is_none());
        assert_eq!(
            body["/"]["data"],
            json!({"hub": true, "last_activity": body["/"]["data"]["last_activity"]})
        );
        // Paginated: the items are a dict.
        let resp = hub
            .client
            .get(hub.api_url("/proxy?limit=1"))
            .header("Authorization", format!("token {}", admin.token))
            .header("Accept", "application/jupyterhub-pagination+json")
            .send()
            .await
            .unwrap();
        let page: Value = resp.json().await.unwrap();
        assert_eq!(page["items"].as_object().unwrap().len(), 1);
        assert!(page["items"].get("/").is_some());
        assert_eq!(page["_pagination"]["total"], 2);
        assert_eq!(page["_pagination"]["next"]["offset"], 1);

        // Stop: the route goes first.
        let (status, _) = hub.delete("/users/alice/server", Some(&alice)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let table = routes(hub).await;
        assert!(!table.contains_key("/user/alice/"), "{table:?}");
        assert!(table.contains_key("/"));
        assert_eq!(mock.running(), 0);

        // Only `proxy` holders.
        let (status, _) = hub.get("/proxy", Some(&alice)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, _) = hub.call(Method::POST, "/proxy", Some(&alice), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
);

proxy_test!(
    sync_repairs_and_patch_switches_the_api,
    "",
    proxy = true,
    |hub, mock| async move {
        let admin = hub.user("admin", true).await;
        let alice = hub.user("alice", false).await;
        start(hub, &alice).await;
        let client = hub.proxy.as_ref().unwrap().client();
        // Lost route, stale route: POST /proxy repairs both.
        client.delete_route("/user/alice/").await.unwrap();
        let stale =
            hub::proxy::DesiredRoute::user("/user/ghost/", "http://127.0.0.1:9", "ghost", "");
        client
            .add_route(&stale.routespec, &stale.target, &stale.data())
            .await
            .unwrap();
        let (status, _, _) = hub.call(Method::POST, "/proxy", Some(&admin), None).await;
        assert_eq!(status, StatusCode::OK);
        let table = routes(hub).await;
        assert!(table.contains_key("/user/alice/"));
        assert!(!table.contains_key("/user/ghost/"));
        assert!(table.contains_key("/"));
        // desired_routes: the hub, alice.
        let desired = hub::spawn::desired_routes(&hub.state).await.unwrap();
        assert_eq!(desired.len(), 2, "{desired:?}");

        // PATCH: bad bodies.
        for body in [
            json!([1]),
            json!({"api_url": 5}),
            json!({"api_url": "ftp://x"}),
            json!({"auth_token": 1}),
        ] {
            let (status, _, reply) = hub
                .call(Method::PATCH, "/proxy", Some(&admin), Some(body.clone()))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        }
        let (status, _, _) = hub.call(Method::PATCH, "/proxy", Some(&admin), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // A wrong token: the sync that follows fails, and says so.
        let (status, _, reply) = hub
            .call(
                Method::PATCH,
                "/proxy",
                Some(&admin),
                Some(json!({"auth_token": "wrong-token-wrong"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{reply}");
        let (status, _) = hub.get("/proxy", Some(&admin)).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        // Back to the right settings.
        let proxy = hub.proxy.as_ref().unwrap();
        let (status, _, reply) = hub
            .call(
                Method::PATCH,
                "/proxy",
                Some(&admin),
                Some(json!({
                    "api_url": format!("http://127.0.0.1:{}", proxy.api_port),
                    "auth_token": proxy.token,
                })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let (status, body) = hub.get("/proxy", Some(&admin)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.get("/user/alice/").is_some());
        assert_eq!(mock.running(), 1);
    }
);

proxy_test!(
    dead_servers_lose_their_route,
    "[spawner]\npoll_interval = 0.2\n",
    proxy = true,
    |hub, mock| async move {
        let alice = hub.user("alice", false).await;
        start(hub, &alice).await;
        assert!(routes(hub).await.contains_key("/user/alice/"));
        let poller = hub::spawn::spawn_poller(&hub.state);
        let state = hub
            .state
            .db
            .run(|c| {
                let user = users::find_by_name(c, "alice")?.unwrap();
                spawners::find(c, user.id, "")
            })
            .await
            .unwrap()
            .unwrap()
            .state;
        let server = ServerRef {
            user: "alice".into(),
            name: String::new(),
        };
        mock.stop(&server, &Value::Object(state), true)
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while phase(hub, "alice").await != ServerPhase::Stopped {
            assert!(
                tokio::time::Instant::now() < deadline,
                "poller did not notice"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!routes(hub).await.contains_key("/user/alice/"));
        poller.abort();
    }
);

proxy_test!(
    resume_restores_routes,
    "",
    proxy = true,
    |hub, mock| async move {
        let alice = hub.user("alice", false).await;
        let bob = hub.user("bob", false).await;
        start(hub, &alice).await;
        start(hub, &bob).await;
        // The proxy lost alice's route; bob's server died.
        let client = hub.proxy.as_ref().unwrap().client();
        client.delete_route("/user/alice/").await.unwrap();
        let bob_state = hub
            .state
            .db
            .run(|c| {
                let user = users::find_by_name(c, "bob")?.unwrap();
                spawners::find(c, user.id, "")
            })
            .await
            .unwrap()
            .unwrap()
            .state;
        mock.stop(
            &ServerRef {
                user: "bob".into(),
                name: String::new(),
            },
            &Value::Object(bob_state),
            true,
        )
        .await
        .unwrap();
        let dynamic: Arc<dyn Spawner> = mock.clone();
        let second = AppState::new(
            hub.state.config.clone(),
            hub.state.db.clone(),
            CookieSecret::generate(),
            dynamic,
            Arc::new(DummyAuthenticator::default()),
            Some(hub.proxy.as_ref().unwrap().control()),
        )
        .unwrap();
        let report = Servers::resume(&second).await.unwrap();
        assert_eq!((report.adopted, report.cleaned_up), (1, 1), "{report:?}");
        let table = routes(hub).await;
        assert_eq!(table["/user/alice/"].target, origin_of(hub, "alice").await);
        assert!(!table.contains_key("/user/bob/"));
        assert_eq!(phase(hub, "bob").await, ServerPhase::Stopped);
    }
);

proxy_test!(
    without_a_proxy_the_proxy_api_says_so,
    "",
    proxy = false,
    |hub, _mock| async move {
        let admin = hub.user("admin", true).await;
        let (status, body) = hub.get("/proxy", Some(&admin)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("without a proxy")
        );
        let (status, _, _) = hub.call(Method::POST, "/proxy", Some(&admin), None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        // Servers start fine without one.
        let alice = hub.user("alice", false).await;
        start(hub, &alice).await;
    }
);

// === /shutdown ===

proxy_test!(shutdown, "", proxy = false, |hub, _mock| async move {
    let admin = hub.user("admin", true).await;
    let alice = hub.user("alice", false).await;
    let (status, body) = hub.post("/shutdown", Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    for bad in [
        json!({"proxy": "yes"}),
        json!({"servers": 1}),
        json!([true]),
    ] {
        let (status, body) = hub.post("/shutdown", Some(&admin), bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (_, body) = hub
        .post("/shutdown", Some(&admin), json!({"proxy": "yes"}))
        .await;
    assert_eq!(body["message"], "proxy must be true or false, got 'yes'");
    assert!(hub.state.shutdown.requested().is_none());
    let (status, body) = hub
        .post("/shutdown", Some(&admin), json!({"servers": false}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, json!({"message": "Shutting down Hub"}));
    assert_eq!(
        hub.state.shutdown.requested(),
        Some(hub::state::ShutdownRequest {
            proxy: None,
            servers: Some(false),
        })
    );
    // The server stops accepting requests.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let down = hub
            .client
            .get(hub.api_url("/"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_err();
        if down {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "hub still serving");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
});
