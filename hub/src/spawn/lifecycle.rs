//! Starting and stopping one server (hub-protocol §1.4, §6.3).
//!
//! Start: limits → user options saved → operation registered → phase `Spawning` (compare and
//! set) → server token and OAuth client → environment → `Spawner::start` under
//! `spawner.start_timeout` → address and state saved → readiness check until
//! `spawner.http_timeout` → proxy route → phase `Running`. The request waits
//! [`SLOW_SPAWN_TIMEOUT`](super::SLOW_SPAWN_TIMEOUT) for all that (201), else answers 202 and the
//! spawn goes on in the background.
//!
//! Any failure (or a cancelling stop) publishes the failed progress event, records the message,
//! then cleans up like a stop: route deleted, `Spawner::stop(now)`, credentials revoked, phase
//! `Stopped`.
//!
//! Stop: phase `Stopping` → route deleted first → `Spawner::stop` → credentials revoked (the
//! server's tokens, its OAuth client and every token issued through it) → phase `Stopped`.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;

use hub_plugin::{PollStatus, ProgressSender, ServerRef, SpawnContext, SpawnError};
use serde_json::{Map, Value};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::names::log_name;
use super::progress::{self, Progress};
use super::readiness::{self, NotUp};
use super::{
    Busy, Failure, Outcome, Pending, Ticket, credentials, env, profiles, routes, wait_done,
};
use crate::api::models::server_url;
use crate::config::Limit;
use crate::db::models::groups;
use crate::db::models::spawners::{self, ServerAddress, ServerPhase, Spawner};
use crate::db::models::users::User;
use crate::db::{self, DbError};
use crate::state::AppState;

/// How long the hub waits for `Spawner::stop` before giving up on it (and recording the server
/// stopped anyway). Local processes take at most 30 + 30 + 5 s.
pub const STOP_LIMIT: Duration = Duration::from_secs(120);

/// How long [`stop_all`] waits for each server.
const SHUTDOWN_STOP_WAIT: Duration = Duration::from_secs(300);

/// The answer to a start request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartResult {
    /// Ready (201).
    Ready,
    /// Still starting (202).
    Pending,
}

/// The answer to a stop request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopResult {
    /// Stopped, or was not running (204).
    Stopped,
    /// Still stopping (202).
    Pending,
}

/// Why a start or stop request is refused.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A refusal with a status and a message for people.
    #[error("{message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Message.
        message: String,
        /// `Retry-After` seconds, for 429.
        retry_after: Option<u32>,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl ServerError {
    /// A refusal without `Retry-After`.
    pub fn refused(status: u16, message: impl Into<String>) -> Self {
        ServerError::Refused {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// The 429 of the spawn throttle: `Retry-After` between 30 and 60 s, and the same wait,
/// rounded up to ten seconds, in the message.
pub fn throttled(pending: usize) -> ServerError {
    let retry_after: u32 = rand::random_range(30..=60);
    let shown = retry_after.div_ceil(10) * 10;
    tracing::warn!(
        pending,
        "spawn refused: concurrent_spawn_limit reached; retry in {retry_after} s"
    );
    ServerError::Refused {
        status: 429,
        message: format!(
            "Too many users trying to log in right now. Try again in {shown} seconds."
        ),
        retry_after: Some(retry_after),
    }
}

/// Which server, for the spawner.
pub fn server_ref(user: &User, row: &Spawner) -> ServerRef {
    ServerRef {
        user: user.name.clone(),
        name: row.name.clone(),
    }
}

/// Seconds as people write them (`60`, `0.5`).
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}", d.as_secs_f64())
    }
}

/// Loads a server row.
pub(super) async fn load(state: &AppState, id: i32) -> Result<Option<Spawner>, DbError> {
    state
        .db
        .run(move |conn| spawners::find_by_id(conn, id))
        .await
}

fn not_found(user: &User) -> ServerError {
    ServerError::refused(404, format!("{} has no such server", user.name))
}

/// The reply to a start request while another operation runs.
fn busy(op_kind: Pending, name: &str) -> Result<StartResult, ServerError> {
    match op_kind {
        Pending::Spawn => Ok(StartResult::Pending),
        other => Err(ServerError::refused(
            400,
            format!("{name} is pending {}", other.as_str()),
        )),
    }
}

