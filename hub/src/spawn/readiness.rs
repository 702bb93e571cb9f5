//! The readiness check (hub-protocol §6.3): `GET <server><prefix>api` without credentials and
//! without following redirects; any status below 500 means the server is up. Connection
//! errors and 5xx are retried with exponential backoff (0.2 s doubling to 5 s, with jitter)
//! until the deadline. Between attempts the spawner is polled, so a server whose process died
//! fails at once instead of after the whole timeout.
//!
//! An answer alone is not enough: the spawner must also confirm that the process listening on
//! the port is the server it started ([`Spawner::confirm_listening`]), so a user is never routed
//! to another user's server that holds the same port. An unconfirmed answer is logged as an
//! error and treated like no answer: the check goes on until the spawner reports the server
//! stopped (a server that could not bind its port exits) or the deadline passes.

use std::time::Duration;

use hub_plugin::{PollStatus, ServerRef, Spawner};
use serde_json::Value;
use tokio::time::Instant;

/// Why a server is not up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotUp {
    /// It did not answer below 500 within the deadline.
    Timeout,
    /// The spawner says it stopped (exit status when known).
    Exited(Option<i32>),
}

/// A client for readiness checks: no redirects, short per-request timeout, no proxy.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| {
            tracing::error!("readiness client with defaults: {e}");
            reqwest::Client::new()
        })
}

/// One attempt: `Some(version header)` when the server answered below 500.
async fn attempt(client: &reqwest::Client, url: &str, limit: Duration) -> Option<Option<String>> {
    match client.get(url).timeout(limit).send().await {
        Ok(resp) if resp.status().as_u16() < 500 => Some(
            resp.headers()
                .get("x-jupyterhub-version")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ),
        Ok(resp) => {
            tracing::debug!(url, status = %resp.status(), "server not ready yet");
            None
        }
        Err(e) => {
            tracing::trace!(url, "server not answering yet: {e}");
            None
        }
    }
}

/// Waits until `url` answers below 500 and the spawner confirms the answer came from the
/// server it started, the spawner reports the server stopped, or `timeout` passes.
///
/// # Errors
/// Why the server is not up.
pub async fn wait_up(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    spawner: &dyn Spawner,
    server: &ServerRef,
    state: &Value,
) -> Result<(), NotUp> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(200);
    // Whether an answer from a stranger was logged already (once per check is enough).
    let mut refused = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NotUp::Timeout);
        }
        if let Some(version) = attempt(client, url, left.min(Duration::from_secs(10))).await {
            match spawner.confirm_listening(server, state, url).await {
                Ok(true) => {
                    check_version(url, version.as_deref());
                    return Ok(());
                }
                Ok(false) if !refused => {
                    refused = true;
                    tracing::error!(
                        server = %server.full_name(),
                        url,
                        "the server's address answers, but the listening socket does not belong \
                         to the server's process (another process holds the port); not routing \
                         to it"
                    );
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    server = %server.full_name(),
                    url,
                    "cannot confirm that the server holds its port, not taking it as up: {e}"
                ),
            }
        }
        if let Ok(PollStatus::Stopped(status)) = spawner.poll(server, state).await {
            return Err(NotUp::Exited(status));
        }
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        let pause = delay.mul_f64(jitter);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NotUp::Timeout);
        }
        tokio::time::sleep(pause.min(left)).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Logs a single-user server whose JupyterHub version differs in its major version.
fn check_version(url: &str, theirs: Option<&str>) {
    let ours = crate::VERSION.split('.').next().unwrap_or_default();
    match theirs {
        None => tracing::debug!(url, "server sent no X-JupyterHub-Version"),
        Some(v) if v.split('.').next() != Some(ours) => tracing::warn!(
            url,
            "server has JupyterHub version {v}, the hub implements {}; authentication may fail",
            crate::VERSION
        ),
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use async_trait::async_trait;
    use hub_plugin::{SpawnContext, SpawnError, Started};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Answers every connection with an empty 200.
    async fn answering_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/user/a/api", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf).await;
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                });
            }
        });
        url
    }

    /// Says whether the answer is its server's, and whether that server still runs.
    #[derive(Debug)]
    struct Confirming {
        ours: bool,
        running: AtomicBool,
        asked: AtomicUsize,
    }

    #[async_trait]
    impl Spawner for Confirming {
        fn kind(&self) -> &str {
            "confirming"
        }
        async fn start(&self, _ctx: &SpawnContext) -> Result<Started, SpawnError> {
            unreachable!("not started in these tests")
        }
        async fn poll(&self, _: &ServerRef, _: &Value) -> Result<PollStatus, SpawnError> {
            Ok(if self.running.load(Ordering::SeqCst) {
                PollStatus::Running
            } else {
                PollStatus::Stopped(Some(1))
            })
        }
        async fn stop(&self, _: &ServerRef, _: &Value, _: bool) -> Result<(), SpawnError> {
            Ok(())
        }
        async fn confirm_listening(
            &self,
            _: &ServerRef,
            _: &Value,
            url: &str,
        ) -> Result<bool, SpawnError> {
            assert!(url.ends_with("/user/a/api"), "{url}");
            self.asked.fetch_add(1, Ordering::SeqCst);
            Ok(self.ours)
        }
    }

    fn spawner(ours: bool, running: bool) -> Confirming {
        Confirming {
            ours,
            running: AtomicBool::new(running),
            asked: AtomicUsize::new(0),
        }
    }

    #[tokio::test]
    async fn an_answer_counts_only_when_the_spawner_confirms_it() {
        let url = answering_server().await;
        let client = http_client();
        let server = ServerRef {
            user: "a".into(),
            name: String::new(),
        };
        let state = Value::Null;
        let limit = Duration::from_millis(700);

        let confirmed = spawner(true, true);
        assert_eq!(
            wait_up(&client, &url, limit, &confirmed, &server, &state).await,
            Ok(())
        );
        assert_eq!(confirmed.asked.load(Ordering::SeqCst), 1);

        // Someone else's server on the port, ours still starting: never up.
        let stranger = spawner(false, true);
        assert_eq!(
            wait_up(&client, &url, limit, &stranger, &server, &state).await,
            Err(NotUp::Timeout)
        );
        assert!(stranger.asked.load(Ordering::SeqCst) >= 1);

        // Ours could not bind the port and exited: fails at once with its status.
        let exited = spawner(false, false);
        assert_eq!(
            wait_up(
                &client,
                &url,
                Duration::from_secs(30),
                &exited,
                &server,
                &state
            )
            .await,
            Err(NotUp::Exited(Some(1)))
        );
    }
}
