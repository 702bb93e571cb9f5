//! `singleuser-auth-shim`: fronts a user's Jupyter server (or any web app) and lets in only
//! those the hub allows, in place of `jupyterhub-singleuser`.
//!
//! Layout:
//! - [`cli`] and [`config`]: flags and the `JUPYTERHUB_*` environment, checked into [`Config`].
//! - [`child`]: the app: its command line, private socket or port, start, readiness, exit.
//! - [`service`]: one request: OAuth callback, logout, credentials, checks, forwarding.
//! - [`oauth`]: the login redirect, state and PKCE; [`session`]: the token → owner cache;
//!   [`access`]: access scopes; [`xsrf`]: cross-site checks; [`signing`] and [`cookies`]:
//!   the shim's cookies.
//! - [`hub_client`]: calls to the hub; [`activity`]: activity reports.
//! - [`forward`] and [`body`]: forwarding to the app through `http-forward`.
//! - [`run`]: starts the app, serves until it exits, passes signals on.

pub mod access;
pub mod activity;
pub mod body;
pub mod child;
pub mod cli;
pub mod config;
pub mod cookies;
pub mod forward;
pub mod hub_client;
pub mod oauth;
pub mod service;
pub mod session;
pub mod signing;
pub mod xsrf;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use daemon_support::listen::{HttpOptions, Listener};
use http::HeaderValue;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

use crate::child::{ChildSpec, Endpoint, HostEnv};
pub use crate::config::Config;
use crate::hub_client::HubClient;
use crate::service::{Shim, ShimService};

/// The version the shim reports in `X-JupyterHub-Version`: the JupyterHub release whose
/// single-user protocol it implements, with this implementation's version as the local part
/// (PEP 440, which the hub and its tools parse).
pub const VERSION: &str = concat!("6.1.1+rs.", env!("CARGO_PKG_VERSION"));

/// Exit code for an unusable configuration.
pub const EXIT_CONFIG: u8 = 64;

