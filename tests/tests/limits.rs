//! Resource limits of the three daemons (security checklist G), with the real binaries on
//! loopback: slowloris connections, slow request bodies, oversized request heads, many idle
//! keep-alive connections and websockets through the proxy, and a flood of random API tokens.
//!
//! Each test prints (to stderr) what it measured (connections held, response times, resident memory) so
//! that a run with `--no-capture` gives the figures. Run `cargo build --bins` first.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use workspace_tests::hubproc::{Hub, HubOptions};
use workspace_tests::raw::RawRequest;
use workspace_tests::upstream::Upstream;
use workspace_tests::{Proxy, free_port, loopback, ws};

type TestResult = anyhow::Result<()>;

// === measuring ===

/// Resident memory of `pid` in KiB (`VmRSS` in `/proc/<pid>/status`).
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (the daemons started later
/// inherit it) and returns the new soft limit.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

/// Sends `GET path` on a new connection; returns the status and how long the answer took.
async fn timed_get(port: u16, path: &str) -> anyhow::Result<(u16, Duration)> {
    let started = Instant::now();
    let resp = RawRequest::get(path).send(port).await?;
    Ok((resp.status, started.elapsed()))
}

/// Latencies of requests sent one after another until `until`, every `every`.
async fn probe_until(port: u16, path: &str, every: Duration, until: Instant) -> Vec<Duration> {
    let mut times = Vec::new();
    while Instant::now() < until {
        match timed_get(port, path).await {
            Ok((_, took)) => times.push(took),
            // An unanswered probe counts as the longest possible wait.
            Err(_) => times.push(Duration::from_secs(3600)),
        }
        tokio::time::sleep(every).await;
    }
    times
}

fn max(times: &[Duration]) -> Duration {
    times.iter().copied().max().unwrap_or_default()
}

fn percentile(times: &[Duration], p: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short vector"
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

// === slowloris ===

/// Opens `n` connections to `port` that send a request line and then one header line every
/// 500 ms, never finishing the head. Returns, per connection, when the server closed it
/// (`None`: still open when `give_up` passed).
async fn slowloris(
    port: u16,
    n: usize,
    give_up: Duration,
) -> anyhow::Result<Vec<Option<Duration>>> {
    let started = Instant::now();
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(loopback(port))
            .await
            .context("opening a slowloris connection")?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await?;
        streams.push(s);
    }
    let opened = started.elapsed();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                let mut buf = [0u8; 1024];
                loop {
                    tokio::select! {
                        read = s.read(&mut buf) => match read {
                            Ok(0) | Err(_) => return Some(started.elapsed()),
                            Ok(_) => {}
                        },
                        _ = tick.tick() => {
                            if started.elapsed() > give_up {
                                return None;
                            }
                            if s.write_all(b"X-Slow: 1\r\n").await.is_err() {
                                return Some(started.elapsed());
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let mut closed = Vec::with_capacity(n);
    for t in tasks {
        closed.push(t.await?);
    }
    eprintln!("opened {n} slowloris connections in {opened:?}");
    Ok(closed)
}

/// Runs [`slowloris`] against `port` while probing `probe_path` on fresh connections; checks
/// that every slow connection is closed within `timeout` (plus slack) and that probes were
/// answered promptly throughout.
async fn slowloris_against(
    what: &str,
    port: u16,
    probe_path: &str,
    timeout: Duration,
) -> TestResult {
    const N: usize = 1000;
    let give_up = timeout + Duration::from_secs(10);
    let attack = tokio::spawn(slowloris(port, N, give_up));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probes = probe_until(
        port,
        probe_path,
        Duration::from_millis(200),
        Instant::now() + timeout + Duration::from_secs(1),
    )
    .await;
    let closed = attack.await??;
    let still_open = closed.iter().filter(|c| c.is_none()).count();
    let times: Vec<Duration> = closed.iter().flatten().copied().collect();
    let (first, last) = (times.iter().min().copied().unwrap_or_default(), max(&times));
    eprintln!(
        "{what}: {N} slowloris connections, {still_open} still open after {give_up:?}; closed \
         between {first:?} and {last:?}; {} probes during the attack: median {:?}, max {:?}",
        probes.len(),
        percentile(&probes, 0.5),
        max(&probes),
    );
    ensure!(
        still_open == 0,
        "{what}: {still_open} of {N} slowloris connections were never closed"
    );
    ensure!(
        last <= timeout + Duration::from_secs(5),
        "{what}: the last slowloris connection was closed only after {last:?}"
    );
    ensure!(
        first + Duration::from_millis(300) >= timeout.min(Duration::from_secs(2)),
        "{what}: slowloris connections were closed after {first:?}, before the header timeout"
    );
    ensure!(
        max(&probes) < Duration::from_secs(2),
        "{what}: a normal request took {:?} during the attack",
        max(&probes)
    );
    let (status, took) = timed_get(port, probe_path).await?;
    ensure!(status < 500, "{what}: {status} after the attack");
    eprintln!("{what}: after the attack {status} in {took:?}");
    Ok(())
}

// === oversized heads ===

/// What became of a request the server should refuse.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// This status, then the connection was closed.
    StatusThenClosed(u16),
    /// Closed or reset without an answer.
    ClosedSilently,
}

/// Sends `head` (a whole request head) and reads until the server closes (at most 5 s).
async fn refused(port: u16, head: &[u8]) -> anyhow::Result<Refusal> {
    let mut s = TcpStream::connect(loopback(port)).await?;
    // The server may answer and close before reading all of it.
    let _ = s.write_all(head).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => bail!(
                "the connection stayed open; got {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    if got.is_empty() {
        return Ok(Refusal::ClosedSilently);
    }
    let text = String::from_utf8_lossy(&got);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not a response: {text:?}"))?;
    Ok(Refusal::StatusThenClosed(status))
}

fn head_with_big_header(path: &str, bytes: usize) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(bytes)
    )
    .into_bytes()
}

fn head_with_many_lines(path: &str, lines: usize) -> Vec<u8> {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for i in 0..lines {
        head.push_str(&format!("X-Line-{i}: {i}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// A head over 64 KiB and a head of over 1000 lines: 431 (or a silent close, when the kernel
/// turns the close into a reset before the answer is read), the connection closed, and the
/// daemon still answering.
async fn oversized_heads_against(
    what: &str,
    port: u16,
    path: &str,
    probe_path: &str,
) -> TestResult {
    for (kind, head) in [
        ("a 70 KiB header", head_with_big_header(path, 70 * 1024)),
        ("1001 header lines", head_with_many_lines(path, 1001)),
        ("a 1 MiB header", head_with_big_header(path, 1024 * 1024)),
    ] {
        let outcome = refused(port, &head)
            .await
            .with_context(|| format!("{what}: {kind}"))?;
        eprintln!("{what}: {kind}: {outcome:?}");
        ensure!(
            matches!(
                outcome,
                Refusal::StatusThenClosed(431) | Refusal::ClosedSilently
            ),
            "{what}: {kind}: {outcome:?}"
        );
    }
    let (status, took) = timed_get(port, probe_path).await?;
    ensure!(status < 500, "{what}: {status} afterwards");
    ensure!(took < Duration::from_secs(2), "{what}: {took:?} afterwards");
    Ok(())
}

// === the daemons ===

async fn proxy_with_echo() -> anyhow::Result<(Upstream, Proxy)> {
    let up = Upstream::echo("default").await?;
    let p = Proxy::ours().default_target(&up.url()).start().await?;
    Ok((up, p))
}

/// A hub with the given `[hub]` settings (no server is ever started: the single-user venv is
/// not needed).
async fn hub(hub_settings: &str) -> anyhow::Result<Hub> {
    let options = HubOptions {
        venv: Some(PathBuf::from("/nonexistent-venv")),
        ..HubOptions::default()
    };
    Hub::start_with(options, &format!("[hub]\n{hub_settings}\n")).await
}

/// The hub's own port (not the proxy's).
fn hub_port(hub: &Hub) -> anyhow::Result<u16> {
    let url = url::Url::parse(&hub.api_url())?;
    url.port().context("the hub URL has no port")
}

/// `singleuser-auth-shim` for alice, in front of a tiny Python web server; the "hub" is an
/// echo upstream (the shim only asks it for its version at startup).
struct Shim {
    child: Child,
    port: u16,
    _hub: Upstream,
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Shim {
    async fn start() -> anyhow::Result<Self> {
        let hub = Upstream::echo("hub").await?;
        let port = free_port();
        let hub_url = hub.url();
        let token = "server-token-0123456789abcdef";
        let mut cmd = Command::new(workspace_tests::bins::singleuser_auth_shim());
        cmd.arg("--command")
            .arg("python3 -m http.server {port} --bind 127.0.0.1")
            .env_clear()
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for keep in [
            "PATH",
            "HOME",
            "LANG",
            "PYENV_ROOT",
            "PYENV_VERSION",
            "TMPDIR",
        ] {
            if let Ok(v) = std::env::var(keep) {
                cmd.env(keep, v);
            }
        }
        let scopes = r#"["access:servers!server=alice/"]"#;
        for (k, v) in [
            (
                "JUPYTERHUB_SERVICE_URL",
                format!("http://127.0.0.1:{port}/user/alice/"),
            ),
            ("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/".into()),
            ("JUPYTERHUB_API_URL", format!("{hub_url}/hub/api")),
            ("JUPYTERHUB_API_TOKEN", token.into()),
            ("JUPYTERHUB_CLIENT_ID", "jupyterhub-user-alice".into()),
            ("JUPYTERHUB_USER", "alice".into()),
            ("JUPYTERHUB_SERVER_NAME", String::new()),
            ("JUPYTERHUB_BASE_URL", "/".into()),
            (
                "JUPYTERHUB_OAUTH_CALLBACK_URL",
                "/user/alice/oauth_callback".into(),
            ),
            ("JUPYTERHUB_OAUTH_ACCESS_SCOPES", scopes.into()),
            ("JUPYTERHUB_OAUTH_SCOPES", scopes.into()),
        ] {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("starting singleuser-auth-shim")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(loopback(port)).await.is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!("the shim exited while starting: {status}");
            }
            ensure!(
                Instant::now() < deadline,
                "the shim did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            child,
            port,
            _hub: hub,
        })
    }
}

/// A path on the shim that is answered without asking the hub (403: no credentials).
const SHIM_PROBE: &str = "/user/alice/api/status";

// === G.65: slowloris ===

/// Security checklist G.65: 1000 connections trickling headers into the proxy's public port
/// are closed by the header-read timeout (`--keep-alive-timeout`, default 5 s), and normal
/// requests are answered promptly meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_on_the_proxy() -> TestResult {
    raise_nofile();
    let (_up, p) = proxy_with_echo().await?;
    slowloris_against("proxy", p.port(), "/_chp_healthz", Duration::from_secs(5)).await?;
    let (status, _) = timed_get(p.port(), "/through").await?;
    ensure!(status == 200, "a proxied request got {status}");
    Ok(())
}

/// Security checklist G.65: the same against the hub's own port (`[hub]
/// http_header_timeout`, here 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_on_the_hub() -> TestResult {
    raise_nofile();
    let mut hub = hub("http_header_timeout = 2").await?;
    slowloris_against("hub", hub_port(&hub)?, "/hub/api/", Duration::from_secs(2)).await?;
    hub.done();
    Ok(())
}

/// Security checklist G.65: the same against `singleuser-auth-shim` (5 s, the default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_on_the_shim() -> TestResult {
    raise_nofile();
    let shim = Shim::start().await?;
    slowloris_against("shim", shim.port, SHIM_PROBE, Duration::from_secs(5)).await
}

// === G.66: slow request bodies ===

/// Security checklist G.66: 100 API requests whose bodies trickle in (one byte every 200 ms)
/// are answered with 400 and closed once `[hub] http_body_timeout` (here 2 s) has passed,
/// and the hub answers other requests promptly meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_bodies_on_the_hub() -> TestResult {
    const N: usize = 100;
    let mut hub = hub("http_body_timeout = 2").await?;
    let port = hub_port(&hub)?;
    let head = format!(
        "POST /hub/api/users HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: token {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"usernames\": [",
        hub.admin_token
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..N {
        let mut s = TcpStream::connect(loopback(port)).await?;
        s.write_all(head.as_bytes()).await?;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            loop {
                tokio::select! {
                    read = s.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return (started.elapsed(), got),
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    },
                    _ = tick.tick() => {
                        if started.elapsed() > Duration::from_secs(20) {
                            return (started.elapsed(), got);
                        }
                        // Write errors show up as a closed read next.
                        let _ = s.write_all(b" ").await;
                    }
                }
            }
        }));
    }
    let probes = probe_until(
        port,
        "/hub/api/",
        Duration::from_millis(100),
        Instant::now() + Duration::from_secs(3),
    )
    .await;
    let mut closed_at = Vec::new();
    for t in tasks {
        let (at, got) = t.await?;
        let text = String::from_utf8_lossy(&got);
        ensure!(
            text.starts_with("HTTP/1.1 400"),
            "a slow body got {text:?} after {at:?}"
        );
        closed_at.push(at);
    }
    eprintln!(
        "hub: {N} slow bodies answered 400 and closed between {:?} and {:?}; {} probes \
         meanwhile: median {:?}, max {:?}",
        closed_at.iter().min().copied().unwrap_or_default(),
        max(&closed_at),
        probes.len(),
        percentile(&probes, 0.5),
        max(&probes)
    );
    ensure!(
        max(&closed_at) < Duration::from_secs(6),
        "{:?}",
        max(&closed_at)
    );
    ensure!(
        max(&probes) < Duration::from_secs(1),
        "probe {:?}",
        max(&probes)
    );
    // Nothing was created from the partial bodies, and a normal POST still works.
    let (status, _) = hub
        .admin(
            reqwest::Method::POST,
            "/users",
            Some(&serde_json::json!({"usernames": ["after-slow-bodies"]})),
        )
        .await?;
    ensure!(status.as_u16() == 201, "POST /users afterwards: {status}");
    hub.done();
    Ok(())
}

