//! The waiting line of the spawn page. When `hub.concurrent_spawn_limit` servers are already
//! starting, a start requested from the pages is not refused (as the API refuses it, with
//! 429): it waits here, first come first served, and the spawn-pending page shows its place
//! in the line. A worker starts the head of the line whenever a slot is free. Leaving the
//! line is the spawn-pending page's Cancel button.
//!
//! The line lives in this hub's memory: a restart forgets it (the pages then offer to start
//! the server again).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::db::models::users::User;
use crate::spawn::{self, Failure, Pending, ServerError};
use crate::state::AppState;

/// How often the worker looks for a free slot.
const TICK: Duration = Duration::from_millis(200);

/// How long the worker waits for a start to be under way before it looks at the next one.
const START_WAIT: Duration = Duration::from_secs(5);

/// One waiting start.
#[derive(Debug, Clone)]
struct Waiting {
    server_id: i32,
    user: User,
    options: Option<Map<String, Value>>,
}

#[derive(Debug, Default)]
struct Line {
    waiting: VecDeque<Waiting>,
    worker: bool,
}

/// Where a server stands in the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Place {
    /// 1 for the next to start.
    pub position: usize,
    /// How many are waiting.
    pub length: usize,
}

/// The line (one per hub, in [`AppState`]).
#[derive(Debug, Default, Clone)]
pub struct SpawnQueue(Arc<Mutex<Line>>);

impl SpawnQueue {
    fn lock(&self) -> MutexGuard<'_, Line> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where server `server_id` waits, if it does.
    pub fn place(&self, server_id: i32) -> Option<Place> {
        let line = self.lock();
        line.waiting
            .iter()
            .position(|w| w.server_id == server_id)
            .map(|i| Place {
                position: i + 1,
                length: line.waiting.len(),
            })
    }

    /// How many starts wait.
    pub fn len(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes server `server_id` out of the line; whether it was in it.
    pub fn leave(&self, server_id: i32) -> bool {
        let mut line = self.lock();
        let before = line.waiting.len();
        line.waiting.retain(|w| w.server_id != server_id);
        line.waiting.len() != before
    }

    /// Puts the start of server `server_id` of `user` at the end of the line (or leaves it
    /// where it is, with the new options), and makes sure a worker runs.
    pub fn join(
        &self,
        state: &AppState,
        server_id: i32,
        user: &User,
        options: Option<Map<String, Value>>,
    ) -> Place {
        let mut line = self.lock();
        match line.waiting.iter_mut().find(|w| w.server_id == server_id) {
            Some(waiting) => waiting.options = options,
            None => line.waiting.push_back(Waiting {
                server_id,
                user: user.clone(),
                options,
            }),
        }
        if !line.worker {
            line.worker = true;
            tokio::spawn(work(state.clone(), self.clone()));
        }
        let position = line
            .waiting
            .iter()
            .position(|w| w.server_id == server_id)
            .unwrap_or(0);
        Place {
            position: position + 1,
            length: line.waiting.len(),
        }
    }

    /// The head of the line, when a slot is free; the worker stops when the line is empty.
    fn next(&self, state: &AppState) -> Next {
        let mut line = self.lock();
        if line.waiting.is_empty() {
            line.worker = false;
            return Next::Done;
        }
        if state.shutdown.requested().is_some() {
            line.worker = false;
            line.waiting.clear();
            return Next::Done;
        }
        let full = state
            .config
            .hub
            .concurrent_spawn_limit
            .is_reached(state.servers.spawns_pending());
        if full {
            return Next::Wait;
        }
        line.waiting.pop_front().map_or(Next::Wait, Next::Start)
    }

    /// Puts `waiting` back at the head of the line (its start found no free slot after all).
    fn requeue(&self, waiting: Waiting) {
        let mut line = self.lock();
        if !line
            .waiting
            .iter()
            .any(|w| w.server_id == waiting.server_id)
        {
            line.waiting.push_front(waiting);
        }
    }
}

enum Next {
    Done,
    Wait,
    Start(Waiting),
}

/// Starts waiting servers as slots free up, until the line is empty.
async fn work(state: AppState, queue: SpawnQueue) {
    loop {
        match queue.next(&state) {
            Next::Done => return,
            Next::Wait => tokio::time::sleep(TICK).await,
            Next::Start(waiting) => {
                if !start(&state, &waiting).await {
                    queue.requeue(waiting);
                    tokio::time::sleep(TICK).await;
                }
            }
        }
    }
}

/// Starts one waiting server; `false` when it must wait again (the throttle refused it).
/// Other refusals are recorded as the server's failure, which its spawn-pending page shows.
async fn start(state: &AppState, waiting: &Waiting) -> bool {
    let st = state.clone();
    let user = waiting.user.clone();
    let (id, options) = (waiting.server_id, waiting.options.clone());
    let mut task = tokio::spawn(async move { spawn::start(&st, &user, id, options).await });
    let deadline = tokio::time::Instant::now() + START_WAIT;
    loop {
        tokio::select! {
            joined = &mut task => {
                return match joined {
                    Ok(Err(ServerError::Refused { status: 429, retry_after: Some(_), .. })) => false,
                    Ok(Err(ServerError::Refused { status, message, .. })) => {
                        // A failed spawn has recorded its failure already.
                        if state.servers.snapshot(id).failure.is_none() {
                            let mut failure = Failure::new(message).because("refused");
                            failure.status = status;
                            state.servers.set_failure(id, failure);
                        }
                        true
                    }
                    Ok(Err(ServerError::Db(e))) => {
                        tracing::error!("spawn queue: database failure: {e}");
                        state.servers.set_failure(
                            id,
                            Failure::new("The hub's database is unavailable; try again shortly."),
                        );
                        true
                    }
                    Ok(Ok(_)) => true,
                    Err(e) => {
                        tracing::error!("spawn queue: start task ended abnormally: {e}");
                        true
                    }
                };
            }
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                let under_way = state
                    .servers
                    .current(id)
                    .is_some_and(|op| op.kind == Pending::Spawn);
                if under_way || tokio::time::Instant::now() >= deadline {
                    return true;
                }
            }
        }
    }
}
