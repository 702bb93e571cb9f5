//! Watching running servers: the periodic poll (every `spawner.poll_interval`, ±10 %) that
//! cleans up servers whose process died, and [`Servers::resume`] at startup, which picks up
//! what an earlier hub process left in the database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hub_plugin::PollStatus;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::lifecycle::{Teardown, add_route, reap, run_stop, server_ref};
use super::names::log_name;
use super::routes::{self, servers_in_phases};
use super::{Outcome, Pending, Servers, readiness};
use crate::config::Limit;
use crate::db::models::spawners::{self, ServerPhase, Spawner};
use crate::db::models::users::User;
use crate::db::{self, DbError};
use crate::state::AppState;

/// Polls running at once; more servers wait their turn.
const POLL_CONCURRENCY: usize = 32;

/// Starts the background poll. It ends when the hub is asked to shut down.
pub fn spawn_poller(state: &AppState) -> JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let interval = state
            .config
            .spawner
            .poll_interval
            .max(Duration::from_millis(100));
        loop {
            let jitter = 0.9 + rand::random::<f64>() * 0.2;
            tokio::select! {
                () = tokio::time::sleep(interval.mul_f64(jitter)) => {}
                _ = state.shutdown.wait() => break,
            }
            match poll_once(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("poll: cleaned up {n} server(s) that had stopped"),
                Err(e) => tracing::warn!("poll skipped: {e}"),
            }
        }
        tracing::debug!("server poller stopped");
    })
}

