//! The proxy as a child process of the hub (JupyterHub's `ConfigurableHTTPProxy.start`,
//! `check_running` and `stop`).
//!
//! [`ManagedProxy::start`] stops a proxy left over by an earlier hub (found through the pid
//! file, and only if `/proc/<pid>/cmdline` shows a proxy serving this hub's API address: a
//! reused pid is never signalled), launches the command with the flags JupyterHub passes and
//! `CONFIGPROXY_AUTH_TOKEN` in its environment, and returns once the API answers. A supervisor
//! task then notices the child's exit at once (and checks its public port every
//! `check_running_interval`), restarts it and fires a [`SyncTrigger`] so the routes are restored.
//! [`ManagedProxy::stop`] sends SIGTERM to the child's process group, SIGKILL after
//! `stop_timeout`, and removes the pid file. The child's output goes to the hub's log.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hub_api::chp::AUTH_TOKEN_ENV;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

use super::ProxyError;
use super::chp::{ApiAddress, ChpClient};
use super::sync::SyncTrigger;

/// Program names recognised as a proxy when deciding whether a pid from the pid file may be
/// signalled (besides the configured command's own name).
const PROXY_NAMES: [&str; 2] = ["chp-proxy", "configurable-http-proxy"];
/// Interpreters and launchers: their names say nothing about what a process runs, so they never
/// make a process count as a proxy.
const GENERIC_PROGRAMS: [&str; 13] = [
    "sh", "bash", "dash", "zsh", "env", "node", "nodejs", "python", "python3", "sudo", "nice",
    "nohup", "timeout",
];
/// Lines of child output kept for error messages.
const TAIL_LINES: usize = 25;
/// Longest line forwarded to the log.
const MAX_LINE: usize = 4000;
/// A child that dies sooner than this after starting is restarted with a growing delay.
const QUICK_CRASH: Duration = Duration::from_secs(5);
/// Longest delay between restart attempts.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// The TLS files JupyterHub passes with `internal_ssl`: the API serves HTTPS and requires a
/// client certificate, and the proxy presents its own certificate to `https://` targets.
#[derive(Debug, Clone)]
pub struct InternalSsl {
    /// `--api-ssl-key`.
    pub api_key: PathBuf,
    /// `--api-ssl-cert`.
    pub api_cert: PathBuf,
    /// `--api-ssl-ca` (clients of the API must chain to it).
    pub api_ca: PathBuf,
    /// `--client-ssl-key`.
    pub client_key: PathBuf,
    /// `--client-ssl-cert`.
    pub client_cert: PathBuf,
    /// `--client-ssl-ca` (targets must chain to it).
    pub client_ca: PathBuf,
}

/// How to run the proxy process. The API address, token and routing mode come from the
/// [`ChpClient`] given to [`ManagedProxy::start`].
#[derive(Debug, Clone)]
pub struct ManagedProxyConfig {
    /// Program and leading arguments. A bare name is looked up beside the hub's executable
    /// first, then on `PATH`. Default `["chp-proxy"]`; `["configurable-http-proxy"]` works too.
    pub command: Vec<String>,
    /// Public bind address (`--ip`); `""` means all interfaces (JupyterHub's default).
    pub public_ip: String,
    /// Public port (`--port`), default 8000.
    pub public_port: u16,
    /// Public unix socket (`--socket`) instead of `public_ip`/`public_port`.
    pub public_socket: Option<PathBuf>,
    /// `--error-target`: the hub's error pages, `<hub url>/hub/error`.
    pub error_target: Option<String>,
    /// `--log-level`: `info`, or `debug` when the hub debugs.
    pub log_level: String,
    /// `--ssl-key` for a public HTTPS port.
    pub ssl_key: Option<PathBuf>,
    /// `--ssl-cert` for a public HTTPS port.
    pub ssl_cert: Option<PathBuf>,
    /// The `--api-ssl-*` and `--client-ssl-*` files of `internal_ssl`.
    pub internal_ssl: Option<InternalSsl>,
    /// More arguments, appended last.
    pub extra_args: Vec<String>,
    /// More environment for the child (it inherits the hub's environment otherwise).
    pub env: Vec<(String, String)>,
    /// Where the child's pid is written: `jupyterhub-proxy.pid` in the working directory.
    pub pid_file: PathBuf,
    /// How often the supervisor checks the running proxy (5 s). An exit is noticed at once.
    pub check_running_interval: Duration,
    /// How long to wait for a new proxy's API to answer (15 s).
    pub start_timeout: Duration,
    /// How long the proxy gets to exit after SIGTERM before SIGKILL (5 s).
    pub stop_timeout: Duration,
}

