//! `hub-bench serve-mock-hub`: our hub as its own process, with `MockSpawner` in place of the
//! configured spawner, so its resident memory and CPU time are the process's own.
//!
//! The steps are the daemon's (`hub::daemon`), minus the managed proxy: the benchmark runs the
//! proxy itself, as it does for JupyterHub.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use hub::config::HubConfig;
use hub::db::Db;
use hub::proxy::chp::ChpClientConfig;
use hub::proxy::{ProxyControl, ProxySettings};
use hub::state::AppState;
use hub_plugin::test_util::MockSpawner;

/// How often routes are reconciled when nothing asks earlier (the daemon's interval).
const SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// Options of `serve-mock-hub`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The hub's config file (TOML). The proxy must be external (`proxy.should_start = false`).
    #[arg(long)]
    pub config: PathBuf,
}

/// Runs the hub until SIGTERM or SIGINT.
pub fn main(args: &ServeArgs) -> Result<()> {
    daemon_support::install_crypto_provider();
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let config = HubConfig::from_toml_str(&text, &args.config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    anyhow::ensure!(
        !config.proxy.should_start,
        "serve-mock-hub needs an external proxy: set proxy.should_start = false"
    );
    daemon_support::logging::init(
        config.hub.log_level.as_tracing(),
        daemon_support::logging::LogFormat::Text,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        // As the hub's main does.
        daemon_support::memory::spawn_periodic_release(daemon_support::memory::RELEASE_INTERVAL);
        run(config).await
    })
}

async fn run(config: HubConfig) -> Result<()> {
    let mut signals = daemon_support::shutdown::Signals::install().context("signal handlers")?;
    let db = Db::connect(&config.hub.db_url.connection_url())
        .await
        .context("database")?;
    db.migrate().await.context("database migrations")?;
    let secret = hub::cookie_secret::load_for(&config.hub).context("cookie secret")?;
    let authenticator = hub::plugins::authenticator(&config).context("authenticator")?;
    let listener = tokio::net::TcpListener::bind(config.hub.hub_bind_addr())
        .await
        .with_context(|| format!("binding {}", config.hub.hub_bind_addr()))?;
    let token = config
        .proxy
        .auth_token()
        .map(|t| t.expose().to_owned())
        .unwrap_or_default();
    let proxy = ProxyControl::launch(ProxySettings {
        api: ChpClientConfig::new(config.proxy.api_url.as_url().clone(), token),
        managed: None,
        sync_interval: SYNC_INTERVAL,
    })
    .await
    .context("proxy")?;
    let state = AppState::new(
        config,
        db,
        secret,
        Arc::new(MockSpawner::new()),
        authenticator,
        Some(proxy),
    )
    .context("roles and scopes")?;
    hub::startup::load_config_entities(&state)
        .await
        .context("configured entities")?;
    if let Some(proxy) = &state.proxy {
        let desired = hub::spawn::desired_routes(&state).await.context("routes")?;
        proxy.sync(&desired).await.context("initial route sync")?;
    }
    let _poller = hub::spawn::spawn_poller(&state);
    tracing::info!(
        "hub (mock spawner) {} is running at {}",
        hub::VERSION,
        state.config.hub.hub_connect_url()
    );
    let shutdown = async move {
        signals.recv().await;
    };
    hub::app::serve(state, listener, shutdown)
        .await
        .context("serving")
}