// === G.68: oversized request heads ===

/// Security checklist G.68: heads over 64 KiB or with over 1000 lines get 431 and a closed
/// connection from the proxy (public and API ports), and nothing reaches the upstream.
#[tokio::test]
async fn oversized_heads_on_the_proxy() -> TestResult {
    let (up, p) = proxy_with_echo().await?;
    oversized_heads_against("proxy", p.port(), "/oversized", "/x").await?;
    oversized_heads_against("proxy API", p.api_port(), "/api/routes", "/api/routes").await?;
    ensure!(
        up.requests().iter().all(|r| r.path() != "/oversized"),
        "an oversized request was forwarded"
    );
    Ok(())
}

/// Security checklist G.68: the same on the hub's own port.
#[tokio::test]
async fn oversized_heads_on_the_hub() -> TestResult {
    let mut hub = hub("").await?;
    oversized_heads_against("hub", hub_port(&hub)?, "/hub/api/", "/hub/api/").await?;
    // Up to 64 KiB (tornado's limit) is accepted.
    let resp = RawRequest::get("/hub/api/")
        .header("X-Fits", &"a".repeat(48 * 1024))
        .send(hub_port(&hub)?)
        .await?;
    ensure!(resp.status == 200, "a 48 KiB header got {}", resp.status);
    hub.done();
    Ok(())
}