impl Default for ManagedProxyConfig {
    fn default() -> Self {
        ManagedProxyConfig {
            command: vec!["chp-proxy".into()],
            public_ip: String::new(),
            public_port: 8000,
            public_socket: None,
            error_target: None,
            log_level: "info".into(),
            ssl_key: None,
            ssl_cert: None,
            internal_ssl: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            pid_file: PathBuf::from("jupyterhub-proxy.pid"),
            check_running_interval: Duration::from_secs(5),
            start_timeout: Duration::from_secs(15),
            stop_timeout: Duration::from_secs(5),
        }
    }
}

/// A proxy process run, watched and restarted by the hub.
#[derive(Debug)]
pub struct ManagedProxy {
    shared: Arc<Shared>,
    stop_tx: Mutex<Option<oneshot::Sender<oneshot::Sender<()>>>>,
    supervisor: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    config: ManagedProxyConfig,
    program: PathBuf,
    args: Vec<String>,
    /// Program and arguments, quoted for messages.
    display: String,
    /// Names whose presence in a process's command line makes it a proxy we may stop.
    names: Vec<String>,
    client: ChpClient,
    api: ApiAddress,
    /// Pid of the running child; 0 while none runs.
    pid: AtomicU32,
    restarts: AtomicU64,
    on_restart: Option<SyncTrigger>,
}

/// One run of the child process.
struct Running {
    child: Child,
    pid: u32,
    started: Instant,
    readers: Vec<JoinHandle<()>>,
    tail: Tail,
}

type Tail = Arc<Mutex<VecDeque<String>>>;
type StopRequest = Result<oneshot::Sender<()>, oneshot::error::RecvError>;

impl ManagedProxy {
    /// Starts the proxy and its supervisor. Returns once the proxy's API answers `client`.
    ///
    /// `on_restart` is fired each time the supervisor restarted a dead proxy, so that routes are
    /// restored (the new proxy's table is empty).
    pub async fn start(
        config: ManagedProxyConfig,
        client: ChpClient,
        on_restart: Option<SyncTrigger>,
    ) -> Result<Self, ProxyError> {
        let api = client.config().api_address()?;
        let (program, leading) = resolve_command(&config.command)?;
        let mut args = leading;
        args.extend(proxy_args(&config, &api, client.host_routing()));
        let display = display_command(&program, &args);
        let names = proxy_names(&config.command, &program);
        let shared = Arc::new(Shared {
            config,
            program,
            args,
            display,
            names,
            client,
            api,
            pid: AtomicU32::new(0),
            restarts: AtomicU64::new(0),
            on_restart,
        });

        // A proxy that just exited may take a moment to release its port.
        let patience = if stop_stale_proxy(&shared).await? {
            Duration::from_secs(2)
        } else {
            Duration::ZERO
        };
        ensure_api_free(&shared, patience).await?;
        let running = spawn_proxy(&shared).await?;
        tracing::info!(
            proxy.pid = running.pid,
            "proxy started (pid {}): {}",
            running.pid,
            shared.display
        );
        let (stop_tx, stop_rx) = oneshot::channel();
        let supervisor = tokio::spawn(supervise(Arc::clone(&shared), running, stop_rx));
        Ok(ManagedProxy {
            shared,
            stop_tx: Mutex::new(Some(stop_tx)),
            supervisor: tokio::sync::Mutex::new(Some(supervisor)),
        })
    }

    /// Pid of the running proxy; `None` while it is being restarted or after [`Self::stop`].
    pub fn pid(&self) -> Option<u32> {
        match self.shared.pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// How many times the proxy was restarted after dying.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::SeqCst)
    }

    /// The command line the proxy runs with (without the environment).
    pub fn command_line(&self) -> &str {
        &self.shared.display
    }

