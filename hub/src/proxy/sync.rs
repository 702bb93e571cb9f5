//! Route reconciliation: make the proxy's table hold exactly the routes the hub wants
//! (JupyterHub's `Proxy.check_routes`, with `restore_routes` as the special case of an empty
//! table).
//!
//! The hub describes what it wants as [`DesiredRoute`]s: its own catch-all route, one route per
//! ready server, one per service with a URL, extra routes, and the routespecs of servers in
//! transition ([`RouteKind::Pending`]), whose routes are neither added nor deleted. [`plan`]
//! compares that with the proxy's routes carrying the `jupyterhub` marker; [`reconcile`] reads the
//! table, applies the plan and returns a [`SyncReport`] with what changed and each user route's
//! `last_activity`. Routes without the marker belong to someone else and are never touched.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hub_api::chp::RouteData;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::ProxyError;
use super::chp::{ChpClient, ProxyRoute, canonical_routespec};

/// What a route is for; decides the data posted with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKind {
    /// The hub's own route (data `{"hub": true}`), normally `/`: the catch-all target.
    Hub,
    /// A ready user server (data `{"user": name, "server_name": server_name}`).
    User {
        /// The user's name.
        name: String,
        /// The server's name, `""` for the default server.
        server_name: String,
    },
    /// A service with a URL (data `{"service": name}`).
    Service {
        /// The service's name.
        name: String,
    },
    /// An operator-configured extra route (data `{"extra": true}`).
    Extra,
    /// A server that is starting or stopping: whatever route it has is left as it is.
    Pending,
}

/// A route the hub wants in the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredRoute {
    /// JupyterHub routespec, e.g. `/user/alice/` (see [`routespec`] for builders).
    pub routespec: String,
    /// Where requests go, e.g. `http://127.0.0.1:50123`. Ignored for [`RouteKind::Pending`].
    pub target: String,
    /// What the route is for.
    pub kind: RouteKind,
}

impl DesiredRoute {
    /// The hub's route: `routespec` is `base_url` (`/` with host routing), `target` the hub's
    /// own URL without path (`http://127.0.0.1:8081`).
    pub fn hub(routespec: impl Into<String>, target: impl Into<String>) -> Self {
        DesiredRoute {
            routespec: routespec.into(),
            target: target.into(),
            kind: RouteKind::Hub,
        }
    }

    /// The route of a ready user server.
    pub fn user(
        routespec: impl Into<String>,
        target: impl Into<String>,
        name: impl Into<String>,
        server_name: impl Into<String>,
    ) -> Self {
        DesiredRoute {
            routespec: routespec.into(),
            target: target.into(),
            kind: RouteKind::User {
                name: name.into(),
                server_name: server_name.into(),
            },
        }
    }

    /// The route of a service with a URL.
    pub fn service(
        routespec: impl Into<String>,
        target: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        DesiredRoute {
            routespec: routespec.into(),
            target: target.into(),
            kind: RouteKind::Service { name: name.into() },
        }
    }

    /// An extra route from the configuration.
    pub fn extra(routespec: impl Into<String>, target: impl Into<String>) -> Self {
        DesiredRoute {
            routespec: routespec.into(),
            target: target.into(),
            kind: RouteKind::Extra,
        }
    }

    /// The routespec of a server in transition: keep its route if there is one, add none.
    pub fn pending(routespec: impl Into<String>) -> Self {
        DesiredRoute {
            routespec: routespec.into(),
            target: String::new(),
            kind: RouteKind::Pending,
        }
    }

    /// The data posted with the route (`target` and the `jupyterhub` marker are added by
    /// [`ChpClient::add_route`]).
    pub fn data(&self) -> RouteData {
        let mut data = RouteData {
            target: self.target.clone(),
            ..RouteData::default()
        };
        match &self.kind {
            RouteKind::Hub => data.hub = Some(true),
            RouteKind::User { name, server_name } => {
                data.user = Some(name.clone());
                data.server_name = Some(server_name.clone());
            }
            RouteKind::Service { name } => data.service = Some(name.clone()),
            RouteKind::Extra => {
                data.extra.insert("extra".into(), Value::Bool(true));
            }
            RouteKind::Pending => {}
        }
        data
    }

