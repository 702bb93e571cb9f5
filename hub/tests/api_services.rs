//! `/services` and `/services/{name}`: listing, reading, and runtime services (create, delete).

mod common;

use common::{Persona, TestHub};
use diesel::prelude::*;
use hub::db::models::{api_tokens, oauth_clients, services};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const CONFIG: &str = "[[services]]\nname = \"culler\"\napi_token = \"culler-token-123456\"\n[[services]]\nname = \"web\"\nurl = \"http://127.0.0.1:10101\"\n[services.info]\nowner = \"ops\"\n[[roles]]\nname = \"culler\"\nscopes = [\"list:users\"]\nservices = [\"culler\"]\n[[roles]]\nname = \"see-web\"\nscopes = [\"list:services!service=web\"]\nusers = [\"viewer\"]\n[[roles]]\nname = \"service-admin\"\nscopes = [\"admin:services\"]\nusers = [\"svcadmin\"]\n";

fn message(body: &Value) -> &str {
    body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {body}"))
}

fn service_persona(name: &str, token: &str) -> Persona {
    Persona {
        name: name.into(),
        token: token.into(),
    }
}

async fn service_count(hub: &TestHub) -> usize {
    hub.state
        .db
        .run(services::list)
        .await
        .expect("list services")
        .len()
}

async fn all_clients(hub: &TestHub) -> Vec<oauth_clients::OAuthClient> {
    hub.state
        .db
        .run(oauth_clients::list)
        .await
        .expect("list clients")
}

hub_test!(list_and_get, config = CONFIG, |hub| async move {
    let admin = hub.user("root", true).await;
    let (status, body) = hub.get("/services", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let map = body.as_object().expect("a dict keyed by name");
    assert_eq!(map.keys().collect::<Vec<_>>(), ["culler", "web"], "{body}");
    let culler = &body["culler"];
    assert_eq!(culler["kind"], "service");
    assert_eq!(culler["name"], "culler");
    assert_eq!(culler["admin"], false);
    assert_eq!(culler["roles"], json!(["culler"]));
    assert_eq!(culler["url"], "");
    assert_eq!(culler["prefix"], "");
    assert_eq!(culler["pid"], 0);
    assert_eq!(culler["display"], true);
    let web = &body["web"];
    assert_eq!(web["url"], "http://127.0.0.1:10101/");
    assert_eq!(web["prefix"], "/services/web/");
    assert_eq!(web["info"], json!({"owner": "ops"}));

    // Never paginated, even when asked.
    let resp = hub
        .client
        .get(hub.api_url("/services"))
        .header("Authorization", format!("token {}", admin.token))
        .header("Accept", "application/jupyterhub-pagination+json")
        .send()
        .await
        .unwrap();
    let paged: Value = resp.json().await.unwrap();
    assert_eq!(paged, body);

    // Filtered list: only what the filter covers, with the keys its scopes unlock.
    let viewer = hub.user("viewer", false).await;
    let (status, body) = hub.get("/services", Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"web": {"kind": "service", "name": "web", "admin": false}})
    );
    // No list:services in any form.
    let alice = hub.user("alice", false).await;
    let (status, body) = hub.get("/services", Some(&alice)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message(&body).contains("list:services"), "{body}");

    // One service.
    let (status, body) = hub.get("/services/web", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "web");
    assert_eq!(body["prefix"], "/services/web/");
    let (status, body) = hub.get("/services/nope", Some(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "No such service: nope");
    let (status, body) = hub.get("/services/web", Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"kind": "service", "name": "web", "admin": false})
    );
    let (status, body) = hub.get("/services/culler", Some(&viewer)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        message(&body),
        "No access to resources or resources not found"
    );
    let (status, _) = hub.get("/services/web", Some(&alice)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = hub.get("/services", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
});

