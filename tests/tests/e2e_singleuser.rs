//! End to end with the real binaries and the real single-user server: the `hub` binary starts
//! its `chp-proxy` and, through the local spawner, the real `jupyterhub-singleuser`
//! (JupyterHub 6.1.1 with jupyter-server, from the venv `scripts/python-test-env.sh
//! singleuser` makes; it is made on first use). Everything goes through the proxy's public
//! port, as a browser or an API client would.
//!
//! - A browser logs in through the form, is sent through `/hub/spawn` and the spawn-pending
//!   page to its server, which sends it through the hub's OAuth provider and back; then the
//!   server's API answers it. Another user is refused at the hub's authorize step. The server
//!   stops through the API and starts again; the hub restarted with the server running finds
//!   it again. The same login with PAM as a real system user.
//! - The same server life (start, access rules, hub restart, stop) through the REST API with
//!   tokens, and with a PAM password token as a real system user.
//!
//! As root (CI), every user is a throwaway system account and its server runs under its uid;
//! the PAM tests need root. Run `cargo build -p hub -p chp-proxy` first (or set `HUB_BIN`,
//! `CHP_PROXY_BIN`).

use std::time::Duration;

use anyhow::{Context as _, ensure};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use workspace_tests::accounts::{Accounts, SystemUser, UNIX_POLICY, is_root, random_suffix};
use workspace_tests::browser::{Browser, Response, describe, form_field, path_and_query};
use workspace_tests::hubproc::{Deadline, Hub, hello_text};
use workspace_tests::{encode_component, procs, query_param};

type TestResult = anyhow::Result<()>;

/// How long a server may take from the start request to ready (a debug hub on a busy CI
/// machine; the server itself takes a few seconds).
const START_WITHIN: Duration = Duration::from_secs(90);

