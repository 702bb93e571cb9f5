//! The routes the proxy should have, from the database: the hub's catch-all route, one route
//! per running server, the routespecs of servers in transition (left as they are), and one
//! route per service with a URL. Input of [`ProxyControl::sync`](crate::proxy::ProxyControl::sync).

use diesel::prelude::*;

use crate::db::DbError;
use crate::db::models::services;
use crate::db::models::spawners::{ServerAddress, ServerPhase, Spawner};
use crate::db::models::users::User;
use crate::db::schema::{spawners, users};
use crate::proxy::{DesiredRoute, routespec};
use crate::state::AppState;

/// The routespec of a user's server (`/user/alice/`, `/user/carol/gpu2/`).
pub fn user_routespec(state: &AppState, user: &str, server: &str) -> String {
    routespec::user(state.config.hub.base_url.as_str(), None, user, server)
}

/// The route of a ready server.
pub fn user_route(
    state: &AppState,
    user: &str,
    server: &str,
    address: &ServerAddress,
) -> DesiredRoute {
    DesiredRoute::user(
        user_routespec(state, user, server),
        address.origin(),
        user,
        server,
    )
}

/// Servers in `phases`, with their owners, oldest phase change first.
pub async fn servers_in_phases(
    state: &AppState,
    phases: &[ServerPhase],
) -> Result<Vec<(User, Spawner)>, DbError> {
    let phases = phases.to_vec();
    state
        .db
        .run(move |conn| {
            spawners::table
                .inner_join(users::table)
                .filter(spawners::phase.eq_any(phases))
                .order((spawners::phase_changed.asc(), spawners::id.asc()))
                .select((User::as_select(), Spawner::as_select()))
                .load(conn)
        })
        .await
}

/// Every server that is not stopped, with its owner.
pub async fn active_servers(state: &AppState) -> Result<Vec<(User, Spawner)>, DbError> {
    servers_in_phases(
        state,
        &[
            ServerPhase::Spawning,
            ServerPhase::Running,
            ServerPhase::Stopping,
        ],
    )
    .await
}

/// Where the proxy sends a URL's requests: `scheme://host:port`.
fn origin(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    parsed.host_str()?;
    Some(parsed.origin().ascii_serialization())
}

/// The routes the hub wants (JupyterHub's `check_routes` input).
///
/// # Errors
/// Database failures; the caller then skips this reconciliation rather than deleting routes.
pub async fn desired_routes(state: &AppState) -> Result<Vec<DesiredRoute>, DbError> {
    let servers = active_servers(state).await?;
    let services = state.db.run(services::list).await?;
    let base = state.config.hub.base_url.as_str();
    let host_routing = state
        .proxy
        .as_ref()
        .is_some_and(|p| p.client().host_routing());
    let hub_target = state
        .config
        .hub
        .hub_connect_url()
        .origin()
        .ascii_serialization();
    let mut routes = Vec::with_capacity(1 + servers.len() + services.len());
    routes.push(DesiredRoute::hub(
        routespec::hub(base, host_routing),
        hub_target,
    ));
    for (user, row) in servers {
        let spec = routespec::user(base, None, &user.name, &row.name);
        // A server being checked after a restart keeps whatever route it has, too.
        let busy = state.servers.current(row.id).is_some();
        match (row.phase, row.server()) {
            (ServerPhase::Running, Some(address)) if !busy => routes.push(DesiredRoute::user(
                spec,
                address.origin(),
                user.name,
                row.name,
            )),
            _ => routes.push(DesiredRoute::pending(spec)),
        }
    }
    for service in services {
        let Some(url) = service.url.as_deref().filter(|u| !u.is_empty()) else {
            continue;
        };
        match origin(url) {
            Some(target) => routes.push(DesiredRoute::service(
                routespec::service(base, None, &service.name),
                target,
                service.name,
            )),
            None => tracing::warn!(service = %service.name, "service URL {url:?} is unusable"),
        }
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            origin("http://127.0.0.1:10101/").as_deref(),
            Some("http://127.0.0.1:10101")
        );
        assert_eq!(
            origin("https://svc.example/prefix/").as_deref(),
            Some("https://svc.example")
        );
        assert_eq!(origin("not a url"), None);
    }
}