/// Starts server `server_id` of `user`. `options` are new user options to save and use; `None`
/// reuses the saved ones.
///
/// # Errors
/// 400 when it runs or another operation is pending, 429 at the limits, the spawn's own failure
/// when it fails within the slow-spawn timeout, database failures.
pub async fn start(
    state: &AppState,
    user: &User,
    server_id: i32,
    options: Option<Map<String, Value>>,
) -> Result<StartResult, ServerError> {
    let servers = &state.servers;
    let mut row = load(state, server_id)
        .await?
        .ok_or_else(|| not_found(user))?;
    let name = log_name(&user.name, &row.name);
    // A stale `Running` row is cleaned up first; give that one chance to settle.
    for _ in 0..3 {
        if let Some(op) = servers.current(server_id) {
            return busy(op.kind, &name);
        }
        row = load(state, server_id)
            .await?
            .ok_or_else(|| not_found(user))?;
        match row.phase {
            ServerPhase::Stopped => break,
            // Being started by another hub on this database.
            ServerPhase::Spawning => return Ok(StartResult::Pending),
            ServerPhase::Stopping => return busy(Pending::Stop, &name),
            ServerPhase::Running => {
                let saved = Value::Object(row.state.clone());
                match state.spawner.poll(&server_ref(user, &row), &saved).await {
                    Ok(PollStatus::Stopped(status)) => {
                        reap(state, user, &row, status).await;
                    }
                    Ok(PollStatus::Running) => {
                        return Err(ServerError::refused(
                            400,
                            format!("{name} is already running"),
                        ));
                    }
                    Err(e) => {
                        tracing::warn!(server = %name, "poll failed: {e}");
                        return Err(ServerError::refused(
                            400,
                            format!("{name} is already running"),
                        ));
                    }
                }
            }
        }
    }
    if row.phase != ServerPhase::Stopped {
        return Err(ServerError::refused(
            400,
            format!("{name} is pending {}", Pending::Stop.as_str()),
        ));
    }

    if let Some(max) = state.config.hub.active_server_limit.get() {
        let active = state.db.run(spawners::count_active).await?;
        if active >= i64::from(max) {
            tracing::warn!(active, max, server = %name, "spawn refused: active_server_limit");
            state
                .metrics
                .server_spawn_duration_seconds
                .observe(&["failure", "too-many-users"], Duration::ZERO);
            return Err(ServerError::refused(
                429,
                "Active user limit exceeded. Try again in a few minutes.",
            ));
        }
    }

    // The profile is checked before the options are saved, so a refused choice is not kept;
    // the profile used is saved with them (the default one, when none was chosen).
    let chosen = options.clone().unwrap_or_else(|| row.user_options.clone());
    let (effective, profile_env) = with_profile(state, user, chosen.clone()).await?;
    let mut options = options;
    if let Some(slug) = effective.get(profiles::PROFILE_OPTION)
        && !state.config.profiles.is_empty()
        && chosen.get(profiles::PROFILE_OPTION) != Some(slug)
    {
        let mut with_slug = chosen;
        with_slug.insert(profiles::PROFILE_OPTION.to_owned(), slug.clone());
        options = Some(with_slug);
    }
    if let Some(options) = options {
        state
            .db
            .run(move |conn| spawners::set_user_options(conn, server_id, &options))
            .await?;
    }
    let options = effective;

    let progress = Arc::new(Progress::new());
    progress.publish(progress::requested_event());
    let ticket = match servers.begin(
        server_id,
        Pending::Spawn,
        state.config.hub.concurrent_spawn_limit,
        Some(Arc::clone(&progress)),
    ) {
        Ok(ticket) => ticket,
        Err(Busy::Pending(op)) => return busy(op.kind, &name),
        Err(Busy::Throttled { pending }) => {
            state
                .metrics
                .server_spawn_duration_seconds
                .observe(&["failure", "throttled"], Duration::ZERO);
            return Err(throttled(pending));
        }
    };
    let moved = state
        .db
        .run(move |conn| {
            spawners::transition(
                conn,
                server_id,
                &[ServerPhase::Stopped],
                ServerPhase::Spawning,
                db::now(),
            )
        })
        .await;
    match moved {
        Ok(true) => {}
        Ok(false) => {
            servers.finish(ticket, Outcome::Stopped);
            // Someone else (another hub) got there first.
            return match load(state, server_id).await?.map(|r| r.phase) {
                Some(ServerPhase::Spawning) => Ok(StartResult::Pending),
                Some(ServerPhase::Running) => Err(ServerError::refused(
                    400,
                    format!("{name} is already running"),
                )),
                _ => busy(Pending::Stop, &name),
            };
        }
        Err(e) => {
            servers.finish(ticket, Outcome::Stopped);
            return Err(e.into());
        }
    }
    tracing::info!(server = %name, "spawning");
    let done = ticket.subscribe();
    tokio::spawn(run_spawn(
        state.clone(),
        user.clone(),
        row,
        (options, profile_env),
        progress,
        ticket,
    ));
    let (slow, _) = servers.slow_timeouts();
    match wait_done(done, slow).await {
        None => Ok(StartResult::Pending),
        Some(Outcome::Ready) => Ok(StartResult::Ready),
        Some(Outcome::Failed(failure)) => {
            Err(ServerError::refused(failure.status, failure.message))
        }
        Some(Outcome::Stopped) => Err(ServerError::refused(500, "Spawn failed")),
    }
}

