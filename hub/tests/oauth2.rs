//! The OAuth2 provider: `/hub/api/oauth2/authorize` (GET and the confirmation POST) and
//! `/hub/api/oauth2/token`, for users' servers and services, with the security checklist's
//! cases (redirect URI, unknown clients, code reuse and expiry, client binding, client
//! secrets, PKCE, scopes, access, XSRF, logout); each on SQLite and PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::large_futures,
    missing_docs
)]

mod common;

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Browser, Persona, TestHub};
use diesel::prelude::*;
use hub::db::models::api_tokens::ApiToken;
use hub::db::models::oauth_clients::{self, ClientOwner, NewOAuthClient, OAuthClient};
use hub::db::models::oauth_codes::OAuthCode;
use hub::db::models::{spawners, users};
use hub::identity::tokens::{self, HashedToken};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

// === helpers ===

/// A client the tests can authenticate as.
#[derive(Debug, Clone)]
struct TestClient {
    id: String,
    secret: String,
    redirect_uri: String,
}

fn enc(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Registers the OAuth client of server `server` of `owner` (creating both), with secret
/// `secret-of-<id>` and the server's access scope plus `extra` allowed.
async fn server_client(hub: &TestHub, owner: &str, server: &str, extra: &[&str]) -> TestClient {
    hub.user(owner, false).await;
    let id = if server.is_empty() {
        format!("jupyterhub-user-{owner}")
    } else {
        format!("jupyterhub-user-{owner}-{server}")
    };
    let prefix = if server.is_empty() {
        format!("/user/{owner}/")
    } else {
        format!("/user/{owner}/{server}/")
    };
    let secret = format!("secret-of-{id}");
    let hash = HashedToken::new(&secret, tokens::USER_PROVIDED_ROUNDS).to_string();
    let mut allowed = vec![format!("access:servers!server={owner}/{server}")];
    allowed.extend(extra.iter().map(|s| (*s).to_owned()));
    let redirect_uri = format!("{prefix}oauth_callback");
    let (o, s, i, r) = (
        owner.to_owned(),
        server.to_owned(),
        id.clone(),
        redirect_uri.clone(),
    );
    hub.state
        .db
        .run(move |c| {
            let user = users::find_by_name(c, &o)?.unwrap();
            let spawner = spawners::find_or_insert(c, user.id, &s)?;
            oauth_clients::upsert(
                c,
                &NewOAuthClient {
                    identifier: &i,
                    description: &format!("Server at {prefix}"),
                    secret: &hash,
                    redirect_uri: &r,
                    allowed_scopes: &allowed,
                    owner: ClientOwner::Spawner(spawner.id),
                },
            )
        })
        .await
        .unwrap();
    hub.state.identities.invalidate();
    TestClient {
        id,
        secret,
        redirect_uri,
    }
}

async fn client_row(hub: &TestHub, id: &str) -> Option<OAuthClient> {
    let id = id.to_owned();
    hub.state
        .db
        .run(move |c| oauth_clients::find_by_identifier(c, &id))
        .await
        .unwrap()
}

async fn codes(hub: &TestHub) -> Vec<OAuthCode> {
    use hub::db::schema::oauth_codes as t;
    hub.state
        .db
        .run(move |c| t::table.select(OAuthCode::as_select()).load(c))
        .await
        .unwrap()
}

async fn tokens_of_client(hub: &TestHub, client_id: &str) -> Vec<ApiToken> {
    use hub::db::schema::api_tokens as t;
    let client_id = client_id.to_owned();
    hub.state
        .db
        .run(move |c| {
            t::table
                .filter(t::client_id.eq(client_id))
                .select(ApiToken::as_select())
                .load(c)
        })
        .await
        .unwrap()
}

fn authorize_url(hub: &TestHub, client: &TestClient, extra: &str) -> String {
    format!(
        "{}/hub/api/oauth2/authorize?client_id={}&redirect_uri={}&response_type=code{extra}",
        hub.origin,
        enc(&client.id),
        enc(&client.redirect_uri)
    )
}

fn session_of(browser: &Browser) -> String {
    browser
        .cookie
        .split("; ")
        .find_map(|c| c.strip_prefix("jupyterhub-session-id="))
        .unwrap()
        .to_owned()
}

async fn send_as(
    hub: &TestHub,
    method: Method,
    url: &str,
    cookie: Option<&str>,
    body: Option<String>,
) -> reqwest::Response {
    let mut req = hub.client.request(method, url);
    if let Some(cookie) = cookie {
        req = req.header("Cookie", cookie);
    }
    if let Some(body) = body {
        req = req
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
    }
    req.send().await.unwrap()
}

async fn get_as(hub: &TestHub, browser: &Browser, url: &str) -> reqwest::Response {
    send_as(hub, Method::GET, url, Some(&browser.cookie), None).await
}

/// The page's HTML with the escapes of `/` undone, to look for attribute values.
async fn page(resp: reqwest::Response) -> String {
    resp.text()
        .await
        .unwrap()
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
}

fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// The path and decoded query of a redirect target.
fn split_location(location: &str) -> (String, HashMap<String, String>) {
    let url = url::Url::parse("http://hub.invalid/")
        .unwrap()
        .join(location)
        .unwrap();
    let query = url.query_pairs().into_owned().collect();
    let base = if location.starts_with('/') {
        url.path().to_owned()
    } else {
        format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap(),
            url.path()
        )
    };
    (base, query)
}

