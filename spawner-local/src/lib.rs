//! Spawner that runs each user's server as a local process: JupyterHub's
//! `LocalProcessSpawner`.
//!
//! # What a start does
//! - Picks a free port (or uses the configured one): binds port 0 on the configured IP, reads
//!   the port and closes the socket. A port handed out stays reserved, for every spawner in the
//!   process, until the server is confirmed to listen on it, stops, or `start_timeout` plus
//!   five minutes pass, so two concurrent starts never get the same port.
//! - Builds the environment: the hub's (`SpawnContext::env`), `env_keep` variables of the hub's
//!   own environment that it lacks (a key ending in `*` keeps every variable with that prefix),
//!   `USER`, `HOME` and `SHELL` of the account the server runs as, `JUPYTERHUB_DEFAULT_URL` and
//!   `JUPYTERHUB_ROOT_DIR` when the hub did not set them, then `environment` (which overrides
//!   everything), and finally `JUPYTERHUB_SERVICE_URL` = `http://<ip>:<port><prefix>` with the
//!   port actually picked (this one cannot be overridden: the server must bind that port).
//!   Nothing else of the hub's environment reaches the server.
//! - Runs `cmd` + `args` in a process group of its own (its id is the server's pid), with
//!   stdin from `/dev/null`.
//!   - When the hub runs as root: as the system account named like the hub user (uid, primary
//!     gid and all supplementary groups from `getgrouplist`, computed before forking; the
//!     child only calls `setgroups`, `setgid`, `setuid` and `chdir`), starting in
//!     `notebook_dir` (`~` is the home directory, `{username}` and `{servername}` are
//!     replaced), else the home directory, else `/`. A missing account is a refusal, or, with
//!     `create_system_users`, is created with `useradd -m` (names that are not valid system
//!     user names are refused, never passed on).
//!   - Otherwise: as the hub's own account (HOME and SHELL are that account's), in the same
//!     directory choice.
//! - Sends the server's stdout and stderr **to the hub's log** by default, line by line,
//!   prefixed with `[user/server]` (target `spawner_local::server`). This goes through pipes
//!   read by the hub: a server that outlives the hub (`cleanup_servers = false`) then loses its
//!   output, and its writes fail with `EPIPE`. `jupyterhub-singleuser` survives that (Python
//!   ignores `SIGPIPE` and its logging swallows write errors), but a server that writes with
//!   `print` or dies on `SIGPIPE` does not. With `log_dir` set, the output goes instead to a
//!   **per-server log file** `<log_dir>/<user>.log` (`<user>-<server>.log` for a named server;
//!   appended, mode 0600, owned by the hub's account), which the server keeps writing to across
//!   hub restarts.
//! - Reports progress (`Spawning server...`, `Creating the system account <name>` when it
//!   does, `Server process started (pid N)`) and returns
//!   `http://<ip>:<port>` (an unspecified IP becomes the loopback address) with the state
//!   `{"pid", "start_time", "port", "pgid"}`.
//!
//! # Identity, not just a pid
//! `start_time` is field 22 of `/proc/<pid>/stat`. A server is running only while a process
//! with the stored pid *and* that start time exists, so a pid reused by another process (after
//! a hub restart, say) is never taken for the server, and never signalled. State without a
//! start time (older states that hold only a pid) cannot be confirmed: it polls as stopped and
//! its process is left alone.
//!
//! # Stopping
//! SIGINT to the process group, up to `interrupt_timeout` for the group to go away, then
//! SIGTERM and `term_timeout`, then SIGKILL and `kill_timeout` (`now` skips the SIGINT step).
//! Before every signal the identity is confirmed again. Waiting is asynchronous, so a slow stop
//! never holds up other servers. Processes left in the group after the server's main process
//! exited are stopped too when this hub process started the server; after a hub restart only a
//! group whose main process is still there is signalled.
//!
//! # Port identity
//! [`Spawner::confirm_listening`] checks, through `/proc/net/tcp{,6}` and the socket inodes
//! in `/proc/<pid>/fd`, that every socket that would take a connection to the server's
//! address belongs to a process in the server's process group.

