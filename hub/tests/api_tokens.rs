//! `/users/{name}/tokens[/{id}]`: creation, listing, one token, revocation; scopes, expiry,
//! storage, and requesting a token with credentials in the body.

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{Persona, TestHub};
use diesel::prelude::*;
use hub::db::models::{api_tokens, oauth_clients, users};
use hub::identity::tokens::{self, HashedToken};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

fn ts(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .expect("an RFC 3339 time")
        .with_timezone(&Utc)
}

fn message(body: &Value) -> &str {
    body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {body}"))
}

/// Every stored token row.
async fn all_token_rows(hub: &TestHub) -> Vec<api_tokens::ApiToken> {
    hub.state
        .db
        .run(|conn| {
            hub::db::schema::api_tokens::table
                .select(api_tokens::ApiToken::as_select())
                .load(conn)
        })
        .await
        .expect("load tokens")
}

async fn set_admin(hub: &TestHub, name: &str, admin: bool) {
    let name = name.to_owned();
    hub.state
        .db
        .run(move |conn| {
            let user = users::find_by_name(conn, &name)?.expect("user");
            users::set_admin(conn, user.id, admin)
        })
        .await
        .expect("set admin");
    // Changed behind the API's back: forget resolved identities, as an API change would.
    hub.state.identities.invalidate();
}

/// Stores a token directly, with `expires_at` and `client_id` of the caller's choosing.
async fn insert_token(
    hub: &TestHub,
    user: &str,
    client_id: &str,
    expires_at: Option<chrono::NaiveDateTime>,
) -> (String, i32) {
    let secret = tokens::new_api_token();
    let hashed = HashedToken::new(&secret, tokens::GENERATED_ROUNDS).to_string();
    let prefix = tokens::token_prefix(&secret).to_owned();
    let (user, client_id) = (user.to_owned(), client_id.to_owned());
    let id = hub
        .state
        .db
        .run(move |conn| {
            let user = users::find_by_name(conn, &user)?.expect("user");
            let row = api_tokens::insert(
                conn,
                &api_tokens::NewApiToken {
                    prefix: &prefix,
                    hashed: &hashed,
                    owner: api_tokens::TokenOwner::User(user.id),
                    spawner_id: None,
                    client_id: &client_id,
                    session_id: Some("sess"),
                    note: "",
                    scopes: &["read:users:name!user".to_owned()],
                    expires_at,
                },
            )?;
            Ok(row.id)
        })
        .await
        .expect("insert token");
    (secret, id)
}

