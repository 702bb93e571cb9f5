//! Sharing: `/shares`, `/share-codes`, `/users/{name}/shared`, `/groups/{name}/shared`, the
//! scopes shares give, and exchanging codes (`shares::accept_code`).

mod common;

use chrono::{DateTime, Utc};
use common::{Persona, TestHub};
use diesel::prelude::*;
use hub::api::shares::{AcceptError, accept_code, lookup_code};
use hub::db::models::{groups, share_codes, spawners, users};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Users may share their own servers and look up users and groups by name.
const CONFIG: &str = "[hub]\nextra_user_scopes = [\"shares!user\", \"read:users:name\", \"read:groups:name\"]\n[groups.team]\nusers = [\"carol\"]\n";

fn message(body: &Value) -> &str {
    body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {body}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

async fn scopes_of(hub: &TestHub, who: &Persona) -> Vec<String> {
    let (status, me) = hub.get("/user", Some(who)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    strings(&me["scopes"])
}

async fn has_scope(hub: &TestHub, who: &Persona, scope: &str) -> bool {
    scopes_of(hub, who).await.iter().any(|s| s == scope)
}

async fn patch(hub: &TestHub, path: &str, who: &Persona, body: Value) -> (StatusCode, Value) {
    let (s, _, v) = hub.call(Method::PATCH, path, Some(who), Some(body)).await;
    (s, v)
}

async fn db_user(hub: &TestHub, name: &str) -> users::User {
    let name = name.to_owned();
    hub.state
        .db
        .run(move |conn| users::find_by_name(conn, &name))
        .await
        .expect("find user")
        .expect("user")
}

async fn add_server(hub: &TestHub, owner: &str, server: &str) {
    let user = db_user(hub, owner).await;
    let server = server.to_owned();
    hub.state
        .db
        .run(move |conn| spawners::find_or_insert(conn, user.id, &server))
        .await
        .expect("add server");
}

async fn all_codes(hub: &TestHub) -> Vec<share_codes::ShareCode> {
    hub.state
        .db
        .run(|conn| {
            hub::db::schema::share_codes::table
                .select(share_codes::ShareCode::as_select())
                .load(conn)
        })
        .await
        .expect("load codes")
}

hub_test!(share_with_a_user, config = CONFIG, |hub| async move {
    let alice = hub.user("alice", false).await;
    let bob = hub.user("bob", false).await;
    assert!(!has_scope(hub, &bob, "access:servers!server=alice/").await);

    let (status, body) = hub
        .post("/shares/alice/", Some(&alice), json!({"user": "bob"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["server"],
        json!({"user": {"name": "alice"}, "name": "", "url": "/user/alice/", "full_url": null, "ready": false})
    );
    assert_eq!(body["scopes"], json!(["access:servers!server=alice/"]));
    assert_eq!(body["user"], json!({"name": "bob"}));
    assert_eq!(body["group"], Value::Null);
    assert_eq!(body["kind"], "user");
    let created: DateTime<Utc> = body["created_at"].as_str().unwrap().parse().unwrap();
    assert!((Utc::now() - created).num_seconds().abs() < 60);

    // The recipient holds the scope at once.
    assert!(has_scope(hub, &bob, "access:servers!server=alice/").await);
    assert!(!has_scope(hub, &bob, "access:servers!user=alice").await);

    // Listings: always the envelope.
    for path in ["/shares/alice", "/shares/alice/"] {
        let (status, list) = hub.get(path, Some(&alice)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {list}");
        assert_eq!(list["_pagination"]["total"], 1, "{path}");
        assert_eq!(list["_pagination"]["next"], Value::Null);
        assert_eq!(list["items"][0]["user"]["name"], "bob");
    }
    let (status, list) = hub.get("/users/bob/shared", Some(&bob)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["server"]["user"]["name"], "alice");
    let (status, one) = hub.get("/users/bob/shared/alice/", Some(&bob)).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["scopes"], json!(["access:servers!server=alice/"]));

    // Others' share lists are not visible.
    let (status, body) = hub.get("/shares/alice", Some(&bob)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        message(&body),
        "No access to resources or resources not found"
    );
    let (status, _) = hub.get("/users/alice/shared", Some(&bob)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Granting again merges scopes; partial revocation keeps the rest.
    let (status, body) = hub
        .post(
            "/shares/alice/",
            Some(&alice),
            json!({"user": "bob", "scopes": ["read:servers"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["scopes"],
        json!(["access:servers!server=alice/", "read:servers!server=alice/"])
    );
    assert!(has_scope(hub, &bob, "read:servers!server=alice/").await);
    let (status, body) = patch(
        hub,
        "/shares/alice/",
        &alice,
        json!({"user": "bob", "scopes": ["read:servers"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scopes"], json!(["access:servers!server=alice/"]));
    assert!(!has_scope(hub, &bob, "read:servers!server=alice/").await);
    assert!(has_scope(hub, &bob, "access:servers!server=alice/").await);

    // Full revocation: `{}`, and the access is gone at once.
    let (status, body) = patch(hub, "/shares/alice/", &alice, json!({"user": "bob"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({}));
    assert!(!has_scope(hub, &bob, "access:servers!server=alice/").await);
    let (status, body) = hub.get("/users/bob/shared/alice/", Some(&bob)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "No such share for user bob on alice/");
    // Revoking from nobody, or again, is not an error.
    let (status, body) = patch(hub, "/shares/alice/", &alice, json!({"user": "ghost"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({}));
    let (status, body) = patch(hub, "/shares/alice/", &alice, json!({"group": "nope"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({}));
});

hub_test!(
    recipients_leave_and_owners_revoke_all,
    config = CONFIG,
    |hub| async move {
        let alice = hub.user("alice", false).await;
        let bob = hub.user("bob", false).await;
        let carol = hub.user("carol", false).await;
        for who in ["bob", "carol"] {
            let (status, _) = hub
                .post("/shares/alice/", Some(&alice), json!({ "user": who }))
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        // bob cannot remove carol's share, but can leave his own.
        let (status, _) = hub.delete("/users/carol/shared/alice/", Some(&bob)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = hub.delete("/users/bob/shared/alice/", Some(&bob)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(!has_scope(hub, &bob, "access:servers!server=alice/").await);
        assert!(has_scope(hub, &carol, "access:servers!server=alice/").await);
        let (status, _) = hub.delete("/users/bob/shared/alice/", Some(&bob)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // The owner revokes everything.
        let (status, _) = hub.delete("/shares/alice/", Some(&alice)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(!has_scope(hub, &carol, "access:servers!server=alice/").await);
        let (_, list) = hub.get("/shares/alice", Some(&alice)).await;
        assert_eq!(list["_pagination"]["total"], 0);
        assert_eq!(list["items"], json!([]));
        // Only the list endpoint exists without a server.
        for method in [Method::POST, Method::PATCH, Method::DELETE] {
            let (status, _, body) = hub
                .call(
                    method.clone(),
                    "/shares/alice",
                    Some(&alice),
                    Some(json!({"user": "bob"})),
                )
                .await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}: {body}");
        }
        // Deleting the recipient removes their shares; deleting the owner removes all.
        let (status, _) = hub
            .post("/shares/alice/", Some(&alice), json!({"user": "bob"}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let owner = db_user(hub, "alice").await;
        hub.state
            .db
            .run(move |conn| users::delete(conn, owner.id))
            .await
            .unwrap();
        assert!(!has_scope(hub, &bob, "access:servers!server=alice/").await);
    }
);

hub_test!(share_with_a_group, config = CONFIG, |hub| async move {
    let alice = hub.user("alice", false).await;
    let carol = hub.user("carol", false).await;
    let root = hub.user("root", true).await;
    add_server(hub, "alice", "gpu").await;
    let (status, body) = hub
        .post("/shares/alice/gpu", Some(&alice), json!({"group": "team"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["kind"], "group");
    assert_eq!(body["group"], json!({"name": "team"}));
    assert_eq!(body["user"], Value::Null);
    assert_eq!(body["server"]["name"], "gpu");
    assert_eq!(body["server"]["url"], "/user/alice/gpu/");
    assert_eq!(body["scopes"], json!(["access:servers!server=alice/gpu"]));
    // Members hold it, through the group.
    assert!(has_scope(hub, &carol, "access:servers!server=alice/gpu").await);
    assert!(!has_scope(hub, &carol, "access:servers!server=alice/").await);
    let (_, list) = hub.get("/users/carol/shared", Some(&carol)).await;
    assert_eq!(list["_pagination"]["total"], 1, "{list}");
    assert_eq!(list["items"][0]["kind"], "group");
    let (status, list) = hub.get("/groups/team/shared", Some(&root)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["items"][0]["server"]["name"], "gpu");
    let (status, one) = hub.get("/groups/team/shared/alice/gpu", Some(&root)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["group"]["name"], "team");
    let (status, body) = hub.get("/groups/team/shared/alice/", Some(&root)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "No such share for group team on alice/");
    let (status, body) = hub.get("/groups/nope/shared", Some(&root)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "No such group: nope");
    // carol holds read:groups:shares only filtered to herself (from `shares!user`).
    let (status, _) = hub.get("/groups/team/shared", Some(&carol)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Leaving the group loses the access at once.
    let (user_id, group_id) = {
        let user = db_user(hub, "carol").await;
        let group = hub
            .state
            .db
            .run(|conn| groups::find_by_name(conn, "team"))
            .await
            .unwrap()
            .unwrap();
        (user.id, group.id)
    };
    hub.state
        .db
        .run(move |conn| groups::remove_members(conn, group_id, &[user_id]))
        .await
        .unwrap();
    // Changed behind the API's back: forget resolved identities, as an API change would.
    hub.state.identities.invalidate();
    assert!(!has_scope(hub, &carol, "access:servers!server=alice/gpu").await);
    hub.state
        .db
        .run(move |conn| groups::add_members(conn, group_id, &[user_id]))
        .await
        .unwrap();
    hub.state.identities.invalidate();
    assert!(has_scope(hub, &carol, "access:servers!server=alice/gpu").await);
    // An admin removes the group's share.
    let (status, _) = hub
        .delete("/groups/team/shared/alice/gpu", Some(&root))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!has_scope(hub, &carol, "access:servers!server=alice/gpu").await);
});

hub_test!(granting_rules, config = CONFIG, |hub| async move {
    let alice = hub.user("alice", false).await;
    hub.user("bob", false).await;
    let post = |path: &'static str, body: Value| {
        let alice = alice.clone();
        async move { hub.post(path, Some(&alice), body).await }
    };
    // Only scopes the sharer holds on that server.
    let (status, body) = post(
        "/shares/alice/",
        json!({"user": "bob", "scopes": ["admin:server_state"]}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&body),
        "Do not have permission to grant share with scope admin:server_state!server=alice/"
    );
    let (status, body) = post(
        "/shares/alice/",
        json!({"user": "bob", "scopes": ["access:servers!server=bob/"]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "!server=bob/ not allowed on sharing access:servers!server=bob/, only !server=alice/"
    );
    let (status, body) = post(
        "/shares/alice/",
        json!({"user": "bob", "scopes": ["access:servers!user=alice"]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Other people's servers.
    let (status, _) = post("/shares/bob/", json!({"user": "bob"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Validation.
    for (body, text) in [
        (json!({}), "Specify exactly one of `user` or `group`"),
        (
            json!({"user": ""}),
            "Specify exactly one of `user` or `group`",
        ),
        (
            json!({"user": "bob", "group": "team"}),
            "Expected exactly one of `user` or `group`, not both.",
        ),
        (json!({"user": "nobody"}), "No such user: nobody"),
        (json!({"group": "nope"}), "No such group: nope"),
        (
            json!({"user": "bob", "scopes": ["nope"]}),
            "\"Scope 'nope' for share does not exist\"",
        ),
    ] {
        let (status, reply) = post("/shares/alice/", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert_eq!(message(&reply), text, "{body}");
    }
    for body in [
        json!({"user": "bob", "expires_in": 60}),
        json!({"user": 5}),
        json!({"user": "bob", "scopes": "access:servers"}),
        json!(["bob"]),
    ] {
        let (status, reply) = post("/shares/alice/", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
    }
    let (status, body) = post("/shares/alice/nope", json!({"user": "bob"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "No such server: alice/nope");
    let (_, list) = hub.get("/shares/alice", Some(&alice)).await;
    assert_eq!(
        list["_pagination"]["total"], 0,
        "nothing was written: {list}"
    );

    // Sharing with someone by name needs read:users:name for them.
    let narrow = hub
        .user_with_scopes("alice", false, &["shares!user=alice"])
        .await;
    let (status, body) = hub
        .post("/shares/alice/", Some(&narrow), json!({"user": "bob"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&body),
        "Need scope 'read:users:name' to share with users by name"
    );
    let (status, body) = hub
        .post("/shares/alice/", Some(&narrow), json!({"group": "team"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&body),
        "Need scope 'read:groups:name' to share with groups by name"
    );
});

hub_test!(default_users_cannot_share, |hub| async move {
    // Without `shares` (not part of `self`), users cannot share, only read their shares.
    let alice = hub.user("alice", false).await;
    hub.user("bob", false).await;
    let (status, body) = hub
        .post("/shares/alice/", Some(&alice), json!({"user": "bob"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = hub.get("/shares/alice", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    // Admins can.
    let root = hub.user("root", true).await;
    let (status, body) = hub
        .post("/shares/alice/", Some(&root), json!({"user": "bob"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = hub.get("/shares/nobody", Some(&root)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], Value::Null);
    let (status, body) = hub.get("/shares/nobody/", Some(&root)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "No such server: nobody/");
});

hub_test!(pagination, config = CONFIG, |hub| async move {
    let alice = hub.user("alice", false).await;
    for who in ["u1", "u2", "u3"] {
        hub.user(who, false).await;
        let (status, _) = hub
            .post("/shares/alice/", Some(&alice), json!({ "user": who }))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, page) = hub.get("/shares/alice/?limit=2", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["_pagination"]["total"], 3);
    assert_eq!(page["_pagination"]["limit"], 2);
    assert_eq!(page["_pagination"]["next"]["offset"], 2);
    let next = page["_pagination"]["next"]["url"].as_str().unwrap();
    assert!(next.starts_with("http://"), "{next}");
    assert!(next.contains("/hub/api/shares/alice/?"), "{next}");
    assert!(next.contains("offset=2"), "{next}");
    let (_, rest) = hub
        .get("/shares/alice/?limit=2&offset=2", Some(&alice))
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["user"]["name"], "u3");
    assert_eq!(rest["_pagination"]["next"], Value::Null);
    // Without the Accept header: still the envelope, with the maximum page size.
    let (_, all) = hub.get("/shares/alice", Some(&alice)).await;
    assert_eq!(all["_pagination"]["limit"], 200);
    let (status, body) = hub.get("/shares/alice?limit=x", Some(&alice)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "Invalid argument type, offset and limit must be integers"
    );
});

hub_test!(
    tokens_can_carry_shared_access,
    config = CONFIG,
    |hub| async move {
        let alice = hub.user("alice", false).await;
        let bob = hub.user("bob", false).await;
        // Not held yet: refused.
        let (status, _) = hub
            .post(
                "/users/bob/tokens",
                Some(&bob),
                json!({"scopes": ["access:servers!server=alice/"]}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        hub.post("/shares/alice/", Some(&alice), json!({"user": "bob"}))
            .await;
        let (status, body) = hub
            .post(
                "/users/bob/tokens",
                Some(&bob),
                json!({"scopes": ["access:servers!server=alice/"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let narrow = Persona {
            name: "bob".into(),
            token: body["token"].as_str().unwrap().into(),
        };
        assert!(has_scope(hub, &narrow, "access:servers!server=alice/").await);
        patch(hub, "/shares/alice/", &alice, json!({"user": "bob"})).await;
        assert!(!has_scope(hub, &narrow, "access:servers!server=alice/").await);
    }
);

hub_test!(share_code_exchange, config = CONFIG, |hub| async move {
    let alice = hub.user("alice", false).await;
    let bob = hub.user("bob", false).await;
    let carol = hub.user("carol", false).await;
    let (status, body) = hub
        .post("/share-codes/alice/", Some(&alice), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let code = body["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 43);
    assert_eq!(
        body["accept_url"].as_str().unwrap(),
        format!("/hub/accept-share?code={code}")
    );
    assert_eq!(body["full_accept_url"], Value::Null);
    assert_eq!(body["scopes"], json!(["access:servers!server=alice/"]));
    assert_eq!(body["exchange_count"], 0);
    assert_eq!(body["last_exchanged_at"], Value::Null);
    assert_eq!(body["server"]["user"]["name"], "alice");
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sc_"), "{id}");
    let expires: DateTime<Utc> = body["expires_at"].as_str().unwrap().parse().unwrap();
    let left = (expires - Utc::now()).num_seconds();
    assert!((86_300..=86_400).contains(&left), "{left}");

    // Stored hashed only.
    let rows = all_codes(hub).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].prefix, &code[..4]);
    assert!(!rows[0].hashed.contains(&code));
    assert!(rows[0].hashed.starts_with("sha512:1:"));

    // Listed without the code.
    for path in ["/share-codes/alice", "/share-codes/alice/"] {
        let (status, list) = hub.get(path, Some(&alice)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(list["_pagination"]["total"], 1);
        assert_eq!(list["items"][0]["id"], json!(id));
        assert!(list["items"][0].get("code").is_none());
        assert!(list["items"][0].get("accept_url").is_none());
    }
    let (status, _) = hub.get("/share-codes/alice", Some(&bob)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // What the accept page shows.
    let pending = lookup_code(&hub.state, &code)
        .await
        .unwrap()
        .expect("valid");
    assert_eq!(pending.owner, "alice");
    assert_eq!(pending.server, "");
    assert!(!pending.ready);
    assert_eq!(pending.scopes, ["access:servers!server=alice/"]);
    assert!(lookup_code(&hub.state, "nope").await.unwrap().is_none());

    // Exchanges: every acceptance before expiry counts; the owner cannot accept.
    let bob_row = db_user(hub, "bob").await;
    let accepted = accept_code(&hub.state, &bob_row, &code).await.unwrap();
    assert_eq!(accepted.owner, "alice");
    assert_eq!(accepted.server, "");
    assert_eq!(accepted.share["user"]["name"], "bob");
    assert_eq!(
        accepted.share["scopes"],
        json!(["access:servers!server=alice/"])
    );
    assert!(has_scope(hub, &bob, "access:servers!server=alice/").await);
    accept_code(&hub.state, &bob_row, &code).await.unwrap();
    let carol_row = db_user(hub, "carol").await;
    accept_code(&hub.state, &carol_row, &code).await.unwrap();
    assert!(has_scope(hub, &carol, "access:servers!server=alice/").await);
    let alice_row = db_user(hub, "alice").await;
    assert!(matches!(
        accept_code(&hub.state, &alice_row, &code).await,
        Err(AcceptError::OwnServer)
    ));
    assert!(matches!(
        accept_code(&hub.state, &bob_row, "not-a-code").await,
        Err(AcceptError::NotFound)
    ));
    let (_, list) = hub.get("/share-codes/alice/", Some(&alice)).await;
    assert_eq!(list["items"][0]["exchange_count"], 3, "{list}");
    assert!(!list["items"][0]["last_exchanged_at"].is_null());
    let (_, shares) = hub.get("/shares/alice/", Some(&alice)).await;
    assert_eq!(shares["_pagination"]["total"], 2);

    // Revoking the code stops further exchanges, not the shares already made.
    let (status, _) = hub
        .delete(&format!("/share-codes/alice/?id={id}"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(matches!(
        accept_code(&hub.state, &bob_row, &code).await,
        Err(AcceptError::NotFound)
    ));
    assert!(has_scope(hub, &bob, "access:servers!server=alice/").await);
    let (status, body) = hub
        .delete(&format!("/share-codes/alice/?id={id}"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), format!("No code found matching id={id}"));
    let (status, body) = hub
        .delete("/share-codes/alice/?id=junk", Some(&alice))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "No code found matching id=junk");

    // By code, and all at once.
    let (_, second) = hub
        .post("/share-codes/alice/", Some(&alice), json!({}))
        .await;
    let second = second["code"].as_str().unwrap().to_owned();
    let (status, body) = hub
        .delete("/share-codes/alice/?code=bogus-code", Some(&alice))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "No matching code found");
    let (status, _) = hub
        .delete(&format!("/share-codes/alice/?code={second}"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(lookup_code(&hub.state, &second).await.unwrap().is_none());
    for _ in 0..2 {
        hub.post("/share-codes/alice/", Some(&alice), json!({}))
            .await;
    }
    let (status, _) = hub.delete("/share-codes/alice/", Some(&alice)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(all_codes(hub).await.is_empty());
});

hub_test!(share_code_rules, config = CONFIG, |hub| async move {
    let alice = hub.user("alice", false).await;
    let bob = hub.user("bob", false).await;
    let (status, body) = hub
        .post(
            "/share-codes/alice/",
            Some(&alice),
            json!({"expires_in": 60, "scopes": ["read:servers"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scopes"], json!(["read:servers!server=alice/"]));
    let left = (body["expires_at"]
        .as_str()
        .unwrap()
        .parse::<DateTime<Utc>>()
        .unwrap()
        - Utc::now())
    .num_seconds();
    assert!((0..=60).contains(&left));
    for body in [
        json!({"expires_in": 59}),
        json!({"expires_in": 31_536_001}),
        json!({"expires_in": "abc"}),
        json!({"expires_in": null}),
        json!({"user": "bob"}),
        json!({"scopes": ["nope"]}),
        json!({"scopes": ["access:servers!server=bob/"]}),
    ] {
        let (status, reply) = hub
            .post("/share-codes/alice/", Some(&alice), body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
    }
    let (status, _) = hub
        .post(
            "/share-codes/alice/",
            Some(&alice),
            json!({"scopes": ["admin:server_state"]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = hub.post("/share-codes/bob/", Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = hub
        .post("/share-codes/alice", Some(&alice), json!({}))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, body) = hub
        .post("/share-codes/alice/nope", Some(&alice), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "No such server: alice/nope");
    assert_eq!(
        all_codes(hub).await.len(),
        1,
        "refused requests wrote nothing"
    );

    // An expired code cannot be exchanged, nor is it listed.
    let alice_row = db_user(hub, "alice").await;
    let code = hub::identity::tokens::new_share_code();
    let hashed = hub::identity::tokens::HashedToken::new(&code, 1).to_string();
    let prefix = code[..4].to_owned();
    hub.state
        .db
        .run(move |conn| {
            let spawner = spawners::find_or_insert(conn, alice_row.id, "")?;
            share_codes::insert(
                conn,
                &share_codes::NewShareCode {
                    spawner_id: spawner.id,
                    prefix: &prefix,
                    hashed: &hashed,
                    scopes: &["access:servers!server=alice/".to_owned()],
                    expires_at: Some(Utc::now().naive_utc() - chrono::TimeDelta::seconds(1)),
                },
            )
        })
        .await
        .unwrap();
    let bob_row = db_user(hub, "bob").await;
    assert!(matches!(
        accept_code(&hub.state, &bob_row, &code).await,
        Err(AcceptError::NotFound)
    ));
    assert!(lookup_code(&hub.state, &code).await.unwrap().is_none());
    assert!(!has_scope(hub, &bob, "access:servers!server=alice/").await);
    let (_, list) = hub.get("/share-codes/alice/", Some(&alice)).await;
    assert_eq!(list["_pagination"]["total"], 1);
});

hub_test!(
    full_urls_with_public_url,
    config = "[hub]\npublic_url = \"https://hub.example.org/\"\n",
    |hub| async move {
        let root = hub.user("root", true).await;
        hub.user("bob", false).await;
        let (status, body) = hub.post("/share-codes/root/", Some(&root), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let code = body["code"].as_str().unwrap();
        assert_eq!(
            body["full_accept_url"],
            json!(format!(
                "https://hub.example.org/hub/accept-share?code={code}"
            ))
        );
        assert_eq!(
            body["server"]["full_url"],
            "https://hub.example.org/user/root/"
        );
        let (_, share) = hub
            .post("/shares/root/", Some(&root), json!({"user": "bob"}))
            .await;
        assert_eq!(
            share["server"]["full_url"],
            "https://hub.example.org/user/root/"
        );
    }
);
