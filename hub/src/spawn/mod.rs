//! Starting, stopping and polling users' servers: the state machine around the `Spawner`,
//! progress events, limits, and recovery after a hub restart.
//!
//! What survives a restart is in the database: each `spawners` row carries its persisted phase
//! (`Stopped` → `Spawning` → `Running` → `Stopping` → `Stopped`), the spawner's opaque state,
//! the address and the user options. [`Servers`] holds only what a running hub keeps in memory:
//! which operation is in flight for a server (and how to cancel or await it), the progress
//! events of the current spawn for late listeners, and the last failure message.
//!
//! - [`lifecycle`]: [`start`] (limits, credentials, environment, `Spawner::start` under its
//!   timeout, readiness check, proxy route, `Running`) and [`stop`] (route, `Spawner::stop`,
//!   credentials revoked, `Stopped`); failures clean up the same way.
//! - [`poller`]: the periodic poll of running servers and [`Servers::resume`] at startup.
//! - [`routes`]: the routes the proxy should have, from the database.
//! - [`profiles`]: the configured server profiles, laid over the user's options at each start.
//! - [`credentials`], [`mod@env`], [`readiness`], [`progress`], [`names`]: the pieces.
//!
//! Every operation on a server is registered here first ([`Servers`] lets one run at a time per
//! server), then persisted with a compare-and-set on the phase, so neither two requests nor two
//! hubs on one database can start the same server twice.

pub mod credentials;
pub mod env;
pub mod lifecycle;
pub mod names;
pub mod poller;
pub mod profiles;
pub mod progress;
pub mod readiness;
pub mod routes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};

pub use lifecycle::{ServerError, StartResult, StopResult, delete_server, start, stop, stop_all};
pub use poller::{ResumeReport, poll_once, spawn_poller};
pub use progress::Progress;
pub use routes::desired_routes;

use crate::config::Limit;

/// How long a start request waits for the spawn before answering 202 (JupyterHub's
/// `slow_spawn_timeout`).
pub const SLOW_SPAWN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stop request waits for the stop before answering 202 (`slow_stop_timeout`).
pub const SLOW_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// JupyterHub's `pending` values that an operation in flight shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pending {
    /// Being started.
    Spawn,
    /// Being stopped (or cleaned up after a failed spawn or a poll that found it dead).
    Stop,
    /// Being checked (after a hub restart).
    Check,
}

impl Pending {
    /// `spawn`, `stop` or `check`.
    pub fn as_str(self) -> &'static str {
        match self {
            Pending::Spawn => "spawn",
            Pending::Stop => "stop",
            Pending::Check => "check",
        }
    }
}

/// A spawn that did not produce a ready server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status for API callers (500 unless the spawner refused with its own).
    pub status: u16,
    /// Text for people, without the `Spawn failed: ` of the progress event.
    pub message: String,
    /// The spawn was cancelled by a stop.
    pub cancelled: bool,
    /// The `reason` label of `server_spawn_duration_seconds`: `error`, `timeout`, `exited`,
    /// `refused` or `cancelled`.
    pub reason: &'static str,
}