hub_test!(create_use_and_delete, config = CONFIG, |hub| async move {
    let admin = hub.user("root", true).await;
    let spec = json!({
        "url": "http://127.0.0.1:10202",
        "api_token": "dash-token-12345678",
        "info": {"team": "data"},
        "display": false,
        "oauth_client_allowed_scopes": ["read:users"],
    });
    let (status, body) = hub.post("/services/dash", Some(&admin), spec.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "dash");
    assert_eq!(body["kind"], "service");
    assert_eq!(body["admin"], false);
    assert_eq!(body["url"], "http://127.0.0.1:10202");
    assert_eq!(body["prefix"], "/services/dash/");
    assert_eq!(body["info"], json!({"team": "data"}));
    assert_eq!(body["display"], false);
    assert_eq!(body["roles"], json!([]));

    // Its token works, and is stored hashed like any user-provided token.
    let dash = service_persona("dash", "dash-token-12345678");
    let (status, me) = hub.get("/user", Some(&dash)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["kind"], "service");
    assert_eq!(me["name"], "dash");
    let rows = hub
        .state
        .db
        .run(|conn| {
            hub::db::schema::api_tokens::table
                .select(api_tokens::ApiToken::as_select())
                .load(conn)
        })
        .await
        .unwrap();
    assert!(rows.iter().all(|r| !r.hashed.contains("dash-token")));
    assert!(
        rows.iter()
            .any(|r| r.prefix == "dash" && r.hashed.starts_with("sha512:16384:"))
    );
    // Its OAuth client.
    let client = all_clients(hub)
        .await
        .into_iter()
        .find(|c| c.identifier == "service-dash")
        .expect("oauth client");
    assert_eq!(client.description, "JupyterHub service dash");
    assert_eq!(client.redirect_uri, "/services/dash/oauth_callback");
    assert_eq!(
        client.allowed_scopes,
        ["access:services!service=dash", "read:users"]
    );
    assert!(client.secret.starts_with("sha512:"));
    let (status, list) = hub.get("/services", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["dash"]["name"], "dash");

    // Names are unique, whoever defined the existing one.
    let (status, body) = hub.post("/services/dash", Some(&admin), spec.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(message(&body), "Service dash already exists");
    let (status, body) = hub
        .post("/services/culler", Some(&admin), json!({"display": true}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(message(&body), "Service culler already exists");

    // Delete: 200 with an empty body; token and client go with it.
    let (status, headers, body) = hub
        .call(Method::DELETE, "/services/dash", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_null(), "empty body: {body}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let (status, _) = hub.get("/user", Some(&dash)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        !all_clients(hub)
            .await
            .iter()
            .any(|c| c.identifier == "service-dash")
    );
    let (status, _) = hub.get("/services/dash", Some(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = hub.delete("/services/dash", Some(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "Service dash does not exist");
    // Configured services stay.
    let (status, body) = hub.delete("/services/culler", Some(&admin)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        message(&body),
        "Service culler is not modifiable at runtime"
    );
    let culler = service_persona("culler", "culler-token-123456");
    let (status, _) = hub.get("/user", Some(&culler)).await;
    assert_eq!(status, StatusCode::OK);

    // The name can be used again.
    let (status, _) = hub.post("/services/dash", Some(&admin), spec).await;
    assert_eq!(status, StatusCode::CREATED);
});

hub_test!(minimal_and_external_services, |hub| async move {
    let admin = hub.user("root", true).await;
    // No URL and no OAuth settings: no client, no route.
    let (status, body) = hub
        .post("/services/plain", Some(&admin), json!({"display": true}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["url"], "");
    assert_eq!(body["prefix"], "");
    // External OAuth service: explicit client id and redirect.
    let (status, body) = hub
        .post(
            "/services/ext",
            Some(&admin),
            json!({
                "oauth_client_id": "service-ext-app",
                "oauth_redirect_uri": "https://ext.example.org/callback",
                "api_token": "ext-token-123456789",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let clients = all_clients(hub).await;
    assert!(!clients.iter().any(|c| c.identifier == "service-plain"));
    let ext = clients
        .iter()
        .find(|c| c.identifier == "service-ext-app")
        .expect("client");
    assert_eq!(ext.redirect_uri, "https://ext.example.org/callback");
    assert_eq!(ext.allowed_scopes, ["access:services!service=ext"]);
});

hub_test!(bad_specs_write_nothing, |hub| async move {
    let admin = hub.user("root", true).await;
    let alice = hub.user("alice", false).await;
    let before = service_count(hub).await;
    let clients_before = all_clients(hub).await.len();
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "Invalid service data"),
        (json!([1]), "Invalid service data"),
        (
            json!({"bogus": 1}),
            "Invalid JSON keys: {'bogus': 1, 'name': 'x'}",
        ),
        (
            json!({"admin": "yes"}),
            "service.admin must be <class 'bool'>, not: <class 'str'>",
        ),
        (
            json!({"url": 5}),
            "service.url must be <class 'str'>, not: <class 'int'>",
        ),
        (
            json!({"info": []}),
            "service.info must be <class 'dict'>, not: <class 'list'>",
        ),
        (
            json!({"command": ["sleep", "100"]}),
            "Can not create managed service x at runtime",
        ),
        (json!({"url": "ftp://host/"}), "Failed to create service x"),
        (json!({"url": "not a url"}), "Failed to create service x"),
        (
            json!({"oauth_client_id": "bad-id", "oauth_redirect_uri": "/cb"}),
            "Failed to create service x",
        ),
        (
            json!({"oauth_no_confirm": true}),
            "Failed to create service x",
        ),
    ];
    for (spec, text) in cases {
        let (status, body) = hub.post("/services/x", Some(&admin), spec.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{spec}: {body}");
        assert_eq!(message(&body), text, "{spec}");
    }
    for spec in [
        json!({"api_token": "short"}),
        json!({"api_token": "x".repeat(65)}),
        json!({"oauth_client_allowed_scopes": ["nope"]}),
        json!({"oauth_client_allowed_scopes": [1]}),
        // Already somebody's token: refused, and nothing half-created.
        json!({"api_token": alice.token, "url": "http://127.0.0.1:1"}),
    ] {
        let (status, body) = hub.post("/services/x", Some(&admin), spec.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{spec}: {body}");
    }
    // No body, and malformed JSON.
    let (status, _, _) = hub
        .call(Method::POST, "/services/x", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let resp = hub
        .client
        .post(hub.api_url("/services/x"))
        .header("Authorization", format!("token {}", admin.token))
        .header("Content-Type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(service_count(hub).await, before);
    assert_eq!(all_clients(hub).await.len(), clients_before);
    let (status, _) = hub.get("/services/x", Some(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // alice's token still belongs to alice only.
    let (status, me) = hub.get("/user", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["name"], "alice");
});

hub_test!(permissions, config = CONFIG, |hub| async move {
    let alice = hub.user("alice", false).await;
    let (status, body) = hub
        .post("/services/x", Some(&alice), json!({"display": true}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message(&body).contains("admin:services"), "{body}");
    let (status, _) = hub.delete("/services/web", Some(&alice)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = hub
        .post("/services/x", None, json!({"display": true}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // admin:services without being an admin: no admin services, no scopes beyond one's own.
    let svcadmin = hub.user("svcadmin", false).await;
    let (status, body) = hub
        .post("/services/x", Some(&svcadmin), json!({"admin": true}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let m = message(&body);
    assert!(m.starts_with("Not assigning requested scopes "), "{m}");
    assert!(m.ends_with(" not held by User svcadmin"), "{m}");
    let (status, _) = hub
        .post(
            "/services/x",
            Some(&svcadmin),
            json!({"oauth_client_allowed_scopes": ["admin:users"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = hub
        .post(
            "/services/x",
            Some(&svcadmin),
            json!({"url": "http://127.0.0.1:10303", "oauth_client_allowed_scopes": ["read:users!user=svcadmin"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = hub.delete("/services/x", Some(&svcadmin)).await;
    assert_eq!(status, StatusCode::OK);

    // A real admin may create an admin service, which then has admin scopes.
    let root = hub.user("root", true).await;
    let (status, body) = hub
        .post(
            "/services/boss",
            Some(&root),
            json!({"admin": true, "api_token": "boss-token-12345678"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["admin"], true);
    assert_eq!(body["roles"], json!(["admin"]));
    let boss = service_persona("boss", "boss-token-12345678");
    let (status, _) = hub.get("/info", Some(&boss)).await;
    assert_eq!(status, StatusCode::OK);
});

hub_test!(
    filtered_admin_services,
    config = "[[roles]]\nname = \"own-svc\"\nscopes = [\"admin:services!service=mine\"]\nusers = [\"alice\"]\n",
    |hub| async move {
        let alice = hub.user("alice", false).await;
        let (status, body) = hub
            .post("/services/mine", Some(&alice), json!({"display": true}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = hub
            .post("/services/other", Some(&alice), json!({"display": true}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, _) = hub.delete("/services/mine", Some(&alice)).await;
        assert_eq!(status, StatusCode::OK);
    }
);