    /// Stops the proxy (SIGTERM, then SIGKILL after `stop_timeout`) and removes the pid file.
    /// Waits until it is done; calling it again does nothing.
    pub async fn stop(&self) -> Result<(), ProxyError> {
        let stop_tx = self
            .stop_tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(stop_tx) = stop_tx {
            let (done_tx, done_rx) = oneshot::channel();
            if stop_tx.send(done_tx).is_ok() {
                // An error means the supervisor ended without answering; it cleans up anyway.
                let _ = done_rx.await;
            }
        }
        if let Some(task) = self.supervisor.lock().await.take() {
            task.await.map_err(|e| ProxyError::Io {
                context: "the proxy supervisor failed".into(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        Ok(())
    }
}

// === supervision ===

async fn supervise(
    shared: Arc<Shared>,
    mut running: Running,
    mut stop_rx: oneshot::Receiver<oneshot::Sender<()>>,
) {
    // tokio's interval refuses a zero period.
    let interval = shared
        .config
        .check_running_interval
        .max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut quick_crashes = 0u32;
    let mut unanswered = 0u32;
    loop {
        let exited = tokio::select! {
            biased;
            request = &mut stop_rx => {
                finish(&shared, Some(running), request).await;
                return;
            }
            status = running.child.wait() => status,
            _ = ticker.tick() => {
                // The exit arm above notices a dead child at once; this notices one that stopped
                // accepting connections. A TCP connect is cheap and, unlike an API call, does not
                // add a line to the proxy's log every few seconds.
                if public_port_answers(&shared.config).await {
                    unanswered = 0;
                } else {
                    unanswered += 1;
                    if unanswered == 2 {
                        tracing::warn!(
                            proxy.pid = running.pid,
                            "the proxy is running but does not accept connections on its public port"
                        );
                    }
                }
                continue;
            }
        };

        let uptime = running.started.elapsed();
        shared.pid.store(0, Ordering::SeqCst);
        drain(&mut running.readers).await;
        let status = match exited {
            Ok(status) => describe_exit(status),
            Err(e) => format!("an unknown status ({e})"),
        };
        // Its output is already in the log, just above.
        tracing::error!(
            proxy.pid = running.pid,
            "the proxy (pid {}) exited with {status} after {:.1} s; restarting it",
            running.pid,
            uptime.as_secs_f64(),
        );
        remove_pid_file(&shared.config.pid_file, running.pid);
        // Restart at once, unless it keeps dying right after starting: then back off.
        quick_crashes = if uptime < QUICK_CRASH {
            quick_crashes + 1
        } else {
            0
        };
        let mut crash_delay = match quick_crashes {
            0 | 1 => Duration::ZERO,
            n => (Duration::from_millis(250) * 2u32.saturating_pow(n.min(10) - 1))
                .min(MAX_RESTART_DELAY),
        };

        running = loop {
            if !crash_delay.is_zero() {
                tokio::select! {
                    biased;
                    request = &mut stop_rx => {
                        finish(&shared, None, request).await;
                        return;
                    }
                    () = sleep(crash_delay) => {}
                }
            }
            match spawn_proxy(&shared).await {
                Ok(new) => break new,
                Err(e) => {
                    tracing::error!("cannot restart the proxy: {e}");
                    crash_delay = (crash_delay * 2)
                        .max(interval)
                        .min(MAX_RESTART_DELAY.max(interval));
                }
            }
        };
        shared.restarts.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(
            proxy.pid = running.pid,
            "proxy restarted (pid {}); restoring its routes",
            running.pid
        );
        if let Some(trigger) = &shared.on_restart {
            trigger.request();
        }
        unanswered = 0;
    }
}

/// Stops the child if one runs, removes the pid file and answers the stop request.
async fn finish(shared: &Shared, running: Option<Running>, request: StopRequest) {
    if let Some(mut running) = running {
        tracing::info!(
            proxy.pid = running.pid,
            "stopping the proxy (pid {})",
            running.pid
        );
        terminate(&mut running, shared.config.stop_timeout).await;
        remove_pid_file(&shared.config.pid_file, running.pid);
    }
    shared.pid.store(0, Ordering::SeqCst);
    if let Ok(reply) = request {
        let _ = reply.send(());
    }
}

/// SIGTERM to the child's process group, SIGKILL if it is still there after `grace`.
async fn terminate(running: &mut Running, grace: Duration) {
    if let Ok(Some(_)) = running.child.try_wait() {
        drain(&mut running.readers).await;
        return;
    }
    signal_group(running.pid, Signal::SIGTERM);
    if timeout(grace, running.child.wait()).await.is_err() {
        tracing::warn!(
            proxy.pid = running.pid,
            "the proxy did not exit within {grace:?} of SIGTERM; sending SIGKILL"
        );
        signal_group(running.pid, Signal::SIGKILL);
        let _ = running.child.kill().await;
    }
    drain(&mut running.readers).await;
}

/// Signals the process group the child leads (it was started in its own group, so wrapper
/// scripts and their children go too); falls back to the pid alone.
fn signal_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    if killpg(Pid::from_raw(raw), signal).is_err() {
        let _ = kill(Pid::from_raw(raw), signal);
    }
}

/// Waits briefly for the output forwarders to reach end of file, so the tail is complete.
async fn drain(readers: &mut Vec<JoinHandle<()>>) {
    for reader in readers.drain(..) {
        let _ = timeout(Duration::from_secs(1), reader).await;
    }
}

// === starting ===

/// Launches the child and waits until its API and public port answer.
async fn spawn_proxy(shared: &Shared) -> Result<Running, ProxyError> {
    let config = &shared.config;
    let launch_error = |reason: String, tail: Option<&Tail>| ProxyError::Launch {
        command: shared.display.clone(),
        reason,
        output: tail.map(tail_text).unwrap_or_default(),
    };
    let mut command = Command::new(&shared.program);
    command
        .args(&shared.args)
        .env(AUTH_TOKEN_ENV, &shared.client.config().auth_token)
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: a Ctrl-C meant for the hub does not kill the proxy before the
        // hub has stopped it in order, and stop() reaches wrapper scripts' children.
        .process_group(0);
    let mut child = command.spawn().map_err(|e| {
        launch_error(
            format!("cannot execute {}: {e}", shared.program.display()),
            None,
        )
    })?;
    let pid = child.id().unwrap_or(0);
    let tail: Tail = Arc::default();
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(forward_output(stdout, pid, Arc::clone(&tail)));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(forward_output(stderr, pid, Arc::clone(&tail)));
    }
    let mut running = Running {
        child,
        pid,
        started: Instant::now(),
        readers,
        tail,
    };

    if let Err(source) = std::fs::write(&config.pid_file, pid.to_string()) {
        terminate(&mut running, Duration::from_secs(1)).await;
        return Err(ProxyError::Io {
            context: format!("writing the proxy pid file {}", config.pid_file.display()),
            source,
        });
    }

    match wait_until_ready(shared, &mut running).await {
        Ok(()) => {
            shared.pid.store(pid, Ordering::SeqCst);
            Ok(running)
        }
        Err(reason) => {
            terminate(&mut running, Duration::from_secs(2)).await;
            remove_pid_file(&config.pid_file, pid);
            Err(launch_error(reason, Some(&running.tail)))
        }
    }
}

async fn wait_until_ready(shared: &Shared, running: &mut Running) -> Result<(), String> {
    let deadline = Instant::now() + shared.config.start_timeout;
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            drain(&mut running.readers).await;
            return Err(format!(
                "it exited with {} before its API answered",
                describe_exit(status)
            ));
        }
        let last_error = match shared.client.ping(Duration::from_secs(1)).await {
            Ok(()) if public_port_answers(&shared.config).await => {
                // A proxy that was already there could have answered; make sure ours lives.
                if let Ok(Some(status)) = running.child.try_wait() {
                    drain(&mut running.readers).await;
                    return Err(format!("it exited with {}", describe_exit(status)));
                }
                return Ok(());
            }
            Ok(()) => "the API answers but the public port does not".to_owned(),
            Err(ProxyError::Status { status: 403, .. }) => {
                return Err(
                    "its API refused the hub's token (403): is another proxy using that port?"
                        .into(),
                );
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "its API at {} did not answer within {:?} ({last_error})",
                shared.client.config().api_url,
                shared.config.start_timeout
            ));
        }
        sleep(Duration::from_millis(50)).await;
    }
}

