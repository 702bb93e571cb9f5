//! Test doubles for the extension points, for any crate's tests (feature `test-util`).
//!
//! - [`MockSpawner`]: starts a real in-process HTTP server per user server, on a free loopback
//!   port, that answers every request with 200; poll and stop act on it for real.
//! - [`SlowSpawner`]: a `MockSpawner` that takes a while to start, sending progress events.
//! - [`NeverSpawner`]: `start` never finishes (for timeouts and cancellation).
//! - [`FailingSpawner`]: `start` fails (or refuses, with a status).
//! - [`DummyAuthenticator`]: accepts any username, with an optional shared password.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::auth::{AuthError, AuthModel, Authenticator, LoginForm};
use crate::spawner::{
    PollStatus, ProgressEvent, ServerRef, SpawnContext, SpawnError, Spawner, Started,
};

/// Starts a tiny HTTP server per user server. Each answers every request with 200 and a JSON
/// body naming the server, so tests can tell which server answered.
#[derive(Debug, Default)]
pub struct MockSpawner {
    servers: Mutex<HashMap<u64, JoinHandle<()>>>,
    next_id: AtomicU64,
    /// How many `start` calls finished, for assertions.
    pub starts: AtomicU64,
    /// How many `stop` calls were made, for assertions.
    pub stops: AtomicU64,
}

impl MockSpawner {
    /// A spawner with no servers.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many servers are running now.
    pub fn running(&self) -> usize {
        self.lock().values().filter(|h| !h.is_finished()).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, JoinHandle<()>>> {
        self.servers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn launch(&self, server: &ServerRef) -> Result<Started, SpawnError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| SpawnError::Failed(e.into()))?;
        let port = listener
            .local_addr()
            .map_err(|e| SpawnError::Failed(e.into()))?
            .port();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"user": server.user, "server": server.name, "id": id}).to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    break;
                };
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut read = 0;
                    while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                        if read == buf.len() {
                            return;
                        }
                    }
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(resp.as_bytes()).await;
                });
            }
        });
        self.lock().insert(id, task);
        self.starts.fetch_add(1, Ordering::Relaxed);
        Ok(Started {
            url: format!("http://127.0.0.1:{port}"),
            state: json!({"mock_id": id, "port": port}),
        })
    }
}

fn mock_id(state: &Value) -> Option<u64> {
    state.get("mock_id").and_then(Value::as_u64)
}

#[async_trait]
impl Spawner for MockSpawner {
    fn kind(&self) -> &str {
        "mock"
    }

    async fn start(&self, ctx: &SpawnContext) -> Result<Started, SpawnError> {
        ctx.progress.send(ProgressEvent {
            progress: Some(50),
            message: "Spawning server...".into(),
            html_message: None,
        });
        self.launch(&ctx.server).await
    }

    async fn poll(&self, _server: &ServerRef, state: &Value) -> Result<PollStatus, SpawnError> {
        let alive = mock_id(state)
            .and_then(|id| self.lock().get(&id).map(|h| !h.is_finished()))
            .unwrap_or(false);
        Ok(if alive {
            PollStatus::Running
        } else {
            PollStatus::Stopped(Some(0))
        })
    }

    async fn stop(&self, _server: &ServerRef, state: &Value, _now: bool) -> Result<(), SpawnError> {
        self.stops.fetch_add(1, Ordering::Relaxed);
        if let Some(handle) = mock_id(state).and_then(|id| self.lock().remove(&id)) {
            handle.abort();
        }
        Ok(())
    }
}

/// A [`MockSpawner`] whose `start` takes `delay`, reporting progress every second.
#[derive(Debug)]
pub struct SlowSpawner {
    /// The servers, once started.
    pub inner: MockSpawner,
    /// How long `start` takes.
    pub delay: Duration,
}

impl SlowSpawner {
    /// A spawner taking `delay` to start each server.
    pub fn new(delay: Duration) -> Self {
        Self {
            inner: MockSpawner::new(),
            delay,
        }
    }
}

#[async_trait]
impl Spawner for SlowSpawner {
    fn kind(&self) -> &str {
        "slow"
    }

