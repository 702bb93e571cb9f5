//! Security checklist group D (the hub's OAuth provider): the cases not already covered by
//! `oauth2.rs`, sent to the real hub on SQLite and PostgreSQL. The checklist lives in the
//! shared security reference, §5 D (and B.21).

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::large_futures,
    missing_docs
)]

mod common;

use common::{Persona, TestHub};
use hub::db::models::{api_tokens, users};
use hub::identity::tokens::{self, HashedToken};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Stores an OAuth access token of client `client` for `user`, with the scopes the hub's
/// authorize step gives a server's client.
async fn oauth_token(hub: &TestHub, user: &str, client: &str, server_scope: &str) -> Persona {
    let token = tokens::new_api_token();
    let hashed = HashedToken::new(&token, tokens::GENERATED_ROUNDS).to_string();
    let prefix = tokens::token_prefix(&token).to_owned();
    let (name, client, scope) = (user.to_owned(), client.to_owned(), server_scope.to_owned());
    hub.state
        .db
        .run(move |c| {
            let u = users::find_by_name(c, &name)?.unwrap();
            api_tokens::insert(
                c,
                &api_tokens::NewApiToken {
                    prefix: &prefix,
                    hashed: &hashed,
                    owner: api_tokens::TokenOwner::User(u.id),
                    spawner_id: None,
                    client_id: &client,
                    session_id: Some("some-session"),
                    note: "",
                    scopes: &[
                        scope,
                        "read:users:groups!user".to_owned(),
                        "read:users:name!user".to_owned(),
                    ],
                    expires_at: None,
                },
            )?;
            Ok(())
        })
        .await
        .unwrap();
    Persona {
        name: user.to_owned(),
        token,
    }
}

// === B.21 ===

hub_test!(
    a_servers_oauth_token_reaches_only_that_server,
    config = "[hub]\nallow_named_servers = true\n",
    |hub| async move {
        // Security checklist B.21: an OAuth token issued through the client of alice's
        // default server grants access to that server only (not her `gpu` server, not bob's),
        // identifies alice and nothing more, and does not log anyone in on the authorize
        // endpoint of another server.
        let root = hub.user("root", true).await;
        hub.user("alice", false).await;
        hub.user("bob", false).await;
        for path in [
            "/users/alice/server",
            "/users/alice/servers/gpu",
            "/users/bob/server",
        ] {
            let (status, body) = hub.post(path, Some(&root), json!({})).await;
            assert!(status.is_success(), "{path}: {status} {body}");
        }
        let token = oauth_token(
            hub,
            "alice",
            "jupyterhub-user-alice",
            "access:servers!server=alice/",
        )
        .await;
        let (status, me) = hub.get("/user", Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["name"], "alice");
        let scopes: Vec<&str> = me["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(
            scopes,
            [
                "access:servers!server=alice/",
                "read:users:groups!user=alice",
                "read:users:name!user=alice"
            ]
        );
        // The hub API beyond identification.
        for (method, path) in [
            (Method::GET, "/users"),
            (Method::GET, "/users/bob"),
            (Method::GET, "/users/alice/tokens"),
            (Method::POST, "/users/alice/tokens"),
            (Method::DELETE, "/users/alice/servers/gpu"),
            (Method::DELETE, "/users/bob/server"),
            (Method::POST, "/users/alice/servers/other"),
        ] {
            let body = (method == Method::POST).then(|| json!({}));
            let (status, _, reply) = hub.call(method.clone(), path, Some(&token), body).await;
            assert!(
                status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
                "{method} {path}: {status} {reply}"
            );
        }
        // As a credential on the authorize endpoint of another server: not a login.
        for client in ["jupyterhub-user-alice-gpu", "jupyterhub-user-bob"] {
            let url = format!(
                "{}/hub/api/oauth2/authorize?client_id={client}&response_type=code&state=s",
                hub.origin
            );
            for header in [
                format!("Bearer {}", token.token),
                format!("token {}", token.token),
            ] {
                let resp = hub
                    .client
                    .get(&url)
                    .header("Authorization", &header)
                    .send()
                    .await
                    .unwrap();
                let location = resp
                    .headers()
                    .get("location")
                    .map(|l| l.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                assert!(
                    !location.contains("code="),
                    "{client}: a code was issued: {location}"
                );
                assert!(
                    location.starts_with("/hub/login"),
                    "{client}: {} {location}",
                    resp.status()
                );
            }
        }
        // The same token's access scope is checked by servers: the hub says which server it
        // covers, and it is not bob's.
        let (_, bob_model) = hub.get("/users/bob", Some(&root)).await;
        assert!(bob_model["server"].is_string(), "bob is untouched");
    }
);