async fn public_port_answers(config: &ManagedProxyConfig) -> bool {
    let attempt = async {
        match &config.public_socket {
            Some(path) => tokio::net::UnixStream::connect(path).await.is_ok(),
            None => {
                let host = connect_host(&config.public_ip);
                tokio::net::TcpStream::connect((host, config.public_port))
                    .await
                    .is_ok()
            }
        }
    };
    timeout(Duration::from_secs(1), attempt)
        .await
        .unwrap_or(false)
}

/// Where to connect to reach a listener bound to `ip` (all-interfaces binds via loopback).
fn connect_host(ip: &str) -> &str {
    match ip.trim_start_matches('[').trim_end_matches(']') {
        "" | "*" | "0.0.0.0" => "127.0.0.1",
        "::" => "::1",
        other => other,
    }
}

/// Refuses to start when something still listens on the API address after `patience`: a proxy
/// the pid file does not know about would otherwise answer in place of ours.
async fn ensure_api_free(shared: &Shared, patience: Duration) -> Result<(), ProxyError> {
    let busy = |what: String| ProxyError::Launch {
        command: shared.display.clone(),
        reason: format!(
            "something already listens on the proxy API address {what}; stop it, or configure \
             the hub not to start the proxy"
        ),
        output: String::new(),
    };
    let deadline = Instant::now() + patience;
    loop {
        let listening = match &shared.api {
            ApiAddress::Tcp { host, port } => {
                let connect = tokio::net::TcpStream::connect((connect_host(host), *port));
                matches!(
                    timeout(Duration::from_millis(500), connect).await,
                    Ok(Ok(_))
                )
            }
            ApiAddress::Unix(path) => tokio::net::UnixStream::connect(path).await.is_ok(),
        };
        if !listening {
            break;
        }
        if Instant::now() >= deadline {
            return Err(busy(match &shared.api {
                ApiAddress::Tcp { host, port } => format!("{host}:{port}"),
                ApiAddress::Unix(path) => path.display().to_string(),
            }));
        }
        sleep(Duration::from_millis(50)).await;
    }
    if let ApiAddress::Unix(path) = &shared.api
        && path.exists()
    {
        // Nobody accepts on it: a socket file left by a proxy that died.
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The flags JupyterHub passes to configurable-http-proxy (`ConfigurableHTTPProxy.start`).
fn proxy_args(config: &ManagedProxyConfig, api: &ApiAddress, host_routing: bool) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut push = |flag: &str, value: Option<String>| {
        args.push(flag.to_owned());
        if let Some(value) = value {
            args.push(value);
        }
    };
    let path = |p: &PathBuf| Some(p.display().to_string());
    match &config.public_socket {
        Some(socket) => push("--socket", path(socket)),
        None => {
            push("--ip", Some(config.public_ip.clone()));
            push("--port", Some(config.public_port.to_string()));
        }
    }
    match api {
        ApiAddress::Tcp { host, port } => {
            push("--api-ip", Some(host.clone()));
            push("--api-port", Some(port.to_string()));
        }
        ApiAddress::Unix(socket) => push("--api-socket", path(socket)),
    }
    if let Some(target) = &config.error_target {
        push("--error-target", Some(target.clone()));
    }
    push("--log-level", Some(config.log_level.clone()));
    if host_routing {
        push("--host-routing", None);
    }
    if let Some(key) = &config.ssl_key {
        push("--ssl-key", path(key));
    }
    if let Some(cert) = &config.ssl_cert {
        push("--ssl-cert", path(cert));
    }
    if let Some(ssl) = &config.internal_ssl {
        push("--api-ssl-key", path(&ssl.api_key));
        push("--api-ssl-cert", path(&ssl.api_cert));
        push("--api-ssl-ca", path(&ssl.api_ca));
        push("--api-ssl-request-cert", None);
        push("--api-ssl-reject-unauthorized", None);
        push("--client-ssl-key", path(&ssl.client_key));
        push("--client-ssl-cert", path(&ssl.client_cert));
        push("--client-ssl-ca", path(&ssl.client_ca));
        push("--client-ssl-request-cert", None);
        push("--client-ssl-reject-unauthorized", None);
    }
    args.extend(config.extra_args.iter().cloned());
    args
}

/// Finds the program: a path is used as given; a bare name is looked up beside the hub's own
/// executable first (where `chp-proxy` is installed with it), then on `PATH`.
fn resolve_command(command: &[String]) -> Result<(PathBuf, Vec<String>), ProxyError> {
    let Some((first, rest)) = command.split_first() else {
        return Err(ProxyError::Config("the proxy command is empty".into()));
    };
    let not_found = |reason: String| ProxyError::Launch {
        command: first.clone(),
        reason,
        output: String::new(),
    };
    if first.contains('/') {
        let path = PathBuf::from(first);
        return if path.is_file() {
            Ok((path, rest.to_vec()))
        } else {
            Err(not_found(format!("{} does not exist", path.display())))
        };
    }
    let beside_hub = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(first)));
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(first))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    beside_hub
        .into_iter()
        .chain(on_path)
        .find(|candidate| is_executable(candidate))
        .map(|path| (path, rest.to_vec()))
        .ok_or_else(|| {
            not_found(format!(
                "`{first}` was found neither beside the hub's executable nor on PATH; install it \
                 or configure the proxy command with its full path"
            ))
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn display_command(program: &Path, args: &[String]) -> String {
    let mut out = quote_arg(&program.display().to_string());
    for arg in args {
        out.push(' ');
        out.push_str(&quote_arg(arg));
    }
    out
}

fn quote_arg(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(signal) => format!("signal {signal}"),
            Err(_) => format!("signal {signal}"),
        },
        (None, None) => status.to_string(),
    }
}

