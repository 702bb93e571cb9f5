//! A short-lived cache of resolved token identities (and of the `GET /hub/api/user` replies built
//! for them), so that a client making many requests with one token does not cost several
//! database queries each time.
//!
//! Correctness over speed: every change that can weaken a credential invalidates the whole
//! cache at once (any mutating API request, any server stop or cleanup, which revokes server
//! tokens), so within one hub a revoked token or a demoted owner takes effect immediately; an
//! entry also expires after [`TTL`], which bounds how long a change made by another hub on the
//! same database can take to apply, and a token past its `expires_at` is never served.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::access::Identity;

/// How long a resolved identity is reused.
pub const TTL: Duration = Duration::from_secs(5);

/// Entries kept at most; the cache is emptied when it would grow past this.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
struct Entry {
    identity: Identity,
    generation: u64,
    stored: Instant,
}

/// Identities by token digest, and the `GET /hub/api/user` replies built for them.
#[derive(Debug, Default)]
pub struct IdentityCache {
    generation: AtomicU64,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    /// `GET /user` replies by (token digest, `include_stopped_servers`).
    replies: Mutex<HashMap<([u8; 32], bool), Reply>>,
}

#[derive(Debug)]
struct Reply {
    body: serde_json::Value,
    generation: u64,
    stored: Instant,
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl IdentityCache {
    /// The identity resolved for `token` a moment ago, if still valid.
    pub fn get(&self, token: &str) -> Option<Identity> {
        let generation = self.generation.load(Ordering::Acquire);
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = entries.get(&key(token))?;
        let fresh = entry.generation == generation && entry.stored.elapsed() < TTL;
        let unexpired = entry
            .identity
            .token
            .as_ref()
            .and_then(|t| t.expires_at)
            .is_none_or(|at| at > Utc::now().naive_utc());
        (fresh && unexpired).then(|| entry.identity.clone())
    }

    /// Remembers the identity `token` resolved to, unless the cache was invalidated since
    /// `generation` (read before resolving) was taken.
    pub fn put(&self, token: &str, identity: Identity, generation: u64) {
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            key(token),
            Entry {
                identity,
                generation,
                stored: Instant::now(),
            },
        );
    }

    /// The `GET /user` reply built for `token` a moment ago, if still valid.
    pub fn reply(&self, token: &str, include_stopped: bool) -> Option<serde_json::Value> {
        let generation = self.generation.load(Ordering::Acquire);
        let replies = self
            .replies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let reply = replies.get(&(key(token), include_stopped))?;
        (reply.generation == generation && reply.stored.elapsed() < TTL).then(|| reply.body.clone())
    }

    /// Remembers the `GET /user` reply for `token`, unless the cache was invalidated since
    /// `generation` was taken.
    pub fn put_reply(
        &self,
        token: &str,
        include_stopped: bool,
        body: serde_json::Value,
        generation: u64,
    ) {
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        let mut replies = self
            .replies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if replies.len() >= MAX_ENTRIES {
            replies.clear();
        }
        replies.insert(
            (key(token), include_stopped),
            Reply {
                body,
                generation,
                stored: Instant::now(),
            },
        );
    }

    /// The current generation, to pass to [`IdentityCache::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Forgets every identity: call after anything that may weaken a credential.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.replies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}
