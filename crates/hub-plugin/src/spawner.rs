//! The `Spawner` extension point: starts, polls and stops one server per user (or several,
//! with named servers).
//!
//! One shared spawner instance serves every server. Per-server state is data: [`Spawner::start`]
//! returns an opaque JSON state that the hub stores in its database and hands back to
//! [`Spawner::poll`] and [`Spawner::stop`], so a hub restart resumes from the database alone.
//!
//! Override `start`, `poll` and `stop`; the other methods have documented defaults.
//!
//! Calling assumptions:
//! - `poll` may be called for state saved by an earlier hub process, before any `start` in this
//!   process;
//! - `poll` may be called while `start` is still running, and must then report
//!   [`PollStatus::Running`] once the process exists;
//! - `stop` may be called for a server whose process already exited; that is not an error.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which server: the owner and the server name (`""` for the default server).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServerRef {
    /// The owner's name.
    pub user: String,
    /// The server name; empty for the default server.
    pub name: String,
}

impl ServerRef {
    /// JupyterHub's `full_name`: `alice/` for the default server, `alice/gpu` for a named one.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.user, self.name)
    }
}

/// One progress event, as shown on the spawn-pending page and the `/progress` event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProgressEvent {
    /// Percent done, 0–100, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    /// Text for people.
    pub message: String,
    /// The same as HTML, when the spawner has markup to show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html_message: Option<String>,
}

/// Where a spawner sends progress events while `start` runs. Sending never blocks; events
/// are dropped when nobody listens.
#[derive(Debug, Clone)]
pub struct ProgressSender(tokio::sync::broadcast::Sender<ProgressEvent>);

impl ProgressSender {
    /// A sender and the first receiver.
    pub fn channel() -> (Self, tokio::sync::broadcast::Receiver<ProgressEvent>) {
        let (tx, rx) = tokio::sync::broadcast::channel(64);
        (Self(tx), rx)
    }

    /// Another receiver, for a client that starts listening later.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ProgressEvent> {
        self.0.subscribe()
    }

    /// Sends an event.
    pub fn send(&self, event: ProgressEvent) {
        let _ = self.0.send(event);
    }
}

/// Everything a spawner needs to start one server.
#[derive(Debug, Clone)]
pub struct SpawnContext {
    /// Which server.
    pub server: ServerRef,
    /// The environment for the server (`JUPYTERHUB_*` and the configured extras), built by the
    /// hub; the spawner adds only what it alone knows (e.g. `JUPYTERHUB_SERVICE_URL`'s port).
    pub env: BTreeMap<String, String>,
    /// URL prefix of the server, e.g. `/user/alice/`.
    pub prefix: String,
    /// The options the user chose (validated by [`Spawner::validate_options`]).
    pub user_options: Value,
    /// The server command the operator configured for this start (a profile's `cmd`), to use
    /// instead of the spawner's own; `None` for the spawner's. Never set from user input.
    pub command: Option<Vec<String>>,
    /// Where to send progress events.
    pub progress: ProgressSender,
}

/// A server that has been started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    /// Where the server listens, e.g. `http://127.0.0.1:50123` (no path).
    pub url: String,
    /// Opaque state the hub stores and hands back to `poll` and `stop`.
    pub state: Value,
}

/// What a starting server reported about itself through the hub's API
/// (`POST /hub/api/batchspawner`, batchspawner's API extension): servers whose port is only
/// known once they run (a batch job on a node picks a free port there) tell the hub where they
/// listen, and the hub hands the report to [`Spawner::server_reported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerReport {
    /// The port the server listens on (1–65535).
    pub port: u16,
}

/// The result of [`Spawner::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollStatus {
    /// The server's process is alive.
    Running,
    /// The server is gone; the exit status when known.
    Stopped(Option<i32>),
}

/// Why a spawner could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A policy refusal: `message` is shown to the user with `status`.
    #[error("{message}")]
    Refused {
        /// Shown to the user.
        message: String,
        /// HTTP status for API callers (e.g. 400, 429, 500).
        status: u16,
    },
    /// The server did not become ready in time.
    #[error("server did not start within {0} seconds")]
    Timeout(u64),
    /// Something broke; logged in full, the user sees a generic message.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// The extension point that runs users' servers.
#[async_trait]
pub trait Spawner: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for logs and `/hub/api/info` (e.g. `local`).
    fn kind(&self) -> &str;

    /// Starts a server and returns where it listens. May take long; the hub waits up to its
    /// start timeout and cancels the future after that.
    async fn start(&self, ctx: &SpawnContext) -> Result<Started, SpawnError>;

    /// Whether the server described by `state` is still running.
    async fn poll(&self, server: &ServerRef, state: &Value) -> Result<PollStatus, SpawnError>;

    /// Stops the server described by `state`; `now` asks for no grace period.
    async fn stop(&self, server: &ServerRef, state: &Value, now: bool) -> Result<(), SpawnError>;

    /// HTML for an options form on the spawn page; `None` (the default) means no form.
    fn options_form(&self, _server: &ServerRef) -> Option<String> {
        None
    }

    /// Turns submitted options into `user_options`; the default accepts them unchanged.
    ///
    /// # Errors
    /// [`SpawnError::Refused`] with a message for the user when the options are invalid.
    fn validate_options(&self, options: Value) -> Result<Value, SpawnError> {
        Ok(options)
    }

    /// Whether whoever answered the readiness check at `url` is really the server described by
    /// `state`, and not another process that holds the same port (for example another user's
    /// server that won a race for a port both were given). The hub calls this after the HTTP
    /// check succeeds and before it routes anyone to the server; `false` (or an error) means
    /// the server is not taken as up. Only the host and port of `url` matter.
    ///
    /// The default answers `true`: spawners whose servers cannot share a port (containers,
    /// remote hosts) need not check.
    ///
    /// # Errors
    /// When the spawner cannot find out; the hub then does not take the server as up.
    async fn confirm_listening(
        &self,
        _server: &ServerRef,
        _state: &Value,
        _url: &str,
    ) -> Result<bool, SpawnError> {
        Ok(true)
    }

    /// Takes what a starting server reported about itself (see [`ServerReport`]); the hub
    /// calls it for reports made with the server's own API token, so `server` is the server
    /// that token was issued to. Only the host the spawner knows (for example the node a batch
    /// job runs on) is ever combined with a reported port: a server cannot send the hub to an
    /// address of its choosing.
    ///
    /// The default refuses with 404: most spawners know where their servers listen.
    ///
    /// # Errors
    /// [`SpawnError::Refused`] when the spawner takes no reports, or none for this server now.
    async fn server_reported(
        &self,
        server: &ServerRef,
        _report: &ServerReport,
    ) -> Result<(), SpawnError> {
        Err(SpawnError::Refused {
            message: format!(
                "The {} spawner does not take reports from servers ({})",
                self.kind(),
                server.full_name()
            ),
            status: 404,
        })
    }

    /// Removes everything kept for a server that is deleted for good (e.g. volumes); the
    /// default does nothing.
    async fn delete_forever(&self, _server: &ServerRef, _state: &Value) -> Result<(), SpawnError> {
        Ok(())
    }
}
