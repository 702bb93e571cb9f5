//! End to end with JupyterLab: the `hub` binary, a proxy, and servers that run the real
//! JupyterLab 4.6 with a Python kernel (from the venv `scripts/python-test-env.sh lab` makes;
//! it is made on first use), used the way a browser running JupyterLab uses them.
//!
//! The flow: a browser logs in through the form and is sent through `/hub/spawn`, the
//! spawn-pending page and the server's OAuth login at the hub to the Lab page (JupyterLab's
//! HTML, its hub menu facts, its scripts); a kernel is started through the REST API with the
//! XSRF token from the `_xsrf` cookie, as JupyterLab sends it; `1+1` runs over the kernel
//! websocket in Jupyter's JSON message format and gives `2`; the server's activity report
//! reaches the hub; another user is refused at every door (page, API, websocket); the server
//! stops (with its kernel) and starts again.
//!
//! - With `singleuser-auth-shim` running `jupyter lab` (the hub's default server command) and
//!   the managed `chp-proxy`; with the real configurable-http-proxy 5.3.0 as the managed
//!   proxy; with the real `jupyterhub-singleuser` (JupyterHub 6.1.1) as the server command.
//! - With the proxy in a network namespace of its own, as on another host: the hub reaches
//!   its API by address, the proxy reaches the hub and the servers by address, and the
//!   browser talks to the proxy only.
//! - The real `jupyterhub-idle-culler` stops a server left idle while a server in use, whose
//!   kernel keeps running code, stays.
//!
//! As root (CI), every user is a throwaway system account whose server runs under its uid;
//! the network namespace test needs root. Run `cargo build -p hub -p chp-proxy -p
//! singleuser-auth-shim` first (or set `HUB_BIN`, `CHP_PROXY_BIN`, `SHIM_BIN`).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use workspace_tests::accounts::{Accounts, SystemUser, is_root, random_suffix};
use workspace_tests::bins;
use workspace_tests::browser::{Browser, Response, describe};
use workspace_tests::flows::{follow_through_spawn, log_in};
use workspace_tests::hubproc::{Deadline, ExternalProxy, Hub, HubOptions};
use workspace_tests::kernel::{self, KernelSocket};
use workspace_tests::netns::NetNs;
use workspace_tests::procs;

type TestResult = anyhow::Result<()>;

/// From the start request to a ready server (JupyterLab starts in a few seconds; a debug hub
/// on a busy 2-core CI machine needs more).
const START_WITHIN: Duration = Duration::from_secs(120);

/// How long a stop may take (the spawner's SIGINT, SIGTERM, SIGKILL steps).
const STOP_WITHIN: Duration = Duration::from_secs(45);

/// Seconds between the servers' activity reports in these tests.
const ACTIVITY_INTERVAL: u64 = 2;

/// Users: as root, fresh system accounts (each server runs under its user's uid); otherwise
/// plain names, whose servers run as this account.
struct People {
    accounts: Option<Accounts>,
}

impl People {
    fn new() -> Self {
        Self {
            accounts: is_root().then(Accounts::new),
        }
    }

    fn person(&mut self, prefix: &str) -> anyhow::Result<(String, Option<SystemUser>)> {
        match &mut self.accounts {
            Some(accounts) => {
                let account = accounts.user(prefix, None)?;
                Ok((account.name.clone(), Some(account)))
            }
            None => Ok((format!("{prefix}-{}", random_suffix()), None)),
        }
    }
}

/// What serves the users' pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    /// `singleuser-auth-shim`, which runs `jupyter lab` (found on the `PATH` it is given).
    Shim,
    /// The real `jupyterhub-singleuser` of JupyterHub 6.1.1, with JupyterLab as its extension.
    Singleuser,
}

