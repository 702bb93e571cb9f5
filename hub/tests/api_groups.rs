//! `/groups`, `/groups/{name}`, `/groups/{name}/users`, `/groups/{name}/properties`: listing
//! (pagination, scope filters, field gating), creating (atomically), members, properties,
//! 403 vs 404, escalation through group membership, cookies with and without `_xsrf`.

mod common;

use std::collections::BTreeSet;

use common::{Persona, TestHub};
use hub::db::models::{groups, roles};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const RBAC: &str = r#"
[groups.admins]
users = []

[groups.ops]
users = []

[[roles]]
name = "opsrole"
scopes = ["admin:servers"]
groups = ["ops"]

[[roles]]
name = "groupadmin"
scopes = ["groups", "read:users"]
users = ["gina"]

[[roles]]
name = "g1reader"
scopes = ["list:groups!group=g1", "read:groups!group=g1"]
users = ["rita"]

[[roles]]
name = "namesonly"
scopes = ["list:groups", "read:roles:groups"]
users = ["nora"]

[[roles]]
name = "badlister"
scopes = ["list:groups!user=x"]
users = ["bart"]

[[roles]]
name = "g1admin"
scopes = ["admin:groups!group=g1"]
users = ["fred"]
"#;

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|g| g["name"].as_str().expect("test setup").to_owned())
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

async fn group_exists(hub: &TestHub, name: &str) -> bool {
    let name = name.to_owned();
    hub.state
        .db
        .run(move |conn| groups::find_by_name(conn, &name))
        .await
        .expect("test setup")
        .is_some()
}

async fn send(
    hub: &TestHub,
    method: Method,
    path: &str,
    who: &Persona,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (s, _, v) = hub.call(method, path, Some(who), body).await;
    (s, v)
}

/// Grants the default `admin` role to group `group`.
async fn make_admin_group(hub: &TestHub, group: &str) {
    let group = group.to_owned();
    hub.state
        .db
        .run(move |conn| {
            let role = roles::find_by_name(conn, "admin")?.expect("admin role");
            let g = groups::find_by_name(conn, &group)?.expect("group");
            roles::grant(conn, role.id, roles::Grantee::Group(g.id))?;
            Ok(())
        })
        .await
        .expect("test setup");
}

