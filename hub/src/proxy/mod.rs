//! The hub's side of the proxy: the route client, the managed proxy process and route
//! reconciliation, tied together by [`ProxyControl`].
//!
//! - [`chp`]: REST client for the configurable-http-proxy API (`chp-proxy` or the real CHP),
//!   including JupyterHub's routespec ↔ API path mapping.
//! - [`managed`]: starts, watches, restarts and stops the proxy as a child process
//!   (JupyterHub's `ConfigurableHTTPProxy.should_start`).
//! - [`sync`]: compares the routes the hub wants with the proxy's table and repairs the
//!   difference (JupyterHub's `check_routes`).
//!
//! Terms: a *routespec* is JupyterHub's name for a route prefix in URL-escaped form with a
//! trailing slash (`/user/alice/`, or `host.example/path/` with host routing); the *target* is the
//! URL requests are forwarded to; the *data* is the JSON object kept with the route.

pub mod chp;
pub mod managed;
pub mod sync;

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

pub use chp::{ApiTls, ChpClient, ChpClientConfig, ProxyRoute};
pub use managed::{InternalSsl, ManagedProxy, ManagedProxyConfig};
pub use sync::{
    DesiredRoute, RouteActivity, RouteFailure, RouteKind, SyncReport, SyncTrigger, routespec,
};

/// Default interval between two reconciliations when nothing asks for one earlier.
///
/// JupyterHub checks every 300 s (`last_activity_interval`); a route lost by an external proxy
/// restart then stays missing for minutes, so we check every 30 s.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// Everything that can go wrong talking to or running the proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// A routespec that cannot be sent to the proxy.
    #[error("invalid routespec {routespec:?}: {reason}")]
    InvalidRoutespec {
        /// The routespec as given.
        routespec: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The configuration cannot be used (bad API URL, unreadable certificate, missing token...).
    #[error("proxy configuration: {0}")]
    Config(String),
    /// The API could not be reached (connection refused, reset, timeout), even after retrying.
    #[error(
        "proxy API {method} {url}: {source} (gave up after {attempts} attempt(s) in {elapsed:?})"
    )]
    Unreachable {
        /// HTTP method of the request.
        method: String,
        /// URL of the request.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// Time spent from the first attempt until giving up.
        elapsed: Duration,
        /// The error of the last attempt.
        #[source]
        source: reqwest::Error,
    },
    /// The API answered with an unexpected status (after retrying 5xx).
    #[error("proxy API {method} {url} answered {status}{}", body_suffix(.body))]
    Status {
        /// HTTP method of the request.
        method: String,
        /// URL of the request.
        url: String,
        /// The status code.
        status: u16,
        /// Start of the response body, for the log.
        body: String,
    },
    /// The API answered 200 with a body that is not a route table.
    #[error("proxy API {url} sent a malformed route table: {reason}")]
    BadResponse {
        /// URL of the request.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The managed proxy could not be started.
    #[error("cannot start the proxy `{command}`: {reason}{}", output_suffix(.output))]
    Launch {
        /// The command line (program and arguments).
        command: String,
        /// What went wrong.
        reason: String,
        /// The last lines the process printed, if any.
        output: String,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

fn output_suffix(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("\n--- last output of the proxy ---\n{output}")
    }
}

/// A fresh proxy API token: 32 hex digits from the OS random generator (the form of
/// JupyterHub's `uuid4().hex`).
pub fn generate_auth_token() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// How the hub reaches (and possibly runs) its proxy: JupyterHub's `ConfigurableHTTPProxy`
/// settings.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// The API client: URL, token, routing mode, retries and timeouts. The hub's config fills
    /// `auth_token` from `CONFIGPROXY_AUTH_TOKEN`; when it is empty and the proxy is managed a
    /// fresh token is generated, and when the proxy is external it is an error.
    pub api: ChpClientConfig,
    /// `Some`: start the proxy as a child process and keep it running (`should_start = True`,
    /// the default). `None`: the proxy is run by someone else.
    pub managed: Option<ManagedProxyConfig>,
    /// How often the background loop reconciles routes when nothing asks earlier.
    pub sync_interval: Duration,
}

/// The hub's handle on its proxy: route operations, reconciliation and the managed process.
///
/// Reconciliations are serialised; [`ProxyControl::request_sync`] (or a managed proxy restart)
/// wakes the loop started by [`ProxyControl::spawn_sync_loop`] at once.
#[derive(Debug)]
pub struct ProxyControl {
    client: RwLock<ChpClient>,
    managed: Option<ManagedProxy>,
    trigger: SyncTrigger,
    sync_lock: tokio::sync::Mutex<()>,
    sync_interval: Duration,
}

impl ProxyControl {
    /// A control for an already running proxy reached through `client` (no process management).
    pub fn new(client: ChpClient, sync_interval: Duration) -> Self {
        ProxyControl {
            client: RwLock::new(client),
            managed: None,
            trigger: SyncTrigger::new(),
            sync_lock: tokio::sync::Mutex::new(()),
            sync_interval,
        }
    }

    /// Connects to the proxy described by `settings`, starting it first when it is managed.
    ///
    /// Returns once a managed proxy's API answers. Routes are not touched: run [`Self::sync`]
    /// next (at startup its error is fatal, as in JupyterHub), then [`Self::spawn_sync_loop`].
    pub async fn launch(settings: ProxySettings) -> Result<Self, ProxyError> {
        let ProxySettings {
            mut api,
            managed,
            sync_interval,
        } = settings;
        if api.auth_token.is_empty() {
            if managed.is_some() {
                api.auth_token = generate_auth_token();
            } else {
                return Err(ProxyError::Config(format!(
                    "the proxy at {} is not started by the hub, so its API token must be \
                     configured (CONFIGPROXY_AUTH_TOKEN)",
                    api.api_url
                )));
            }
        }
        let client = ChpClient::new(api)?;
        let trigger = SyncTrigger::new();
        let managed = match managed {
            Some(config) => {
                Some(ManagedProxy::start(config, client.clone(), Some(trigger.clone())).await?)
            }
            None => None,
        };
        Ok(ProxyControl {
            client: RwLock::new(client),
            managed,
            trigger,
            sync_lock: tokio::sync::Mutex::new(()),
            sync_interval,
        })
    }