// === stale proxies and the pid file ===

/// Stops the proxy named by the pid file, if that pid really runs our proxy; a pid file naming
/// anything else (a reused pid) is discarded without signalling anybody. Returns whether a
/// proxy was stopped.
async fn stop_stale_proxy(shared: &Shared) -> Result<bool, ProxyError> {
    let pid_file = &shared.config.pid_file;
    let text = match std::fs::read_to_string(pid_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(ProxyError::Io {
                context: format!("reading the proxy pid file {}", pid_file.display()),
                source,
            });
        }
    };
    let discard = |why: String| {
        tracing::warn!("ignoring the proxy pid file {}: {why}", pid_file.display());
        let _ = std::fs::remove_file(pid_file);
    };
    let pid = match text.trim().parse::<i32>() {
        Ok(pid) if pid > 1 && u32::try_from(pid).is_ok_and(|p| p != std::process::id()) => pid,
        _ => {
            discard(format!(
                "{:?} is not the pid of another process",
                text.trim()
            ));
            return Ok(false);
        }
    };
    if !process_alive(pid) {
        tracing::debug!("removing stale proxy pid file (pid {pid} is gone)");
        let _ = std::fs::remove_file(pid_file);
        return Ok(false);
    }
    if !is_our_proxy(pid, shared) {
        discard(format!(
            "pid {pid} is not a proxy serving this hub's API address ({}), so it is left alone",
            cmdline(pid)
                .map(|argv| argv.join(" "))
                .unwrap_or_else(|| "command line unreadable".into())
        ));
        return Ok(false);
    }
    tracing::warn!("stopping the proxy left running by an earlier hub (pid {pid})");
    let grace = shared.config.stop_timeout;
    for signal in [Signal::SIGTERM, Signal::SIGTERM, Signal::SIGKILL] {
        // Checked again before every signal: the pid could have been reused meanwhile.
        if !process_alive(pid) || !is_our_proxy(pid, shared) {
            break;
        }
        let _ = kill(Pid::from_raw(pid), signal);
        let deadline = Instant::now() + grace / 2;
        while Instant::now() < deadline && process_alive(pid) {
            sleep(Duration::from_millis(50)).await;
        }
    }
    if process_alive(pid) {
        return Err(ProxyError::Launch {
            command: shared.display.clone(),
            reason: format!("the proxy left by an earlier hub (pid {pid}) does not exit"),
            output: String::new(),
        });
    }
    let _ = std::fs::remove_file(pid_file);
    Ok(true)
}

