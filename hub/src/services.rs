//! Managed services: configured `[[services]]` with a `command`, which the hub starts at
//! startup, keeps running (restarting with backoff when they exit) and stops at shutdown.
//!
//! Each process runs in its own process group with the service environment (name, API token,
//! API and base URLs; for services with a URL also the prefix, OAuth client id, callback URL
//! and scopes), then the configured `environment`. Its output goes to the hub's log, prefixed
//! `[service <name>]`. At shutdown the group gets SIGTERM, then SIGKILL after
//! [`STOP_GRACE`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::models::url_name;
use crate::config::sections::ServiceConfig;
use crate::state::AppState;

/// How long a stopped service has between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// The first restart delay; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest restart delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Variables of the hub's environment passed on to services (JupyterHub's `env_keep`).
const ENV_KEEP: &[&str] = &[
    "PATH",
    "PYTHONPATH",
    "CONDA_ROOT",
    "CONDA_DEFAULT_ENV",
    "VIRTUAL_ENV",
    "LANG",
    "LC_ALL",
    "JUPYTERHUB_SINGLEUSER_APP",
];

/// The managed services' command lines and current pids, readable without awaiting (for the
/// service model). Cloning shares.
#[derive(Debug, Clone, Default)]
pub struct ManagedServicesHandle(Arc<Mutex<HashMap<String, Running>>>);

#[derive(Debug, Clone)]
struct Running {
    command: Vec<String>,
    pid: u32,
}

impl ManagedServicesHandle {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Running>) -> T) -> T {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut map)
    }

    /// The argv of managed service `name`; `None` for services the hub does not run.
    pub fn command(&self, name: &str) -> Option<Vec<String>> {
        self.with(|m| m.get(name).map(|r| r.command.clone()))
    }

    /// The current pid of managed service `name`; 0 when not running (or not managed).
    pub fn pid(&self, name: &str) -> u32 {
        self.with(|m| m.get(name).map_or(0, |r| r.pid))
    }

    fn register(&self, name: &str, command: Vec<String>) {
        self.with(|m| m.insert(name.to_owned(), Running { command, pid: 0 }));
    }

    fn set_pid(&self, name: &str, pid: u32) {
        self.with(|m| {
            if let Some(r) = m.get_mut(name) {
                r.pid = pid;
            }
        });
    }
}

/// Why the managed services could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A service's settings cannot be honoured.
    #[error("service {name}: {message}")]
    Config {
        /// The service.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Generating an API token failed.
    #[error("service {name}: generating its API token: {source}")]
    Token {
        /// The service.
        name: String,
        /// The failure.
        source: crate::startup::StartupError,
    },
}

/// What starting one service needs.
#[derive(Debug, Clone)]
struct Launch {
    name: String,
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    /// uid, gid of the configured `user` when it differs from the hub's.
    ids: Option<(u32, u32)>,
}