/// Security checklist G.68: the same on `singleuser-auth-shim`.
#[tokio::test]
async fn oversized_heads_on_the_shim() -> TestResult {
    let shim = Shim::start().await?;
    oversized_heads_against("shim", shim.port, SHIM_PROBE, SHIM_PROBE).await
}

// === G.67: many idle connections and websockets through the proxy ===

/// Security checklist G.67: 10,000 idle keep-alive client connections (each after one
/// proxied request): the proxy keeps them all, stays responsive, its resident memory stays
/// bounded, and its connections to the upstream stay pooled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_keep_alive_connections() -> TestResult {
    const N: usize = 10_000;
    let limit = raise_nofile();
    ensure!(
        limit >= N as u64 + 1000,
        "RLIMIT_NOFILE is {limit}; this test needs {}",
        2 * N + 1000
    );
    let up = Upstream::echo("default").await?;
    // Keep-alive long enough for every connection to stay open during the test.
    let mut p = Proxy::ours()
        .default_target(&up.url())
        .args(["--keep-alive-timeout", "120000"])
        .start()
        .await?;
    let port = p.port();
    let before = rss_kib(p.pid())?;
    let started = Instant::now();
    let conns: Vec<TcpStream> = futures_util::stream::iter(0..N)
        .map(|i| async move {
            let mut s = TcpStream::connect(loopback(port)).await?;
            s.write_all(format!("GET /idle/{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
                .await?;
            // Read the whole response (the echo body is small).
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await?;
                ensure!(n > 0, "closed before the response ended");
                got.extend_from_slice(&buf[..n]);
                if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .context("no content-length")?;
                    if got.len() >= end + 4 + len {
                        ensure!(head.starts_with("http/1.1 200"), "{head}");
                        break;
                    }
                }
            }
            anyhow::Ok(s)
        })
        .buffer_unordered(100)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = rss_kib(p.pid())?;
    let probes = probe_until(
        port,
        "/probe",
        Duration::from_millis(50),
        Instant::now() + Duration::from_secs(2),
    )
    .await;
    // All still open: none was closed by the proxy.
    let open = conns
        .iter()
        .filter(|s| {
            let mut buf = [0u8; 1];
            matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    let upstream_conns = up.accepted_connections();
    drop(conns);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(p.pid())?;
    eprintln!(
        "proxy: {N} keep-alive connections opened in {opened:?}, {open} still open; upstream \
         connections accepted: {upstream_conns}; RSS before {before} KiB, holding {held} KiB \
         ({} KiB per connection), after closing {after} KiB; probes: median {:?}, max {:?}",
        held.saturating_sub(before) / N as u64,
        percentile(&probes, 0.5),
        max(&probes),
    );
    ensure!(p.is_running(), "the proxy died");
    ensure!(open == N, "only {open} of {N} idle connections stayed open");
    ensure!(
        upstream_conns <= 200,
        "{upstream_conns} connections to the upstream: not pooled"
    );
    ensure!(
        held < before + 300 * 1024,
        "RSS grew from {before} KiB to {held} KiB"
    );
    ensure!(
        max(&probes) < Duration::from_secs(1),
        "probe {:?}",
        max(&probes)
    );
    Ok(())
}

/// Security checklist G.67: 1000 websockets open at once through the proxy all work, the
/// proxy stays responsive, and its memory returns near where it was once they close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_open_websockets() -> TestResult {
    const N: usize = 1000;
    raise_nofile();
    let (up, p) = proxy_with_echo().await?;
    let port = p.port();
    let before = rss_kib(p.pid())?;
    let started = Instant::now();
    let mut sockets: Vec<ws::WsClient> = futures_util::stream::iter(0..N)
        .map(|i| async move {
            let (mut sock, _) = ws::connect(port, &format!("/ws/{i}"), &[]).await?;
            let first = ws::next_text(&mut sock).await?;
            ensure!(first == "connected", "{first}");
            anyhow::Ok(sock)
        })
        .buffer_unordered(50)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let opened = started.elapsed();
    ensure!(
        up.open_websockets() == N,
        "{} open upstream",
        up.open_websockets()
    );
    let held = rss_kib(p.pid())?;
    let probes = probe_until(
        port,
        "/_chp_healthz",
        Duration::from_millis(50),
        Instant::now() + Duration::from_secs(1),
    )
    .await;
    // Every socket still carries messages.
    let round = Instant::now();
    for (i, sock) in sockets.iter_mut().enumerate() {
        let text = format!("m{i}");
        let back = ws::roundtrip(sock, &text).await?;
        ensure!(back.contains(&text), "{back}");
    }
    let round = round.elapsed();
    drop(sockets);
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.open_websockets() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = rss_kib(p.pid())?;
    eprintln!(
        "proxy: {N} websockets opened in {opened:?}, one message each in {round:?}; RSS before \
         {before} KiB, holding {held} KiB, after closing {after} KiB; probes: median {:?}, max \
         {:?}; upstream sockets left open: {}",
        percentile(&probes, 0.5),
        max(&probes),
        up.open_websockets()
    );
    ensure!(up.open_websockets() == 0, "upstream websockets left open");
    ensure!(
        held < before + 200 * 1024,
        "RSS grew from {before} KiB to {held} KiB"
    );
    ensure!(
        max(&probes) < Duration::from_secs(1),
        "probe {:?}",
        max(&probes)
    );
    Ok(())
}

