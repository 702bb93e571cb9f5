//! The real `hub` binary as a child process: a configuration in a private working directory,
//! free loopback ports for the public proxy, the hub and the proxy's API, the managed
//! `chp-proxy`, single-user servers from the real `jupyterhub-singleuser`; start, wait until
//! it serves, stop with SIGTERM, restart on the same files.
//!
//! Everything the hub starts carries a marker in its environment (`JHRS_E2E_RUN`), so that
//! dropping a [`Hub`] stops all of it, single-user servers included, even when the hub could
//! not clean up itself (it is sent SIGTERM, then its process group is killed, then every
//! process with the marker).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use crate::accounts::{SystemUser, random_suffix};
use crate::procs;

/// The environment variable that marks every process of one [`Hub`].
pub const MARKER_VAR: &str = "JHRS_E2E_RUN";

/// Polls until a deadline: `tick` sleeps a little, or fails once the time is up.
#[derive(Debug)]
pub struct Deadline {
    what: String,
    start: Instant,
    end: Instant,
}

impl Deadline {
    /// A deadline `within` from now, for `what` (named in the timeout error).
    pub fn new(what: impl Into<String>, within: Duration) -> Self {
        let start = Instant::now();
        Self {
            what: what.into(),
            start,
            end: start + within,
        }
    }

    /// Waits a moment before the next check.
    ///
    /// # Errors
    /// When the deadline has passed.
    pub async fn tick(&self) -> anyhow::Result<()> {
        if Instant::now() >= self.end {
            bail!(
                "timed out after {:?} waiting for {}",
                self.end - self.start,
                self.what
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    }
}

/// A running (or stopped) hub process with its files.
#[derive(Debug)]
pub struct Hub {
    /// Working directory: configuration, database, cookie secret, proxy pid file, log.
    run_dir: tempfile::TempDir,
    /// Parent of the users' notebook directories (`<dir>/<user>`), searchable by everyone.
    notebooks: tempfile::TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    starts: u32,
    /// Set by [`Hub::done`]; until then, dropping the hub prints its log (the test failed).
    done: bool,
    /// The public port (the proxy).
    pub public_port: u16,
    /// The hub's own port.
    pub hub_port: u16,
    /// The proxy's REST API port.
    pub proxy_api_port: u16,
    /// An API token of the admin user `admin`.
    pub admin_token: String,
    proxy_token: String,
    marker: String,
    client: reqwest::Client,
    /// The address of the public port (the proxy's), `127.0.0.1` unless the options said.
    public_ip: IpAddr,
    /// The address the hub listens on.
    hub_ip: IpAddr,
    /// The address of the proxy's REST API.
    proxy_api_ip: IpAddr,
}

/// A proxy the hub does not start (`[proxy] should_start = false`): the test runs it, at
/// these addresses, with this token.
#[derive(Debug, Clone)]
pub struct ExternalProxy {
    /// Where browsers reach it.
    pub public: SocketAddr,
    /// Its REST API.
    pub api: SocketAddr,
    /// Its `CONFIGPROXY_AUTH_TOKEN`.
    pub token: String,
}

/// How [`Hub::start_with`] lays the deployment out, beyond the test's own TOML.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// The venv whose `bin/jupyterhub-singleuser` the base configuration runs (default:
    /// [`crate::bins::singleuser_venv`]).
    pub venv: Option<PathBuf>,
    /// The address the hub listens on, and that servers listen on (`[spawner] ip`): default
    /// `127.0.0.1`. Another address is written as `hub_bind_url` (the hub derives the URL
    /// the proxy and the servers reach it at from it).
    pub ip: Option<IpAddr>,
    /// A proxy the test runs itself instead of the managed `chp-proxy`.
    pub external_proxy: Option<ExternalProxy>,
    /// Leave `[spawner] cmd` out of the base configuration, so that the hub's default server
    /// command applies (unless the test's TOML sets one).
    pub default_server_cmd: bool,
}

/// Sets `[section] key = value` in `config`.
fn set(config: &mut toml::Table, section: &str, key: &str, value: impl Into<toml::Value>) {
    let entry = config
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(table) = entry {
        table.insert(key.to_owned(), value.into());
    }
}

/// A port that was free a moment ago on `ip`.
fn free_port_on(ip: IpAddr) -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((ip, 0))
        .with_context(|| format!("binding {ip}:0 for a free port"))?;
    Ok(listener.local_addr()?.port())
}