/// Removes the pid file if it still names `pid` (a newer hub may have replaced it).
fn remove_pid_file(path: &Path, pid: u32) {
    if std::fs::read_to_string(path).is_ok_and(|text| text.trim() == pid.to_string()) {
        let _ = std::fs::remove_file(path);
    }
}

/// The process's arguments from `/proc/<pid>/cmdline`; `None` if unreadable (gone, hidden, or
/// no `/proc`: then nothing is ever signalled).
fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

/// Whether `pid` exists and has not finished exiting. A zombie leader whose other threads are
/// still tearing down (and may still hold its sockets) counts as alive.
fn process_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may contain anything.
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    if !matches!(state, Some("Z" | "X" | "x")) {
        return true;
    }
    std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|threads| threads.count() > 1)
}

/// Whether `pid` runs a proxy (by name) listening on this hub's API address (by its flags): a
/// proxy of another hub on the same machine that happens to get the old pid is not ours.
fn is_our_proxy(pid: i32, shared: &Shared) -> bool {
    cmdline(pid).is_some_and(|argv| {
        is_proxy_cmdline(&argv, &shared.names) && serves_api(&argv, &shared.api)
    })
}

/// The names that identify the proxy: the well-known ones, plus the configured program's and
/// any script path among its leading arguments, minus generic interpreter names.
fn proxy_names(command: &[String], program: &Path) -> Vec<String> {
    let mut names: Vec<String> = PROXY_NAMES.iter().map(|&n| n.to_owned()).collect();
    let scripts = command.iter().skip(1).filter(|arg| arg.contains('/'));
    let candidates = command
        .iter()
        .take(1)
        .map(Path::new)
        .chain([program])
        .chain(scripts.map(Path::new));
    for path in candidates {
        if let Some(name) = path.file_name().and_then(|n| n.to_str())
            && !GENERIC_PROGRAMS.contains(&name)
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_owned());
        }
    }
    names
}

