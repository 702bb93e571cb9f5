//! Routing attacks on `chp-proxy` (security checklist E) beyond those in `chp_conformance.rs`
//! (`security`, `errors` and `host_routing` modules there): absolute-form request targets,
//! encodings that a backend could read differently from the route choice, prefix boundaries
//! with encoded and decomposed names, host-routing conflicts, and where the API listens.
//!
//! The invariant behind most of them: whatever the proxy forwards, the backend that receives
//! it, decoding the path once as a web framework does, finds its own prefix, never another
//! user's.

use std::time::{Duration, Instant};

use serde_json::Value;
use workspace_tests::procs;
use workspace_tests::proxy::Proxy;
use workspace_tests::raw::RawRequest;
use workspace_tests::upstream::Upstream;
use workspace_tests::{TOKEN, free_port, loopback};

type TestResult = anyhow::Result<()>;

async fn echo(name: &str) -> Upstream {
    Upstream::echo(name)
        .await
        .expect("starting an echo upstream")
}

/// A proxy with the hub as default route and alice's and bob's servers.
async fn two_users() -> (Upstream, Upstream, Upstream, Proxy) {
    let hub = echo("hub").await;
    let alice = echo("alice").await;
    let bob = echo("bob").await;
    let p = Proxy::ours()
        .default_target(&hub.url())
        .start()
        .await
        .expect("starting chp-proxy");
    p.add_route("/user/alice", &alice.url())
        .await
        .expect("route");
    p.add_route("/user/bob", &bob.url()).await.expect("route");
    (hub, alice, bob, p)
}

fn name(echo: &Value) -> &str {
    echo["name"].as_str().unwrap_or_default()
}