/// The options and extra environment of a start: with profiles configured, the chosen (or
/// default) profile laid over the user's options; otherwise the options as they are.
async fn with_profile(
    state: &AppState,
    user: &User,
    options: Map<String, Value>,
) -> Result<(Map<String, Value>, BTreeMap<String, String>), ServerError> {
    if state.config.profiles.is_empty() {
        return Ok((options, BTreeMap::new()));
    }
    let user_id = user.id;
    let groups: Vec<String> = state
        .db
        .run(move |conn| groups::for_user(conn, user_id))
        .await?
        .into_iter()
        .map(|g| g.name)
        .collect();
    match profiles::resolve(&state.config, &user.name, &groups, &options) {
        Ok(Some(profile)) => Ok(profiles::apply(profile, options)),
        Ok(None) => Ok((options, BTreeMap::new())),
        Err(e) => Err(ServerError::refused(e.status(), e.to_string())),
    }
}

/// What a spawn got far enough to need cleaning up.
#[derive(Debug, Default)]
struct Job {
    start_called: AtomicBool,
    route_attempted: AtomicBool,
    state: Mutex<Option<Value>>,
}

impl Job {
    fn set_state(&self, value: Value) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
    }

    fn state(&self) -> Value {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| Value::Object(Map::new()))
    }
}

async fn run_spawn(
    state: AppState,
    user: User,
    row: Spawner,
    (options, profile_env): (Map<String, Value>, BTreeMap<String, String>),
    progress: Arc<Progress>,
    mut ticket: Ticket,
) {
    let job = Job::default();
    let cancel = ticket.cancel();
    let name = log_name(&user.name, &row.name);
    let began = Instant::now();
    let result = {
        let steps = AssertUnwindSafe(Box::pin(spawn_steps(
            &state,
            &user,
            &row,
            (options, profile_env),
            &progress,
            &job,
        )))
        .catch_unwind();
        tokio::select! {
            biased;
            () = cancel.notified() => Err(Failure::cancelled()),
            result = steps => result.unwrap_or_else(|_| {
                Err(internal("starting the server", "the spawner panicked", &name))
            }),
        }
    };
    let spawn_metric = &state.metrics.server_spawn_duration_seconds;
    match &result {
        Ok(()) => spawn_metric.observe(&["success", ""], began.elapsed()),
        Err(failure) => spawn_metric.observe(&["failure", failure.reason], began.elapsed()),
    }
    match result {
        Ok(()) => {
            state.servers.count_spawn(true);
            tracing::info!(server = %name, "server ready");
            progress.finish(progress::ready_event(&server_url(
                &state, &user.name, &row.name,
            )));
            state.servers.finish(ticket, Outcome::Ready);
        }
        Err(failure) => {
            if failure.cancelled {
                tracing::info!(server = %name, "spawn cancelled");
            } else {
                tracing::warn!(server = %name, "spawn failed: {}", failure.message);
            }
            state.servers.set_failure(row.id, failure.clone());
            state.servers.change_kind(&mut ticket, Pending::Stop);
            progress.finish(progress::failed_event(&failure.event_message()));
            mark_stopping(&state, row.id).await;
            let teardown = Teardown {
                saved_state: job.state(),
                call_stop: job.start_called.load(Ordering::SeqCst),
                delete_route: job.route_attempted.load(Ordering::SeqCst),
                now: true,
            };
            teardown.run(&state, &user, &row).await;
            let cancelled = failure.cancelled;
            finish_stopped(&state, &user, &row, ticket, Outcome::Failed(failure)).await;
            if !cancelled {
                count_failure(&state);
            }
        }
    }
}

