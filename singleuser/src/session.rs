//! What the hub said about each token, reused for a short while (JupyterHub's `_ExpiringDict`
//! in `services/auth.py`, 300 s there, `--auth-cache-ttl` here).
//!
//! - A valid token's owner is reused for `ttl`; after that the next request asks the hub
//!   again, so revocation, logout at the hub and a stopped server count within `ttl`.
//! - A token the hub refused is remembered for a few seconds only, so random tokens cannot
//!   make the shim flood the hub, yet a fresh login is never refused from the cache.
//! - When the hub cannot be reached, an owner checked less than `ttl + grace` ago keeps
//!   access (the hub is restarting, say); nobody new gets in.
//! - Requests arriving together for the same token share one call to the hub.
//! - Keys are SHA-256 digests: no token is kept in memory beyond the request. The table is
//!   bounded; expired entries go first when it is full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use crate::hub_client::{HubClient, HubError, HubUser};

/// Most entries kept.
const MAX_ENTRIES: usize = 10_000;
/// How long a refused token is remembered (at most `ttl`).
const NEGATIVE_TTL: Duration = Duration::from_secs(5);

type Key = [u8; 32];
type Check = Shared<BoxFuture<'static, Result<Option<Arc<HubUser>>, HubError>>>;

#[derive(Debug, Clone)]
struct Entry {
    user: Option<Arc<HubUser>>,
    checked: Instant,
}

/// Asks the hub about tokens, through the cache.
pub trait Identify: Send + Sync + 'static {
    /// The owner of `token`, `None` when the hub refuses it.
    fn identify(&self, token: String) -> BoxFuture<'static, Result<Option<HubUser>, HubError>>;
}

impl Identify for HubClient {
    fn identify(&self, token: String) -> BoxFuture<'static, Result<Option<HubUser>, HubError>> {
        let client = self.clone();
        async move { client.identify(&token).await }.boxed()
    }
}