/// The test's configuration on top of the base one: the server command, JupyterLab's page
/// as the default URL, the venv's `bin` on the servers' `PATH`, frequent activity reports,
/// and the proxy's activity not collected (so what reaches the hub is what the servers
/// report).
///
/// The shim is the hub's default server command, which the hub finds beside its executable:
/// with a `hub` and a `singleuser-auth-shim` of the same build, the test leaves `cmd` unset.
fn lab_config(server: Server, venv: &Path, options: &mut HubOptions) -> String {
    let cmd = match server {
        Server::Shim if shim_beside_hub() => {
            options.default_server_cmd = true;
            String::new()
        }
        Server::Shim => format!(
            "cmd = [{:?}]",
            bins::singleuser_auth_shim().display().to_string()
        ),
        Server::Singleuser => format!(
            "cmd = [{:?}]",
            venv.join("bin")
                .join("jupyterhub-singleuser")
                .display()
                .to_string()
        ),
    };
    format!(
        r#"
[hub]
last_activity_interval = 3600

[spawner]
{cmd}
default_url = "/lab"
start_timeout = 120
http_timeout = 90

[spawner.environment]
PATH = "{bin}:/usr/local/bin:/usr/bin:/bin"
JUPYTERHUB_ACTIVITY_INTERVAL = "{ACTIVITY_INTERVAL}"
"#,
        bin = venv.join("bin").display(),
    )
}

/// Whether the shim under test is the one beside the hub under test.
fn shim_beside_hub() -> bool {
    let shim = bins::singleuser_auth_shim();
    bins::hub()
        .parent()
        .is_some_and(|dir| dir.join("singleuser-auth-shim") == shim)
}

/// Checks that `user`'s server process is `server`'s program, under `account` when given.
async fn check_server_process(
    hub: &Hub,
    user: &str,
    account: Option<&SystemUser>,
    server_kind: Server,
) -> TestResult {
    let program = match server_kind {
        Server::Shim => "singleuser-auth-shim",
        Server::Singleuser => "jupyterhub-singleuser",
    };
    let server = hub.default_server(user).await?.context("no server")?;
    let pid = server["state"]["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .with_context(|| format!("no pid in the server's state: {server}"))?;
    let cmdline = procs::cmdline(pid).unwrap_or_default();
    ensure!(
        cmdline.contains(program),
        "{user}'s server process {pid} should be {program}: {cmdline}"
    );
    if let Some(account) = account {
        let uids = procs::ids(pid, "Uid:").context("no Uid line")?;
        ensure!(
            uids.iter().all(|&u| u == account.uid),
            "{user}'s server runs with uids {uids:?}, expected {}",
            account.uid
        );
    }
    Ok(())
}

/// The hub with Lab servers (`server`) and `extra` TOML after the test's configuration.
async fn lab_hub(server: Server, mut options: HubOptions, extra: &str) -> anyhow::Result<Hub> {
    let venv = bins::lab_venv();
    options.venv = Some(venv.clone());
    let config = format!("{}\n{extra}", lab_config(server, &venv, &mut options));
    Hub::start_with(options, &config).await
}

/// A time from the hub's API (`2026-12-01T10:00:00.123456Z`).
fn api_time(value: &Value) -> anyhow::Result<DateTime<Utc>> {
    let text = value
        .as_str()
        .with_context(|| format!("not a time: {value}"))?;
    Ok(DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("not an ISO 8601 time: {text}"))?
        .with_timezone(&Utc))
}

// ---------------------------------------------------------------------------------------------
// The Lab flow, step by step.
// ---------------------------------------------------------------------------------------------

/// Checks that `page` is JupyterLab's page for `user`'s server: its configuration block
/// names the app, the server's base URL and the hub's facts for the hub menu.
fn check_lab_page(page: &Response, user: &str) -> TestResult {
    let prefix = format!("/user/{user}/");
    ensure!(
        page.status == StatusCode::OK
            && page.url.path() == format!("{prefix}lab")
            && page
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
        "{page}: expected JupyterLab's HTML page at {prefix}lab"
    );
    let config = lab_page_config(&page.body)
        .with_context(|| format!("{page}: no jupyter-config-data in\n{:.1500}", page.body))?;
    ensure!(
        config["appName"] == json!("JupyterLab")
            && config["baseUrl"] == json!(prefix)
            && config["hubUser"] == json!(user)
            && config["hubPrefix"] == json!("/hub/"),
        "{page}: not JupyterLab's page of {user}'s server behind the hub: {config}"
    );
    Ok(())
}