/// Counts a failed spawn; at `consecutive_failure_limit` failures in a row the hub shuts down
/// with an error, so that its supervisor restarts it in a clean state.
fn count_failure(state: &AppState) {
    let failures = state.servers.count_spawn(false);
    let limit = state.config.hub.consecutive_failure_limit;
    if limit.is_reached(usize::try_from(failures).unwrap_or(usize::MAX)) {
        let reason = format!(
            "{failures} consecutive spawns failed (hub.consecutive_failure_limit = {}); \
             exiting so that a supervisor can restart the hub",
            limit.get().unwrap_or_default()
        );
        tracing::error!("{reason}");
        state.servers.set_fatal(reason);
        state
            .shutdown
            .request(crate::state::ShutdownRequest::default());
    }
}

/// The user-facing failure for a spawner error.
fn spawn_failure(error: SpawnError, name: &str) -> Failure {
    match error {
        SpawnError::Refused { message, status } => Failure {
            status: if (400..600).contains(&status) {
                status
            } else {
                500
            },
            message,
            cancelled: false,
            reason: "refused",
        },
        SpawnError::Timeout(secs) => {
            Failure::new(format!("Server did not start within {secs} seconds")).because("timeout")
        }
        SpawnError::Failed(e) => {
            tracing::error!(server = %name, "spawner failed: {e:#}");
            Failure::new("The server could not be started; the hub's log has the details")
        }
    }
}

fn internal(what: &str, error: impl std::fmt::Display, name: &str) -> Failure {
    tracing::error!(server = %name, "{what}: {error}");
    Failure::new(format!(
        "Internal error while {what}; the hub's log has the details"
    ))
}

/// Where `Spawner::start` said the server listens.
fn parse_address(url: &str, prefix: &str) -> Result<ServerAddress, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
    let ip = match parsed.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(host) => host.to_string(),
        None => return Err(format!("{url:?} has no host")),
    };
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| format!("{url:?} has no port"))?;
    Ok(ServerAddress {
        proto: parsed.scheme().to_owned(),
        ip,
        port: i32::from(port),
        base_url: prefix.to_owned(),
    })
}

