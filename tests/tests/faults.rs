//! Fault tests with the real binaries (security.md §5.H, cases 73–88): the `hub` binary with
//! its managed `chp-proxy` (or a `chp-proxy` the test runs), servers started by the local
//! spawner, and the faults a deployment meets: a proxy, a hub or a server killed with SIGKILL,
//! a proxy table damaged, a pid that now belongs to a stranger, spawns that fail or race, a
//! database locked by another process or on a full disk, a PostgreSQL server restarted, bad
//! files and settings at startup. Each test asserts that nothing was lost: routes, servers,
//! rows, tokens and OAuth clients are what they should be afterwards, and every request gets a
//! clean answer.
//!
//! The servers are a small Python HTTP server (`/usr/bin/python3`, standard library only)
//! whose behaviour follows the user's name: `stubborn…` ignores SIGINT and SIGTERM, `silent…`
//! never listens, `exits…` exits with status 3 at once, `slow…` waits 3 s before listening.
//! Where the single-user side matters (a hub that is down), the same server runs behind
//! `singleuser-auth-shim --command`.
//!
//! As root (CI) every user is a throwaway system account whose server runs under its uid, and
//! the full-disk test mounts a small tmpfs (unmounted again, also on failure). Build the
//! binaries first: `cargo build -p hub -p chp-proxy -p singleuser-auth-shim`.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use workspace_tests::accounts::{Accounts, SystemUser, is_root, random_suffix};
use workspace_tests::hubproc::{Deadline, ExternalProxy, Hub, HubOptions};
use workspace_tests::proxy::{Endpoint, Proxy};
use workspace_tests::{bins, procs};

type TestResult = anyhow::Result<()>;

/// The system Python the test servers run with.
const PYTHON: &str = "/usr/bin/python3";

/// How long a server may take from the start request to ready.
const START_WITHIN: Duration = Duration::from_secs(20);

/// The test server (see the module documentation).
const SERVER_PY: &str = r#"
import json, os, signal, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

user = os.environ.get("JUPYTERHUB_USER", "")
args = sys.argv[1:]
if "stubborn" in user:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "silent" in user:
    while True:
        time.sleep(3600)
if "exits" in user:
    sys.exit(3)
if "slow" in user:
    time.sleep(3)
url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
host, port = url.hostname, url.port
if "--port" in args:
    host, port = "127.0.0.1", int(args[args.index("--port") + 1])


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"server_of": user, "path": self.path, "pid": os.getpid()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer((host, port), Handler).serve_forever()
"#;

/// Runs a little Python against the hub's SQLite file: `script` sees `db` (a connection) and
/// `args`, and prints its answer as JSON.
const SQL_PY: &str = r#"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
args = json.loads(sys.argv[2])
rows = db.execute(args["sql"], args.get("params", [])).fetchall()
db.commit()
print(json.dumps(rows))
"#;

/// The test server's script in a directory every account may read.
struct Kit {
    dir: tempfile::TempDir,
}

impl Kit {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("jhrs-fault-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let script = dir.path().join("server.py");
        std::fs::write(&script, SERVER_PY)?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644))?;
        Ok(Kit { dir })
    }

    fn script(&self) -> PathBuf {
        self.dir.path().join("server.py")
    }

    /// `[spawner] cmd` running the test server directly.
    fn direct_cmd(&self) -> String {
        format!(
            "cmd = [{PYTHON:?}, {:?}]",
            self.script().display().to_string()
        )
    }

    /// `[spawner] cmd` running the test server behind `singleuser-auth-shim`.
    fn shim_cmd(&self) -> String {
        format!(
            "cmd = [{:?}, \"--command\", {:?}]",
            bins::singleuser_auth_shim().display().to_string(),
            format!("{PYTHON} {} --port {{port}}", self.script().display()),
        )
    }
}

/// Users: as root, fresh system accounts; otherwise plain names (servers run as this account).
struct People {
    accounts: Option<Accounts>,
    made: Vec<(String, Option<SystemUser>)>,
}

impl People {
    fn new() -> Self {
        People {
            accounts: is_root().then(Accounts::new),
            made: Vec::new(),
        }
    }

    fn person(&mut self, prefix: &str) -> anyhow::Result<String> {
        let (name, account) = match &mut self.accounts {
            Some(accounts) => {
                let account = accounts.user(prefix, None)?;
                (account.name.clone(), Some(account))
            }
            None => (format!("{prefix}-{}", random_suffix()), None),
        };
        self.made.push((name.clone(), account));
        Ok(name)
    }

    /// Makes each user's notebook directory (the spawner starts the server there).
    fn prepare(&self, hub: &Hub) -> TestResult {
        for (name, account) in &self.made {
            hub.prepare_notebook_dir(name, account.as_ref())?;
        }
        Ok(())
    }
}

/// The configuration of the fault tests: short poll, proxy check and route sync intervals,
/// short timeouts and stop steps, the server command `cmd`; then `extra` (TOML) merged over
/// it, table by table.
fn config(cmd: &str, extra: &str) -> anyhow::Result<String> {
    let base = format!(
        r#"
[hub]
last_activity_interval = 2

[proxy]
check_running_interval = 1

[spawner]
{cmd}
poll_interval = 1
start_timeout = 15
http_timeout = 10
interrupt_timeout = 2
term_timeout = 2
kill_timeout = 2
"#
    );
    let mut base: toml::Table = toml::from_str(&base)?;
    let extra: toml::Table = toml::from_str(extra).context("the test's TOML")?;
    merge(&mut base, extra);
    Ok(toml::to_string(&base)?)
}

fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(mine)), toml::Value::Table(theirs)) => merge(mine, theirs),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Starts a hub for `people` (made beforehand) with [`config`].
async fn hub_for(
    people: &People,
    options: HubOptions,
    cmd: &str,
    extra: &str,
) -> anyhow::Result<Hub> {
    let options = HubOptions {
        default_server_cmd: true,
        ..options
    };
    let hub = Hub::start_with(options, &config(cmd, extra)?).await?;
    let names: Vec<&str> = people.made.iter().map(|(n, _)| n.as_str()).collect();
    if !names.is_empty() {
        hub.create_users(&names).await?;
    }
    people.prepare(&hub)?;
    Ok(hub)
}

/// Asks for `user`'s default server; returns the status of the request.
async fn request_start(hub: &Hub, user: &str) -> anyhow::Result<(StatusCode, Value)> {
    hub.admin(Method::POST, &format!("/users/{user}/server"), None)
        .await
}

/// Starts `user`'s default server and waits until it is ready and routed.
async fn start_server(hub: &Hub, user: &str) -> TestResult {
    let (status, body) = request_start(hub, user).await?;
    ensure!(
        status == StatusCode::CREATED || status == StatusCode::ACCEPTED,
        "starting {user}'s server: {status} {body}"
    );
    hub.wait_server_ready(user, START_WITHIN).await?;
    hub.wait_route(&format!("/user/{user}"), true, Duration::from_secs(10))
        .await?;
    Ok(())
}

/// The running processes of `user`'s server (the hub's marker and `JUPYTERHUB_USER`).
fn server_procs(hub: &Hub, user: &str) -> Vec<procs::Proc> {
    hub.marked_processes()
        .into_iter()
        .filter(|p| procs::env_var(p.pid, "JUPYTERHUB_USER").as_deref() == Some(user))
        .collect()
}

/// The main process of `user`'s server (the leader of its process group).
fn server_leader(hub: &Hub, user: &str) -> anyhow::Result<procs::Proc> {
    server_procs(hub, user)
        .into_iter()
        .find(|p| p.pid == p.pgid)
        .with_context(|| format!("no running server process of {user}"))
}

/// Kills `user`'s server with SIGKILL, its whole process group, and waits until it is gone.
async fn kill9_server(hub: &Hub, user: &str) -> anyhow::Result<procs::Proc> {
    let leader = server_leader(hub, user)?;
    killpg(Pid::from_raw(leader.pgid), Signal::SIGKILL)?;
    let deadline = Deadline::new(format!("{user}'s server to die"), Duration::from_secs(10));
    while procs::running_as(leader.pid, leader.start_time) {
        deadline.tick().await?;
    }
    Ok(leader)
}

/// A GET through the proxy's public port, with a token when given; the status and body.
async fn public_get(
    hub: &Hub,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(StatusCode, String)> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()?;
    let mut request = client.get(hub.public_url(path));
    if let Some(token) = token {
        request = request.header("Authorization", format!("token {token}"));
    }
    let reply = request
        .send()
        .await
        .with_context(|| format!("GET {path}"))?;
    Ok((reply.status(), reply.text().await?))
}