// === G.70: random-token flood ===

/// Sends `n` `GET /hub/api/user` requests with tokens from `token`, 50 at a time, on
/// keep-alive connections; returns the latencies and the statuses seen.
async fn token_flood(
    port: u16,
    n: usize,
    token: impl Fn(usize) -> String,
) -> anyhow::Result<(Vec<Duration>, Vec<u16>)> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("http://127.0.0.1:{port}/hub/api/user");
    let results: Vec<anyhow::Result<(Duration, u16)>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let req = client
                .get(&url)
                .header("Authorization", format!("token {}", token(i)));
            async move {
                let started = Instant::now();
                let resp = req.send().await?;
                let status = resp.status().as_u16();
                let _ = resp.bytes().await?;
                Ok((started.elapsed(), status))
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let mut times = Vec::new();
    let mut statuses = Vec::new();
    for r in results {
        let (t, s) = r?;
        times.push(t);
        statuses.push(s);
    }
    Ok((times, statuses))
}

fn random_token(len: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    while out.len() < len {
        let _ = write!(out, "{:016x}", rand_u64());
    }
    out.truncate(len);
    out
}

/// 64 random bits from the OS (no extra dependency: the kernel's random source).
fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    u64::from_le_bytes(bytes)
}

/// Security checklist G.70: 5000 API requests with random tokens are refused (403) at a
/// bounded cost each, a valid token keeps working at normal speed meanwhile, and the hub's
/// memory stays bounded. Also measured: tokens sharing the 4-character lookup prefix of a
/// user-provided token (each costs one 16384-round hash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_token_flood_on_the_hub() -> TestResult {
    const N: usize = 5000;
    let mut hub = hub("").await?;
    let port = hub_port(&hub)?;
    let pid = hub.pid().context("hub pid")?;
    let before = rss_kib(pid)?;
    let admin = hub.admin_token.clone();
    let prober = tokio::spawn({
        let until = Instant::now() + Duration::from_secs(5);
        let client = reqwest::Client::builder().no_proxy().build()?;
        let url = format!("http://127.0.0.1:{port}/hub/api/user");
        async move {
            let mut times = Vec::new();
            while Instant::now() < until {
                let started = Instant::now();
                let ok = client
                    .get(&url)
                    .header("Authorization", format!("token {admin}"))
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                times.push((started.elapsed(), ok.unwrap_or(0)));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            times
        }
    });
    let started = Instant::now();
    let (times, statuses) = token_flood(port, N, |_| random_token(32)).await?;
    let took = started.elapsed();
    let probes = prober.await?;
    let after = rss_kib(pid)?;
    ensure!(
        statuses.iter().all(|s| *s == 403),
        "statuses other than 403"
    );
    let probe_times: Vec<Duration> = probes.iter().map(|(t, _)| *t).collect();
    ensure!(
        probes.iter().all(|(_, s)| *s == 200),
        "the valid token failed during the flood: {probes:?}"
    );
    eprintln!(
        "hub: {N} random tokens in {took:?} ({:.0}/s): median {:?}, p99 {:?}, max {:?}; valid \
         token meanwhile: median {:?}, max {:?}; RSS {before} KiB before, {after} KiB after",
        N as f64 / took.as_secs_f64(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        max(&times),
        percentile(&probe_times, 0.5),
        max(&probe_times),
    );
    ensure!(percentile(&times, 0.99) < Duration::from_secs(1));
    ensure!(max(&probe_times) < Duration::from_secs(2));
    ensure!(
        after < before + 64 * 1024,
        "RSS grew from {before} to {after} KiB"
    );

    // Tokens with the admin token's prefix each cost a stretched hash: measure how much.
    let prefix: String = hub.admin_token.chars().take(4).collect();
    let m = 200;
    let started = Instant::now();
    let (times, statuses) =
        token_flood(port, m, |_| format!("{prefix}{}", random_token(28))).await?;
    let took = started.elapsed();
    let (status, probe) = {
        let t = Instant::now();
        let (s, _) = hub.admin(reqwest::Method::GET, "/user", None).await?;
        (s, t.elapsed())
    };
    eprintln!(
        "hub: {m} tokens sharing a user-provided token's prefix in {took:?} ({:.0}/s): median \
         {:?}, max {:?}; valid token afterwards: {status} in {probe:?}",
        m as f64 / took.as_secs_f64(),
        percentile(&times, 0.5),
        max(&times),
    );
    ensure!(statuses.iter().all(|s| *s == 403));
    ensure!(status.as_u16() == 200);
    hub.done();
    Ok(())
}

// === G.71: in-memory maps ===

/// Security checklist G.71: 15,000 anonymous page visits to `singleuser-auth-shim` (each
/// starts an OAuth login whose state the shim keeps in memory) and 15,000 requests with
/// random tokens (each a cached negative answer) leave its resident memory bounded: both
/// maps hold at most 10,000 entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_state_and_token_floods_on_the_shim() -> TestResult {
    const N: usize = 15_000;
    let shim = Shim::start().await?;
    let pid = shim.child.id();
    let before = rss_kib(pid)?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let url = format!("http://127.0.0.1:{}/user/alice/tree", shim.port);
    let flood = |token: bool| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let started = Instant::now();
            let statuses: Vec<anyhow::Result<u16>> = futures_util::stream::iter(0..N)
                .map(|_| {
                    let mut req = client.get(&url).header("Accept", "text/html");
                    if token {
                        req = req.header("Authorization", format!("token {}", random_token(32)));
                    }
                    async move { Ok(req.send().await?.status().as_u16()) }
                })
                .buffer_unordered(50)
                .collect()
                .await;
            let statuses = statuses.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
            anyhow::Ok((started.elapsed(), statuses))
        }
    };
    let (took, statuses) = flood(false).await?;
    let after_states = rss_kib(pid)?;
    ensure!(
        statuses.iter().all(|s| *s == 302),
        "anonymous visits: {:?}",
        statuses.iter().find(|s| **s != 302)
    );
    let (took_tokens, statuses) = flood(true).await?;
    let after_tokens = rss_kib(pid)?;
    // The hub double (an echo server) answers every token check with 200 and no user: the
    // shim must not let anyone in on that.
    ensure!(
        statuses.iter().all(|s| *s != 200),
        "a random token was let in"
    );
    let (status, probe) = timed_get(shim.port, SHIM_PROBE).await?;
    eprintln!(
        "shim: {N} anonymous visits in {took:?}, {N} random tokens in {took_tokens:?}; RSS \
         {before} KiB before, {after_states} KiB after the visits, {after_tokens} KiB after the \
         tokens; a request afterwards: {status} in {probe:?}"
    );
    ensure!(
        after_tokens < before + 64 * 1024,
        "RSS grew from {before} KiB to {after_tokens} KiB"
    );
    ensure!(probe < Duration::from_secs(1));
    Ok(())
}