    async fn start(&self, ctx: &SpawnContext) -> Result<Started, SpawnError> {
        let steps = self.delay.as_secs().max(1);
        for step in 0..steps {
            ctx.progress.send(ProgressEvent {
                progress: Some(u8::try_from(10 + step * 80 / steps).unwrap_or(90)),
                message: format!("Waiting ({step}/{steps})"),
                html_message: None,
            });
            tokio::time::sleep(self.delay / u32::try_from(steps).unwrap_or(1)).await;
        }
        self.inner.launch(&ctx.server).await
    }

    async fn poll(&self, server: &ServerRef, state: &Value) -> Result<PollStatus, SpawnError> {
        self.inner.poll(server, state).await
    }

    async fn stop(&self, server: &ServerRef, state: &Value, now: bool) -> Result<(), SpawnError> {
        self.inner.stop(server, state, now).await
    }
}

/// `start` never finishes.
#[derive(Debug, Default)]
pub struct NeverSpawner;

#[async_trait]
impl Spawner for NeverSpawner {
    fn kind(&self) -> &str {
        "never"
    }

    async fn start(&self, _ctx: &SpawnContext) -> Result<Started, SpawnError> {
        std::future::pending().await
    }

    async fn poll(&self, _server: &ServerRef, _state: &Value) -> Result<PollStatus, SpawnError> {
        Ok(PollStatus::Stopped(None))
    }

    async fn stop(
        &self,
        _server: &ServerRef,
        _state: &Value,
        _now: bool,
    ) -> Result<(), SpawnError> {
        Ok(())
    }
}

/// `start` fails: with a refusal when `refusal` is set, otherwise with a failure.
#[derive(Debug, Default)]
pub struct FailingSpawner {
    /// `(message, status)` of the refusal to give instead of a failure.
    pub refusal: Option<(String, u16)>,
}

#[async_trait]
impl Spawner for FailingSpawner {
    fn kind(&self) -> &str {
        "failing"
    }

    async fn start(&self, _ctx: &SpawnContext) -> Result<Started, SpawnError> {
        Err(match &self.refusal {
            Some((message, status)) => SpawnError::Refused {
                message: message.clone(),
                status: *status,
            },
            None => SpawnError::Failed(anyhow::anyhow!("I don't work")),
        })
    }

    async fn poll(&self, _server: &ServerRef, _state: &Value) -> Result<PollStatus, SpawnError> {
        Ok(PollStatus::Stopped(Some(1)))
    }

    async fn stop(
        &self,
        _server: &ServerRef,
        _state: &Value,
        _now: bool,
    ) -> Result<(), SpawnError> {
        Ok(())
    }
}

/// A [`MockSpawner`] that also records the context of every start.
#[derive(Debug, Default)]
pub struct RecordingSpawner {
    /// The spawner that does the work.
    pub mock: MockSpawner,
    seen: Mutex<Vec<SpawnContext>>,
}

impl RecordingSpawner {
    /// The context of the last start.
    ///
    /// # Panics
    /// When nothing was started yet.
    pub fn last(&self) -> SpawnContext {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .last()
            .cloned()
            .expect("no start recorded")
    }

    /// How many starts were recorded.
    pub fn count(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

#[async_trait]
impl Spawner for RecordingSpawner {
    fn kind(&self) -> &str {
        "recording"
    }

    async fn start(&self, ctx: &SpawnContext) -> Result<Started, SpawnError> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ctx.clone());
        self.mock.start(ctx).await
    }

    async fn poll(&self, server: &ServerRef, state: &Value) -> Result<PollStatus, SpawnError> {
        self.mock.poll(server, state).await
    }

    async fn stop(&self, server: &ServerRef, state: &Value, now: bool) -> Result<(), SpawnError> {
        self.mock.stop(server, state, now).await
    }
}

/// Accepts any valid username; with `password` set, only that password.
#[derive(Debug, Default, Clone)]
pub struct DummyAuthenticator {
    /// The password everyone must give, if any.
    pub password: Option<String>,
}

#[async_trait]
impl Authenticator for DummyAuthenticator {
    fn kind(&self) -> &str {
        "dummy"
    }

