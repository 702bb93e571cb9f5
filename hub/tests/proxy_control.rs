//! The hub's proxy module against real proxies: `chp-proxy` from this workspace and the real
//! configurable-http-proxy 5.3.0, each started on free loopback ports.
//!
//! Binaries: `CHP_PROXY_BIN` (default `$CARGO_TARGET_DIR/debug/chp-proxy`) and `CONFIGURABLE_HTTP_PROXY`
//! (default `${JHRS_CACHE:-$HOME/.cache/jupyterhub-rs}/node/node_modules/.bin/configurable-http-proxy`).
//! `TEST_LOG=1` shows the hub-side log.

#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use hub::proxy::chp::canonical_routespec;
use hub::proxy::{
    ChpClient, ChpClientConfig, DesiredRoute, ManagedProxyConfig, ProxyControl, ProxyError,
    ProxyRoute, ProxySettings, routespec,
};
use hub_api::chp::RouteData;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep};
use url::Url;

// === harness ===

#[derive(Debug, Clone, Copy, PartialEq)]
enum Flavor {
    Ours,
    Node,
}

fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn binary(flavor: Flavor) -> PathBuf {
    let (path, hint) = match flavor {
        Flavor::Ours => (
            std::env::var_os("CHP_PROXY_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    std::env::var_os("CARGO_TARGET_DIR")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| {
                            std::env::var_os("CARGO_MANIFEST_DIR")
                                .map_or_else(
                                    || PathBuf::from(env!("CARGO_MANIFEST_DIR")),
                                    PathBuf::from,
                                )
                                .join("../target")
                        })
                        .join("debug/chp-proxy")
                }),
            "build it first: cargo build -p chp-proxy (or set CHP_PROXY_BIN)",
        ),
        Flavor::Node => (
            std::env::var_os("CONFIGURABLE_HTTP_PROXY")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    let cache = std::env::var_os("JHRS_CACHE")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| {
                            PathBuf::from(std::env::var_os("HOME").unwrap())
                                .join(".cache/jupyterhub-rs")
                        });
                    cache.join("node/node_modules/.bin/configurable-http-proxy")
                }),
            "install it: npm install --prefix $HOME/.cache/jupyterhub-rs/node \
             configurable-http-proxy@5.3.0 (or set CONFIGURABLE_HTTP_PROXY)",
        ),
    };
    assert!(
        path.is_file(),
        "proxy binary {} is missing; {hint}",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn api_url(port: u16) -> Url {
    Url::parse(&format!("http://127.0.0.1:{port}")).unwrap()
}

fn client(api_port: u16, token: &str, host_routing: bool) -> ChpClient {
    let mut config = ChpClientConfig::new(api_url(api_port), token);
    config.host_routing = host_routing;
    config.retry_timeout = Duration::from_secs(5);
    ChpClient::new(config).unwrap()
}

/// A proxy started by the test itself, killed on drop.
struct External {
    child: Child,
    api_port: u16,
    token: String,
}

impl External {
    async fn start(flavor: Flavor, extra: &[&str]) -> Self {
        Self::start_on(flavor, free_port(), free_port(), extra).await
    }

    async fn start_on(flavor: Flavor, port: u16, api_port: u16, extra: &[&str]) -> Self {
        let token = "test-token-0123456789".to_owned();
        let child = Command::new(binary(flavor))
            .args([
                "--ip",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--api-ip",
                "127.0.0.1",
                "--api-port",
                &api_port.to_string(),
            ])
            .args(extra)
            .env("CONFIGPROXY_AUTH_TOKEN", &token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let proxy = External {
            child,
            api_port,
            token,
        };
        let c = proxy.client(false);
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.ping(Duration::from_secs(1)).await.is_err() {
            assert!(Instant::now() < deadline, "{flavor:?} proxy did not start");
            sleep(Duration::from_millis(50)).await;
        }
        proxy
    }

    fn client(&self, host_routing: bool) -> ChpClient {
        client(self.api_port, &self.token, host_routing)
    }

    /// Adds a route the way another client (not the hub) would: no `jupyterhub` marker.
    async fn add_foreign(&self, path: &str, target: &str) {
        let status = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/api/routes{path}",
                self.api_port
            ))
            .header("Authorization", format!("token {}", self.token))
            .json(&serde_json::json!({"target": target, "owner": "someone else"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 201);
    }
}

/// Polls `check` until it returns true or `patience` passes.
async fn eventually<F, Fut>(patience: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + patience;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        sleep(Duration::from_millis(50)).await;
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn kill9(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn chp_proxy() {
                super::$name(super::Flavor::Ours).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn configurable_http_proxy() {
                super::$name(super::Flavor::Node).await;
            }
        }
    };
}

// === client: round trips ===

both!(round_trips);
async fn round_trips(flavor: Flavor) {
    init();
    let proxy = External::start(flavor, &[]).await;
    let c = proxy.client(false);
    let target = "https://localhost:1234";
    // JupyterHub's test_add_get_delete vectors plus raw (unescaped) forms.
    let cases = [
        ("/has%20space/foo/", "/has%20space/foo/"),
        ("/missing-trailing/slash", "/missing-trailing/slash/"),
        ("/has/@/", "/has/@/"),
        ("/tilde/~user/", "/tilde/~user/"),
        (
            "/has/%C3%BC%C3%B1%C3%AE%C3%A7%C3%B8%E2%88%82%C3%A9/",
            "/has/%C3%BC%C3%B1%C3%AE%C3%A7%C3%B8%E2%88%82%C3%A9/",
        ),
        (
            "/user/üñîçø∂é/",
            "/user/%C3%BC%C3%B1%C3%AE%C3%A7%C3%B8%E2%88%82%C3%A9/",
        ),
        ("/user/raw space/", "/user/raw%20space/"),
        ("/user/a+b:c/", "/user/a%2Bb%3Ac/"),
        ("/", "/"),
    ];
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    for (given, expected) in cases {
        let data = DesiredRoute::user(given, target, "üser", "srv").data();
        c.add_route(given, target, &data).await.unwrap();
        let routes = c.get_all_routes().await.unwrap();
        let route = routes
            .get(expected)
            .unwrap_or_else(|| panic!("{given:?} not listed as {expected:?}: {routes:?}"));
        assert_eq!(route.routespec, expected);
        assert_eq!(route.target, target);
        assert!(route.jupyterhub);
        assert_eq!(route.data.user.as_deref(), Some("üser"));
        assert_eq!(route.data.server_name.as_deref(), Some("srv"));
        assert!(route.last_activity.unwrap() > before, "{route:?}");
        assert_eq!(canonical_routespec(given, false).unwrap(), expected);
        let fetched = c.get_route(given).await.unwrap().unwrap();
        assert_eq!(&fetched, route);

        c.delete_route(given).await.unwrap();
        assert_eq!(c.get_route(given).await.unwrap(), None);
        // Deleting what is gone is fine (404 from the proxy).
        c.delete_route(expected).await.unwrap();
    }
    assert!(c.get_all_routes().await.unwrap().is_empty());

    // Refused before anything is sent: the real CHP would never answer `%zz`.
    for bad in ["/a%zz/", "/user/../x/", "host.name/x/"] {
        let err = c.add_route(bad, target, &RouteData::default()).await;
        assert!(
            matches!(err, Err(ProxyError::InvalidRoutespec { .. })),
            "{bad}: {err:?}"
        );
    }
}

both!(host_routing_round_trips);
async fn host_routing_round_trips(flavor: Flavor) {
    init();
    let proxy = External::start(flavor, &["--host-routing"]).await;
    let c = proxy.client(true);
    let target = "http://127.0.0.1:9";
    for (given, expected) in [
        ("host.name/path/", "host.name/path/"),
        ("other.host/path/no/slash", "other.host/path/no/slash/"),
        ("üñî.example/x/", "%C3%BC%C3%B1%C3%AE.example/x/"),
        ("/", "/"),
    ] {
        c.add_route(given, target, &RouteData::default())
            .await
            .unwrap();
        let routes = c.get_all_routes().await.unwrap();
        assert!(routes.contains_key(expected), "{expected}: {routes:?}");
        c.delete_route(given).await.unwrap();
        assert!(c.get_route(given).await.unwrap().is_none());
    }
    // Path routes are refused under host routing.
    assert!(
        c.add_route("/user/a/", target, &RouteData::default())
            .await
            .is_err()
    );
}

both!(foreign_routes_are_not_the_hubs);
async fn foreign_routes_are_not_the_hubs(flavor: Flavor) {
    init();
    let proxy = External::start(flavor, &[]).await;
    let c = proxy.client(false);
    proxy
        .add_foreign("/foreign/app", "http://127.0.0.1:7")
        .await;
    c.add_route("/user/a/", "http://127.0.0.1:8", &RouteData::default())
        .await
        .unwrap();
    let hubs: Vec<_> = c.get_all_routes().await.unwrap().into_keys().collect();
    assert_eq!(hubs, ["/user/a/"]);
    let every = c.get_every_route().await.unwrap();
    let foreign = &every["/foreign/app/"];
    assert!(!foreign.jupyterhub);
    assert_eq!(foreign.data.extra["owner"], "someone else");
}

#[tokio::test]
async fn wrong_token_is_an_error_without_retries() {
    init();
    let proxy = External::start(Flavor::Ours, &[]).await;
    let started = Instant::now();
    let err = client(proxy.api_port, "wrong", false)
        .get_all_routes()
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProxyError::Status { status: 403, .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn connection_errors_are_retried_until_the_proxy_is_up() {
    init();
    let api_port = free_port();
    let port = free_port();
    // Nobody listens: retried for retry_timeout, then a clear error.
    let mut config = ChpClientConfig::new(api_url(api_port), "test-token-0123456789");
    config.retry_timeout = Duration::from_millis(800);
    let impatient = ChpClient::new(config).unwrap();
    let started = Instant::now();
    match impatient.get_all_routes().await {
        Err(ProxyError::Unreachable { attempts, .. }) => assert!(attempts > 2, "{attempts}"),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(500));

    // The proxy comes up while the client is retrying: the call succeeds.
    let c = client(api_port, "test-token-0123456789", false);
    let call = tokio::spawn(async move {
        c.add_route("/user/late/", "http://127.0.0.1:9", &RouteData::default())
            .await
    });
    sleep(Duration::from_millis(700)).await;
    let proxy = External::start_on(Flavor::Ours, port, api_port, &[]).await;
    call.await.unwrap().unwrap();
    let routes = proxy.client(false).get_all_routes().await.unwrap();
    assert!(routes.contains_key("/user/late/"));
}

// === reconciliation ===

fn desired(hub_target: &str) -> Vec<DesiredRoute> {
    vec![
        DesiredRoute::hub(routespec::hub("/", false), hub_target),
        DesiredRoute::user(
            routespec::user("/", None, "alice", ""),
            "http://127.0.0.1:10001",
            "alice",
            "",
        ),
        DesiredRoute::user(
            routespec::user("/", None, "üñîçø∂é", "gpu"),
            "http://127.0.0.1:10002",
            "üñîçø∂é",
            "gpu",
        ),
        DesiredRoute::service(
            routespec::service("/", None, "announce"),
            "http://127.0.0.1:10003",
            "announce",
        ),
        DesiredRoute::pending(routespec::user("/", None, "busy", "")),
    ]
}

fn summary(routes: &BTreeMap<String, ProxyRoute>) -> Vec<(String, String, bool)> {
    routes
        .values()
        .map(|r| (r.routespec.clone(), r.target.clone(), r.jupyterhub))
        .collect()
}

both!(reconciliation);
async fn reconciliation(flavor: Flavor) {
    init();
    let proxy = External::start(flavor, &[]).await;
    let c = proxy.client(false);
    let control = ProxyControl::new(c.clone(), Duration::from_secs(60));

    // The table as a crashed or confused hub might have left it.
    proxy.add_foreign("/foreign", "http://127.0.0.1:7").await;
    let stale = DesiredRoute::user("/user/gone/", "http://127.0.0.1:666", "gone", "");
    let wrong = DesiredRoute::user("/user/alice/", "http://127.0.0.1:9999", "alice", "");
    let busy = DesiredRoute::user("/user/busy/", "http://127.0.0.1:10004", "busy", "");
    let old_hub = DesiredRoute::hub("/", "http://127.0.0.1:1");
    for route in [&stale, &wrong, &busy, &old_hub] {
        control.add_route(route).await.unwrap();
    }

    let report = control
        .sync(&desired("http://127.0.0.1:8081"))
        .await
        .unwrap();
    assert_eq!(
        (
            report.added,
            report.updated,
            report.removed,
            report.unchanged,
            report.foreign
        ),
        (2, 2, 1, 1, 1),
        "{report}"
    );
    assert!(report.hub_route_fixed);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let mut users: Vec<_> = report
        .activity
        .iter()
        .map(|a| (a.user.as_str(), a.target.as_str()))
        .collect();
    users.sort_unstable();
    assert_eq!(
        users,
        [
            ("alice", "http://127.0.0.1:9999"),
            ("busy", "http://127.0.0.1:10004"),
            ("gone", "http://127.0.0.1:666"),
        ]
    );

    let routes = c.get_every_route().await.unwrap();
    assert_eq!(
        summary(&routes),
        [
            ("/".into(), "http://127.0.0.1:8081".into(), true),
            ("/foreign/".into(), "http://127.0.0.1:7".into(), false),
            (
                "/services/announce/".into(),
                "http://127.0.0.1:10003".into(),
                true
            ),
            (
                "/user/%C3%BC%C3%B1%C3%AE%C3%A7%C3%B8%E2%88%82%C3%A9/gpu/".into(),
                "http://127.0.0.1:10002".into(),
                true
            ),
            ("/user/alice/".into(), "http://127.0.0.1:10001".into(), true),
            ("/user/busy/".into(), "http://127.0.0.1:10004".into(), true),
        ]
    );
    assert_eq!(routes["/"].data.hub, Some(true));
    assert_eq!(
        routes["/services/announce/"].data.service.as_deref(),
        Some("announce")
    );

    // Nothing left to do.
    let again = control
        .sync(&desired("http://127.0.0.1:8081"))
        .await
        .unwrap();
    assert!(!again.changed(), "{again}");
    assert_eq!(again.unchanged, 5);

    // The hub moved: only its route changes. The busy server finished stopping: its route goes.
    let mut moved = desired("http://127.0.0.1:8082");
    moved.pop();
    let report = control.sync(&moved).await.unwrap();
    assert_eq!(
        (report.added, report.updated, report.removed),
        (0, 1, 1),
        "{report}"
    );
    assert!(report.hub_route_fixed);
    let routes = c.get_every_route().await.unwrap();
    assert_eq!(routes["/"].target, "http://127.0.0.1:8082");
    assert!(!routes.contains_key("/user/busy/"));
    assert!(
        routes.contains_key("/foreign/"),
        "foreign route must survive"
    );
}

#[tokio::test]
async fn default_target_route_is_taken_over_by_the_hub_route() {
    init();
    // `--default-target` makes an unmarked `/`; JupyterHub replaces it with its own.
    let proxy = External::start(Flavor::Ours, &["--default-target", "http://127.0.0.1:5"]).await;
    let control = ProxyControl::new(proxy.client(false), Duration::from_secs(60));
    let report = control
        .sync(&[DesiredRoute::hub("/", "http://127.0.0.1:8081")])
        .await
        .unwrap();
    assert_eq!((report.added, report.foreign), (1, 1), "{report}");
    let routes = control.get_all_routes().await.unwrap();
    assert_eq!(routes["/"].target, "http://127.0.0.1:8081");
}

#[tokio::test]
async fn external_proxy_restart_is_repaired_by_the_sync_loop() {
    init();
    let port = free_port();
    let api_port = free_port();
    let proxy = External::start_on(Flavor::Ours, port, api_port, &[]).await;
    let control = Arc::new(ProxyControl::new(
        proxy.client(false),
        Duration::from_millis(500),
    ));
    let wanted = desired("http://127.0.0.1:8081");
    control.sync(&wanted).await.unwrap();
    let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let seen = Arc::clone(&reports);
    let provider = wanted.clone();
    let task = control.spawn_sync_loop(
        move || {
            let routes = provider.clone();
            async move { Ok::<_, String>(routes) }
        },
        move |report| {
            seen.lock().unwrap().push(report);
            async {}
        },
        async {
            let _ = stop_rx.await;
        },
    );

    drop(proxy); // kill_on_drop
    sleep(Duration::from_millis(200)).await;
    let proxy = External::start_on(Flavor::Ours, port, api_port, &[]).await;
    let c = proxy.client(false);
    eventually(Duration::from_secs(10), "routes restored", || async {
        c.get_all_routes()
            .await
            .map(|r| r.len() == 4)
            .unwrap_or(false)
    })
    .await;
    let _ = stop_tx.send(());
    task.await.unwrap();
    assert!(reports.lock().unwrap().iter().any(|r| r.added == 4));
}

// === managed proxy ===

fn managed_settings(flavor: Flavor, dir: &Path) -> (ProxySettings, u16) {
    let port = free_port();
    let api_port = free_port();
    let mut api = ChpClientConfig::new(api_url(api_port), "");
    api.retry_timeout = Duration::from_secs(10);
    let managed = ManagedProxyConfig {
        command: vec![binary(flavor).display().to_string()],
        public_ip: "127.0.0.1".into(),
        public_port: port,
        error_target: Some("http://127.0.0.1:8081/hub/error".into()),
        pid_file: dir.join("jupyterhub-proxy.pid"),
        check_running_interval: Duration::from_secs(1),
        start_timeout: Duration::from_secs(10),
        stop_timeout: Duration::from_secs(3),
        ..ManagedProxyConfig::default()
    };
    (
        ProxySettings {
            api,
            managed: Some(managed),
            sync_interval: Duration::from_secs(60),
        },
        port,
    )
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

both!(managed_proxy_is_restarted_and_routes_restored);
async fn managed_proxy_is_restarted_and_routes_restored(flavor: Flavor) {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (settings, public_port) = managed_settings(flavor, dir.path());
    let pid_file = dir.path().join("jupyterhub-proxy.pid");
    let control = Arc::new(ProxyControl::launch(settings).await.unwrap());
    let managed = control.managed().unwrap();
    let first = managed.pid().unwrap();
    assert_eq!(read_pid(&pid_file), Some(first));
    assert!(managed.command_line().contains("--error-target"));
    // A token was generated and the proxy accepts it.
    assert_eq!(control.client().config().auth_token.len(), 32);

    let wanted = desired("http://127.0.0.1:8081");
    let report = control.sync(&wanted).await.unwrap();
    assert_eq!(report.added, 4, "{report}");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let provider = wanted.clone();
    let task = control.spawn_sync_loop(
        move || {
            let routes = provider.clone();
            async move { Ok::<_, String>(routes) }
        },
        |_| async {},
        async {
            let _ = stop_rx.await;
        },
    );

    let killed_at = Instant::now();
    kill9(first);
    eventually(Duration::from_secs(5), "proxy restarted", || async {
        managed.pid().is_some_and(|pid| pid != first)
    })
    .await;
    let c = control.client();
    eventually(Duration::from_secs(5), "routes restored", || async {
        c.get_all_routes()
            .await
            .map(|r| r.len() == 4)
            .unwrap_or(false)
    })
    .await;
    let recovered = killed_at.elapsed();
    println!("{flavor:?}: proxy restarted and routes restored {recovered:?} after kill -9");
    assert!(recovered < Duration::from_secs(5), "{recovered:?}");
    assert_eq!(managed.restarts(), 1);
    let second = managed.pid().unwrap();
    assert_eq!(read_pid(&pid_file), Some(second));
    // The public port serves again.
    tokio::net::TcpStream::connect(("127.0.0.1", public_port))
        .await
        .unwrap();

    let _ = stop_tx.send(());
    task.await.unwrap();
    control.shutdown().await.unwrap();
    assert!(!pid_file.exists(), "pid file must be removed on shutdown");
    eventually(Duration::from_secs(3), "proxy gone", || async {
        !alive(second)
    })
    .await;
    assert_eq!(managed.pid(), None);
    // A second stop is a no-op.
    control.shutdown().await.unwrap();
}

#[tokio::test]
async fn stale_pid_of_a_stranger_is_never_signalled() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (settings, _) = managed_settings(Flavor::Ours, dir.path());
    let pid_file = dir.path().join("jupyterhub-proxy.pid");
    let mut stranger = Command::new("sleep")
        .arg("30")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stranger_pid = stranger.id().unwrap();
    std::fs::write(&pid_file, stranger_pid.to_string()).unwrap();

    let control = ProxyControl::launch(settings).await.unwrap();
    let proxy_pid = control.managed().unwrap().pid().unwrap();
    assert_ne!(proxy_pid, stranger_pid);
    assert_eq!(read_pid(&pid_file), Some(proxy_pid));
    sleep(Duration::from_millis(200)).await;
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "the unrelated process was signalled"
    );
    control.shutdown().await.unwrap();
    assert!(stranger.try_wait().unwrap().is_none());
    stranger.kill().await.unwrap();
}

both!(proxy_left_by_an_earlier_hub_is_stopped);
async fn proxy_left_by_an_earlier_hub_is_stopped(flavor: Flavor) {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (settings, public_port) = managed_settings(flavor, dir.path());
    let pid_file = dir.path().join("jupyterhub-proxy.pid");
    let api_port = settings.api.api_url.port().unwrap();
    let mut old = External::start_on(flavor, public_port, api_port, &[]).await;
    std::fs::write(&pid_file, old.child.id().unwrap().to_string()).unwrap();

    let control = ProxyControl::launch(settings).await.unwrap();
    // Already reaped by the time launch returns, or exiting right now.
    tokio::time::timeout(Duration::from_secs(1), old.child.wait())
        .await
        .expect("the old proxy should have been stopped")
        .unwrap();
    let new_pid = control.managed().unwrap().pid().unwrap();
    assert_eq!(read_pid(&pid_file), Some(new_pid));
    // The new proxy, with the new token, owns the ports.
    control.get_all_routes().await.unwrap();
    control.shutdown().await.unwrap();
}

#[tokio::test]
async fn something_else_on_the_api_port_is_a_clear_error() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (settings, _) = managed_settings(Flavor::Ours, dir.path());
    let api_port = settings.api.api_url.port().unwrap();
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", api_port)).unwrap();
    let err = ProxyControl::launch(settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already listens"), "{err}");
    assert!(err.contains("chp-proxy"), "{err}");
}

#[tokio::test]
async fn launch_failures_name_the_command_and_its_output() {
    init();
    let dir = tempfile::tempdir().unwrap();

    let (mut settings, _) = managed_settings(Flavor::Ours, dir.path());
    settings.managed.as_mut().unwrap().command = vec!["/nonexistent/chp-proxy".into()];
    let err = ProxyControl::launch(settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/chp-proxy"), "{err}");

    let (mut settings, _) = managed_settings(Flavor::Ours, dir.path());
    settings.managed.as_mut().unwrap().command = vec!["not-a-proxy-anywhere".into()];
    let err = ProxyControl::launch(settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not-a-proxy-anywhere") && err.contains("PATH"),
        "{err}"
    );

    // Exits at once: the exit status and its stderr are in the error.
    let (mut settings, _) = managed_settings(Flavor::Ours, dir.path());
    settings.managed.as_mut().unwrap().command =
        ["sh", "-c", "echo 'kaput: bad flag' >&2; exit 3", "sh"]
            .map(String::from)
            .to_vec();
    let err = ProxyControl::launch(settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exit code 3") && err.contains("kaput: bad flag"),
        "{err}"
    );
    assert!(!dir.path().join("jupyterhub-proxy.pid").exists());

    // Never answers: timeout with the output so far; the process is killed.
    let (mut settings, _) = managed_settings(Flavor::Ours, dir.path());
    let managed = settings.managed.as_mut().unwrap();
    managed.command = ["sh", "-c", "echo 'still booting' >&2; exec sleep 30", "sh"]
        .map(String::from)
        .to_vec();
    managed.start_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = ProxyControl::launch(settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("did not answer within") && err.contains("still booting"),
        "{err}"
    );
    assert!(err.contains("sleep 30"), "command named: {err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn external_proxy_needs_a_token() {
    init();
    let settings = ProxySettings {
        api: ChpClientConfig::new(api_url(free_port()), ""),
        managed: None,
        sync_interval: Duration::from_secs(30),
    };
    let err = ProxyControl::launch(settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("CONFIGPROXY_AUTH_TOKEN"), "{err}");
}

#[tokio::test]
async fn stale_pid_of_another_hubs_proxy_is_left_alone() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (settings, _) = managed_settings(Flavor::Ours, dir.path());
    let pid_file = dir.path().join("jupyterhub-proxy.pid");
    // A proxy, but on other ports: it serves someone else.
    let mut other = External::start(Flavor::Ours, &[]).await;
    let other_pid = other.child.id().unwrap();
    std::fs::write(&pid_file, other_pid.to_string()).unwrap();

    let control = ProxyControl::launch(settings).await.unwrap();
    assert_eq!(
        read_pid(&pid_file),
        Some(control.managed().unwrap().pid().unwrap())
    );
    assert!(
        other.child.try_wait().unwrap().is_none(),
        "another hub's proxy was stopped"
    );
    other.client(false).get_all_routes().await.unwrap();
    control.shutdown().await.unwrap();
}

#[tokio::test]
async fn managed_proxy_on_unix_sockets() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let api_socket = dir.path().join("api.sock");
    let public_socket = dir.path().join("public.sock");
    let encoded: String =
        form_urlencoded::byte_serialize(api_socket.display().to_string().as_bytes()).collect();
    let api = ChpClientConfig::new(Url::parse(&format!("http+unix://{encoded}")).unwrap(), "");
    let managed = ManagedProxyConfig {
        command: vec![binary(Flavor::Ours).display().to_string()],
        public_socket: Some(public_socket.clone()),
        pid_file: dir.path().join("jupyterhub-proxy.pid"),
        check_running_interval: Duration::from_secs(1),
        ..ManagedProxyConfig::default()
    };
    let control = ProxyControl::launch(ProxySettings {
        api,
        managed: Some(managed),
        sync_interval: Duration::from_secs(60),
    })
    .await
    .unwrap();
    let line = control.managed().unwrap().command_line().to_owned();
    assert!(
        line.contains("--api-socket") && line.contains("--socket"),
        "{line}"
    );
    let report = control
        .sync(&desired("http://127.0.0.1:8081"))
        .await
        .unwrap();
    assert_eq!(report.added, 4, "{report}");
    assert_eq!(control.get_all_routes().await.unwrap().len(), 4);
    control.shutdown().await.unwrap();
    assert!(!dir.path().join("jupyterhub-proxy.pid").exists());
}

#[tokio::test]
async fn crash_looping_proxy_backs_off_and_still_stops() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (mut settings, _) = managed_settings(Flavor::Ours, dir.path());
    let proxy = binary(Flavor::Ours).display().to_string();
    // Lives 0.4 s each time.
    settings.managed.as_mut().unwrap().command = vec![
        "sh".into(),
        "-c".into(),
        r#"exec timeout 0.4 "$0" "$@""#.into(),
        proxy,
    ];
    let control = ProxyControl::launch(settings).await.unwrap();
    let managed = control.managed().unwrap();
    eventually(Duration::from_secs(5), "several restarts", || async {
        managed.restarts() >= 3
    })
    .await;
    let started = Instant::now();
    control.shutdown().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(!dir.path().join("jupyterhub-proxy.pid").exists());
    let restarts = managed.restarts();
    sleep(Duration::from_millis(800)).await;
    assert_eq!(managed.restarts(), restarts, "restarted after stop");
}