hub_test!(create_list_get_and_use, |hub| async move {
    let alice = hub.user("alice", false).await;
    let (status, headers, body) = hub
        .call(
            Method::POST,
            "/users/alice/tokens",
            Some(&alice),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let secret = body["token"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 32);
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with('a') && id[1..].parse::<u32>().is_ok(),
        "{id}"
    );
    assert_eq!(body["user"], "alice");
    assert_eq!(body["kind"], "api_token");
    assert_eq!(body["roles"], json!([]));
    assert_eq!(body["note"], "Requested via api");
    assert_eq!(body["oauth_client"], "JupyterHub");
    assert!(body["session_id"].is_null());
    assert!(body["expires_at"].is_null());
    assert!(body["last_activity"].is_null());
    let created = ts(&body["created"]);
    assert!((Utc::now() - created).num_seconds().abs() < 60);
    // `inherit`: the owner's whole expanded scopes.
    let scopes = strings(&body["scopes"]);
    for s in [
        "read:users!user=alice",
        "tokens!user=alice",
        "access:servers!user=alice",
    ] {
        assert!(scopes.contains(&s.to_owned()), "{scopes:?}");
    }
    let mut sorted = scopes.clone();
    sorted.sort();
    assert_eq!(scopes, sorted, "scopes are sorted");

    // The new token works, and has the same scopes as the owner.
    let new = Persona {
        name: "alice".into(),
        token: secret.clone(),
    };
    let (status, me) = hub.get("/user", Some(&new)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["token_id"], json!(id));
    assert_eq!(strings(&me["scopes"]), scopes);

    // Listed without the secret; fetched by id.
    let (status, list) = hub.get("/users/alice/tokens", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    let listed = list["api_tokens"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{list}");
    assert!(listed.iter().all(|t| t.get("token").is_none()));
    assert!(listed.iter().any(|t| t["id"] == json!(id)));
    let (status, one) = hub
        .get(&format!("/users/alice/tokens/{id}"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["id"], json!(id));
    assert!(one.get("token").is_none());
    assert!(!one["last_activity"].is_null(), "used above: {one}");
    assert_eq!(one["note"], "Requested via api");
});

hub_test!(stored_only_as_prefix_and_hash, |hub| async move {
    let alice = hub.user("alice", false).await;
    let (_, body) = hub
        .post("/users/alice/tokens", Some(&alice), json!({"note": "mine"}))
        .await;
    let secret = body["token"].as_str().unwrap().to_owned();
    let rows = all_token_rows(hub).await;
    assert!(!rows.is_empty());
    for row in &rows {
        assert!(!row.hashed.contains(&secret));
        assert!(!row.note.contains(&secret));
        assert!(!row.prefix.contains(&secret));
        assert!(row.scopes.iter().all(|s| !s.contains(&secret)));
    }
    let id: i32 = body["id"].as_str().unwrap()[1..].parse().unwrap();
    let row = rows.iter().find(|r| r.id == id).unwrap();
    assert_eq!(row.prefix, &secret[..4]);
    let parts: Vec<&str> = row.hashed.split(':').collect();
    assert_eq!(parts[0], "sha512");
    assert_eq!(parts[1], "1", "generated tokens use one round");
    assert_eq!(parts[2].len(), 16);
    assert!(tokens::verify_token(&row.hashed, &secret));
    assert_eq!(row.scopes, vec!["inherit".to_owned()]);
    assert_eq!(row.note, "mine");
    assert_eq!(row.client_id, "jupyterhub");
});

hub_test!(notes_by_requester, |hub| async move {
    hub.user("alice", false).await;
    let root = hub.user("root", true).await;
    let (status, body) = hub
        .post("/users/alice/tokens", Some(&root), json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["note"], "Requested via api by user root");
    assert_eq!(body["user"], "alice");
    let (_, body) = hub
        .post("/users/alice/tokens", Some(&root), json!({"note": ""}))
        .await;
    assert_eq!(body["note"], "Requested via api by user root");
    let (_, body) = hub
        .post(
            "/users/alice/tokens",
            Some(&root),
            json!({"note": "for CI"}),
        )
        .await;
    assert_eq!(body["note"], "for CI");
    let (status, body) = hub
        .post("/users/alice/tokens", Some(&root), json!({"note": 5}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = hub
        .post(
            "/users/alice/tokens",
            Some(&root),
            json!({"note": "x".repeat(1024)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
});

hub_test!(
    services_request_tokens_for_users,
    config = "[[services]]\nname = \"maker\"\napi_token = \"maker-token-123456\"\n[[services]]\nname = \"idle\"\napi_token = \"idle-token-1234567\"\n[[roles]]\nname = \"tokenmaker\"\nscopes = [\"tokens\"]\nservices = [\"maker\"]\n",
    |hub| async move {
        hub.user("alice", false).await;
        let maker = Persona {
            name: "maker".into(),
            token: "maker-token-123456".into(),
        };
        let (status, body) = hub
            .post("/users/alice/tokens", Some(&maker), json!({}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["note"], "Requested via api by service maker");
        let idle = Persona {
            name: "idle".into(),
            token: "idle-token-1234567".into(),
        };
        let (status, body) = hub
            .post("/users/alice/tokens", Some(&idle), json!({}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            message(&body),
            "Service alice not found or no permissions to generate tokens"
        );
    }
);

hub_test!(permissions, |hub| async move {
    let alice = hub.user("alice", false).await;
    let bob = hub.user("bob", false).await;
    let root = hub.user("root", true).await;
    // Another user's tokens: creation 403 with JupyterHub's text; reading 404 (filtered scope).
    let (status, body) = hub.post("/users/alice/tokens", Some(&bob), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&body),
        "User alice not found or no permissions to generate tokens"
    );
    let (status, body) = hub.get("/users/alice/tokens", Some(&bob)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        message(&body),
        "No access to resources or resources not found"
    );
    let (status, _) = hub.get("/users/nobody/tokens", Some(&bob)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = hub.get("/users/alice/tokens", Some(&alice)).await;
    let alice_id = list["api_tokens"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = hub
        .delete(&format!("/users/alice/tokens/{alice_id}"), Some(&bob))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Admins: unknown user → 404 on reads, 403 on creation.
    let (status, body) = hub.get("/users/nobody/tokens", Some(&root)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "No such user: nobody");
    let (status, body) = hub
        .post("/users/nobody/tokens", Some(&root), json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&body),
        "User nobody not found or no permissions to generate tokens"
    );
    let (status, _) = hub.get("/users/alice/tokens", Some(&root)).await;
    assert_eq!(status, StatusCode::OK);
    // No read:tokens in any form: 403.
    let weak = hub
        .user_with_scopes("carol", false, &["read:users:name!user=carol"])
        .await;
    let (status, body) = hub.get("/users/carol/tokens", Some(&weak)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        message(&body).contains("requires any of [read:tokens]"),
        "{body}"
    );
    let (status, _) = hub
        .post("/users/carol/tokens", Some(&weak), json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // No credential and no auth: bare 403.
    let (status, body) = hub.post("/users/alice/tokens", None, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["message"].is_null(), "{body}");
    let (status, body) = hub.get("/users/alice/tokens", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(message(&body), "Missing or invalid credentials.");
});

hub_test!(
    group_filtered_token_scope,
    config = "[groups.team]\nusers = [\"alice\"]\n[[roles]]\nname = \"teamtokens\"\nscopes = [\"tokens!group=team\"]\nusers = [\"carol\"]\n",
    |hub| async move {
        let carol = hub.user("carol", false).await;
        hub.user("alice", false).await;
        hub.user("dave", false).await;
        let (status, body) = hub
            .post("/users/alice/tokens", Some(&carol), json!({}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, _) = hub.get("/users/alice/tokens", Some(&carol)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = hub
            .post("/users/dave/tokens", Some(&carol), json!({}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = hub.get("/users/dave/tokens", Some(&carol)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
);

hub_test!(scopes_and_roles, |hub| async move {
    let alice = hub.user("alice", false).await;
    let post = |body: Value| {
        let alice = alice.clone();
        async move { hub.post("/users/alice/tokens", Some(&alice), body).await }
    };
    // Narrow scopes: effective scopes are the expansion plus identify scopes.
    let (status, body) = post(json!({"scopes": ["read:users:activity!user=alice"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        strings(&body["scopes"]),
        [
            "read:users:activity!user=alice",
            "read:users:groups!user=alice",
            "read:users:name!user=alice"
        ]
    );
    let narrow = Persona {
        name: "alice".into(),
        token: body["token"].as_str().unwrap().into(),
    };
    let (status, _) = hub.get("/users/alice/tokens", Some(&narrow)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a narrow token cannot read tokens"
    );
    let (status, _) = hub
        .post("/users/alice/tokens", Some(&narrow), json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "nor make new ones");
    // Bare filters resolve against the owner.
    let (status, body) = post(json!({"scopes": ["read:users!user"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(strings(&body["scopes"]).contains(&"read:users!user=alice".to_owned()));
    // An empty list: identify scopes only.
    let (status, body) = post(json!({"scopes": []})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        strings(&body["scopes"]),
        ["read:users:groups!user=alice", "read:users:name!user=alice"]
    );
    // Roles are resolved to their scopes at once.
    let (status, body) = post(json!({"roles": ["server"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(strings(&body["scopes"]).contains(&"users:activity!user=alice".to_owned()));
    let (status, body) = post(json!({"roles": ["nope"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), "No such role: nope");
    let (status, body) = post(json!({"roles": [], "scopes": []})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "Can only assign one of scopes or roles when creating tokens."
    );
    // Unknown scopes: JupyterHub's KeyError text, quotes included.
    let (status, body) = post(json!({"scopes": ["nope"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), "\"Scope 'nope' for token does not exist\"");
    let (status, body) = post(json!({"scopes": ["read:users!bogus=x"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // More than the owner holds.
    for scope in ["admin:users", "read:users!user=bob", "read:hub"] {
        let (status, body) = post(json!({"scopes": [scope]})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{scope}: {body}");
        let m = message(&body);
        assert!(m.starts_with("Not assigning requested scopes "), "{m}");
        assert!(m.ends_with(" not held by User alice"), "{m}");
    }
    // Types.
    let (status, body) = post(json!({"scopes": "read:users"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "token scopes must be null or a list of strings, not 'read:users'"
    );
    let (status, body) = post(json!({"roles": [1]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "token roles must be null or a list of strings, not [1]"
    );
    // Nothing was written by the refused requests: alice has her own token plus the four
    // created above.
    let (_, list) = hub.get("/users/alice/tokens", Some(&alice)).await;
    assert_eq!(list["api_tokens"].as_array().unwrap().len(), 5, "{list}");
});

hub_test!(token_scopes_follow_the_owner, |hub| async move {
    let root = hub.user("root", true).await;
    let (status, body) = hub
        .post(
            "/users/root/tokens",
            Some(&root),
            json!({"scopes": ["read:hub", "list:users"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let narrow = Persona {
        name: "root".into(),
        token: body["token"].as_str().unwrap().into(),
    };
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(strings(&body["scopes"]).contains(&"read:hub".to_owned()));
    let (status, _) = hub.get("/info", Some(&narrow)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = hub.get("/info", Some(&root)).await;
    assert_eq!(status, StatusCode::OK);

    set_admin(hub, "root", false).await;
    // Both the inherit token and the narrow one lose read:hub at once.
    let (status, _) = hub.get("/info", Some(&narrow)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = hub.get("/info", Some(&root)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = hub
        .get(&format!("/users/root/tokens/{id}"), Some(&root))
        .await;
    assert_eq!(status, StatusCode::OK);
    let scopes = strings(&body["scopes"]);
    assert!(!scopes.contains(&"read:hub".to_owned()), "{scopes:?}");
    assert!(!scopes.contains(&"list:users".to_owned()), "{scopes:?}");
    // And a new token cannot ask for it any more.
    let (status, _) = hub
        .post(
            "/users/root/tokens",
            Some(&root),
            json!({"scopes": ["read:hub"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    set_admin(hub, "root", true).await;
    let (status, _) = hub.get("/info", Some(&narrow)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "stored scopes come back with the role"
    );
});

hub_test!(expiry_rules, |hub| async move {
    let alice = hub.user("alice", false).await;
    let post = |body: Value| {
        let alice = alice.clone();
        async move { hub.post("/users/alice/tokens", Some(&alice), body).await }
    };
    let (status, body) = post(json!({"expires_in": 3600})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let left = (ts(&body["expires_at"]) - Utc::now()).num_seconds();
    assert!((3500..=3600).contains(&left), "{left}");
    let (status, body) = post(json!({"expires_in": null})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(body["expires_at"].is_null());
    for (value, text) in [
        (
            json!(0),
            "expires_in must be a positive integer or null, not 0",
        ),
        (
            json!(-5),
            "expires_in must be a positive integer or null, not -5",
        ),
        (
            json!("abc"),
            "token expires_in must be null or integer, not 'abc'",
        ),
        (
            json!(1.5),
            "token expires_in must be null or integer, not 1.5",
        ),
        (
            json!(true),
            "token expires_in must be null or integer, not True",
        ),
        (
            json!({}),
            "token expires_in must be null or integer, not {}",
        ),
    ] {
        let (status, body) = post(json!({ "expires_in": value })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
        assert_eq!(message(&body), text);
    }
    let (status, body) = post(json!({"expires_in": i64::MAX})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Malformed bodies.
    for raw in ["[1]", "\"x\"", "{nope"] {
        let resp = hub
            .client
            .post(hub.api_url("/users/alice/tokens"))
            .header("Authorization", format!("token {}", alice.token))
            .header("Content-Type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{raw}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], 400);
        assert!(body["message"].is_string());
    }
    // Falsy bodies count as empty, as in JupyterHub.
    for raw in ["", "null", "[]"] {
        let resp = hub
            .client
            .post(hub.api_url("/users/alice/tokens"))
            .header("Authorization", format!("token {}", alice.token))
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{raw:?}");
    }
});

hub_test!(
    expired_tokens_stop_working_and_are_purged,
    |hub| async move {
        let alice = hub.user("alice", false).await;
        let past = Utc::now().naive_utc() - chrono::TimeDelta::seconds(5);
        let (expired, expired_id) = insert_token(hub, "alice", "jupyterhub", Some(past)).await;
        let persona = Persona {
            name: "alice".into(),
            token: expired,
        };
        let (status, _) = hub.get("/user", Some(&persona)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(all_token_rows(hub).await.iter().any(|r| r.id == expired_id));
        let (status, list) = hub.get("/users/alice/tokens", Some(&alice)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            list["api_tokens"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["id"] != json!(format!("a{expired_id}")))
        );
        assert!(
            !all_token_rows(hub).await.iter().any(|r| r.id == expired_id),
            "listing purges expired tokens"
        );

        // A short-lived token from the API really expires.
        let (_, body) = hub
            .post(
                "/users/alice/tokens",
                Some(&alice),
                json!({"expires_in": 1}),
            )
            .await;
        let short = Persona {
            name: "alice".into(),
            token: body["token"].as_str().unwrap().into(),
        };
        let (status, _) = hub.get("/user", Some(&short)).await;
        assert_eq!(status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let (status, _) = hub.get("/user", Some(&short)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
);

hub_test!(
    max_lifetime,
    config = "[hub]\ntoken_expires_in_max_seconds = 3600\n",
    |hub| async move {
        let alice = hub.user("alice", false).await;
        let (status, body) = hub
            .post("/users/alice/tokens", Some(&alice), json!({}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let left = (ts(&body["expires_at"]) - Utc::now()).num_seconds();
        assert!(
            (3500..=3600).contains(&left),
            "default is the maximum: {left}"
        );
        let (status, body) = hub
            .post(
                "/users/alice/tokens",
                Some(&alice),
                json!({"expires_in": 7200}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            message(&body),
            "token expires_in: 7200 must not exceed 3600"
        );
        let (status, body) = hub
            .post(
                "/users/alice/tokens",
                Some(&alice),
                json!({"expires_in": 60}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let left = (ts(&body["expires_at"]) - Utc::now()).num_seconds();
        assert!((0..=60).contains(&left));
    }
);

hub_test!(revocation_is_immediate, |hub| async move {
    let alice = hub.user("alice", false).await;
    let (_, body) = hub
        .post("/users/alice/tokens", Some(&alice), json!({}))
        .await;
    let id = body["id"].as_str().unwrap().to_owned();
    let victim = Persona {
        name: "alice".into(),
        token: body["token"].as_str().unwrap().into(),
    };
    let (status, _) = hub.get("/user", Some(&victim)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, body) = hub
        .call(
            Method::DELETE,
            &format!("/users/alice/tokens/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(headers["content-type"], "text/plain");
    assert!(body.is_null());
    let (status, _) = hub.get("/user", Some(&victim)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = hub
        .get(&format!("/users/alice/tokens/{id}"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), format!("No such token {id} for user alice"));
    let (status, _) = hub
        .delete(&format!("/users/alice/tokens/{id}"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Malformed ids and other users' tokens are 404 too.
    let bob = hub.user("bob", false).await;
    let (_, bobs) = hub.get("/users/bob/tokens", Some(&bob)).await;
    let bob_id = bobs["api_tokens"][0]["id"].as_str().unwrap().to_owned();
    for bad in ["xyz", "a", "a12x", "b1", "a99999999999", bob_id.as_str()] {
        let (status, body) = hub
            .get(&format!("/users/alice/tokens/{bad}"), Some(&alice))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
        assert_eq!(
            message(&body),
            format!("No such token {bad} for user alice")
        );
    }
    // A user can revoke the very token they are using.
    let (_, mine) = hub.get("/user", Some(&alice)).await;
    let own = mine["token_id"].as_str().unwrap().to_owned();
    let (status, _) = hub
        .delete(&format!("/users/alice/tokens/{own}"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = hub.get("/user", Some(&alice)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
});

hub_test!(oauth_tokens_are_revoked_per_client, |hub| async move {
    let alice = hub.user("alice", false).await;
    hub.state
        .db
        .run(|conn| {
            oauth_clients::insert(
                conn,
                &oauth_clients::NewOAuthClient {
                    identifier: "service-web",
                    description: "JupyterHub service web",
                    secret: "",
                    redirect_uri: "/services/web/oauth_callback",
                    allowed_scopes: &[],
                    owner: oauth_clients::ClientOwner::None,
                },
            )
        })
        .await
        .unwrap();
    let (_, first) = insert_token(hub, "alice", "service-web", None).await;
    let (_, second) = insert_token(hub, "alice", "service-web", None).await;
    let (status, list) = hub.get("/users/alice/tokens", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    let oauth: Vec<&Value> = list["api_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["oauth_client"] == "JupyterHub service web")
        .collect();
    assert_eq!(oauth.len(), 2, "{list}");
    assert_eq!(oauth[0]["session_id"], "sess");
    let (status, _) = hub
        .delete(&format!("/users/alice/tokens/a{first}"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let rows = all_token_rows(hub).await;
    assert!(!rows.iter().any(|r| r.id == first || r.id == second));
    let (status, _) = hub.get("/user", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "the API token is kept");
});

hub_test!(random_token_flood_is_cheap, |hub| async move {
    let alice = hub.user("alice", false).await;
    let prefix = &alice.token[..4];
    let started = Instant::now();
    for i in 0..150 {
        // Half share the prefix of a real token, so they are hashed and compared.
        let token = if i % 2 == 0 {
            format!("{prefix}{}", &tokens::new_api_token()[4..])
        } else {
            tokens::new_api_token()
        };
        let who = Persona {
            name: "x".into(),
            token,
        };
        let (status, _) = hub.get("/users/alice/tokens", Some(&who)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // Over-long tokens are refused without hashing.
    let long = Persona {
        name: "x".into(),
        token: format!("{prefix}{}", "f".repeat(10_000)),
    };
    let (status, _) = hub.get("/user", Some(&long)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    let (status, _) = hub.get("/user", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
});

hub_test!(
    credentials_in_the_body,
    config = "[authenticator]\nclass = \"dummy\"\n",
    |hub| async move {
        hub.user("alice", false).await;
        hub.user("bob", false).await;
        let (status, body) = hub
            .post(
                "/users/alice/tokens",
                None,
                json!({"auth": {"username": "alice", "password": "pw"}, "note": "cli"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["note"], "cli");
        let minted = Persona {
            name: "alice".into(),
            token: body["token"].as_str().unwrap().into(),
        };
        let (status, me) = hub.get("/user", Some(&minted)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["name"], "alice");
        // Names are normalised as at login.
        let (status, body) = hub
            .post(
                "/users/alice/tokens",
                None,
                json!({"auth": {"username": "ALICE", "password": "pw"}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["note"], "Requested via api");
        // Someone else's tokens, unknown users, and junk: 403.
        let (status, body) = hub
            .post(
                "/users/alice/tokens",
                None,
                json!({"auth": {"username": "bob", "password": "pw"}}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            message(&body),
            "User alice not found or no permissions to generate tokens"
        );
        for auth in [
            json!({"username": "ghost", "password": "pw"}),
            json!({"username": "", "password": "pw"}),
            json!({"username": "a/b", "password": "pw"}),
            json!("alice"),
            json!(null),
        ] {
            let (status, body) = hub
                .post("/users/alice/tokens", None, json!({ "auth": auth }))
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{auth}");
            assert!(body["message"].is_null(), "{body}");
        }
        // An invalid token plus auth: the token is ignored, the body decides.
        let bad = Persona {
            name: "x".into(),
            token: "0".repeat(32),
        };
        let (status, _) = hub
            .post(
                "/users/alice/tokens",
                Some(&bad),
                json!({"auth": {"username": "alice", "password": "pw"}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
);

hub_test!(
    blocked_users_cannot_use_body_credentials,
    config = "[authenticator]\nclass = \"dummy\"\nblocked_users = [\"Mallory\"]\n",
    |hub| async move {
        hub.user("mallory", false).await;
        let (status, _) = hub
            .post(
                "/users/mallory/tokens",
                None,
                json!({"auth": {"username": "mallory", "password": "pw"}}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
);

hub_test!(
    body_credentials_follow_the_allow_rules,
    config = "[authenticator]\nclass = \"pam\"\n",
    |hub| async move {
        // PAM without allowed users lets nobody in, so nobody gets a token this way either.
        hub.user("alice", false).await;
        let (status, _) = hub
            .post(
                "/users/alice/tokens",
                None,
                json!({"auth": {"username": "alice", "password": "pw"}}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
);
