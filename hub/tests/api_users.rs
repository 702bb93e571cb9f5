//! `/users`, `/users/{name}`, `/users/{name}/admin-access`: listing (pagination, filters, sort,
//! scope-filtered lists, field gating), creating, changing and deleting users; 403 vs 404; the
//! admin-escalation advisories as HTTP attacks; cookie authentication with and without `_xsrf`;
//! malformed input.

mod common;

use std::collections::BTreeSet;

use common::{Persona, TestHub, Xsrf};
use hub::db::models::spawners::{self, ServerAddress, ServerPhase};
use hub::db::models::{groups, roles, users};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Roles and groups for the permission tests.
const RBAC: &str = r#"
[groups.staff]
users = ["sam", "sue"]

[groups.admins]
users = []

[[roles]]
name = "useradmin"
scopes = ["admin:users", "list:users"]
users = ["carol"]

[[roles]]
name = "groupadmin"
scopes = ["groups", "list:users", "read:users"]
users = ["gina"]

[[roles]]
name = "staffadmin"
scopes = ["admin:users!group=staff", "list:users!group=staff", "admin:groups!group=staff"]
users = ["fred"]

[[roles]]
name = "lister"
scopes = ["list:users!group=staff", "list:users!user=root"]
users = ["lisa"]

[[roles]]
name = "badlister"
scopes = ["list:users!server=sam/"]
users = ["bart"]

[[roles]]
name = "serveradmin"
scopes = ["admin:servers", "read:users"]

[[roles]]
name = "culler"
scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
services = ["culler"]

[[services]]
name = "culler"
api_token = "culler-token-123456"
"#;

fn culler() -> Persona {
    Persona {
        name: "culler".into(),
        token: "culler-token-123456".into(),
    }
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|u| u["name"].as_str().expect("test setup").to_owned())
        .collect()
}