// === G.72: many users ===

/// Security checklist G.72: with 10,000 users, `GET /hub/api/users` is paginated (at most
/// 200 per page), walking all pages stays fast, and other requests keep answering promptly
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_users_are_paginated() -> TestResult {
    const N: usize = 10_000;
    let mut hub = hub("").await?;
    let port = hub_port(&hub)?;
    let names: Vec<String> = (0..N).map(|i| format!("user{i:05}")).collect();
    let started = Instant::now();
    let (status, _) = hub
        .admin(
            reqwest::Method::POST,
            "/users",
            Some(&serde_json::json!({ "usernames": names })),
        )
        .await?;
    ensure!(status.as_u16() == 201, "creating {N} users: {status}");
    let created = started.elapsed();
    let prober = tokio::spawn(probe_until(
        port,
        "/hub/api/",
        Duration::from_millis(50),
        Instant::now() + Duration::from_secs(3),
    ));
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut pages = Vec::new();
    let mut seen = 0;
    let mut offset = 0;
    loop {
        let t = Instant::now();
        let page: serde_json::Value = client
            .get(format!(
                "http://127.0.0.1:{port}/hub/api/users?offset={offset}&limit=1000"
            ))
            .header("Authorization", format!("token {}", hub.admin_token))
            .header("Accept", "application/jupyterhub-pagination+json")
            .send()
            .await?
            .json()
            .await?;
        pages.push(t.elapsed());
        let items = page["items"].as_array().map_or(0, Vec::len);
        ensure!(items <= 200, "a page of {items} users");
        if items == 0 {
            break;
        }
        seen += items;
        offset += items;
    }
    let (status, all) = hub.admin(reqwest::Method::GET, "/users", None).await?;
    ensure!(status.as_u16() == 200);
    let unpaginated = all.as_array().map_or(0, Vec::len);
    let probes = prober.await?;
    eprintln!(
        "hub: {N} users created in {created:?}; {} pages: median {:?}, max {:?}; unpaginated \
         list: {unpaginated} users; other requests meanwhile: median {:?}, p99 {:?}",
        pages.len(),
        percentile(&pages, 0.5),
        max(&pages),
        percentile(&probes, 0.5),
        percentile(&probes, 0.99),
    );
    ensure!(seen >= N, "walked {seen} users");
    ensure!(unpaginated <= 200, "an unpaginated list of {unpaginated}");
    ensure!(max(&pages) < Duration::from_secs(2), "{:?}", max(&pages));
    ensure!(percentile(&probes, 0.99) < Duration::from_millis(500));
    hub.done();
    Ok(())
}