impl Failure {
    /// A failure answered with 500.
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            status: 500,
            message: message.into(),
            cancelled: false,
            reason: "error",
        }
    }

    /// The same failure with another metrics reason.
    #[must_use]
    pub fn because(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }

    /// A cancelled spawn.
    pub fn cancelled() -> Self {
        Failure {
            status: 500,
            message: "Spawn cancelled".to_owned(),
            cancelled: true,
            reason: "cancelled",
        }
    }

    /// The message of the progress stream's failed event.
    pub fn event_message(&self) -> String {
        if self.cancelled {
            self.message.clone()
        } else {
            format!("Spawn failed: {}", self.message)
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server is running and ready.
    Ready,
    /// The spawn failed (and was cleaned up).
    Failed(Failure),
    /// The server is stopped.
    Stopped,
}

/// An operation in flight, as others see it.
#[derive(Debug, Clone)]
pub struct OpView {
    /// What it does.
    pub kind: Pending,
    /// Wakes the spawn to cancel it.
    pub cancel: Arc<Notify>,
    /// Becomes `Some` when the operation ends.
    pub done: watch::Receiver<Option<Outcome>>,
}

impl OpView {
    /// Waits up to `limit` for the end; `None` if it did not end in time.
    pub async fn wait(&self, limit: Duration) -> Option<Outcome> {
        wait_done(self.done.clone(), limit).await
    }
}

/// Waits up to `limit` for an operation to end.
pub async fn wait_done(
    mut done: watch::Receiver<Option<Outcome>>,
    limit: Duration,
) -> Option<Outcome> {
    let ended = tokio::time::timeout(limit, done.wait_for(Option::is_some)).await;
    match ended {
        Ok(Ok(outcome)) => outcome.clone(),
        // The operation's task vanished without a word (a panic): report what the DB says.
        Ok(Err(_)) => Some(Outcome::Stopped),
        Err(_) => None,
    }
}

/// The right to run an operation on one server: whoever holds it finishes it with
/// [`Servers::finish`].
#[derive(Debug)]
pub struct Ticket {
    server_id: i32,
    op_id: u64,
    kind: Pending,
    cancel: Arc<Notify>,
    done: watch::Sender<Option<Outcome>>,
}

impl Ticket {
    /// The server (spawner row id).
    pub fn server_id(&self) -> i32 {
        self.server_id
    }

    /// What the operation does now.
    pub fn kind(&self) -> Pending {
        self.kind
    }

    /// Notified when someone cancels the operation.
    pub fn cancel(&self) -> Arc<Notify> {
        Arc::clone(&self.cancel)
    }

    /// A receiver for the end of the operation.
    pub fn subscribe(&self) -> watch::Receiver<Option<Outcome>> {
        self.done.subscribe()
    }
}

/// Why an operation could not begin.
#[derive(Debug)]
pub enum Busy {
    /// Another operation runs on this server.
    Pending(OpView),
    /// `concurrent_spawn_limit` spawns are in flight.
    Throttled {
        /// How many.
        pending: usize,
    },
}

#[derive(Debug)]
struct Op {
    id: u64,
    view: OpView,
}

impl Op {
    /// The task that ran this operation is gone without finishing it (it panicked).
    fn is_abandoned(&self) -> bool {
        self.view.done.has_changed().is_err() && self.view.done.borrow().is_none()
    }
}

#[derive(Debug, Default)]
struct Entry {
    op: Option<Op>,
    progress: Option<Arc<Progress>>,
    failure: Option<Failure>,
    remove_after_stop: bool,
}

impl Entry {
    fn is_idle(&self) -> bool {
        self.op.is_none()
            && self.progress.is_none()
            && self.failure.is_none()
            && !self.remove_after_stop
    }
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<i32, Entry>,
    spawning: usize,
}

impl Table {
    fn heal(&mut self, id: i32) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if let Some(op) = entry.op.take_if(|op| op.is_abandoned()) {
            tracing::error!(
                server_id = id,
                "an operation ended without finishing; dropped"
            );
            if op.view.kind == Pending::Spawn {
                self.spawning = self.spawning.saturating_sub(1);
            }
        }
    }

    fn heal_all(&mut self) {
        let ids: Vec<i32> = self
            .entries
            .iter()
            .filter(|(_, e)| e.op.as_ref().is_some_and(Op::is_abandoned))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.heal(id);
        }
    }
}

/// What is known in memory about one server.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The operation in flight.
    pub pending: Option<Pending>,
    /// Progress of the current (or last) spawn in this hub.
    pub progress: Option<Arc<Progress>>,
    /// Why the last spawn failed, until the next one begins.
    pub failure: Option<Failure>,
}

/// Runtime bookkeeping of servers (pending operations, progress channels). Everything that must
/// survive a restart is in the database; this holds only what a running hub keeps in memory.
///
/// Keyed by the `spawners` row id, which survives renames.
#[derive(Debug)]
pub struct Servers {
    table: Mutex<Table>,
    next_op: AtomicU64,
    slow_spawn_ms: AtomicU64,
    slow_stop_ms: AtomicU64,
    http: OnceLock<reqwest::Client>,
    /// Spawns that failed since the last one that succeeded (`consecutive_failure_limit`).
    consecutive_failures: AtomicU32,
    /// Why the hub must exit, once something decided it must.
    fatal: Mutex<Option<String>>,
}

impl Default for Servers {
    fn default() -> Self {
        Servers {
            table: Mutex::new(Table::default()),
            next_op: AtomicU64::new(1),
            slow_spawn_ms: AtomicU64::new(duration_ms(SLOW_SPAWN_TIMEOUT)),
            slow_stop_ms: AtomicU64::new(duration_ms(SLOW_STOP_TIMEOUT)),
            http: OnceLock::new(),
            consecutive_failures: AtomicU32::new(0),
            fatal: Mutex::new(None),
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Servers {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The table with the operation of server `id` dropped if its task died without finishing
    /// it (a panic), so no server stays pending forever.
    fn lock_healed(&self, id: i32) -> MutexGuard<'_, Table> {
        let mut table = self.lock();
        table.heal(id);
        table
    }

    /// How long start and stop requests wait before answering 202.
    pub fn slow_timeouts(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.slow_spawn_ms.load(Ordering::Relaxed)),
            Duration::from_millis(self.slow_stop_ms.load(Ordering::Relaxed)),
        )
    }

