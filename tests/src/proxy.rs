//! Starting a proxy process (ours or the reference CHP) and talking to it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use crate::metrics::Metrics;
use crate::raw::{Conn, RawRequest, RawResponse};
use crate::tls::TestCerts;

/// Which implementation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Our `chp-proxy`.
    Ours,
    /// The reference configurable-http-proxy 5.3.0 (node).
    Real,
}

impl Flavor {
    /// The executable for this flavour (panics with instructions when missing).
    pub fn binary(self) -> PathBuf {
        match self {
            Flavor::Ours => crate::bins::chp_proxy(),
            Flavor::Real => crate::bins::chp_real(),
        }
    }
}

/// How to reach one listener of the proxy.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// Plain TCP on `127.0.0.1:<port>`.
    Tcp(u16),
    /// TLS on `127.0.0.1:<port>`; the client trusts the CA and may present a client cert.
    Tls {
        /// Port.
        port: u16,
        /// Certificates (the CA is trusted).
        certs: Arc<TestCerts>,
        /// Present the client certificate.
        client_cert: bool,
    },
    /// A unix socket.
    Unix(PathBuf),
}

impl Endpoint {
    /// Opens a connection.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        match self {
            Endpoint::Tcp(port) => Conn::tcp(*port).await,
            Endpoint::Tls {
                port,
                certs,
                client_cert,
            } => {
                let stream = crate::within(
                    "TLS connect",
                    certs.connect(*port, *client_cert, &[b"http/1.1"]),
                )
                .await??;
                Ok(Conn::new(stream, &format!("127.0.0.1:{port}")))
            }
            Endpoint::Unix(path) => Conn::unix(path).await,
        }
    }

    /// The TCP port, if any.
    pub fn port(&self) -> Option<u16> {
        match self {
            Endpoint::Tcp(port) | Endpoint::Tls { port, .. } => Some(*port),
            Endpoint::Unix(_) => None,
        }
    }

    /// Whether process `pid` accepts connections here. For TCP this also checks that the
    /// listening socket belongs to `pid`: a free port can be taken by another test's process
    /// between picking it and the proxy binding it, and talking to that one would be wrong.
    fn ready(&self, pid: u32) -> bool {
        match self {
            Endpoint::Tcp(port) | Endpoint::Tls { port, .. } => {
                let connects = std::net::TcpStream::connect_timeout(
                    &crate::loopback(*port),
                    Duration::from_millis(200),
                )
                .is_ok();
                connects && owns_listener(pid, *port).unwrap_or(true)
            }
            Endpoint::Unix(path) => std::os::unix::net::UnixStream::connect(path).is_ok(),
        }
    }
}

/// Whether process `pid` holds a socket listening on TCP `port`, from `/proc`; `None` when
/// `/proc` cannot tell (then the caller trusts a successful connect).
pub(crate) fn owns_listener(pid: u32, port: u16) -> Option<bool> {
    let mut inodes = std::collections::HashSet::new();
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            // State 0A is LISTEN.
            if local_port == Some(port)
                && *state == "0A"
                && let Ok(inode) = inode.parse::<u64>()
            {
                inodes.insert(inode);
            }
        }
    }
    if !readable {
        return None;
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for fd in fds.flatten() {
        let Ok(link) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        let inode = link
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok());
        if inode.is_some_and(|i| inodes.contains(&i)) {
            return Some(true);
        }
    }
    Some(false)
}

#[derive(Debug, Clone)]
enum Listener {
    /// A free TCP port is picked.
    Tcp,
    /// A unix socket at this path.
    Unix(PathBuf),
    /// Not started.
    Off,
    /// Configured by the caller's own arguments; only waited for.
    Given(Endpoint),
}

/// Builds the command line of a proxy process.
#[derive(Debug, Clone)]
pub struct ProxyBuilder {
    flavor: Flavor,
    args: Vec<String>,
    token: Option<String>,
    public: Listener,
    api: Listener,
    metrics: Listener,
    public_tls: Option<Arc<TestCerts>>,
    api_tls: Option<(Arc<TestCerts>, bool)>,
    env: Vec<(String, String)>,
    wait_public: bool,
}