async fn spawn_steps(
    state: &AppState,
    user: &User,
    row: &Spawner,
    (options, profile_env): (Map<String, Value>, BTreeMap<String, String>),
    progress: &Progress,
    job: &Job,
) -> Result<(), Failure> {
    let name = log_name(&user.name, &row.name);
    let issued = credentials::issue(state, user, row)
        .await
        .map_err(|e| internal("issuing the server's credentials", e, &name))?;
    let prefix = server_url(state, &user.name, &row.name);
    let mut environment = env::server_env(
        &state.config,
        &env::ServerFacts {
            user: &user.name,
            server: &row.name,
            prefix: &prefix,
            token: &issued.token,
            client_id: &issued.client_id,
        },
        &|key| std::env::var(key).ok(),
    );
    // A profile's variables come last, like `spawner.environment`.
    environment.extend(profile_env);
    let server = server_ref(user, row);
    let (sender, mut events) = ProgressSender::channel();
    // The profile's command, if any. `profile` in these options was set by the hub when it
    // applied the (checked) profile, so the command only ever comes from the configuration.
    let command = profiles::command_of(&state.config, &options);
    let ctx = SpawnContext {
        server: server.clone(),
        env: environment,
        prefix: prefix.clone(),
        user_options: Value::Object(options),
        command,
        progress: sender,
    };
    let start_timeout = state.config.spawner.start_timeout;
    job.start_called.store(true, Ordering::SeqCst);
    let started = {
        let start = tokio::time::timeout(start_timeout, state.spawner.start(&ctx));
        tokio::pin!(start);
        let mut open = true;
        loop {
            tokio::select! {
                result = &mut start => break result,
                event = events.recv(), if open => match event {
                    Ok(event) => progress.publish(progress::spawner_event(&event)),
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => open = false,
                },
            }
        }
    };
    drop(ctx);
    loop {
        match events.try_recv() {
            Ok(event) => progress.publish(progress::spawner_event(&event)),
            Err(TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    let started = match started {
        Err(_) => {
            return Err(Failure::new(format!(
                "Server did not start within {} seconds",
                seconds(start_timeout)
            ))
            .because("timeout"));
        }
        Ok(Err(e)) => return Err(spawn_failure(e, &name)),
        Ok(Ok(started)) => started,
    };
    let saved = match started.state {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => {
            job.set_state(other);
            return Err(internal(
                "saving the spawner's state",
                "the spawner returned a state that is not a JSON object",
                &name,
            ));
        }
    };
    job.set_state(Value::Object(saved.clone()));
    let address = parse_address(&started.url, &prefix)
        .map_err(|e| internal("reading the server's address", e, &name))?;
    let id = row.id;
    let (record_address, record_state) = (address.clone(), saved.clone());
    state
        .db
        .run(move |conn| spawners::record_started(conn, id, &record_address, &record_state))
        .await
        .map_err(|e| internal("saving the server's address", e, &name))?;

    let http_timeout = state.config.spawner.http_timeout;
    let api_url = format!("{}{}api", address.origin(), prefix);
    readiness::wait_up(
        state.servers.http(),
        &api_url,
        http_timeout,
        &*state.spawner,
        &server,
        &Value::Object(saved),
    )
    .await
    .map_err(|e| match e {
        NotUp::Timeout => Failure::new(format!(
            "Server at {}{prefix} didn't respond in {} seconds",
            address.origin(),
            seconds(http_timeout)
        ))
        .because("timeout"),
        NotUp::Exited(status) => Failure::new(match status {
            Some(code) => format!("Server stopped while starting [status={code}]"),
            None => "Server stopped while starting".to_owned(),
        })
        .because("exited"),
    })?;

    if let Some(proxy) = &state.proxy {
        job.route_attempted.store(true, Ordering::SeqCst);
        add_route(state, proxy, &user.name, &row.name, &address)
            .await
            .map_err(|e| internal("adding the proxy route", e, &name))?;
    }
    let moved = state
        .db
        .run(move |conn| {
            spawners::transition(
                conn,
                id,
                &[ServerPhase::Spawning],
                ServerPhase::Running,
                db::now(),
            )
        })
        .await
        .map_err(|e| internal("recording the server as running", e, &name))?;
    if moved {
        Ok(())
    } else {
        Err(Failure::new("The server was stopped while it started"))
    }
}

/// Adds a server's route, timed for `proxy_add_duration_seconds`.
pub(super) async fn add_route(
    state: &AppState,
    proxy: &crate::proxy::ProxyControl,
    user: &str,
    server: &str,
    address: &ServerAddress,
) -> Result<(), crate::proxy::ProxyError> {
    let began = Instant::now();
    let result = proxy
        .add_route(&routes::user_route(state, user, server, address))
        .await;
    let status = if result.is_ok() { "success" } else { "failure" };
    state
        .metrics
        .proxy_add_duration_seconds
        .observe(&[status], began.elapsed());
    result
}

/// Persists `Stopping` from any active phase (errors are logged: the cleanup goes on).
async fn mark_stopping(state: &AppState, id: i32) {
    let result = state
        .db
        .run(move |conn| {
            spawners::transition(
                conn,
                id,
                &[
                    ServerPhase::Spawning,
                    ServerPhase::Running,
                    ServerPhase::Stopping,
                ],
                ServerPhase::Stopping,
                db::now(),
            )
        })
        .await;
    if let Err(e) = result {
        tracing::error!(server_id = id, "recording the server as stopping: {e}");
    }
}

/// The cleanup shared by stops, failed spawns and servers found dead.
#[derive(Debug)]
pub(super) struct Teardown {
    /// The spawner's state for `Spawner::stop`.
    pub saved_state: Value,
    /// Whether to call `Spawner::stop`.
    pub call_stop: bool,
    /// Whether to delete the proxy route.
    pub delete_route: bool,
    /// `Spawner::stop`'s `now`.
    pub now: bool,
}

impl Teardown {
    /// Route first, then the spawner, then credentials and phase `Stopped`. Errors are logged;
    /// every step runs regardless. Returns whether the spawner's stop succeeded (true when it
    /// was not called).
    pub(super) async fn run(self, state: &AppState, user: &User, row: &Spawner) -> bool {
        let name = log_name(&user.name, &row.name);
        if self.delete_route
            && let Some(proxy) = &state.proxy
        {
            let spec = routes::user_routespec(state, &user.name, &row.name);
            let began = Instant::now();
            let result = proxy.delete_route(&spec).await;
            let status = if result.is_ok() { "success" } else { "failure" };
            state
                .metrics
                .proxy_delete_duration_seconds
                .observe(&[status], began.elapsed());
            if let Err(e) = result {
                tracing::warn!(server = %name, "deleting the proxy route {spec}: {e}");
                // The periodic route sync removes it later.
                proxy.request_sync();
            }
        }
        let mut stopped = true;
        if self.call_stop {
            let server = server_ref(user, row);
            let stopping =
                AssertUnwindSafe(state.spawner.stop(&server, &self.saved_state, self.now))
                    .catch_unwind();
            match tokio::time::timeout(STOP_LIMIT, stopping).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    stopped = false;
                    tracing::error!(server = %name, "stopping the server: {e:#}");
                }
                Ok(Err(_)) => {
                    stopped = false;
                    tracing::error!(server = %name, "the spawner panicked while stopping the server");
                }
                Err(_) => {
                    stopped = false;
                    tracing::error!(
                        server = %name,
                        "the spawner did not stop the server within {} s; recording it stopped",
                        STOP_LIMIT.as_secs()
                    );
                }
            }
        }
        let id = row.id;
        let result = state
            .db
            .transaction(move |conn| {
                credentials::revoke_in(conn, id)?;
                match spawners::record_stopped(conn, id, &Map::new(), db::now()) {
                    Err(diesel::result::Error::NotFound) => Ok(()),
                    other => other,
                }
            })
            .await;
        // The server's token and its OAuth tokens are gone.
        state.identities.invalidate();
        if let Err(e) = result {
            tracing::error!(server = %name, "recording the server as stopped: {e}");
        }
        stopped
    }
}

/// Ends a stopping operation: deletes the server first if that was asked for.
async fn finish_stopped(
    state: &AppState,
    user: &User,
    row: &Spawner,
    ticket: Ticket,
    outcome: Outcome,
) {
    let remove = state.servers.take_remove_request(row.id);
    if remove {
        delete_server(state, user, row).await;
    }
    state.servers.finish(ticket, outcome);
    if remove {
        state.servers.forget(row.id);
    }
}

/// Deletes a stopped server for good (`{"remove": true}`): the spawner's `delete_forever`,
/// then the row with its OAuth client, tokens and shares.
pub async fn delete_server(state: &AppState, user: &User, row: &Spawner) {
    let name = log_name(&user.name, &row.name);
    let saved = Value::Object(row.state.clone());
    if let Err(e) = state
        .spawner
        .delete_forever(&server_ref(user, row), &saved)
        .await
    {
        tracing::error!(server = %name, "deleting the server's resources: {e:#}");
    }
    let id = row.id;
    match state.db.run(move |conn| spawners::delete(conn, id)).await {
        Ok(()) | Err(DbError::NotFound) => tracing::info!(server = %name, "server deleted"),
        Err(e) => tracing::error!(server = %name, "deleting the server: {e}"),
    }
    state.servers.forget(id);
}

/// Runs a stop whose operation is registered (`ticket`).
pub(super) async fn run_stop(state: AppState, user: User, row: Spawner, ticket: Ticket) {
    let name = log_name(&user.name, &row.name);
    tracing::info!(server = %name, "stopping");
    let began = Instant::now();
    mark_stopping(&state, row.id).await;
    let stopped = Teardown {
        saved_state: Value::Object(row.state.clone()),
        call_stop: true,
        delete_route: true,
        now: false,
    }
    .run(&state, &user, &row)
    .await;
    state.metrics.server_stop_seconds.observe(
        &[if stopped { "success" } else { "failure" }],
        began.elapsed(),
    );
    tracing::info!(server = %name, "stopped");
    finish_stopped(&state, &user, &row, ticket, Outcome::Stopped).await;
}

/// Cleans up a server whose process is gone (found by a poll). Returns false when another
/// operation was already running on it.
pub(super) async fn reap(
    state: &AppState,
    user: &User,
    row: &Spawner,
    status: Option<i32>,
) -> bool {
    let Ok(ticket) = state
        .servers
        .begin(row.id, Pending::Stop, Limit::NONE, None)
    else {
        return false;
    };
    tracing::warn!(
        server = %log_name(&user.name, &row.name),
        "server stopped unexpectedly (exit status {}); cleaning up",
        status.map_or_else(|| "unknown".to_owned(), |s| s.to_string())
    );
    run_stop(state.clone(), user.clone(), row.clone(), ticket).await;
    true
}

/// Stops server `server_id` of `user`, deleting it afterwards when `remove` is set. Waits up to
/// the slow-stop timeout.
///
/// # Errors
/// 400 while a check is pending; database failures.
pub async fn stop(
    state: &AppState,
    user: &User,
    server_id: i32,
    remove: bool,
) -> Result<StopResult, ServerError> {
    let (_, slow) = state.servers.slow_timeouts();
    stop_waiting(state, user, server_id, remove, slow).await
}

async fn stop_waiting(
    state: &AppState,
    user: &User,
    server_id: i32,
    remove: bool,
    wait: Duration,
) -> Result<StopResult, ServerError> {
    let servers = &state.servers;
    for _ in 0..4 {
        if let Some(op) = servers.current(server_id) {
            if remove {
                servers.request_remove(server_id);
            }
            match op.kind {
                Pending::Stop => {
                    return Ok(match op.wait(Duration::ZERO).await {
                        Some(_) => StopResult::Stopped,
                        None => StopResult::Pending,
                    });
                }
                Pending::Check => {
                    let name = match load(state, server_id).await? {
                        Some(row) => log_name(&user.name, &row.name),
                        None => user.name.clone(),
                    };
                    return Err(ServerError::refused(
                        400,
                        format!("{name} is pending check"),
                    ));
                }
                Pending::Spawn => {
                    op.cancel.notify_one();
                    match op.wait(wait).await {
                        None => return Ok(StopResult::Pending),
                        // The spawn finished just before the cancel: stop the running server.
                        Some(Outcome::Ready) => continue,
                        Some(_) => return Ok(StopResult::Stopped),
                    }
                }
            }
        }
        let Some(row) = load(state, server_id).await? else {
            return Ok(StopResult::Stopped);
        };
        if row.phase == ServerPhase::Stopped {
            if remove {
                delete_server(state, user, &row).await;
            }
            return Ok(StopResult::Stopped);
        }
        let Ok(ticket) = servers.begin(server_id, Pending::Stop, Limit::NONE, None) else {
            continue;
        };
        if remove {
            servers.request_remove(server_id);
        }
        let done = ticket.subscribe();
        tokio::spawn(run_stop(state.clone(), user.clone(), row, ticket));
        return Ok(match wait_done(done, wait).await {
            Some(_) => StopResult::Stopped,
            None => StopResult::Pending,
        });
    }
    Ok(StopResult::Pending)
}

/// Stops every active server and waits for each (hub shutdown with `cleanup_servers`).
/// Returns how many were stopped.
///
/// # Errors
/// Database failures while listing servers.
pub async fn stop_all(state: &AppState) -> Result<usize, DbError> {
    let rows = routes::active_servers(state).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for (user, row) in rows {
        let state = state.clone();
        tasks.spawn(async move {
            let result = stop_waiting(&state, &user, row.id, false, SHUTDOWN_STOP_WAIT).await;
            if let Err(e) = &result {
                tracing::error!(server = %log_name(&user.name, &row.name), "stop at shutdown: {e}");
            }
            matches!(result, Ok(StopResult::Stopped))
        });
    }
    let mut stopped = 0;
    while let Some(result) = tasks.join_next().await {
        if matches!(result, Ok(true)) {
            stopped += 1;
        }
    }
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let a = parse_address("http://127.0.0.1:5000", "/user/a/").unwrap();
        assert_eq!(a.origin(), "http://127.0.0.1:5000");
        assert_eq!(a.base_url, "/user/a/");
        let a = parse_address("https://[::1]:443", "/user/a/").unwrap();
        assert_eq!(a.ip, "::1");
        assert_eq!(a.origin(), "https://[::1]:443");
        let a = parse_address("http://node7", "/user/a/").unwrap();
        assert_eq!(a.port, 80);
        assert!(parse_address("nonsense", "/").is_err());
    }

    #[test]
    fn throttle_message_and_header_agree() {
        for _ in 0..50 {
            let ServerError::Refused {
                status,
                message,
                retry_after,
            } = throttled(3)
            else {
                panic!()
            };
            assert_eq!(status, 429);
            let retry = retry_after.unwrap();
            assert!((30..=60).contains(&retry));
            let shown = retry.div_ceil(10) * 10;
            assert_eq!(
                message,
                format!("Too many users trying to log in right now. Try again in {shown} seconds.")
            );
        }
        assert_eq!(seconds(Duration::from_secs(60)), "60");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5");
    }
}