/// How long a stop may take (the spawner's SIGINT, SIGTERM, SIGKILL steps).
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Users for the dummy-authenticator flows: as root, fresh system accounts (each server runs
/// under its user's uid); otherwise plain names, whose servers run as this account.
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

// ---------------------------------------------------------------------------------------------
// Helpers: the browser side.
// ---------------------------------------------------------------------------------------------

/// Opens the login page (with `next`), takes `_xsrf` from the form, and posts the form.
/// Returns the response to the POST (not followed).
async fn submit_login(
    browser: &mut Browser,
    user: &str,
    password: &str,
    next: Option<&str>,
) -> anyhow::Result<Response> {
    let target = match next {
        Some(next) => format!("/hub/login?next={}", encode_component(next)),
        None => "/hub/login".to_owned(),
    };
    let page = browser.get(&target).await?;
    ensure!(
        page.status == StatusCode::OK,
        "{page}: the login page should be 200\n{:.500}",
        page.body
    );
    let xsrf = form_field(&page.body, "_xsrf")
        .with_context(|| format!("{page}: the login form has no _xsrf field"))?;
    ensure!(
        browser.cookie("_xsrf", "/hub/").is_some(),
        "{page}: no _xsrf cookie for /hub/ (cookies: {:?})",
        browser.cookies()
    );
    browser
        .post_form(
            &target,
            &[
                ("_xsrf", xsrf.as_str()),
                ("username", user),
                ("password", password),
            ],
        )
        .await
}

/// Checks the response to a successful login POST: a redirect to `next`, with the hub's login
/// and session cookies.
/// (The flows that follow the whole way check its exact status, 302, with their hops.)
fn check_logged_in(browser: &Browser, post: &Response, next: &str) -> TestResult {
    ensure!(
        post.status.is_redirection(),
        "{post}: a successful login redirects to next (hub-protocol §9)\n{:.500}",
        post.body
    );
    let location = post.location().context("login redirect without Location")?;
    ensure!(
        path_and_query(&location) == next,
        "{post}: the login should send the browser to {next}"
    );
    let login = browser
        .cookie("jupyterhub-hub-login", "/hub/")
        .with_context(|| {
            format!(
                "{post}: no jupyterhub-hub-login cookie for /hub/ (Set-Cookie: {:?})",
                post.set_cookies()
            )
        })?;
    ensure!(
        login.http_only,
        "the login cookie must be HttpOnly: {}",
        login.raw
    );
    ensure!(
        browser.cookie("jupyterhub-session-id", "/").is_some(),
        "{post}: no jupyterhub-session-id cookie for / (Set-Cookie: {:?})",
        post.set_cookies()
    );
    Ok(())
}

/// Follows `first` like a browser, waiting on the spawn-pending page (reloading it, as its
/// script would navigate once the server is up) until it sends the browser on. Returns every
/// hop, with the repeated progress pages left out.
async fn follow_through_spawn(
    browser: &mut Browser,
    user: &str,
    first: Response,
) -> anyhow::Result<Vec<Response>> {
    let pending = format!("/hub/spawn-pending/{user}");
    let mut hops = browser.follow(first, 20).await?;
    let deadline = Deadline::new(
        format!("{user}'s spawn-pending page to move on"),
        START_WITHIN,
    );
    loop {
        let last = hops.last().context("no hops")?;
        if !(last.status == StatusCode::OK && last.url.path() == pending) {
            return Ok(hops);
        }
        if let Err(e) = deadline.tick().await {
            anyhow::bail!("{e}; hops so far:\n{}", describe(&hops));
        }
        let target = last.target();
        let again = browser.get(&target).await?;
        let more = browser.follow(again, 20).await?;
        // Keep one progress page, drop the reloads that only show it again.
        if more.len() == 1 && more[0].status == StatusCode::OK && more[0].url.path() == pending {
            continue;
        }
        hops.extend(more);
    }
}

/// One expected hop: method, path, and the status (with the next path for redirects).
#[derive(Debug)]
struct Step {
    method: Method,
    path: String,
    status: StatusCode,
}

impl Step {
    fn new(method: Method, path: impl Into<String>, status: StatusCode) -> Self {
        Self {
            method,
            path: path.into(),
            status,
        }
    }
}

/// Checks that `hops` are exactly `steps` (a 200 spawn-pending progress page may come
/// between the redirect to spawn-pending and the one out of it).
fn check_steps(who: &str, hops: &[Response], steps: &[Step]) -> TestResult {
    let pending_page = |h: &Response| {
        h.status == StatusCode::OK && h.url.path().starts_with("/hub/spawn-pending/")
    };
    let relevant: Vec<&Response> = hops.iter().filter(|h| !pending_page(h)).collect();
    let matches = relevant.len() == steps.len()
        && relevant
            .iter()
            .zip(steps)
            .all(|(h, s)| h.method == s.method && h.url.path() == s.path && h.status == s.status);
    ensure!(
        matches,
        "{who}'s browser took these hops:\n{}\nexpected:\n{}",
        describe(hops),
        steps
            .iter()
            .map(|s| format!("  {} {} -> {}", s.method, s.path, s.status))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

/// The hops from `/hub/spawn` to the server's page `/files/hello.txt` (the spawner's
/// `default_url`), through the server's OAuth login at the hub.
fn spawn_and_oauth_steps(user: &str) -> Vec<Step> {
    use StatusCode as S;
    let server = format!("/user/{user}/");
    vec![
        Step::new(Method::GET, "/hub/spawn", S::FOUND),
        Step::new(Method::GET, format!("/hub/spawn-pending/{user}"), S::FOUND),
        Step::new(Method::GET, server.clone(), S::FOUND),
        Step::new(Method::GET, format!("{server}files/hello.txt"), S::FOUND),
        Step::new(Method::GET, "/hub/api/oauth2/authorize", S::FOUND),
        Step::new(Method::GET, format!("{server}oauth_callback"), S::FOUND),
        Step::new(Method::GET, format!("{server}files/hello.txt"), S::OK),
    ]
}

/// Checks the OAuth part of a flow: the server's authorize request (its client, callback,
/// PKCE, state), the hub's answer (a code, the same state, back to the callback), the
/// server's cookie, and the page at the end.
fn check_oauth_hops(browser: &Browser, user: &str, hops: &[Response]) -> TestResult {
    let authorize = hops
        .iter()
        .find(|h| h.url.path() == "/hub/api/oauth2/authorize")
        .context("no authorize hop")?;
    let query = authorize.url.query().unwrap_or_default();
    let client_id = format!("jupyterhub-user-{user}");
    let callback = format!("/user/{user}/oauth_callback");
    ensure!(
        query_param(query, "client_id").as_deref() == Some(client_id.as_str())
            && query_param(query, "redirect_uri").as_deref() == Some(callback.as_str())
            && query_param(query, "response_type").as_deref() == Some("code")
            && query_param(query, "code_challenge_method").as_deref() == Some("S256"),
        "{authorize}: not the authorize request of {user}'s server"
    );
    let state = query_param(query, "state").context("authorize without state")?;
    let back = authorize.location().context("authorize without Location")?;
    let back_query = back.query().unwrap_or_default();
    ensure!(
        back.path() == callback
            && query_param(back_query, "code").is_some_and(|c| !c.is_empty())
            && query_param(back_query, "state").as_deref() == Some(state.as_str()),
        "{authorize}: the hub must redirect to {callback}?code=...&state={state} (hub-protocol \
         §4.2: no confirmation page for the user's own server)"
    );
    let server_cookie = browser
        .cookie(&client_id, &format!("/user/{user}/"))
        .with_context(|| {
            format!(
                "after the OAuth callback the browser has no {client_id} cookie for /user/{user}/: \
                 {:?}",
                browser.cookies()
            )
        })?;
    ensure!(server_cookie.http_only, "{}", server_cookie.raw);
    let last = hops.last().context("no hops")?;
    ensure!(
        last.body == hello_text(user),
        "{last}: expected {user}'s hello.txt, got {:.300}",
        last.body
    );
    Ok(())
}

/// `GET /user/<user>/api/status` in `browser`; checks a 200 with the server's status JSON.
async fn check_api_status(browser: &mut Browser, user: &str) -> TestResult {
    let status = browser.get(&format!("/user/{user}/api/status")).await?;
    ensure!(
        status.status == StatusCode::OK,
        "{status}: {user}'s own browser must reach its server's API\n{:.300}",
        status.body
    );
    let body = status.json()?;
    ensure!(
        body.get("started").is_some(),
        "{status}: not a server status: {body}"
    );
    let me = browser.get(&format!("/user/{user}/api/me")).await?;
    let me_body = me.json()?;
    ensure!(
        me.status == StatusCode::OK && me_body["identity"]["username"] == json!(user),
        "{me}: the server should know the browser as {user}: {me_body}"
    );
    Ok(())
}

/// `other` logs in (staying at the hub) and opens `owner`'s server: the server sends the
/// browser to the hub's authorize URL, and the hub refuses with 403 (hub-protocol §3.4); no
/// cookie for the server, and its API answers 403.
async fn check_other_user_refused(hub: &Hub, other: &str, owner: &str) -> TestResult {
    let mut browser = Browser::new(other, hub.public_port);
    let post = submit_login(&mut browser, other, "any password", Some("/hub/home")).await?;
    check_logged_in(&browser, &post, "/hub/home")?;
    let hops = browser
        .visit(&format!("/user/{owner}/files/hello.txt"))
        .await?;
    let refused = hops.last().context("no hops")?;
    ensure!(
        hops.len() == 2
            && hops[0]
                .location()
                .is_some_and(|l| l.path() == "/hub/api/oauth2/authorize")
            && refused.url.path() == "/hub/api/oauth2/authorize"
            && refused.status == StatusCode::FORBIDDEN,
        "{other} opening {owner}'s server should be refused with 403 at the hub's authorize \
         step (hub-protocol §3.4):\n{}\n{:.500}",
        describe(&hops),
        refused.body
    );
    ensure!(
        browser
            .cookie(
                &format!("jupyterhub-user-{owner}"),
                &format!("/user/{owner}/")
            )
            .is_none(),
        "{other} got a cookie for {owner}'s server: {:?}",
        browser.cookies()
    );
    let api = browser.get(&format!("/user/{owner}/api/status")).await?;
    ensure!(
        api.status == StatusCode::FORBIDDEN,
        "{api}: {other} must not reach {owner}'s server API"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers: the server process.
// ---------------------------------------------------------------------------------------------

/// What identifies a running server: its spawner state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ServerProcess {
    pid: i32,
    start_time: u64,
    port: u16,
}

impl ServerProcess {
    fn from_model(server: &Value) -> anyhow::Result<Self> {
        let state = &server["state"];
        let number = |key: &str| {
            state[key]
                .as_u64()
                .with_context(|| format!("server state without {key}: {server}"))
        };
        Ok(Self {
            pid: i32::try_from(number("pid")?)?,
            start_time: number("start_time")?,
            port: u16::try_from(number("port")?)?,
        })
    }

    fn running(&self) -> bool {
        procs::running_as(self.pid, self.start_time)
    }

    async fn wait_gone(&self, hub: &Hub) -> TestResult {
        let deadline = Deadline::new(format!("server process {} to exit", self.pid), STOP_WITHIN);
        while self.running() {
            if let Err(e) = deadline.tick().await {
                anyhow::bail!("{e}\n{}", hub.log_tail(40));
            }
        }
        Ok(())
    }
}

/// Checks the running server process of `user`: the real `jupyterhub-singleuser`, listening
/// on its port, under the user's account when there is one (real, effective, saved and
/// filesystem ids), in its notebook directory, with the environment of hub-protocol §6.1.
fn check_server_process(
    hub: &Hub,
    user: &str,
    account: Option<&SystemUser>,
    server: &ServerProcess,
) -> TestResult {
    let pid = server.pid;
    ensure!(
        server.running(),
        "{user}'s server process {pid} is not running"
    );
    let cmdline = procs::cmdline(pid).unwrap_or_default();
    ensure!(
        cmdline.contains("jupyterhub-singleuser"),
        "process {pid} is not jupyterhub-singleuser: {cmdline}"
    );
    ensure!(
        procs::listens_on(pid, server.port) != Some(false),
        "process {pid} does not listen on port {}",
        server.port
    );
    let env = |name: &str| procs::env_var(pid, name).unwrap_or_default();
    let prefix = format!("/user/{user}/");
    let expected = [
        ("JUPYTERHUB_USER", user.to_owned()),
        ("JUPYTERHUB_SERVER_NAME", String::new()),
        ("JUPYTERHUB_CLIENT_ID", format!("jupyterhub-user-{user}")),
        ("JUPYTERHUB_SERVICE_PREFIX", prefix.clone()),
        ("JUPYTERHUB_BASE_URL", "/".to_owned()),
        (
            "JUPYTERHUB_OAUTH_CALLBACK_URL",
            format!("{prefix}oauth_callback"),
        ),
        (
            "JUPYTERHUB_API_URL",
            format!("http://127.0.0.1:{}/hub/api", hub.hub_port),
        ),
        (
            "JUPYTERHUB_SERVICE_URL",
            format!("http://127.0.0.1:{}{prefix}", server.port),
        ),
        ("USER", user.to_owned()),
    ];
    for (name, value) in expected {
        ensure!(
            env(name) == value,
            "{user}'s server has {name}={:?}, expected {value:?}",
            env(name)
        );
    }
    ensure!(
        env("JUPYTERHUB_API_TOKEN").len() >= 32
            && env("JPY_API_TOKEN") == env("JUPYTERHUB_API_TOKEN"),
        "{user}'s server has no usable JUPYTERHUB_API_TOKEN / JPY_API_TOKEN"
    );
    let cwd = procs::cwd(pid).context("no cwd")?;
    ensure!(
        cwd.ends_with(user),
        "{user}'s server runs in {}, expected its notebook directory",
        cwd.display()
    );
    if let Some(account) = account {
        let uids = procs::ids(pid, "Uid:").context("no Uid line")?;
        let gids = procs::ids(pid, "Gid:").context("no Gid line")?;
        ensure!(
            uids.iter().all(|&u| u == account.uid) && gids.iter().all(|&g| g == account.gid),
            "{user}'s server runs with uids {uids:?} and gids {gids:?}, expected {} and {}",
            account.uid,
            account.gid
        );
        let groups = procs::groups(pid).unwrap_or_default();
        ensure!(
            !groups.contains(&0),
            "{user}'s server kept root's group among {groups:?}"
        );
        ensure!(
            env("HOME") == account.home.display().to_string(),
            "{user}'s server has HOME={:?}, expected {}",
            env("HOME"),
            account.home.display()
        );
    }
    Ok(())
}

/// Stops `user`'s server with the admin token; waits until the hub, the proxy and the
/// process agree that it is gone.
async fn stop_through_api(hub: &Hub, user: &str, server: &ServerProcess) -> TestResult {
    let (status, body) = hub
        .admin(Method::DELETE, &format!("/users/{user}/server"), None)
        .await?;
    ensure!(
        status == StatusCode::NO_CONTENT || status == StatusCode::ACCEPTED,
        "stopping {user}'s server: {status} {body}"
    );
    let deadline = Deadline::new(format!("{user}'s server to be stopped"), STOP_WITHIN);
    while hub.default_server(user).await?.is_some() {
        deadline.tick().await?;
    }
    hub.wait_route(&format!("/user/{user}"), false, STOP_WITHIN)
        .await?;
    server.wait_gone(hub).await
}

/// A request to `/user/<user>/<path>` through the proxy, with a token or nothing.
async fn token_get(
    hub: &Hub,
    user: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(StatusCode, String)> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut request = client.get(hub.public_url(&format!("/user/{user}/{path}")));
    if let Some(token) = token {
        request = request.header("Authorization", format!("token {token}"));
    }
    let reply = request.send().await?;
    let status = reply.status();
    Ok((status, reply.text().await?))
}

/// Starts `user`'s server with `token` through the API and waits until it is ready.
async fn start_through_api(hub: &Hub, user: &str, token: &str) -> anyhow::Result<ServerProcess> {
    let (status, body) = hub
        .api(
            Method::POST,
            &format!("/users/{user}/server"),
            Some(token),
            None,
        )
        .await?;
    ensure!(
        status == StatusCode::CREATED || status == StatusCode::ACCEPTED,
        "starting {user}'s server: {status} {body}\n{}",
        hub.log_tail(60)
    );
    let server = hub.wait_server_ready(user, START_WITHIN).await?;
    ServerProcess::from_model(&server)
}

/// Checks that `token` reaches `user`'s server through the proxy: status and identity.
async fn check_token_access(hub: &Hub, user: &str, token: &str) -> TestResult {
    let (status, body) = token_get(hub, user, "api/status", Some(token)).await?;
    ensure!(
        status == StatusCode::OK,
        "GET /user/{user}/api/status with {user}'s token: {status} {body:.300}\n{}",
        hub.log_tail(40)
    );
    let body: Value = serde_json::from_str(&body)?;
    ensure!(body.get("started").is_some(), "not a server status: {body}");
    let (status, me) = token_get(hub, user, "api/me", Some(token)).await?;
    let me: Value = serde_json::from_str(&me).unwrap_or(Value::String(me));
    ensure!(
        status == StatusCode::OK && me["identity"]["username"] == json!(user),
        "GET /user/{user}/api/me with {user}'s token: {status} {me}"
    );
    let (status, hello) = token_get(hub, user, "files/hello.txt", Some(token)).await?;
    ensure!(
        status == StatusCode::OK && hello == hello_text(user),
        "GET /user/{user}/files/hello.txt with {user}'s token: {status} {hello:.300}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

/// Login form, spawn, OAuth and the server's API in a browser; another user is refused; stop
/// and start again; the hub restarted with the server running finds it again.
#[tokio::test]
async fn browser_login_spawn_oauth_stop_and_hub_restart() -> TestResult {
    let mut people = People::new();
    let (alice, alice_account) = people.person("jhrs_a")?;
    let (bob, _bob_account) = people.person("jhrs_b")?;
    // Declared after the accounts: dropped first, so its servers are gone before userdel.
    let mut hub = Hub::start("[hub]\ncleanup_servers = false\n").await?;
    hub.prepare_notebook_dir(&alice, alice_account.as_ref())?;

    // Alice logs in; the hub sends her on to /hub/spawn, and from there to her new server.
    let mut browser = Browser::new(&alice, hub.public_port);
    let post = submit_login(&mut browser, &alice, "any password", None).await?;
    check_logged_in(&browser, &post, "/hub/spawn")?;
    let hops = follow_through_spawn(&mut browser, &alice, post).await?;
    let mut steps = vec![Step::new(Method::POST, "/hub/login", StatusCode::FOUND)];
    steps.extend(spawn_and_oauth_steps(&alice));
    check_steps(&alice, &hops, &steps)?;
    check_oauth_hops(&browser, &alice, &hops)?;
    check_api_status(&mut browser, &alice).await?;

    let model = hub.default_server(&alice).await?.context("no server")?;
    ensure!(model["ready"] == json!(true), "{model}");
    let server = ServerProcess::from_model(&model)?;
    check_server_process(&hub, &alice, alice_account.as_ref(), &server)?;
    let target = hub
        .wait_route(&format!("/user/{alice}"), true, Duration::from_secs(5))
        .await?;
    ensure!(
        target.as_deref() == Some(format!("http://127.0.0.1:{}", server.port).as_str()),
        "the route to {alice}'s server goes to {target:?}, not to its port {}",
        server.port
    );

    // Bob, logged in to the hub, is refused at the hub's authorize step for Alice's server.
    check_other_user_refused(&hub, &bob, &alice).await?;
    // Alice's server does not know Bob's browser, and still knows hers.
    check_api_status(&mut browser, &alice).await?;

    // Stop through the API: the route and the process go; her server URL now reaches the hub,
    // which says the server is not running.
    stop_through_api(&hub, &alice, &server).await?;
    let hops = browser.visit(&format!("/user/{alice}/api/status")).await?;
    let last = hops.last().context("no hops")?;
    ensure!(
        hops.len() == 2
            && hops[0].status == StatusCode::FOUND
            && hops[0]
                .location()
                .is_some_and(|l| l.path() == format!("/hub/user/{alice}/api/status"))
            && last.status == StatusCode::FAILED_DEPENDENCY,
        "after the stop, /user/{alice}/api/status should reach the hub and get 424 (hub-protocol \
         §9):\n{}",
        describe(&hops)
    );

    // Start again from the browser: a new process, and a new OAuth login (the stop deleted
    // the server's OAuth client and its tokens).
    let first = browser.get("/hub/spawn").await?;
    let hops = follow_through_spawn(&mut browser, &alice, first).await?;
    check_steps(&alice, &hops, &spawn_and_oauth_steps(&alice)).context(
        "starting again: the OAuth login must happen again, because a stop deletes the \
         server's OAuth client and tokens (hub-protocol §4.1, §6.3)",
    )?;
    check_oauth_hops(&browser, &alice, &hops)?;
    check_api_status(&mut browser, &alice).await?;
    let model = hub.default_server(&alice).await?.context("no server")?;
    let again = ServerProcess::from_model(&model)?;
    ensure!(again.pid != server.pid, "the server was not started anew");

    // The hub stops (keeping servers, cleanup_servers = false) and starts again: it finds
    // the server, routes to it again, and Alice's browser still reaches it.
    let status = hub.terminate(Duration::from_secs(60)).await?;
    ensure!(
        status.success(),
        "hub exit after SIGTERM: {status}\n{}",
        hub.log_tail(40)
    );
    ensure!(again.running(), "the server died with the hub");
    hub.start_again().await?;
    let model = hub
        .wait_server_ready(&alice, Duration::from_secs(30))
        .await?;
    ensure!(
        ServerProcess::from_model(&model)? == again,
        "after the restart the hub reports another process: {model}"
    );
    hub.wait_route(&format!("/user/{alice}"), true, Duration::from_secs(30))
        .await?;
    check_api_status(&mut browser, &alice).await?;
    let page = browser
        .visit(&format!("/user/{alice}/files/hello.txt"))
        .await?;
    ensure!(
        page.len() == 1 && page[0].status == StatusCode::OK,
        "after the hub restart, {alice}'s page:\n{}",
        describe(&page)
    );

    // The restarted hub stops a server an earlier hub process started.
    stop_through_api(&hub, &alice, &again).await?;
    hub.done();
    Ok(())
}

/// The server's OAuth login at the hub, in a browser, for a server started through the API:
/// the owner logs in with `next` pointing at a page of the server, and is sent through the
/// hub's authorize step back to it; another user is refused there.
#[tokio::test]
async fn browser_oauth_login_at_a_running_server() -> TestResult {
    let mut people = People::new();
    let (alice, alice_account) = people.person("jhrs_a")?;
    let (bob, _bob_account) = people.person("jhrs_b")?;
    let mut hub = Hub::start("").await?;
    hub.prepare_notebook_dir(&alice, alice_account.as_ref())?;
    hub.create_users(&[&alice, &bob]).await?;
    let alice_token = hub.token_for(&alice).await?;
    let server = start_through_api(&hub, &alice, &alice_token).await?;

    let page = format!("/user/{alice}/files/hello.txt");
    let mut browser = Browser::new(&alice, hub.public_port);
    let post = submit_login(&mut browser, &alice, "any password", Some(&page)).await?;
    check_logged_in(&browser, &post, &page)?;
    let hops = browser.follow(post, 20).await?;
    let callback = format!("/user/{alice}/oauth_callback");
    let steps = [
        Step::new(Method::GET, page.clone(), StatusCode::FOUND),
        Step::new(Method::GET, "/hub/api/oauth2/authorize", StatusCode::FOUND),
        Step::new(Method::GET, callback, StatusCode::FOUND),
        Step::new(Method::GET, page.clone(), StatusCode::OK),
    ];
    check_steps(&alice, &hops[1..], &steps)?;
    check_oauth_hops(&browser, &alice, &hops)?;
    check_api_status(&mut browser, &alice).await?;

    check_other_user_refused(&hub, &bob, &alice).await?;
    // Still Alice's: her browser keeps its access.
    check_api_status(&mut browser, &alice).await?;
    stop_through_api(&hub, &alice, &server).await?;
    hub.done();
    Ok(())
}

/// The same server life through the REST API with tokens: start with the user's token, the
/// server's access rules, the hub restarted with the server running, stop and start again.
#[tokio::test]
async fn api_tokens_start_access_hub_restart_and_stop() -> TestResult {
    let mut people = People::new();
    let (alice, alice_account) = people.person("jhrs_a")?;
    let (bob, _bob_account) = people.person("jhrs_b")?;
    let mut hub = Hub::start("[hub]\ncleanup_servers = false\n").await?;
    hub.prepare_notebook_dir(&alice, alice_account.as_ref())?;
    hub.create_users(&[&alice, &bob]).await?;
    let alice_token = hub.token_for(&alice).await?;
    let bob_token = hub.token_for(&bob).await?;

    let server = start_through_api(&hub, &alice, &alice_token).await?;
    check_server_process(&hub, &alice, alice_account.as_ref(), &server)?;
    let target = hub
        .wait_route(&format!("/user/{alice}"), true, Duration::from_secs(5))
        .await?;
    ensure!(
        target.as_deref() == Some(format!("http://127.0.0.1:{}", server.port).as_str()),
        "the route to {alice}'s server goes to {target:?}, not to its port {}",
        server.port
    );
    check_token_access(&hub, &alice, &alice_token).await?;

    // The server asks the hub who a token belongs to and refuses everyone but Alice.
    for (who, token) in [("bob", Some(bob_token.as_str())), ("nobody", None)] {
        let (status, body) = token_get(&hub, &alice, "api/status", token).await?;
        ensure!(
            status == StatusCode::FORBIDDEN,
            "{who} at {alice}'s server API: {status} {body:.300}"
        );
    }

    // The hub stops with the server running and starts again: it finds the same process,
    // routes to it again, and the server keeps working with the hub's tokens.
    let status = hub.terminate(Duration::from_secs(60)).await?;
    ensure!(
        status.success(),
        "hub exit after SIGTERM: {status}\n{}",
        hub.log_tail(40)
    );
    ensure!(server.running(), "the server died with the hub");
    hub.start_again().await?;
    let model = hub
        .wait_server_ready(&alice, Duration::from_secs(30))
        .await?;
    ensure!(
        ServerProcess::from_model(&model)? == server,
        "after the restart the hub reports another process: {model}"
    );
    hub.wait_route(&format!("/user/{alice}"), true, Duration::from_secs(30))
        .await?;
    check_token_access(&hub, &alice, &alice_token).await?;
    let (status, _) = token_get(&hub, &alice, "api/status", Some(&bob_token)).await?;
    ensure!(
        status == StatusCode::FORBIDDEN,
        "bob after the restart: {status}"
    );

    // The restarted hub stops it; the URL no longer reaches a server.
    stop_through_api(&hub, &alice, &server).await?;
    let (status, body) = token_get(&hub, &alice, "api/status", Some(&alice_token)).await?;
    ensure!(
        status != StatusCode::OK,
        "after the stop, /user/{alice}/api/status still answers 200: {body:.300}"
    );

    // And it starts again, as a new process.
    let again = start_through_api(&hub, &alice, &alice_token).await?;
    ensure!(again.pid != server.pid, "the server was not started anew");
    check_server_process(&hub, &alice, alice_account.as_ref(), &again)?;
    check_token_access(&hub, &alice, &alice_token).await?;
    stop_through_api(&hub, &alice, &again).await?;
    hub.done();
    Ok(())
}

/// The configuration of the PAM tests: PAM with a policy file of its own, letting in only
/// `user`.
fn pam_config(service: &str, user: &str) -> String {
    format!(
        "[authenticator]\nclass = \"pam\"\nallowed_users = [\"{user}\"]\n\
         [authenticator.pam]\nservice = \"{service}\"\n"
    )
}

/// PAM login through the form as a real system user: a wrong password gets the form again
/// with 403; the right one leads through spawn and OAuth to a server running under the
/// user's uid.
#[tokio::test]
async fn pam_browser_login_runs_the_server_as_the_user() -> TestResult {
    let mut accounts = Accounts::new();
    let password = format!("Pw-{}-{}", random_suffix(), random_suffix());
    let carol = accounts.user("jhrs_p", Some(&password))?;
    let service = accounts.pam_service(UNIX_POLICY)?;
    let mut hub = Hub::start(&pam_config(&service, &carol.name)).await?;
    hub.prepare_notebook_dir(&carol.name, Some(&carol))?;
    let name = carol.name.as_str();

    let mut browser = Browser::new(name, hub.public_port);
    let refused = submit_login(&mut browser, name, "not the password", None).await?;
    ensure!(
        refused.status == StatusCode::FORBIDDEN
            && refused.body.contains("Invalid username or password")
            && browser.cookie("jupyterhub-hub-login", "/hub/").is_none(),
        "{refused}: a wrong password must get the form again with 403 (hub-protocol §9)\n{:.500}",
        refused.body
    );
    let post = submit_login(&mut browser, name, &password, None).await?;
    check_logged_in(&browser, &post, "/hub/spawn")?;
    let hops = follow_through_spawn(&mut browser, name, post).await?;
    let mut steps = vec![Step::new(Method::POST, "/hub/login", StatusCode::FOUND)];
    steps.extend(spawn_and_oauth_steps(name));
    check_steps(name, &hops, &steps)?;
    check_oauth_hops(&browser, name, &hops)?;
    check_api_status(&mut browser, name).await?;

    let model = hub.default_server(name).await?.context("no server")?;
    let server = ServerProcess::from_model(&model)?;
    check_server_process(&hub, name, Some(&carol), &server)?;
    stop_through_api(&hub, name, &server).await?;
    hub.done();
    Ok(())
}

/// A PAM password gets a real system user a token (`POST /users/<name>/tokens` with the
/// password in the body); with it the user starts a server that runs under the user's uid
/// and answers the user's token.
#[tokio::test]
async fn pam_password_token_runs_the_server_as_the_user() -> TestResult {
    let mut accounts = Accounts::new();
    let password = format!("Pw-{}-{}", random_suffix(), random_suffix());
    let carol = accounts.user("jhrs_p", Some(&password))?;
    let service = accounts.pam_service(UNIX_POLICY)?;
    let mut hub = Hub::start(&pam_config(&service, &carol.name)).await?;
    hub.prepare_notebook_dir(&carol.name, Some(&carol))?;
    // `allowed_users` are created at startup.
    let name = carol.name.as_str();

    let tokens = format!("/users/{name}/tokens");
    let (status, body) = hub
        .api(
            Method::POST,
            &tokens,
            None,
            Some(&json!({"auth": {"username": name, "password": "not the password"}})),
        )
        .await?;
    ensure!(
        status == StatusCode::FORBIDDEN,
        "a wrong PAM password must not get a token: {status} {body}"
    );
    let (status, body) = hub
        .api(
            Method::POST,
            &tokens,
            None,
            Some(&json!({"auth": {"username": name, "password": password}})),
        )
        .await?;
    ensure!(
        status == StatusCode::CREATED,
        "the PAM password should get a token: {status} {body}\n{}",
        hub.log_tail(40)
    );
    let token = body["token"].as_str().context("no token")?.to_owned();

    let server = start_through_api(&hub, name, &token).await?;
    check_server_process(&hub, name, Some(&carol), &server)?;
    check_token_access(&hub, name, &token).await?;
    // The server wrote its runtime files as the user, in the user's home.
    let runtime = carol.home.join(".local/share/jupyter/runtime");
    let owner = std::fs::metadata(&runtime)
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .with_context(|| format!("{} is missing", runtime.display()))?;
    ensure!(
        owner == carol.uid,
        "{} belongs to uid {owner}",
        runtime.display()
    );
    stop_through_api(&hub, name, &server).await?;
    hub.done();
    Ok(())
}
