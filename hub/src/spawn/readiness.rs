//! The readiness check (hub-protocol §6.3): `GET <server><prefix>api` without credentials and
//! without following redirects; any status below 500 means the server is up. Connection
//! errors and 5xx are retried with exponential backoff (0.2 s doubling to 5 s, with jitter)
//! until the deadline. Between attempts the spawner is polled, so a server whose process died
//! fails at once instead of after the whole timeout.

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

/// Waits until `url` answers below 500, the spawner reports the server stopped, or `timeout`
/// passes.
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
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NotUp::Timeout);
        }
        if let Some(version) = attempt(client, url, left.min(Duration::from_secs(10))).await {
            check_version(url, version.as_deref());
            return Ok(());
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