/// Who a backend framework would think a forwarded path belongs to: the path decoded once,
/// leading slashes collapsed, and its `/user/<name>/` prefix.
fn owner_as_backend_reads(forwarded: &str) -> String {
    let path = forwarded.split('?').next().unwrap_or_default();
    let decoded = percent_decode(path);
    let segments: Vec<&str> = decoded.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["user", who, ..] if *who == "alice" || *who == "bob" => (*who).to_owned(),
        _ => "hub".to_owned(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if bytes[i] == b'%'
            && let Some(b) = hex
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Security checklist E.45: for request targets the proxy accepts, however unusual, the
/// backend that receives the request reads the forwarded path as its own (never alice's
/// request at bob's server or the reverse); the ambiguous ones are refused before reaching
/// anyone.
#[tokio::test]
async fn the_backend_reads_the_path_it_was_routed_by() -> TestResult {
    let (hub, alice, bob, p) = two_users().await;
    let accepted = [
        "//user/bob/x",
        "///user/alice/x",
        "/user//bob/x",
        "/user/bo%62/x",
        "/user/%61lice/x",
        "/user/alice/..;/bob/x",
        "/user/alice;/x",
        "/user/alice/x?next=/user/bob/",
        "/user/alice/x?a=%2e%2e%2fbob",
        "/user/alice/.../bob",
        "/user/alice/%2e%2e%2e/bob",
        "/user/bob%20/x",
        "/user/ALICE/x",
        "/user/alice/%252e/x",
    ];
    for target in accepted {
        for up in [&hub, &alice, &bob] {
            up.clear();
        }
        let resp = p.get(target).await?;
        if resp.status == 400 {
            // Refusing is always safe; nobody may have seen it.
            for up in [&hub, &alice, &bob] {
                anyhow::ensure!(up.requests().is_empty(), "{target} reached {}", up.name());
            }
            continue;
        }
        anyhow::ensure!(resp.status == 200, "{target}: {}", resp.status);
        let e = resp.json()?;
        let got = name(&e).to_owned();
        let forwarded = e["url"].as_str().unwrap_or_default();
        anyhow::ensure!(
            owner_as_backend_reads(forwarded) == got || got == "hub",
            "{target} went to {got}, which reads the forwarded {forwarded} as {}'s",
            owner_as_backend_reads(forwarded)
        );
        // A request the hub gets must not read as a user's path either: it would be the
        // hub answering for that user's server.
        if got == "hub" {
            anyhow::ensure!(
                owner_as_backend_reads(forwarded) == "hub",
                "{target} fell through to the hub as {forwarded}"
            );
        }
    }
    Ok(())
}

/// Security checklist E.45: an absolute-form request target (`GET http://host/path`) is
/// routed and checked like the same path in origin form: dot segments in it are refused, and
/// the backend gets the path, not the URL.
#[tokio::test]
async fn absolute_form_targets_route_like_origin_form() -> TestResult {
    let (hub, alice, bob, p) = two_users().await;
    let port = p.port();
    for target in [
        format!("http://127.0.0.1:{port}/user/alice/../bob/x"),
        format!("http://127.0.0.1:{port}/user/alice/%2e%2e/bob/x"),
        "http://evil.example/user/bob/%2e%2e/alice".to_owned(),
    ] {
        let resp = p.get(&target).await?;
        anyhow::ensure!(resp.status == 400, "{target}: {}", resp.status);
    }
    for up in [&hub, &alice, &bob] {
        anyhow::ensure!(up.requests().is_empty(), "reached {}", up.name());
    }
    let e = p
        .get_echo(&format!("http://127.0.0.1:{port}/user/bob/x?y=1"))
        .await?;
    anyhow::ensure!(name(&e) == "bob", "{e}");
    anyhow::ensure!(e["url"] == "/user/bob/x?y=1", "forwarded {}", e["url"]);
    // `OPTIONS *` and other targets without a leading slash never reach a backend.
    let resp = p.request(&RawRequest::new("OPTIONS", "*")).await?;
    anyhow::ensure!(resp.status == 400, "OPTIONS *: {}", resp.status);
    for up in [&hub, &alice, &bob] {
        anyhow::ensure!(
            up.requests().iter().all(|r| r.path() != "*"),
            "OPTIONS * reached {}",
            up.name()
        );
    }
    Ok(())
}

/// Security checklist E.46: encodings other components have been fooled by (overlong UTF-8
/// dots, `%u` escapes, encoded backslashes, raw control and non-ASCII bytes) are refused with
/// 400 and reach no one; the proxy keeps serving.
#[tokio::test]
async fn exotic_encodings_are_refused_and_the_proxy_survives() -> TestResult {
    let (hub, alice, bob, mut p) = two_users().await;
    let refused = [
        "/user/alice/%c0%ae%c0%ae/bob",
        "/user/alice/%e0%80%ae%e0%80%ae/bob",
        "/user/alice/%u002e%u002e/bob",
        "/user/alice/%5c..%5cbob",
        "/user/alice/%255c",
        "/user/alice/%2500",
        "/user/alice/%ff",
        "/user/alice/%2",
        "/user/alice%",
    ];
    for target in refused {
        let resp = p.get(target).await?;
        anyhow::ensure!(resp.status == 400, "{target}: {}", resp.status);
    }
    // Control bytes in the target, which the HTTP parser refuses outright: nobody is
    // reached. (Raw UTF-8, which it accepts, is checked below.)
    for raw in [
        b"GET /user/bob/\x00/../alice HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        b"GET /user/bob/a\tb/../../alice HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        b"GET /user/bob/\x7f HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
    ] {
        let mut conn = workspace_tests::raw::Conn::tcp(p.port()).await?;
        let _ = conn.write(&raw).await;
        let _ = conn.read_available(Duration::from_secs(2)).await;
    }
    for up in [&hub, &alice, &bob] {
        anyhow::ensure!(
            up.requests().is_empty(),
            "reached {}: {:?}",
            up.name(),
            up.requests()
                .iter()
                .map(|r| r.url.clone())
                .collect::<Vec<_>>()
        );
    }
    // Raw UTF-8 bytes are routed as the segment they spell and forwarded unchanged, to
    // that segment's owner only.
    let mut conn = workspace_tests::raw::Conn::tcp(p.port()).await?;
    let resp = conn
        .exchange(&RawRequest::get("/user/alice/\u{fc}"))
        .await?;
    anyhow::ensure!(resp.status == 200, "raw UTF-8: {}", resp.status);
    anyhow::ensure!(name(&resp.json()?) == "alice");
    anyhow::ensure!(hub.requests().is_empty() && bob.requests().is_empty());
    anyhow::ensure!(p.is_running(), "the proxy died");
    anyhow::ensure!(name(&p.get_echo("/user/alice/ok").await?) == "alice");
    Ok(())
}

/// Security checklist E.47: a route without a trailing slash covers its own segment only,
/// whatever the spelling: encoded letters match as decoded, but a longer name, a different
/// case, a trailing space or the decomposed form of an accented name do not.
#[tokio::test]
async fn prefix_boundaries_hold_under_encoding() -> TestResult {
    let hub = echo("hub").await;
    let al = echo("al").await;
    let emile = echo("emile").await;
    let p = Proxy::ours().default_target(&hub.url()).start().await?;
    p.add_route("/user/al", &al.url()).await?;
    // Precomposed é (U+00E9).
    p.add_route("/user/%C3%A9mile", &emile.url()).await?;
    for (target, expected) in [
        ("/user/al", "al"),
        ("/user/al/", "al"),
        ("/user/al?x=1", "al"),
        ("/user/%61l/x", "al"),
        ("/user/%61%6C/x", "al"),
        ("/user/alice", "hub"),
        ("/user/al%20/x", "hub"),
        ("/user/AL/x", "hub"),
        ("/user/al%09/x", "hub"),
        ("/user/%C3%A9mile/x", "emile"),
        ("/user/%C3%89mile/x", "hub"),
        // Decomposed: e + U+0301.
        ("/user/e%CC%81mile/x", "hub"),
    ] {
        let e = p.get_echo(target).await?;
        anyhow::ensure!(
            name(&e) == expected,
            "{target} went to {}, expected {expected}",
            name(&e)
        );
    }
    Ok(())
}

/// Security checklist E.51: with host routing, an absolute-form target naming another host
/// than the Host header is routed by one of them only, and the backend receives that same
/// host, so it never serves a request it reads as another user's.
#[tokio::test]
async fn absolute_form_host_conflicts_stay_consistent() -> TestResult {
    let default = echo("default").await;
    let alice = echo("alice").await;
    let bob = echo("bob").await;
    let p = Proxy::ours()
        .default_target(&default.url())
        .arg("--host-routing")
        .start()
        .await?;
    p.add_route("/alice.hub.example", &alice.url()).await?;
    p.add_route("/bob.hub.example", &bob.url()).await?;
    for (target, host) in [
        ("http://bob.hub.example/user/alice/", "alice.hub.example"),
        ("http://alice.hub.example/x", "bob.hub.example"),
        ("http://bob.hub.example:8000/x", "ALICE.hub.example."),
    ] {
        let resp = p
            .request(&RawRequest::get(target).header("Host", host))
            .await?;
        if resp.status == 400 {
            continue;
        }
        anyhow::ensure!(resp.status == 200, "{target} {host}: {}", resp.status);
        let e = resp.json()?;
        let got = name(&e);
        let seen_host = e["headers"]["host"].as_str().unwrap_or_default();
        let seen = seen_host
            .split(':')
            .next()
            .unwrap_or_default()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        anyhow::ensure!(
            seen == format!("{got}.hub.example"),
            "{target} with Host {host} went to {got}, which was told Host {seen_host}"
        );
    }
    Ok(())
}

/// Security checklist E.49: without `--api-ip`, the REST API listens on loopback only.
#[tokio::test]
async fn api_listens_on_loopback_by_default() -> TestResult {
    let port = free_port();
    let api_port = free_port();
    let mut child = std::process::Command::new(workspace_tests::bins::chp_proxy())
        .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
        .args(["--api-port", &api_port.to_string()])
        .env("CONFIGPROXY_AUTH_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let result = async {
        while tokio::net::TcpStream::connect(loopback(api_port))
            .await
            .is_err()
        {
            anyhow::ensure!(Instant::now() < deadline, "the API never listened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pid = i32::try_from(child.id())?;
        let v4 = procs::listening_v4(pid);
        let api: Vec<_> = v4.iter().filter(|a| a.port() == api_port).collect();
        anyhow::ensure!(
            !api.is_empty() && api.iter().all(|a| a.ip().is_loopback()),
            "the API listens on {api:?}"
        );
        Ok(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}