    /// Whether the proxy's `current` route already says what this one wants.
    fn is_satisfied_by(&self, current: &ProxyRoute) -> bool {
        let data = &current.data;
        if matches!(self.kind, RouteKind::Pending) {
            return true;
        }
        if current.target != self.target {
            return false;
        }
        match &self.kind {
            RouteKind::Hub => data.hub == Some(true),
            RouteKind::User { name, server_name } => {
                data.user.as_ref() == Some(name) && data.server_name.as_ref() == Some(server_name)
            }
            RouteKind::Service { name } => data.service.as_ref() == Some(name),
            RouteKind::Extra => data.extra.get("extra") == Some(&Value::Bool(true)),
            RouteKind::Pending => true,
        }
    }
}

/// Builders for the routespecs JupyterHub uses.
pub mod routespec {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

    /// Characters Python's `quote(s, safe='@~')` (JupyterHub's `url_escape_path`) leaves alone.
    const NAME_SAFE: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'_')
        .remove(b'.')
        .remove(b'-')
        .remove(b'~')
        .remove(b'@');

    /// Escapes one path segment as JupyterHub's `url_escape_path` does.
    pub fn escape_segment(segment: &str) -> String {
        utf8_percent_encode(segment, NAME_SAFE).to_string()
    }

    fn base(base_url: &str) -> String {
        let trimmed = base_url.trim_matches('/');
        if trimmed.is_empty() {
            "/".to_owned()
        } else {
            format!("/{trimmed}/")
        }
    }

    fn with_host(host: Option<&str>, path: String) -> String {
        match host {
            Some(host) => format!("{host}{path}"),
            None => path,
        }
    }

    /// `{base_url}user/{name}/` or `{base_url}user/{name}/{server}/`, prefixed with `host` under
    /// host routing.
    pub fn user(base_url: &str, host: Option<&str>, name: &str, server_name: &str) -> String {
        let mut path = format!("{}user/{}/", base(base_url), escape_segment(name));
        if !server_name.is_empty() {
            path.push_str(&escape_segment(server_name));
            path.push('/');
        }
        with_host(host, path)
    }

    /// `{base_url}services/{name}/`, prefixed with `host` under host routing.
    pub fn service(base_url: &str, host: Option<&str>, name: &str) -> String {
        with_host(
            host,
            format!("{}services/{}/", base(base_url), escape_segment(name)),
        )
    }

    /// The hub's route: `base_url`, or `/` under host routing (so the hub gets every host).
    pub fn hub(base_url: &str, host_routing: bool) -> String {
        if host_routing {
            "/".to_owned()
        } else {
            base(base_url)
        }
    }
}

// === planning ===

/// Why a route is (re-)added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddReason {
    /// The proxy has no hub route with this routespec.
    Missing,
    /// The proxy's route has another target or other data.
    Changed,
}

/// What [`reconcile`] will do, computed without I/O.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// Routes to post, with canonical routespecs.
    pub add: Vec<(DesiredRoute, AddReason)>,
    /// Stale hub routes to delete.
    pub delete: Vec<String>,
    /// Desired routes that are already right (pending ones included).
    pub unchanged: usize,
    /// Desired routes whose routespec cannot be used.
    pub invalid: Vec<RouteFailure>,
}

