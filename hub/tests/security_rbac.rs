//! Security checklist group B (authorization, RBAC): the cases not already covered by the API
//! and page tests, each sent to the real hub on SQLite and PostgreSQL. The checklist lives in
//! the shared security reference, §5 B.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::large_futures,
    missing_docs
)]

mod common;

use std::sync::Arc;

use common::{Backend, Persona, TestHub};
use hub_plugin::Spawner;
use hub_plugin::test_util::RecordingSpawner;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Runs `$body` against a hub with a [`RecordingSpawner`] (bound to `$sp`) and `$config`, on
/// both databases.
macro_rules! recording_test {
    ($name:ident, $config:expr, |$hub:ident, $sp:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $crate::each_backend!(run);

            async fn run(backend: Backend) {
                let $sp = Arc::new(RecordingSpawner::default());
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

/// Sends `method path` as `who` and returns status and body.
async fn send(
    hub: &TestHub,
    who: &Persona,
    method: &Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let (status, _, value) = hub
        .call(method.clone(), path, Some(who), body.cloned())
        .await;
    (status, value)
}

/// The requests on another user's resources that checklist B.14 names (`{}` is the user).
fn requests_on(user: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, format!("/users/{user}"), None),
        (
            Method::PATCH,
            format!("/users/{user}"),
            Some(json!({"admin": true})),
        ),
        (Method::DELETE, format!("/users/{user}"), None),
        (
            Method::POST,
            format!("/users/{user}/server"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("/users/{user}/server"), None),
        (Method::GET, format!("/users/{user}/tokens"), None),
        (
            Method::POST,
            format!("/users/{user}/tokens"),
            Some(json!({"note": "stolen"})),
        ),
        (Method::GET, format!("/users/{user}/tokens/a1"), None),
    ]
}

// === B.14 ===

hub_test!(
    other_users_resources_are_403_or_an_indistinguishable_404,
    config = "[groups.staff]\nusers = [\"dave\"]\n[[roles]]\nname = \"staff-admins\"\nscopes = [\"admin:users!group=staff\", \"admin:servers!group=staff\", \"tokens!group=staff\"]\nusers = [\"carol\"]\n",
    |hub| async move {
        // Security checklist B.14: on user bob's model, server and tokens, user alice (only
        // her own scopes) and carol (admin scopes filtered to the staff group) get a 404
        // identical to the one for a user who does not exist, or a 403 when the scope is not
        // held in any form; so does a token without scopes (it still identifies its owner).
        // Nothing changes.
        let alice = hub.user("alice", false).await;
        let carol = hub.user("carol", false).await;
        let nothing = hub.user_with_scopes("norma", false, &[]).await;
        hub.user("bob", false).await;
        hub.user("dave", false).await;
        for who in [&alice, &carol, &nothing] {
            let bob = requests_on("bob");
            let nobody = requests_on("nobody");
            for ((method, path, body), (_, missing_path, _)) in bob.iter().zip(&nobody) {
                let (status, reply) = send(hub, who, method, path, body.as_ref()).await;
                let (missing_status, missing_reply) =
                    send(hub, who, method, missing_path, body.as_ref()).await;
                assert!(
                    status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
                    "{} {method} {path}: {status} {reply}",
                    who.name
                );
                // Messages may repeat the name from the URL; nothing else may differ.
                let anonymised = |v: &Value| v.to_string().replace("nobody", "bob");
                assert_eq!(
                    (status, anonymised(&reply)),
                    (missing_status, anonymised(&missing_reply)),
                    "{} {method} {path}: bob and a missing user must look the same",
                    who.name
                );
                assert_eq!(reply["status"], status.as_u16(), "{reply}");
                if status == StatusCode::NOT_FOUND {
                    assert_eq!(
                        reply["message"], "No access to resources or resources not found",
                        "{} {method} {path}",
                        who.name
                    );
                }
            }
        }
        // Users alice only reads about herself: 404 there, not 403.
        let (status, _) = send(hub, &alice, &Method::GET, "/users/bob", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // carol's filter covers dave, so the same requests reach him.
        let (status, _) = send(hub, &carol, &Method::GET, "/users/dave/tokens", None).await;
        assert_eq!(status, StatusCode::OK);
        // Nothing happened to bob.
        let root = hub.user("root", true).await;
        let (status, model) = send(hub, &root, &Method::GET, "/users/bob", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(model["admin"], false);
        assert_eq!(model["server"], Value::Null);
        let (_, toks) = send(hub, &root, &Method::GET, "/users/bob/tokens", None).await;
        assert!(
            toks["api_tokens"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["note"] != "stolen"),
            "{toks}"
        );
        assert_eq!(
            hub.spawner.starts.load(std::sync::atomic::Ordering::SeqCst),
            0
        );
    }
);

// === B.16 ===

hub_test!(
    group_filtered_server_scopes_reach_only_members,
    config = "[groups.team]\nusers = [\"bob\"]\n[[roles]]\nname = \"team-starter\"\nscopes = [\"servers!group=team\"]\nusers = [\"alice\"]\n",
    |hub| async move {
        // Security checklist B.16: `servers!group=team` lets alice start the servers of team
        // members only; `/hub/spawn/<outsider>` is a 404, as for a missing user, and nothing is
        // started for the outsider.
        hub.user("bob", false).await;
        hub.user("carol", false).await;
        let alice = hub.browser("alice").await;
        for path in ["/hub/spawn/carol", "/hub/spawn/nobody"] {
            let resp = hub.get_page(path, Some(&alice.cookie)).await;
            assert_eq!(resp.status, StatusCode::NOT_FOUND, "{path}: {}", resp.body);
            let resp = hub
                .page(
                    Method::POST,
                    path,
                    Some(&alice.cookie),
                    Some(&[("_xsrf", alice.xsrf.as_str())]),
                    &[],
                )
                .await;
            assert_eq!(resp.status, StatusCode::NOT_FOUND, "POST {path}");
        }
        let (status, body) = alice
            .with_xsrf(Method::POST, "/users/carol/server", Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(
            hub.spawner.starts.load(std::sync::atomic::Ordering::SeqCst),
            0
        );
        // A member's server: allowed.
        let resp = hub.get_page("/hub/spawn/bob", Some(&alice.cookie)).await;
        assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.body);
        assert_eq!(
            resp.location(),
            Some("/hub/spawn-pending/bob"),
            "{:?}",
            resp.location()
        );
    }
);

// === B.20 ===

recording_test!(
    a_servers_own_token_stays_within_the_server_role,
    "[hub]\nallow_named_servers = true\n",
    |hub, sp| async move {
        // Security checklist B.20: the `JUPYTERHUB_API_TOKEN` a server gets can identify its
        // owner and post activity, and nothing else: no user list, no other users, no
        // starting, stopping or token minting.
        let alice = hub.user("alice", false).await;
        hub.user("bob", false).await;
        let (status, _, body) = hub
            .call(
                Method::POST,
                "/users/alice/server",
                Some(&alice),
                Some(json!({})),
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
        let server = Persona {
            name: "alice".into(),
            token: sp.last().env["JUPYTERHUB_API_TOKEN"].clone(),
        };
        let (status, me) = send(hub, &server, &Method::GET, "/user", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["name"], "alice");
        let now = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let (status, body) = send(
            hub,
            &server,
            &Method::POST,
            "/users/alice/activity",
            Some(&json!({"last_activity": now, "servers": {"": {"last_activity": now}}})),
        )
        .await;
        assert!(status.is_success(), "{status} {body}");
        for (method, path, body) in [
            (Method::GET, "/users", None),
            (Method::GET, "/users/bob", None),
            (Method::GET, "/users/alice/tokens", None),
            (Method::POST, "/users/alice/tokens", Some(json!({}))),
            (Method::POST, "/users/alice/servers/second", Some(json!({}))),
            (Method::DELETE, "/users/alice/server", None),
            (Method::POST, "/users/bob/server", Some(json!({}))),
            (Method::PATCH, "/users/alice", Some(json!({"admin": true}))),
            (Method::GET, "/groups", None),
            (Method::GET, "/services", None),
            (Method::GET, "/proxy", None),
            (Method::GET, "/info", None),
            (
                Method::POST,
                "/users/bob/activity",
                Some(json!({"last_activity": now})),
            ),
        ] {
            let (status, reply) = send(hub, &server, &method, path, body.as_ref()).await;
            assert!(
                status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
                "{method} {path}: {status} {reply}"
            );
            assert_eq!(reply["status"], status.as_u16());
        }
        assert_eq!(sp.count(), 1, "nothing else was started");
        let (status, model) = send(hub, &alice, &Method::GET, "/users/alice", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(model["admin"], false);
        assert!(model["server"].is_string(), "still running: {model}");
    }
);

// === B.24 ===

hub_test!(
    filtered_lists_count_only_what_they_show,
    config = "[groups.g1]\nusers = [\"alice\"]\n[groups.g2]\nusers = []\n[groups.g3]\nusers = []\n[[roles]]\nname = \"g1-reader\"\nscopes = [\"list:groups!group=g1\", \"read:groups!group=g1\", \"list:users!group=g1\", \"read:users!group=g1\"]\nusers = [\"rita\"]\n",
    |hub| async move {
        // Security checklist B.24: a paginated list under a filtered scope shows only the
        // permitted items, and its `_pagination.total` counts only those (no hidden count).
        let rita = hub.user("rita", false).await;
        for name in ["bob", "carol", "dave"] {
            hub.user(name, false).await;
        }
        for (path, expected) in [("/groups", 1), ("/users", 1)] {
            let resp = hub
                .client
                .get(hub.api_url(path))
                .header("Authorization", format!("token {}", rita.token))
                .header("Accept", "application/jupyterhub-pagination+json")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            let body: Value = resp.json().await.unwrap();
            let items = body["items"].as_array().unwrap();
            assert_eq!(items.len(), expected, "{path}: {body}");
            assert_eq!(body["_pagination"]["total"], expected, "{path}: {body}");
            assert!(body["_pagination"]["next"].is_null(), "{path}: {body}");
        }
    }
);
