//! Spawner that runs each user's server as a batch job on a cluster: a command-template
//! spawner (batchspawner's idea), whose built-in preset drives Slurm. PBS, LSF, SGE, HTCondor
//! or a site's own scripts need only configuration: the commands, the job script and the
//! patterns that read the scheduler's answers ([`Preset`]).
//!
//! # What a start does
//! 1. Finds the user's system account (when the hub runs as root: the account named like the
//!    user, never uid 0; otherwise the hub's own). Every command runs as that account (uid,
//!    gid and all its groups), in its home directory, so the scheduler sees the user's own job.
//! 2. Renders the job script and the submit command (Jinja templates, see below) and runs the
//!    command with the script on its standard input, in the server's environment: the hub's
//!    (`SpawnContext::env`), `USER`, `LOGNAME`, `HOME` and `SHELL` of the account, the
//!    configured `environment`, and `JUPYTERHUB_SERVICE_URL` = `http://<ip>:<port><prefix>`
//!    (`ip` defaults to `0.0.0.0`: the server binds every address of its node). Slurm's
//!    `sbatch` hands that environment to the job.
//! 3. Reads the job id from the submit command's output and polls the status command every
//!    `status_interval`, sending progress events: queued (with the scheduler's state and
//!    reason), running on a host. A job that ends before its server is up fails the start
//!    with the scheduler's state, reason, exit code and output file.
//! 4. Learns the port: with `port` = 0 (the default) the server reports it
//!    (`POST /hub/api/batchspawner` with its API token, body `{"port": N}`: what
//!    `batchspawner-singleuser` does, which is put before `cmd` for that reason); the hub
//!    passes the report to [`Spawner::server_reported`]. The host is always the one the
//!    scheduler names. Then it returns `http://<host>:<port>` and the state
//!    `{"job_id", "host", "port", "options"}`.
//! 5. Gives up at `start_timeout` (keep it below the hub's `spawner.start_timeout`): cancels
//!    the job and says how far it got (`still PENDING (reason Resources)`, or running but no
//!    port reported).
//!
//! A start that ends any other way without a server (the hub's own timeout, a stop while it
//! is queued) cancels its job in the background; a `stop` meanwhile finds the job too.
//!
//! # Poll, stop, restart
//! `poll` runs the status command: pending, running, or no answer from the scheduler (the
//! unknown pattern) count as running; anything else as stopped. `stop` runs the cancel
//! command, then (unless `now`) waits up to `stop_timeout` for the job to be gone. The job id
//! is spawner state, so a restarted hub polls and stops jobs it did not submit. A stop for a
//! server whose job id the hub never learnt (the hub restarted while the job was queued) runs
//! `cancel_by_name` (Slurm: `scancel --name=<job name>` as the user), when configured.
//!
//! # Templates
//! Every word of every command, the script and the string variables are Jinja templates
//! (minijinja), rendered with:
//! - `username`, `servername`, `job_name` (`jupyterhub-<user>[-<server>]`, characters other
//!   than letters, digits, `.`, `_` and `-` replaced by `_`), `home`, `kind`;
//! - at submit: `prefix`, `cmd` (the server command line, shell-quoted), `env` (the job's
//!   environment as a map) and `keepvars` (its names, comma-separated), `ip`, `port`,
//!   `service_url`;
//! - in the status and cancel commands: `job_id`;
//! - the configured `variables` (Slurm: `partition`, `account`, `qos`, `reservation`, `time`,
//!   `memory`, `cpus`, `gpus`, `constraint`, `directives`, `prologue`, `epilogue`, `srun`,
//!   `output`), each rendered first, and `options`: the user's options, each of which also
//!   replaces the variable of its name.
//!
//! A filter `shell_quote` quotes a value for the shell. Using an undefined name fails the
//! render (except in `{% if %}`), so a typo shows up at the first spawn with its name.
//!
//! # User options
//! Only options the operator lists are accepted, each value matching its pattern in full and
//! free of control characters; see [`BatchConfig::options`]. `validate_options` refuses other
//! options; a start leaves them out (the hub may hand it saved options, or a profile's meant
//! for other spawners) but still refuses a listed option whose value does not match.

