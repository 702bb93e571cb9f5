//! The deprecated `/authorizations/...` endpoints.

mod common;

use reqwest::StatusCode;
use serde_json::Value;

const CONFIG: &str = "[[services]]\nname = \"legacy\"\napi_token = \"legacy-token-123456\"\n";

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

hub_test!(token_lookup, config = CONFIG, |hub| async move {
    let alice = hub.user("alice", false).await;
    let bob = hub.user("bob", false).await;
    let service = common::Persona {
        name: "legacy".into(),
        token: "legacy-token-123456".into(),
    };

    // Any valid token may look up another token's owner.
    let (status, body) = hub
        .get(
            &format!("/authorizations/token/{}", bob.token),
            Some(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["kind"], "user");
    assert_eq!(body["name"], "bob");

    let (status, body) = hub
        .get(
            &format!("/authorizations/token/{}", service.token),
            Some(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["kind"], "service");
    assert_eq!(body["name"], "legacy");

    // An invalid path token: 404.
    let (status, _) = hub
        .get("/authorizations/token/not-a-real-token-0000", Some(&alice))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // No credentials: 403.
    let (status, _) = hub
        .get(&format!("/authorizations/token/{}", bob.token), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
});

hub_test!(token_lookup_refuses_cookies, |hub| async move {
    let bob = hub.user("bob", false).await;
    let browser = hub.browser("alice").await;
    let resp = hub
        .client
        .get(hub.api_url(&format!("/authorizations/token/{}", bob.token)))
        .header("Cookie", &browser.cookie)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
});

hub_test!(post_token_is_gone, |hub| async move {
    let alice = hub.user("alice", false).await;
    for who in [None, Some(&alice)] {
        let (status, body) = hub
            .post(
                "/authorizations/token",
                who,
                serde_json::json!({"username": "alice"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            message(&body).contains("removed in JupyterHub 2.0"),
            "{body}"
        );
    }
});

hub_test!(cookie_lookup, |hub| async move {
    let alice = hub.user("alice", false).await;
    let browser = hub.browser("carol").await;
    let cookie = browser
        .cookie
        .split("; ")
        .find_map(|c| c.strip_prefix("jupyterhub-hub-login="))
        .expect("login cookie")
        .to_owned();

    let (status, body) = hub
        .get(
            &format!("/authorizations/cookie/jupyterhub-hub-login/{cookie}"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["kind"], "user");
    assert_eq!(body["name"], "carol");

    // The value in the body.
    let resp = hub
        .client
        .get(hub.api_url("/authorizations/cookie/jupyterhub-hub-login"))
        .header("Authorization", format!("token {}", alice.token))
        .body(cookie.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);

    // Signed for another name, or tampered with: 404.
    let (status, _) = hub
        .get(
            &format!("/authorizations/cookie/other/{cookie}"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = hub
        .get(
            "/authorizations/cookie/jupyterhub-hub-login/2|1:0|10:1|4:abcd|4:abcd|deadbeef",
            Some(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
});