/// The JSON of `<script id="jupyter-config-data" type="application/json">` in a Lab page.
fn lab_page_config(html: &str) -> Option<Value> {
    let at = html.find("id=\"jupyter-config-data\"")?;
    let start = html[at..].find('>')? + at + 1;
    let end = html[start..].find("</script>")? + start;
    serde_json::from_str(&html[start..end]).ok()
}

/// The `src` of the first `<script src=...>` in `html`.
fn first_script(html: &str) -> Option<String> {
    let mut rest = html;
    while let Some(at) = rest.find("<script") {
        let tag_end = rest[at..].find('>')? + at;
        let tag = &rest[at..tag_end];
        if let Some(src) = tag.find("src=\"") {
            let value = &tag[src + 5..];
            return Some(value[..value.find('"')?].replace("&amp;", "&"));
        }
        rest = &rest[tag_end..];
    }
    None
}

/// `user` logs in through the form and follows the hub to the Lab page of a new server,
/// through the spawn-pending page and the server's OAuth login at the hub.
async fn log_in_and_open_lab(browser: &mut Browser, user: &str) -> anyhow::Result<()> {
    let post = log_in(browser, user, "any password", None).await?;
    ensure!(
        post.location().is_some_and(|l| l.path() == "/hub/spawn"),
        "{post}: the login should send {user} on to /hub/spawn"
    );
    let hops = follow_through_spawn(browser, user, post, START_WITHIN).await?;
    check_spawn_hops(user, &hops)?;
    check_lab_page(hops.last().context("no hops")?, user)
}

/// The hops from a start to the Lab page: `/hub/spawn`, the server, its OAuth login at the
/// hub, its callback, the Lab page.
fn check_spawn_hops(user: &str, hops: &[Response]) -> TestResult {
    let paths: Vec<&str> = hops.iter().map(|h| h.url.path()).collect();
    let server = format!("/user/{user}/");
    let expected = [
        "/hub/spawn".to_owned(),
        server.clone(),
        "/hub/api/oauth2/authorize".to_owned(),
        format!("{server}oauth_callback"),
        format!("{server}lab"),
    ];
    let mut at = 0;
    for path in &paths {
        if expected.get(at).is_some_and(|e| e == path) {
            at += 1;
        }
    }
    ensure!(
        at == expected.len(),
        "{user}'s browser should pass {expected:?} in order; it took:\n{}",
        describe(hops)
    );
    Ok(())
}

/// Loads the first script of the Lab page through the proxy (JupyterLab's static files).
async fn check_lab_script(browser: &mut Browser, page: &str) -> TestResult {
    let script = first_script(page).context("the Lab page has no <script src>")?;
    let reply = browser
        .request(
            Method::GET,
            &script,
            &[
                ("Sec-Fetch-Mode", "no-cors"),
                ("Sec-Fetch-Site", "same-origin"),
                ("Sec-Fetch-Dest", "script"),
            ],
            None,
        )
        .await?;
    ensure!(
        reply.status == StatusCode::OK
            && reply
                .header("content-type")
                .is_some_and(|t| t.contains("javascript")),
        "{reply}: the Lab page's script {script} should load ({:?})",
        reply.header("content-type")
    );
    Ok(())
}

