//! The state every request handler sees: configuration, database, plugins, proxy control,
//! and the caches rebuilt from the database at startup. Cloning is cheap.

use std::ops::Deref;
use std::sync::Arc;

use hub_plugin::{Authenticator, Spawner};

use crate::config::HubConfig;
use crate::cookie_secret::CookieSecret;
use crate::db::Db;
use crate::metrics::HubMetrics;
use crate::proxy::ProxyControl;
use crate::rbac::{CustomScopeSpec, RoleSpec, RoleTable, ScopeRegistry};
use crate::spawn::Servers;

/// Shared state; `Deref`s to [`Inner`].
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct Inner {
    /// Effective configuration.
    pub config: HubConfig,
    /// The database.
    pub db: Db,
    /// Every scope, custom ones included.
    pub registry: ScopeRegistry,
    /// Every role definition: the defaults plus the configured ones.
    pub roles: RoleTable,
    /// Signs login and XSRF cookies.
    pub cookie_secret: CookieSecret,
    /// Runs users' servers.
    pub spawner: Arc<dyn Spawner>,
    /// Checks logins.
    pub authenticator: Arc<dyn Authenticator>,
    /// Drives the proxy; `None` when the hub runs without one (some tests). Shared with the
    /// background reconciliation loop.
    pub proxy: Option<Arc<ProxyControl>>,
    /// Runtime state of users' servers.
    pub servers: Servers,
    /// Recently resolved token identities.
    pub identities: crate::identity_cache::IdentityCache,
    /// Prometheus metrics.
    pub metrics: HubMetrics,
    /// Set by `POST /hub/api/shutdown`; the serve loop and background tasks end on it.
    pub shutdown: ShutdownSignal,
    /// Managed services' command lines and pids (for the service model).
    pub services: crate::services::ManagedServicesHandle,
    /// Page templates.
    pub templates: crate::web::Templates,
    /// Starts requested from the pages that wait for a free spawn slot.
    pub spawn_queue: crate::web::queue::SpawnQueue,
}

/// What `POST /hub/api/shutdown` asked for: `proxy` and `servers` override `cleanup_proxy` and
/// `cleanup_servers` when given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownRequest {
    /// Stop the managed proxy too.
    pub proxy: Option<bool>,
    /// Stop the users' servers too.
    pub servers: Option<bool>,
}

/// A one-way switch: once a shutdown is requested it stays requested; the first request wins.
#[derive(Debug)]
pub struct ShutdownSignal(tokio::sync::watch::Sender<Option<ShutdownRequest>>);

impl Default for ShutdownSignal {
    fn default() -> Self {
        Self(tokio::sync::watch::Sender::new(None))
    }
}

impl ShutdownSignal {
    /// Requests the shutdown (again: ignored).
    pub fn request(&self, request: ShutdownRequest) {
        self.0.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(request);
            true
        });
    }

    /// The request, once made.
    pub fn requested(&self) -> Option<ShutdownRequest> {
        *self.0.borrow()
    }

    /// Waits for the request.
    pub async fn wait(&self) -> ShutdownRequest {
        let mut rx = self.0.subscribe();
        let request = rx
            .wait_for(Option::is_some)
            .await
            .map(|request| request.unwrap_or_default());
        match request {
            Ok(request) => request,
            // The sender lives as long as `self`, so this is unreachable; wait forever.
            Err(_) => std::future::pending().await,
        }
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// A configuration that cannot be turned into scopes and roles.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Custom scopes are invalid.
    #[error("hub.custom_scopes: {0}")]
    Scopes(#[from] crate::rbac::ScopeError),
    /// A role is invalid.
    #[error("roles: {0}")]
    Roles(#[from] crate::rbac::RoleError),
}

/// The scope registry and role table of a configuration.
///
/// # Errors
/// When custom scopes or roles are invalid.
pub fn roles_from_config(config: &HubConfig) -> Result<(ScopeRegistry, RoleTable), StateError> {
    let mut registry = ScopeRegistry::new();
    registry.define_custom_scopes(config.hub.custom_scopes.iter().map(|(name, s)| {
        (
            name.clone(),
            CustomScopeSpec {
                description: s.description.clone(),
                subscopes: s.subscopes.clone(),
            },
        )
    }))?;
    let specs: Vec<RoleSpec> = config
        .roles
        .iter()
        .map(|r| RoleSpec {
            name: r.name.clone(),
            description: r.description.clone(),
            scopes: Some(r.scopes.clone()),
            users: Some(r.users.clone()),
            groups: Some(r.groups.clone()),
            services: Some(r.services.clone()),
        })
        .collect();
    let roles = RoleTable::load(&registry, &specs, &config.hub.extra_user_scopes)?;
    Ok((registry, roles))
}

impl AppState {
    /// Assembles the state.
    ///
    /// # Errors
    /// When custom scopes or roles are invalid.
    pub fn new(
        config: HubConfig,
        db: Db,
        cookie_secret: CookieSecret,
        spawner: Arc<dyn Spawner>,
        authenticator: Arc<dyn Authenticator>,
        proxy: Option<ProxyControl>,
    ) -> Result<Self, StateError> {
        let (registry, roles) = roles_from_config(&config)?;
        let templates = crate::web::Templates::new(&config);
        Ok(Self(Arc::new(Inner {
            config,
            db,
            registry,
            roles,
            cookie_secret,
            spawner,
            authenticator,
            proxy: proxy.map(Arc::new),
            servers: Servers::default(),
            metrics: HubMetrics::default(),
            identities: crate::identity_cache::IdentityCache::default(),
            shutdown: ShutdownSignal::default(),
            services: crate::services::ManagedServicesHandle::default(),
            templates,
            spawn_queue: crate::web::queue::SpawnQueue::default(),
        })))
    }
}