    async fn authenticate(&self, form: &LoginForm) -> Result<Option<AuthModel>, AuthError> {
        if self.password.as_deref().is_some_and(|p| p != form.password) {
            return Ok(None);
        }
        Ok(Some(AuthModel {
            name: form.username.clone(),
            ..AuthModel::default()
        }))
    }
}

/// An authenticator that logs people in at an identity provider elsewhere: the login page
/// is `provider_url?redirect_uri=<callback>&state=<state>`, and the provider vouches for a
/// user by sending back `code=ok:<name>` (any other code is refused, `code=fail` is an
/// error). Enough to drive the hub's external-login flow end to end.
#[derive(Debug, Clone)]
pub struct ExternalAuthenticator {
    /// The identity provider's login page.
    pub provider_url: String,
}

#[async_trait]
impl Authenticator for ExternalAuthenticator {
    fn kind(&self) -> &str {
        "external"
    }

    async fn authenticate(&self, _form: &LoginForm) -> Result<Option<AuthModel>, AuthError> {
        Ok(None)
    }

    fn external_login_url(&self, callback_url: &str, state: &str) -> Option<String> {
        // Query values with everything but RFC 3986's unreserved characters escaped.
        let escape = |text: &str| -> String {
            text.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        };
        let sep = if self.provider_url.contains('?') {
            '&'
        } else {
            '?'
        };
        Some(format!(
            "{}{sep}redirect_uri={}&state={}",
            self.provider_url,
            escape(callback_url),
            escape(state)
        ))
    }

    async fn complete_external_login(
        &self,
        _callback_url: &str,
        params: &std::collections::BTreeMap<String, String>,
    ) -> Result<Option<AuthModel>, AuthError> {
        match params.get("code").map(String::as_str) {
            Some("fail") => Err(AuthError::Failed(anyhow::anyhow!(
                "the identity provider could not be reached"
            ))),
            Some(code) => Ok(code.strip_prefix("ok:").map(|name| AuthModel {
                name: name.to_owned(),
                ..AuthModel::default()
            })),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spawner::ProgressSender;

    fn ctx(user: &str) -> SpawnContext {
        SpawnContext {
            server: ServerRef {
                user: user.into(),
                name: String::new(),
            },
            env: Default::default(),
            prefix: format!("/user/{user}/"),
            user_options: Value::Null,
            command: None,
            progress: ProgressSender::channel().0,
        }
    }

    async fn get(url: &str) -> String {
        let addr = url.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /user/x/api HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn mock_servers_answer_and_stop() {
        let spawner = MockSpawner::new();
        let started = spawner.start(&ctx("alice")).await.unwrap();
        let reply = get(&started.url).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains(r#""user":"alice""#));
        let server = ServerRef {
            user: "alice".into(),
            name: String::new(),
        };
        assert_eq!(
            spawner.poll(&server, &started.state).await.unwrap(),
            PollStatus::Running
        );
        spawner.stop(&server, &started.state, false).await.unwrap();
        assert_eq!(
            spawner.poll(&server, &started.state).await.unwrap(),
            PollStatus::Stopped(Some(0))
        );
        // State from another process (unknown id) is not running.
        let foreign = json!({"mock_id": 999});
        assert_eq!(
            spawner.poll(&server, &foreign).await.unwrap(),
            PollStatus::Stopped(Some(0))
        );
    }

    #[tokio::test]
    async fn failing_and_never() {
        let refused = FailingSpawner {
            refusal: Some(("no".into(), 429)),
        };
        assert!(matches!(
            refused.start(&ctx("a")).await,
            Err(SpawnError::Refused { status: 429, .. })
        ));
        let never = NeverSpawner;
        let r = tokio::time::timeout(Duration::from_millis(50), never.start(&ctx("a"))).await;
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn dummy_password() {
        let a = DummyAuthenticator {
            password: Some("pw".into()),
        };
        let mut form = LoginForm {
            username: "bob".into(),
            password: "pw".into(),
            ..Default::default()
        };
        assert_eq!(a.authenticate(&form).await.unwrap().unwrap().name, "bob");
        form.password = "nope".into();
        assert!(a.authenticate(&form).await.unwrap().is_none());
    }
}