/// The signals passed on to the app.
#[derive(Debug)]
pub struct Signals {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Installs handlers for SIGTERM, SIGINT, SIGHUP and SIGQUIT; from now on they are queued
    /// for [`Signals::recv`] instead of ending the process.
    ///
    /// # Errors
    /// When a handler cannot be installed.
    pub fn install() -> std::io::Result<Self> {
        let mut streams = Vec::new();
        for (sig, kind) in [
            (Signal::SIGTERM, SignalKind::terminate()),
            (Signal::SIGINT, SignalKind::interrupt()),
            (Signal::SIGHUP, SignalKind::hangup()),
            (Signal::SIGQUIT, SignalKind::quit()),
        ] {
            streams.push((sig, signal(kind)?));
        }
        Ok(Self { streams })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Signal {
        let futures = self.streams.iter_mut().map(|(sig, stream)| {
            let sig = *sig;
            Box::pin(async move {
                stream.recv().await;
                sig
            })
        });
        futures_util::future::select_all(futures).await.0
    }
}

/// Values from the shim's own environment the app's command needs.
#[derive(Debug, Clone, Default)]
pub struct OwnedHostEnv {
    /// `$HOME`.
    pub home: Option<String>,
    /// `$PATH`.
    pub path: Option<String>,
    /// `$XDG_RUNTIME_DIR`.
    pub runtime_dir: Option<String>,
    /// `$JUPYTER_CONFIG_PATH`.
    pub jupyter_config_path: Option<String>,
}

fn pass_on(pid: Pid, sig: Signal) {
    tracing::info!("passing {sig} on to the app");
    if let Err(e) = nix::sys::signal::kill(pid, sig) {
        tracing::debug!("could not signal the app: {e}");
    }
}

/// `jupyterhub-singleuser`'s startup check: `GET $JUPYTERHUB_API_URL` until it answers 2xx
/// (5 tries, waiting 2, 4, 8 and 16 s), warning when the major versions differ.
async fn check_hub_version(hub: HubClient) -> anyhow::Result<()> {
    let waits = [2, 4, 8, 16];
    let mut attempt = 0;
    let version = loop {
        match hub.version().await {
            Ok(v) => break v,
            Err(e) if attempt < waits.len() => {
                tracing::warn!("the hub is not answering yet: {e}");
                tokio::time::sleep(Duration::from_secs(waits[attempt])).await;
                attempt += 1;
            }
            Err(e) => return Err(e).context("checking the hub's version"),
        }
    };
    let ours = VERSION.split(['.', '+']).next().unwrap_or_default();
    match version {
        None => tracing::warn!("the hub sends no version header, which means it is likely < 0.8"),
        Some(v) if v.split(['.', '+']).next() != Some(ours) => tracing::warn!(
            "the hub has version {v}, this shim {VERSION}: different major versions could \
             cause failures to authenticate and redirect loops"
        ),
        Some(v) => tracing::debug!("the hub has version {v}"),
    }
    Ok(())
}

async fn bind(host: &str, port: u16) -> anyhow::Result<Listener> {
    if host.is_empty() {
        // Every interface: IPv6 and IPv4 where possible, else IPv4 only.
        if let Ok(l) = Listener::bind_tcp((std::net::Ipv6Addr::UNSPECIFIED, port).into()).await {
            return Ok(l);
        }
        return Listener::bind_tcp((std::net::Ipv4Addr::UNSPECIFIED, port).into())
            .await
            .with_context(|| format!("binding port {port}"));
    }
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving {host:?}"))?
        .next()
        .with_context(|| format!("{host:?} has no address"))?;
    Listener::bind_tcp(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

fn describe_command(spec: &ChildSpec, argv: &[String]) -> String {
    match spec {
        // The rest may hold the app's token.
        ChildSpec::Jupyter { .. } => argv.iter().take(2).cloned().collect::<Vec<_>>().join(" "),
        ChildSpec::Command { .. } => argv.first().cloned().unwrap_or_default(),
    }
}

/// Starts the app, waits until it accepts connections, serves until it exits (signals the
/// shim receives are passed on to it), and returns the exit code to leave with: the app's.
///
/// Call it on the runtime's main thread (`block_on`): the app is started from the calling
/// thread, and its parent-death signal is tied to that thread.
pub async fn run(config: Config, mut signals: Signals, host: OwnedHostEnv) -> u8 {
    match run_inner(config, &mut signals, host).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            1
        }
    }
}

async fn run_inner(
    config: Config,
    signals: &mut Signals,
    host: OwnedHostEnv,
) -> anyhow::Result<u8> {
    let key = match &config.auth.cookie_secret_file {
        Some(path) => signing::CookieKey::from_file(path)?,
        None => signing::CookieKey::random(),
    };
    let hub = HubClient::new(config.hub.clone()).context("the hub client")?;
    let server_tls = config
        .bind
        .tls
        .as_ref()
        .map(daemon_support::tls::ServerTls::build)
        .transpose()
        .context("TLS of the server ($JUPYTERHUB_SSL_*)")?;
    if let ChildSpec::Jupyter {
        disable_user_config: true,
        ..
    } = &config.child
    {
        tracing::warn!(
            "JUPYTERHUB_DISABLE_USER_CONFIG is set, but the shim cannot keep Jupyter from \
             reading the user's configuration; authentication is not affected by it"
        );
    }

    let prepared = child::prepare(
        &config.child,
        &config.prefix,
        HostEnv {
            home: host.home.as_deref(),
            path: host.path.as_deref(),
            runtime_dir: host.runtime_dir.as_deref(),
            jupyter_config_path: host.jupyter_config_path.as_deref(),
        },
        &child::HubInfo {
            hub_host: &config.hub.hub_host,
            hub_prefix: &config.hub.hub_prefix,
            user: &config.hub.user,
            server_name: &config.hub.server_name,
        },
    )
    .context("preparing the app's private directory")?;
    let described = describe_command(&config.child, &prepared.argv);
    let mut process = child::spawn(&prepared.argv, &prepared.env)
        .with_context(|| format!("starting the app ({described})"))?;
    let pid = process
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
        .context("the app has no process id")?;
    let endpoint = prepared.target.endpoint.clone();
    tracing::info!(
        "started the app: {described} (pid {pid}), listening on {}",
        match &endpoint {
            Endpoint::Tcp(a) => a.to_string(),
            Endpoint::Unix(p) => p.display().to_string(),
        }
    );

    let version_check = tokio::spawn(check_hub_version(hub.clone()));
    let ready = {
        let ready = child::wait_ready(&mut process, &endpoint, config.child_start_timeout);
        tokio::pin!(ready);
        loop {
            tokio::select! {
                r = &mut ready => break r,
                sig = signals.recv() => pass_on(pid, sig),
            }
        }
    };
    match ready {
        Ok(()) => {}
        Err(child::NotReady::Exited(status)) => {
            tracing::error!("the app exited before accepting connections: {status}");
            return Ok(child::exit_code(status));
        }
        Err(e) => {
            tracing::error!("{e}; stopping it");
            pass_on(pid, Signal::SIGTERM);
            let status = wait_or_kill(&mut process, pid, Duration::from_secs(10)).await;
            tracing::debug!("the app ended: {status:?}");
            return Ok(1);
        }
    }
    tokio::pin!(version_check);
    let version_ok = loop {
        tokio::select! {
            r = &mut version_check => break r.map_err(anyhow::Error::from).and_then(|r| r),
            status = process.wait() => {
                let status = status?;
                tracing::error!("the app exited: {status}");
                return Ok(child::exit_code(status));
            }
            sig = signals.recv() => pass_on(pid, sig),
        }
    };
    if let Err(e) = version_ok {
        tracing::error!("{e:#}; stopping");
        pass_on(pid, Signal::SIGTERM);
        let _ = wait_or_kill(&mut process, pid, Duration::from_secs(10)).await;
        return Ok(1);
    }

    let listener = match bind(&config.bind.host, config.bind.port).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e:#}; stopping the app");
            pass_on(pid, Signal::SIGTERM);
            let _ = wait_or_kill(&mut process, pid, Duration::from_secs(10)).await;
            return Ok(1);
        }
    };
    let scheme = if server_tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        user.name = %config.hub.user,
        server.name = %config.hub.server_name,
        "singleuser-auth-shim {VERSION} serving {scheme}://{}{} for {}",
        listener.describe(),
        config.prefix,
        config.hub.user,
    );

    let upstream = forward::Upstream::new(&endpoint);
    let traffic = Arc::new(activity::Activity::default());
    let jupyter = matches!(config.child, ChildSpec::Jupyter { .. });
    let login_cookie = if config.auth.cookie_host_prefix {
        format!("__Host-{}", config.hub.client_id)
    } else {
        config.hub.client_id.clone()
    };
    let identify: Arc<dyn session::Identify> = Arc::new(hub.clone());
    let shim = Arc::new(Shim {
        key,
        sessions: session::Sessions::new(
            identify,
            config.auth.cache_ttl,
            config.auth.hub_down_grace,
        ),
        states: oauth::OAuthStates::default(),
        hub: hub.clone(),
        upstream: upstream.clone(),
        target: prepared.target.clone(),
        traffic: traffic.clone(),
        version: HeaderValue::from_static(VERSION),
        state_cookie: format!("{login_cookie}-oauth-state"),
        login_cookie,
        cookie_path: if config.auth.cookie_host_prefix {
            "/".to_owned()
        } else {
            config.prefix.clone()
        },
        jupyter,
        config: config.clone(),
    });

    let reporter = match &config.hub.activity_url {
        Some(url) if !config.activity_interval.is_zero() => {
            let source = if jupyter {
                activity::Source::JupyterStatus {
                    upstream: Box::new(upstream),
                    target: prepared.target.clone(),
                    path: format!("{}api/status", config.prefix),
                    traffic,
                }
            } else {
                activity::Source::Traffic(traffic)
            };
            Some(tokio::spawn(activity::report_loop(
                hub.clone(),
                url.clone(),
                config.hub.server_name.clone(),
                source,
                config.activity_interval,
            )))
        }
        _ => {
            tracing::warn!("activity reports are off");
            None
        }
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let options = HttpOptions {
        drain_timeout: Duration::from_secs(5),
        ..HttpOptions::default()
    };
    let serve_shim = shim.clone();
    let server = tokio::spawn(daemon_support::listen::serve(
        listener,
        server_tls,
        options,
        move |conn| ShimService {
            shim: serve_shim.clone(),
            conn,
        },
        async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|stop| *stop).await;
        },
    ));

    let status = loop {
        tokio::select! {
            status = process.wait() => break status?,
            sig = signals.recv() => pass_on(pid, sig),
        }
    };
    tracing::info!("the app exited: {status}; stopping");
    if let Some(r) = reporter {
        r.abort();
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    // Whatever the app left in its process group (kernels that outlived it) goes too.
    let _ = nix::sys::signal::killpg(pid, Signal::SIGTERM);
    drop(prepared.dir);
    Ok(child::exit_code(status))
}

/// Waits up to `grace` for the app to exit, then kills it.
async fn wait_or_kill(
    process: &mut tokio::process::Child,
    pid: Pid,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    if let Ok(Ok(status)) = tokio::time::timeout(grace, process.wait()).await {
        return Some(status);
    }
    pass_on(pid, Signal::SIGKILL);
    process.wait().await.ok()
}
