//! Telling the hub when the server was last used, so idle culling works (hub-protocol §8.1;
//! `jupyterhub-singleuser`'s `notify_activity`).
//!
//! The report is `POST $JUPYTERHUB_ACTIVITY_URL` with the server's token and
//! `{"servers": {"<name>": {"last_activity": T}}, "last_activity": T}`: once at startup, then
//! every interval (±10 %) when `T` moved forward, retrying failures with backoff from 1 s to
//! 15 s for up to 60 s.
//!
//! Where `T` comes from:
//! - Jupyter: the app's own `GET <prefix>api/status`, whose `last_activity` counts kernel
//!   activity, API requests and terminals, exactly what `jupyterhub-singleuser` reports (its
//!   polling of status does not count as activity);
//! - other apps: the last authorized request or websocket message from a client. Requests the
//!   shim refuses never count.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use http::{Method, Request};
use http_body_util::{BodyExt as _, Either, Empty};

use crate::child::Target;
use crate::forward::Upstream;
use crate::hub_client::HubClient;

/// The last client activity seen by the shim, in milliseconds since the epoch (0: none).
#[derive(Debug, Default)]
pub struct Activity(AtomicI64);

impl Activity {
    /// Records activity now.
    pub fn touch(&self) {
        self.0
            .fetch_max(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// The last activity, if any.
    pub fn last(&self) -> Option<DateTime<Utc>> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }
}

/// Where the reported time comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The Jupyter app's `api/status`.
    JupyterStatus {
        /// Connections to the app.
        upstream: Box<Upstream>,
        /// Its token.
        target: Target,
        /// `<prefix>api/status`.
        path: String,
        /// Fallback when the app does not answer.
        traffic: Arc<Activity>,
    },
    /// Traffic seen by the shim.
    Traffic(Arc<Activity>),
}

impl Source {
    /// The current last-activity time.
    pub async fn current(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Traffic(a) => a.last(),
            Self::JupyterStatus {
                upstream,
                target,
                path,
                traffic,
            } => match jupyter_status(upstream, target, path).await {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::debug!("no activity from the app's status: {e}");
                    traffic.last()
                }
            },
        }
    }
}

async fn jupyter_status(
    upstream: &Upstream,
    target: &Target,
    path: &str,
) -> anyhow::Result<DateTime<Utc>> {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(upstream.uri(path)?)
        .header(http::header::HOST, "localhost");
    if let Some(token) = &target.token {
        req = req.header(http::header::AUTHORIZATION, format!("token {token}"));
    }
    let req = req.body(Either::Right(Empty::new()))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), upstream.send(req)).await??;
    anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
    let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await??
        .to_bytes();
    #[derive(serde::Deserialize)]
    struct Status {
        last_activity: String,
    }
    let status: Status = serde_json::from_slice(&body)?;
    Ok(DateTime::parse_from_rfc3339(&status.last_activity)?.with_timezone(&Utc))
}

/// The report body.
pub fn report_body(server_name: &str, at: DateTime<Utc>) -> serde_json::Value {
    let t = at.to_rfc3339_opts(SecondsFormat::Micros, true);
    serde_json::json!({
        "servers": { server_name: { "last_activity": t } },
        "last_activity": t,
    })
}

/// Posts one report, retrying for up to a minute. Returns whether it got through.
async fn post_with_retries(hub: &HubClient, url: &str, body: &serde_json::Value) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut wait = Duration::from_secs(1);
    let mut failures = 0u32;
    loop {
        match hub.post_activity(url, body).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!("sent activity to the hub after {failures} retries");
                }
                return true;
            }
            Err(e) => {
                failures += 1;
                tracing::error!("error notifying the hub of activity: {e}");
            }
        }
        let now = tokio::time::Instant::now();
        if now + wait > deadline {
            tracing::error!("failed to notify the hub of activity");
            return false;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(15));
    }
}

/// Reports activity forever (spawn it as a task).
pub async fn report_loop(
    hub: HubClient,
    url: String,
    server_name: String,
    source: Source,
    interval: Duration,
) {
    tracing::info!(
        "updating the hub with activity every {} seconds",
        interval.as_secs()
    );
    let mut sent: Option<DateTime<Utc>> = None;
    loop {
        match source.current().await {
            Some(at) if sent.is_none_or(|s| at > s) => {
                tracing::debug!("notifying the hub of activity at {at}");
                if post_with_retries(&hub, &url, &report_body(&server_name, at)).await {
                    sent = Some(at);
                }
            }
            Some(_) => tracing::debug!("no activity since {sent:?}"),
            None => tracing::debug!("no activity to send to the hub"),
        }
        let jitter = 1.0 + 0.2 * (rand::random::<f64>() - 0.5);
        tokio::time::sleep(interval.mul_f64(jitter)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let at = DateTime::parse_from_rfc3339("2026-11-23T10:56:24.532628Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            report_body("", at),
            serde_json::json!({
                "servers": {"": {"last_activity": "2026-11-23T10:56:24.532628Z"}},
                "last_activity": "2026-11-23T10:56:24.532628Z",
            })
        );
    }

    #[test]
    fn touch_moves_forward_only() {
        let a = Activity::default();
        assert!(a.last().is_none());
        a.touch();
        let first = a.last().unwrap();
        a.0.store(first.timestamp_millis() + 10_000, Ordering::Relaxed);
        a.touch();
        assert_eq!(
            a.last().unwrap().timestamp_millis(),
            first.timestamp_millis() + 10_000
        );
    }
}
