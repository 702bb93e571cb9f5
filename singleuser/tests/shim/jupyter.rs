//! The shim in front of a real Jupyter Server (2.21, from the venv that
//! `scripts/python-test-env.sh singleuser` creates; `JHRS_SINGLEUSER_VENV` points elsewhere).
//! Without that venv these tests say so and pass without running.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use http::header;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

pub fn jupyter() -> Option<PathBuf> {
    let venv = std::env::var("JHRS_SINGLEUSER_VENV")
        .unwrap_or_else(|_| "/var/tmp/jupyterhub-rs/venv-singleuser".into());
    let bin = PathBuf::from(venv).join("bin/jupyter");
    if bin.is_file() {
        Some(bin)
    } else {
        eprintln!(
            "SKIPPED: no Jupyter Server at {} (run scripts/python-test-env.sh singleuser)",
            bin.display()
        );
        None
    }
}

struct Running {
    hub: MockHub,
    shim: Shim,
    root: tempfile::TempDir,
}

async fn start(transport: &str) -> Option<Running> {
    let jupyter = jupyter()?;
    let hub = MockHub::start().await;
    let port = free_port();
    let root = tempdir();
    let mut env = hub.env_for_alice(port);
    env.push((
        "JUPYTERHUB_ROOT_DIR".into(),
        root.path().display().to_string(),
    ));
    let jupyter = jupyter.display().to_string();
    let mut args = vec![
        "--jupyter",
        &jupyter,
        "--app",
        "server",
        "--child-transport",
        transport,
        "--activity-interval",
        "1",
    ];
    // Jupyter refuses to run as root without it (a spawner's `args` would carry it).
    if nix::unistd::geteuid().is_root() {
        args.push("--allow-root");
    }
    let shim = tokio::task::block_in_place(|| start_shim(port, &env, &args));
    Some(Running { hub, shim, root })
}

/// Opens a terminal and runs `echo` in it over the websocket.
async fn terminal_echo(r: &Running, auth: &[(&str, &str)], post: reqwest::RequestBuilder) {
    let resp = post.send().await.unwrap();
    assert_eq!(resp.status(), 200, "create a terminal");
    let name = resp.json::<Value>().await.unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!(
        "ws://127.0.0.1:{}/user/alice/terminals/websocket/{name}",
        r.shim.port
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(&url, auth))
        .await
        .unwrap();
    ws.send(Message::text(
        json!(["stdin", "echo shim-$((40+2))\r"]).to_string(),
    ))
    .await
    .unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("shim-42") {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("terminal output")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg
            && let Ok(Value::Array(a)) = serde_json::from_str::<Value>(&t)
            && a[0] == "stdout"
        {
            seen.push_str(a[1].as_str().unwrap_or_default());
        }
    }
    let _ = ws.close(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jupyter_server_on_a_private_socket() {
    let Some(r) = start("socket").await else {
        return;
    };
    let http = client();

    // The hub's readiness check reaches Jupyter's public version endpoint.
    let resp = http
        .get(r.shim.url("/user/alice/api"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-jupyterhub-version"));
    assert!(resp.json::<Value>().await.unwrap()["version"].is_string());

    // Everything else needs the hub's word, but for CORS preflights, which Jupyter answers.
    let resp = http
        .get(r.shim.url("/user/alice/api/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = http
        .request(
            reqwest::Method::OPTIONS,
            r.shim.url("/user/alice/api/status"),
        )
        .header("origin", "http://elsewhere.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let resp = http
        .request(
            reqwest::Method::OPTIONS,
            r.shim.url("/user/alice/api/status"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "a plain OPTIONS needs credentials");
    let token = r.hub.token_for("alice");
    let auth = format!("token {token}");
    let resp = http
        .post(r.shim.url("/user/alice/api/contents"))
        .header(header::AUTHORIZATION, &auth)
        .json(&json!({"type": "file", "ext": ".txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    assert!(r.root.path().join("untitled.txt").exists());

    // A browser: login, then Jupyter's page and API with the session's XSRF token.
    let mut browser = Browser::new(&r.hub, &r.shim);
    let page = browser.login("alice", "/user/alice/").await;
    assert_eq!(page.status(), 200, "Jupyter's page after login");
    let listing = browser.navigate("/user/alice/api/contents").await;
    assert_eq!(listing.status(), 200, "a navigation needs no XSRF token");
    // Jupyter's own frame-ancestors 'self' is replaced, and its _xsrf cookie never gets out.
    assert_eq!(
        page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .matches("frame-ancestors")
            .count(),
        1
    );
    assert!(
        page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .ends_with("frame-ancestors 'none'")
    );
    let xsrf = browser.jar.get("_xsrf").unwrap().to_owned();
    assert!(!xsrf.starts_with("2|"), "Jupyter's token leaked: {xsrf}");
    let fetch = |xsrf: Option<&str>| {
        let mut req = browser
            .http
            .post(r.shim.url("/user/alice/api/terminals"))
            .header(header::COOKIE, browser.jar.header())
            .header("sec-fetch-mode", "cors")
            .header("sec-fetch-site", "same-origin");
        if let Some(x) = xsrf {
            req = req.header("x-xsrftoken", x.to_owned());
        }
        req
    };
    assert_eq!(fetch(None).send().await.unwrap().status(), 403);
    // A terminal through the cookie, over a websocket with the server's origin.
    let cookie = browser.jar.header();
    let origin = r.shim.origin();
    terminal_echo(
        &r,
        &[("cookie", &cookie), ("origin", &origin)],
        fetch(Some(&xsrf)),
    )
    .await;

    // Jupyter's own activity reaches the hub: its start at once, then the terminal's use.
    let reported_at = |i: usize| {
        let activity = r.hub.activity();
        activity.get(i).map(|(_, body)| {
            assert_eq!(
                body["servers"][""]["last_activity"], body["last_activity"],
                "{body}"
            );
            chrono::DateTime::parse_from_rfc3339(body["last_activity"].as_str().unwrap()).unwrap()
        })
    };
    assert!(eventually(Duration::from_secs(5), async || reported_at(0).is_some()).await);
    let first = reported_at(0).unwrap();
    let later = eventually(Duration::from_secs(10), async || {
        let n = r.hub.activity().len();
        n > 1 && reported_at(n - 1).unwrap() > first
    })
    .await;
    assert!(
        later,
        "the terminal's activity was reported: {:?}",
        r.hub.activity()
    );

    // SIGTERM: Jupyter stops, the shim leaves with its code.
    let mut shim = r.shim;
    shim.signal(nix::sys::signal::Signal::SIGTERM);
    let status = tokio::task::block_in_place(|| shim.wait_exit(Duration::from_secs(30))).unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jupyter_server_on_a_loopback_port_with_a_token() {
    let Some(r) = start("tcp").await else {
        return;
    };
    let token = r.hub.token_for("alice");
    let auth = format!("token {token}");
    let resp = client()
        .get(r.shim.url("/user/alice/api/status"))
        .header(header::AUTHORIZATION, &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the shim sent Jupyter its token");
    let post = client()
        .post(r.shim.url("/user/alice/api/terminals"))
        .header(header::AUTHORIZATION, &auth);
    terminal_echo(&r, &[("authorization", &auth)], post).await;
    // ?token= (the hub token) on a websocket is consumed by the shim, not shown to Jupyter,
    // which would otherwise refuse it as a wrong Jupyter token.
    let resp = client()
        .get(r.shim.url(&format!("/user/alice/api/status?token={token}")))
        .header(header::AUTHORIZATION, &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