fn keys(model: &Value) -> BTreeSet<String> {
    model
        .as_object()
        .expect("test setup")
        .keys()
        .cloned()
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// GET with `Accept: application/jupyterhub-pagination+json`.
async fn paged(hub: &TestHub, path: &str, who: &Persona) -> (StatusCode, Value) {
    let resp = hub
        .client
        .get(hub.api_url(path))
        .header("Authorization", format!("token {}", who.token))
        .header("Accept", "application/jupyterhub-pagination+json")
        .send()
        .await
        .expect("test setup");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn patch(hub: &TestHub, path: &str, who: &Persona, body: Value) -> (StatusCode, Value) {
    let (s, _, v) = hub.call(Method::PATCH, path, Some(who), Some(body)).await;
    (s, v)
}

/// Sends a raw body with `Content-Type: application/json`.
async fn raw(
    hub: &TestHub,
    method: Method,
    path: &str,
    who: &Persona,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let resp = hub
        .client
        .request(method, hub.api_url(path))
        .header("Authorization", format!("token {}", who.token))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("test setup");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("test setup");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn user_row(hub: &TestHub, name: &str) -> Option<users::User> {
    let name = name.to_owned();
    hub.state
        .db
        .run(move |conn| users::find_by_name(conn, &name))
        .await
        .expect("test setup")
}

/// Creates `n` users `<prefix>10000`, `<prefix>10001`… with one SQL statement.
async fn insert_users(hub: &TestHub, prefix: &str, n: usize) {
    use diesel::RunQueryDsl;
    let sql = format!(
        "INSERT INTO users (name, admin, created, cookie_id) \
         WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {last}) \
         SELECT '{prefix}' || (10000 + i), false, CURRENT_TIMESTAMP, 'cookie-{prefix}-' || i FROM seq",
        last = n - 1
    );
    hub.state
        .db
        .run(move |conn| diesel::sql_query(sql).execute(conn))
        .await
        .expect("test setup");
}

/// Puts server `server` of `user` into `phase` directly in the database.
async fn set_server(hub: &TestHub, user: &str, server: &str, phase: ServerPhase) {
    let (user, server) = (user.to_owned(), server.to_owned());
    hub.state
        .db
        .run(move |conn| {
            let u = users::find_by_name(conn, &user)?.expect("user");
            let s = spawners::find_or_insert(conn, u.id, &server)?;
            spawners::transition(conn, s.id, &ServerPhase::ALL, phase, hub::db::now())?;
            Ok(())
        })
        .await
        .expect("test setup");
}

async fn set_activity(hub: &TestHub, user: &str, ts: &str) {
    let user = user.to_owned();
    let at = chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S").expect("test setup");
    hub.state
        .db
        .run(move |conn| {
            use diesel::prelude::*;
            use hub::db::schema::users as table;
            // Set outright, even backwards (touch_last_activity only moves forward).
            diesel::update(table::table.filter(table::name.eq(&user)))
                .set(table::last_activity.eq(Some(at)))
                .execute(conn)
                .map(drop)
        })
        .await
        .expect("test setup");
}

// === GET /users ===

hub_test!(list_users_full_model_for_admin, |hub| async move {
    let root = hub.user("root", true).await;
    hub.user("alice", false).await;
    let (status, body) = hub.get("/users", Some(&root)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(names(&body), ["root", "alice"]);
    let alice = &body[1];
    assert_eq!(
        keys(alice),
        set(&[
            "kind",
            "name",
            "admin",
            "roles",
            "groups",
            "server",
            "pending",
            "created",
            "last_activity",
            "user_info",
            "auth_state",
            "servers"
        ])
    );
    assert_eq!(alice["kind"], "user");
    assert_eq!(alice["admin"], false);
    assert_eq!(alice["roles"], json!(["user"]));
    assert_eq!(body[0]["roles"], json!(["admin", "user"]));
    assert_eq!(alice["servers"], json!({}));
    assert!(
        alice["auth_state"].is_null(),
        "lists never carry auth_state"
    );
    assert!(alice["created"].as_str().unwrap().ends_with('Z'));

    // No credential, or one without list:users.
    let (status, body) = hub.get("/users", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["message"], "Missing or invalid credentials.");
    let alice = hub.user("alice", false).await;
    let (status, body) = hub.get("/users", Some(&alice)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "Action is not authorized with current scopes; requires any of [list:users]"
    );
});

hub_test!(pagination_envelope_and_next_url, |hub| async move {
    let root = hub.user("root", true).await;
    for n in ["u1", "u2", "u3", "u4", "u5"] {
        hub.user(n, false).await;
    }
    let (status, body) = paged(hub, "/users?limit=2&sort=id", &root).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(names(&body["items"]), ["root", "u1"]);
    let p = &body["_pagination"];
    assert_eq!(
        (p["offset"].clone(), p["limit"].clone()),
        (json!(0), json!(2))
    );
    assert_eq!(p["total"], 6);
    assert_eq!(p["next"]["offset"], 2);
    assert_eq!(p["next"]["limit"], 2);
    let next = p["next"]["url"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{}/hub/api/users?", hub.origin)),
        "{next}"
    );
    assert!(next.contains("sort=id") && next.contains("offset=2") && next.contains("limit=2"));

    // Follow `next` to the end, as the culler does.
    let mut seen = names(&body["items"]);
    let mut url = next.to_owned();
    loop {
        let resp = hub
            .client
            .get(&url)
            .header("Authorization", format!("token {}", root.token))
            .header(
                "Accept",
                "application/json, application/jupyterhub-pagination+json",
            )
            .send()
            .await
            .unwrap();
        let page: Value = resp.json().await.unwrap();
        seen.extend(names(&page["items"]));
        match page["_pagination"]["next"]["url"].as_str() {
            Some(u) => url = u.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["root", "u1", "u2", "u3", "u4", "u5"]);

    // Default page size 50 with the envelope; past the end; bad values.
    let (_, body) = paged(hub, "/users", &root).await;
    assert_eq!(body["_pagination"]["limit"], 50);
    assert!(body["_pagination"]["next"].is_null());
    let (_, body) = paged(hub, "/users?offset=10", &root).await;
    assert_eq!(body["items"], json!([]));
    assert!(body["_pagination"]["next"].is_null());
    let (status, body) = paged(hub, "/users?limit=x", &root).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "Invalid argument type, offset and limit must be integers"
    );
    // Without the Accept header: a bare list, offset and limit still apply.
    let (_, body) = hub.get("/users?offset=1&limit=2", Some(&root)).await;
    assert_eq!(names(&body), ["u1", "u2"]);
});

hub_test!(unpaginated_lists_stop_at_200, |hub| async move {
    let root = hub.user("root", true).await;
    insert_users(hub, "bulk", 205).await;
    let (status, body) = hub.get("/users", Some(&root)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_array().unwrap().len(), 200);
    let (_, body) = paged(hub, "/users?limit=1000", &root).await;
    assert_eq!(body["_pagination"]["limit"], 200);
    assert_eq!(body["_pagination"]["total"], 206);
    assert_eq!(body["items"].as_array().unwrap().len(), 200);
    assert_eq!(body["_pagination"]["next"]["offset"], 200);
});

hub_test!(many_users_list_quickly, |hub| async move {
    let root = hub.user("root", true).await;
    insert_users(hub, "many", 10_000).await;
    set_activity(hub, "many19999", "2030-01-01 00:00:00").await;
    let started = std::time::Instant::now();
    let (status, body) = paged(hub, "/users?sort=-last_activity&limit=200", &root).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["_pagination"]["total"], 10_001);
    assert_eq!(body["items"][0]["name"], "many19999");
    let (_, body) = paged(hub, "/users?offset=9990&name_filter=MANY", &root).await;
    assert_eq!(names(&body["items"]).len(), 10);
    let (_, body) = paged(hub, "/users?state=inactive&limit=5", &root).await;
    assert_eq!(body["_pagination"]["total"], 10_001);
    let elapsed = started.elapsed();
    assert!(
        elapsed < std::time::Duration::from_secs(10),
        "listing 10k users took {elapsed:?}"
    );
});

hub_test!(filters_and_sort, |hub| async move {
    let root = hub.user("root", true).await;
    for n in ["Bob", "alice", "carl", "al_x"] {
        hub.user(&n.to_lowercase(), false).await;
    }
    set_server(hub, "alice", "", ServerPhase::Running).await;
    set_server(hub, "bob", "", ServerPhase::Spawning).await;
    set_server(hub, "carl", "", ServerPhase::Stopped).await;
    // After the servers: a start counts as activity.
    set_activity(hub, "bob", "2024-01-01 00:00:00").await;
    set_activity(hub, "alice", "2024-02-01 00:00:00").await;

    let get = |q: &'static str| {
        let root = root.clone();
        let hub = &hub;
        async move { hub.get(&format!("/users{q}"), Some(&root)).await }
    };
    assert_eq!(
        names(&get("?sort=name").await.1),
        ["al_x", "alice", "bob", "carl", "root"]
    );
    assert_eq!(
        names(&get("?sort=-name").await.1),
        ["root", "carl", "bob", "alice", "al_x"]
    );
    // Never-active users sort as oldest; descending puts them last.
    // root's own requests make it the most recent.
    let recent = names(&get("?sort=-last_activity").await.1);
    assert_eq!(&recent[..3], ["root", "alice", "bob"]);
    let oldest = names(&get("?sort=last_activity").await.1);
    assert_eq!(&oldest[2..], ["bob", "alice", "root"]);
    // LIKE wildcards are literal; the match ignores case.
    assert_eq!(names(&get("?name_filter=AL").await.1), ["alice", "al_x"]);
    assert_eq!(names(&get("?name_filter=l_").await.1), ["al_x"]);
    assert_eq!(names(&get("?state=active").await.1), ["bob", "alice"]);
    assert_eq!(names(&get("?state=ready").await.1), ["alice"]);
    assert_eq!(
        names(&get("?state=inactive").await.1),
        ["root", "carl", "al_x"]
    );
    assert_eq!(names(&get("?state=").await.1).len(), 5);

    let (status, body) = get("?state=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "Unrecognized state filter: 'bogus'");
    let (status, body) = get("?sort=created").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "sort must be 'id', 'name', or 'last_activity', not 'created'"
    );
    let (status, _) = get("?sort=-").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Servers: active ones only, unless include_stopped_servers (any value but 0/false).
    let (_, body) = get("?name_filter=carl").await;
    assert_eq!(body[0]["servers"], json!({}));
    for q in [
        "?name_filter=carl&include_stopped_servers",
        "?name_filter=carl&include_stopped_servers=1",
    ] {
        let (_, body) = hub.get(&format!("/users{q}"), Some(&root)).await;
        assert_eq!(body[0]["servers"][""]["stopped"], true, "{q}");
    }
    let (_, body) = get("?name_filter=carl&include_stopped_servers=false").await;
    assert_eq!(body[0]["servers"], json!({}));
    let (_, body) = get("?name_filter=alice").await;
    let server = &body[0]["servers"][""];
    assert_eq!(server["ready"], true);
    assert_eq!(server["url"], "/user/alice/");
    assert_eq!(body[0]["server"], "/user/alice/");
    let (_, body) = get("?name_filter=bob").await;
    assert_eq!(body[0]["pending"], "spawn");
    assert!(body[0]["server"].is_null());
});

hub_test!(filtered_list_scopes, config = RBAC, |hub| async move {
    let lisa = hub.user("lisa", false).await;
    hub.user("root", true).await;
    hub.user("zed", false).await;
    let (status, body) = paged(hub, "/users", &lisa).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut listed = names(&body["items"]);
    listed.sort();
    assert_eq!(listed, ["root", "sam", "sue"]);
    assert_eq!(
        body["_pagination"]["total"], 3,
        "totals count only what is visible"
    );
    // list:users implies read:users:name only.
    assert_eq!(
        keys(&body["items"][0]),
        set(&["kind", "name", "admin", "user_info"])
    );
    // A filter kind the list cannot apply is refused, not widened.
    let bart = hub.user("bart", false).await;
    let (status, body) = hub.get("/users", Some(&bart)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"status": 403, "message": null}));
});