/// The running supervisors; [`ManagedServices::stop`] ends them and their processes.
#[derive(Debug)]
pub struct ManagedServices {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ManagedServices {
    /// Starts every configured service that has a `command`. Services without a configured
    /// `api_token` get one generated now. Nothing is started when a service is invalid.
    ///
    /// # Errors
    /// A `user` that cannot be honoured, or a database failure while generating a token.
    pub async fn start(state: &AppState) -> Result<Self, ServiceError> {
        let mut launches = Vec::new();
        for service in &state.config.services {
            let Some(command) = &service.command else {
                continue;
            };
            let ids = account_ids(service)?;
            let token = match &service.api_token {
                Some(token) => token.expose().to_owned(),
                None => crate::startup::generated_service_token(state, &service.name)
                    .await
                    .map_err(|source| ServiceError::Token {
                        name: service.name.clone(),
                        source,
                    })?,
            };
            let mut env = service_env(state, service, &token);
            if let Some((uid, _)) = ids
                && let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            {
                env.insert("USER".into(), user.name.clone());
                env.insert("HOME".into(), user.dir.display().to_string());
                env.insert("SHELL".into(), user.shell.display().to_string());
            }
            env.extend(
                service
                    .environment
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            launches.push(Launch {
                name: service.name.clone(),
                argv: command.argv().to_vec(),
                env,
                cwd: service.cwd.clone(),
                ids,
            });
        }
        let (stop, stopped) = watch::channel(false);
        let tasks = launches
            .into_iter()
            .map(|launch| {
                state.services.register(&launch.name, launch.argv.clone());
                tracing::info!(service = %launch.name, "starting managed service: {:?}", launch.argv);
                tokio::spawn(supervise(launch, state.services.clone(), stopped.clone()))
            })
            .collect();
        Ok(Self { stop, tasks })
    }

    /// How many services are managed.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no service is managed.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stops every managed service (SIGTERM to its process group, SIGKILL after
    /// [`STOP_GRACE`]) and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The uid and gid to run `service` as: `None` when it has no `user` or names the hub's own.
fn account_ids(service: &ServiceConfig) -> Result<Option<(u32, u32)>, ServiceError> {
    let Some(name) = service.user.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let error = |message: String| ServiceError::Config {
        name: service.name.clone(),
        message,
    };
    let user = nix::unistd::User::from_name(name)
        .map_err(|e| error(format!("looking up user {name}: {e}")))?
        .ok_or_else(|| error(format!("no such system user: {name}")))?;
    let euid = nix::unistd::geteuid();
    if user.uid == euid {
        return Ok(None);
    }
    if !euid.is_root() {
        return Err(error(format!(
            "running as user {name} needs the hub to run as root"
        )));
    }
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

/// JupyterHub's service environment (before the configured `environment`).
fn service_env(state: &AppState, service: &ServiceConfig, token: &str) -> BTreeMap<String, String> {
    let hub = &state.config.hub;
    let base_url = hub.base_url.as_str().to_owned();
    let mut env: BTreeMap<String, String> = ENV_KEEP
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect();
    let name = &service.name;
    env.insert("JUPYTERHUB_SERVICE_NAME".into(), name.clone());
    env.insert("JUPYTERHUB_API_TOKEN".into(), token.to_owned());
    env.insert(
        "JUPYTERHUB_API_URL".into(),
        format!("{}api", hub.hub_connect_url()),
    );
    env.insert("JUPYTERHUB_BASE_URL".into(), base_url.clone());
    if let Some(url) = &service.url {
        let prefix = format!("{base_url}services/{}/", url_name(name));
        let client_id = service
            .oauth_client_id
            .clone()
            .unwrap_or_else(|| format!("service-{name}"));
        let callback = service
            .oauth_redirect_uri
            .as_ref()
            .map_or_else(|| format!("{prefix}oauth_callback"), |u| u.to_string());
        let scopes = serde_json::json!([format!("access:services!service={name}")]).to_string();
        env.insert("JUPYTERHUB_SERVICE_URL".into(), url.as_str().to_owned());
        env.insert("JUPYTERHUB_SERVICE_PREFIX".into(), prefix);
        env.insert("JUPYTERHUB_CLIENT_ID".into(), client_id);
        env.insert("JUPYTERHUB_OAUTH_CALLBACK_URL".into(), callback);
        env.insert("JUPYTERHUB_OAUTH_SCOPES".into(), scopes.clone());
        env.insert("JUPYTERHUB_OAUTH_ACCESS_SCOPES".into(), scopes);
    }
    env
}

/// Runs one service until `stopped`, restarting it with backoff.
async fn supervise(
    launch: Launch,
    handle: ManagedServicesHandle,
    mut stopped: watch::Receiver<bool>,
) {
    let name = launch.name.clone();
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *stopped.borrow() {
            break;
        }
        let started = Instant::now();
        match spawn(&launch) {
            Ok((mut child, readers)) => {
                let pid = child.id().unwrap_or(0);
                handle.set_pid(&name, pid);
                tracing::info!(service = %name, pid, "managed service started");
                let status = tokio::select! {
                    status = child.wait() => Some(status),
                    _ = stopped.wait_for(|s| *s) => None,
                };
                match status {
                    Some(status) => {
                        handle.set_pid(&name, 0);
                        tracing::warn!(
                            service = %name,
                            "managed service exited ({}); restarting in {:.1} s",
                            describe(status),
                            backoff.as_secs_f64()
                        );
                    }
                    None => {
                        terminate(&name, pid, &mut child).await;
                        handle.set_pid(&name, 0);
                        for reader in readers {
                            let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
                        }
                        break;
                    }
                }
                for reader in readers {
                    let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
                }
            }
            Err(e) => {
                tracing::error!(
                    service = %name,
                    "starting managed service {:?} failed: {e}; retrying in {:.1} s",
                    launch.argv,
                    backoff.as_secs_f64()
                );
            }
        }
        // A service that ran for a while starts over with a short delay.
        if started.elapsed() >= MAX_BACKOFF {
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stopped.wait_for(|s| *s) => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    handle.set_pid(&name, 0);
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            _ => s.to_string(),
        },
        Err(e) => format!("wait failed: {e}"),
    }
}

fn spawn(launch: &Launch) -> std::io::Result<(Child, Vec<JoinHandle<()>>)> {
    let (program, args) = launch
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(&launch.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(cwd) = &launch.cwd {
        command.current_dir(cwd);
    }
    if let Some((uid, gid)) = launch.ids {
        command.gid(gid).uid(uid);
    }
    let mut child = command.spawn()?;
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(forward(out, launch.name.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(forward(err, launch.name.clone()));
    }
    Ok((child, readers))
}

fn forward<R: AsyncRead + Unpin + Send + 'static>(stream: R, name: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!("[service {name}] {line}");
        }
    })
}

fn signal_group(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid)
        && raw > 0
    {
        let _ = killpg(Pid::from_raw(raw), signal);
    }
}

/// SIGTERM to the service's process group; SIGKILL after [`STOP_GRACE`].
async fn terminate(name: &str, pid: u32, child: &mut Child) {
    tracing::info!(service = %name, pid, "stopping managed service");
    signal_group(pid, Signal::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(service = %name, pid, "managed service ignored SIGTERM; killing it");
        signal_group(pid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Anything left in the group goes too.
    signal_group(pid, Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_reports_commands_and_pids() {
        let handle = ManagedServicesHandle::default();
        assert_eq!(handle.pid("x"), 0);
        assert!(handle.command("x").is_none());
        handle.register("x", vec!["sleep".into(), "1".into()]);
        handle.set_pid("x", 42);
        assert_eq!(handle.pid("x"), 42);
        assert_eq!(handle.command("x").unwrap(), ["sleep", "1"]);
    }
}