mod account;
mod launch;
mod output;
mod ports;
mod procfs;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use async_trait::async_trait;
use hub_plugin::{
    PollStatus, ProgressEvent, ServerRef, SpawnContext, SpawnError, Spawner, Started,
};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::account::Account;
use crate::launch::{Identity, Launch};
pub use crate::output::log_path;

/// How long the exit status of a server this hub started is remembered after it exited.
const REMEMBER_EXIT: Duration = Duration::from_secs(600);

/// How long `poll` waits for the exit status of a just-exited child to be collected.
const EXIT_STATUS_WAIT: Duration = Duration::from_secs(2);

/// Settings of [`LocalProcessSpawner`].
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSpawnerConfig {
    /// The server program and its own arguments (default `jupyterhub-singleuser`).
    pub cmd: Vec<String>,
    /// More arguments after `cmd`.
    pub args: Vec<String>,
    /// The IP address servers listen on (default `127.0.0.1`).
    pub ip: IpAddr,
    /// The port servers listen on; 0 (the default) picks a free one for each server.
    pub port: u16,
    /// Variables set last, overriding everything but `JUPYTERHUB_SERVICE_URL`; `{username}`
    /// and `{servername}` are replaced.
    pub environment: BTreeMap<String, String>,
    /// Variables of the hub's environment passed on when the hub's environment for the server
    /// lacks them; a trailing `*` matches a prefix (`CONDA_*`).
    pub env_keep: Vec<String>,
    /// `JUPYTERHUB_DEFAULT_URL`, when the hub's environment lacks it.
    pub default_url: Option<String>,
    /// The directory the server starts in and its `JUPYTERHUB_ROOT_DIR` (when the hub's
    /// environment lacks it); `~` is the home directory.
    pub notebook_dir: Option<String>,
    /// Whether a missing system account is created with `useradd -m` (only as root). Off by
    /// default: then a user without an account cannot start a server.
    pub create_system_users: bool,
    /// Directory for per-server log files; `None` (the default) sends servers' output to the
    /// hub's log instead. See the crate documentation for when to prefer files.
    pub log_dir: Option<PathBuf>,
    /// The hub's start timeout; port reservations last this long plus five minutes.
    pub start_timeout: Duration,
    /// How long a stop waits after SIGINT (default 10 s).
    pub interrupt_timeout: Duration,
    /// How long a stop waits after SIGTERM (default 5 s).
    pub term_timeout: Duration,
    /// How long a stop waits after SIGKILL before it reports failure (default 5 s).
    pub kill_timeout: Duration,
}

impl Default for LocalSpawnerConfig {
    fn default() -> Self {
        LocalSpawnerConfig {
            cmd: vec!["jupyterhub-singleuser".to_owned()],
            args: Vec::new(),
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            environment: BTreeMap::new(),
            env_keep: [
                "PATH",
                "PYTHONPATH",
                "CONDA_ROOT",
                "CONDA_DEFAULT_ENV",
                "VIRTUAL_ENV",
                "LANG",
                "LC_ALL",
                "LD_LIBRARY_PATH",
                "JUPYTERHUB_SINGLEUSER_APP",
            ]
            .map(str::to_owned)
            .to_vec(),
            default_url: None,
            notebook_dir: None,
            create_system_users: false,
            log_dir: None,
            start_timeout: Duration::from_secs(60),
            interrupt_timeout: Duration::from_secs(10),
            term_timeout: Duration::from_secs(5),
            kill_timeout: Duration::from_secs(5),
        }
    }
}

/// The state saved for a server: what identifies its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessState {
    /// The server's main process.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` when it started; `None` in states from elsewhere that
    /// only hold a pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// The port it was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Its process group (the pid, unless said otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid: Option<i32>,
}

impl ProcessState {
    /// Reads a saved state; `None` when it names no process.
    pub fn from_value(state: &Value) -> Option<Self> {
        let parsed: ProcessState = serde_json::from_value(state.clone()).ok()?;
        (parsed.pid > 1).then_some(parsed)
    }

    /// The process group to signal.
    pub fn pgid(&self) -> i32 {
        self.pgid.filter(|&g| g > 1).unwrap_or(self.pid)
    }
}