hub_test!(
    culler_sees_exactly_its_fields,
    config = RBAC,
    |hub| async move {
        hub.user("alice", false).await;
        set_server(hub, "alice", "", ServerPhase::Running).await;
        let (status, body) = paged(hub, "/users?state=ready", &culler()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(names(&body["items"]), ["alice"]);
        let alice = &body["items"][0];
        assert_eq!(
            keys(alice),
            set(&[
                "kind",
                "name",
                "admin",
                "user_info",
                "last_activity",
                "servers"
            ])
        );
        assert!(alice.get("created").is_none());
        let server = &alice["servers"][""];
        assert_eq!(server["ready"], true);
        assert!(server.get("state").is_none(), "no admin:server_state");
        let (status, _) = hub.get("/users?state=inactive", Some(&culler())).await;
        assert_eq!(status, StatusCode::OK);
    }
);

// === GET /users/{name} ===

hub_test!(
    get_user_403_vs_404,
    config = "[[services]]\nname = \"hubinfo\"\napi_token = \"hubinfo-token-123456\"\n[[roles]]\nname = \"hubinfo\"\nscopes = [\"read:hub\"]\nservices = [\"hubinfo\"]\n",
    |hub| async move {
        let root = hub.user("root", true).await;
        let alice = hub.user("alice", false).await;
        hub.user("bob", false).await;
        let (status, body) = hub.get("/users/alice", Some(&alice)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["name"], "alice");
        assert!(body.get("auth_state").is_none(), "no admin:auth_state");
        // Held only for other resources: the same 404 for "exists" and "does not exist".
        let (status, other) = hub.get("/users/bob", Some(&alice)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, missing) = hub.get("/users/nobody", Some(&alice)).await;
        assert_eq!(other, missing);
        assert_eq!(
            other["message"],
            "No access to resources or resources not found"
        );
        // A user token always identifies its owner (read:users:name!user=alice): 404 above. A
        // credential without any form of the scopes gets 403.
        let service = Persona {
            name: "hubinfo".into(),
            token: "hubinfo-token-123456".into(),
        };
        let (status, body) = hub.get("/users/bob", Some(&service)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body["message"],
            "Action is not authorized with current scopes; requires any of [read:users, read:users:name, read:servers, read:users:groups, read:users:activity, read:roles:users]"
        );
        // Admin: a missing user is a bare 404; the model has auth_state.
        let (status, body) = hub.get("/users/nobody", Some(&root)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, json!({"status": 404, "message": null}));
        let (_, body) = hub.get("/users/alice", Some(&root)).await;
        assert!(body["auth_state"].is_null() && body.get("auth_state").is_some());
        // Percent-encoded names.
        hub.user("a b@x", false).await;
        let (status, body) = hub.get("/users/a%20b@x", Some(&root)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["name"], "a b@x");
    }
);

// === POST /users ===

hub_test!(bulk_create_rules, |hub| async move {
    let root = hub.user("root", true).await;
    let (status, body) = hub
        .post(
            "/users",
            Some(&root),
            json!({"usernames": ["Alice", "bob"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(names(&body), ["alice", "bob"]);
    assert_eq!(body[0]["admin"], false);
    let (status, body) = hub
        .post(
            "/users",
            Some(&root),
            json!({"usernames": ["alice", "BOB"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["message"], "All 2 users already exist");
    // Existing names are skipped when at least one is new.
    let (status, body) = hub
        .post(
            "/users",
            Some(&root),
            json!({"usernames": ["alice", "carl", "carl"], "admin": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(names(&body), ["carl"]);
    assert_eq!(body[0]["admin"], true);
    // The default server record exists from creation on.
    let (_, body) = hub
        .get("/users/carl?include_stopped_servers", Some(&root))
        .await;
    assert_eq!(body["servers"][""]["stopped"], true);

    for (payload, message) in [
        (json!({"usernames": [" x"]}), "Invalid username:  x"),
        (
            json!({"usernames": ["a/b", "..", "ok"]}),
            "Invalid usernames: a/b, ..",
        ),
        (json!({}), "Must specify at least one user to create"),
        (
            json!({"usernames": []}),
            "Must specify at least one user to create",
        ),
        (
            json!({"admin": true}),
            "Must specify at least one user to create",
        ),
        (json!(["a"]), "Must specify at least one user to create"),
        (
            json!({"usernames": ["d"], "admin": "yes"}),
            "user.admin must be <class 'bool'>, not: <class 'str'>",
        ),
        (
            json!({"usernames": ["d"], "nope": 1}),
            "Invalid JSON keys: {'nope': 1}",
        ),
        (
            json!({"usernames": "dd"}),
            "usernames must be <class 'list'>, not: <class 'str'>",
        ),
        (
            json!({"usernames": ["d", 5]}),
            "usernames must be a list of <class 'str'>, not: <class 'int'>",
        ),
    ] {
        let (status, body) = hub.post("/users", Some(&root), payload.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{payload}");
        assert_eq!(body["message"], message, "{payload}");
        assert_eq!(body["status"], 400);
    }
    for name in ["ok", "d", "dd"] {
        assert!(user_row(hub, name).await.is_none(), "{name} must not exist");
    }
    let (status, body) = hub.post("/users", None, json!({"usernames": ["z"]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["message"], "Missing or invalid credentials.");
});

// === POST /users/{name} ===

hub_test!(create_single_user, |hub| async move {
    let root = hub.user("root", true).await;
    let (status, body) = hub.post("/users/dave", Some(&root), json!(null)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "dave");
    assert_eq!(body["admin"], false);
    let (status, body) = hub.post("/users/dave", Some(&root), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["message"], "User dave already exists");
    let (status, body) = hub
        .post("/users/Eve", Some(&root), json!({"admin": true}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        (body["name"].clone(), body["admin"].clone()),
        (json!("eve"), json!(true))
    );
    let (status, body) = hub.post("/users/Eve", Some(&root), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = hub
        .post("/users/frank", Some(&root), json!({"admin": 1}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "user.admin must be <class 'bool'>, not: <class 'int'>"
    );
    let (status, body) = hub.post("/users/%20frank", Some(&root), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "Invalid username:  frank");
    assert!(user_row(hub, "frank").await.is_none());
});

// === PATCH /users/{name} ===

hub_test!(patch_user_fields, config = RBAC, |hub| async move {
    let root = hub.user("root", true).await;
    let alice = hub.user("alice", false).await;
    hub.user("bob", false).await;
    let (status, body) = patch(
        hub,
        "/users/alice",
        &root,
        json!({"name": "Alice2", "admin": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "alice2");
    assert_eq!(body["admin"], true);
    assert!(body.get("auth_state").is_some() && body["auth_state"].is_null());
    // The old token follows the renamed user.
    let (status, body) = hub.get("/user", Some(&alice)).await;
    assert_eq!(
        (status, body["name"].clone()),
        (StatusCode::OK, json!("alice2"))
    );
    assert_eq!(
        hub.get("/users/alice", Some(&root)).await.0,
        StatusCode::NOT_FOUND
    );

    let (status, body) = patch(hub, "/users/alice2", &root, json!({"name": "BOB"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "User bob already exists, username must be unique"
    );
    let (status, body) = patch(hub, "/users/alice2", &root, json!({"name": "a/b"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "Invalid username: a/b");
    let (status, body) = patch(hub, "/users/alice2", &root, json!({"admin": false, "x": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "Invalid JSON keys: {'admin': False, 'x': 1}"
    );
    assert!(
        user_row(hub, "alice2").await.unwrap().admin,
        "no partial write"
    );
    let (status, body) = patch(hub, "/users/nobody", &root, json!({"admin": true})).await;
    assert_eq!(
        (status, body["message"].clone()),
        (StatusCode::NOT_FOUND, Value::Null)
    );

    // Groups and roles are replaced; unknown names are refused before anything changes.
    let (status, body) = patch(
        hub,
        "/users/bob",
        &root,
        json!({"groups": ["staff"], "roles": ["serveradmin"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["groups"], json!(["staff"]));
    assert_eq!(body["roles"], json!(["serveradmin", "user"]));
    let (status, body) = patch(
        hub,
        "/users/bob",
        &root,
        json!({"groups": ["staff", "nope"]}),
    )
    .await;
    assert_eq!(
        (status, body["message"].clone()),
        (StatusCode::BAD_REQUEST, json!("No such group: nope"))
    );
    let (status, body) = patch(
        hub,
        "/users/bob",
        &root,
        json!({"roles": ["nope"], "groups": []}),
    )
    .await;
    assert_eq!(
        (status, body["message"].clone()),
        (StatusCode::BAD_REQUEST, json!("No such role: nope"))
    );
    let (_, body) = hub.get("/users/bob", Some(&root)).await;
    assert_eq!(body["groups"], json!(["staff"]));
    let (status, body) = patch(hub, "/users/bob", &root, json!({"groups": [], "roles": []})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["groups"].clone(), body["roles"].clone()),
        (json!([]), json!(["user"]))
    );
    let (status, body) = patch(hub, "/users/bob", &root, json!({"groups": "staff"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "user.groups must be <class 'list'>, not: <class 'str'>"
    );
    let (status, body) = patch(hub, "/users/bob", &root, json!({"auth_state": {"k": 1}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = hub
        .call(Method::PATCH, "/users/bob", Some(&root), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "Invalid JSON data: None");
});

// === DELETE /users/{name} ===

hub_test!(delete_user_rules, |hub| async move {
    let root = hub.user("root", true).await;
    hub.user("bob", false).await;
    let (status, body) = hub.delete("/users/root", Some(&root)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "Cannot delete yourself!");
    let (status, body) = hub.delete("/users/nobody", Some(&root)).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({"status": 404, "message": null})
        )
    );
    let (status, _) = hub.delete("/users/bob", Some(&root)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(user_row(hub, "bob").await.is_none());
    assert_eq!(
        hub.delete("/users/bob", Some(&root)).await.0,
        StatusCode::NOT_FOUND
    );

    let alice = hub.user("alice", false).await;
    let (status, body) = hub.delete("/users/alice", Some(&alice)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        body["message"],
        "Action is not authorized with current scopes; requires any of [delete:users]"
    );
    hub.user("carl", false).await;
    set_server(hub, "carl", "", ServerPhase::Stopping).await;
    let (status, body) = hub.delete("/users/carl", Some(&root)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "carl's server is in the process of stopping, please wait."
    );
});

hub_test!(delete_user_stops_running_servers, |hub| async move {
    use hub_plugin::{ProgressSender, ServerRef, SpawnContext, Spawner};
    let root = hub.user("root", true).await;
    hub.user("dora", false).await;
    let started = hub
        .spawner
        .start(&SpawnContext {
            server: ServerRef {
                user: "dora".into(),
                name: String::new(),
            },
            env: Default::default(),
            prefix: "/user/dora/".into(),
            user_options: json!({}),
            command: None,
            progress: ProgressSender::channel().0,
        })
        .await
        .unwrap();
    assert_eq!(hub.spawner.running(), 1);
    let port: i32 = started.url.rsplit(':').next().unwrap().parse().unwrap();
    let state = started.state.as_object().unwrap().clone();
    hub.state
        .db
        .run(move |conn| {
            let u = users::find_by_name(conn, "dora")?.unwrap();
            let s = spawners::find_or_insert(conn, u.id, "")?;
            spawners::transition(
                conn,
                s.id,
                &[ServerPhase::Stopped],
                ServerPhase::Spawning,
                hub::db::now(),
            )?;
            spawners::record_started(
                conn,
                s.id,
                &ServerAddress {
                    proto: "http".into(),
                    ip: "127.0.0.1".into(),
                    port,
                    base_url: "/user/dora/".into(),
                },
                &state,
            )?;
            spawners::transition(
                conn,
                s.id,
                &[ServerPhase::Spawning],
                ServerPhase::Running,
                hub::db::now(),
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let (status, body) = hub.delete("/users/dora", Some(&root)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(hub.spawner.running(), 0, "the server was stopped");
    assert_eq!(
        hub.spawner.stops.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(user_row(hub, "dora").await.is_none());
});

// === POST /users/{name}/admin-access ===

hub_test!(admin_access_is_off_by_default, |hub| async move {
    let root = hub.user("root", true).await;
    hub.user("alice", false).await;
    let (status, body) = hub
        .post("/users/alice/admin-access", Some(&root), json!(null))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["message"], "admin access to user servers disabled");
});

hub_test!(
    admin_access_when_enabled,
    config = "[hub]\nadmin_access = true\n",
    |hub| async move {
        let root = hub.user("root", true).await;
        hub.user("alice", false).await;
        let (status, headers, body) = hub
            .call(Method::POST, "/users/alice/admin-access", Some(&root), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.is_null(), "empty body");
        assert_eq!(headers["content-type"], "application/json");
        let (status, _) = hub
            .post("/users/nobody/admin-access", Some(&root), json!(null))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let alice = hub.user("alice", false).await;
        let (status, _) = hub
            .post("/users/root/admin-access", Some(&alice), json!(null))
            .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "servers!user=alice does not cover root"
        );
    }
);

// === escalation (CVE-2024-41942, GHSA-69wv-m5fw-2fhp) ===

hub_test!(
    admin_users_holder_cannot_make_admins,
    config = RBAC,
    |hub| async move {
        let root = hub.user("root", true).await;
        let carol = hub.user("carol", false).await;
        hub.user("bob", false).await;
        let grant = "Only admins can grant admin permissions";
        let modify = "Only admins can modify other admins";
        let attacks: Vec<(Method, &str, Value, &str)> = vec![
            (
                Method::POST,
                "/users",
                json!({"usernames": ["evil"], "admin": true}),
                grant,
            ),
            (Method::POST, "/users/evil", json!({"admin": true}), grant),
            (Method::PATCH, "/users/carol", json!({"admin": true}), grant),
            (Method::PATCH, "/users/bob", json!({"admin": true}), grant),
            (
                Method::PATCH,
                "/users/root",
                json!({"name": "owned"}),
                modify,
            ),
            (
                Method::PATCH,
                "/users/root",
                json!({"admin": false}),
                modify,
            ),
            (Method::DELETE, "/users/root", Value::Null, modify),
            (
                Method::PATCH,
                "/users/carol",
                json!({"roles": ["admin"]}),
                grant,
            ),
        ];
        for (method, path, body, message) in attacks {
            let body = (!body.is_null()).then_some(body);
            let (status, _, reply) = hub.call(method.clone(), path, Some(&carol), body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {reply}");
            assert_eq!(reply["message"], message, "{method} {path}");
        }
        // Roles beyond what carol holds.
        let (status, body) = patch(
            hub,
            "/users/carol",
            &carol,
            json!({"roles": ["serveradmin"]}),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("Not granting scopes")
        );
        let (status, body) =
            patch(hub, "/users/bob", &carol, json!({"roles": ["serveradmin"]})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        // Joining a group that carries the admin role is granting admin.
        let admins_role = hub
            .state
            .db
            .run(|conn| {
                let role = roles::find_by_name(conn, "admin")?.unwrap();
                let group = groups::find_by_name(conn, "admins")?.unwrap();
                roles::grant(conn, role.id, roles::Grantee::Group(group.id))?;
                Ok(())
            })
            .await;
        admins_role.unwrap();
        let (status, body) =
            patch(hub, "/users/carol", &carol, json!({"groups": ["admins"]})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["message"], grant);

        // Nothing changed.
        assert!(user_row(hub, "evil").await.is_none());
        assert!(!user_row(hub, "carol").await.unwrap().admin);
        assert!(!user_row(hub, "bob").await.unwrap().admin);
        assert!(user_row(hub, "root").await.is_some());
        let (_, body) = hub.get("/users/carol", Some(&root)).await;
        assert_eq!(body["groups"], json!([]));
        assert_eq!(body["roles"], json!(["user", "useradmin"]));

        // What admin:users may do: non-admin users, non-admin changes.
        let (status, body) = hub
            .post("/users", Some(&carol), json!({"usernames": ["newbie"]}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = patch(
            hub,
            "/users/newbie",
            &carol,
            json!({"name": "newbie2", "admin": false}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _) = hub.delete("/users/newbie2", Some(&carol)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        // The real admin may do all of it.
        let (status, body) = patch(hub, "/users/bob", &root, json!({"admin": true})).await;
        assert_eq!(
            (status, body["admin"].clone()),
            (StatusCode::OK, json!(true))
        );
    }
);

hub_test!(
    filtered_admin_cannot_create_outside_filter,
    config = RBAC,
    |hub| async move {
        let fred = hub.user("fred", false).await;
        let (status, body) = hub
            .post("/users", Some(&fred), json!({"usernames": ["x"]}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body["message"],
            "Action is not authorized with current scopes; requires any of [admin:users]"
        );
        let (status, body) = hub
            .post("/groups", Some(&fred), json!({"groups": ["g2"]}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        // A new user is not in fred's group: 404, as for any resource outside the filter.
        let (status, _) = hub.post("/users/x", Some(&fred), json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(user_row(hub, "x").await.is_none());
        // Inside the filter: staff members may be changed (not promoted).
        let (status, body) = patch(hub, "/users/sam", &fred, json!({"admin": true})).await;
        assert_eq!(
            (status, body["message"].clone()),
            (
                StatusCode::FORBIDDEN,
                json!("Only admins can grant admin permissions")
            )
        );
        let (status, _) = patch(hub, "/users/root", &fred, json!({"admin": false})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // A staff admin moving a member out of staff needs no more than it holds.
        let (status, body) = patch(hub, "/users/sue", &fred, json!({"groups": []})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
);

hub_test!(demoted_owner_tokens_lose_scopes, |hub| async move {
    let root = hub.user("root", true).await;
    let boss = hub.user("boss", true).await;
    let explicit = hub
        .user_with_scopes("boss", true, &["admin:users", "list:users"])
        .await;
    assert_eq!(hub.get("/users", Some(&boss)).await.0, StatusCode::OK);
    assert_eq!(hub.get("/users", Some(&explicit)).await.0, StatusCode::OK);
    let (status, _) = patch(hub, "/users/boss", &root, json!({"admin": false})).await;
    assert_eq!(status, StatusCode::OK);
    for token in [&boss, &explicit] {
        let (status, _) = hub.get("/users", Some(token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = hub
            .post("/users", Some(token), json!({"usernames": ["x"]}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = patch(hub, "/users/boss", token, json!({"admin": true})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, body) = hub.get("/users/boss", Some(&boss)).await;
    assert_eq!(
        (status, body["admin"].clone()),
        (StatusCode::OK, json!(false))
    );
});

// === cookies and XSRF ===

hub_test!(cookie_requests_need_xsrf, |hub| async move {
    hub.user("root", true).await;
    let browser = hub.browser("root").await;
    // A plain navigation-style GET needs no token; a fetch-mode GET does.
    let (status, _) = browser
        .send(Method::GET, "/users", None, Xsrf::Omit, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = browser.without_xsrf(Method::GET, "/users", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["message"], "'_xsrf' argument missing from GET");
    let (status, _) = browser.with_xsrf(Method::GET, "/users", None).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = browser
        .without_xsrf(Method::POST, "/users", Some(json!({"usernames": ["x1"]})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["message"], "'_xsrf' argument missing from POST");
    let (status, body) = browser
        .send(
            Method::POST,
            "/users",
            Some(json!({"usernames": ["x1"]})),
            Xsrf::Wrong,
            Some("cors"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["message"], "XSRF cookie does not match POST argument");
    assert!(user_row(hub, "x1").await.is_none());
    let (status, body) = browser
        .with_xsrf(Method::POST, "/users", Some(json!({"usernames": ["x1"]})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = browser
        .send(
            Method::PATCH,
            "/users/x1",
            Some(json!({"admin": true})),
            Xsrf::Header,
            Some("cors"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = browser
        .without_xsrf(Method::DELETE, "/users/x1", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["message"], "'_xsrf' argument missing from DELETE");
    let (status, _) = browser.with_xsrf(Method::DELETE, "/users/x1", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // A form post (non-JSON content type) cannot ride on the cookie.
    let resp = hub
        .client
        .post(format!("{}?_xsrf={}", hub.api_url("/users"), browser.xsrf))
        .header("Cookie", &browser.cookie)
        .header("Content-Type", "text/plain")
        .body(r#"{"usernames": ["x2"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "Missing or invalid credentials.");
    assert!(user_row(hub, "x2").await.is_none());
});

// === malformed input ===

hub_test!(malformed_bodies_are_4xx_without_writes, |hub| async move {
    let root = hub.user("root", true).await;
    hub.user("bob", false).await;
    for body in [
        b"{not json".to_vec(),
        b"{\"usernames\": [\"a\"]".to_vec(),
        vec![0xff, 0xfe, b'{', b'}'],
        b"{\"usernames\": [\"a\"], \"admin\": 1e999}".to_vec(),
    ] {
        let (status, reply) = raw(hub, Method::POST, "/users", &root, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert_eq!(reply["status"], 400);
        assert_eq!(reply["message"], "Invalid JSON in body of request");
    }
    let (status, reply) = raw(hub, Method::PATCH, "/users/bob", &root, b"[1, 2]".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reply["message"], "Invalid JSON data: [1, 2]");
    let (status, reply) = raw(hub, Method::PATCH, "/users/bob", &root, b"null".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reply["message"], "Invalid JSON data: None");
    // A huge body: refused with the JSON error body, nothing written.
    let mut huge = br#"{"usernames": ["big"], "pad": ""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 3 * 1024 * 1024));
    huge.extend(br#""}"#);
    // The hub answers 413 from Content-Length without reading the body; when the connection
    // closes with the client still sending, the client may see a reset instead of the answer.
    // Either way the request is refused and nothing is written.
    let sent = hub
        .client
        .post(hub.api_url("/users"))
        .header("Authorization", format!("token {}", root.token))
        .header("Content-Type", "application/json")
        .body(huge)
        .send()
        .await;
    if let Ok(resp) = sent {
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // The unread body leaves the connection unusable: the client must not reuse it.
        assert_eq!(resp.headers()["connection"], "close");
        let reply: Value = resp.json().await.expect("JSON error body");
        assert_eq!(reply["status"], 413);
        assert!(reply["message"].is_string());
    }
    assert!(user_row(hub, "big").await.is_none());
    // Many keys, one bad: nothing written.
    let mut body = serde_json::Map::new();
    body.insert("usernames".into(), json!(["many"]));
    for i in 0..5000 {
        body.insert(format!("k{i}"), json!(i));
    }
    let (status, _) = hub.post("/users", Some(&root), Value::Object(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(user_row(hub, "many").await.is_none());
    // Unauthenticated garbage is refused for the credential first.
    let nobody = Persona {
        name: "x".into(),
        token: "0".repeat(32),
    };
    let (status, reply) = raw(hub, Method::POST, "/users", &nobody, b"{oops".to_vec()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(reply["message"], "Missing or invalid credentials.");
    // An unauthorized caller gets 403 before the body is looked at.
    let bob = hub.user("bob", false).await;
    let (status, _) = raw(hub, Method::POST, "/users", &bob, b"{oops".to_vec()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
});

// The list serialises its models straight from the rows; single-user GETs turn the same model
// into a value first and load the user on their own. Both must give the same JSON for every
// caller and server state.
hub_test!(
    list_items_equal_single_user_models,
    config = RBAC,
    |hub| async move {
        let root = hub.user("root", true).await;
        let lisa = hub.user("lisa", false).await;
        hub.user("sam", false).await;
        hub.user("alice", false).await;
        hub.user("zed", false).await;
        set_server(hub, "alice", "", ServerPhase::Running).await;
        set_server(hub, "alice", "gpu-1", ServerPhase::Stopped).await;
        set_server(hub, "sam", "", ServerPhase::Spawning).await;
        set_server(hub, "zed", "big", ServerPhase::Stopping).await;
        let mut compared = 0;
        for who in [&root, &culler(), &lisa] {
            for query in ["", "include_stopped_servers=1"] {
                let (status, list) = paged(hub, &format!("/users?{query}"), who).await;
                assert_eq!(status, StatusCode::OK, "{list}");
                for item in list["items"].as_array().expect("items") {
                    let name = item["name"].as_str().expect("name");
                    let (status, single) =
                        hub.get(&format!("/users/{name}?{query}"), Some(who)).await;
                    if status != StatusCode::OK {
                        continue;
                    }
                    assert_eq!(item, &single, "{} sees {name} ({query})", who.name);
                    compared += 1;
                }
            }
        }
        assert!(compared >= 12, "only {compared} models compared");
    }
);
