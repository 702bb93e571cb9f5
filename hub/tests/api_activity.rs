//! `POST /users/{name}/activity` (hub-protocol §8.1): what single-user servers send, the
//! validation messages, time zones, keeping the maximum, scopes, cookies.

mod common;

use chrono::{NaiveDateTime, TimeDelta, Utc};
use common::{Persona, TestHub};
use hub::db::models::{api_tokens, oauth_clients, spawners, users};
use hub::identity::tokens::{self, HashedToken};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn ts(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").expect("test setup")
}

/// `(user.last_activity, {server: last_activity})` from the database.
async fn activity(
    hub: &TestHub,
    user: &str,
) -> (Option<NaiveDateTime>, Vec<(String, Option<NaiveDateTime>)>) {
    let user = user.to_owned();
    hub.state
        .db
        .run(move |conn| {
            let u = users::find_by_name(conn, &user)?.expect("user");
            let servers = spawners::list_for_user(conn, u.id)?
                .into_iter()
                .map(|s| (s.name, s.last_activity))
                .collect();
            Ok((u.last_activity, servers))
        })
        .await
        .expect("test setup")
}

/// A token like a single-user server's own: note `Server at /user/<name>/`, so using it does
/// not count as the user's activity.
async fn server_token(hub: &TestHub, name: &str) -> Persona {
    hub.user_with_scopes(name, false, &[]).await;
    let token = tokens::new_api_token();
    let hashed = HashedToken::new(&token, tokens::GENERATED_ROUNDS).to_string();
    let prefix = tokens::token_prefix(&token).to_owned();
    let n = name.to_owned();
    hub.state
        .db
        .run(move |conn| {
            let user = users::find_by_name(conn, &n)?.expect("user");
            let note = format!("Server at /user/{n}/");
            let scopes = vec![
                "users:activity!user".to_owned(),
                format!("access:servers!server={n}/"),
            ];
            api_tokens::insert(
                conn,
                &api_tokens::NewApiToken {
                    prefix: &prefix,
                    hashed: &hashed,
                    owner: api_tokens::TokenOwner::User(user.id),
                    spawner_id: None,
                    client_id: oauth_clients::JUPYTERHUB_CLIENT_ID,
                    session_id: None,
                    note: &note,
                    scopes: &scopes,
                    expires_at: None,
                },
            )?;
            Ok(())
        })
        .await
        .expect("test setup");
    Persona {
        name: name.to_owned(),
        token,
    }
}

async fn add_server(hub: &TestHub, user: &str, server: &str) {
    let (user, server) = (user.to_owned(), server.to_owned());
    hub.state
        .db
        .run(move |conn| {
            let u = users::find_by_name(conn, &user)?.expect("user");
            spawners::find_or_insert(conn, u.id, &server)?;
            Ok(())
        })
        .await
        .expect("test setup");
}

