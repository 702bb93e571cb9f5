//! The hub daemon's run sequence: database, cookie secret, plugins, proxy, configured
//! entities, then serve until a signal; on the way out, stop the managed proxy.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use daemon_support::pidfile::PidFile;
use tokio::net::TcpListener;

use crate::config::HubConfig;
use crate::db::Db;
use crate::proxy::chp::ChpClientConfig;
use crate::proxy::managed::ManagedProxyConfig;
use crate::proxy::{ProxyControl, ProxySettings};
use crate::state::AppState;
use crate::{app, cookie_secret, plugins, startup};

/// How often the proxy's routes are reconciled at most, when nothing asks earlier
/// (JupyterHub: every `last_activity_interval`, 300 s). A shorter `hub.last_activity_interval`
/// checks more often.
const SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// The proxy settings of a configuration. (A missing token is generated for a managed proxy and
/// refused by [`ProxyControl::launch`] for an external one.)
pub fn proxy_settings(config: &HubConfig) -> ProxySettings {
    let token = config
        .proxy
        .auth_token()
        .map(|t| t.expose().to_owned())
        .unwrap_or_default();
    let api = ChpClientConfig::new(config.proxy.api_url.as_url().clone(), token);
    let managed = config.proxy.should_start.then(|| {
        let (public_ip, public_port) = config.hub.public_listen();
        let mut error_target = config.hub.hub_connect_url();
        error_target.set_path(&format!("{}error", config.hub.hub_prefix()));
        ManagedProxyConfig {
            command: config.proxy.command.argv().to_vec(),
            public_ip,
            public_port,
            error_target: Some(error_target.to_string()),
            log_level: if config.hub.log_level.as_tracing() <= tracing::Level::INFO {
                "info".into()
            } else {
                "debug".into()
            },
            ssl_key: config.hub.ssl_key.clone(),
            ssl_cert: config.hub.ssl_cert.clone(),
            extra_args: config.proxy.extra_args.clone(),
            pid_file: config.proxy.pid_file.clone(),
            check_running_interval: config.proxy.check_running_interval,
            ..ManagedProxyConfig::default()
        }
    });
    ProxySettings {
        api,
        managed,
        sync_interval: config.hub.last_activity_interval.min(SYNC_INTERVAL),
    }
}

/// Runs the hub until `shutdown` resolves.
///
/// # Errors
/// Any startup step that fails: the database, the cookie secret, the plugins, the proxy, the
/// listener. Nothing is left half-started: the managed proxy is stopped again.
pub async fn run(
    config: HubConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let started = Instant::now();
    // Removed when the hub ends, also when its startup fails.
    let _pid_file =
        match &config.hub.pid_file {
            Some(path) => Some(PidFile::create(path).with_context(|| {
                format!("writing the pid file {} (hub.pid_file)", path.display())
            })?),
            None => None,
        };
    let db_url = config.hub.db_url.connection_url();
    // Pending migrations are applied at startup (JupyterHub refuses and asks for
    // `upgrade-db`), after the same backup `upgrade-db` writes of an existing SQLite file.
    let existing_file =
        crate::db::existing_sqlite_file(&db_url).context("database (hub.db_url)")?;
    let db = Db::connect(&db_url)
        .await
        .context("database (hub.db_url)")?;
    let upgrade = db
        .upgrade(existing_file)
        .await
        .context("database migrations")?;
    if let Some(backup) = &upgrade.backup {
        tracing::warn!(
            "the database schema is older than this hub's: backed up the database to {} before \
             upgrading it",
            backup.display()
        );
    }
    if !upgrade.applied.is_empty() {
        tracing::info!(
            "applied database migrations: {}",
            upgrade.applied.join(", ")
        );
    }
    let secret = cookie_secret::load_for(&config.hub).context("cookie secret")?;
    let authenticator = plugins::authenticator(&config).context("authenticator")?;
    let spawner = plugins::spawner(&config).context("spawner")?;
    let listener = TcpListener::bind(config.hub.hub_bind_addr())
        .await
        .with_context(|| format!("binding the hub to {}", config.hub.hub_bind_addr()))?;

    let proxy = ProxyControl::launch(proxy_settings(&config))
        .await
        .context("proxy")?;
    let state = AppState::new(config, db, secret, spawner, authenticator, Some(proxy))
        .context("roles and scopes")?;
    let result = serve(&state, listener, started, shutdown).await;

    // What to take down with the hub: `POST /hub/api/shutdown` may say, else the config does.
    let request = state.shutdown.requested().unwrap_or_default();
    if request.servers.unwrap_or(state.config.hub.cleanup_servers) {
        match crate::spawn::stop_all(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("stopped {n} server(s)"),
            Err(e) => tracing::error!("stopping servers: {e}"),
        }
    }
    if request.proxy.unwrap_or(state.config.hub.cleanup_proxy)
        && let Some(proxy) = &state.proxy
        && let Err(e) = proxy.shutdown().await
    {
        tracing::warn!("stopping the proxy: {e}");
    }
    match state.servers.fatal() {
        Some(reason) => result.and(Err(anyhow::anyhow!(reason))),
        None => result,
    }
}

async fn serve(
    state: &AppState,
    listener: TcpListener,
    started: Instant,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    startup::load_config_entities(state)
        .await
        .context("configured users, groups, roles, services and tokens")?;
    let report = crate::spawn::Servers::resume(state)
        .await
        .context("resuming servers")?;
    tracing::info!("resumed servers: {report:?}");
    if let Some(proxy) = &state.proxy {
        let desired = desired_routes(state).await.context("routes")?;
        let report = proxy.sync(&desired).await.context("initial route sync")?;
        tracing::info!(
            "proxy routes: {} added, {} updated, {} removed",
            report.added,
            report.updated,
            report.removed
        );
    }
    state
        .metrics
        .hub_startup_duration_seconds
        .observe(started.elapsed());
    tracing::info!(
        "JupyterHub-compatible hub {} is running at {}",
        crate::VERSION,
        state.config.hub.hub_connect_url()
    );
    let (stop_loops, loops_stopped) = tokio::sync::watch::channel(false);
    let poller = crate::spawn::poller::spawn_poller(state);
    let managed_services = match crate::services::ManagedServices::start(state).await {
        Ok(services) => services,
        Err(e) => {
            poller.abort();
            return Err(e).context("managed services");
        }
    };
    let sync_loop = state.proxy.as_ref().map(|proxy| {
        let desired_state = state.clone();
        let report_state = state.clone();
        let mut stopped = loops_stopped.clone();
        proxy.spawn_sync_loop(
            move || {
                let st = desired_state.clone();
                async move { desired_routes(&st).await }
            },
            move |report| {
                let st = report_state.clone();
                async move {
                    st.metrics
                        .check_routes_duration_seconds
                        .observe(report.duration)
                }
            },
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        )
    });
    let served = app::serve(state.clone(), listener, shutdown).await;
    let _ = stop_loops.send(true);
    poller.abort();
    managed_services.stop().await;
    if let Some(sync_loop) = sync_loop {
        let _ = sync_loop.await;
    }
    served.context("serving")
}

async fn desired_routes(
    state: &AppState,
) -> Result<Vec<crate::proxy::DesiredRoute>, crate::db::DbError> {
    crate::spawn::routes::desired_routes(state).await
}