/// Checks that `user`'s server answers through the proxy (its own JSON, not the hub's).
async fn served_by_server(hub: &Hub, user: &str, token: Option<&str>) -> TestResult {
    let path = format!("/user/{user}/api/status");
    let (status, body) = public_get(hub, &path, token).await?;
    ensure!(status == StatusCode::OK, "GET {path}: {status} {body}");
    let body: Value = serde_json::from_str(&body).with_context(|| format!("GET {path}: {body}"))?;
    ensure!(body["server_of"] == user, "GET {path} reached {body}");
    Ok(())
}

/// Polls `check` until it passes or `within` is over (then its last error).
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: Future<Output = TestResult>,
{
    let began = Instant::now();
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(e) if began.elapsed() >= within => {
                bail!("{what}: not within {within:?}: {e:#}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Runs [`SQL_PY`] on the SQLite file `db`.
fn sql(db: &Path, query: &str, params: &Value) -> anyhow::Result<Value> {
    let args = json!({"sql": query, "params": params});
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(SQL_PY)
        .arg(db)
        .arg(args.to_string())
        .output()
        .context("running python3 for SQLite")?;
    ensure!(
        out.status.success(),
        "sqlite {query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// What the database holds about `user`'s default server.
#[derive(Debug, PartialEq, Eq)]
struct ServerRow {
    phase: String,
    /// API tokens of the server.
    tokens: i64,
    /// Its OAuth clients.
    clients: i64,
    /// Whether it has an address.
    address: bool,
    /// The spawner's saved state.
    state: Value,
}

fn server_row(hub: &Hub, user: &str) -> anyhow::Result<ServerRow> {
    let rows = sql(
        &hub.run_dir().join("jupyterhub.sqlite"),
        "SELECT s.phase, \
            (SELECT count(*) FROM api_tokens t WHERE t.spawner_id = s.id), \
            (SELECT count(*) FROM oauth_clients c WHERE c.spawner_id = s.id), \
            s.server_ip IS NOT NULL, s.state \
         FROM spawners s JOIN users u ON u.id = s.user_id WHERE u.name = ? AND s.name = ''",
        &json!([user]),
    )?;
    let row = rows
        .get(0)
        .with_context(|| format!("{user} has no server row"))?;
    Ok(ServerRow {
        phase: row[0].as_str().unwrap_or_default().to_owned(),
        tokens: row[1].as_i64().unwrap_or(-1),
        clients: row[2].as_i64().unwrap_or(-1),
        address: row[3].as_i64() == Some(1),
        state: serde_json::from_str(row[4].as_str().unwrap_or("null")).unwrap_or(Value::Null),
    })
}

/// Checks that `user`'s server is cleaned up everywhere: the row stopped without address,
/// token or OAuth client, no route, the user model without a server, and its old API token
/// (`server_token`, when known) refused by the hub.
async fn assert_cleaned_up(hub: &Hub, user: &str, server_token: Option<&str>) -> TestResult {
    let row = server_row(hub, user)?;
    ensure!(
        row.phase == "stopped" && row.tokens == 0 && row.clients == 0 && !row.address,
        "{user}'s server row after cleanup: {row:?}"
    );
    let routes = hub.proxy_routes().await?;
    ensure!(
        !routes.contains_key(&format!("/user/{user}")),
        "{user}'s route is still there: {routes:?}"
    );
    let model = hub.user_model(user).await?;
    ensure!(
        model["servers"].get("").is_none() && model["pending"].is_null(),
        "{user}'s model after cleanup: {model}"
    );
    if let Some(token) = server_token {
        let (status, body) = hub.api(Method::GET, "/user", Some(token), None).await?;
        ensure!(
            status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED,
            "the server's revoked token still works: {status} {body}"
        );
    }
    Ok(())
}

/// The API token the hub gave `user`'s running server (from its environment).
fn server_api_token(hub: &Hub, user: &str) -> anyhow::Result<String> {
    let leader = server_leader(hub, user)?;
    procs::env_var(leader.pid, "JUPYTERHUB_API_TOKEN")
        .with_context(|| format!("{user}'s server has no JUPYTERHUB_API_TOKEN"))
}

/// The managed proxy's pid, from its pid file.
fn proxy_pid(hub: &Hub) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(hub.run_dir().join("jupyterhub-proxy.pid"))
        .context("reading the proxy's pid file")?;
    Ok(text.trim().parse()?)
}

fn alive(pid: i32) -> bool {
    procs::get(pid).is_some_and(|p| p.running())
}

// ---------------------------------------------------------------------------------------------
// 73: the managed proxy killed with SIGKILL.
// ---------------------------------------------------------------------------------------------

/// The managed proxy killed with SIGKILL, with servers running and again during a spawn: a new
/// proxy within seconds, the hub's and every server's route back, requests served again, and
/// the spawn that was under way ends ready and routed.
#[tokio::test]
async fn managed_proxy_killed_is_restarted_with_every_route() -> TestResult {
    let mut people = People::new();
    let alice = people.person("proxa")?;
    let bob = people.person("proxb")?;
    let slow = people.person("slowp")?;
    let kit = Kit::new()?;
    let mut hub = hub_for(&people, HubOptions::default(), &kit.direct_cmd(), "").await?;
    start_server(&hub, &alice).await?;
    start_server(&hub, &bob).await?;
    served_by_server(&hub, &alice, None).await?;
    let before = hub.proxy_routes().await?;

    let first = proxy_pid(&hub)?;
    kill(Pid::from_raw(first), Signal::SIGKILL)?;
    let killed = Instant::now();
    eventually(
        Duration::from_secs(15),
        "users' requests served again",
        || async {
            served_by_server(&hub, &alice, None).await?;
            served_by_server(&hub, &bob, None).await
        },
    )
    .await?;
    let back_after = killed.elapsed();
    let second = proxy_pid(&hub)?;
    ensure!(
        second != first && alive(second),
        "no new proxy: {first} -> {second}"
    );
    let after = hub.proxy_routes().await?;
    let specs = |m: &serde_json::Map<String, Value>| {
        m.iter()
            .map(|(k, v)| (k.clone(), v["target"].clone()))
            .collect::<Vec<_>>()
    };
    ensure!(
        specs(&before) == specs(&after),
        "routes before {before:?}\nafter {after:?}"
    );
    let (status, _) = public_get(&hub, "/hub/api/", None).await?;
    ensure!(
        status == StatusCode::OK,
        "the hub through the new proxy: {status}"
    );
    eprintln!("proxy killed: requests served again after {back_after:?}");

    // Killed again while a server starts (the slow one listens after 3 s).
    let (started, killed) = tokio::join!(request_start(&hub, &slow), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        kill(Pid::from_raw(second), Signal::SIGKILL)
    });
    killed?;
    let (status, body) = started?;
    ensure!(status.is_success(), "slow start: {status} {body}");
    hub.wait_server_ready(&slow, START_WITHIN).await?;
    eventually(
        Duration::from_secs(15),
        "every server served after the second kill",
        || async {
            served_by_server(&hub, &alice, None).await?;
            served_by_server(&hub, &bob, None).await?;
            served_by_server(&hub, &slow, None).await
        },
    )
    .await?;
    let third = proxy_pid(&hub)?;
    ensure!(third != second && alive(third), "no third proxy");
    for user in [&alice, &bob, &slow] {
        let row = server_row(&hub, user)?;
        ensure!(
            row.phase == "running" && row.tokens == 1 && row.clients == 1,
            "{user}: {row:?}"
        );
    }
    hub.done();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 74: an external proxy restarted.
// ---------------------------------------------------------------------------------------------

/// Our `chp-proxy` on `public` and `api`, with the hub's port as its default target when
/// given (as deployments that run the proxy themselves start it).
async fn external_proxy(
    public: u16,
    api: u16,
    token: &str,
    hub_port: Option<u16>,
) -> anyhow::Result<Proxy> {
    let mut builder = Proxy::ours();
    if let Some(port) = hub_port {
        builder = builder.default_target(&format!("http://127.0.0.1:{port}"));
    }
    builder
        .args([
            "--ip".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            public.to_string(),
            "--api-ip".to_owned(),
            "127.0.0.1".to_owned(),
            "--api-port".to_owned(),
            api.to_string(),
        ])
        .token(token)
        .public_given(Endpoint::Tcp(public))
        .api_given(Endpoint::Tcp(api))
        .start()
        .await
}

/// A proxy the hub does not manage restarts with an empty table. Started with the hub as its
/// default target, the first user request falls through to the hub, which has the routes put
/// back at once and sends the user on (no redirect-loop error); without a default target (or
/// without requests) the periodic check (every `last_activity_interval`, at most 30 s; 2 s
/// here) restores the table.
#[tokio::test]
async fn external_proxy_restart_gets_its_routes_back() -> TestResult {
    let mut people = People::new();
    let alice = people.person("exta")?;
    let bob = people.person("extb")?;
    let kit = Kit::new()?;
    let (public, api) = (workspace_tests::free_port(), workspace_tests::free_port());
    let token = format!("proxy-{}{}", random_suffix(), random_suffix());
    let proxy = external_proxy(public, api, &token, None).await?;
    let options = HubOptions {
        external_proxy: Some(ExternalProxy {
            public: SocketAddr::from(([127, 0, 0, 1], public)),
            api: SocketAddr::from(([127, 0, 0, 1], api)),
            token: token.clone(),
        }),
        ..HubOptions::default()
    };
    let mut hub = hub_for(&people, options, &kit.direct_cmd(), "").await?;
    start_server(&hub, &alice).await?;
    start_server(&hub, &bob).await?;
    let before = hub.proxy_routes().await?;
    let alice_token = hub.token_for(&alice).await?;

    // Restart: a request through the new proxy (whose default target is the hub), following
    // redirects as a browser does.
    drop(proxy);
    let proxy = external_proxy(public, api, &token, Some(hub.hub_port)).await?;
    let restarted = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let reply = client
        .get(hub.public_url(&format!("/user/{alice}/api/status")))
        .header("Authorization", format!("token {alice_token}"))
        .send()
        .await?;
    let status = reply.status();
    let body = reply.text().await?;
    ensure!(
        status == StatusCode::OK && body.contains(&alice),
        "alice's request after the restart: {status} {body}"
    );
    let first_request = restarted.elapsed();
    eventually(Duration::from_secs(10), "the whole table back", || async {
        let now = hub.proxy_routes().await?;
        ensure!(now.len() == before.len(), "{now:?}");
        Ok(())
    })
    .await?;
    served_by_server(&hub, &bob, None).await?;

    // Restart again without any request: the periodic check (every last_activity_interval,
    // 2 s here) puts everything back.
    drop(proxy);
    let proxy = external_proxy(public, api, &token, None).await?;
    let restarted = Instant::now();
    eventually(
        Duration::from_secs(10),
        "the table back without requests",
        || async {
            let now = hub.proxy_routes().await?;
            ensure!(now.len() == before.len(), "{now:?}");
            Ok(())
        },
    )
    .await?;
    eprintln!(
        "external proxy restarted: first request served in {first_request:?}; table back \
         without requests in {:?}",
        restarted.elapsed()
    );
    served_by_server(&hub, &alice, None).await?;
    served_by_server(&hub, &bob, None).await?;
    hub.done();
    drop(hub);
    drop(proxy);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 75: a damaged routing table.
// ---------------------------------------------------------------------------------------------

/// Routes changed behind the hub's back through the proxy's API: a server's route deleted, a
/// bogus route with the hub's marker added, the hub's own route pointed elsewhere, a foreign
/// route (without the marker) added. The periodic check repairs the first three and leaves
/// the foreign route alone.
#[tokio::test]
async fn damaged_routing_table_is_repaired() -> TestResult {
    let mut people = People::new();
    let alice = people.person("routa")?;
    let kit = Kit::new()?;
    let mut hub = hub_for(&people, HubOptions::default(), &kit.direct_cmd(), "").await?;
    start_server(&hub, &alice).await?;
    let before = hub.proxy_routes().await?;
    let hub_target = before["/"]["target"].clone();

    let client = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{}/api/routes", hub.proxy_api_port);
    let auth = format!("token {}", hub.proxy_token());
    let call = |method: Method, spec: &str, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{api}{spec}"))
            .header("Authorization", &auth);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let deleted = call(Method::DELETE, &format!("/user/{alice}"), None).await?;
    ensure!(
        deleted.status().is_success(),
        "delete: {}",
        deleted.status()
    );
    let bogus = call(
        Method::POST,
        "/user/nobody-here",
        Some(json!({"target": "http://127.0.0.1:9", "jupyterhub": true, "user": "nobody-here"})),
    )
    .await?;
    ensure!(bogus.status().is_success(), "bogus: {}", bogus.status());
    let hijack = call(
        Method::POST,
        "/",
        Some(json!({"target": "http://127.0.0.1:9", "jupyterhub": true, "hub": true})),
    )
    .await?;
    ensure!(
        hijack.status().is_success(),
        "hub route: {}",
        hijack.status()
    );
    let foreign = call(
        Method::POST,
        "/not-the-hubs",
        Some(json!({"target": "http://127.0.0.1:9"})),
    )
    .await?;
    ensure!(
        foreign.status().is_success(),
        "foreign: {}",
        foreign.status()
    );

    let damaged = Instant::now();
    eventually(Duration::from_secs(10), "the table repaired", || async {
        let now = hub.proxy_routes().await?;
        ensure!(now["/"]["target"] == hub_target, "hub route {:?}", now["/"]);
        ensure!(
            now.get(&format!("/user/{alice}")).map(|r| &r["target"])
                == before.get(&format!("/user/{alice}")).map(|r| &r["target"]),
            "alice's route {now:?}"
        );
        ensure!(!now.contains_key("/user/nobody-here"), "bogus route kept");
        Ok(())
    })
    .await?;
    eprintln!("routing table repaired in {:?}", damaged.elapsed());
    let now = hub.proxy_routes().await?;
    ensure!(
        now.contains_key("/not-the-hubs"),
        "the foreign route was removed: {now:?}"
    );
    served_by_server(&hub, &alice, None).await?;
    hub.done();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 76 and 86: the hub killed with SIGKILL while servers run.
// ---------------------------------------------------------------------------------------------

/// `cleanup_servers = false`, servers behind the shim. The hub is killed with SIGKILL: the
/// servers keep serving through the proxy, and the shim keeps letting in a user it has checked
/// (its cache) while a token it has never seen fails fast. One server dies while the hub is
/// down. The restarted hub adopts the live one (route, row, token and OAuth client kept,
/// polling resumed: killing it later is noticed) and cleans up the dead one (row, route, token,
/// OAuth client).
#[tokio::test]
async fn hub_killed_servers_keep_serving_and_are_resumed() -> TestResult {
    let mut people = People::new();
    let alice = people.person("resa")?;
    let bob = people.person("resb")?;
    let kit = Kit::new()?;
    let mut hub = hub_for(
        &people,
        HubOptions::default(),
        &kit.shim_cmd(),
        "[hub]\ncleanup_servers = false\n",
    )
    .await?;
    start_server(&hub, &alice).await?;
    start_server(&hub, &bob).await?;
    let alice_token = hub.token_for(&alice).await?;
    let alice_unseen = hub.token_for(&alice).await?;
    let bob_token = hub.token_for(&bob).await?;
    served_by_server(&hub, &alice, Some(&alice_token)).await?;
    served_by_server(&hub, &bob, Some(&bob_token)).await?;
    let alice_row = server_row(&hub, &alice)?;
    let bob_server_token = server_api_token(&hub, &bob)?;

    let proxy = proxy_pid(&hub)?;
    hub.kill9()?;
    // The hub is gone; the proxy it started and the servers are not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(alive(proxy), "the proxy died with the hub");
    for _ in 0..5 {
        served_by_server(&hub, &alice, Some(&alice_token)).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let began = Instant::now();
    let (status, body) = public_get(
        &hub,
        &format!("/user/{alice}/api/status"),
        Some(&alice_unseen),
    )
    .await?;
    ensure!(
        status.is_server_error() && began.elapsed() < Duration::from_secs(12),
        "an unchecked token while the hub is down: {status} after {:?}: {body}",
        began.elapsed()
    );
    kill9_server(&hub, &bob).await?;

    hub.start_again().await?;
    // Alice's server was adopted: same row, same credentials, still served.
    served_by_server(&hub, &alice, Some(&alice_token)).await?;
    let row = server_row(&hub, &alice)?;
    ensure!(
        row.phase == "running"
            && row.tokens == 1
            && row.clients == 1
            && row.state == alice_row.state,
        "alice's row after the restart: {row:?} (before: {alice_row:?})"
    );
    ensure!(
        hub.default_server(&alice)
            .await?
            .is_some_and(|s| s["ready"] == true)
    );
    // Bob's was cleaned up.
    eventually(Duration::from_secs(10), "bob's server cleaned up", || {
        assert_cleaned_up(&hub, &bob, Some(&bob_server_token))
    })
    .await?;
    // Polling resumed: alice's server dying now is noticed.
    let alice_server_token = server_api_token(&hub, &alice)?;
    kill9_server(&hub, &alice).await?;
    eventually(
        Duration::from_secs(10),
        "alice's server cleaned up by the poll",
        || assert_cleaned_up(&hub, &alice, Some(&alice_server_token)),
    )
    .await?;
    // Both can start again.
    start_server(&hub, &bob).await?;
    served_by_server(&hub, &bob, Some(&bob_token)).await?;
    hub.done();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 77: SIGTERM.
// ---------------------------------------------------------------------------------------------

/// SIGTERM with the defaults: every server stopped (rows stopped, no tokens or OAuth clients
/// left), the managed proxy stopped, the proxy's and the hub's pid files removed, exit 0.
/// With `cleanup_servers = false`: the servers keep running and the next hub adopts them.
#[tokio::test]
async fn sigterm_stops_cleanly_with_and_without_cleanup_servers() -> TestResult {
    let mut people = People::new();
    let alice = people.person("terma")?;
    let bob = people.person("termb")?;
    let kit = Kit::new()?;
    for cleanup in [true, false] {
        let extra = format!("[hub]\ncleanup_servers = {cleanup}\npid_file = \"hub.pid\"\n");
        let mut hub = hub_for(&people, HubOptions::default(), &kit.direct_cmd(), &extra).await?;
        let hub_pid_file = hub.run_dir().join("hub.pid");
        let proxy_pid_file = hub.run_dir().join("jupyterhub-proxy.pid");
        ensure!(
            std::fs::read_to_string(&hub_pid_file)?.trim() == hub.pid().unwrap_or(0).to_string(),
            "the hub's pid file"
        );
        start_server(&hub, &alice).await?;
        start_server(&hub, &bob).await?;
        let proxy = proxy_pid(&hub)?;
        let servers = [server_leader(&hub, &alice)?, server_leader(&hub, &bob)?];
        let status = hub.terminate(Duration::from_secs(30)).await?;
        ensure!(
            status.success(),
            "cleanup_servers = {cleanup}: exit {status}\n{}",
            hub.log_tail(30)
        );
        ensure!(!hub_pid_file.exists(), "the hub's pid file is left");
        ensure!(!proxy_pid_file.exists(), "the proxy's pid file is left");
        ensure!(!alive(proxy), "the proxy still runs");
        for (user, server) in [&alice, &bob].iter().zip(&servers) {
            let running = procs::running_as(server.pid, server.start_time);
            let row = server_row(&hub, user)?;
            if cleanup {
                ensure!(!running, "{user}'s server still runs");
                ensure!(
                    row.phase == "stopped" && row.tokens == 0 && row.clients == 0,
                    "{user}: {row:?}"
                );
            } else {
                ensure!(running, "{user}'s server was stopped");
                ensure!(
                    row.phase == "running" && row.tokens == 1 && row.clients == 1,
                    "{user}: {row:?}"
                );
            }
        }
        if !cleanup {
            hub.start_again().await?;
            served_by_server(&hub, &alice, None).await?;
            served_by_server(&hub, &bob, None).await?;
            for (user, server) in [&alice, &bob].iter().zip(&servers) {
                ensure!(
                    server_leader(&hub, user)?.pid == server.pid,
                    "{user}'s server was replaced"
                );
            }
        }
        hub.done();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 78: a server killed with SIGKILL.
// ---------------------------------------------------------------------------------------------

/// A server killed with SIGKILL is noticed within `poll_interval` (1 s here): its route, row
/// address, token and OAuth client go; the user's requests get the hub's "not running" answer
/// (424 for the API) instead of an error from the proxy; the user starts it again.
#[tokio::test]
async fn server_killed_is_cleaned_up_within_the_poll_interval() -> TestResult {
    let mut people = People::new();
    let alice = people.person("killa")?;
    let bob = people.person("killb")?;
    let kit = Kit::new()?;
    let mut hub = hub_for(&people, HubOptions::default(), &kit.direct_cmd(), "").await?;
    start_server(&hub, &alice).await?;
    start_server(&hub, &bob).await?;
    let alice_token = hub.token_for(&alice).await?;
    let server_token = server_api_token(&hub, &alice)?;
    let old = kill9_server(&hub, &alice).await?;
    let killed = Instant::now();
    eventually(Duration::from_secs(5), "alice's server cleaned up", || {
        assert_cleaned_up(&hub, &alice, Some(&server_token))
    })
    .await?;
    eprintln!("killed server cleaned up after {:?}", killed.elapsed());
    // The proxy's default route sends the request to the hub, which answers for the server.
    let path = format!("/user/{alice}/api/status");
    let (status, body) = public_get(&hub, &path, Some(&alice_token)).await?;
    ensure!(
        status == StatusCode::FOUND,
        "after the kill: {status} {body}"
    );
    let (status, body) = public_get(&hub, &format!("/hub{path}"), Some(&alice_token)).await?;
    ensure!(
        status == StatusCode::FAILED_DEPENDENCY,
        "after the kill, at the hub: {status} {body}"
    );
    // Bob's server was not disturbed.
    served_by_server(&hub, &bob, None).await?;
    start_server(&hub, &alice).await?;
    served_by_server(&hub, &alice, None).await?;
    ensure!(
        server_leader(&hub, &alice)?.pid != old.pid,
        "not a new process"
    );
    hub.done();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 79: the stored pid now belongs to a stranger.
// ---------------------------------------------------------------------------------------------

/// A process the test runs, standing in for whoever got the server's pid.
struct Stranger(Child);

impl Stranger {
    fn start() -> anyhow::Result<Self> {
        Ok(Stranger(
            Command::new("sleep")
                .arg("300")
                .stdin(Stdio::null())
                .spawn()?,
        ))
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).unwrap_or(0)
    }

    fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// After a restart, the saved state of two servers names the pid of a live stranger: one with
/// the server's own start time (so the pid was reused), one with no start time at all (a
/// state from elsewhere). Neither stranger is signalled, not at startup and not by the
/// cleanup that follows; both servers are cleaned up as gone.
#[tokio::test]
async fn reused_pid_after_a_restart_is_never_signalled() -> TestResult {
    let mut people = People::new();
    let alice = people.person("pida")?;
    let bob = people.person("pidb")?;
    let kit = Kit::new()?;
    let mut hub = hub_for(
        &people,
        HubOptions::default(),
        &kit.direct_cmd(),
        "[hub]\ncleanup_servers = false\n",
    )
    .await?;
    start_server(&hub, &alice).await?;
    start_server(&hub, &bob).await?;
    let status = hub.terminate(Duration::from_secs(30)).await?;
    ensure!(status.success(), "exit {status}");
    kill9_server(&hub, &alice).await?;
    kill9_server(&hub, &bob).await?;

    let mut strangers = [Stranger::start()?, Stranger::start()?];
    let db = hub.run_dir().join("jupyterhub.sqlite");
    for (user, stranger, keep_start_time) in
        [(&alice, &strangers[0], true), (&bob, &strangers[1], false)]
    {
        let mut state = server_row(&hub, user)?.state;
        state["pid"] = json!(stranger.pid());
        state["pgid"] = json!(stranger.pid());
        if !keep_start_time {
            state.as_object_mut().context("state")?.remove("start_time");
        }
        sql(
            &db,
            "UPDATE spawners SET state = ? WHERE name = '' AND user_id = \
             (SELECT id FROM users WHERE name = ?)",
            &json!([state.to_string(), user]),
        )?;
    }
    hub.start_again().await?;
    for user in [&alice, &bob] {
        eventually(Duration::from_secs(10), "cleaned up", || {
            assert_cleaned_up(&hub, user, None)
        })
        .await?;
    }
    // The poll and any stop have had their chance.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for stranger in &mut strangers {
        ensure!(
            stranger.alive(),
            "the stranger {} was signalled",
            stranger.pid()
        );
    }
    ensure!(
        hub.log().contains("belongs to another process") || hub.log().contains("not signalling"),
        "no word in the log about the reused pid"
    );
    start_server(&hub, &alice).await?;
    hub.done();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 80: spawn failures.
// ---------------------------------------------------------------------------------------------

/// Asks for `user`'s server, expecting the start to fail; returns the message the API gives
/// (from the start request, or from the progress stream when it answered 202).
async fn failed_start(hub: &Hub, user: &str) -> anyhow::Result<String> {
    let (status, body) = request_start(hub, user).await?;
    if status.is_server_error() || status.is_client_error() {
        return Ok(body["message"].as_str().unwrap_or_default().to_owned());
    }
    ensure!(status == StatusCode::ACCEPTED, "{user}: {status} {body}");
    let deadline = Deadline::new(format!("{user}'s start to fail"), Duration::from_secs(30));
    loop {
        let model = hub.user_model(user).await?;
        if model["pending"].is_null() {
            ensure!(
                model["servers"].get("").is_none(),
                "{user}'s server started after all: {model}"
            );
            break;
        }
        deadline.tick().await?;
    }
    let (status, events) = hub
        .admin(Method::GET, &format!("/users/{user}/server/progress"), None)
        .await?;
    Ok(format!("{status} {events}"))
}

/// Starts that fail: the server exits at once, never listens (`start_timeout`, 3 s here), is a
/// program that does not exist. Each gets a clear message, and each is cleaned up: no process,
/// row stopped without address, token or OAuth client, no route, nothing pending; another
/// user's server is not disturbed and the user can try again.
#[tokio::test]
async fn spawn_failures_are_reported_and_cleaned_up() -> TestResult {
    let mut people = People::new();
    let exits = people.person("exits")?;
    let silent = people.person("silent")?;
    let good = people.person("good")?;
    let kit = Kit::new()?;
    let mut hub = hub_for(
        &people,
        HubOptions::default(),
        &kit.direct_cmd(),
        "[spawner]\nstart_timeout = 3\nhttp_timeout = 3\n",
    )
    .await?;
    start_server(&hub, &good).await?;
    for (user, expect) in [(&exits, "status"), (&silent, "3 seconds")] {
        let began = Instant::now();
        let message = failed_start(&hub, user).await?;
        ensure!(
            message.contains(expect),
            "{user}: the failure says {message:?}, expected {expect:?}\n{}",
            hub.log_tail(20)
        );
        ensure!(
            began.elapsed() < Duration::from_secs(15),
            "{user} took {:?}",
            began.elapsed()
        );
        eventually(Duration::from_secs(5), "no process left", || async {
            ensure!(
                server_procs(&hub, user).is_empty(),
                "{user}'s process is left"
            );
            Ok(())
        })
        .await?;
        assert_cleaned_up(&hub, user, None).await?;
        // A second try fails the same way (no stale state).
        let again = failed_start(&hub, user).await?;
        ensure!(again.contains(expect), "{user}, again: {again:?}");
        assert_cleaned_up(&hub, user, None).await?;
    }
    served_by_server(&hub, &good, None).await?;
    hub.done();
    drop(hub);

    // A server program that does not exist, and `consecutive_failure_limit`: the hub exits
    // (non-zero, saying why) after that many failed spawns in a row.
    let mut people = People::new();
    let users = [
        people.person("miss")?,
        people.person("miss")?,
        people.person("miss")?,
    ];
    let mut hub = hub_for(
        &people,
        HubOptions::default(),
        "cmd = [\"/nonexistent/jhrs-fault-server\"]",
        "[hub]\nconsecutive_failure_limit = 3\n",
    )
    .await?;
    for (i, user) in users.iter().enumerate() {
        let message = failed_start(&hub, user).await?;
        ensure!(
            message.contains("jhrs-fault-server") || message.contains("could not be started"),
            "missing program: {message:?}\n{}",
            hub.log_tail(20)
        );
        if i < 2 {
            assert_cleaned_up(&hub, user, None).await?;
        }
    }
    let status = hub.wait_exit(Duration::from_secs(20)).await?;
    ensure!(!status.success(), "the hub exited with {status}");
    let log = hub.log();
    ensure!(
        log.contains("consecutive_failure_limit"),
        "the log does not say why the hub exits:\n{}",
        hub.log_tail(30)
    );
    for user in &users {
        let row = server_row(&hub, user)?;
        ensure!(
            row.phase == "stopped" && row.tokens == 0 && row.clients == 0,
            "{user}: {row:?}"
        );
    }
    hub.done();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 81: races and a stop that needs SIGKILL.
// ---------------------------------------------------------------------------------------------

/// A stop during a spawn cancels it (no process left, row stopped); two starts at once make
/// one process; a server that ignores SIGINT and SIGTERM is killed after the configured steps
/// (2 + 2 s here) while other requests, a start of that server (400) and another user's stop
/// answer at once.
#[tokio::test]
async fn stop_start_races_and_a_stubborn_server() -> TestResult {
    let mut people = People::new();
    let slow = people.person("slowr")?;
    let twice = people.person("twice")?;
    let stubborn = people.person("stubborn")?;
    let other = people.person("other")?;
    let kit = Kit::new()?;
    let mut hub = hub_for(&people, HubOptions::default(), &kit.direct_cmd(), "").await?;

    // Stop during the spawn (the slow server listens after 3 s).
    let (started, stopped) = tokio::join!(request_start(&hub, &slow), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        hub.admin(Method::DELETE, &format!("/users/{slow}/server"), None)
            .await
    });
    let (status, body) = stopped?;
    ensure!(
        status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT,
        "stop during the spawn: {status} {body}"
    );
    let (status, body) = started?;
    ensure!(
        !status.is_success() || status == StatusCode::ACCEPTED,
        "the cancelled start: {status} {body}"
    );
    eventually(
        Duration::from_secs(10),
        "the cancelled spawn cleaned up",
        || async {
            ensure!(server_procs(&hub, &slow).is_empty(), "a process is left");
            assert_cleaned_up(&hub, &slow, None).await
        },
    )
    .await?;

    // Two starts at once: one process.
    let (a, b) = tokio::join!(request_start(&hub, &twice), request_start(&hub, &twice));
    for (status, body) in [a?, b?] {
        ensure!(status.is_success(), "concurrent start: {status} {body}");
    }
    hub.wait_server_ready(&twice, START_WITHIN).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let leaders: Vec<_> = server_procs(&hub, &twice)
        .into_iter()
        .filter(|p| p.pid == p.pgid)
        .collect();
    ensure!(
        leaders.len() == 1,
        "{} server processes: {leaders:?}",
        leaders.len()
    );

    // The stubborn stop.
    start_server(&hub, &stubborn).await?;
    start_server(&hub, &other).await?;
    let leader = server_leader(&hub, &stubborn)?;
    let began = Instant::now();
    let stop = async {
        hub.admin(Method::DELETE, &format!("/users/{stubborn}/server"), None)
            .await
    };
    // While it stops: the hub answers, a start is refused, another user's stop goes through.
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = Instant::now();
        let (status, body) = request_start(&hub, &stubborn).await?;
        ensure!(
            status == StatusCode::BAD_REQUEST && t.elapsed() < Duration::from_secs(2),
            "start during the stop: {status} {body} after {:?}",
            t.elapsed()
        );
        let t = Instant::now();
        let (status, _) = hub.admin(Method::GET, "/users", None).await?;
        ensure!(
            status == StatusCode::OK && t.elapsed() < Duration::from_secs(2),
            "GET /users during the stop: {status} after {:?}",
            t.elapsed()
        );
        let t = Instant::now();
        let (status, body) = hub
            .admin(Method::DELETE, &format!("/users/{other}/server"), None)
            .await?;
        ensure!(
            status == StatusCode::NO_CONTENT && t.elapsed() < Duration::from_secs(3),
            "another user's stop during the stubborn one: {status} {body} after {:?}",
            t.elapsed()
        );
        ensure!(
            procs::running_as(leader.pid, leader.start_time),
            "the stubborn server was gone before the checks ended ({:?})",
            began.elapsed()
        );
        Ok(())
    };
    let (stopped, checked) = tokio::join!(stop, meanwhile);
    checked?;
    let (status, body) = stopped?;
    ensure!(
        status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT,
        "stubborn stop: {status} {body}"
    );
    eventually(
        Duration::from_secs(15),
        "the stubborn server killed",
        || async {
            ensure!(
                !procs::running_as(leader.pid, leader.start_time),
                "still running"
            );
            assert_cleaned_up(&hub, &stubborn, None).await
        },
    )
    .await?;
    let took = began.elapsed();
    ensure!(
        took >= Duration::from_secs(3),
        "the stubborn server went after {took:?}: the SIGINT and SIGTERM steps were skipped"
    );
    eprintln!("stubborn server stopped after {took:?}");
    start_server(&hub, &stubborn).await?;
    hub.done();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 84, 85, 87: refusals at startup.
// ---------------------------------------------------------------------------------------------

/// Runs the hub binary in `dir` with `config` (TOML) and `env` until it exits (at most
/// `within`); returns whether it succeeded, its output, and how long it ran.
fn run_hub_to_exit(
    dir: &Path,
    config: &str,
    env: &[(&str, &str)],
    within: Duration,
) -> anyhow::Result<(bool, String, Duration)> {
    let path = dir.join("jupyterhub_config.toml");
    std::fs::write(&path, config)?;
    let out_path = dir.join("hub.out");
    let out = std::fs::File::create(&out_path)?;
    let began = Instant::now();
    let mut child = Command::new(bins::hub())
        .arg("--config")
        .arg(&path)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if began.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the hub still runs after {within:?}:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok((
        status.success(),
        std::fs::read_to_string(&out_path)?,
        began.elapsed(),
    ))
}

/// A startup case: what, the configuration, the environment, words the output must have.
type StartupCase<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<&'a str>);

/// A minimal configuration on free ports, with the managed `chp-proxy`.
fn minimal_config(extra: &str) -> String {
    format!(
        r#"
[hub]
bind_url = "http://127.0.0.1:{public}"
hub_ip = "127.0.0.1"
hub_port = {hub}

[proxy]
command = [{chp:?}]
api_url = "http://127.0.0.1:{api}"
auth_token = "startup-test-token-{suffix}"

[authenticator]
class = "dummy"
{extra}
"#,
        public = workspace_tests::free_port(),
        hub = workspace_tests::free_port(),
        api = workspace_tests::free_port(),
        chp = bins::chp_proxy().display().to_string(),
        suffix = random_suffix(),
    )
}

/// Bad files and settings stop the hub at startup with a clear message and a non-zero exit,
/// before it serves anything and without leaving a proxy behind: a world-readable cookie
/// secret file, a cookie secret in the environment that is not hex, an unknown setting, an
/// invalid value, a database from a newer hub, and a proxy whose API cannot be reached
/// (bounded retries, then a fatal error).
#[tokio::test]
async fn bad_startup_conditions_are_refused_clearly() -> TestResult {
    let within = Duration::from_secs(40);
    let cases: Vec<StartupCase<'_>> = vec![
        (
            "cookie secret file mode 0644",
            minimal_config(""),
            vec![],
            vec!["jupyterhub_cookie_secret"],
        ),
        (
            "cookie secret in the environment that is not hex",
            minimal_config(""),
            vec![("JUPYTERHUB_COOKIE_SECRET", "not-hex-at-all")],
            vec!["JUPYTERHUB_COOKIE_SECRET"],
        ),
        (
            "an unknown setting",
            minimal_config("[spawner]\nno_such_setting = 1\n"),
            vec![],
            vec!["no_such_setting"],
        ),
        (
            "an invalid value",
            minimal_config("[spawner]\npoll_interval = \"often\"\n"),
            vec![],
            vec!["poll_interval"],
        ),
        (
            "a database from a newer hub",
            minimal_config(""),
            vec![],
            vec!["newer"],
        ),
        (
            "an external proxy whose API cannot be reached",
            minimal_config("").replace("[proxy]\n", "[proxy]\nshould_start = false\n"),
            vec![],
            vec!["proxy API", "gave up after"],
        ),
    ];
    for (what, config, env, expect) in cases {
        let dir = tempfile::Builder::new()
            .prefix("jhrs-fault-start-")
            .tempdir()?;
        match what {
            "cookie secret file mode 0644" => {
                let file = dir.path().join("jupyterhub_cookie_secret");
                std::fs::write(&file, "ab".repeat(32))?;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
            }
            "a database from a newer hub" => {
                // upgrade-db makes the database; then a version this hub does not know.
                let config_path = dir.path().join("jupyterhub_config.toml");
                std::fs::write(&config_path, &config)?;
                let made = Command::new(bins::hub())
                    .arg("--config")
                    .arg(&config_path)
                    .arg("upgrade-db")
                    .current_dir(dir.path())
                    .output()?;
                ensure!(made.status.success(), "upgrade-db: {made:?}");
                let db = dir.path().join("jupyterhub.sqlite");
                sql(
                    &db,
                    "INSERT INTO __diesel_schema_migrations (version) VALUES ('29990101000000')",
                    &json!([]),
                )?;
            }
            _ => {}
        }
        let (ok, out, took) = run_hub_to_exit(dir.path(), &config, &env, within)?;
        ensure!(!ok, "{what}: the hub started:\n{out}");
        for word in &expect {
            ensure!(
                out.contains(word),
                "{what}: the output does not name {word:?}:\n{out}"
            );
        }
        ensure!(
            !out.contains("panicked") && !out.contains("is running at"),
            "{what}: not a clean refusal:\n{out}"
        );
        eprintln!(
            "{what}: refused after {took:?}: {}",
            out.lines().last().unwrap_or("")
        );
        // Nothing it started is left: no proxy pid file, no process with its files.
        ensure!(
            !dir.path().join("jupyterhub-proxy.pid").exists(),
            "{what}: a proxy pid file is left"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 82: the SQLite file locked by another process.
// ---------------------------------------------------------------------------------------------

/// Another process holds the hub's SQLite database locked (`BEGIN EXCLUSIVE`) for longer than
/// the hub's busy timeout (5 s): writes get a clean 5xx JSON answer (no partial token), reads
/// keep working or fail as cleanly, and once the lock is released everything works again.
#[tokio::test]
async fn sqlite_locked_by_another_process() -> TestResult {
    let mut people = People::new();
    let alice = people.person("lock")?;
    let kit = Kit::new()?;
    let mut hub = hub_for(&people, HubOptions::default(), &kit.direct_cmd(), "").await?;
    let db = hub.run_dir().join("jupyterhub.sqlite");
    let count_tokens = || -> anyhow::Result<i64> {
        let rows = sql(&db, "SELECT count(*) FROM api_tokens", &json!([]))?;
        Ok(rows[0][0].as_i64().unwrap_or(-1))
    };
    let tokens_before = count_tokens()?;
    let mut locker = Command::new(PYTHON)
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             db = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             db.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             sys.stdin.readline()\n\
             db.execute('ROLLBACK')\n",
        )
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(locker.stdout.take().context("stdout")?),
        &mut line,
    )?;
    ensure!(line.trim() == "locked", "the locker said {line:?}");
    let began = Instant::now();
    let (status, body) = hub
        .admin(
            Method::POST,
            &format!("/users/{alice}/tokens"),
            Some(&json!({"note": "while locked"})),
        )
        .await?;
    let took = began.elapsed();
    // Release the lock.
    drop(locker.stdin.take());
    let _ = locker.wait();
    ensure!(
        status.is_server_error() && body.is_object() && body["status"] == status.as_u16(),
        "a token while the database is locked: {status} {body} after {took:?}"
    );
    let text = body.to_string();
    ensure!(
        !text.contains("diesel") && !text.contains("Traceback") && !text.contains("src/"),
        "internals in the answer: {text}"
    );
    ensure!(count_tokens()? == tokens_before, "a token row was written");
    // Recovered: the same request works, the new token works.
    let token = hub.token_for(&alice).await?;
    let (status, body) = hub.api(Method::GET, "/user", Some(&token), None).await?;
    ensure!(
        status == StatusCode::OK && body["name"] == alice,
        "{status} {body}"
    );
    ensure!(
        count_tokens()? == tokens_before + 1,
        "token rows after recovery"
    );
    start_server(&hub, &alice).await?;
    eprintln!("the locked write was refused after {took:?}");
    hub.done();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 83: the database's disk full.
// ---------------------------------------------------------------------------------------------

/// A small tmpfs mounted for one test, unmounted when dropped (also when the test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=…`) on a fresh directory.
    fn mount(size: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("jhrs-fault-tmpfs-")
            .tempdir()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("jhrs-fault-tmpfs")
            .arg(dir.path())
            .output()
            .context("running mount")?;
        ensure!(
            out.status.success(),
            "mount -t tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system to the last byte with `name`; returns how much was written.
    fn fill(&self, name: &str) -> anyhow::Result<u64> {
        use std::io::Write as _;
        let mut file = std::fs::File::create(self.path().join(name))?;
        let mut written = 0u64;
        for chunk in [1 << 16, 4096, 512, 1] {
            let block = vec![0u8; chunk];
            loop {
                match file.write(&block) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let _ = file.sync_all();
        Ok(written)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path = self.dir.path();
        let unmounted = Command::new("umount")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still holds a file there: detach it now, it goes when released.
            let _ = Command::new("umount").arg("-l").arg(path).status();
        }
    }
}

/// Whether an answer's text shows internals (a library, a source path, a SQL error).
fn shows_internals(text: &str) -> bool {
    [
        "diesel",
        "src/",
        "sqlite",
        "SQLITE",
        "disk is full",
        "panicked",
        "Traceback",
    ]
    .iter()
    .any(|word| text.contains(word))
}

/// The hub's SQLite database on a tmpfs filled to 100 %: a login through the form and a new
/// API token get clean errors (an error page; 5xx JSON without internals), no row is written,
/// and once space is freed the same requests work, without restarting the hub. A hub started
/// on the full disk (its database cannot be created) exits non-zero with a clear message.
#[tokio::test]
async fn full_disk_under_the_database() -> TestResult {
    if !is_root() {
        eprintln!("SKIPPED: full_disk_under_the_database mounts a tmpfs and needs root");
        return Ok(());
    }
    let disk = Tmpfs::mount("16m")?;
    let db = disk.path().join("jupyterhub.sqlite");
    let alice = format!("disk-{}", random_suffix());
    let bob = format!("diskb-{}", random_suffix());
    let kit = Kit::new()?;
    let extra = format!("[hub]\ndb_url = \"sqlite:///{}\"\n", db.display());
    let mut hub = hub_for(
        &People::new(),
        HubOptions::default(),
        &kit.direct_cmd(),
        &extra,
    )
    .await?;
    hub.create_users(&[&alice]).await?;
    let pid = hub.pid();
    let count = |query: &str, params: Value| -> anyhow::Result<i64> {
        let rows = sql(&db, query, &params)?;
        Ok(rows[0][0].as_i64().unwrap_or(-1))
    };
    let tokens_before = count("SELECT count(*) FROM api_tokens", json!([]))?;

    // Every later write has to grow the WAL: empty it, then fill the disk.
    let checkpoint = sql(&db, "PRAGMA wal_checkpoint(TRUNCATE)", &json!([]))?;
    ensure!(checkpoint[0][0] == 0, "checkpoint: {checkpoint}");
    let filled = disk.fill("filler")?;
    eprintln!("filled the tmpfs with {filled} bytes");

    let began = Instant::now();
    let (status, body) = hub
        .admin(
            Method::POST,
            &format!("/users/{alice}/tokens"),
            Some(&json!({"note": "on a full disk"})),
        )
        .await?;
    let took = began.elapsed();
    ensure!(
        status.is_server_error()
            && body.is_object()
            && body["status"] == status.as_u16()
            && body["message"].is_string(),
        "a token on a full disk: {status} {body} after {took:?}"
    );
    ensure!(!shows_internals(&body.to_string()), "internals: {body}");

    let mut browser = workspace_tests::browser::Browser::new("bob", hub.public_port);
    let post = workspace_tests::flows::submit_login(&mut browser, &bob, "any", None).await?;
    let content_type = post.header("content-type").unwrap_or_default().to_owned();
    ensure!(
        post.status.is_server_error() && content_type.starts_with("text/html"),
        "a login on a full disk: {post} ({content_type})\n{:.500}",
        post.body
    );
    ensure!(
        browser.cookie("jupyterhub-hub-login", "/hub/").is_none(),
        "a login cookie on a full disk"
    );
    ensure!(
        !shows_internals(&post.body),
        "internals: {:.2000}",
        post.body
    );

    // Nothing half written.
    ensure!(
        count("SELECT count(*) FROM api_tokens", json!([]))? == tokens_before,
        "a token row was written on the full disk"
    );
    ensure!(
        count("SELECT count(*) FROM users WHERE name = ?", json!([bob]))? == 0,
        "bob's row was written on the full disk"
    );

    // The hub started on the full disk, with a database it cannot create.
    let fresh = disk.path().join("fresh.sqlite");
    let start_dir = tempfile::Builder::new()
        .prefix("jhrs-fault-start-")
        .tempdir()?;
    let config = minimal_config("").replacen(
        "[hub]\n",
        &format!("[hub]\ndb_url = \"sqlite:///{}\"\n", fresh.display()),
        1,
    );
    let (ok, out, refused_after) =
        run_hub_to_exit(start_dir.path(), &config, &[], Duration::from_secs(60))?;
    ensure!(!ok, "the hub started on a full disk:\n{out}");
    // At once, with the cause (not after the pool's 10 s connection timeout).
    ensure!(
        refused_after < Duration::from_secs(5),
        "the refusal on a full disk took {refused_after:?}:\n{out}"
    );
    ensure!(
        out.contains("database") && out.contains("full") && !out.contains("panicked"),
        "not a clear refusal on a full disk:\n{out}"
    );
    ensure!(
        !start_dir.path().join("jupyterhub-proxy.pid").exists(),
        "a proxy pid file is left"
    );
    eprintln!(
        "startup on a full disk refused after {refused_after:?}: {}",
        out.lines().last().unwrap_or("")
    );

    // Space again: the same requests work, in the same hub.
    std::fs::remove_file(disk.path().join("filler"))?;
    let _ = std::fs::remove_file(&fresh);
    let (status, body) = hub
        .admin(
            Method::POST,
            &format!("/users/{alice}/tokens"),
            Some(&json!({"note": "space again"})),
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{status} {body}");
    let token = body["token"].as_str().context("no token")?.to_owned();
    let (status, body) = hub.api(Method::GET, "/user", Some(&token), None).await?;
    ensure!(
        status == StatusCode::OK && body["name"] == alice,
        "{status} {body}"
    );
    let mut browser = workspace_tests::browser::Browser::new("bob", hub.public_port);
    workspace_tests::flows::log_in(&mut browser, &bob, "any", None).await?;
    ensure!(
        count("SELECT count(*) FROM api_tokens", json!([]))? > tokens_before,
        "no token row after recovery"
    );
    ensure!(
        count("SELECT count(*) FROM users WHERE name = ?", json!([bob]))? == 1,
        "no row for bob after recovery"
    );
    ensure!(hub.pid() == pid, "the hub was restarted");
    eprintln!("a token on the full disk refused after {took:?}; recovered without a restart");
    hub.terminate(Duration::from_secs(20)).await?;
    hub.done();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL restarted under load.
// ---------------------------------------------------------------------------------------------

/// A PostgreSQL server of this test alone (`scripts/postgres-test-server.sh` with its own
/// directory and port); its cluster is deleted when dropped.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    fn script() -> PathBuf {
        bins::workspace_root().join("scripts/postgres-test-server.sh")
    }

    fn run(&self, action: &str) -> anyhow::Result<String> {
        let out = Command::new(Self::script())
            .arg(action)
            .env("JHRS_PG_DIR", self.dir.path().join("pg"))
            .env("JHRS_PG_PORT", self.port.to_string())
            .output()
            .with_context(|| format!("postgres-test-server.sh {action}"))?;
        ensure!(
            out.status.success(),
            "postgres-test-server.sh {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Starts a new cluster; returns its URL.
    fn start() -> anyhow::Result<(Self, String)> {
        let dir = tempfile::Builder::new()
            .prefix("jhrs-fault-pg-")
            .tempdir()?;
        // As root the cluster belongs to the postgres account, which must reach it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let pg = PrivatePostgres {
            dir,
            port: workspace_tests::free_port(),
        };
        let url = pg.run("start")?;
        Ok((pg, url))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Err(e) = self.run("reset") {
            eprintln!("removing the private PostgreSQL: {e:#}");
        }
    }
}

/// One request of the load: when it was sent, how long it took, and what came back.
#[derive(Debug)]
struct Sample {
    sent: Instant,
    took: Duration,
    answer: Result<(StatusCode, Value), String>,
}

/// The hub on a PostgreSQL server of its own, under a steady stream of API requests that need
/// the database; the server is stopped for 13 s and started again on the same port. While it is
/// down, requests wait for a connection (up to the pool's 10 s) and then get a clean 5xx JSON
/// answer (no hang, no internals); once it is back, the same hub (no restart) answers 200 again
/// within seconds.
#[tokio::test]
async fn postgres_restarted_under_load() -> TestResult {
    let (pg, url) = PrivatePostgres::start()?;
    let kit = Kit::new()?;
    let alice = format!("pg-{}", random_suffix());
    let extra = format!("[hub]\ndb_url = \"{url}\"\n");
    let hub = hub_for(
        &People::new(),
        HubOptions::default(),
        &kit.direct_cmd(),
        &extra,
    )
    .await?;
    hub.create_users(&[&alice]).await?;
    let pid = hub.pid();
    let hub = std::sync::Arc::new(hub);

    let (stop_load, load_stopped) = tokio::sync::watch::channel(false);
    let load = {
        let hub = std::sync::Arc::clone(&hub);
        let alice = alice.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut n = 0u32;
            while !*load_stopped.borrow() {
                n += 1;
                let sent = Instant::now();
                // Reads and writes by turns.
                let answer = if n.is_multiple_of(2) {
                    hub.admin(Method::GET, &format!("/users/{alice}"), None)
                        .await
                } else {
                    hub.admin(
                        Method::POST,
                        &format!("/users/{alice}/tokens"),
                        Some(&json!({"note": "load", "expires_in": 600})),
                    )
                    .await
                };
                samples.push(Sample {
                    sent,
                    took: sent.elapsed(),
                    answer: answer.map_err(|e| format!("{e:#}")),
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopping = Instant::now();
    pg.run("stop")?;
    let stopped = Instant::now();
    // Longer than the hub's wait for a database connection (10 s): shorter outages only delay
    // requests, this one has them refused.
    tokio::time::sleep(Duration::from_secs(13)).await;
    let starting = Instant::now();
    pg.run("start")?;
    let started = Instant::now();
    // The hub answers again, within seconds.
    let mut back = None;
    let deadline = Deadline::new(
        "the hub to answer after PostgreSQL is back",
        Duration::from_secs(20),
    );
    while back.is_none() {
        let (status, body) = hub
            .admin(Method::GET, &format!("/users/{alice}"), None)
            .await?;
        if status == StatusCode::OK && body["name"] == alice {
            back = Some(Instant::now());
        } else {
            deadline.tick().await?;
        }
    }
    let back_at = back.context("never back")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_load.send(true);
    let samples = load.await?;

    let mut failed = 0;
    let mut longest = Duration::ZERO;
    for sample in &samples {
        longest = longest.max(sample.took);
        let during = sample.sent + sample.took >= stopping && sample.sent <= back_at;
        match &sample.answer {
            Ok((status, _)) if status.is_success() => {}
            Ok((status, body)) if during && status.is_server_error() => {
                failed += 1;
                ensure!(
                    body.is_object()
                        && body["status"] == status.as_u16()
                        && body["message"].is_string()
                        && !shows_internals(&body.to_string())
                        && !body.to_string().contains("postgres"),
                    "an answer while PostgreSQL was down: {status} {body}"
                );
            }
            other => bail!(
                "{other:?} {:?} after the stop began ({:?} long)",
                (sample.sent + sample.took).saturating_duration_since(stopping),
                sample.took
            ),
        }
        ensure!(
            sample.took < Duration::from_secs(15),
            "a request hung for {:?}",
            sample.took
        );
    }
    ensure!(
        failed > 0,
        "no request was refused while PostgreSQL was down"
    );
    let last = samples.iter().rev().take(5);
    for sample in last {
        ensure!(
            matches!(&sample.answer, Ok((s, _)) if s.is_success()),
            "after recovery: {sample:?}"
        );
    }
    let back = back_at - started;
    eprintln!(
        "PostgreSQL stopped in {:?}, started in {:?}; {} requests, {failed} refused while it \
         was down, longest {longest:?}; the hub answered again {back:?} after the start",
        stopped - stopping,
        started - starting,
        samples.len()
    );
    let mut hub = std::sync::Arc::into_inner(hub).context("the hub is still shared")?;
    ensure!(hub.pid() == pid, "the hub was restarted");
    hub.terminate(Duration::from_secs(20)).await?;
    hub.done();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 84: an older database schema at startup.
// ---------------------------------------------------------------------------------------------

/// A SQLite database from before this hub's schema (data of its own, no hub tables): the hub
/// backs it up as `upgrade-db` does (`<file>.<timestamp>.bak`, the old content, the file's
/// mode), says where in its log, upgrades it and serves.
#[tokio::test]
async fn older_sqlite_schema_is_backed_up_before_the_automatic_upgrade() -> TestResult {
    let dir = tempfile::Builder::new()
        .prefix("jhrs-fault-olddb-")
        .tempdir()?;
    let db = dir.path().join("jupyterhub.sqlite");
    sql(&db, "CREATE TABLE legacy (x INTEGER)", &json!([]))?;
    sql(&db, "INSERT INTO legacy VALUES (42)", &json!([]))?;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600))?;
    let kit = Kit::new()?;
    let alice = format!("old-{}", random_suffix());
    let extra = format!("[hub]\ndb_url = \"sqlite:///{}\"\n", db.display());
    let mut hub = hub_for(
        &People::new(),
        HubOptions::default(),
        &kit.direct_cmd(),
        &extra,
    )
    .await?;
    hub.create_users(&[&alice]).await?;
    let token = hub.token_for(&alice).await?;
    let (status, body) = hub.api(Method::GET, "/user", Some(&token), None).await?;
    ensure!(
        status == StatusCode::OK && body["name"] == alice,
        "{status} {body}"
    );

    let backups: Vec<PathBuf> = std::fs::read_dir(dir.path())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("jupyterhub.sqlite.") && n.ends_with(".bak"))
        })
        .collect();
    ensure!(backups.len() == 1, "backups: {backups:?}");
    let backup = &backups[0];
    let mode = std::fs::metadata(backup)?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "the backup's mode is {mode:o}");
    let old = sql(backup, "SELECT x FROM legacy", &json!([]))?;
    ensure!(old == json!([[42]]), "the backup holds {old}");
    let tables = sql(
        backup,
        "SELECT count(*) FROM sqlite_master WHERE name = 'users'",
        &json!([]),
    )?;
    ensure!(
        tables == json!([[0]]),
        "the backup has hub tables: {tables}"
    );
    let log = hub.log();
    ensure!(
        log.contains(&backup.display().to_string()),
        "the log does not say where the backup is:\n{}",
        hub.log_tail(40)
    );
    // The legacy data is still in the upgraded database too.
    ensure!(sql(&db, "SELECT x FROM legacy", &json!([]))? == json!([[42]]));

    // A restart on the upgraded database writes no second backup.
    hub.terminate(Duration::from_secs(20)).await?;
    hub.start_again().await?;
    let count = std::fs::read_dir(dir.path())?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".bak"))
        .count();
    ensure!(count == 1, "{count} backups after a restart");
    hub.done();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A.12: servers of blocked users at startup.
// ---------------------------------------------------------------------------------------------

/// A user whose server runs when the hub stops and who is in `authenticator.blocked_users`
/// when it starts again: the new hub stops that server (process gone; row, route, API token
/// and OAuth client cleaned up) and adopts the others.
#[tokio::test]
async fn servers_of_blocked_users_are_stopped_at_startup() -> TestResult {
    let mut people = People::new();
    let alice = people.person("blka")?;
    let bob = people.person("blkb")?;
    let kit = Kit::new()?;
    let mut hub = hub_for(
        &people,
        HubOptions::default(),
        &kit.direct_cmd(),
        "[hub]\ncleanup_servers = false\n",
    )
    .await?;
    start_server(&hub, &alice).await?;
    start_server(&hub, &bob).await?;
    let alice_leader = server_leader(&hub, &alice)?;
    let alice_server_token = server_api_token(&hub, &alice)?;
    let status = hub.terminate(Duration::from_secs(30)).await?;
    ensure!(status.success(), "the hub exited with {status}");
    ensure!(
        procs::running_as(alice_leader.pid, alice_leader.start_time),
        "alice's server did not outlive the hub"
    );

    // Block alice, then start the hub again.
    let config_path = hub.run_dir().join("jupyterhub_config.toml");
    let mut config: toml::Table = toml::from_str(&std::fs::read_to_string(&config_path)?)?;
    merge(
        &mut config,
        toml::from_str(&format!("[authenticator]\nblocked_users = [{alice:?}]\n"))?,
    );
    std::fs::write(&config_path, toml::to_string(&config)?)?;
    hub.start_again().await?;

    let deadline = Deadline::new("the blocked user's server to stop", Duration::from_secs(15));
    while procs::running_as(alice_leader.pid, alice_leader.start_time) {
        deadline.tick().await?;
    }
    eventually(Duration::from_secs(10), "alice's server cleaned up", || {
        assert_cleaned_up(&hub, &alice, Some(&alice_server_token))
    })
    .await?;
    served_by_server(&hub, &bob, None).await?;
    let row = server_row(&hub, &bob)?;
    ensure!(
        row.phase == "running" && row.tokens == 1 && row.clients == 1,
        "bob: {row:?}"
    );
    hub.done();
    Ok(())
}