/// The token → owner cache.
pub struct Sessions {
    hub: Arc<dyn Identify>,
    ttl: Duration,
    grace: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
    inflight: Mutex<HashMap<Key, Check>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("ttl", &self.ttl)
            .field("grace", &self.grace)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

fn key(token: &str) -> Key {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// A cache in front of `hub`.
    pub fn new(hub: Arc<dyn Identify>, ttl: Duration, grace: Duration) -> Self {
        Self {
            hub,
            ttl,
            grace,
            entries: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts
        // and removals), so a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn inflight(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Check>> {
        self.inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The owner of `token`; `Ok(None)` when the hub refuses it.
    ///
    /// # Errors
    /// When the hub cannot answer and no usable cached answer exists.
    pub async fn check(&self, token: &str) -> Result<Option<Arc<HubUser>>, HubError> {
        let k = key(token);
        let cached = self.entries().get(&k).cloned();
        if let Some(entry) = &cached {
            let age = entry.checked.elapsed();
            let fresh = match entry.user {
                Some(_) => age < self.ttl,
                None => age < self.ttl.min(NEGATIVE_TTL),
            };
            if fresh {
                return Ok(entry.user.clone());
            }
        }
        let check = {
            let mut inflight = self.inflight();
            inflight
                .entry(k)
                .or_insert_with(|| {
                    let fut = self.hub.identify(token.to_owned());
                    async move { fut.await.map(|u| u.map(Arc::new)) }
                        .boxed()
                        .shared()
                })
                .clone()
        };
        let result = check.await;
        self.inflight().remove(&k);
        match result {
            Ok(user) => {
                self.store(k, user.clone());
                Ok(user)
            }
            Err(e) if e.is_unavailable() => match cached {
                Some(Entry {
                    user: Some(user),
                    checked,
                }) if checked.elapsed() < self.ttl + self.grace => {
                    tracing::warn!(
                        user.name = %user.name,
                        "{e}; keeping the access checked {}s ago",
                        checked.elapsed().as_secs()
                    );
                    Ok(Some(user))
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Records an owner the shim just learned (after the OAuth exchange).
    pub fn remember(&self, token: &str, user: Arc<HubUser>) {
        self.store(key(token), Some(user));
    }

    /// Forgets `token` (logout).
    pub fn forget(&self, token: &str) {
        self.entries().remove(&key(token));
    }

    fn store(&self, k: Key, user: Option<Arc<HubUser>>) {
        let now = Instant::now();
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES {
            let keep = self.ttl + self.grace;
            entries.retain(|_, e| now.duration_since(e.checked) < keep);
            // Still full: drop refused tokens first, then anything.
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, e| e.user.is_some());
            }
            while entries.len() >= MAX_ENTRIES {
                let Some(victim) = entries.keys().next().copied() else {
                    break;
                };
                entries.remove(&victim);
            }
        }
        entries.insert(k, Entry { user, checked: now });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A hub double: answers from a closure and counts calls.
    struct FakeHub {
        calls: AtomicUsize,
        answer: Mutex<Result<Option<HubUser>, HubError>>,
        delay: Duration,
    }

    impl FakeHub {
        fn new(answer: Result<Option<HubUser>, HubError>) -> Arc<Self> {
            Arc::new(Self {
                calls: AtomicUsize::new(0),
                answer: Mutex::new(answer),
                delay: Duration::from_millis(10),
            })
        }
        fn set(&self, answer: Result<Option<HubUser>, HubError>) {
            *self.answer.lock().unwrap() = answer;
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Identify for FakeHub {
        fn identify(&self, _: String) -> BoxFuture<'static, Result<Option<HubUser>, HubError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let answer = self.answer.lock().unwrap().clone();
            let delay = self.delay;
            async move {
                tokio::time::sleep(delay).await;
                answer
            }
            .boxed()
        }
    }

    fn alice() -> HubUser {
        HubUser {
            name: "alice".into(),
            kind: "user".into(),
            scopes: vec!["access:servers!user=alice".into()],
            admin: false,
        }
    }

    fn down() -> HubError {
        HubError::Unreachable("connection refused".into())
    }

    const TTL: Duration = Duration::from_secs(60);
    const GRACE: Duration = Duration::from_secs(300);

    #[tokio::test(start_paused = true)]
    async fn cached_until_ttl_then_rechecked() {
        let hub = FakeHub::new(Ok(Some(alice())));
        let sessions = Sessions::new(hub.clone(), TTL, GRACE);
        assert_eq!(sessions.check("t").await.unwrap().unwrap().name, "alice");
        assert_eq!(sessions.check("t").await.unwrap().unwrap().name, "alice");
        assert_eq!(hub.calls(), 1);
        // Revoked at the hub: still cached...
        hub.set(Ok(None));
        tokio::time::advance(TTL - Duration::from_secs(1)).await;
        assert!(sessions.check("t").await.unwrap().is_some());
        // ...and refused once the lifetime is over.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(sessions.check("t").await.unwrap().is_none());
        assert_eq!(hub.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn refused_tokens_are_remembered_briefly() {
        let hub = FakeHub::new(Ok(None));
        let sessions = Sessions::new(hub.clone(), TTL, GRACE);
        assert!(sessions.check("bad").await.unwrap().is_none());
        assert!(sessions.check("bad").await.unwrap().is_none());
        assert_eq!(hub.calls(), 1);
        tokio::time::advance(NEGATIVE_TTL).await;
        hub.set(Ok(Some(alice())));
        assert!(sessions.check("bad").await.unwrap().is_some());
        assert_eq!(hub.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn hub_down_keeps_known_users_within_grace() {
        let hub = FakeHub::new(Ok(Some(alice())));
        let sessions = Sessions::new(hub.clone(), TTL, GRACE);
        sessions.check("t").await.unwrap();
        hub.set(Err(down()));
        tokio::time::advance(TTL + Duration::from_secs(1)).await;
        assert!(sessions.check("t").await.unwrap().is_some());
        // Unknown tokens fail at once.
        assert!(sessions.check("new").await.unwrap_err().is_unavailable());
        tokio::time::advance(GRACE).await;
        assert!(sessions.check("t").await.is_err());
        // A hub that answers 4xx is not "down": no grace.
        let hub = FakeHub::new(Ok(Some(alice())));
        let sessions = Sessions::new(hub.clone(), TTL, GRACE);
        sessions.check("t").await.unwrap();
        hub.set(Err(HubError::Status {
            status: 404,
            message: String::new(),
        }));
        tokio::time::advance(TTL).await;
        assert!(sessions.check("t").await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_checks_share_one_call() {
        let hub = FakeHub::new(Ok(Some(alice())));
        let sessions = Arc::new(Sessions::new(hub.clone(), TTL, GRACE));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let s = sessions.clone();
            tasks.push(tokio::spawn(async move { s.check("t").await }));
        }
        for t in tasks {
            assert!(t.await.unwrap().unwrap().is_some());
        }
        assert_eq!(hub.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn forget_and_remember() {
        let hub = FakeHub::new(Ok(None));
        let sessions = Sessions::new(hub.clone(), TTL, GRACE);
        sessions.remember("t", Arc::new(alice()));
        assert!(sessions.check("t").await.unwrap().is_some());
        assert_eq!(hub.calls(), 0);
        sessions.forget("t");
        assert!(sessions.check("t").await.unwrap().is_none());
        assert_eq!(hub.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn bounded() {
        let hub = FakeHub::new(Ok(None));
        let sessions = Sessions::new(hub, TTL, GRACE);
        for i in 0..MAX_ENTRIES + 50 {
            sessions.store(key(&i.to_string()), None);
        }
        assert!(sessions.len() <= MAX_ENTRIES);
    }
}