/// Starts a kernel on `user`'s server and opens its websocket, as JupyterLab does; checks
/// that the XSRF token is needed.
async fn open_kernel(browser: &mut Browser, user: &str) -> anyhow::Result<(String, KernelSocket)> {
    let prefix = format!("/user/{user}/");
    let without = kernel::api_call(
        browser,
        Method::POST,
        &format!("{prefix}api/kernels"),
        None,
        Some(&json!({"name": "python3"})),
    )
    .await?;
    ensure!(
        without.status == StatusCode::FORBIDDEN,
        "{without}: a cookie request without the XSRF token must be refused\n{:.300}",
        without.body
    );
    let id = kernel::start_kernel(browser, &prefix).await?;
    let mut socket = kernel::connect(browser, &prefix, &id).await?;
    let info = socket.kernel_info().await?;
    ensure!(
        info["language_info"]["name"] == json!("python") && info["status"] == json!("ok"),
        "kernel_info_reply of {user}'s kernel: {info}"
    );
    Ok((id, socket))
}

/// Runs `1+1` and checks the answer: an `execute_result` with `text/plain` `2`.
async fn one_plus_one(socket: &mut KernelSocket) -> TestResult {
    let done = socket.execute("1+1").await?;
    ensure!(
        done.result.as_deref() == Some("2") && done.status == "ok",
        "1+1 gave {done:?}"
    );
    Ok(())
}

/// Waits until the hub's `last_activity` of `user` and of the user's default server are at
/// or after `since` (the servers report at most every [`ACTIVITY_INTERVAL`] seconds).
async fn wait_activity(hub: &Hub, user: &str, since: DateTime<Utc>) -> anyhow::Result<Value> {
    // The hub stores milliseconds or better; allow for rounding.
    let since = since - chrono::Duration::milliseconds(5);
    let deadline = Deadline::new(
        format!("{user}'s activity since {since} to reach the hub"),
        Duration::from_secs(ACTIVITY_INTERVAL * 10 + 10),
    );
    loop {
        let model = hub.user_model(user).await?;
        let server = api_time(&model["servers"][""]["last_activity"]);
        let user_time = api_time(&model["last_activity"]);
        if let (Ok(server), Ok(user_time)) = (&server, &user_time)
            && *server >= since
            && *user_time >= since
        {
            return Ok(model);
        }
        if let Err(e) = deadline.tick().await {
            bail!("{e}; last model: {model}\n{}", hub.log_tail(40));
        }
    }
}

/// `other` logs in and tries `owner`'s server: the Lab page (refused at the hub's authorize
/// step), the REST API and the kernel websocket (no access without a cookie of that server).
async fn check_other_user_refused(
    hub: &Hub,
    other: &str,
    owner: &str,
    kernel_id: &str,
) -> TestResult {
    let mut browser = Browser::with_origin(other, &hub.public_url("/"))?;
    log_in(&mut browser, other, "any password", Some("/hub/home")).await?;
    let hops = browser.visit(&format!("/user/{owner}/lab")).await?;
    let last = hops.last().context("no hops")?;
    ensure!(
        last.url.path() == "/hub/api/oauth2/authorize" && last.status == StatusCode::FORBIDDEN,
        "{other} opening {owner}'s Lab page must be refused at the hub's authorize step:\n{}",
        describe(&hops)
    );
    let prefix = format!("/user/{owner}/");
    // (Only the login state cookie of the attempt, which grants nothing.)
    let login_cookie = format!("jupyterhub-user-{owner}");
    ensure!(
        browser.cookies().iter().all(|c| c.name != login_cookie),
        "{other}'s browser got the login cookie of {owner}'s server: {:?}",
        browser.cookies()
    );
    let listed = kernel::api_call(
        &mut browser,
        Method::GET,
        &format!("{prefix}api/kernels"),
        None,
        None,
    )
    .await?;
    ensure!(
        listed.status == StatusCode::FORBIDDEN,
        "{listed}: {other} must not list {owner}'s kernels\n{:.300}",
        listed.body
    );
    match kernel::connect(&browser, &prefix, kernel_id).await {
        Ok(_) => bail!("{other} opened the websocket of {owner}'s kernel"),
        Err(e) => ensure!(
            e.to_string().contains("refused: 403"),
            "{other} at {owner}'s kernel websocket: expected 403, got: {e:#}"
        ),
    }
    Ok(())
}