mod account;
mod command;
mod config;
mod options;
pub mod slurm;
mod status;
mod template;
mod tracking;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::anyhow;
use async_trait::async_trait;
use hub_plugin::{
    PollStatus, ProgressEvent, ServerRef, ServerReport, SpawnContext, SpawnError, Spawner, Started,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

pub use crate::config::{BatchConfig, ConfigError, Preset};
pub use crate::slurm::SlurmRequest;

use crate::account::Account;
use crate::command::{CommandError, Output, RunAs};
use crate::config::Compiled;
use crate::options::Unlisted;
use crate::status::{JobState, JobStatus};
use crate::template::Command;
use crate::tracking::{Reported, Starts};

/// The state saved for a server: its job, and where its server listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The scheduler's job id.
    pub job_id: String,
    /// The host the job runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The port the server listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The user options the job was submitted with (the status and cancel commands may use
    /// them).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub options: Map<String, Value>,
}

impl JobRecord {
    /// Reads a saved state; `None` when it names no usable job.
    pub fn from_value(state: &Value) -> Option<Self> {
        let record: JobRecord = serde_json::from_value(state.clone()).ok()?;
        status::valid_job_id(&record.job_id).then_some(record)
    }
}

/// A submitted job and what it takes to ask about it or cancel it.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// The scheduler's id.
    pub id: String,
    run_as: RunAs,
    env: BTreeMap<String, String>,
    status: Vec<String>,
    cancel: Vec<String>,
}

/// Runs each user's server as a batch job; see the crate documentation.
#[derive(Debug, Clone)]
pub struct BatchSpawner {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    compiled: Compiled,
    /// Whether the hub runs as root (commands then run as the users' accounts).
    as_root: bool,
    starts: Arc<Starts>,
}

fn progress(ctx: &SpawnContext, percent: u8, message: impl Into<String>) {
    ctx.progress.send(ProgressEvent {
        progress: Some(percent),
        message: message.into(),
        html_message: None,
    });
}

fn refused(status: u16, message: impl Into<String>) -> SpawnError {
    SpawnError::Refused {
        message: message.into(),
        status,
    }
}

/// A command that did not run: the scheduler not answering in time is the user's to retry;
/// anything else (a missing program) is the administrator's to fix.
fn command_failure(e: CommandError) -> SpawnError {
    match e {
        CommandError::Timeout { .. } => refused(
            503,
            format!("The batch system did not answer in time ({e}); try again later."),
        ),
        other => SpawnError::Failed(anyhow!(other)),
    }
}

/// `jupyterhub-<user>[-<server>]` with only characters every scheduler takes in a job name.
fn job_name(server: &ServerRef) -> String {
    let raw = if server.name.is_empty() {
        format!("jupyterhub-{}", server.user)
    } else {
        format!("jupyterhub-{}-{}", server.user, server.name)
    };
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `host` as the host part of a URL.
fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// The variables of `vars` named in `keep` (a trailing `*` matches a prefix).
fn kept(keep: &[String], vars: impl Iterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.filter(|(k, _)| {
        keep.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => k.starts_with(prefix),
            None => k == pattern,
        })
    })
    .collect()
}