/// Compares what the hub wants with the proxy's hub routes (`current`, keyed by routespec as
/// [`ChpClient::get_all_routes`] returns them).
pub fn plan(
    desired: &[DesiredRoute],
    current: &BTreeMap<String, ProxyRoute>,
    host_routing: bool,
) -> Plan {
    let mut plan = Plan::default();
    let mut wanted: BTreeMap<String, DesiredRoute> = BTreeMap::new();
    for route in desired {
        match canonical_routespec(&route.routespec, host_routing) {
            Ok(spec) => {
                let mut route = route.clone();
                route.routespec = spec.clone();
                if let Some(previous) = wanted.insert(spec, route) {
                    tracing::warn!(
                        route.spec = %previous.routespec,
                        "two desired routes share a routespec; the later one wins"
                    );
                }
            }
            Err(e) => plan.invalid.push(RouteFailure {
                routespec: route.routespec.clone(),
                action: "validate",
                error: e.to_string(),
            }),
        }
    }
    for (spec, route) in &wanted {
        match current.get(spec) {
            Some(existing) if route.is_satisfied_by(existing) => plan.unchanged += 1,
            Some(_) => plan.add.push((route.clone(), AddReason::Changed)),
            None if route.kind == RouteKind::Pending => plan.unchanged += 1,
            None => plan.add.push((route.clone(), AddReason::Missing)),
        }
    }
    plan.delete = current
        .iter()
        .filter(|(spec, route)| route.jupyterhub && !wanted.contains_key(*spec))
        .map(|(spec, _)| spec.clone())
        .collect();
    plan
}

// === reports ===

/// A route operation that failed during a reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFailure {
    /// The routespec concerned.
    pub routespec: String,
    /// `"add"`, `"delete"` or `"validate"`.
    pub action: &'static str,
    /// The error, for logs and the API.
    pub error: String,
}

/// Activity the proxy recorded for a user route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteActivity {
    /// The route's routespec.
    pub routespec: String,
    /// The route's `user`.
    pub user: String,
    /// The route's `server_name` (`""` for the default server).
    pub server_name: String,
    /// The route's target, to check it still is the server the database knows.
    pub target: String,
    /// Last time the proxy saw traffic on the route (or the route was added).
    pub last_activity: DateTime<Utc>,
}

/// What a reconciliation found and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncReport {
    /// Missing routes added.
    pub added: usize,
    /// Routes re-added because their target or data differed.
    pub updated: usize,
    /// Stale hub routes deleted.
    pub removed: usize,
    /// Desired routes that were already right.
    pub unchanged: usize,
    /// Routes without the `jupyterhub` marker, left alone.
    pub foreign: usize,
    /// The hub's own route was missing or wrong and has been repaired.
    pub hub_route_fixed: bool,
    /// Operations that failed; the next reconciliation tries again.
    pub failed: Vec<RouteFailure>,
    /// `last_activity` of every user route as read before any change, for the database.
    pub activity: Vec<RouteActivity>,
    /// How long the reconciliation took.
    pub duration: Duration,
}

impl SyncReport {
    /// Whether any route was added, updated or removed.
    pub fn changed(&self) -> bool {
        self.added + self.updated + self.removed > 0
    }
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} added, {} updated, {} removed, {} unchanged, {} foreign, {} failed{} in {} ms",
            self.added,
            self.updated,
            self.removed,
            self.unchanged,
            self.foreign,
            self.failed.len(),
            if self.hub_route_fixed {
                " (hub route repaired)"
            } else {
                ""
            },
            self.duration.as_millis()
        )
    }
}

// === execution ===