/// Stops `user`'s server through the API; waits until the hub, the proxy and (with a system
/// account) every process of the account, the kernel included, are gone.
async fn stop_server(hub: &Hub, user: &str, account: Option<&SystemUser>) -> TestResult {
    let (status, body) = hub
        .admin(Method::DELETE, &format!("/users/{user}/server"), None)
        .await?;
    ensure!(
        status == StatusCode::NO_CONTENT || status == StatusCode::ACCEPTED,
        "stopping {user}'s server: {status} {body}"
    );
    let deadline = Deadline::new(format!("{user}'s server to stop"), STOP_WITHIN);
    while hub.default_server(user).await?.is_some() {
        deadline.tick().await?;
    }
    hub.wait_route(&format!("/user/{user}"), false, STOP_WITHIN)
        .await?;
    if let Some(account) = account {
        wait_no_processes(account).await?;
    }
    Ok(())
}

/// Waits until no process runs under `account`'s uid.
async fn wait_no_processes(account: &SystemUser) -> TestResult {
    let deadline = Deadline::new(
        format!("every process of {} to end", account.name),
        STOP_WITHIN,
    );
    loop {
        let left: Vec<String> = procs::all()
            .into_iter()
            .filter(|p| p.running() && p.uid == Some(account.uid))
            .map(|p| procs::cmdline(p.pid).unwrap_or_default())
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if let Err(e) = deadline.tick().await {
            bail!("{e}; still running: {left:#?}");
        }
    }
}

/// The whole flow for `alice` (and `bob`, refused) on a running hub.
async fn lab_flow(
    hub: &Hub,
    server: Server,
    alice: &str,
    alice_account: Option<&SystemUser>,
    bob: &str,
) -> TestResult {
    let mut browser = Browser::with_origin(alice, &hub.public_url("/"))?;
    log_in_and_open_lab(&mut browser, alice).await?;
    check_server_process(hub, alice, alice_account, server).await?;
    let page = browser.get(&format!("/user/{alice}/lab")).await?;
    check_lab_page(&page, alice)?;
    check_lab_script(&mut browser, &page.body).await?;

    let (kernel_id, mut socket) = open_kernel(&mut browser, alice).await?;
    let before = Utc::now();
    one_plus_one(&mut socket).await?;
    wait_activity(hub, alice, before).await?;

    check_other_user_refused(hub, bob, alice, &kernel_id).await?;
    // Alice's kernel still answers her.
    one_plus_one(&mut socket).await?;
    socket.close().await;

    stop_server(hub, alice, alice_account).await?;

    // Start again from the browser: a new server, a new OAuth login, a new kernel.
    let first = browser.get("/hub/spawn").await?;
    let hops = follow_through_spawn(&mut browser, alice, first, START_WITHIN).await?;
    check_spawn_hops(alice, &hops)?;
    check_lab_page(hops.last().context("no hops")?, alice)?;
    let (_, mut socket) = open_kernel(&mut browser, alice).await?;
    let printed = socket.execute("print(6 * 7)").await?;
    ensure!(
        printed.stdout == "42\n" && printed.status == "ok",
        "print(6 * 7) gave {printed:?}"
    );
    one_plus_one(&mut socket).await?;
    socket.close().await;
    stop_server(hub, alice, alice_account).await
}