    /// Changes how long start and stop requests wait before answering 202 (JupyterHub fixes
    /// both at 10 s; tests shorten them).
    pub fn set_slow_timeouts(&self, spawn: Duration, stop: Duration) {
        self.slow_spawn_ms
            .store(duration_ms(spawn), Ordering::Relaxed);
        self.slow_stop_ms
            .store(duration_ms(stop), Ordering::Relaxed);
    }

    /// The HTTP client of readiness checks.
    pub fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(readiness::http_client)
    }

    /// Counts a finished spawn for `consecutive_failure_limit`: a success resets the count, a
    /// failure adds one. Returns the failures in a row so far.
    pub fn count_spawn(&self, succeeded: bool) -> u32 {
        if succeeded {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            0
        } else {
            self.consecutive_failures
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1)
        }
    }

    /// Records why the hub must exit with an error (the first reason wins).
    pub fn set_fatal(&self, reason: impl Into<String>) {
        let mut fatal = self.fatal.lock().unwrap_or_else(PoisonError::into_inner);
        if fatal.is_none() {
            *fatal = Some(reason.into());
        }
    }

    /// Why the hub must exit with an error, when something decided it must.
    pub fn fatal(&self) -> Option<String> {
        self.fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Spawns in flight in this hub.
    pub fn spawns_pending(&self) -> usize {
        self.lock().spawning
    }

    /// What is known about server `id`.
    pub fn snapshot(&self, id: i32) -> Snapshot {
        let table = self.lock_healed(id);
        table
            .entries
            .get(&id)
            .map_or_else(Snapshot::default, |e| Snapshot {
                pending: e.op.as_ref().map(|op| op.view.kind),
                progress: e.progress.clone(),
                failure: e.failure.clone(),
            })
    }

    /// The operation in flight on server `id`.
    pub fn current(&self, id: i32) -> Option<OpView> {
        let table = self.lock_healed(id);
        table
            .entries
            .get(&id)
            .and_then(|e| e.op.as_ref())
            .map(|op| op.view.clone())
    }

    /// Registers an operation on server `id`. A spawn is refused when `spawn_limit` spawns are
    /// already in flight, clears the last failure, and makes `progress` the current progress.
    ///
    /// # Errors
    /// [`Busy`] when another operation runs or the spawn limit is reached.
    pub fn begin(
        &self,
        id: i32,
        kind: Pending,
        spawn_limit: Limit,
        progress: Option<Arc<Progress>>,
    ) -> Result<Ticket, Busy> {
        let mut table = self.lock_healed(id);
        if let Some(op) = table.entries.get(&id).and_then(|e| e.op.as_ref()) {
            return Err(Busy::Pending(op.view.clone()));
        }
        if kind == Pending::Spawn && spawn_limit.is_reached(table.spawning) {
            table.heal_all();
            if spawn_limit.is_reached(table.spawning) {
                return Err(Busy::Throttled {
                    pending: table.spawning,
                });
            }
        }
        let op_id = self.next_op.fetch_add(1, Ordering::Relaxed);
        let cancel = Arc::new(Notify::new());
        let (done, done_rx) = watch::channel(None);
        let entry = table.entries.entry(id).or_default();
        entry.op = Some(Op {
            id: op_id,
            view: OpView {
                kind,
                cancel: Arc::clone(&cancel),
                done: done_rx,
            },
        });
        if kind == Pending::Spawn {
            entry.failure = None;
            entry.progress = progress;
            table.spawning += 1;
        }
        Ok(Ticket {
            server_id: id,
            op_id,
            kind,
            cancel,
            done,
        })
    }

    /// Changes what a running operation does (a failed spawn becomes a stop while it cleans
    /// up).
    pub fn change_kind(&self, ticket: &mut Ticket, kind: Pending) {
        let mut table = self.lock();
        let Table { entries, spawning } = &mut *table;
        if let Some(op) = entries
            .get_mut(&ticket.server_id)
            .and_then(|e| e.op.as_mut())
            .filter(|op| op.id == ticket.op_id)
        {
            if op.view.kind == Pending::Spawn && kind != Pending::Spawn {
                *spawning = spawning.saturating_sub(1);
            } else if op.view.kind != Pending::Spawn && kind == Pending::Spawn {
                *spawning += 1;
            }
            op.view.kind = kind;
        }
        ticket.kind = kind;
    }

    /// Records why the last spawn of server `id` failed.
    pub fn set_failure(&self, id: i32, failure: Failure) {
        self.lock().entries.entry(id).or_default().failure = Some(failure);
    }

    /// Asks that server `id` be deleted once the operation in flight has stopped it.
    pub fn request_remove(&self, id: i32) {
        self.lock().entries.entry(id).or_default().remove_after_stop = true;
    }

    /// Takes the removal request of server `id`.
    pub fn take_remove_request(&self, id: i32) -> bool {
        let mut table = self.lock();
        table
            .entries
            .get_mut(&id)
            .is_some_and(|e| std::mem::take(&mut e.remove_after_stop))
    }

    /// Ends the operation of `ticket` and tells everyone waiting for it.
    pub fn finish(&self, ticket: Ticket, outcome: Outcome) {
        {
            let mut table = self.lock();
            let Table { entries, spawning } = &mut *table;
            if let Some(entry) = entries.get_mut(&ticket.server_id) {
                if entry.op.as_ref().is_some_and(|op| op.id == ticket.op_id) {
                    entry.op = None;
                    // Listeners hold their own handle; a new spawn brings a new one.
                    entry.progress = None;
                    if ticket.kind == Pending::Spawn {
                        *spawning = spawning.saturating_sub(1);
                    }
                }
                if entry.is_idle() {
                    entries.remove(&ticket.server_id);
                }
            }
        }
        ticket.done.send_replace(Some(outcome));
    }

    /// Forgets server `id` (deleted).
    pub fn forget(&self, id: i32) {
        let mut table = self.lock();
        if table.entries.get(&id).is_some_and(|e| e.op.is_none()) {
            table.entries.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_operation_per_server_and_the_spawn_limit() {
        let servers = Servers::default();
        let limit = Limit::at_most(2);
        let mut a = servers.begin(1, Pending::Spawn, limit, None).unwrap();
        assert!(matches!(
            servers.begin(1, Pending::Stop, limit, None),
            Err(Busy::Pending(OpView {
                kind: Pending::Spawn,
                ..
            }))
        ));
        let b = servers.begin(2, Pending::Spawn, limit, None).unwrap();
        assert!(matches!(
            servers.begin(3, Pending::Spawn, limit, None),
            Err(Busy::Throttled { pending: 2 })
        ));
        // Stops are never throttled.
        let c = servers.begin(3, Pending::Stop, limit, None).unwrap();
        assert_eq!(servers.spawns_pending(), 2);
        servers.change_kind(&mut a, Pending::Stop);
        assert_eq!(servers.spawns_pending(), 1);
        let view = servers.current(1).unwrap();
        assert_eq!(view.kind, Pending::Stop);
        servers.set_failure(1, Failure::new("no"));
        servers.finish(a, Outcome::Failed(Failure::new("no")));
        assert_eq!(
            view.wait(Duration::from_millis(10)).await,
            Some(Outcome::Failed(Failure::new("no")))
        );
        assert_eq!(servers.snapshot(1).failure, Some(Failure::new("no")));
        assert!(servers.snapshot(1).pending.is_none());
        servers.finish(b, Outcome::Ready);
        servers.finish(c, Outcome::Stopped);
        assert_eq!(servers.spawns_pending(), 0);
        // Idle entries are dropped; failures are kept until the next spawn.
        assert!(servers.lock().entries.contains_key(&1));
        assert!(!servers.lock().entries.contains_key(&2));
        let again = servers.begin(1, Pending::Spawn, limit, None).unwrap();
        assert!(servers.snapshot(1).failure.is_none());
        let waiting = servers.current(1).unwrap();
        assert_eq!(waiting.wait(Duration::from_millis(10)).await, None);
        servers.finish(again, Outcome::Ready);
    }

    #[tokio::test]
    async fn operations_whose_task_died_are_dropped() {
        let servers = Servers::default();
        let ticket = servers
            .begin(7, Pending::Spawn, Limit::at_most(1), None)
            .unwrap();
        let view = servers.current(7).unwrap();
        drop(ticket);
        assert_eq!(
            view.wait(Duration::from_millis(10)).await,
            Some(Outcome::Stopped)
        );
        assert!(servers.current(7).is_none());
        assert_eq!(servers.spawns_pending(), 0);
        let lost = servers
            .begin(8, Pending::Spawn, Limit::at_most(1), None)
            .unwrap();
        drop(lost);
        // The limit does not count the lost spawn.
        let ok = servers.begin(9, Pending::Spawn, Limit::at_most(1), None);
        assert!(ok.is_ok());
    }

    #[test]
    fn consecutive_failures_reset_on_success() {
        let servers = Servers::default();
        assert_eq!(servers.count_spawn(false), 1);
        assert_eq!(servers.count_spawn(false), 2);
        assert_eq!(servers.count_spawn(true), 0);
        assert_eq!(servers.count_spawn(false), 1);
        assert_eq!(servers.fatal(), None);
        servers.set_fatal("first");
        servers.set_fatal("second");
        assert_eq!(servers.fatal().as_deref(), Some("first"));
    }

    #[test]
    fn failure_messages() {
        assert_eq!(Failure::new("x").event_message(), "Spawn failed: x");
        assert_eq!(Failure::cancelled().event_message(), "Spawn cancelled");
    }
}