/// Authorizes without confirmation and returns the code from the redirect.
async fn code_for(hub: &TestHub, browser: &Browser, client: &TestClient, extra: &str) -> String {
    let resp = get_as(hub, browser, &authorize_url(hub, client, extra)).await;
    assert_eq!(resp.status(), StatusCode::FOUND, "{:?}", resp.text().await);
    let (base, query) = split_location(&location(&resp).unwrap());
    assert_eq!(base, client.redirect_uri);
    query["code"].clone()
}

async fn token_request(hub: &TestHub, body: &str) -> (StatusCode, HeaderMap, Value) {
    let resp = send_as(
        hub,
        Method::POST,
        &hub.api_url("/oauth2/token"),
        None,
        Some(body.to_owned()),
    )
    .await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null);
    (status, headers, body)
}

async fn redeem(
    hub: &TestHub,
    client: &TestClient,
    code: &str,
    verifier: Option<&str>,
) -> (StatusCode, Value) {
    let mut pairs = vec![
        ("client_id", client.id.as_str()),
        ("client_secret", client.secret.as_str()),
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", client.redirect_uri.as_str()),
    ];
    if let Some(v) = verifier {
        pairs.push(("code_verifier", v));
    }
    let (status, _, body) = token_request(hub, &form(&pairs)).await;
    (status, body)
}

fn bearer(name: &str, body: &Value) -> Persona {
    Persona {
        name: name.to_owned(),
        token: body["access_token"].as_str().unwrap().to_owned(),
    }
}

fn scope_set(body: &Value) -> BTreeSet<String> {
    body["scope"]
        .as_str()
        .unwrap()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

// === the whole flow ===

hub_test!(own_server_flow_with_pkce, |hub| async move {
    // A server started through the API registers its client; its secret is replaced by one the
    // test knows (the real one only exists in the server's environment).
    let admin = hub.user("root", true).await;
    let alice_browser = hub.browser("alice").await;
    let (status, _) = hub
        .post("/users/alice/server", Some(&admin), json!({}))
        .await;
    assert!(status.is_success(), "{status}");
    let registered = client_row(hub, "jupyterhub-user-alice").await.unwrap();
    assert_eq!(registered.redirect_uri, "/user/alice/oauth_callback");
    let client = server_client(hub, "alice", "", &[]).await;

    let state = "st ate/&x=é";
    let extra = format!(
        "&state={}&code_challenge={}&code_challenge_method=S256",
        enc(state),
        s256(VERIFIER)
    );
    let resp = get_as(hub, &alice_browser, &authorize_url(hub, &client, &extra)).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let loc = location(&resp).unwrap();
    assert!(loc.starts_with("/user/alice/oauth_callback?code="), "{loc}");
    let (_, query) = split_location(&loc);
    assert_eq!(query["state"], state);
    let code = query["code"].clone();
    assert_eq!(code.len(), 30);
    assert!(code.chars().all(|c| c.is_ascii_alphanumeric()));
    // The session cookie exists, so none is set.
    assert!(
        !resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("jupyterhub-session-id="))
    );

    // Stored as a digest, bound to the session, the PKCE challenge, five minutes.
    let stored = codes(hub).await;
    assert_eq!(stored.len(), 1);
    let row = &stored[0];
    assert_ne!(row.code_hash, code);
    assert!(!row.code_hash.contains(&code));
    assert_eq!(row.client_id, client.id);
    assert_eq!(row.redirect_uri, client.redirect_uri);
    assert_eq!(
        row.session_id.as_deref(),
        Some(session_of(&alice_browser).as_str())
    );
    assert_eq!(row.code_challenge.as_deref(), Some(s256(VERIFIER).as_str()));
    assert_eq!(row.code_challenge_method.as_deref(), Some("S256"));
    let lifetime = (row.expires_at - row.created).num_seconds();
    assert!((299..=301).contains(&lifetime), "{lifetime}");
    assert_eq!(
        row.scopes.iter().cloned().collect::<BTreeSet<_>>(),
        set(&[
            "access:servers!server=alice/",
            "read:users:groups!user",
            "read:users:name!user"
        ])
    );

    // Exchange.
    let pairs = [
        ("client_id", client.id.as_str()),
        ("client_secret", client.secret.as_str()),
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", client.redirect_uri.as_str()),
        ("code_verifier", VERIFIER),
    ];
    let (status, headers, body) = token_request(hub, &form(&pairs)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 1_209_600);
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(access.len(), 30);
    assert!(access.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        scope_set(&body),
        set(&[
            "access:servers!server=alice/",
            "read:users:groups!user",
            "read:users:name!user"
        ])
    );
    assert!(codes(hub).await.is_empty(), "the code is used up");

    // The token row.
    let toks = tokens_of_client(hub, &client.id).await;
    assert_eq!(toks.len(), 1);
    let tok = &toks[0];
    assert_eq!(tok.note, "");
    assert_eq!(
        tok.session_id.as_deref(),
        Some(session_of(&alice_browser).as_str())
    );
    assert!(tok.hashed.starts_with("sha512:1:"));
    let expires = (tok.expires_at.unwrap() - tok.created).num_seconds();
    assert!((1_209_598..=1_209_602).contains(&expires), "{expires}");

    // The token identifies alice, with the server's access scope.
    let me = bearer("alice", &body);
    let (status, model) = hub.get("/user", Some(&me)).await;
    assert_eq!(status, StatusCode::OK, "{model}");
    assert_eq!(model["name"], "alice");
    assert_eq!(model["kind"], "user");
    assert_eq!(model["admin"], false);
    assert_eq!(model["groups"], json!([]));
    assert_eq!(model["session_id"], json!(session_of(&alice_browser)));
    assert_eq!(model["token_id"], json!(format!("a{}", tok.id)));
    assert_eq!(
        model["scopes"],
        json!([
            "access:servers!server=alice/",
            "read:users:groups!user=alice",
            "read:users:name!user=alice"
        ])
    );
    // Nothing beyond identification.
    let (status, _) = hub.get("/info", Some(&me)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = hub.get("/users", Some(&me)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The code cannot be used twice.
    let (status, body) = redeem(hub, &client, &code, Some(VERIFIER)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"error": "invalid_grant"}));
});

