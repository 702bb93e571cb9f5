//! Security checklist group F (input validation): the cases not already covered by the API
//! and page tests, each sent to the real hub on SQLite and PostgreSQL. The checklist lives in
//! the shared security reference, §5 F.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::large_futures,
    missing_docs
)]

mod common;

use std::time::{Duration, Instant};

use common::{Persona, TestHub};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Sends `body` as raw bytes with a JSON content type.
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
        .unwrap();
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The error shape of every API refusal.
fn assert_error_shape(status: StatusCode, reply: &Value, what: &str) {
    assert_eq!(reply["status"], status.as_u16(), "{what}: {reply}");
    assert!(
        reply["message"].is_string() || reply["message"].is_null(),
        "{what}: {reply}"
    );
    let text = reply.to_string();
    assert!(
        !text.contains("panicked") && !text.contains("Traceback"),
        "{what}: {text}"
    );
}

/// Every API endpoint that takes a JSON body (after the named resources exist).
const BODY_ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/users"),
    ("POST", "/users/newcomer"),
    ("PATCH", "/users/bob"),
    ("POST", "/users/bob/tokens"),
    ("POST", "/users/bob/server"),
    ("POST", "/users/bob/activity"),
    ("POST", "/groups"),
    ("POST", "/groups/team"),
    ("POST", "/groups/team/users"),
    ("DELETE", "/groups/team/users"),
    ("PUT", "/groups/team/properties"),
    ("POST", "/services/newsvc"),
    ("POST", "/shares/bob/"),
    ("PATCH", "/shares/bob/"),
    ("POST", "/share-codes/bob/"),
    ("PATCH", "/proxy"),
];

// === F.55 ===