/// Whether a proxy command line listens on `api`, judging by `--api-port`/`--api-socket` (or the
/// default API port, `--port` + 1).
fn serves_api(argv: &[String], api: &ApiAddress) -> bool {
    let flag = |name: &str| -> Option<&str> {
        let with_eq = format!("{name}=");
        argv.iter().enumerate().find_map(|(i, arg)| {
            if arg == name {
                argv.get(i + 1).map(String::as_str)
            } else {
                arg.strip_prefix(&with_eq)
            }
        })
    };
    match api {
        ApiAddress::Unix(path) => flag("--api-socket").is_some_and(|v| Path::new(v) == path),
        ApiAddress::Tcp { port, .. } => {
            if flag("--api-socket").is_some() {
                return false;
            }
            match flag("--api-port") {
                Some(value) => value.parse::<u16>().ok() == Some(*port),
                None => {
                    let public: u16 = flag("--port").and_then(|p| p.parse().ok()).unwrap_or(8000);
                    public.checked_add(1) == Some(*port)
                }
            }
        }
    }
}

/// A command line runs a proxy if its program, or the script an interpreter runs (`node
/// …/configurable-http-proxy`), has one of `names`. A process title rewritten to a single
/// string (`configurable-http-proxy --ip …`) is recognised by its first word.
fn is_proxy_cmdline(argv: &[String], names: &[String]) -> bool {
    argv.iter().take(2).any(|arg| {
        let first_word = arg.split_whitespace().next().unwrap_or_default();
        [arg.as_str(), first_word].iter().any(|candidate| {
            Path::new(candidate)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|name| names.iter().any(|n| n == name))
        })
    })
}

// === child output ===

/// Forwards each line the child prints to the hub's log, at the level the line names, and
/// keeps the last lines for error messages.
fn forward_output<R>(stream: R, pid: u32, tail: Tail) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = strip_ansi(&String::from_utf8_lossy(&buf));
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            let line = match line.char_indices().nth(MAX_LINE) {
                Some((cut, _)) => &line[..cut],
                None => line,
            };
            match line_level(line) {
                tracing::Level::ERROR => tracing::error!(proxy.pid = pid, "proxy: {line}"),
                tracing::Level::WARN => tracing::warn!(proxy.pid = pid, "proxy: {line}"),
                tracing::Level::INFO => tracing::info!(proxy.pid = pid, "proxy: {line}"),
                _ => tracing::debug!(proxy.pid = pid, "proxy: {line}"),
            }
            let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
        }
    })
}

fn tail_text(tail: &Tail) -> String {
    let tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = String::new();
    for line in tail.iter() {
        let _ = writeln!(out, "{line}");
    }
    out.trim_end().to_owned()
}

/// Removes ANSI escape sequences (configurable-http-proxy always colours its log).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