hub_test!(server_token_posts_activity, |hub| async move {
    let server = server_token(hub, "alice").await;
    let (status, headers, body) = hub
        .call(
            Method::POST,
            "/users/alice/activity",
            Some(&server),
            Some(json!({
                "servers": {"": {"last_activity": "2024-03-01T10:00:00.123456Z"}},
                "last_activity": "2024-03-01T10:00:00.123456Z",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.is_null(), "empty body");
    assert_eq!(headers["content-type"], "application/json");
    let (user, servers) = activity(hub, "alice").await;
    assert_eq!(user, Some(ts("2024-03-01 10:00:00.123456")));
    assert_eq!(
        servers,
        vec![(String::new(), Some(ts("2024-03-01 10:00:00.123456")))]
    );

    // Older reports change nothing; newer ones move forward; offsets become UTC.
    hub.post(
        "/users/alice/activity",
        Some(&server),
        json!({"last_activity": "2024-02-01T00:00:00Z", "servers": {"": {"last_activity": "2024-02-01T00:00:00"}}}),
    )
    .await;
    let (user, servers) = activity(hub, "alice").await;
    assert_eq!(user, Some(ts("2024-03-01 10:00:00.123456")));
    assert_eq!(servers[0].1, Some(ts("2024-03-01 10:00:00.123456")));
    let (status, _) = hub
        .post(
            "/users/alice/activity",
            Some(&server),
            json!({"servers": {"": {"last_activity": "2024-03-01T14:30:00+02:00"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (user, servers) = activity(hub, "alice").await;
    assert_eq!(user, Some(ts("2024-03-01 10:00:00.123456")), "servers only");
    assert_eq!(servers[0].1, Some(ts("2024-03-01 12:30:00")));

    // The model shows it as JupyterHub writes timestamps.
    let root = hub.user("root", true).await;
    let (_, model) = hub.get("/users/alice", Some(&root)).await;
    assert_eq!(model["last_activity"], "2024-03-01T10:00:00.123456Z");
});

hub_test!(named_servers_and_unknown_names, |hub| async move {
    let alice = hub.user("alice", false).await;
    add_server(hub, "alice", "gpu").await;
    let (status, body) = hub
        .post(
            "/users/alice/activity",
            Some(&alice),
            json!({"servers": {"gpu": {"last_activity": "2024-01-01T00:00:00Z"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, servers) = activity(hub, "alice").await;
    assert_eq!(
        servers,
        vec![("gpu".to_owned(), Some(ts("2024-01-01 00:00:00")))]
    );

    // An unknown server fails the whole request: nothing is written.
    let (status, body) = hub
        .post(
            "/users/alice/activity",
            Some(&alice),
            json!({
                "last_activity": "2024-05-01T00:00:00Z",
                "servers": {"gpu": {"last_activity": "2024-05-01T00:00:00Z"}, "nope": {"last_activity": "2024-05-01T00:00:00Z"}},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "No such server 'nope' for user alice");
    let (user, servers) = activity(hub, "alice").await;
    assert_ne!(user, Some(ts("2024-05-01 00:00:00")));
    assert_eq!(
        servers,
        vec![("gpu".to_owned(), Some(ts("2024-01-01 00:00:00")))]
    );
});

hub_test!(validation_messages, |hub| async move {
    let alice = hub.user("alice", false).await;
    let shape = "servers must be a dict of the form {server_name: {last_activity: timestamp}}";
    let neither = "body must contain at least one of `last_activity` or `servers`";
    let future = (Utc::now() + TimeDelta::minutes(90)).naive_utc();
    let future_text = future.format("%Y-%m-%dT%H:%M:%S").to_string();
    let cases: Vec<(Option<Value>, String)> = vec![
        (Some(json!({})), neither.into()),
        (
            Some(json!({"last_activity": "", "servers": {}})),
            neither.into(),
        ),
        (Some(json!({"other": 1})), neither.into()),
        (Some(json!([1])), "body must be a json dict".into()),
        (Some(json!("x")), "body must be a json dict".into()),
        (None, "body must be a json dict".into()),
        (Some(json!({"servers": [1]})), shape.into()),
        (Some(json!({"servers": {"": "x"}})), shape.into()),
        (Some(json!({"servers": {"": {}}})), shape.into()),
        (
            Some(json!({"last_activity": "x"})),
            "Not a valid timestamp: 'x'".into(),
        ),
        (
            Some(json!({"last_activity": 5})),
            "Not a valid timestamp: 5".into(),
        ),
        (
            Some(json!({"servers": {"": {"last_activity": null}}})),
            "Not a valid timestamp: None".into(),
        ),
        (
            Some(json!({"last_activity": "2024-13-45T99:00:00Z"})),
            "Not a valid timestamp: '2024-13-45T99:00:00Z'".into(),
        ),
        (
            Some(json!({"last_activity": format!("{future_text}Z")})),
            format!("Rejecting activity from more than an hour in the future: {future_text}Z"),
        ),
    ];
    for (body, message) in cases {
        let (status, _, reply) = hub
            .call(
                Method::POST,
                "/users/alice/activity",
                Some(&alice),
                body.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}: {reply}");
        assert_eq!(reply["message"], json!(message), "{body:?}");
        assert_eq!(reply["status"], 400);
    }
    let (status, reply) = hub
        .post("/users/alice/activity", Some(&alice), json!(null))
        .await;
    assert_eq!(
        (status, reply["message"].clone()),
        (StatusCode::BAD_REQUEST, json!("body must be a json dict"))
    );
    // Malformed JSON.
    let resp = hub
        .client
        .post(hub.api_url("/users/alice/activity"))
        .header("Authorization", format!("token {}", alice.token))
        .header("Content-Type", "application/json")
        .body("{\"last_activity\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["message"], "Invalid JSON in body of request");
    // Up to 59 minutes ahead is tolerated (clock skew).
    let soon = (Utc::now() + TimeDelta::minutes(30)).naive_utc();
    let (status, reply) = hub
        .post(
            "/users/alice/activity",
            Some(&alice),
            json!({"last_activity": soon.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (user, _) = activity(hub, "alice").await;
    assert!(
        user.unwrap() > Utc::now().naive_utc(),
        "kept the future value"
    );
});

hub_test!(scopes_403_vs_404, |hub| async move {
    let root = hub.user("root", true).await;
    let alice = hub.user("alice", false).await;
    hub.user("bob", false).await;
    let body = json!({"last_activity": "2024-01-01T00:00:00Z"});
    let (status, reply) = hub
        .post("/users/bob/activity", Some(&alice), body.clone())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply["message"],
        "No access to resources or resources not found"
    );
    let (status, reply2) = hub
        .post("/users/ghost/activity", Some(&alice), body.clone())
        .await;
    assert_eq!((status, reply2), (StatusCode::NOT_FOUND, reply));
    let reader = hub
        .user_with_scopes("alice", false, &["read:users!user=alice"])
        .await;
    let (status, reply) = hub
        .post("/users/alice/activity", Some(&reader), body.clone())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply["message"],
        "Action is not authorized with current scopes; requires any of [users:activity]"
    );
    let (status, reply) = hub
        .post("/users/ghost/activity", Some(&root), body.clone())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(reply["message"], "No such user: 'ghost'");
    let (status, reply) = hub.post("/users/alice/activity", None, body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(reply["message"], "Missing or invalid credentials.");
    // An admin may report for anyone.
    let (status, _) = hub.post("/users/bob/activity", Some(&root), body).await;
    assert_eq!(status, StatusCode::OK);
    let (user, _) = activity(hub, "bob").await;
    assert_eq!(user, Some(ts("2024-01-01 00:00:00")));
});

hub_test!(cookie_activity_needs_xsrf, |hub| async move {
    let browser = hub.browser("alice").await;
    let body = json!({"last_activity": "2024-01-01T00:00:00Z"});
    let (status, reply) = browser
        .without_xsrf(Method::POST, "/users/alice/activity", Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(reply["message"], "'_xsrf' argument missing from POST");
    let (user, _) = activity(hub, "alice").await;
    assert_ne!(user, Some(ts("2024-01-01 00:00:00")));
    let (status, _) = browser
        .with_xsrf(Method::POST, "/users/alice/activity", Some(body))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (user, _) = activity(hub, "alice").await;
    assert!(user.is_some());
});