hub_test!(named_server_and_plain_pkce, |hub| async move {
    let browser = hub.browser("carol").await;
    let client = server_client(hub, "carol", "gpu", &[]).await;
    assert_eq!(client.redirect_uri, "/user/carol/gpu/oauth_callback");
    let code = code_for(
        hub,
        &browser,
        &client,
        "&code_challenge=plain-verifier-value&code_challenge_method=plain",
    )
    .await;
    let (status, _) = redeem(hub, &client, &code, Some("other-verifier")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = redeem(hub, &client, &code, Some("plain-verifier-value")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(scope_set(&body).contains("access:servers!server=carol/gpu"));
    // A challenge without a method is plain.
    let code = code_for(hub, &browser, &client, "&code_challenge=abc").await;
    let (status, _) = redeem(hub, &client, &code, Some("abc")).await;
    assert_eq!(status, StatusCode::OK);
});

// === services ===

const SERVICE_CONFIG: &str = "[[services]]
name = \"websvc\"
url = \"http://127.0.0.1:10101\"
api_token = \"websvc-token-123456\"
oauth_client_allowed_scopes = [\"read:users:activity!user\"]
[[services]]
name = \"trusted\"
url = \"http://127.0.0.1:10102\"
api_token = \"trusted-token-123456\"
oauth_no_confirm = true
oauth_client_id = \"service-custom-id\"
oauth_redirect_uri = \"https://svc.example.org/callback?x=1\"
[[services]]
name = \"noweb\"
api_token = \"noweb-token-123456\"
[[roles]]
name = \"svc-users\"
scopes = [\"access:services!service=websvc\", \"access:services!service=trusted\"]
users = [\"alice\"]
";

hub_test!(
    service_flow_with_confirmation,
    config = SERVICE_CONFIG,
    |hub| async move {
        // Clients registered at startup for services with a URL.
        let row = client_row(hub, "service-websvc").await.unwrap();
        assert_eq!(row.redirect_uri, "/services/websvc/oauth_callback");
        assert_eq!(row.description, "JupyterHub service websvc");
        assert!(row.secret.starts_with("sha512:16384:"));
        assert!(tokens::verify_token(&row.secret, "websvc-token-123456"));
        assert_eq!(
            row.allowed_scopes.iter().cloned().collect::<BTreeSet<_>>(),
            set(&["access:services!service=websvc", "read:users:activity!user"])
        );
        assert!(row.service_id.is_some());
        assert!(client_row(hub, "service-noweb").await.is_none());

        let client = TestClient {
            id: "service-websvc".to_owned(),
            secret: "websvc-token-123456".to_owned(),
            redirect_uri: "/services/websvc/oauth_callback".to_owned(),
        };
        let alice = hub.browser("alice").await;

        // First time: the confirmation page.
        let url = authorize_url(hub, &client, "&state=s1");
        let resp = get_as(hub, &alice, &url).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(location(&resp).is_none());
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("default-src 'none'"), "{csp}");
        let html = page(resp).await;
        assert!(html.contains("Authorize access"), "{html}");
        assert!(html.contains("JupyterHub service websvc"), "{html}");
        for scope in [
            "access:services!service=websvc",
            "read:users:activity!user",
            "read:users:name!user",
            "read:users:groups!user",
        ] {
            assert!(
                html.contains(&format!("name=\"scopes\" value=\"{scope}\"")),
                "{scope} missing: {html}"
            );
        }
        assert!(html.contains(&format!("name=\"_xsrf\" value=\"{}\"", alice.xsrf)));
        assert!(codes(hub).await.is_empty());

        // Submitting the form: a code for the submitted scopes.
        let body = form(&[
            ("_xsrf", alice.xsrf.as_str()),
            ("scopes", "access:services!service=websvc"),
            ("scopes", "read:users:name!user"),
            ("scopes", "read:users:groups!user"),
        ]);
        let resp = send_as(hub, Method::POST, &url, Some(&alice.cookie), Some(body)).await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        let (base, query) = split_location(&location(&resp).unwrap());
        assert_eq!(base, client.redirect_uri);
        assert_eq!(query["state"], "s1");
        let (status, body) = redeem(hub, &client, &query["code"], None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            scope_set(&body),
            set(&[
                "access:services!service=websvc",
                "read:users:groups!user",
                "read:users:name!user"
            ])
        );
        let (status, model) = hub.get("/user", Some(&bearer("alice", &body))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(model["name"], "alice");
        assert!(
            model["scopes"]
                .as_array()
                .unwrap()
                .contains(&json!("access:services!service=websvc")),
            "{model}"
        );

        // The same scopes again: no confirmation.
        let resp = get_as(
            hub,
            &alice,
            &authorize_url(hub, &client, "&scope=identify&state=s2"),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        // More than before: confirmation again.
        let resp = get_as(hub, &alice, &authorize_url(hub, &client, "")).await;
        assert_eq!(resp.status(), StatusCode::OK);

        // A wrong service secret.
        let code = {
            let body = form(&[("_xsrf", alice.xsrf.as_str())]);
            let resp = send_as(hub, Method::POST, &url, Some(&alice.cookie), Some(body)).await;
            assert_eq!(resp.status(), StatusCode::FOUND);
            split_location(&location(&resp).unwrap()).1["code"].clone()
        };
        let wrong = TestClient {
            secret: "trusted-token-123456".to_owned(),
            ..client.clone()
        };
        let (status, body) = redeem(hub, &wrong, &code, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body, json!({"error": "invalid_client"}));
        // An empty selection grants identification and access only.
        let (status, body) = redeem(hub, &client, &code, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            scope_set(&body),
            set(&[
                "access:services!service=websvc",
                "read:users:groups!user",
                "read:users:name!user"
            ])
        );

        // A user without access to the service: 403, no code.
        let bob = hub.browser("bob").await;
        let resp = get_as(hub, &bob, &url).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(location(&resp).is_none());
        let html = page(resp).await;
        assert!(
            html.contains("You do not have permission to access JupyterHub service websvc"),
            "{html}"
        );
        let resp = send_as(
            hub,
            Method::POST,
            &url,
            Some(&bob.cookie),
            Some(form(&[("_xsrf", bob.xsrf.as_str())])),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(location(&resp).is_none());
    }
);

hub_test!(
    service_without_confirmation,
    config = SERVICE_CONFIG,
    |hub| async move {
        let row = client_row(hub, "service-custom-id").await.unwrap();
        assert_eq!(row.redirect_uri, "https://svc.example.org/callback?x=1");
        let client = TestClient {
            id: "service-custom-id".to_owned(),
            secret: "trusted-token-123456".to_owned(),
            redirect_uri: row.redirect_uri.clone(),
        };
        let alice = hub.browser("alice").await;
        let resp = get_as(hub, &alice, &authorize_url(hub, &client, "&state=xyz")).await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        let loc = location(&resp).unwrap();
        assert!(
            loc.starts_with("https://svc.example.org/callback?x=1&code="),
            "{loc}"
        );
        let (_, query) = split_location(&loc);
        assert_eq!(query["x"], "1");
        assert_eq!(query["state"], "xyz");
        let (status, body) = redeem(hub, &client, &query["code"], None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(scope_set(&body).contains("access:services!service=trusted"));
    }
);

// === confirmation for someone else's server ===

hub_test!(admin_confirms_other_users_server, |hub| async move {
    hub.user("root", true).await;
    let root = hub.browser("root").await;
    let client = server_client(hub, "alice", "", &[]).await;
    let url = authorize_url(hub, &client, "&state=abc");

    let resp = get_as(hub, &root, &url).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = page(resp).await;
    assert!(html.contains("Server at /user/alice/"), "{html}");
    assert!(html.contains("name=\"scopes\" value=\"access:servers!server=alice/\""));
    assert!(html.contains("name=\"scopes\" value=\"read:users:name!user\""));
    assert!(html.contains("method=\"post\""));

    let scopes = [
        ("scopes", "access:servers!server=alice/"),
        ("scopes", "read:users:name!user"),
        ("scopes", "read:users:groups!user"),
    ];
    // Without `_xsrf`, or with a token of another session: refused.
    let resp = send_as(
        hub,
        Method::POST,
        &url,
        Some(&root.cookie),
        Some(form(&scopes)),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(location(&resp).is_none());
    let other = hub.browser("root").await;
    let mut with_other = scopes.to_vec();
    with_other.push(("_xsrf", other.xsrf.as_str()));
    let resp = send_as(
        hub,
        Method::POST,
        &url,
        Some(&root.cookie),
        Some(form(&with_other)),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(codes(hub).await.is_empty());

    // With it: a code, then a token for root that reaches alice's server.
    let mut with_xsrf = scopes.to_vec();
    with_xsrf.push(("_xsrf", root.xsrf.as_str()));
    let resp = send_as(
        hub,
        Method::POST,
        &url,
        Some(&root.cookie),
        Some(form(&with_xsrf)),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let (_, query) = split_location(&location(&resp).unwrap());
    assert_eq!(query["state"], "abc");
    let (status, body) = redeem(hub, &client, &query["code"], None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, model) = hub.get("/user", Some(&bearer("root", &body))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(model["name"], "root");
    assert_eq!(model["admin"], true);
    assert_eq!(
        model["scopes"],
        json!([
            "access:servers!server=alice/",
            "read:users:groups!user=root",
            "read:users:name!user=root"
        ])
    );

    // Scopes smuggled into the form beyond the client's allowed set: refused.
    let mut smuggled = with_xsrf.clone();
    smuggled.push(("scopes", "admin:users"));
    let resp = send_as(
        hub,
        Method::POST,
        &url,
        Some(&root.cookie),
        Some(form(&smuggled)),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let (_, query) = split_location(&location(&resp).unwrap());
    assert_eq!(query["error"], "invalid_scope");
    assert!(!query.contains_key("code"));

    // A user with no access to alice's server: 403 page, on GET and POST.
    let bob = hub.browser("bob").await;
    let resp = get_as(hub, &bob, &url).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let html = page(resp).await;
    assert!(
        html.contains("You do not have permission to access Server at /user/alice/"),
        "{html}"
    );
    let mut bob_form = scopes.to_vec();
    bob_form.push(("_xsrf", bob.xsrf.as_str()));
    let resp = send_as(
        hub,
        Method::POST,
        &url,
        Some(&bob.cookie),
        Some(form(&bob_form)),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(location(&resp).is_none());
});

hub_test!(
    shared_server_access,
    config = "[hub]\nextra_user_scopes = [\"shares!user\", \"read:users:name\"]\n",
    |hub| async move {
        let client = server_client(hub, "alice", "", &[]).await;
        let alice = hub.user("alice", false).await;
        let bob = hub.browser("bob").await;
        let url = authorize_url(hub, &client, "");
        assert_eq!(
            get_as(hub, &bob, &url).await.status(),
            StatusCode::FORBIDDEN
        );
        let (status, body) = hub
            .post("/shares/alice/", Some(&alice), json!({"user": "bob"}))
            .await;
        assert!(status.is_success(), "{status} {body}");
        hub.state.identities.invalidate();
        // Access through the share; still someone else's server, so confirmation first.
        let resp = get_as(hub, &bob, &url).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = send_as(
            hub,
            Method::POST,
            &url,
            Some(&bob.cookie),
            Some(form(&[("_xsrf", bob.xsrf.as_str())])),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        let (_, query) = split_location(&location(&resp).unwrap());
        let (status, body) = redeem(hub, &client, &query["code"], None).await;
        assert_eq!(status, StatusCode::OK);
        let (_, model) = hub.get("/user", Some(&bearer("bob", &body))).await;
        assert_eq!(model["name"], "bob");
        assert!(
            model["scopes"]
                .as_array()
                .unwrap()
                .contains(&json!("access:servers!server=alice/")),
            "{model}"
        );
    }
);

// === refusals at authorize ===

hub_test!(not_logged_in, |hub| async move {
    let client = server_client(hub, "alice", "", &[]).await;
    let url = authorize_url(hub, &client, "&state=s");
    let resp = send_as(hub, Method::GET, &url, None, None).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let path_and_query = url.strip_prefix(&hub.origin).unwrap();
    assert_eq!(
        location(&resp).unwrap(),
        format!(
            "/hub/login?next={}",
            percent_encoding::utf8_percent_encode(
                path_and_query,
                percent_encoding::NON_ALPHANUMERIC
            )
        )
    );
    let resp = send_as(hub, Method::POST, &url, None, Some(String::new())).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(location(&resp).is_none());
    let resp = send_as(hub, Method::PUT, &url, None, None).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let resp = send_as(hub, Method::GET, &hub.api_url("/oauth2/token"), None, None).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Neighbouring API paths still get the API's JSON 404.
    let (status, body) = hub.get("/oauth2/authorize/extra", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"status": 404, "message": null}));
    assert!(codes(hub).await.is_empty());
});

hub_test!(redirect_uri_mismatch_is_an_error_page, |hub| async move {
    let alice = hub.browser("alice").await;
    let client = server_client(hub, "alice", "", &[]).await;
    for bad in [
        "/user/alice/oauth_callback/",
        "/user/alice/oauth_callback/extra",
        "/user/alice/oauth_callback?next=/evil",
        "/User/Alice/oauth_callback",
        "/user/alice/OAUTH_CALLBACK",
        "//evil.example/user/alice/oauth_callback",
        "https://evil.example/user/alice/oauth_callback",
        "https://attacker@evil.example/user/alice/oauth_callback",
        "/user/alice/oauth_callback@evil.example",
        "/user/alice/oauth_callback%23",
        "",
    ] {
        let with_bad = TestClient {
            redirect_uri: bad.to_owned(),
            ..client.clone()
        };
        let url = authorize_url(hub, &with_bad, "&state=s");
        let resp = get_as(hub, &alice, &url).await;
        if bad.is_empty() {
            // An empty redirect_uri is an omitted one: the registered URI is used.
            assert_eq!(resp.status(), StatusCode::FOUND);
            assert!(location(&resp).unwrap().starts_with(&client.redirect_uri));
            continue;
        }
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(location(&resp).is_none(), "{bad}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let html = page(resp).await;
        assert!(html.contains("Mismatching redirect URI."), "{bad}: {html}");
    }
    // Also on the confirmation POST.
    let url = authorize_url(
        hub,
        &TestClient {
            redirect_uri: "https://evil.example/".to_owned(),
            ..client.clone()
        },
        "",
    );
    let resp = send_as(
        hub,
        Method::POST,
        &url,
        Some(&alice.cookie),
        Some(form(&[("_xsrf", alice.xsrf.as_str())])),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(location(&resp).is_none());

    // Duplicated parameters.
    let url = format!(
        "{}&redirect_uri={}",
        authorize_url(hub, &client, ""),
        enc("https://evil.example/")
    );
    let resp = get_as(hub, &alice, &url).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(location(&resp).is_none());
    // Only the request with the omitted redirect URI got a code.
    assert_eq!(codes(hub).await.len(), 1);
});

hub_test!(unknown_clients_are_an_error_page, |hub| async move {
    let alice = hub.browser("alice").await;
    server_client(hub, "alice", "", &[]).await;
    for (client_id, message) in [
        ("no-such-client", "Invalid client_id parameter value."),
        ("jupyterhub", "Invalid client_id parameter value."),
        ("", "Missing client_id parameter."),
    ] {
        let url = format!(
            "{}/hub/api/oauth2/authorize?client_id={}&redirect_uri={}&response_type=code",
            hub.origin,
            enc(client_id),
            enc("https://evil.example/cb")
        );
        let resp = get_as(hub, &alice, &url).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{client_id}");
        assert!(location(&resp).is_none());
        let html = page(resp).await;
        assert!(html.contains(message), "{client_id}: {html}");
    }
    let url = format!("{}/hub/api/oauth2/authorize", hub.origin);
    let resp = get_as(hub, &alice, &url).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(location(&resp).is_none());
});

hub_test!(errors_sent_to_the_client, |hub| async move {
    let alice = hub.browser("alice").await;
    let client = server_client(hub, "alice", "", &["admin:users"]).await;
    let refused = |resp: &reqwest::Response| {
        assert_eq!(resp.status(), StatusCode::FOUND);
        let (base, query) = split_location(&location(resp).unwrap());
        assert_eq!(base, client.redirect_uri);
        assert!(!query.contains_key("code"));
        query
    };
    // Beyond the client's allowed scopes.
    let resp = get_as(
        hub,
        &alice,
        &authorize_url(hub, &client, "&scope=admin:servers&state=q%20r"),
    )
    .await;
    let query = refused(&resp);
    assert_eq!(query["error"], "invalid_scope");
    assert_eq!(query["state"], "q r");
    // Unknown scope names.
    let resp = get_as(hub, &alice, &authorize_url(hub, &client, "&scope=bogus")).await;
    assert_eq!(refused(&resp)["error"], "invalid_scope");
    // Another user's server access.
    let resp = get_as(
        hub,
        &alice,
        &authorize_url(hub, &client, "&scope=access:servers!server=bob/"),
    )
    .await;
    assert_eq!(refused(&resp)["error"], "invalid_scope");
    // Bad response types and PKCE methods.
    let url = authorize_url(hub, &client, "").replace("response_type=code", "response_type=token");
    assert_eq!(
        refused(&get_as(hub, &alice, &url).await)["error"],
        "unsupported_response_type"
    );
    let resp = get_as(
        hub,
        &alice,
        &authorize_url(
            hub,
            &client,
            "&code_challenge=abc&code_challenge_method=S512",
        ),
    )
    .await;
    assert_eq!(refused(&resp)["error"], "invalid_request");
    assert!(codes(hub).await.is_empty());

    // Allowed for the client but not held by alice: cut down to the part she holds (her own
    // user), as JupyterHub does.
    let code = code_for(hub, &alice, &client, "&scope=admin:users%20identify").await;
    let (status, body) = redeem(hub, &client, &code, None).await;
    assert_eq!(status, StatusCode::OK);
    let granted = scope_set(&body);
    assert!(!granted.contains("admin:users"), "{granted:?}");
    assert!(granted.is_superset(&set(&[
        "access:servers!server=alice/",
        "read:users:groups!user",
        "read:users:name!user"
    ])));
    for scope in &granted {
        assert!(
            scope.ends_with("!user")
                || scope.ends_with("!user=alice")
                || scope.ends_with("=alice/"),
            "{scope}"
        );
    }
    let (_, model) = hub.get("/user", Some(&bearer("alice", &body))).await;
    for scope in model["scopes"].as_array().unwrap() {
        let scope = scope.as_str().unwrap();
        assert!(
            scope.ends_with("!user=alice") || scope.ends_with("=alice/"),
            "{scope}"
        );
    }
});

hub_test!(
    pkce_can_be_required,
    config = "[hub]\noauth_require_pkce = true\n",
    |hub| async move {
        let alice = hub.browser("alice").await;
        let client = server_client(hub, "alice", "", &[]).await;
        let resp = get_as(hub, &alice, &authorize_url(hub, &client, "&state=p")).await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        let (base, query) = split_location(&location(&resp).unwrap());
        assert_eq!(base, client.redirect_uri);
        assert_eq!(query["error"], "invalid_request");
        assert_eq!(query["state"], "p");
        assert!(!query.contains_key("code"));

        let extra = format!(
            "&code_challenge={}&code_challenge_method=S256",
            s256(VERIFIER)
        );
        let code = code_for(hub, &alice, &client, &extra).await;
        let (status, body) = redeem(hub, &client, &code, Some(VERIFIER)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
);

// === refusals at the token endpoint ===

hub_test!(pkce_verifier_checks, |hub| async move {
    let alice = hub.browser("alice").await;
    let client = server_client(hub, "alice", "", &[]).await;
    let extra = format!(
        "&code_challenge={}&code_challenge_method=S256",
        s256(VERIFIER)
    );
    let code = code_for(hub, &alice, &client, &extra).await;
    // No verifier: refused, and the code stays usable.
    let (status, body) = redeem(hub, &client, &code, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_request", "error_description": "Code verifier required."})
    );
    assert_eq!(codes(hub).await.len(), 1);
    // A wrong verifier, or the challenge itself.
    for wrong in ["wrong-verifier", &s256(VERIFIER), ""] {
        let (status, body) = redeem(hub, &client, &code, Some(wrong)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{wrong}");
        if !wrong.is_empty() {
            assert_eq!(body, json!({"error": "invalid_grant"}));
        }
    }
    let (status, _) = redeem(hub, &client, &code, Some(VERIFIER)).await;
    assert_eq!(status, StatusCode::OK);
});

hub_test!(token_endpoint_refusals, |hub| async move {
    let alice = hub.browser("alice").await;
    let x = server_client(hub, "alice", "", &[]).await;
    let y = server_client(hub, "bob", "", &[]).await;
    let code = code_for(hub, &alice, &x, "").await;

    let base = |overrides: &[(&str, &str)]| {
        let mut pairs: Vec<(&str, &str)> = vec![
            ("client_id", x.id.as_str()),
            ("client_secret", x.secret.as_str()),
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", x.redirect_uri.as_str()),
        ];
        for (k, v) in overrides {
            pairs.retain(|(key, _)| key != k);
            if !v.is_empty() || *k == "client_secret" {
                pairs.push((k, v));
            }
        }
        form(&pairs)
    };

    // Client authentication: 401 with the OAuth error and a challenge header.
    let too_long = "x".repeat(100_000);
    for (name, body) in [
        ("wrong secret", base(&[("client_secret", "nope-nope-nope")])),
        ("empty secret", base(&[("client_secret", "")])),
        (
            "other client's secret",
            base(&[("client_secret", y.secret.as_str())]),
        ),
        ("huge secret", base(&[("client_secret", too_long.as_str())])),
        (
            "unknown client",
            base(&[("client_id", "jupyterhub-user-nobody")]),
        ),
        ("built-in client", base(&[("client_id", "jupyterhub")])),
        ("no client", base(&[("client_id", "")])),
    ] {
        let (status, headers, body) = token_request(hub, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(body, json!({"error": "invalid_client"}), "{name}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["pragma"], "no-cache");
        assert!(headers.contains_key("www-authenticate"));
    }
    // No secret at all; HTTP Basic is not a way to send one.
    let no_secret = form(&[
        ("client_id", x.id.as_str()),
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", x.redirect_uri.as_str()),
    ]);
    let resp = hub
        .client
        .post(hub.api_url("/oauth2/token"))
        .basic_auth(&x.id, Some(&x.secret))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(no_secret)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // The code of client X presented by client Y (with Y's own valid credentials).
    let (status, _, body) = token_request(
        hub,
        &base(&[
            ("client_id", y.id.as_str()),
            ("client_secret", y.secret.as_str()),
            ("redirect_uri", y.redirect_uri.as_str()),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"error": "invalid_grant"}));

    // Other request errors.
    let (status, _, body) = token_request(hub, &base(&[("grant_type", "refresh_token")])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"error": "unsupported_grant_type"}));
    let (status, _, body) = token_request(hub, &base(&[("grant_type", "")])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"error": "unsupported_grant_type"}));
    let (status, _, body) = token_request(hub, &base(&[("code", "")])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    let (status, _, body) = token_request(hub, &base(&[("code", "not-a-code")])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"error": "invalid_grant"}));
    let (status, _, body) = token_request(
        hub,
        &base(&[("redirect_uri", "/user/alice/oauth_callback/")]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_request", "error_description": "Mismatching redirect URI."})
    );
    let (status, _, body) =
        token_request(hub, &format!("{}&client_id={}", base(&[]), enc(&x.id))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    let (status, _, _) = token_request(hub, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = token_request(hub, "{\"json\": true}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // None of that used the code up; credentials in the query string work.
    assert_eq!(codes(hub).await.len(), 1);
    let url = format!(
        "{}?client_id={}&client_secret={}",
        hub.api_url("/oauth2/token"),
        enc(&x.id),
        enc(&x.secret)
    );
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", x.redirect_uri.as_str()),
    ]);
    let resp = send_as(hub, Method::POST, &url, None, Some(body)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // And now it is gone.
    let (status, _) = redeem(hub, &x, &code, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
});

hub_test!(expired_codes_are_refused, |hub| async move {
    let alice = hub.browser("alice").await;
    let client = server_client(hub, "alice", "", &[]).await;
    let code = code_for(hub, &alice, &client, "").await;
    hub.state
        .db
        .run(|c| {
            use hub::db::schema::oauth_codes as t;
            let past = chrono::Utc::now().naive_utc() - chrono::TimeDelta::seconds(1);
            diesel::update(t::table)
                .set(t::expires_at.eq(past))
                .execute(c)
        })
        .await
        .unwrap();
    let (status, body) = redeem(hub, &client, &code, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"error": "invalid_grant"}));
    // Expired codes are purged when the next one is issued.
    code_for(hub, &alice, &client, "").await;
    assert_eq!(codes(hub).await.len(), 1);
});

// === sessions ===

hub_test!(logout_revokes_the_sessions_tokens, |hub| async move {
    let client = server_client(hub, "alice", "", &[]).await;
    let first = hub.browser("alice").await;
    let second = hub.browser("alice").await;
    assert_ne!(session_of(&first), session_of(&second));
    let code = code_for(hub, &first, &client, "").await;
    let (_, body) = redeem(hub, &client, &code, None).await;
    let first_token = bearer("alice", &body);
    let code = code_for(hub, &second, &client, "").await;
    let (_, body) = redeem(hub, &client, &code, None).await;
    let second_token = bearer("alice", &body);
    assert_eq!(hub.get("/user", Some(&first_token)).await.0, StatusCode::OK);

    let resp = get_as(hub, &first, &format!("{}/hub/logout", hub.origin)).await;
    assert!(resp.status().is_redirection());
    let (status, body) = hub.get("/user", Some(&first_token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"status": 403, "message": null}));
    // The other session's token is untouched.
    let (status, model) = hub.get("/user", Some(&second_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(model["session_id"], json!(session_of(&second)));
});

hub_test!(a_session_id_is_created_when_missing, |hub| async move {
    let client = server_client(hub, "alice", "", &[]).await;
    let browser = hub.browser("alice").await;
    // The same login without a session cookie (its `_xsrf` does not matter for GET).
    let cookie: String = browser
        .cookie
        .split("; ")
        .filter(|c| !c.starts_with("jupyterhub-session-id="))
        .collect::<Vec<_>>()
        .join("; ");
    let resp = send_as(
        hub,
        Method::GET,
        &authorize_url(hub, &client, ""),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let set_cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("jupyterhub-session-id="))
        .expect("a session cookie");
    assert!(set_cookie.contains("; Path=/;"), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    let session = set_cookie
        .strip_prefix("jupyterhub-session-id=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(session.len(), 32);
    let (_, query) = split_location(&location(&resp).unwrap());
    let (status, body) = redeem(hub, &client, &query["code"], None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, model) = hub.get("/user", Some(&bearer("alice", &body))).await;
    assert_eq!(model["session_id"], json!(session));
});

hub_test!(
    managed_service_secret_is_its_generated_token,
    config = "[[services]]\nname = \"gen\"\nurl = \"http://127.0.0.1:10103\"\n",
    |hub| async move {
        // Without an `api_token` the client has no usable secret until the hub makes one.
        let row = client_row(hub, "service-gen").await.unwrap();
        assert_eq!(row.secret, "");
        let token = hub::startup::generated_service_token(&hub.state, "gen")
            .await
            .unwrap();
        let row = client_row(hub, "service-gen").await.unwrap();
        assert!(tokens::verify_token(&row.secret, &token));
        assert_eq!(row.redirect_uri, "/services/gen/oauth_callback");
        // Loading the configuration again keeps that secret.
        hub::startup::load_config_entities(&hub.state)
            .await
            .unwrap();
        let again = client_row(hub, "service-gen").await.unwrap();
        assert_eq!(again.secret, row.secret);
    }
);
