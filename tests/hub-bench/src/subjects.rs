//! The two hubs under test, each with its own proxy, database and config in a temporary
//! folder: JupyterHub 6.1.1 from the Python venv, with a do-nothing spawner defined in its
//! config; and ours (`hub-bench serve-mock-hub`), with `MockSpawner`.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::client::{Client, Req};
use crate::procs::{Proc, Spec, free_port};

/// Which hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// JupyterHub 6.1.1 (Python).
    JupyterHub,
    /// Ours.
    Ours,
}

impl Kind {
    /// Column heading.
    pub fn label(self) -> &'static str {
        match self {
            Kind::JupyterHub => "JupyterHub",
            Kind::Ours => "ours",
        }
    }
}

/// The proxy both hubs talk to.
#[derive(Debug, Clone)]
pub enum ProxyProgram {
    /// `chp-proxy` (ours).
    ChpProxy(PathBuf),
    /// configurable-http-proxy from npm (run with node).
    Chp(PathBuf),
}

/// Where things are and which cores they run on.
#[derive(Debug)]
pub struct Setup {
    /// The venv with `jupyterhub` 6.1.1.
    pub venv: PathBuf,
    /// The proxy program.
    pub proxy: ProxyProgram,
    /// This program (for `serve-mock-hub`).
    pub self_exe: PathBuf,
    /// Core for the hub; `None`: not pinned.
    pub hub_core: Option<u32>,
    /// Core for the proxy (and this process); `None`: not pinned.
    pub load_core: Option<u32>,
    /// Where JupyterHub's spawner points every server: the always-up server.
    pub upstream: SocketAddr,
    /// Keep the temporary folders (logs, databases) here instead of deleting them.
    pub keep_logs: Option<PathBuf>,
}

/// A running hub with its proxy.
#[derive(Debug)]
pub struct Subject {
    /// Which hub.
    pub kind: Kind,
    /// The hub process.
    pub hub: Proc,
    /// The proxy process.
    pub proxy: Proc,
    /// Where the hub listens.
    pub addr: SocketAddr,
    /// A token with the `admin` role (a service's, from the config).
    pub admin_token: String,
    /// What `GET /hub/api/` said.
    pub version: String,
    dir: tempfile::TempDir,
}