/// Reads the proxy's table, applies [`plan`] and reports. Adds and deletes run concurrently,
/// bounded by the client's concurrency limit. Fails only if the table cannot be read.
#[tracing::instrument(name = "reconcile_routes", skip_all)]
pub async fn reconcile(
    client: &ChpClient,
    desired: &[DesiredRoute],
) -> Result<SyncReport, ProxyError> {
    let started = tokio::time::Instant::now();
    let mut every = client.get_every_route().await?;
    let foreign = every.values().filter(|r| !r.jupyterhub).count();
    every.retain(|_, r| r.jupyterhub);
    let current = every;

    let activity = current
        .values()
        .filter_map(|route| {
            Some(RouteActivity {
                routespec: route.routespec.clone(),
                user: route.data.user.clone()?,
                server_name: route.data.server_name.clone().unwrap_or_default(),
                target: route.target.clone(),
                last_activity: route.last_activity?,
            })
        })
        .collect();

    let plan = plan(desired, &current, client.host_routing());
    let mut report = SyncReport {
        unchanged: plan.unchanged,
        foreign,
        failed: plan.invalid,
        activity,
        ..SyncReport::default()
    };
    for failure in &report.failed {
        tracing::warn!(route.spec = %failure.routespec, "cannot sync route: {}", failure.error);
    }

    enum Done {
        Added(AddReason, bool),
        Removed,
    }
    let mut tasks = JoinSet::new();
    for (route, reason) in plan.add {
        let client = client.clone();
        match reason {
            AddReason::Missing => tracing::info!(
                route.spec = %route.routespec,
                "adding missing route {} -> {}",
                route.routespec,
                route.target
            ),
            AddReason::Changed => tracing::info!(
                route.spec = %route.routespec,
                "updating route {} -> {}",
                route.routespec,
                route.target
            ),
        }
        tasks.spawn(async move {
            let result = client
                .add_route(&route.routespec, &route.target, &route.data())
                .await;
            let is_hub = route.kind == RouteKind::Hub;
            (
                route.routespec,
                "add",
                result.map(|()| Done::Added(reason, is_hub)),
            )
        });
    }
    for spec in plan.delete {
        let client = client.clone();
        tracing::info!(route.spec = %spec, "deleting stale route {spec}");
        tasks.spawn(async move {
            let result = client.delete_route(&spec).await;
            (spec, "delete", result.map(|()| Done::Removed))
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (routespec, action, result) = match joined {
            Ok(outcome) => outcome,
            Err(e) => {
                // A panic inside the client; count it rather than taking the caller down.
                report.failed.push(RouteFailure {
                    routespec: String::new(),
                    action: "task",
                    error: e.to_string(),
                });
                continue;
            }
        };
        match result {
            Ok(Done::Added(AddReason::Missing, is_hub)) => {
                report.added += 1;
                report.hub_route_fixed |= is_hub;
            }
            Ok(Done::Added(AddReason::Changed, is_hub)) => {
                report.updated += 1;
                report.hub_route_fixed |= is_hub;
            }
            Ok(Done::Removed) => report.removed += 1,
            Err(e) => {
                tracing::warn!(route.spec = %routespec, "route {action} failed: {e}");
                report.failed.push(RouteFailure {
                    routespec,
                    action,
                    error: e.to_string(),
                });
            }
        }
    }
    report.duration = started.elapsed();
    Ok(report)
}

/// Wakes a reconciliation loop: cloneable, and requests made while a round runs coalesce into
/// one more round.
#[derive(Debug, Clone, Default)]
pub struct SyncTrigger(Arc<Notify>);

impl SyncTrigger {
    /// A trigger nobody waits on yet.
    pub fn new() -> Self {
        SyncTrigger::default()
    }

    /// Asks for a reconciliation as soon as possible.
    pub fn request(&self) {
        self.0.notify_one();
    }

    /// Completes when a reconciliation has been requested (consuming the request).
    pub async fn wait(&self) {
        self.0.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(routes: &[(&str, &str, Value)]) -> BTreeMap<String, ProxyRoute> {
        routes
            .iter()
            .map(|(spec, target, data)| {
                let mut object = data.as_object().cloned().unwrap_or_default();
                object.insert("target".into(), Value::String((*target).into()));
                let jupyterhub = object.contains_key("jupyterhub");
                let data: RouteData = serde_json::from_value(Value::Object(object)).unwrap();
                (
                    (*spec).to_owned(),
                    ProxyRoute {
                        routespec: (*spec).to_owned(),
                        target: (*target).to_owned(),
                        data,
                        jupyterhub,
                        last_activity: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn plans_adds_updates_deletes() {
        let hub = serde_json::json!({"jupyterhub": true, "hub": true});
        let alice = serde_json::json!({"jupyterhub": true, "user": "alice", "server_name": ""});
        let now = current(&[
            ("/", "http://old-hub:8081", hub),
            ("/user/alice/", "http://a:1", alice.clone()),
            (
                "/user/gone/",
                "http://g:1",
                serde_json::json!({"jupyterhub": true, "user": "gone", "server_name": ""}),
            ),
            (
                "/user/busy/",
                "http://b:1",
                serde_json::json!({"jupyterhub": true, "user": "busy", "server_name": ""}),
            ),
        ]);
        let desired = vec![
            DesiredRoute::hub("/", "http://hub:8081"),
            DesiredRoute::user("/user/alice", "http://a:1", "alice", ""),
            DesiredRoute::user("/user/bob/x/", "http://b:2", "bob", "x"),
            DesiredRoute::pending("/user/busy/"),
            DesiredRoute::pending("/user/starting/"),
            DesiredRoute::service("/services/s/", "http://s:1", "s"),
        ];
        let plan = plan(&desired, &now, false);
        let adds: Vec<_> = plan
            .add
            .iter()
            .map(|(r, why)| (r.routespec.as_str(), *why))
            .collect();
        assert_eq!(
            adds,
            [
                ("/", AddReason::Changed),
                ("/services/s/", AddReason::Missing),
                ("/user/bob/x/", AddReason::Missing),
            ]
        );
        assert_eq!(plan.delete, ["/user/gone/"]);
        assert_eq!(plan.unchanged, 3);
        assert!(plan.invalid.is_empty());
    }

    #[test]
    fn data_mismatch_is_an_update_and_foreign_routes_are_kept() {
        let now = current(&[
            (
                "/user/alice/",
                "http://a:1",
                serde_json::json!({"jupyterhub": true, "user": "mallory", "server_name": ""}),
            ),
            ("/foreign/", "http://f:1", serde_json::json!({})),
        ]);
        let desired = vec![
            DesiredRoute::user("/user/alice/", "http://a:1", "alice", ""),
            DesiredRoute::user("/user/x/", "http://x", "x", ""),
            DesiredRoute::extra("/ext/", "http://e"),
            DesiredRoute::hub("not-a-path/", "http://hub"),
        ];
        let plan = plan(&desired, &now, false);
        assert_eq!(plan.add.len(), 3);
        assert_eq!(plan.add[1].0.routespec, "/user/alice/");
        assert_eq!(plan.add[1].1, AddReason::Changed);
        assert!(plan.delete.is_empty(), "foreign route must be left alone");
        assert_eq!(plan.invalid.len(), 1);
    }

    #[test]
    fn escaped_forms_compare_equal() {
        let now = current(&[(
            "/user/%C3%BC/",
            "http://u:1",
            serde_json::json!({"jupyterhub": true, "user": "ü", "server_name": ""}),
        )]);
        let desired = vec![DesiredRoute::user("/user/ü", "http://u:1", "ü", "")];
        let plan = plan(&desired, &now, false);
        assert!(plan.add.is_empty() && plan.delete.is_empty());
        assert_eq!(plan.unchanged, 1);
    }

    #[test]
    fn routespec_builders() {
        assert_eq!(routespec::user("/", None, "alice", ""), "/user/alice/");
        assert_eq!(
            routespec::user("/jh", None, "a b", "gpu"),
            "/jh/user/a%20b/gpu/"
        );
        assert_eq!(routespec::user("/jh/", None, "e@x~", ""), "/jh/user/e@x~/");
        assert_eq!(routespec::user("/", None, "a/b", ""), "/user/a%2Fb/");
        assert_eq!(
            routespec::user("/", Some("alice.hub.example"), "alice", ""),
            "alice.hub.example/user/alice/"
        );
        assert_eq!(routespec::service("/", None, "cull"), "/services/cull/");
        assert_eq!(routespec::hub("/jh/", false), "/jh/");
        assert_eq!(routespec::hub("/jh/", true), "/");
    }

    #[test]
    fn route_data_by_kind() {
        let v = |r: DesiredRoute| serde_json::to_value(r.data()).unwrap();
        assert_eq!(
            v(DesiredRoute::hub("/", "http://h")),
            serde_json::json!({"target": "http://h", "hub": true})
        );
        assert_eq!(
            v(DesiredRoute::user("/user/a/", "http://a", "a", "")),
            serde_json::json!({"target": "http://a", "user": "a", "server_name": ""})
        );
        assert_eq!(
            v(DesiredRoute::service("/services/s/", "http://s", "s")),
            serde_json::json!({"target": "http://s", "service": "s"})
        );
        assert_eq!(
            v(DesiredRoute::extra("/e/", "http://e")),
            serde_json::json!({"target": "http://e", "extra": true})
        );
    }
}