/// Whose the stored pid is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whose {
    /// The server's main process, running.
    Ours,
    /// The server's main process, exited but not yet reaped (the pid is still ours).
    Exited,
    /// No process has the pid.
    Gone,
    /// Another process has the pid.
    Stranger,
    /// A process has the pid, and the state has no start time to compare with.
    Unverifiable,
}

fn identify(state: &ProcessState) -> Whose {
    // Servers get process groups of their own; a state naming the hub's own process or group
    // is not a server's, whatever else it says.
    if state.pid == nix::unistd::getpid().as_raw()
        || state.pgid() == nix::unistd::getpgrp().as_raw()
    {
        return Whose::Stranger;
    }
    let Some(stat) = procfs::stat(state.pid) else {
        return Whose::Gone;
    };
    match state.start_time {
        None => Whose::Unverifiable,
        Some(t) if t != stat.start_time => Whose::Stranger,
        Some(_) if stat.alive() => Whose::Ours,
        Some(_) => Whose::Exited,
    }
}

/// Whether any process of the server's group is left to stop. `our_child`: this hub process
/// started the server (so a group whose main process exited is still known to be the
/// server's).
fn group_running(state: &ProcessState, our_child: bool) -> bool {
    match identify(state) {
        Whose::Ours => true,
        // While the main process's pid (or any member of its group) exists, the group id
        // cannot be given to another process group.
        Whose::Exited => procfs::group_alive(state.pgid()),
        Whose::Gone => our_child && procfs::group_alive(state.pgid()),
        Whose::Stranger | Whose::Unverifiable => false,
    }
}

/// A server this hub process started.
#[derive(Debug)]
struct ChildEntry {
    start_time: u64,
    /// The port reservation to release once the server is confirmed or gone.
    reservation: Option<(u16, u64)>,
    /// `Some(status)` once the process exited (the status is `None` when unknown).
    exit: watch::Receiver<Option<Option<i32>>>,
}

type Children = Arc<Mutex<HashMap<i32, ChildEntry>>>;

fn lock(children: &Children) -> MutexGuard<'_, HashMap<i32, ChildEntry>> {
    children.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs each user's server as a local process; see the crate documentation.
#[derive(Debug)]
pub struct LocalProcessSpawner {
    config: LocalSpawnerConfig,
    /// Whether the hub runs as root (servers then run as their users' accounts).
    as_root: bool,
    children: Children,
}