    /// The current API client (cheap to clone; shares the concurrency limit).
    pub fn client(&self) -> ChpClient {
        self.client
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Points the hub at a different proxy API (`PATCH /hub/api/proxy` with `api_url` and/or
    /// `auth_token`), keeping every other client option. Call [`Self::sync`] afterwards.
    pub fn set_api(
        &self,
        api_url: Option<url::Url>,
        auth_token: Option<String>,
    ) -> Result<(), ProxyError> {
        let mut config = self.client().config().clone();
        if let Some(url) = api_url {
            config.api_url = url;
        }
        if let Some(token) = auth_token {
            config.auth_token = token;
        }
        let client = ChpClient::new(config)?;
        *self.client.write().unwrap_or_else(PoisonError::into_inner) = client;
        Ok(())
    }

    /// The managed proxy process, if the hub runs one.
    pub fn managed(&self) -> Option<&ManagedProxy> {
        self.managed.as_ref()
    }

    /// The interval of the background reconciliation.
    pub fn sync_interval(&self) -> Duration {
        self.sync_interval
    }

    /// A handle that wakes the reconciliation loop (e.g. for `POST /hub/api/proxy` when the
    /// caller does not want to wait).
    pub fn trigger(&self) -> SyncTrigger {
        self.trigger.clone()
    }

    /// Asks the reconciliation loop to run now; requests made while it runs coalesce into one.
    pub fn request_sync(&self) {
        self.trigger.request();
    }

    /// Adds or replaces one route (after a server became ready, or a service registered).
    pub async fn add_route(&self, route: &DesiredRoute) -> Result<(), ProxyError> {
        self.client()
            .add_route(&route.routespec, &route.target, &route.data())
            .await
    }

    /// Deletes one route; a route that is already gone is not an error.
    pub async fn delete_route(&self, routespec: &str) -> Result<(), ProxyError> {
        self.client().delete_route(routespec).await
    }

    /// The hub's routes in the proxy (those with the `jupyterhub` marker), by routespec.
    pub async fn get_all_routes(
        &self,
    ) -> Result<std::collections::BTreeMap<String, ProxyRoute>, ProxyError> {
        self.client().get_all_routes().await
    }

    /// Reconciles the proxy's routes with `desired` (JupyterHub's `check_routes`): adds missing
    /// routes, re-adds changed ones, deletes stale hub routes and leaves foreign ones alone.
    ///
    /// Fails only when the route table cannot be read; failed single-route operations are
    /// listed in [`SyncReport::failed`].
    pub async fn sync(&self, desired: &[DesiredRoute]) -> Result<SyncReport, ProxyError> {
        let _serialised = self.sync_lock.lock().await;
        sync::reconcile(&self.client(), desired).await
    }

    /// Starts the background reconciliation: every [`Self::sync_interval`] (the first periodic
    /// round one interval after the start, since the hub reconciles once itself at startup),
    /// whenever [`Self::request_sync`] is called, and right after the managed proxy restarted.
    ///
    /// `desired` yields the routes the hub wants (from its database); an `Err` skips that round
    /// rather than deleting every route. `on_report` receives each successful report, e.g. to
    /// copy [`SyncReport::activity`] into the database. The loop ends when `shutdown` completes.
    pub fn spawn_sync_loop<D, DF, E, R, RF, S>(
        self: &Arc<Self>,
        desired: D,
        on_report: R,
        shutdown: S,
    ) -> tokio::task::JoinHandle<()>
    where
        D: Fn() -> DF + Send + Sync + 'static,
        DF: Future<Output = Result<Vec<DesiredRoute>, E>> + Send,
        E: std::fmt::Display,
        R: Fn(SyncReport) -> RF + Send + Sync + 'static,
        RF: Future<Output = ()> + Send,
        S: Future<Output = ()> + Send + 'static,
    {
        let control = Arc::clone(self);
        // tokio's interval refuses a zero period.
        let period = control.sync_interval.max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(shutdown);
            loop {
                let reason = tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = control.trigger.wait() => "requested",
                    _ = ticker.tick() => "periodic",
                };
                let routes = match desired().await {
                    Ok(routes) => routes,
                    Err(e) => {
                        tracing::warn!(
                            "route sync ({reason}) skipped: desired routes unavailable: {e}"
                        );
                        continue;
                    }
                };
                let result = tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    result = control.sync(&routes) => result,
                };
                match result {
                    Ok(report) => {
                        if report.changed() || !report.failed.is_empty() {
                            tracing::info!("route sync ({reason}): {report}");
                        } else {
                            tracing::debug!("route sync ({reason}): {report}");
                        }
                        on_report(report).await;
                    }
                    Err(e) => tracing::warn!("route sync ({reason}) failed: {e}"),
                }
            }
            tracing::debug!("route sync loop stopped");
        })
    }

    /// Stops the managed proxy (if any) and removes its pid file; call on hub shutdown.
    pub async fn shutdown(&self) -> Result<(), ProxyError> {
        match &self.managed {
            Some(managed) => managed.stop().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_32_hex_and_distinct() {
        let a = generate_auth_token();
        let b = generate_auth_token();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
