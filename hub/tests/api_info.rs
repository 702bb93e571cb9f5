//! `/hub/api`, `/info`, `/user`, health, headers, the JSON 404.

mod common;

use reqwest::StatusCode;
use serde_json::json;

hub_test!(version_is_public_and_pep440, |hub| async move {
    for path in ["/hub/api", "/hub/api/"] {
        let resp = hub
            .client
            .get(format!("{}{path}", hub.origin))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let version = resp.headers()["x-jupyterhub-version"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["version"], json!(version));
        assert!(version.starts_with("6.1.1+"), "{version}");
    }
});

hub_test!(unknown_api_path_is_json_404, |hub| async move {
    let (status, headers, body) = hub
        .call(reqwest::Method::GET, "/nope/nothing", None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"status": 404, "message": null}));
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .ends_with("default-src 'none'")
    );
    assert!(headers.contains_key("x-jupyterhub-version"));
});

hub_test!(options_needs_no_credentials, |hub| async move {
    let (status, _, _) = hub
        .call(reqwest::Method::OPTIONS, "/users", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
});

hub_test!(whoami_with_and_without_token, |hub| async move {
    let (status, body) = hub.get("/user", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"status": 403, "message": null}));
    let bad = common::Persona {
        name: "x".into(),
        token: "0".repeat(32),
    };
    let (status, _) = hub.get("/user", Some(&bad)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an invalid token must get 403, not 401/404"
    );

    let alice = hub.user("alice", false).await;
    let (status, body) = hub.get("/user", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "alice");
    assert_eq!(body["kind"], "user");
    assert_eq!(body["admin"], false);
    assert!(body["token_id"].as_str().unwrap().starts_with('a'));
    assert!(body["session_id"].is_null());
    let scopes: Vec<&str> = body["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(scopes.contains(&"read:users!user=alice"), "{scopes:?}");
    assert!(scopes.contains(&"access:servers!user=alice"), "{scopes:?}");

    // `bearer` works too, in any case.
    let resp = hub
        .client
        .get(hub.api_url("/user"))
        .header("Authorization", format!("BEARER {}", alice.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // ?token= is never accepted.
    let resp = hub
        .client
        .get(format!("{}?token={}", hub.api_url("/user"), alice.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
});

hub_test!(info_needs_read_hub, |hub| async move {
    let alice = hub.user("alice", false).await;
    let (status, body) = hub.get("/info", Some(&alice)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["message"].as_str().unwrap().starts_with(
            "Action is not authorized with current scopes; requires any of [read:hub]"
        ),
        "{body}"
    );
    let admin = hub.user("root", true).await;
    let (status, body) = hub.get("/info", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["spawner"]["class"], "mock");
});

hub_test!(health_is_public, |hub| async move {
    for path in ["/hub/health", "/hub/api/health"] {
        let resp = hub
            .client
            .get(format!("{}{path}", hub.origin))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
});

hub_test!(
    config_tokens_and_services_work,
    config = "[hub.api_tokens]\n\"user-token-123456\" = \"carol\"\n[[services]]\nname = \"culler\"\napi_token = \"culler-token-123456\"\n[[roles]]\nname = \"culler\"\nscopes = [\"list:users\", \"read:users:activity\", \"read:servers\", \"delete:servers\"]\nservices = [\"culler\"]\n",
    |hub| async move {
        let carol = common::Persona {
            name: "carol".into(),
            token: "user-token-123456".into(),
        };
        let (status, body) = hub.get("/user", Some(&carol)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["name"], "carol");
        let culler = common::Persona {
            name: "culler".into(),
            token: "culler-token-123456".into(),
        };
        let (status, body) = hub.get("/user", Some(&culler)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["kind"], "service");
        assert_eq!(
            body["scopes"],
            json!([
                "delete:servers",
                "list:users",
                "read:servers",
                "read:users:activity",
                "read:users:name"
            ])
        );
    }
);

hub_test!(metrics_need_read_metrics, |hub| async move {
    let resp = hub
        .client
        .get(format!("{}/hub/metrics", hub.origin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let alice = hub.user("alice", false).await;
    let (status, body) = hub.get("/metrics", Some(&alice)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let admin = hub.user("root", true).await;
    for url in [
        format!("{}/hub/metrics", hub.origin),
        hub.api_url("/metrics"),
    ] {
        let resp = hub
            .client
            .get(&url)
            .header("Authorization", format!("token {}", admin.token))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let text = resp.text().await.unwrap();
        assert!(text.contains("jupyterhub_total_users 2\n"), "{text}");
        assert!(text.contains("jupyterhub_running_servers 0\n"));
        // Earlier requests were timed under their route template, not the raw path.
        assert!(text.contains("handler=\"/hub/api/metrics\""), "{text}");
    }
});

hub_test!(
    metrics_can_be_public,
    config = "[hub]\nauthenticate_prometheus = false\n",
    |hub| async move {
        let resp = hub
            .client
            .get(format!("{}/hub/metrics", hub.origin))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
);