impl LocalProcessSpawner {
    /// A spawner with `config`.
    pub fn new(config: LocalSpawnerConfig) -> Self {
        LocalProcessSpawner {
            config,
            as_root: nix::unistd::geteuid().is_root(),
            children: Arc::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &LocalSpawnerConfig {
        &self.config
    }

    /// Whether this hub process started the server of `state` (same pid and start time).
    fn our_child(&self, state: &ProcessState) -> bool {
        lock(&self.children)
            .get(&state.pid)
            .is_some_and(|c| Some(c.start_time) == state.start_time)
    }

    /// Releases the port reservation of the server of `state`, if this process holds one.
    fn release_port(&self, state: &ProcessState) {
        let mut children = lock(&self.children);
        if let Some(child) = children
            .get_mut(&state.pid)
            .filter(|c| Some(c.start_time) == state.start_time)
            && let Some((port, token)) = child.reservation.take()
        {
            ports::release(port, token);
        }
    }

    /// The exit status of a server this hub process started and that has exited.
    async fn exit_status(&self, state: &ProcessState) -> Option<i32> {
        let mut exit = lock(&self.children)
            .get(&state.pid)
            .filter(|c| Some(c.start_time) == state.start_time)?
            .exit
            .clone();
        let done = tokio::time::timeout(EXIT_STATUS_WAIT, exit.wait_for(Option::is_some)).await;
        match done {
            Ok(Ok(status)) => status.flatten(),
            _ => None,
        }
    }

    /// The account the server runs as; creates it when allowed.
    async fn account_for(&self, ctx: &SpawnContext) -> Result<Account, SpawnError> {
        if !self.as_root {
            return Ok(account::current().await?);
        }
        let user = &ctx.server.user;
        if let Some(found) = account::lookup(user).await? {
            return refuse_superuser(found);
        }
        if !self.config.create_system_users {
            return Err(SpawnError::Refused {
                message: format!(
                    "There is no system account named {user:?} to run the server as. An \
                     administrator must create it (or let the hub create accounts)."
                ),
                status: 500,
            });
        }
        progress(ctx, 55, format!("Creating the system account {user}"));
        account::create(user).await?;
        let created = account::lookup(user)
            .await?
            .ok_or_else(|| anyhow!("useradd created {user:?}, yet it cannot be found"))?;
        refuse_superuser(created)
    }

    /// The server's environment (see the crate documentation for the order).
    fn environment(
        &self,
        ctx: &SpawnContext,
        account: &Account,
        port: u16,
    ) -> BTreeMap<String, String> {
        let mut env = kept_env(&self.config.env_keep, std::env::vars());
        env.extend(ctx.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.insert("USER".into(), ctx.server.user.clone());
        env.insert("HOME".into(), account.home.to_string_lossy().into_owned());
        env.insert("SHELL".into(), account.shell.to_string_lossy().into_owned());
        let format = |s: &str| fill(s, &ctx.server);
        if let Some(url) = &self.config.default_url {
            env.entry("JUPYTERHUB_DEFAULT_URL".into())
                .or_insert_with(|| format(url));
        }
        if let Some(dir) = &self.config.notebook_dir {
            env.entry("JUPYTERHUB_ROOT_DIR".into())
                .or_insert_with(|| format(dir));
        }
        for (k, v) in &self.config.environment {
            env.insert(k.clone(), format(v));
        }
        env.insert(
            "JUPYTERHUB_SERVICE_URL".into(),
            format!("http://{}:{port}{}", host(self.config.ip), ctx.prefix),
        );
        env
    }

    /// Where the server starts: `notebook_dir` (relative to the home directory), else home.
    fn working_dir(&self, server: &ServerRef, account: &Account) -> PathBuf {
        match &self.config.notebook_dir {
            Some(dir) => expand_home(&fill(dir, server), &account.home),
            None => account.home.clone(),
        }
    }
}

/// `{username}` and `{servername}` filled in.
fn fill(template: &str, server: &ServerRef) -> String {
    template
        .replace("{username}", &server.user)
        .replace("{servername}", &server.name)
}

/// The variables of `vars` named in `keep` (a trailing `*` matches a prefix).
fn kept_env(
    keep: &[String],
    vars: impl Iterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    vars.filter(|(k, _)| {
        keep.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => k.starts_with(prefix),
            None => k == pattern,
        })
    })
    .collect()
}

/// An IP as the host part of a URL.
fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Where the hub reaches a server listening on `ip`: an unspecified address (all interfaces)
/// is reached through the loopback address.
fn reach(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// The IP (when the host is one) and port of an `http(s)://` URL.
fn host_port(url: &str) -> Option<(Option<IpAddr>, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (h, after) = bracketed.split_once(']')?;
            (h, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port.filter(|p| !p.is_empty()) {
        Some(p) => p.parse().ok()?,
        None => match scheme.to_ascii_lowercase().as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        },
    };
    Some((host.parse().ok(), port))
}

fn progress(ctx: &SpawnContext, percent: u8, message: impl Into<String>) {
    ctx.progress.send(ProgressEvent {
        progress: Some(percent),
        message: message.into(),
        html_message: None,
    });
}

/// A failed `spawn`: a missing or unusable program is the administrator's to fix and is said
/// plainly; anything else is logged in full.
fn spawn_error(program: &str, e: &io::Error) -> SpawnError {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => SpawnError::Refused {
            message: format!("Cannot start the server command {program:?}: {e}"),
            status: 500,
        },
        _ => SpawnError::Failed(anyhow!("starting the server command {program:?}: {e}")),
    }
}

fn exit_code(status: std::process::ExitStatus) -> Option<i32> {
    // Like Python's `Popen.returncode`: the exit code, or minus the signal that ended it.
    status.code().or_else(|| status.signal().map(|s| -s))
}

/// `kill(-pgid, sig)`; a group that is already gone is not an error.
fn signal_group(pgid: i32, sig: Signal) -> Result<(), SpawnError> {
    match killpg(Pid::from_raw(pgid), sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(anyhow!("sending {sig} to process group {pgid}: {e}").into()),
    }
}

#[async_trait]
impl Spawner for LocalProcessSpawner {
    fn kind(&self) -> &str {
        "local"
    }