/// Merges `extra` into `base`: tables merge key by key, anything else is replaced.
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

impl Hub {
    /// Writes a configuration and starts the hub, waiting until it serves through the proxy.
    ///
    /// The configuration: the dummy authenticator (admin user `admin` with
    /// [`Hub::admin_token`]), the managed `chp-proxy` of this build, the local spawner running
    /// the real `jupyterhub-singleuser` from [`crate::bins::singleuser_venv`] in
    /// `<notebooks>/<user>` with `default_url = "/files/hello.txt"`; then `extra` (TOML)
    /// merged over it, table by table.
    ///
    /// # Errors
    /// When the hub does not come up within a minute (the error has its log).
    pub async fn start(extra: &str) -> anyhow::Result<Self> {
        Self::start_with(HubOptions::default(), extra).await
    }

    /// [`Hub::start`] with another layout: another venv, other addresses, a proxy the test
    /// runs (see [`HubOptions`]).
    ///
    /// # Errors
    /// When the hub does not come up within a minute (the error has its log).
    pub async fn start_with(options: HubOptions, extra: &str) -> anyhow::Result<Self> {
        let run_dir = tempfile::Builder::new().prefix("jhrs-e2e-hub-").tempdir()?;
        let notebooks = tempfile::Builder::new().prefix("jhrs-e2e-nb-").tempdir()?;
        // Servers run as their users' accounts and must reach their directories.
        std::fs::set_permissions(notebooks.path(), std::fs::Permissions::from_mode(0o755))?;
        // Without a server command of its own the base configuration needs no venv.
        let venv = match &options.venv {
            Some(venv) => venv.clone(),
            None if options.default_server_cmd => PathBuf::from("/nonexistent-venv"),
            None => crate::bins::singleuser_venv(),
        };
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let ip = options.ip.unwrap_or(loopback);
        let external = options.external_proxy.clone();
        let mut hub = Hub {
            config_path: run_dir.path().join("jupyterhub_config.toml"),
            log_path: run_dir.path().join("hub.log"),
            run_dir,
            notebooks,
            child: None,
            starts: 0,
            done: false,
            public_port: external
                .as_ref()
                .map_or_else(crate::free_port, |p| p.public.port()),
            hub_port: free_port_on(ip)?,
            proxy_api_port: external
                .as_ref()
                .map_or_else(crate::free_port, |p| p.api.port()),
            admin_token: format!("admin-{}{}", random_suffix(), random_suffix()),
            proxy_token: external.as_ref().map_or_else(
                || format!("proxy-{}{}", random_suffix(), random_suffix()),
                |p| p.token.clone(),
            ),
            marker: format!("{}-{}", std::process::id(), random_suffix()),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()?,
            public_ip: external.as_ref().map_or(loopback, |p| p.public.ip()),
            hub_ip: ip,
            proxy_api_ip: external.as_ref().map_or(loopback, |p| p.api.ip()),
        };
        let base = format!(
            r#"
[hub]
bind_url = "http://127.0.0.1:{public}"
hub_ip = "127.0.0.1"
hub_port = {hub_port}

[hub.api_tokens]
"{admin_token}" = "admin"

[proxy]
command = [{chp:?}]
api_url = "http://127.0.0.1:{api}"
auth_token = "{proxy_token}"

[authenticator]
class = "dummy"
admin_users = ["admin"]

[spawner]
cmd = [{singleuser:?}]
notebook_dir = "{notebooks}/{{username}}"
default_url = "/files/hello.txt"

[spawner.environment]
{MARKER_VAR} = "{marker}"
"#,
            public = hub.public_port,
            hub_port = hub.hub_port,
            admin_token = hub.admin_token,
            chp = crate::bins::chp_proxy().display().to_string(),
            api = hub.proxy_api_port,
            proxy_token = hub.proxy_token,
            singleuser = venv
                .join("bin")
                .join("jupyterhub-singleuser")
                .display()
                .to_string(),
            notebooks = hub.notebooks.path().display(),
            marker = hub.marker,
        );
        let mut config: toml::Table = toml::from_str(&base).context("the base configuration")?;
        if ip != loopback {
            // hub_bind_url replaces the base's hub_ip and hub_port.
            if let Some(toml::Value::Table(section)) = config.get_mut("hub") {
                section.remove("hub_ip");
                section.remove("hub_port");
            }
            let hub_url = format!("http://{}", SocketAddr::new(ip, hub.hub_port));
            set(&mut config, "hub", "hub_bind_url", hub_url);
            set(&mut config, "spawner", "ip", ip.to_string());
        }
        if let Some(proxy) = &external {
            set(
                &mut config,
                "hub",
                "bind_url",
                format!("http://{}", proxy.public),
            );
            set(&mut config, "proxy", "should_start", false);
            set(
                &mut config,
                "proxy",
                "api_url",
                format!("http://{}", proxy.api),
            );
            if let Some(toml::Value::Table(section)) = config.get_mut("proxy") {
                section.remove("command");
            }
        }
        if options.default_server_cmd
            && let Some(toml::Value::Table(section)) = config.get_mut("spawner")
        {
            section.remove("cmd");
        }
        let extra: toml::Table = toml::from_str(extra).context("the test's configuration")?;
        merge(&mut config, extra);
        std::fs::write(&hub.config_path, toml::to_string(&config)?)?;
        hub.spawn()?;
        hub.wait_up().await?;
        Ok(hub)
    }