/// Runs [`lab_flow`] on a hub with `server` and the managed proxy set by `extra`.
async fn lab_flow_with(server: Server, extra: &str) -> TestResult {
    let mut people = People::new();
    let (alice, alice_account) = people.person("jhrs_l")?;
    let (bob, _bob_account) = people.person("jhrs_m")?;
    // Declared after the accounts: dropped first, so its servers are gone before userdel.
    let mut hub = lab_hub(server, HubOptions::default(), extra).await?;
    hub.prepare_notebook_dir(&alice, alice_account.as_ref())?;
    lab_flow(&hub, server, &alice, alice_account.as_ref(), &bob).await?;
    hub.done();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

/// The shim running `jupyter lab`, behind the managed `chp-proxy`.
#[tokio::test]
async fn lab_through_the_shim_and_chp_proxy() -> TestResult {
    lab_flow_with(Server::Shim, "").await
}

/// The shim running `jupyter lab`, behind the real configurable-http-proxy 5.3.0 started by
/// the hub.
#[tokio::test]
async fn lab_through_the_shim_and_configurable_http_proxy() -> TestResult {
    let chp = bins::chp_real();
    lab_flow_with(
        Server::Shim,
        &format!("[proxy]\ncommand = [{:?}]\n", chp.display().to_string()),
    )
    .await
}

/// The real `jupyterhub-singleuser` with JupyterLab, behind the managed `chp-proxy`.
#[tokio::test]
async fn lab_through_jupyterhub_singleuser() -> TestResult {
    lab_flow_with(Server::Singleuser, "").await
}

/// `chp-proxy` started by the test in a network namespace of its own.
struct ProxyInNetns {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl ProxyInNetns {
    /// Starts `chp-proxy` in `ns` on its address: public port 8000, API port 8001.
    fn start(ns: &NetNs, token: &str) -> anyhow::Result<Self> {
        let log = tempfile::Builder::new()
            .prefix("jhrs-e2e-netns-proxy-")
            .suffix(".log")
            .tempfile()?;
        let child = ns
            .command(bins::chp_proxy())
            .args(["--ip", &ns.ns_addr.to_string(), "--port", "8000"])
            .args(["--api-ip", &ns.ns_addr.to_string(), "--api-port", "8001"])
            .env("CONFIGPROXY_AUTH_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(log.reopen()?)
            .stderr(log.reopen()?)
            .spawn()
            .context("starting chp-proxy in the namespace")?;
        Ok(Self { child, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Waits until its API answers from this side of the pair.
    async fn wait_up(&mut self, api: SocketAddr, token: &str) -> TestResult {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let deadline = Deadline::new(
            "chp-proxy in the namespace to answer",
            Duration::from_secs(30),
        );
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "chp-proxy in the namespace exited with {status}:\n{}",
                    self.log()
                );
            }
            let reply = client
                .get(format!("http://{api}/api/routes"))
                .header("Authorization", format!("token {token}"))
                .send()
                .await;
            if reply.is_ok_and(|r| r.status() == StatusCode::OK) {
                return Ok(());
            }
            if let Err(e) = deadline.tick().await {
                bail!("{e}\n{}", self.log());
            }
        }
    }
}

impl Drop for ProxyInNetns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- chp-proxy (namespace) log -----\n{}", self.log());
        }
    }
}

