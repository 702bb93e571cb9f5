//! What this hub process knows about jobs whose start is under way: the port their server
//! reported, and jobs that must be cancelled because their start failed or was abandoned (the
//! hub's start timeout, a stop during the spawn). Saved spawner state covers everything
//! else; this is only what a start cannot hand back yet.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use hub_plugin::ServerRef;
use tokio::sync::watch;

use crate::Job;

/// One start in flight.
#[derive(Debug)]
struct Tracked {
    /// Which start registered it.
    ticket: u64,
    /// The port the server reported.
    report: watch::Sender<Option<u16>>,
    /// The job, once submitted.
    job: Option<Job>,
    /// The start ended without a server; the job is being cancelled.
    abandoned: bool,
}

/// Starts in flight, by server.
#[derive(Debug, Default)]
pub(crate) struct Starts {
    map: Mutex<HashMap<ServerRef, Tracked>>,
    next: AtomicU64,
}

/// What a report found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reported {
    /// Handed to the start.
    Taken,
    /// No start of that server is waiting.
    NotStarting,
}

impl Starts {
    fn lock(&self) -> MutexGuard<'_, HashMap<ServerRef, Tracked>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a start of `server` (replacing anything left by an earlier one) and returns
    /// its ticket and where reports arrive.
    pub fn begin(&self, server: &ServerRef) -> (u64, watch::Receiver<Option<u16>>) {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let (report, receiver) = watch::channel(None);
        self.lock().insert(
            server.clone(),
            Tracked {
                ticket,
                report,
                job: None,
                abandoned: false,
            },
        );
        (ticket, receiver)
    }

    /// Records the submitted job of start `ticket`.
    pub fn submitted(&self, server: &ServerRef, ticket: u64, job: Job) {
        if let Some(t) = self.lock().get_mut(server).filter(|t| t.ticket == ticket) {
            t.job = Some(job);
        }
    }

    /// Hands a reported port to the start of `server`.
    pub fn report(&self, server: &ServerRef, port: u16) -> Reported {
        match self.lock().get(server) {
            Some(t) if !t.abandoned => {
                t.report.send_replace(Some(port));
                Reported::Taken
            }
            _ => Reported::NotStarting,
        }
    }

    /// The job of a start of `server` in flight (or being cancelled), if one was submitted.
    pub fn job(&self, server: &ServerRef) -> Option<(Job, bool)> {
        self.lock()
            .get(server)
            .and_then(|t| t.job.clone().map(|j| (j, t.abandoned)))
    }

    /// Forgets start `ticket` of `server`.
    pub fn end(&self, server: &ServerRef, ticket: u64) {
        if let Entry::Occupied(e) = self.lock().entry(server.clone())
            && e.get().ticket == ticket
        {
            e.remove();
        }
    }

    /// Forgets whatever is tracked for `server` with job `job_id`.
    pub fn forget_job(&self, server: &ServerRef, job_id: &str) {
        if let Entry::Occupied(e) = self.lock().entry(server.clone())
            && e.get().job.as_ref().is_some_and(|j| j.id == job_id)
        {
            e.remove();
        }
    }

    /// Marks start `ticket` abandoned; returns its job when one must be cancelled.
    pub fn abandon(&self, server: &ServerRef, ticket: u64) -> Option<Job> {
        let mut map = self.lock();
        let Entry::Occupied(mut e) = map.entry(server.clone()) else {
            return None;
        };
        if e.get().ticket != ticket {
            return None;
        }
        match e.get().job.clone() {
            Some(job) => {
                e.get_mut().abandoned = true;
                Some(job)
            }
            None => {
                e.remove();
                None
            }
        }
    }
}