impl BatchSpawner {
    /// A spawner with `config`.
    ///
    /// # Errors
    /// A message naming the first setting that cannot work (a bad pattern or template, a
    /// missing command).
    pub fn new(config: BatchConfig) -> Result<Self, ConfigError> {
        Ok(BatchSpawner {
            inner: Arc::new(Inner {
                compiled: config.compile()?,
                as_root: nix::unistd::geteuid().is_root(),
                starts: Arc::default(),
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &BatchConfig {
        &self.inner.compiled.config
    }
}

impl Inner {
    fn config(&self) -> &BatchConfig {
        &self.compiled.config
    }

    /// The account the user's commands run as.
    async fn account_for(&self, user: &str) -> Result<Account, SpawnError> {
        if !self.as_root {
            return Ok(account::current().await?);
        }
        match account::lookup(user).await? {
            None => Err(refused(
                500,
                format!(
                    "There is no system account named {user:?} to submit the job as. An \
                     administrator must create it, on the hub's host and on the cluster."
                ),
            )),
            Some(account) if account.uid.is_root() => Err(refused(
                403,
                format!(
                    "Servers never run as the superuser, and the system account {:?} is uid 0.",
                    account.name
                ),
            )),
            Some(account) => Ok(account),
        }
    }

    /// The environment of every command: `PATH`, the kept variables of the hub's environment,
    /// and the account's `USER`, `LOGNAME` and `HOME`.
    fn command_env(&self, account: &Account) -> BTreeMap<String, String> {
        let mut env = kept(&self.config().command_env_keep, std::env::vars());
        env.entry("PATH".to_owned())
            .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".to_owned());
        env.insert("USER".to_owned(), account.name.clone());
        env.insert("LOGNAME".to_owned(), account.name.clone());
        env.insert(
            "HOME".to_owned(),
            account.home.to_string_lossy().into_owned(),
        );
        env
    }

    /// The fixed template variables every command has.
    fn facts(&self, server: &ServerRef, account: &Account) -> Map<String, Value> {
        let mut facts = Map::new();
        let mut put = |k: &str, v: String| {
            facts.insert(k.to_owned(), Value::String(v));
        };
        put("username", server.user.clone());
        put("servername", server.name.clone());
        put("job_name", job_name(server));
        put("home", account.home.to_string_lossy().into_owned());
        put("kind", self.config().preset.kind.clone());
        facts
    }

    /// What it takes to query and cancel job `job_id` of `server`.
    async fn job(
        &self,
        server: &ServerRef,
        job_id: &str,
        options: &Map<String, Value>,
    ) -> Result<Job, SpawnError> {
        let account = self.account_for(&server.user).await?;
        let mut facts = self.facts(server, &account);
        facts.insert("job_id".to_owned(), Value::String(job_id.to_owned()));
        self.job_with(job_id, &account, facts, options)
    }

    fn job_with(
        &self,
        job_id: &str,
        account: &Account,
        mut facts: Map<String, Value>,
        options: &Map<String, Value>,
    ) -> Result<Job, SpawnError> {
        let templates = &self.compiled.templates;
        facts.insert("job_id".to_owned(), Value::String(job_id.to_owned()));
        let ctx = templates
            .context(facts, options)
            .map_err(|e| SpawnError::Failed(e.into()))?;
        let render = |command| {
            templates
                .command(command, &ctx)
                .map_err(|e| SpawnError::Failed(e.into()))
                .map(Option::unwrap_or_default)
        };
        Ok(Job {
            id: job_id.to_owned(),
            run_as: RunAs::new(account, self.as_root),
            env: self.command_env(account),
            status: render(Command::Status)?,
            cancel: render(Command::Cancel)?,
        })
    }

    async fn run(
        &self,
        argv: &[String],
        stdin: Option<&str>,
        env: &BTreeMap<String, String>,
        run_as: &RunAs,
    ) -> Result<Output, CommandError> {
        let limit = self.config().command_timeout;
        let result = command::run(argv, stdin, env, run_as, limit).await;
        match &result {
            Ok(out) => tracing::debug!(
                command = argv.first().map_or("", String::as_str),
                code = ?out.code,
                "batch command: {}",
                out.text()
            ),
            Err(e) => tracing::warn!("batch command: {e}"),
        }
        result
    }

    /// Asks the scheduler about `job`.
    async fn query(&self, job: &Job) -> Result<JobStatus, CommandError> {
        let out = self.run(&job.status, None, &job.env, &job.run_as).await?;
        Ok(self.compiled.patterns.read(&out.text()))
    }

    /// Cancels `job`; unless `now`, waits up to `stop_timeout` for it to be gone.
    async fn cancel(&self, job: &Job, now: bool) -> Result<(), SpawnError> {
        let out = self
            .run(&job.cancel, None, &job.env, &job.run_as)
            .await
            .map_err(|e| SpawnError::Failed(anyhow!(e)))?;
        if out.success {
            tracing::info!(job.id = %job.id, "job cancelled");
        }
        if now && out.success {
            return Ok(());
        }
        let deadline = Instant::now() + self.config().stop_timeout;
        loop {
            let status = self.query(job).await;
            match status {
                Ok(s) if s.state == JobState::Gone => return Ok(()),
                Ok(_) | Err(_) if Instant::now() >= deadline => {
                    let what = match status {
                        Ok(s) => s.describe(),
                        Err(e) => e.to_string(),
                    };
                    return Err(SpawnError::Failed(anyhow!(
                        "job {} is still there {} s after `{}` ({}): {what}",
                        job.id,
                        self.config().stop_timeout.as_secs(),
                        job.cancel.join(" "),
                        out.complaint()
                    )));
                }
                Ok(s) if !out.success && s.state != JobState::Unknown && now => {
                    return Err(SpawnError::Failed(anyhow!(
                        "`{}` failed: {}",
                        job.cancel.join(" "),
                        out.complaint()
                    )));
                }
                _ => {}
            }
            tokio::time::sleep(self.config().status_interval).await;
        }
    }

    /// Cancels the user's jobs named like `server`'s (no job id known).
    async fn cancel_by_name(&self, server: &ServerRef) -> Result<(), SpawnError> {
        let account = self.account_for(&server.user).await?;
        let ctx = self
            .compiled
            .templates
            .context(self.facts(server, &account), &Map::new())
            .map_err(|e| SpawnError::Failed(e.into()))?;
        let Some(argv) = self
            .compiled
            .templates
            .command(Command::CancelByName, &ctx)
            .map_err(|e| SpawnError::Failed(e.into()))?
        else {
            return Ok(());
        };
        let out = self
            .run(
                &argv,
                None,
                &self.command_env(&account),
                &RunAs::new(&account, self.as_root),
            )
            .await
            .map_err(|e| SpawnError::Failed(anyhow!(e)))?;
        if !out.success {
            tracing::warn!(
                server = %server.full_name(),
                "`{}` failed: {}",
                argv.join(" "),
                out.complaint()
            );
        }
        Ok(())
    }

    /// Cancels by name a job that may have been submitted without the spawner learning how to
    /// reach it; errors are logged.
    async fn cancel_leftover(&self, server: &ServerRef) {
        if let Err(e) = self.cancel_by_name(server).await {
            tracing::error!(
                server = %server.full_name(),
                "cancelling a job the spawner could not follow: {e:#}"
            );
        }
    }

    /// The job's environment (see the crate documentation for the order).
    fn job_env(
        &self,
        ctx: &SpawnContext,
        account: &Account,
        command_env: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let config = self.config();
        let mut env = command_env.clone();
        env.extend(ctx.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.insert("USER".into(), account.name.clone());
        env.insert("LOGNAME".into(), account.name.clone());
        env.insert("HOME".into(), account.home.to_string_lossy().into_owned());
        env.insert("SHELL".into(), account.shell.to_string_lossy().into_owned());
        for (k, v) in &config.environment {
            let value = v
                .replace("{username}", &ctx.server.user)
                .replace("{servername}", &ctx.server.name);
            env.insert(k.clone(), value);
        }
        env.insert(
            "JUPYTERHUB_SERVICE_URL".into(),
            format!(
                "http://{}:{}{}",
                ip_text(config.ip),
                config.port,
                ctx.prefix
            ),
        );
        env
    }

    /// The server command line, shell-quoted.
    fn cmd_line(&self) -> String {
        let config = self.config();
        let wrapper = if config.port == 0 {
            config.wrapper.as_slice()
        } else {
            &[]
        };
        wrapper
            .iter()
            .chain(&config.cmd)
            .chain(&config.args)
            .map(|w| template::shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Held by a start; see [`Inner::start`].
#[derive(Debug)]
struct StartGuard {
    inner: Arc<Inner>,
    server: ServerRef,
    ticket: u64,
    settled: bool,
}

impl StartGuard {
    /// The start is over and left nothing to cancel (the server runs, or its job is gone or
    /// was cancelled already).
    fn settle(mut self) {
        self.settled = true;
        self.inner.starts.end(&self.server, self.ticket);
    }
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let Some(job) = self.inner.starts.abandon(&self.server, self.ticket) else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::error!(job.id = %job.id, "a start ended outside the runtime; its job is left");
            return;
        }
        tracing::info!(
            server = %self.server.full_name(),
            job.id = %job.id,
            "the start ended without a server; cancelling its job"
        );
        let inner = Arc::clone(&self.inner);
        let server = self.server.clone();
        tokio::spawn(async move {
            if let Err(e) = inner.cancel(&job, true).await {
                tracing::error!(job.id = %job.id, "cancelling the job of an abandoned start: {e:#}");
            }
            inner.starts.forget_job(&server, &job.id);
        });
    }
}

impl Inner {
    async fn start(self: &Arc<Self>, ctx: &SpawnContext) -> Result<Started, SpawnError> {
        let config = self.config();
        let deadline = Instant::now() + config.start_timeout;
        let options = options::validate(&self.compiled.options, Unlisted::Drop, &ctx.user_options)?;
        let account = self.account_for(&ctx.server.user).await?;
        let (ticket, mut reports) = self.starts.begin(&ctx.server);
        let guard = StartGuard {
            inner: Arc::clone(self),
            server: ctx.server.clone(),
            ticket,
            settled: false,
        };
        let kind = &config.preset.kind;
        let command_env = self.command_env(&account);
        let env = self.job_env(ctx, &account, &command_env);
        let mut facts = self.facts(&ctx.server, &account);
        {
            let mut put = |k: &str, v: Value| {
                facts.insert(k.to_owned(), v);
            };
            put("prefix", Value::String(ctx.prefix.clone()));
            put("cmd", Value::String(self.cmd_line()));
            put(
                "env",
                Value::Object(
                    env.iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                ),
            );
            put(
                "keepvars",
                Value::String(env.keys().cloned().collect::<Vec<_>>().join(",")),
            );
            put("ip", Value::String(config.ip.to_string()));
            put("port", Value::from(config.port));
            put(
                "service_url",
                Value::String(env["JUPYTERHUB_SERVICE_URL"].clone()),
            );
            put("job_id", Value::String(String::new()));
        }
        let templates = &self.compiled.templates;
        let rendered = templates.context(facts.clone(), &options).and_then(|t| {
            Ok((
                templates.script(&t)?,
                templates.command(Command::Submit, &t)?.unwrap_or_default(),
            ))
        });
        let (script, submit) = rendered.map_err(|e| SpawnError::Failed(e.into()))?;
        let run_as = RunAs::new(&account, self.as_root);
        progress(ctx, 10, format!("Submitting the server's job ({kind})"));
        let stdin = (!config.preset.script.is_empty()).then_some(script.as_str());
        let out = match self.run(&submit, stdin, &env, &run_as).await {
            Ok(out) => out,
            Err(e) => {
                if matches!(e, CommandError::Timeout { .. }) {
                    // Killed half-way, the command may have submitted the job all the same.
                    self.cancel_leftover(&ctx.server).await;
                }
                return Err(command_failure(e));
            }
        };
        if !out.success {
            return Err(refused(
                500,
                format!("The batch system refused the job: {}", out.complaint()),
            ));
        }
        let Some(job_id) = status::job_id(&self.compiled.job_id, &out.stdout) else {
            return Err(SpawnError::Failed(anyhow!(
                "no job id (job_id_pattern {:?}) in the output of `{}`: {:?}",
                self.compiled.job_id.as_str(),
                submit.join(" "),
                out.stdout.trim()
            )));
        };
        let job = match self.job_with(&job_id, &account, facts, &options) {
            Ok(job) => job,
            Err(e) => {
                // A job nobody can ask about or cancel by id must not stay queued.
                self.cancel_leftover(&ctx.server).await;
                return Err(e);
            }
        };
        self.starts.submitted(&ctx.server, ticket, job.clone());
        tracing::info!(server = %ctx.server.full_name(), job.id = %job_id, "job submitted");
        progress(ctx, 20, format!("Job {job_id} submitted"));

        let fixed_port = (config.port != 0).then_some(config.port);
        let mut host: Option<String> = None;
        let mut last_message = String::new();
        let mut last: Option<JobStatus> = None;
        let mut reports_open = true;
        let (url, port) = loop {
            let reported = *reports.borrow_and_update();
            let port = reported.or(fixed_port);
            match self.query(&job).await {
                Ok(status) => {
                    let (percent, message) = match status.state {
                        JobState::Pending => (
                            30,
                            format!("Job {job_id} is queued{}", status.in_parentheses()),
                        ),
                        JobState::Unknown => (
                            30,
                            format!("The batch system does not answer about job {job_id}; waiting"),
                        ),
                        JobState::Running => match &status.host {
                            Some(h) => {
                                host = Some(h.clone());
                                match port {
                                    Some(_) => (70, format!("Job {job_id} is running on {h}")),
                                    None => (
                                        60,
                                        format!(
                                            "Job {job_id} is running on {h}; waiting for the \
                                             server to report its port"
                                        ),
                                    ),
                                }
                            }
                            None => (50, format!("Job {job_id} is running; waiting for its host")),
                        },
                        JobState::Gone => {
                            guard.settle();
                            tracing::warn!(
                                server = %ctx.server.full_name(),
                                job.id = %job_id,
                                "job ended before its server was up: {}",
                                status.describe()
                            );
                            return Err(refused(
                                500,
                                format!(
                                    "Job {job_id} ended before the server started{}",
                                    status.in_parentheses()
                                ),
                            ));
                        }
                    };
                    if message != last_message {
                        progress(ctx, percent, message.clone());
                        last_message = message;
                    }
                    last = Some(status);
                }
                Err(e @ CommandError::NotFound { .. }) => {
                    return Err(SpawnError::Failed(anyhow!(e)));
                }
                // A slow or failing status command is retried until the deadline.
                Err(e) => tracing::warn!(job.id = %job_id, "status of the job: {e}"),
            }
            if let (Some(h), Some(p)) = (&host, port)
                && last.as_ref().is_some_and(|s| s.state == JobState::Running)
            {
                break (format!("http://{}:{p}", url_host(h)), p);
            }
            let now = Instant::now();
            if now >= deadline {
                let how_far = match (&last, &host) {
                    (Some(s), Some(h)) if s.state == JobState::Running => format!(
                        "it runs on {h}, but its server did not report a port (is the server \
                         command wrapped by batchspawner-singleuser, and can the node reach \
                         the hub's API?)"
                    ),
                    (Some(s), _) => format!("still {}", s.describe()),
                    (None, _) => "the batch system did not say where it is".to_owned(),
                };
                let cancelled = match self.cancel(&job, true).await {
                    Ok(()) => {
                        guard.settle();
                        "it was cancelled"
                    }
                    Err(e) => {
                        tracing::error!(job.id = %job_id, "cancelling the job: {e:#}");
                        "cancelling it failed"
                    }
                };
                return Err(refused(
                    500,
                    format!(
                        "Job {job_id} did not start within {} s: {how_far}; {cancelled}.",
                        config.start_timeout.as_secs()
                    ),
                ));
            }
            let wake = deadline.min(now + config.status_interval);
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                changed = reports.changed(), if reports_open => {
                    if changed.is_err() {
                        reports_open = false;
                    }
                }
            }
        };
        guard.settle();
        let host = host.unwrap_or_default();
        tracing::info!(
            server = %ctx.server.full_name(),
            job.id = %job_id,
            "server of job {job_id} listens on {host}:{port}"
        );
        let record = JobRecord {
            job_id,
            host: Some(host),
            port: Some(port),
            options,
        };
        Ok(Started {
            url,
            state: serde_json::to_value(record).map_err(|e| SpawnError::Failed(e.into()))?,
        })
    }
}

#[async_trait]
impl Spawner for BatchSpawner {
    fn kind(&self) -> &str {
        &self.inner.config().preset.kind
    }

    async fn start(&self, ctx: &SpawnContext) -> Result<Started, SpawnError> {
        self.inner.start(ctx).await
    }

    async fn poll(&self, server: &ServerRef, state: &Value) -> Result<PollStatus, SpawnError> {
        let Some(record) = JobRecord::from_value(state) else {
            // A start under way has no saved state yet.
            return Ok(match self.inner.starts.job(server) {
                Some((_, false)) => PollStatus::Running,
                _ => PollStatus::Stopped(None),
            });
        };
        let job = self
            .inner
            .job(server, &record.job_id, &record.options)
            .await?;
        match self.inner.query(&job).await {
            Ok(status) => match status.state {
                JobState::Pending | JobState::Running => Ok(PollStatus::Running),
                JobState::Unknown => {
                    tracing::warn!(
                        server = %server.full_name(),
                        job.id = %job.id,
                        "the batch system does not answer; taking the job as running"
                    );
                    Ok(PollStatus::Running)
                }
                JobState::Gone => {
                    tracing::info!(
                        server = %server.full_name(),
                        job.id = %job.id,
                        "job gone{}",
                        status.in_parentheses()
                    );
                    Ok(PollStatus::Stopped(None))
                }
            },
            Err(e) => Err(SpawnError::Failed(anyhow!(e))),
        }
    }

    async fn stop(&self, server: &ServerRef, state: &Value, now: bool) -> Result<(), SpawnError> {
        let job = match JobRecord::from_value(state) {
            Some(record) => {
                self.inner
                    .job(server, &record.job_id, &record.options)
                    .await?
            }
            None => match self.inner.starts.job(server) {
                Some((job, _)) => job,
                None => return self.inner.cancel_by_name(server).await,
            },
        };
        let result = self.inner.cancel(&job, now).await;
        self.inner.starts.forget_job(server, &job.id);
        result
    }

    fn options_form(&self, _server: &ServerRef) -> Option<String> {
        self.inner.config().options_form.clone()
    }

    fn validate_options(&self, options: Value) -> Result<Value, SpawnError> {
        options::validate(&self.inner.compiled.options, Unlisted::Refuse, &options)
            .map(Value::Object)
    }

    async fn server_reported(
        &self,
        server: &ServerRef,
        report: &ServerReport,
    ) -> Result<(), SpawnError> {
        if report.port == 0 {
            return Err(refused(400, "port must be between 1 and 65535"));
        }
        match self.inner.starts.report(server, report.port) {
            Reported::Taken => {
                tracing::info!(
                    server = %server.full_name(),
                    port = report.port,
                    "the server reported its port"
                );
                Ok(())
            }
            Reported::NotStarting => Err(refused(
                409,
                format!(
                    "{} is not starting; there is nothing to report to",
                    server.full_name()
                ),
            )),
        }
    }
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
    fn job_names() {
        assert_eq!(job_name(&server("alice", "")), "jupyterhub-alice");
        assert_eq!(job_name(&server("alice", "gpu")), "jupyterhub-alice-gpu");
        assert_eq!(
            job_name(&server("a.b@example.org", "x y")),
            "jupyterhub-a.b_example.org-x_y"
        );
    }

    #[test]
    fn records() {
        let state = serde_json::json!({"job_id": "12", "host": "n1", "port": 5000});
        let record = JobRecord::from_value(&state).unwrap();
        assert_eq!(record.port, Some(5000));
        assert_eq!(serde_json::to_value(&record).unwrap(), state);
        assert!(JobRecord::from_value(&serde_json::json!({})).is_none());
        assert!(JobRecord::from_value(&serde_json::json!({"job_id": "1 2"})).is_none());
        assert!(JobRecord::from_value(&serde_json::json!({"pid": 3})).is_none());
    }

    #[test]
    fn environment_kept_and_urls() {
        let vars = [
            ("PATH".to_owned(), "/bin".to_owned()),
            ("SLURM_CONF".to_owned(), "/etc/x".to_owned()),
            ("SECRET".to_owned(), "x".to_owned()),
        ];
        let keep = ["PATH".to_owned(), "SLURM_*".to_owned()];
        let got = kept(&keep, vars.into_iter());
        assert_eq!(got.keys().collect::<Vec<_>>(), ["PATH", "SLURM_CONF"]);
        assert_eq!(url_host("fe80::1"), "[fe80::1]");
        assert_eq!(url_host("node1"), "node1");
        assert_eq!(ip_text("::".parse().unwrap()), "[::]");
    }
}