/// The proxy on "another host": `chp-proxy` in a network namespace joined by a veth pair. The
/// hub (proxy not started by it) reaches the proxy's API at the namespace's address; the
/// hub and the servers listen on this side's address, where the proxy sends requests; the
/// browser talks to the proxy's address only. Nothing can use loopback across the two.
#[tokio::test]
async fn lab_with_the_proxy_on_another_host() -> TestResult {
    let mut people = People::new();
    let (alice, alice_account) = people.person("jhrs_n")?;
    let (bob, _bob_account) = people.person("jhrs_o")?;
    let ns = NetNs::create()?;
    let token = format!("proxy-{}{}", random_suffix(), random_suffix());
    let public = SocketAddr::new(IpAddr::V4(ns.ns_addr), 8000);
    let api = SocketAddr::new(IpAddr::V4(ns.ns_addr), 8001);
    let mut proxy = ProxyInNetns::start(&ns, &token)?;
    proxy.wait_up(api, &token).await?;
    ensure!(
        ns.contains(i32::try_from(proxy.child.id())?),
        "chp-proxy does not run in the namespace {}",
        ns.name
    );

    let options = HubOptions {
        ip: Some(IpAddr::V4(ns.host_addr)),
        external_proxy: Some(ExternalProxy {
            public,
            api,
            token: token.clone(),
        }),
        ..HubOptions::default()
    };
    let mut hub = lab_hub(Server::Shim, options, "").await?;
    hub.prepare_notebook_dir(&alice, alice_account.as_ref())?;

    // The hub listens on this side's veth address only, not on loopback.
    let hub_pid = i32::try_from(hub.pid().context("the hub is not running")?)?;
    let listening = procs::listening_v4(hub_pid);
    ensure!(
        listening == [std::net::SocketAddrV4::new(ns.host_addr, hub.hub_port)],
        "the hub should listen on {}:{} only, it listens on {listening:?}",
        ns.host_addr,
        hub.hub_port
    );
    let routes = hub.proxy_routes().await?;
    let hub_target = format!("http://{}:{}", ns.host_addr, hub.hub_port);
    ensure!(
        routes
            .get("/")
            .is_some_and(|r| r["target"] == json!(hub_target)),
        "the proxy's route / should go to the hub at {hub_target}: {}",
        Value::Object(routes)
    );

    // The server's route points at this side's address, where the server listens; the
    // whole flow goes through the proxy's address.
    let mut browser = Browser::with_origin(&alice, &hub.public_url("/"))?;
    log_in_and_open_lab(&mut browser, &alice).await?;
    let target = hub
        .wait_route(&format!("/user/{alice}"), true, Duration::from_secs(10))
        .await?
        .context("no target")?;
    let server = hub.default_server(&alice).await?.context("no server")?;
    ensure!(
        target.starts_with(&format!("http://{}:", ns.host_addr))
            && server["url"] == json!(format!("/user/{alice}/")),
        "the route to {alice}'s server goes to {target}; server: {server}"
    );
    // The shim listens on this side's address only, where the proxy reaches it.
    let shim_pid = server["state"]["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .with_context(|| format!("no pid in the server's state: {server}"))?;
    let listening = procs::listening_v4(shim_pid);
    ensure!(
        !listening.is_empty() && listening.iter().all(|a| *a.ip() == ns.host_addr),
        "{alice}'s server should listen on {} only: {listening:?}",
        ns.host_addr
    );
    drop(browser);
    lab_flow(&hub, Server::Shim, &alice, alice_account.as_ref(), &bob).await?;
    hub.done();
    drop(hub);
    drop(proxy);
    drop(ns);
    Ok(())
}

/// A running `jupyterhub-idle-culler` (from the `test` venv); killed on drop.
struct Culler {
    child: Child,
    log: tempfile::NamedTempFile,
    _dir: tempfile::TempDir,
}

impl Culler {
    fn start(hub: &Hub, token: &str, timeout_secs: u64) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = tempfile::Builder::new()
            .prefix("jhrs-e2e-culler-")
            .suffix(".log")
            .tempfile()?;
        let child = std::process::Command::new(bins::test_venv().join("bin").join("python"))
            .args(["-m", "jupyterhub_idle_culler"])
            .arg(format!("--url={}", hub.api_url()))
            .arg(format!("--timeout={timeout_secs}"))
            .args(["--cull-every=2", "--IdleCuller.log_level=DEBUG"])
            .env("JUPYTERHUB_API_TOKEN", token)
            .env_remove("JUPYTERHUB_API_URL")
            // It reads `idle_culler_config.py` from its working directory, if there is one.
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.reopen()?)
            .stderr(log.reopen()?)
            .spawn()
            .context("starting jupyterhub-idle-culler")?;
        Ok(Self {
            child,
            log,
            _dir: dir,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Culler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- idle culler log -----\n{}", self.log());
        }
    }
}

/// The culler's token, as a service with the scopes its README asks for.
const CULLER_TOKEN: &str = "culler-token-0123456789abcdef";

/// Seconds of inactivity after which the culler stops a server in this test.
const CULL_AFTER: u64 = 20;