impl Subject {
    /// Starts `kind` and waits until its API answers.
    pub async fn start(kind: Kind, setup: &Setup) -> Result<Subject> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("hub-bench-{}-", kind.label().to_lowercase()))
            .tempdir()
            .context("temporary folder")?;
        let hub_port = free_port()?;
        let proxy_port = free_port()?;
        let api_port = free_port()?;
        let proxy_token = random_token();
        let admin_token = random_token();

        let proxy = start_proxy(setup, dir.path(), proxy_port, api_port, &proxy_token)?;
        let spec = match kind {
            Kind::JupyterHub => {
                let config = jupyterhub_config(
                    dir.path(),
                    hub_port,
                    proxy_port,
                    api_port,
                    &proxy_token,
                    &admin_token,
                    setup.upstream,
                );
                let path = dir.path().join("jupyterhub_config.py");
                std::fs::write(&path, config).context("writing jupyterhub_config.py")?;
                let program = setup.venv.join("bin/jupyterhub");
                if !program.exists() {
                    bail!(
                        "{} is missing: run scripts/python-test-env.sh bench",
                        program.display()
                    );
                }
                Spec {
                    name: "jupyterhub".into(),
                    program,
                    args: vec!["-f".into(), path.into()],
                    env: vec![],
                    cwd: dir.path().to_owned(),
                }
            }
            Kind::Ours => {
                let config = our_config(
                    dir.path(),
                    hub_port,
                    proxy_port,
                    api_port,
                    &proxy_token,
                    &admin_token,
                );
                let path = dir.path().join("hub.toml");
                std::fs::write(&path, config).context("writing hub.toml")?;
                Spec {
                    name: "hub (serve-mock-hub)".into(),
                    program: setup.self_exe.clone(),
                    args: vec![
                        "serve-mock-hub".into(),
                        OsString::from("--config"),
                        path.into(),
                    ],
                    env: vec![],
                    cwd: dir.path().to_owned(),
                }
            }
        };
        let mut hub = Proc::spawn(spec, setup.hub_core, &dir.path().join("hub.log"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], hub_port));
        let version = wait_for_api(&mut hub, addr, Duration::from_secs(90)).await?;
        Ok(Subject {
            kind,
            hub,
            proxy,
            addr,
            admin_token,
            version,
            dir,
        })
    }

    /// Stops the hub, then the proxy; keeps the folder when asked to.
    pub async fn stop(self, keep_logs: Option<&Path>) -> Result<()> {
        self.hub.stop().await?;
        self.proxy.stop().await?;
        if let Some(keep) = keep_logs {
            let target = keep.join(self.kind.label().to_lowercase());
            let _ = std::fs::remove_dir_all(&target);
            std::fs::create_dir_all(keep)?;
            let path = self.dir.keep();
            std::fs::rename(&path, &target)
                .or_else(|_| copy_dir(&path, &target))
                .with_context(|| format!("keeping the logs in {}", target.display()))?;
        }
        Ok(())
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// 32 hex digits.
fn random_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn start_proxy(setup: &Setup, dir: &Path, port: u16, api_port: u16, token: &str) -> Result<Proc> {
    let flags: Vec<OsString> = [
        "--ip",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--api-ip",
        "127.0.0.1",
        "--api-port",
        &api_port.to_string(),
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let (program, args) = match &setup.proxy {
        ProxyProgram::ChpProxy(bin) => (bin.clone(), flags),
        ProxyProgram::Chp(script) => {
            let mut args = vec![script.clone().into_os_string()];
            args.extend(flags);
            (PathBuf::from("node"), args)
        }
    };
    let mut proxy = Proc::spawn(
        Spec {
            name: "proxy".into(),
            program,
            args,
            env: vec![("CONFIGPROXY_AUTH_TOKEN".into(), token.into())],
            cwd: dir.to_owned(),
        },
        setup.load_core,
        &dir.join("proxy.log"),
    )?;
    // The hubs check the proxy's API at startup; wait until it accepts connections.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", api_port)).is_err() {
        proxy.ensure_running()?;
        if std::time::Instant::now() > deadline {
            bail!("the proxy API did not listen within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(proxy)
}

/// Polls `GET /hub/api/` until it answers 200; returns the version it reports.
async fn wait_for_api(hub: &mut Proc, addr: SocketAddr, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        hub.ensure_running()?;
        let mut client = Client::new(addr);
        if let Ok(reply) = client.send(&Req::get("/hub/api/")).await
            && reply.status == StatusCode::OK
        {
            let json = reply.json();
            return Ok(json["version"].as_str().unwrap_or("?").to_owned());
        }
        if Instant::now() > deadline {
            bail!(
                "the hub did not answer GET /hub/api/ within {timeout:?}; log tail:\n{}",
                hub.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn py_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// JupyterHub's config: SQLite in `dir`, the hub on loopback, an external proxy, the dummy
/// authenticator, an admin service with `admin_token`, and `BenchSpawner`, which starts nothing
/// and hands out the always-up server's URL.
fn jupyterhub_config(
    dir: &Path,
    hub_port: u16,
    proxy_port: u16,
    api_port: u16,
    proxy_token: &str,
    admin_token: &str,
    upstream: SocketAddr,
) -> String {
    let dir = dir.display().to_string();
    let mut c = String::new();
    c.push_str(
        r#"# Written by hub-bench: JupyterHub 6.1.1 with a spawner that starts nothing.
from jupyterhub.spawner import Spawner


class BenchSpawner(Spawner):
    """Every server is the benchmark's always-up HTTP server; start and stop only flip a flag."""

    running = False

    def load_state(self, state):
        super().load_state(state)
        self.running = bool(state.get("running"))

    def get_state(self):
        state = super().get_state()
        if self.running:
            state["running"] = True
        return state

    def clear_state(self):
        super().clear_state()
        self.running = False

    async def start(self):
        self.running = True
        return UPSTREAM

    async def poll(self):
        return None if self.running else 0

    async def stop(self, now=False):
        self.running = False


c = get_config()  # noqa
"#,
    );
    let _ = writeln!(c, "UPSTREAM = {}", py_str(&format!("http://{upstream}")));
    let _ = writeln!(c, "c.JupyterHub.ip = '127.0.0.1'");
    let _ = writeln!(c, "c.JupyterHub.port = {proxy_port}");
    let _ = writeln!(c, "c.JupyterHub.hub_ip = '127.0.0.1'");
    let _ = writeln!(c, "c.JupyterHub.hub_port = {hub_port}");
    let _ = writeln!(
        c,
        "c.JupyterHub.db_url = {}",
        py_str(&format!("sqlite:///{dir}/jupyterhub.sqlite"))
    );
    let _ = writeln!(
        c,
        "c.JupyterHub.cookie_secret_file = {}",
        py_str(&format!("{dir}/jupyterhub_cookie_secret"))
    );
    let _ = writeln!(
        c,
        "c.JupyterHub.pid_file = {}",
        py_str(&format!("{dir}/jupyterhub.pid"))
    );
    let _ = writeln!(c, "c.ConfigurableHTTPProxy.should_start = False");
    let _ = writeln!(
        c,
        "c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{api_port}'"
    );
    let _ = writeln!(
        c,
        "c.ConfigurableHTTPProxy.auth_token = {}",
        py_str(proxy_token)
    );
    let _ = writeln!(c, "c.JupyterHub.authenticator_class = 'dummy'");
    let _ = writeln!(c, "c.Authenticator.allow_all = True");
    let _ = writeln!(c, "c.JupyterHub.spawner_class = BenchSpawner");
    // Both hubs hash the config's service token like a generated one, so admin requests pay
    // for the operation, not for 16,384 rounds of SHA-512.
    let _ = writeln!(c, "c.JupyterHub.trust_user_provided_tokens = True");
    // `admin: True` gives the service the admin role, in both hubs.
    let _ = writeln!(
        c,
        "c.JupyterHub.services = [{{'name': 'bench', 'api_token': {}, 'admin': True}}]",
        py_str(admin_token)
    );
    c
}

/// Our config, the same deployment as [`jupyterhub_config`].
fn our_config(
    dir: &Path,
    hub_port: u16,
    proxy_port: u16,
    api_port: u16,
    proxy_token: &str,
    admin_token: &str,
) -> String {
    let dir = dir.display().to_string();
    let s = |v: &str| serde_json::Value::String(v.to_owned()).to_string();
    format!(
        "# Written by hub-bench: our hub with MockSpawner.
[hub]
ip = \"127.0.0.1\"
port = {proxy_port}
hub_ip = \"127.0.0.1\"
hub_port = {hub_port}
db_url = {db}
cookie_secret_file = {secret}
trust_user_provided_tokens = true

[proxy]
should_start = false
api_url = \"http://127.0.0.1:{api_port}\"
auth_token = {proxy_token}

[authenticator]
class = \"dummy\"
allow_all = true

[[services]]
name = \"bench\"
api_token = {admin_token}
admin = true
",
        db = s(&format!("sqlite:///{dir}/jupyterhub.sqlite")),
        secret = s(&format!("{dir}/jupyterhub_cookie_secret")),
        proxy_token = s(proxy_token),
        admin_token = s(admin_token),
    )
}

/// The always-up server JupyterHub's spawner points at: 200 to everything, with the version
/// header a single-user server sends. Runs in this process until it exits.
pub async fn start_upstream() -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the always-up server")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Response::builder()
                        .status(StatusCode::OK)
                        .header("Content-Type", "application/json")
                        .header("X-JupyterHub-Version", "6.1.1")
                        .body(Full::new(Bytes::from_static(b"{\"up\": true}")))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_config_parses() {
        let dir = Path::new("/tmp/x");
        let text = our_config(dir, 1, 2, 3, "proxy-token-123456", "admin-token-123456");
        let config = hub::config::HubConfig::from_toml_str(&text, &dir.join("hub.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(!config.proxy.should_start);
        assert_eq!(config.hub.hub_port.get(), 1);
    }

    #[test]
    fn jupyterhub_config_quotes_strings() {
        let upstream = SocketAddr::from(([127, 0, 0, 1], 9));
        let text = jupyterhub_config(Path::new("/tmp/it's"), 1, 2, 3, "p", "a", upstream);
        assert!(text.contains(r#"c.JupyterHub.db_url = "sqlite:////tmp/it's/jupyterhub.sqlite""#));
        assert!(text.contains(r#"UPSTREAM = "http://127.0.0.1:9""#));
    }
}