    /// Starts the hub process (once more, on the same files).
    fn spawn(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "the hub is already running");
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        writeln!(log, "===== hub start #{} =====", self.starts)?;
        let child = Command::new(crate::bins::hub())
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(self.run_dir.path())
            // A known environment: nothing of the caller's JUPYTERHUB_* settings leaks in.
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .env("RUST_BACKTRACE", "1")
            .env(MARKER_VAR, &self.marker)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting the hub")?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until `GET /hub/api/` answers 200 through the proxy.
    async fn wait_up(&mut self) -> anyhow::Result<()> {
        let deadline = Deadline::new(
            "the hub to answer through the proxy",
            Duration::from_secs(60),
        );
        let url = self.public_url("/hub/api/");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "the hub exited with {status} while starting:\n{}",
                    self.log_tail(60)
                );
            }
            if let Ok(reply) = self.client.get(&url).send().await
                && reply.status() == StatusCode::OK
            {
                return Ok(());
            }
            if let Err(e) = deadline.tick().await {
                bail!("{e}\n{}", self.log_tail(60));
            }
        }
    }

    /// Marks the test as passed: dropping the hub no longer prints its log.
    pub fn done(&mut self) {
        self.done = true;
    }

    /// The hub process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits for the hub to exit (up to `within`).
    ///
    /// # Errors
    /// When it does not exit in time (it is then killed) or is not running.
    pub async fn terminate(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("the hub is not running")?;
        let pid = Pid::from_raw(i32::try_from(child.id())?);
        kill(pid, Signal::SIGTERM)?;
        let deadline = Deadline::new("the hub to exit after SIGTERM", within);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if let Err(e) = deadline.tick().await {
                let _ = killpg(pid, Signal::SIGKILL);
                let _ = child.wait();
                bail!("{e}; killed it\n{}", self.log_tail(60));
            }
        }
    }

    /// Kills the hub process with SIGKILL (nothing it started is touched) and reaps it.
    ///
    /// # Errors
    /// When it is not running.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("the hub is not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Waits (up to `within`) for the hub to exit by itself; returns its exit status.
    ///
    /// # Errors
    /// When it is not running, or still runs at the deadline (it is then killed).
    pub async fn wait_exit(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("the hub is not running")?;
        let deadline = Deadline::new("the hub to exit by itself", within);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if let Err(e) = deadline.tick().await {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{e}; killed it\n{}", self.log_tail(60));
            }
        }
    }

    /// Starts the hub again after [`Hub::terminate`], on the same configuration, database and
    /// cookie secret, and waits until it serves.
    ///
    /// # Errors
    /// When it is still running or does not come back.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        self.wait_up().await
    }

    /// `http://127.0.0.1:<public port><path>` (the proxy's public address, when the options
    /// gave another).
    pub fn public_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            SocketAddr::new(self.public_ip, self.public_port)
        )
    }

    /// The public address (the proxy's), where browsers go.
    pub fn public_addr(&self) -> SocketAddr {
        SocketAddr::new(self.public_ip, self.public_port)
    }

    /// The hub's REST API at its own address (`http://<hub address>/hub/api`), as services
    /// such as the idle culler reach it.
    pub fn api_url(&self) -> String {
        format!(
            "http://{}/hub/api",
            SocketAddr::new(self.hub_ip, self.hub_port)
        )
    }

    /// The proxy's API token.
    pub fn proxy_token(&self) -> &str {
        &self.proxy_token
    }

    /// The hub's whole log so far (all starts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "----- hub log (last {} lines of {}) -----\n{}\n-----",
            all.len() - from,
            self.log_path.display(),
            all[from..].join("\n")
        )
    }

    /// A REST call to the hub's own port (`/hub/api<path>`) with `token`.
    ///
    /// # Errors
    /// On connection errors; a body that is not JSON is returned as a JSON string.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let url = format!("{}{path}", self.api_url());
        let mut request = self.client.request(method.clone(), &url);
        if let Some(token) = token {
            request = request.header("Authorization", format!("token {token}"));
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let reply = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = reply.status();
        let text = reply.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    /// A REST call with the admin token.
    ///
    /// # Errors
    /// See [`Hub::api`].
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        self.api(method, path, Some(&self.admin_token), body).await
    }

    /// Creates hub users (as admin).
    ///
    /// # Errors
    /// When the hub refuses.
    pub async fn create_users(&self, names: &[&str]) -> anyhow::Result<()> {
        let (status, body) = self
            .admin(
                Method::POST,
                "/users",
                Some(&serde_json::json!({ "usernames": names })),
            )
            .await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "creating {names:?}: {status} {body}"
        );
        Ok(())
    }

    /// A new API token of `user`, made with the admin token.
    ///
    /// # Errors
    /// When the hub refuses.
    pub async fn token_for(&self, user: &str) -> anyhow::Result<String> {
        let (status, body) = self
            .admin(
                Method::POST,
                &format!("/users/{user}/tokens"),
                Some(&serde_json::json!({ "note": "e2e" })),
            )
            .await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "token for {user}: {status} {body}"
        );
        body["token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("token for {user}: no token in {body}"))
    }

    /// The user model of `user` (as admin).
    ///
    /// # Errors
    /// When the hub does not answer 200.
    pub async fn user_model(&self, user: &str) -> anyhow::Result<Value> {
        let (status, body) = self
            .admin(Method::GET, &format!("/users/{user}"), None)
            .await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "GET /users/{user}: {status} {body}"
        );
        Ok(body)
    }

    /// The default server of `user` from its user model, when it has one.
    ///
    /// # Errors
    /// See [`Hub::user_model`].
    pub async fn default_server(&self, user: &str) -> anyhow::Result<Option<Value>> {
        let model = self.user_model(user).await?;
        Ok(model["servers"].get("").cloned())
    }

    /// Waits (up to `within`) until `user`'s default server is ready; returns its model.
    ///
    /// # Errors
    /// When it is not ready in time, or its start failed (no server and nothing pending).
    pub async fn wait_server_ready(&self, user: &str, within: Duration) -> anyhow::Result<Value> {
        let deadline = Deadline::new(format!("{user}'s server to be ready"), within);
        loop {
            let model = self.user_model(user).await?;
            let server = model["servers"].get("").cloned();
            match &server {
                Some(s) if s["ready"] == Value::Bool(true) => return Ok(s.clone()),
                // Neither running nor starting: the start failed.
                None if model["pending"].is_null() => {
                    bail!(
                        "{user}'s server failed to start: {model}\n{}",
                        self.log_tail(80)
                    );
                }
                _ => {}
            }
            if let Err(e) = deadline.tick().await {
                bail!("{e}; last model: {model}\n{}", self.log_tail(80));
            }
        }
    }

    /// The proxy's routing table (from its REST API, not through the hub).
    ///
    /// # Errors
    /// When the proxy does not answer 200 with a JSON object.
    pub async fn proxy_routes(&self) -> anyhow::Result<Map<String, Value>> {
        let url = format!(
            "http://{}/api/routes",
            SocketAddr::new(self.proxy_api_ip, self.proxy_api_port)
        );
        let reply = self
            .client
            .get(&url)
            .header("Authorization", format!("token {}", self.proxy_token))
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = reply.status();
        anyhow::ensure!(status == StatusCode::OK, "GET {url}: {status}");
        match reply.json::<Value>().await? {
            Value::Object(routes) => Ok(routes),
            other => bail!("GET {url}: not an object: {other}"),
        }
    }

    /// Waits until the proxy has (`present`) or lacks a route for `spec` (such as
    /// `/user/alice`); returns its target when present.
    ///
    /// # Errors
    /// On timeout, with the routing table.
    pub async fn wait_route(
        &self,
        spec: &str,
        present: bool,
        within: Duration,
    ) -> anyhow::Result<Option<String>> {
        let what = if present { "to appear" } else { "to go" };
        let deadline = Deadline::new(format!("the proxy route {spec} {what}"), within);
        loop {
            let routes = self.proxy_routes().await?;
            match routes.get(spec) {
                Some(route) if present => {
                    return Ok(route["target"].as_str().map(str::to_owned));
                }
                None if !present => return Ok(None),
                _ => {}
            }
            if let Err(e) = deadline.tick().await {
                bail!(
                    "{e}; routes: {}\n{}",
                    Value::Object(routes),
                    self.log_tail(40)
                );
            }
        }
    }

    /// Makes `<notebooks>/<user>/hello.txt` (the spawner's `default_url` opens it), owned by
    /// `owner` when given; returns the directory.
    ///
    /// # Errors
    /// When the files cannot be made.
    pub fn prepare_notebook_dir(
        &self,
        user: &str,
        owner: Option<&SystemUser>,
    ) -> anyhow::Result<PathBuf> {
        let dir = self.notebooks.path().join(user);
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("hello.txt");
        std::fs::write(&file, hello_text(user))?;
        if let Some(owner) = owner {
            let (uid, gid) = (
                Some(nix::unistd::Uid::from_raw(owner.uid)),
                Some(nix::unistd::Gid::from_raw(owner.gid)),
            );
            nix::unistd::chown(&dir, uid, gid)?;
            nix::unistd::chown(&file, uid, gid)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(dir)
    }

    /// The working directory of the hub (its files).
    pub fn run_dir(&self) -> &Path {
        self.run_dir.path()
    }

    /// Every running process that carries this hub's marker (its single-user servers, and
    /// the hub and proxy processes).
    pub fn marked_processes(&self) -> Vec<procs::Proc> {
        procs::all()
            .into_iter()
            .filter(|p| p.running() && self.is_marked(p.pid))
            .collect()
    }

    fn is_marked(&self, pid: i32) -> bool {
        procs::env_var(pid, MARKER_VAR).as_deref() == Some(self.marker.as_str())
    }
}

/// What [`Hub::prepare_notebook_dir`] writes to `hello.txt`.
pub fn hello_text(user: &str) -> String {
    format!("hello from {user}\n")
}

impl Drop for Hub {
    fn drop(&mut self) {
        if !self.done || std::thread::panicking() {
            eprintln!("{}", self.log_tail(150));
        }
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            // The hub stops its servers and proxy on SIGTERM (unless told not to).
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if child.try_wait().ok().flatten().is_none() {
                let _ = killpg(pid, Signal::SIGKILL);
                let _ = child.wait();
            }
        }
        // Whatever is left (servers kept with cleanup_servers = false, a proxy that outlived
        // a killed hub) carries the marker.
        let left = procs::kill_where(|p| self.is_marked(p.pid));
        if left > 0 {
            eprintln!("cleanup: stopped {left} leftover processes of the test hub");
        }
    }
}