/// The real idle culler stops a server nobody uses and leaves one in use alone: the shim of
/// the idle server reports no activity it did not see, the shim of the used one reports its
/// kernel's activity.
#[tokio::test]
async fn idle_culler_stops_the_unused_lab_server() -> TestResult {
    let mut people = People::new();
    let (idle, idle_account) = people.person("jhrs_i")?;
    let (busy, busy_account) = people.person("jhrs_u")?;
    let culler_service = format!(
        r#"
[[services]]
name = "culler"
api_token = "{CULLER_TOKEN}"

[[roles]]
name = "idle-culler"
scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
services = ["culler"]
"#
    );
    let mut hub = lab_hub(Server::Shim, HubOptions::default(), &culler_service).await?;
    hub.prepare_notebook_dir(&idle, idle_account.as_ref())?;
    hub.prepare_notebook_dir(&busy, busy_account.as_ref())?;

    // The idle user's server is started through the API and never used.
    hub.create_users(&[&idle]).await?;
    let (status, body) = hub
        .admin(Method::POST, &format!("/users/{idle}/server"), None)
        .await?;
    ensure!(
        status == StatusCode::CREATED || status == StatusCode::ACCEPTED,
        "starting {idle}'s server: {status} {body}"
    );
    // The busy user works in JupyterLab meanwhile.
    let mut browser = Browser::with_origin(&busy, &hub.public_url("/"))?;
    log_in_and_open_lab(&mut browser, &busy).await?;
    let (_, mut socket) = open_kernel(&mut browser, &busy).await?;
    let idle_server = hub.wait_server_ready(&idle, START_WITHIN).await?;
    let idle_ready_at = Utc::now();
    let idle_started = api_time(&idle_server["started"])?;

    let culler = Culler::start(&hub, CULLER_TOKEN, CULL_AFTER)?;
    let deadline = Deadline::new(
        format!("the idle culler to stop {idle}'s server"),
        Duration::from_secs(CULL_AFTER * 4 + 30),
    );
    let mut idle_last_seen = idle_started;
    loop {
        one_plus_one(&mut socket).await?;
        let model = hub.user_model(&idle).await?;
        let Some(server) = model["servers"].get("") else {
            break;
        };
        if let Ok(t) = api_time(&server["last_activity"]) {
            idle_last_seen = idle_last_seen.max(t);
        }
        if let Err(e) = deadline.tick().await {
            bail!("{e}; {idle}: {model}\nculler log:\n{}", culler.log());
        }
        // The busy user's pace: a cell every second or so.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let culled_at = Utc::now();
    ensure!(
        culled_at - idle_started >= chrono::Duration::seconds(i64::try_from(CULL_AFTER)?),
        "{idle}'s server was stopped {}s after it started, before the culler's timeout",
        (culled_at - idle_started).num_seconds()
    );
    // Nothing reported activity for the idle server after it came up.
    ensure!(
        idle_last_seen <= idle_ready_at + chrono::Duration::seconds(2),
        "{idle}'s unused server reported activity at {idle_last_seen}, after it was ready at \
         {idle_ready_at}"
    );
    let log = culler.log();
    ensure!(
        log.contains(&format!("Culling server {idle} ")),
        "the culler does not say it culled {idle}:\n{log}"
    );
    ensure!(
        !log.contains(&format!("Culling server {busy} ")),
        "the culler culled {busy}, who was busy:\n{log}"
    );
    if let Some(account) = &idle_account {
        wait_no_processes(account).await?;
    }

    // The busy user's server is still there, and its activity is recent.
    let busy_model = hub.user_model(&busy).await?;
    let busy_server = &busy_model["servers"][""];
    let last = api_time(&busy_server["last_activity"])?;
    ensure!(
        busy_server["ready"] == json!(true)
            && Utc::now() - last
                < chrono::Duration::seconds(i64::try_from(ACTIVITY_INTERVAL * 3 + 2)?),
        "{busy}'s server should be running with recent activity: {busy_model}"
    );
    one_plus_one(&mut socket).await?;
    socket.close().await;
    drop(culler);
    stop_server(&hub, &busy, busy_account.as_ref()).await?;
    hub.done();
    Ok(())
}