hub_test!(create_and_list_groups, |hub| async move {
    let root = hub.user("root", true).await;
    hub.user("alice", false).await;
    let (status, body) = hub
        .post(
            "/groups",
            Some(&root),
            json!({"groups": ["g1", "g2", "g3"], "users": ["Alice"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(names(&body), ["g1", "g2", "g3"]);
    assert_eq!(
        body[0],
        json!({"kind": "group", "name": "g1", "users": ["alice"], "properties": {}, "roles": []})
    );
    let (status, body) = hub.get("/groups", Some(&root)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&body), ["g1", "g2", "g3"]);
    // The envelope, and the next page's URL.
    let resp = hub
        .client
        .get(hub.api_url("/groups?limit=2"))
        .header("Authorization", format!("token {}", root.token))
        .header("Accept", "application/jupyterhub-pagination+json")
        .send()
        .await
        .unwrap();
    let page: Value = resp.json().await.unwrap();
    assert_eq!(names(&page["items"]), ["g1", "g2"]);
    assert_eq!(page["_pagination"]["total"], 3);
    let next = page["_pagination"]["next"]["url"].as_str().unwrap();
    let (_, page2) = hub
        .get(next.strip_prefix(&hub.api_url("")).unwrap(), Some(&root))
        .await;
    assert_eq!(names(&page2), ["g3"]);
    let (status, body) = hub.get("/groups?offset=x", Some(&root)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "Invalid argument type, offset and limit must be integers"
    );
    // The users' models list their groups.
    let (_, alice) = hub.get("/users/alice", Some(&root)).await;
    assert_eq!(alice["groups"], json!(["g1", "g2", "g3"]));
});

hub_test!(bulk_create_is_all_or_nothing, |hub| async move {
    let root = hub.user("root", true).await;
    hub.post("/groups", Some(&root), json!({"groups": ["g1"]}))
        .await;
    let cases = [
        (
            json!({"groups": ["new1", "g1"]}),
            409,
            "Group g1 already exists",
        ),
        (json!({"groups": ["x", "x"]}), 409, "Group x already exists"),
        (
            json!({"groups": ["new2"], "users": ["nobody"]}),
            400,
            "No such user: nobody",
        ),
        (json!({}), 400, "Must specify at least one group to create"),
        (
            json!({"groups": []}),
            400,
            "Must specify at least one group to create",
        ),
        (
            json!({"groups": "abc"}),
            400,
            "groups must be <class 'list'>, not: <class 'str'>",
        ),
        (
            json!({"groups": ["new3"], "users": "alice"}),
            400,
            "group.users must be <class 'list'>, not: <class 'str'>",
        ),
        (
            json!({"groups": ["new4"], "colour": "red"}),
            400,
            "Invalid JSON keys: {'colour': 'red'}",
        ),
        (json!({"groups": [""]}), 400, "Invalid group name: ''"),
        (
            json!({"groups": [7]}),
            400,
            "group names must be <class 'str'>, not: <class 'int'>",
        ),
    ];
    for (payload, status, message) in cases {
        let (got, body) = hub.post("/groups", Some(&root), payload.clone()).await;
        assert_eq!(got.as_u16(), status, "{payload}: {body}");
        assert_eq!(body["message"], message, "{payload}");
    }
    for name in ["new1", "new2", "new3", "new4", "x", "a", "b"] {
        assert!(!group_exists(hub, name).await, "{name} must not exist");
    }
    // Creating needs admin:groups, unfiltered.
    let alice = hub.user("alice", false).await;
    let (status, body) = hub
        .post("/groups", Some(&alice), json!({"groups": ["a"]}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "Action is not authorized with current scopes; requires any of [admin:groups]"
    );
});

hub_test!(single_group_lifecycle, |hub| async move {
    let root = hub.user("root", true).await;
    hub.user("alice", false).await;
    let (status, body) = hub
        .post("/groups/g", Some(&root), json!({"users": ["ALICE"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["users"], json!(["alice"]));
    let (status, body) = hub.post("/groups/g", Some(&root), json!(null)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["message"], "Group g already exists");
    let (status, body) = send(hub, Method::POST, "/groups/h", &root, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["users"], json!([]));
    let (status, body) = hub.post("/groups/k", Some(&root), json!([1])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "Invalid JSON data: [1]");
    let (status, body) = hub
        .post("/groups/k", Some(&root), json!({"users": ["ghost"]}))
        .await;
    assert_eq!(
        (status, body["message"].clone()),
        (StatusCode::BAD_REQUEST, json!("No such user: ghost"))
    );
    assert!(!group_exists(hub, "k").await);

    let (status, body) = hub.get("/groups/g", Some(&root)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "g");
    let (status, body) = hub.get("/groups/nope", Some(&root)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"status": 404, "message": "No such group: nope"})
    );
    let (status, _) = hub.delete("/groups/g", Some(&root)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!group_exists(hub, "g").await);
    let (status, body) = hub.delete("/groups/g", Some(&root)).await;
    assert_eq!(
        (status, body["message"].clone()),
        (StatusCode::NOT_FOUND, json!("No such group: g"))
    );
    let (_, alice) = hub.get("/users/alice", Some(&root)).await;
    assert_eq!(alice["groups"], json!([]));
});

hub_test!(members_and_properties, |hub| async move {
    let root = hub.user("root", true).await;
    hub.user("alice", false).await;
    hub.user("bob", false).await;
    hub.post("/groups/g", Some(&root), json!({"users": ["alice"]}))
        .await;
    let (status, body) = send(
        hub,
        Method::POST,
        "/groups/g/users",
        &root,
        Some(json!({"users": ["bob", "alice", "BOB"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["users"], json!(["alice", "bob"]));
    let (status, body) = send(
        hub,
        Method::DELETE,
        "/groups/g/users",
        &root,
        Some(json!({"users": ["alice"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["users"], json!(["bob"]));
    let (status, body) = send(
        hub,
        Method::DELETE,
        "/groups/g/users",
        &root,
        Some(json!({"users": ["alice"]})),
    )
    .await;
    assert_eq!(
        (status, body["users"].clone()),
        (StatusCode::OK, json!(["bob"]))
    );
    for (method, payload, message) in [
        (Method::POST, Some(json!({})), "Must specify users to add"),
        (
            Method::DELETE,
            Some(json!({"name": "x"})),
            "Must specify users to delete",
        ),
        (Method::POST, None, "Invalid JSON data: None"),
        (
            Method::POST,
            Some(json!({"users": ["ghost"]})),
            "No such user: ghost",
        ),
        (
            Method::POST,
            Some(json!({"users": [1]})),
            "group.users must be a list of <class 'str'>, not: <class 'int'>",
        ),
        (
            Method::POST,
            Some(json!({"users": ["alice"], "x": 1})),
            "Invalid JSON keys: {'users': ['alice'], 'x': 1}",
        ),
    ] {
        let (status, body) = send(
            hub,
            method.clone(),
            "/groups/g/users",
            &root,
            payload.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {payload:?}");
        assert_eq!(body["message"], message, "{method} {payload:?}");
    }
    let (status, body) = send(
        hub,
        Method::POST,
        "/groups/nope/users",
        &root,
        Some(json!({"users": ["bob"]})),
    )
    .await;
    assert_eq!(
        (status, body["message"].clone()),
        (StatusCode::NOT_FOUND, json!("No such group: nope"))
    );

    let (status, body) = send(
        hub,
        Method::PUT,
        "/groups/g/properties",
        &root,
        Some(json!({"a": 1, "b": {"c": [true]}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["properties"], json!({"a": 1, "b": {"c": [true]}}));
    let (_, body) = send(
        hub,
        Method::PUT,
        "/groups/g/properties",
        &root,
        Some(json!({"z": null})),
    )
    .await;
    assert_eq!(
        body["properties"],
        json!({"z": null}),
        "properties are replaced"
    );
    for payload in [Some(json!([1])), Some(json!("x")), None] {
        let (status, body) = send(
            hub,
            Method::PUT,
            "/groups/g/properties",
            &root,
            payload.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{payload:?}");
        assert_eq!(body["message"], "Must specify properties");
    }
    let (_, body) = hub.get("/groups/g", Some(&root)).await;
    assert_eq!(body["properties"], json!({"z": null}));
});

hub_test!(
    scopes_filter_and_gate_groups,
    config = RBAC,
    |hub| async move {
        let root = hub.user("root", true).await;
        for g in ["g1", "g2"] {
            hub.post(&format!("/groups/{g}"), Some(&root), json!(null))
                .await;
        }
        let rita = hub.user("rita", false).await;
        let (status, body) = hub.get("/groups", Some(&rita)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(names(&body), ["g1"]);
        let want: BTreeSet<String> = ["kind", "name", "users", "properties"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(keys(&body[0]), want);
        let (status, _) = hub.get("/groups/g1", Some(&rita)).await;
        assert_eq!(status, StatusCode::OK);
        // Held for another group: 404, the same as for a missing one.
        let (status, other) = hub.get("/groups/g2", Some(&rita)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, missing) = hub.get("/groups/zzz", Some(&rita)).await;
        assert_eq!(other, missing);
        assert_eq!(
            other["message"],
            "No access to resources or resources not found"
        );

        let nora = hub.user("nora", false).await;
        let (_, body) = hub.get("/groups", Some(&nora)).await;
        assert_eq!(names(&body), ["admins", "ops", "g1", "g2"]);
        let ops = &body[1];
        assert_eq!(
            ops,
            &json!({"kind": "group", "name": "ops", "roles": ["opsrole"]})
        );

        let bart = hub.user("bart", false).await;
        let (status, body) = hub.get("/groups", Some(&bart)).await;
        assert_eq!(
            (status, body),
            (
                StatusCode::FORBIDDEN,
                json!({"status": 403, "message": null})
            )
        );

        let alice = hub.user("alice", false).await;
        let (status, body) = hub.get("/groups/g1", Some(&alice)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body["message"],
            "Action is not authorized with current scopes; requires any of [read:groups, read:groups:name, read:roles:groups]"
        );
        let (status, _) = hub.get("/groups", Some(&alice)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // A filtered admin:groups names the group in the URL, so it may act on that group only.
        let fred = hub.user("fred", false).await;
        let (status, _) = hub.post("/groups/g9", Some(&fred), json!(null)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = hub.delete("/groups/g2", Some(&fred)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = hub.delete("/groups/g1", Some(&fred)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
);

hub_test!(
    groups_scope_cannot_escalate_through_membership,
    config = RBAC,
    |hub| async move {
        let root = hub.user("root", true).await;
        let gina = hub.user("gina", false).await;
        hub.user("bob", false).await;
        make_admin_group(hub, "admins").await;
        hub.post("/groups/plain", Some(&root), json!(null)).await;

        // Joining the admin group is granting admin; joining ops grants admin:servers.
        let (status, body) = send(
            hub,
            Method::POST,
            "/groups/admins/users",
            &gina,
            Some(json!({"users": ["gina"]})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["message"], "Only admins can grant admin permissions");
        let (status, body) = send(
            hub,
            Method::POST,
            "/groups/ops/users",
            &gina,
            Some(json!({"users": ["bob"]})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("Not granting scopes"),
            "{body}"
        );
        let (_, admins) = hub.get("/groups/admins", Some(&root)).await;
        assert_eq!(admins["users"], json!([]));
        let (_, ops) = hub.get("/groups/ops", Some(&root)).await;
        assert_eq!(ops["users"], json!([]));
        // gina did not become an admin by trying.
        let (status, _) = hub.get("/users", Some(&gina)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Groups without roles are gina's to manage; she still cannot create or delete groups.
        let (status, body) = send(
            hub,
            Method::POST,
            "/groups/plain/users",
            &gina,
            Some(json!({"users": ["bob", "gina"]})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["users"], json!(["bob", "gina"]));
        let (status, _) = hub.post("/groups/mine", Some(&gina), json!(null)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = hub.delete("/groups/plain", Some(&gina)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // An admin may add anyone anywhere, and the new member gets the group's scopes.
        let (status, _) = send(
            hub,
            Method::POST,
            "/groups/admins/users",
            &root,
            Some(json!({"users": ["bob"]})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let bob = hub.user("bob", false).await;
        let (status, _) = hub.get("/users", Some(&bob)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "bob holds the admin role through the group"
        );
    }
);

hub_test!(cookie_group_requests_need_xsrf, |hub| async move {
    hub.user("root", true).await;
    let browser = hub.browser("root").await;
    let (status, body) = browser.without_xsrf(Method::POST, "/groups/g", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["message"], "'_xsrf' argument missing from POST");
    assert!(!group_exists(hub, "g").await);
    let (status, _) = browser.with_xsrf(Method::POST, "/groups/g", None).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = browser
        .without_xsrf(Method::PUT, "/groups/g/properties", Some(json!({"a": 1})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["message"], "'_xsrf' argument missing from PUT");
    let (status, body) = browser
        .with_xsrf(Method::PUT, "/groups/g/properties", Some(json!({"a": 1})))
        .await;
    assert_eq!(
        (status, body["properties"].clone()),
        (StatusCode::OK, json!({"a": 1}))
    );
    let (status, _) = browser.with_xsrf(Method::DELETE, "/groups/g", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
});