/// Polls every running server once; servers found stopped are cleaned up (route, token, OAuth
/// client, phase). Returns how many were cleaned up.
///
/// # Errors
/// Database failures while listing servers.
pub async fn poll_once(state: &AppState) -> Result<usize, DbError> {
    let rows = servers_in_phases(state, &[ServerPhase::Running]).await?;
    let limit = Arc::new(Semaphore::new(POLL_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for (user, row) in rows {
        if state.servers.current(row.id).is_some() {
            continue;
        }
        let state = state.clone();
        let limit = Arc::clone(&limit);
        tasks.spawn(async move {
            let Ok(_permit) = limit.acquire().await else {
                return false;
            };
            let saved = Value::Object(row.state.clone());
            let began = Instant::now();
            let polled = state.spawner.poll(&server_ref(&user, &row), &saved).await;
            let label = match &polled {
                Ok(PollStatus::Running) => "running",
                Ok(PollStatus::Stopped(_)) => "stopped",
                Err(_) => "error",
            };
            state
                .metrics
                .server_poll_duration_seconds
                .observe(&[label], began.elapsed());
            match polled {
                Ok(PollStatus::Running) => false,
                Ok(PollStatus::Stopped(status)) => reap(&state, &user, &row, status).await,
                Err(e) => {
                    tracing::warn!(server = %log_name(&user.name, &row.name), "poll failed: {e}");
                    false
                }
            }
        });
    }
    let mut cleaned = 0;
    while let Some(result) = tasks.join_next().await {
        if matches!(result, Ok(true)) {
            cleaned += 1;
        }
    }
    Ok(cleaned)
}

/// What [`Servers::resume`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResumeReport {
    /// Servers found running and ready, kept (and routed).
    pub adopted: usize,
    /// Servers found gone or not answering, cleaned up.
    pub cleaned_up: usize,
    /// Servers that were being stopped, stopped again.
    pub stopped: usize,
}

enum Resumed {
    Adopted,
    CleanedUp,
    Stopped,
    Busy,
}

impl Servers {
    /// Picks up what an earlier hub process left (JupyterHub's `init_spawners`), all servers at
    /// once:
    /// - `Running` and `Spawning`: poll with the saved state; a live server that passes the
    ///   readiness check is adopted (phase `Running`, route re-added), anything else is
    ///   cleaned up (stop, route, token and OAuth client removed, phase `Stopped`);
    /// - `Stopping`: stopped again.
    ///
    /// Call once at startup, before serving (or wrap it in a timeout and let the rest go on in
    /// the background: servers being checked answer `pending: check`).
    ///
    /// # Errors
    /// Database failures while listing servers.
    pub async fn resume(state: &AppState) -> Result<ResumeReport, DbError> {
        let began = Instant::now();
        let rows = routes::active_servers(state).await?;
        let mut tasks = JoinSet::new();
        for (user, row) in rows {
            let state = state.clone();
            tasks.spawn(async move { resume_one(&state, user, row).await });
        }
        let mut report = ResumeReport::default();
        while let Some(result) = tasks.join_next().await {
            match result {
                Ok(Resumed::Adopted) => report.adopted += 1,
                Ok(Resumed::CleanedUp) => report.cleaned_up += 1,
                Ok(Resumed::Stopped) => report.stopped += 1,
                Ok(Resumed::Busy) => {}
                Err(e) => tracing::error!("resuming a server: {e}"),
            }
        }
        state
            .metrics
            .init_spawners_duration_seconds
            .observe(began.elapsed());
        tracing::info!(
            adopted = report.adopted,
            cleaned_up = report.cleaned_up,
            stopped = report.stopped,
            "servers resumed"
        );
        Ok(report)
    }
}

async fn resume_one(state: &AppState, user: User, row: Spawner) -> Resumed {
    let name = log_name(&user.name, &row.name);
    let Ok(mut ticket) = state
        .servers
        .begin(row.id, Pending::Check, Limit::NONE, None)
    else {
        return Resumed::Busy;
    };
    if row.phase == ServerPhase::Stopping {
        state.servers.change_kind(&mut ticket, Pending::Stop);
        run_stop(state.clone(), user, row, ticket).await;
        return Resumed::Stopped;
    }
    let server = server_ref(&user, &row);
    let saved = Value::Object(row.state.clone());
    if crate::access::is_blocked(state, &user.name) {
        // A user blocked since the server started keeps nothing running (JupyterHub stops
        // them in `init_spawners` too): the server is stopped, its route, API token and
        // OAuth client go.
        tracing::info!(server = %name, "stopping the server of a blocked user");
        return clean_up(state, &user, &row, ticket, saved, false).await;
    }
    let alive = match state.spawner.poll(&server, &saved).await {
        Ok(PollStatus::Running) => true,
        Ok(PollStatus::Stopped(_)) => false,
        Err(e) => {
            tracing::warn!(server = %name, "poll after restart failed, taking it as stopped: {e}");
            false
        }
    };
    if alive && let Some(address) = row.server() {
        let url = format!("{}{}api", address.origin(), address.base_url);
        let up = readiness::wait_up(
            state.servers.http(),
            &url,
            state.config.spawner.http_timeout,
            &*state.spawner,
            &server,
            &saved,
        )
        .await;
        if up.is_ok() {
            let id = row.id;
            let adopted = state
                .db
                .run(move |conn| {
                    spawners::transition(
                        conn,
                        id,
                        &[ServerPhase::Spawning, ServerPhase::Running],
                        ServerPhase::Running,
                        db::now(),
                    )
                })
                .await;
            if let Err(e) = adopted {
                tracing::error!(server = %name, "recording the resumed server: {e}");
            }
            if let Some(proxy) = &state.proxy
                && let Err(e) = add_route(state, proxy, &user.name, &row.name, &address).await
            {
                tracing::warn!(server = %name, "restoring the route (the route sync retries): {e}");
            }
            tracing::info!(server = %name, "resumed running server");
            state.servers.finish(ticket, Outcome::Ready);
            return Resumed::Adopted;
        }
    }
    tracing::info!(server = %name, "server from before the restart is gone; cleaning up");
    clean_up(state, &user, &row, ticket, saved, true).await
}

/// Stops a server found at startup and removes what it had: phase `Stopping`, then the route,
/// the spawner's stop (`now` or gracefully), its API token and OAuth client, phase `Stopped`.
async fn clean_up(
    state: &AppState,
    user: &User,
    row: &Spawner,
    mut ticket: super::Ticket,
    saved: Value,
    now: bool,
) -> Resumed {
    let name = log_name(&user.name, &row.name);
    state.servers.change_kind(&mut ticket, Pending::Stop);
    let id = row.id;
    if let Err(e) = state
        .db
        .run(move |conn| {
            spawners::transition(
                conn,
                id,
                &[ServerPhase::Spawning, ServerPhase::Running],
                ServerPhase::Stopping,
                db::now(),
            )
        })
        .await
    {
        tracing::error!(server = %name, "recording the server as stopping: {e}");
    }
    Teardown {
        saved_state: saved,
        call_stop: true,
        delete_route: true,
        now,
    }
    .run(state, user, row)
    .await;
    state.servers.finish(ticket, Outcome::Stopped);
    Resumed::CleanedUp
}