    async fn start(&self, ctx: &SpawnContext) -> Result<Started, SpawnError> {
        progress(ctx, 50, "Spawning server...");
        let name = ctx.server.full_name();
        let account = self.account_for(ctx).await?;
        let reservation = if self.config.port == 0 {
            let ttl = self.config.start_timeout + Duration::from_secs(300);
            Some(
                ports::reserve_free_port(self.config.ip, ttl)
                    .with_context(|| format!("finding a free port on {}", self.config.ip))?,
            )
        } else {
            None
        };
        let port = reservation
            .as_ref()
            .map_or(self.config.port, ports::Reservation::port);
        let dir = self.working_dir(&ctx.server, &account);
        // A profile's command replaces the configured one; the configured arguments follow.
        let argv: Vec<String> = ctx
            .command
            .as_ref()
            .unwrap_or(&self.config.cmd)
            .iter()
            .chain(&self.config.args)
            .cloned()
            .collect();
        let program = argv.first().cloned().unwrap_or_default();
        let log_file =
            match &self.config.log_dir {
                Some(dir) => {
                    let path = log_path(dir, &ctx.server.user, &ctx.server.name);
                    Some(output::open_log(&path).with_context(|| {
                        format!("opening the server's log file {}", path.display())
                    })?)
                }
                None => None,
            };
        let launch = Launch {
            argv,
            env: self.environment(ctx, &account, port),
            identity: self.as_root.then(|| Identity::of(&account, &dir)),
            dir: if dir.is_dir() {
                dir
            } else if account.home.is_dir() {
                account.home.clone()
            } else {
                PathBuf::from("/")
            },
            log_file,
        };
        let mut command = launch.command().map_err(|e| SpawnError::Refused {
            message: format!("The server command cannot be used: {e}"),
            status: 500,
        })?;
        // From here to the return nothing awaits, so a cancelled start cannot leave a server
        // behind that nobody knows about.
        let mut child = command.spawn().map_err(|e| spawn_error(&program, &e))?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| anyhow!("the started server has no pid"))?;
        let Some(start_time) = procfs::stat(pid).map(|s| s.start_time) else {
            let _ = child.start_kill();
            return Err(anyhow!("cannot read /proc/{pid}/stat of the started server").into());
        };
        if let Some(out) = child.stdout.take() {
            tokio::spawn(output::forward(out, name.clone(), "stdout"));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(output::forward(err, name.clone(), "stderr"));
        }
        let (exit_tx, exit_rx) = watch::channel(None);
        lock(&self.children).insert(
            pid,
            ChildEntry {
                start_time,
                reservation: reservation.map(|r| (r.port(), r.keep())),
                exit: exit_rx,
            },
        );
        let children = self.children.clone();
        let log_name = name.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let code = match status {
                Ok(status) => exit_code(status),
                Err(e) => {
                    tracing::warn!(server = %log_name, pid, "collecting the exit status: {e}");
                    None
                }
            };
            tracing::info!(server = %log_name, pid, "server process exited with status {code:?}");
            let _ = exit_tx.send(Some(code));
            tokio::time::sleep(REMEMBER_EXIT).await;
            let mut children = lock(&children);
            if children
                .get(&pid)
                .is_some_and(|c| c.start_time == start_time)
                && let Some((port, token)) = children.remove(&pid).and_then(|c| c.reservation)
            {
                ports::release(port, token);
            }
        });
        tracing::info!(
            server = %name,
            pid,
            port,
            user = %account.name,
            "started the server process"
        );
        progress(ctx, 60, format!("Server process started (pid {pid})"));
        let state = ProcessState {
            pid,
            start_time: Some(start_time),
            port: Some(port),
            pgid: Some(pid),
        };
        Ok(Started {
            url: format!("http://{}:{port}", host(reach(self.config.ip))),
            state: serde_json::to_value(state).context("the server's state as JSON")?,
        })
    }

    async fn poll(&self, server: &ServerRef, state: &Value) -> Result<PollStatus, SpawnError> {
        let Some(state) = ProcessState::from_value(state) else {
            return Ok(PollStatus::Stopped(None));
        };
        match identify(&state) {
            Whose::Ours => Ok(PollStatus::Running),
            Whose::Unverifiable => {
                tracing::warn!(
                    server = %server.full_name(),
                    pid = state.pid,
                    "the saved state has no start time, so the process cannot be confirmed to \
                     be the server; taking the server as stopped"
                );
                Ok(PollStatus::Stopped(None))
            }
            Whose::Exited | Whose::Gone | Whose::Stranger => {
                let status = self.exit_status(&state).await;
                self.release_port(&state);
                Ok(PollStatus::Stopped(status))
            }
        }
    }

    async fn stop(&self, server: &ServerRef, state: &Value, now: bool) -> Result<(), SpawnError> {
        let Some(state) = ProcessState::from_value(state) else {
            return Ok(());
        };
        let name = server.full_name();
        let pgid = state.pgid();
        let our_child = self.our_child(&state);
        let running = move || async move {
            tokio::task::spawn_blocking(move || group_running(&state, our_child))
                .await
                .unwrap_or(false)
        };
        let c = &self.config;
        let steps: &[(Signal, Duration)] = &[
            (Signal::SIGINT, c.interrupt_timeout),
            (Signal::SIGTERM, c.term_timeout),
            (Signal::SIGKILL, c.kill_timeout),
        ];
        let steps = if now { &steps[1..] } else { steps };
        match identify(&state) {
            Whose::Stranger => tracing::warn!(
                server = %name,
                pid = state.pid,
                "the server's pid now belongs to another process; not signalling it"
            ),
            Whose::Unverifiable => tracing::warn!(
                server = %name,
                pid = state.pid,
                "the saved state has no start time; not signalling an unconfirmed process"
            ),
            _ => {}
        }
        let mut gone = !running().await;
        for &(sig, wait) in steps {
            if gone {
                break;
            }
            tracing::debug!(server = %name, pgid, "sending {sig} to the server's process group");
            signal_group(pgid, sig)?;
            let deadline = tokio::time::Instant::now() + wait;
            let mut pause = Duration::from_millis(20);
            loop {
                gone = !running().await;
                if gone || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
            if !gone && sig != Signal::SIGKILL {
                tracing::info!(
                    server = %name,
                    pgid,
                    "the server did not stop within {} s of {sig}",
                    wait.as_secs_f32()
                );
            }
        }
        self.release_port(&state);
        if gone {
            Ok(())
        } else {
            Err(anyhow!(
                "process group {pgid} of {name} still has processes {} s after SIGKILL",
                c.kill_timeout.as_secs_f32()
            )
            .into())
        }
    }

    async fn confirm_listening(
        &self,
        server: &ServerRef,
        state: &Value,
        url: &str,
    ) -> Result<bool, SpawnError> {
        let Some(state) = ProcessState::from_value(state) else {
            return Ok(false);
        };
        let (ip, port) =
            host_port(url).ok_or_else(|| anyhow!("cannot read a host and port in {url:?}"))?;
        let confirmed = tokio::task::spawn_blocking(move || {
            if identify(&state) != Whose::Ours {
                return false;
            }
            let candidates = procfs::serving(&procfs::listeners(port), ip);
            if candidates.is_empty() {
                return false;
            }
            let ours: std::collections::HashSet<u64> = procfs::group_members(state.pgid())
                .into_iter()
                .flat_map(procfs::socket_inodes)
                .collect();
            candidates.iter().all(|inode| ours.contains(inode))
        })
        .await
        .context("port check task")?;
        if confirmed {
            self.release_port(&state);
        } else {
            tracing::debug!(
                server = %server.full_name(),
                url,
                "the socket listening on port {port} is not the server's"
            );
        }
        Ok(confirmed)
    }
}