impl ProxyBuilder {
    /// A proxy of `flavor` with token [`crate::TOKEN`], listening on free loopback ports.
    pub fn new(flavor: Flavor) -> Self {
        ProxyBuilder {
            flavor,
            args: Vec::new(),
            token: Some(crate::TOKEN.to_owned()),
            public: Listener::Tcp,
            api: Listener::Tcp,
            metrics: Listener::Off,
            public_tls: None,
            api_tls: None,
            env: Vec::new(),
            wait_public: true,
        }
    }

    /// Adds one command-line argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `--default-target <url>`.
    pub fn default_target(self, url: &str) -> Self {
        self.arg("--default-target").arg(url)
    }

    /// `--error-target <url>`.
    pub fn error_target(self, url: &str) -> Self {
        self.arg("--error-target").arg(url)
    }

    /// Sets `CONFIGPROXY_AUTH_TOKEN` (it is removed from the environment otherwise).
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// Runs with no API token (unauthenticated API).
    pub fn no_token(mut self) -> Self {
        self.token = None;
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Public listener on a unix socket (`--socket`).
    pub fn public_socket(mut self, path: &Path) -> Self {
        self.public = Listener::Unix(path.to_path_buf());
        self
    }

    /// API on a unix socket (`--api-socket`).
    pub fn api_socket(mut self, path: &Path) -> Self {
        self.api = Listener::Unix(path.to_path_buf());
        self
    }

    /// Metrics on a free TCP port (`--metrics-ip 127.0.0.1 --metrics-port P`).
    pub fn metrics(mut self) -> Self {
        self.metrics = Listener::Tcp;
        self
    }

    /// Metrics on a unix socket (`--metrics-socket`).
    pub fn metrics_socket(mut self, path: &Path) -> Self {
        self.metrics = Listener::Unix(path.to_path_buf());
        self
    }

    /// HTTPS on the public port (`--ssl-key`, `--ssl-cert`).
    pub fn public_tls(mut self, certs: &Arc<TestCerts>) -> Self {
        self.public_tls = Some(certs.clone());
        self
    }

    /// HTTPS on the API (`--api-ssl-key`, `--api-ssl-cert`); with `mtls` also `--api-ssl-ca`,
    /// `--api-ssl-request-cert` and `--api-ssl-reject-unauthorized`, and the test client then
    /// presents the client certificate.
    pub fn api_tls(mut self, certs: &Arc<TestCerts>, mtls: bool) -> Self {
        self.api_tls = Some((certs.clone(), mtls));
        self
    }

    /// The caller passes the public listener flags itself (with [`ProxyBuilder::args`]); the
    /// builder only waits for `endpoint`.
    pub fn public_given(mut self, endpoint: Endpoint) -> Self {
        self.public = Listener::Given(endpoint);
        self
    }

    /// The caller passes the API listener flags itself; the builder only waits for `endpoint`.
    pub fn api_given(mut self, endpoint: Endpoint) -> Self {
        self.api = Listener::Given(endpoint);
        self
    }

    /// Does not wait for the public listener (for setups where it is not expected to listen).
    pub fn skip_public_wait(mut self) -> Self {
        self.wait_public = false;
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(self.flavor.binary());
        cmd.env_remove(hub_api::chp::AUTH_TOKEN_ENV);
        if let Some(token) = &self.token {
            cmd.env(hub_api::chp::AUTH_TOKEN_ENV, token);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs the proxy with exactly `args` (no listener flags added) and waits for it to exit.
    /// For command-line error tests. Kills it and fails if it is still running after `wait`.
    pub fn run_to_exit(&self, args: &[&str], wait: Duration) -> anyhow::Result<Exited> {
        let mut cmd = self.command();
        cmd.args(args);
        let mut child = cmd.spawn().context("spawning the proxy")?;
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = child.try_wait()? {
                let mut stdout = String::new();
                let mut stderr = String::new();
                if let Some(mut out) = child.stdout.take() {
                    out.read_to_string(&mut stdout)?;
                }
                if let Some(mut err) = child.stderr.take() {
                    err.read_to_string(&mut stderr)?;
                }
                return Ok(Exited {
                    status,
                    stdout,
                    stderr,
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the proxy was still running after {wait:?} with args {args:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the proxy and waits until every listener accepts connections.
    pub async fn start(self) -> anyhow::Result<Proxy> {
        crate::init_crypto();
        let mut last_err = None;
        for _attempt in 0..3 {
            match self.try_start().await {
                Ok(proxy) => return Ok(proxy),
                Err(StartError::PortTaken(msg)) => last_err = Some(anyhow::anyhow!(msg)),
                Err(StartError::Other(e)) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("proxy failed to start")))
    }

    async fn try_start(&self) -> Result<Proxy, StartError> {
        let mut cmd = self.command();
        let public = match &self.public {
            Listener::Tcp => {
                let port = crate::free_port();
                cmd.args(["--ip", "127.0.0.1", "--port", &port.to_string()]);
                match &self.public_tls {
                    Some(certs) => Some(Endpoint::Tls {
                        port,
                        certs: certs.clone(),
                        client_cert: false,
                    }),
                    None => Some(Endpoint::Tcp(port)),
                }
            }
            Listener::Unix(path) => {
                cmd.arg("--socket").arg(path);
                Some(Endpoint::Unix(path.clone()))
            }
            Listener::Off => None,
            Listener::Given(endpoint) => Some(endpoint.clone()),
        };
        if let Some(certs) = &self.public_tls {
            cmd.arg("--ssl-key")
                .arg(certs.server_key_path())
                .arg("--ssl-cert")
                .arg(certs.server_cert_path());
        }
        let api = match &self.api {
            Listener::Tcp => {
                let port = crate::free_port();
                cmd.args(["--api-ip", "127.0.0.1", "--api-port", &port.to_string()]);
                match &self.api_tls {
                    Some((certs, mtls)) => Endpoint::Tls {
                        port,
                        certs: certs.clone(),
                        client_cert: *mtls,
                    },
                    None => Endpoint::Tcp(port),
                }
            }
            Listener::Unix(path) => {
                cmd.arg("--api-socket").arg(path);
                Endpoint::Unix(path.clone())
            }
            Listener::Off => {
                return Err(StartError::Other(anyhow::anyhow!(
                    "the API listener cannot be off"
                )));
            }
            Listener::Given(endpoint) => endpoint.clone(),
        };
        if let Some((certs, mtls)) = &self.api_tls {
            cmd.arg("--api-ssl-key")
                .arg(certs.server_key_path())
                .arg("--api-ssl-cert")
                .arg(certs.server_cert_path());
            if *mtls {
                cmd.arg("--api-ssl-ca")
                    .arg(certs.ca_path())
                    .arg("--api-ssl-request-cert")
                    .arg("--api-ssl-reject-unauthorized");
            }
        }
        let metrics = match &self.metrics {
            Listener::Tcp => {
                let port = crate::free_port();
                cmd.args([
                    "--metrics-ip",
                    "127.0.0.1",
                    "--metrics-port",
                    &port.to_string(),
                ]);
                Some(Endpoint::Tcp(port))
            }
            Listener::Unix(path) => {
                cmd.arg("--metrics-socket").arg(path);
                Some(Endpoint::Unix(path.clone()))
            }
            Listener::Off => None,
            Listener::Given(endpoint) => Some(endpoint.clone()),
        };
        cmd.args(&self.args);

        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {:?}", self.flavor.binary()))
            .map_err(StartError::Other)?;
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(out) = child.stdout.take() {
            capture(out, stdout.clone());
        }
        if let Some(err) = child.stderr.take() {
            capture(err, stderr.clone());
        }
        let mut proxy = Proxy {
            flavor: self.flavor,
            child,
            stdout,
            stderr,
            public,
            api,
            metrics,
            token: self.token.clone(),
            exited: None,
        };

        let mut waits: Vec<Endpoint> = vec![proxy.api.clone()];
        if self.wait_public {
            waits.extend(proxy.public.clone());
        }
        waits.extend(proxy.metrics.clone());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                // Give the capture threads a moment to drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                let out = proxy.stdout();
                let err = proxy.stderr();
                let msg = format!(
                    "{:?} exited during startup with {status}\n--- stdout\n{out}\n--- stderr\n{err}",
                    self.flavor
                );
                let taken = |s: &str| s.contains("in use") || s.contains("EADDRINUSE");
                let port_taken = taken(&out) || taken(&err);
                proxy.exited = Some(status);
                return Err(if port_taken {
                    StartError::PortTaken(msg)
                } else {
                    StartError::Other(anyhow::anyhow!(msg))
                });
            }
            let pid = proxy.pid();
            if waits.iter().all(|e| e.ready(pid)) {
                break;
            }
            if Instant::now() > deadline {
                return Err(StartError::Other(anyhow::anyhow!(
                    "{:?} did not start listening within 20 s\n--- stdout\n{}\n--- stderr\n{}",
                    self.flavor,
                    proxy.stdout(),
                    proxy.stderr()
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(proxy)
    }
}

enum StartError {
    PortTaken(String),
    Other(anyhow::Error),
}

fn capture(pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let reader = BufReader::new(pipe);
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Ok(mut buf) = into.lock() {
                buf.push_str(&line);
                buf.push('\n');
            }
        }
    });
}

/// The outcome of [`ProxyBuilder::run_to_exit`].
#[derive(Debug)]
pub struct Exited {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

/// A running proxy process; killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Proxy {
    /// Which implementation this is.
    pub flavor: Flavor,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// The public listener (absent only if the builder turned it off).
    pub public: Option<Endpoint>,
    /// The API listener.
    pub api: Endpoint,
    /// The metrics listener, if started.
    pub metrics: Option<Endpoint>,
    token: Option<String>,
    exited: Option<ExitStatus>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// A builder for our `chp-proxy`.
    pub fn ours() -> ProxyBuilder {
        ProxyBuilder::new(Flavor::Ours)
    }

    /// A builder for the reference CHP.
    pub fn real() -> ProxyBuilder {
        ProxyBuilder::new(Flavor::Real)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Everything the process printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Both outputs, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    /// The public TCP port.
    ///
    /// # Panics
    /// If the public listener is a unix socket.
    pub fn port(&self) -> u16 {
        self.public
            .as_ref()
            .and_then(Endpoint::port)
            .expect("the public listener has a TCP port")
    }

    /// The API TCP port.
    ///
    /// # Panics
    /// If the API listens on a unix socket.
    pub fn api_port(&self) -> u16 {
        self.api.port().expect("the API listener has a TCP port")
    }

    /// The metrics TCP port.
    ///
    /// # Panics
    /// If metrics are off or on a unix socket.
    pub fn metrics_port(&self) -> u16 {
        self.metrics
            .as_ref()
            .and_then(Endpoint::port)
            .expect("the metrics listener has a TCP port")
    }

    /// `http://127.0.0.1:<public port><path>` (https with public TLS).
    pub fn url(&self, path: &str) -> String {
        let scheme = match self.public {
            Some(Endpoint::Tls { .. }) => "https",
            _ => "http",
        };
        format!("{scheme}://127.0.0.1:{}{path}", self.port())
    }

    /// Sends a request to the public listener.
    pub async fn request(&self, req: &RawRequest) -> anyhow::Result<RawResponse> {
        let endpoint = self
            .public
            .as_ref()
            .context("the proxy has no public listener")?;
        endpoint.connect().await?.exchange(req).await
    }

    /// `GET <target>` on the public listener.
    pub async fn get(&self, target: &str) -> anyhow::Result<RawResponse> {
        self.request(&RawRequest::get(target)).await
    }

    /// `GET <target>` on the public listener, expecting a JSON echo; returns the echo.
    pub async fn get_echo(&self, target: &str) -> anyhow::Result<Value> {
        let resp = self.get(target).await?;
        anyhow::ensure!(
            resp.status == 200,
            "GET {target}: expected 200, got {} {:?}",
            resp.status,
            resp.text()
        );
        resp.json()
    }

    /// Sends a request to the API, adding `Authorization: token <token>` unless the request
    /// already carries an `Authorization` header or the proxy has no token.
    pub async fn api_request(&self, req: RawRequest) -> anyhow::Result<RawResponse> {
        let has_auth = req
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        let req = match (&self.token, has_auth) {
            (Some(token), false) => req.header("Authorization", &format!("token {token}")),
            _ => req,
        };
        self.api.connect().await?.exchange(&req).await
    }

    /// `GET /api/routes<path>`.
    pub async fn api_get(&self, path: &str) -> anyhow::Result<RawResponse> {
        self.api_request(RawRequest::get(&format!("/api/routes{path}")))
            .await
    }

    /// `POST /api/routes<path>` with a JSON body.
    pub async fn api_post(&self, path: &str, body: &Value) -> anyhow::Result<RawResponse> {
        self.api_request(
            RawRequest::new("POST", &format!("/api/routes{path}"))
                .header("Content-Type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// `DELETE /api/routes<path>`.
    pub async fn api_delete(&self, path: &str) -> anyhow::Result<RawResponse> {
        self.api_request(RawRequest::new("DELETE", &format!("/api/routes{path}")))
            .await
    }

    /// Adds a route with `{"target": target}`, expecting 201.
    pub async fn add_route(&self, path: &str, target: &str) -> anyhow::Result<()> {
        self.add_route_data(path, &serde_json::json!({ "target": target }))
            .await
    }

    /// Adds a route with the given data, expecting 201.
    pub async fn add_route_data(&self, path: &str, data: &Value) -> anyhow::Result<()> {
        let resp = self.api_post(path, data).await?;
        anyhow::ensure!(
            resp.status == 201,
            "POST /api/routes{path}: expected 201, got {} {:?}",
            resp.status,
            resp.text()
        );
        Ok(())
    }

    /// Deletes a route, expecting 204.
    pub async fn delete_route(&self, path: &str) -> anyhow::Result<()> {
        let resp = self.api_delete(path).await?;
        anyhow::ensure!(
            resp.status == 204,
            "DELETE /api/routes{path}: expected 204, got {} {:?}",
            resp.status,
            resp.text()
        );
        Ok(())
    }

    /// The whole routing table (`GET /api/routes`).
    pub async fn routes(&self) -> anyhow::Result<Map<String, Value>> {
        let resp = self.api_get("").await?;
        anyhow::ensure!(
            resp.status == 200,
            "GET /api/routes: {} {:?}",
            resp.status,
            resp.text()
        );
        match resp.json()? {
            Value::Object(map) => Ok(map),
            other => bail!("GET /api/routes did not return an object: {other}"),
        }
    }

    /// The `last_activity` of route `key` (decoded key, as listed).
    pub async fn last_activity(&self, key: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
        let routes = self.routes().await?;
        let value = routes
            .get(key)
            .and_then(|r| r.get("last_activity"))
            .and_then(Value::as_str)
            .with_context(|| format!("route {key:?} has no last_activity in {routes:?}"))?;
        crate::parse_last_activity(value)
    }

    /// `GET /metrics` on the metrics listener, parsed.
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        let resp = self.metrics_raw("/metrics").await?;
        anyhow::ensure!(resp.status == 200, "GET /metrics: {}", resp.status);
        Metrics::parse(&resp.text())
    }

    /// `GET <target>` on the metrics listener.
    pub async fn metrics_raw(&self, target: &str) -> anyhow::Result<RawResponse> {
        let endpoint = self
            .metrics
            .as_ref()
            .context("the proxy has no metrics listener")?;
        endpoint
            .connect()
            .await?
            .exchange(&RawRequest::get(target))
            .await
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
        let pid = i32::try_from(self.pid()).context("pid out of range")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)?;
        Ok(())
    }

    /// Waits up to `wait` for the process to exit.
    pub async fn wait_exit(&mut self, wait: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.exited = Some(status);
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("the proxy did not exit within {wait:?}\n{}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}