/// The level a log line names among its first words (`… [ConfigProxy] error: …`, `… WARN …`);
/// info when it names none.
fn line_level(line: &str) -> tracing::Level {
    for word in line.split_whitespace().take(4) {
        let word = word.trim_end_matches(':').to_ascii_lowercase();
        match word.as_str() {
            "error" | "fatal" => return tracing::Level::ERROR,
            "warn" | "warning" => return tracing::Level::WARN,
            "info" => return tracing::Level::INFO,
            "debug" | "trace" => return tracing::Level::DEBUG,
            _ => {}
        }
    }
    tracing::Level::INFO
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        PROXY_NAMES.iter().map(|&n| n.to_owned()).collect()
    }

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|&a| a.to_owned()).collect()
    }

    #[test]
    fn recognises_proxies_only() {
        let n = names();
        assert!(is_proxy_cmdline(
            &argv(&["/opt/bin/chp-proxy", "--ip", ""]),
            &n
        ));
        assert!(is_proxy_cmdline(
            &argv(&[
                "node",
                "/x/node_modules/.bin/configurable-http-proxy",
                "--port",
                "1"
            ]),
            &n
        ));
        assert!(is_proxy_cmdline(
            &argv(&["configurable-http-proxy --ip 1"]),
            &n
        ));
        assert!(!is_proxy_cmdline(&argv(&["sleep", "60"]), &n));
        assert!(!is_proxy_cmdline(&argv(&["bash", "-c", "chp-proxy"]), &n));
        assert!(!is_proxy_cmdline(
            &argv(&["python3", "x.py", "chp-proxy"]),
            &n
        ));
        assert!(!is_proxy_cmdline(&[], &n));
    }

    #[test]
    fn proxy_names_skip_interpreters() {
        let program = Path::new("/usr/bin/node");
        let names = proxy_names(&argv(&["node", "/opt/chp/bin/my-chp", "--x"]), program);
        assert_eq!(
            names,
            argv(&["chp-proxy", "configurable-http-proxy", "my-chp"])
        );
        let names = proxy_names(&argv(&["sh", "-c", "exec chp-proxy"]), Path::new("/bin/sh"));
        assert_eq!(names, names_only());
        let names = proxy_names(&argv(&["my-proxy"]), Path::new("/opt/bin/my-proxy"));
        assert_eq!(names.last().map(String::as_str), Some("my-proxy"));

        fn names_only() -> Vec<String> {
            PROXY_NAMES.iter().map(|&n| n.to_owned()).collect()
        }
    }

    #[test]
    fn api_address_of_a_command_line() {
        let tcp = ApiAddress::Tcp {
            host: "127.0.0.1".into(),
            port: 8001,
        };
        assert!(serves_api(
            &argv(&["chp-proxy", "--api-port", "8001"]),
            &tcp
        ));
        assert!(serves_api(&argv(&["chp-proxy", "--api-port=8001"]), &tcp));
        assert!(serves_api(&argv(&["chp-proxy"]), &tcp));
        assert!(serves_api(&argv(&["chp-proxy", "--port", "8000"]), &tcp));
        assert!(!serves_api(&argv(&["chp-proxy", "--port", "9000"]), &tcp));
        assert!(!serves_api(
            &argv(&["chp-proxy", "--api-port", "9001"]),
            &tcp
        ));
        assert!(!serves_api(
            &argv(&["chp-proxy", "--api-socket", "/s"]),
            &tcp
        ));
        let unix = ApiAddress::Unix("/run/api.sock".into());
        assert!(serves_api(
            &argv(&["chp-proxy", "--api-socket", "/run/api.sock"]),
            &unix
        ));
        assert!(!serves_api(
            &argv(&["chp-proxy", "--api-port", "8001"]),
            &unix
        ));
    }

    #[test]
    fn arguments_match_jupyterhub() {
        let config = ManagedProxyConfig {
            public_port: 8000,
            error_target: Some("http://127.0.0.1:8081/hub/error".into()),
            ..ManagedProxyConfig::default()
        };
        let api = ApiAddress::Tcp {
            host: "127.0.0.1".into(),
            port: 8001,
        };
        assert_eq!(
            proxy_args(&config, &api, false),
            argv(&[
                "--ip",
                "",
                "--port",
                "8000",
                "--api-ip",
                "127.0.0.1",
                "--api-port",
                "8001",
                "--error-target",
                "http://127.0.0.1:8081/hub/error",
                "--log-level",
                "info",
            ])
        );
        let config = ManagedProxyConfig {
            ssl_key: Some("k.pem".into()),
            ssl_cert: Some("c.pem".into()),
            log_level: "debug".into(),
            extra_args: vec!["--keep-alive-timeout".into(), "1000".into()],
            ..ManagedProxyConfig::default()
        };
        let args = proxy_args(&config, &ApiAddress::Unix("/run/api.sock".into()), true);
        assert_eq!(
            args,
            argv(&[
                "--ip",
                "",
                "--port",
                "8000",
                "--api-socket",
                "/run/api.sock",
                "--log-level",
                "debug",
                "--host-routing",
                "--ssl-key",
                "k.pem",
                "--ssl-cert",
                "c.pem",
                "--keep-alive-timeout",
                "1000",
            ])
        );
    }

    #[test]
    fn output_lines() {
        assert_eq!(
            strip_ansi("\u{1b}[32minfo\u{1b}[39m: Proxying"),
            "info: Proxying"
        );
        assert_eq!(
            line_level("12:00:00.000 [ConfigProxy] error: 503 GET /x"),
            tracing::Level::ERROR
        );
        assert_eq!(
            line_level("2026-01-01T00:00:00Z  WARN chp_proxy: slow"),
            tracing::Level::WARN
        );
        assert_eq!(line_level("listening"), tracing::Level::INFO);
    }

    #[test]
    fn command_display_and_lookup() {
        assert_eq!(
            display_command(Path::new("/bin/chp-proxy"), &argv(&["--ip", "", "a b"])),
            "/bin/chp-proxy --ip '' 'a b'"
        );
        assert!(resolve_command(&argv(&["sh"])).is_ok());
        assert!(resolve_command(&argv(&["no-such-proxy-command-x"])).is_err());
        assert!(resolve_command(&argv(&["/no/such/file"])).is_err());
        assert!(resolve_command(&[]).is_err());
    }

    #[test]
    fn this_process_is_alive_and_not_a_proxy() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(process_alive(me));
        let argv = cmdline(me).unwrap();
        assert!(!is_proxy_cmdline(&argv, &names()));
        assert!(!process_alive(i32::MAX));
    }
}