hub_test!(malformed_json_is_a_400_everywhere, |hub| async move {
    // Security checklist F.55: malformed JSON, invalid UTF-8 and numbers beyond f64 are a
    // 400 with `{"status", "message"}` on every endpoint that takes a body; never a 5xx.
    let root = hub.user("root", true).await;
    hub.user("bob", false).await;
    hub.post("/groups/team", Some(&root), json!({})).await;
    for (method, path) in BODY_ENDPOINTS {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        for body in [
            b"{not json".to_vec(),
            b"{\"a\": ".to_vec(),
            vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'],
            b"{\"a\": 1e999}".to_vec(),
            b"{\"a\": 1}{\"b\": 2}".to_vec(),
        ] {
            let (status, reply) = raw(hub, method.clone(), path, &root, body.clone()).await;
            let what = format!("{method} {path} {:?}", String::from_utf8_lossy(&body));
            assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {reply}");
            assert_error_shape(status, &reply, &what);
        }
    }
    // Nothing was created.
    for path in ["/users/newcomer", "/services/newsvc"] {
        let (status, _) = hub.get(path, Some(&root)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
});

// === F.55 / F.56 ===

hub_test!(wrong_json_shapes_and_types_are_4xx, |hub| async move {
    // Security checklist F.55 / F.56: `null`, arrays, strings and numbers where an object is
    // expected, and wrong field types, are refused with a 4xx error body (or, where
    // JupyterHub treats a falsy body as empty, accepted as empty); never a 5xx.
    let root = hub.user("root", true).await;
    hub.user("bob", false).await;
    hub.post("/groups/team", Some(&root), json!({})).await;
    // (`PATCH /proxy` answers 503 here: the test hub runs without a proxy.)
    for (method, path) in BODY_ENDPOINTS.iter().filter(|(_, p)| *p != "/proxy") {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        for body in [
            "null",
            "[1]",
            "\"x\"",
            "7",
            "true",
            "{\"nope\": {\"deep\": [1]}}",
        ] {
            let (status, reply) =
                raw(hub, method.clone(), path, &root, body.as_bytes().to_vec()).await;
            let what = format!("{method} {path} {body}");
            assert!(!status.is_server_error(), "{what}: {status} {reply}");
            if !status.is_success() {
                assert!(status.is_client_error(), "{what}: {status}");
                assert_error_shape(status, &reply, &what);
            }
        }
    }
    // Field types.
    let tokens_before = hub.get("/users/bob/tokens", Some(&root)).await.1["api_tokens"]
        .as_array()
        .unwrap()
        .len();
    for (path, body) in [
        ("/users/bob/tokens", json!({"scopes": {}})),
        ("/users/bob/tokens", json!({"scopes": "read:users"})),
        ("/users/bob/tokens", json!({"scopes": [1]})),
        ("/users/bob/tokens", json!({"roles": "admin"})),
        ("/users/bob/tokens", json!({"note": 5})),
        ("/users/bob/tokens", json!({"expires_in": "abc"})),
        ("/users/bob/tokens", json!({"expires_in": -1})),
        ("/users/bob/tokens", json!({"expires_in": 0})),
        ("/users/bob/tokens", json!({"expires_in": 1e300})),
        ("/users", json!({"usernames": "a"})),
        ("/users", json!({"usernames": ["a"], "admin": "yes"})),
        ("/groups", json!({"groups": "g"})),
        ("/groups/team/users", json!({"users": "bob"})),
        ("/users/bob/activity", json!({"last_activity": 5})),
        ("/users/bob/activity", json!({"last_activity": "yesterday"})),
    ] {
        let (status, reply) = hub.post(path, Some(&root), body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {reply}");
        assert_error_shape(status, &reply, path);
    }
    let (status, _, reply) = hub
        .call(
            Method::PATCH,
            "/users/bob",
            Some(&root),
            Some(json!({"admin": "yes"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let (_, model) = hub.get("/users/bob", Some(&root)).await;
    assert_eq!(model["admin"], false);
    let (_, toks) = hub.get("/users/bob/tokens", Some(&root)).await;
    assert_eq!(
        toks["api_tokens"].as_array().unwrap().len(),
        tokens_before,
        "no token was made"
    );
});

// === F.57 ===

hub_test!(many_small_keys_are_refused_quickly, |hub| async move {
    // Security checklist F.57: a body of 50 000 small keys (under the size cap) is refused
    // without a long stall, and nothing is written.
    let root = hub.user("root", true).await;
    let mut body = String::from("{\"usernames\": [\"many\"]");
    for i in 0..50_000 {
        body.push_str(&format!(",\"k{i}\":0"));
    }
    body.push('}');
    assert!(body.len() < 1024 * 1024);
    let started = Instant::now();
    let (status, reply) = raw(hub, Method::POST, "/users", &root, body.into_bytes()).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(status.is_client_error(), "{status}");
    assert_error_shape(status, &reply, "many keys");
    // The message names the unknown keys, as JupyterHub's does; no more than the body.
    assert!(reply.to_string().len() < 2 * 1024 * 1024);
    let (status, _) = hub.get("/users/many", Some(&root)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
});

// === F.58 ===

hub_test!(
    unicode_names_are_lowercased_not_normalised,
    |hub| async move {
        // Security checklist F.58 (decision): as in JupyterHub, names are lower-cased
        // (Unicode-aware) but not NFC/NFKC-normalised, so a decomposed and a precomposed name are
        // two different users; each round-trips exactly through the API.
        let root = hub.user("root", true).await;
        let precomposed = "\u{e9}mile";
        let decomposed = "e\u{301}mile";
        let (status, body) = hub
            .post("/users", Some(&root), json!({"usernames": ["\u{c9}MILE"]}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body[0]["name"], precomposed);
        let (status, body) = hub
            .post(
                "/users",
                Some(&root),
                json!({"usernames": [decomposed, "E\u{301}MILE"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body.as_array().unwrap().len(), 1, "{body}");
        assert_eq!(body[0]["name"], decomposed);
        for name in [precomposed, decomposed] {
            let path: String = format!("/users/{}", percent_encode(name));
            let (status, model) = hub.get(&path, Some(&root)).await;
            assert_eq!(status, StatusCode::OK, "{name:?}");
            assert_eq!(model["name"], name);
        }
    }
);

fn percent_encode(name: &str) -> String {
    form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

// === F.59 ===

hub_test!(dot_and_special_character_names, |hub| async move {
    // Security checklist F.59 (decision): `.` and `..` (any name of only dots) are refused,
    // unlike JupyterHub's default validator; `%2e` and names with `@ ~ # ? %` are allowed and
    // map to one URL each, which stays inside `/user/<name>/`.
    let root = hub.user("root", true).await;
    for bad in [".", "..", "...", "a/..", "../a"] {
        let (status, body) = hub
            .post("/users", Some(&root), json!({"usernames": [bad]}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let (status, body) = hub
            .post(
                &format!("/users/{}", percent_encode(bad)),
                Some(&root),
                json!({}),
            )
            .await;
        assert!(status.is_client_error(), "{bad}: {status} {body}");
    }
    let special = ["%2e", "a@b", "t~x", "h#x", "q?x", "p%x", "s x", "%2e%2e"];
    let (status, body) = hub
        .post("/users", Some(&root), json!({"usernames": special}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut urls = std::collections::BTreeSet::new();
    for name in special {
        let (status, model) = hub
            .get(&format!("/users/{}", percent_encode(name)), Some(&root))
            .await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(model["name"], name);
        let (status, model) = hub
            .get(
                &format!("/users/{}?include_stopped_servers", percent_encode(name)),
                Some(&root),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let url = model["servers"][""]["url"].as_str().unwrap().to_owned();
        assert!(
            url.starts_with("/user/") && url.ends_with('/'),
            "{name}: {url}"
        );
        let segment = &url["/user/".len()..url.len() - 1];
        assert!(!segment.contains(['/', '#', '?']), "{name}: {url}");
        assert!(segment != "." && segment != "..", "{name}: {url}");
        let resolved = url::Url::parse("http://h").unwrap().join(&url).unwrap();
        assert_eq!(resolved.path(), url, "{name}: the URL is already normal");
        let decoded = percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .unwrap();
        assert_eq!(decoded, name, "{url}");
        assert!(urls.insert(url), "{name}: two names share a URL");
    }
});

// === F.61 ===

hub_test!(pagination_arguments_are_checked, |hub| async move {
    // Security checklist F.61: `limit` above 200 is capped; a non-integer `offset` or
    // `limit`, and an unknown `sort` or `state`, are a 400. A negative one counts as its
    // absolute value, as in JupyterHub.
    let root = hub.user("root", true).await;
    let paged = |query: &'static str| {
        let root = root.clone();
        async move {
            let resp = hub
                .client
                .get(hub.api_url(&format!("/users{query}")))
                .header("Authorization", format!("token {}", root.token))
                .header("Accept", "application/jupyterhub-pagination+json")
                .send()
                .await
                .unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = paged("?limit=100000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["_pagination"]["limit"], 200);
    let (status, body) = paged("?offset=-1&limit=-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["_pagination"]["offset"], 1);
    assert_eq!(body["_pagination"]["limit"], 1);
    for query in [
        "?offset=abc",
        "?offset=1.5",
        "?limit=abc",
        "?sort=password",
        "?sort=name;drop",
        "?state=bogus",
        "?offset=99999999999999999999999",
    ] {
        let (status, body) = paged(query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_error_shape(status, &body, query);
    }
});