/// `dir` with a leading `~` as `home`; a relative `dir` is relative to `home`.
fn expand_home(dir: &str, home: &Path) -> PathBuf {
    match dir.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            home.join(rest.trim_start_matches('/'))
        }
        _ => home.join(dir),
    }
}

/// A hub user whose system account is the superuser (a hub user named `root`, or an account
/// with uid 0 under another name) never gets a server: a login with a shared password or a
/// mapped name must not turn into a root shell.
fn refuse_superuser(account: Account) -> Result<Account, SpawnError> {
    if account.uid.is_root() {
        return Err(SpawnError::Refused {
            message: format!(
                "Servers never run as the superuser, and the system account {:?} is uid 0.",
                account.name
            ),
            status: 403,
        });
    }
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(user: &str, name: &str) -> ServerRef {
        ServerRef {
            user: user.into(),
            name: name.into(),
        }
    }

    #[test]
    fn urls() {
        let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            host_port("http://127.0.0.1:8888/user/a/api"),
            Some((lo, 8888))
        );
        assert_eq!(host_port("http://127.0.0.1"), Some((lo, 80)));
        assert_eq!(host_port("https://127.0.0.1/x"), Some((lo, 443)));
        assert_eq!(
            host_port("http://[::1]:9/"),
            Some((Some(IpAddr::V6(Ipv6Addr::LOCALHOST)), 9))
        );
        assert_eq!(host_port("http://localhost:5/"), Some((None, 5)));
        assert_eq!(host_port("http://u:p@127.0.0.1:7?q"), Some((lo, 7)));
        assert_eq!(host_port("127.0.0.1:8888"), None);
        assert_eq!(host_port("http://127.0.0.1:x/"), None);
        assert_eq!(host(IpAddr::V6(Ipv6Addr::LOCALHOST)), "[::1]");
        assert_eq!(
            reach(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            reach(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
    }

    #[test]
    fn state_round_trip_and_leniency() {
        let s = ProcessState {
            pid: 42,
            start_time: Some(7),
            port: Some(8000),
            pgid: Some(42),
        };
        let v = serde_json::to_value(s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"pid": 42, "start_time": 7, "port": 8000, "pgid": 42})
        );
        assert_eq!(ProcessState::from_value(&v), Some(s));
        let legacy = ProcessState::from_value(&serde_json::json!({"pid": 42})).unwrap();
        assert_eq!((legacy.start_time, legacy.pgid()), (None, 42));
        for nothing in [
            serde_json::json!({}),
            serde_json::json!(null),
            serde_json::json!({"pid": 1}),
            serde_json::json!({"pid": 0}),
            serde_json::json!({"pid": -5}),
            serde_json::json!({"pid": "12"}),
        ] {
            assert_eq!(ProcessState::from_value(&nothing), None, "{nothing}");
        }
    }

    #[test]
    fn env_keep_patterns() {
        let vars = [
            ("PATH", "/bin"),
            ("CONDA_ROOT", "/c"),
            ("CONDA_X", "x"),
            ("SECRET", "s"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let keep = ["PATH".to_owned(), "CONDA_*".to_owned()];
        let kept = kept_env(&keep, vars.into_iter());
        assert_eq!(
            kept.keys().map(String::as_str).collect::<Vec<_>>(),
            ["CONDA_ROOT", "CONDA_X", "PATH"]
        );
    }

    #[test]
    fn working_directories() {
        let account = Account {
            name: "ann".into(),
            uid: nix::unistd::Uid::from_raw(1000),
            gid: nix::unistd::Gid::from_raw(1000),
            groups: Vec::new(),
            home: "/home/ann".into(),
            shell: "/bin/sh".into(),
        };
        let dir = |nb: Option<&str>| {
            let s = LocalProcessSpawner::new(LocalSpawnerConfig {
                notebook_dir: nb.map(str::to_owned),
                ..LocalSpawnerConfig::default()
            });
            s.working_dir(&server("ann", "gpu"), &account)
        };
        assert_eq!(dir(None), PathBuf::from("/home/ann"));
        assert_eq!(dir(Some("~")), PathBuf::from("/home/ann"));
        assert_eq!(
            dir(Some("~/nb/{servername}")),
            PathBuf::from("/home/ann/nb/gpu")
        );
        assert_eq!(dir(Some("work")), PathBuf::from("/home/ann/work"));
        assert_eq!(dir(Some("/srv/{username}")), PathBuf::from("/srv/ann"));
    }
}
