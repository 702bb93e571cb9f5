//! Settings of the batch spawner: the commands and patterns that drive a batch system
//! ([`Preset`]; Slurm's is built in), what goes into the job, and the timing. [`BatchConfig`]
//! is the raw form; [`BatchConfig::compile`] checks every pattern and template once, so a bad
//! configuration stops the hub at startup with a message naming the key, never a spawn.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use regex::Regex;
use serde_json::{Map, Value};

use crate::status::StatusPatterns;
use crate::template::Templates;

/// How to drive one batch system. Every command is a list of words, each a template (Jinja
/// syntax: `{{ job_id }}`), run without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    /// Name for logs and `/hub/api/info` (`slurm`, `batch`).
    pub kind: String,
    /// Submits the job; the rendered `script` is its standard input.
    pub submit: Vec<String>,
    /// The job script template; empty sends nothing to `submit`'s standard input.
    pub script: String,
    /// Finds the job id in `submit`'s standard output: the first capture group, else the
    /// whole match.
    pub job_id_pattern: String,
    /// Asks for the job's state (`{{ job_id }}`); standard output and error are read together.
    pub status: Vec<String>,
    /// Matches `status` output of a running job.
    pub running_pattern: String,
    /// Matches `status` output of a job waiting to run.
    pub pending_pattern: String,
    /// Matches `status` output when the scheduler did not answer; such a job is taken as still
    /// there. `None`: every other answer means the job is gone.
    pub unknown_pattern: Option<String>,
    /// Its first capture group, in `status` output of a running job, is the host the job runs
    /// on (what the hub and the proxy connect to).
    pub host_pattern: String,
    /// Patterns with named capture groups picking details out of `status` output for messages
    /// (`(?P<reason>...)` shows as `reason <value>`), in this order.
    pub details: Vec<String>,
    /// Cancels the job (`{{ job_id }}`).
    pub cancel: Vec<String>,
    /// Cancels the user's jobs named `{{ job_name }}`: used when the hub asks to stop a server
    /// whose job id it never learnt (a hub that restarted while the job was queued). `None`:
    /// such jobs are left alone.
    pub cancel_by_name: Option<Vec<String>>,
}

impl Preset {
    /// A preset with nothing configured, for a batch system described entirely by
    /// configuration.
    pub fn empty() -> Self {
        Preset {
            kind: "batch".to_owned(),
            submit: Vec::new(),
            script: String::new(),
            job_id_pattern: String::new(),
            status: Vec::new(),
            running_pattern: String::new(),
            pending_pattern: String::new(),
            unknown_pattern: None,
            host_pattern: String::new(),
            details: Vec::new(),
            cancel: Vec::new(),
            cancel_by_name: None,
        }
    }
}

/// Settings of [`crate::BatchSpawner`].
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// The batch system's commands and patterns.
    pub preset: Preset,
    /// Template variables (strings, or lists of strings), e.g. Slurm's `partition`. String
    /// values may themselves use the fixed variables (`{{ home }}`).
    pub variables: Map<String, Value>,
    /// User options users may set, each with the pattern every value must match in full; an
    /// option replaces the variable of the same name. Options not listed are refused.
    pub options: BTreeMap<String, String>,
    /// HTML of the options form on the spawn page.
    pub options_form: Option<String>,
    /// The single-user server program and its arguments.
    pub cmd: Vec<String>,
    /// More arguments after `cmd`.
    pub args: Vec<String>,
    /// Put before `cmd` when `port` is 0: the program that picks a free port on the node,
    /// reports it to the hub (`POST /hub/api/batchspawner`) and starts `cmd` on it.
    pub wrapper: Vec<String>,
    /// The address the server binds on its node (in `JUPYTERHUB_SERVICE_URL`).
    pub ip: IpAddr,
    /// The port the server listens on; 0: the server reports the one it picked.
    pub port: u16,
    /// Variables set last in the job's environment; `{username}` and `{servername}` are
    /// replaced.
    pub environment: BTreeMap<String, String>,
    /// Variables of the hub's own environment that every command gets (the scheduler's client
    /// settings, e.g. `SLURM_CONF`); a trailing `*` matches a prefix. `PATH` is always given.
    pub command_env_keep: Vec<String>,
    /// How long a start may take in all: queueing, starting, reporting. Keep it below the hub's
    /// start timeout, so the spawner's own message (and cancel) comes first.
    pub start_timeout: Duration,
    /// Time between status checks while a job starts or stops.
    pub status_interval: Duration,
    /// How long a stop waits for the job to be gone after cancelling it.
    pub stop_timeout: Duration,
    /// How long any one command may run.
    pub command_timeout: Duration,
}

impl BatchConfig {
    /// Settings around `preset`, with the defaults: `jupyterhub-singleuser` wrapped by
    /// `batchspawner-singleuser`, binding all addresses of the node, a 5-minute start, status
    /// checks every second.
    pub fn new(preset: Preset) -> Self {
        BatchConfig {
            preset,
            variables: Map::new(),
            options: BTreeMap::new(),
            options_form: None,
            cmd: vec!["jupyterhub-singleuser".to_owned()],
            args: Vec::new(),
            wrapper: vec!["batchspawner-singleuser".to_owned()],
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            environment: BTreeMap::new(),
            command_env_keep: ["PATH", "SLURM_CONF", "LANG", "LC_ALL"]
                .map(str::to_owned)
                .to_vec(),
            start_timeout: Duration::from_secs(300),
            status_interval: Duration::from_secs(1),
            stop_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(30),
        }
    }

    /// Slurm: [`crate::slurm::preset`] and the variables of `request`.
    pub fn slurm(request: &crate::slurm::SlurmRequest) -> Self {
        let mut config = BatchConfig::new(crate::slurm::preset());
        config.variables = request.variables();
        config
    }

    /// Checks and compiles every pattern and template.
    ///
    /// # Errors
    /// A message naming the first unusable setting.
    pub(crate) fn compile(self) -> Result<Compiled, ConfigError> {
        let p = &self.preset;
        let required = |name: &str, words: &[String]| {
            if words.iter().all(|w| w.trim().is_empty()) {
                Err(ConfigError(format!(
                    "{name} is not set: it needs a command"
                )))
            } else {
                Ok(())
            }
        };
        required("submit", &p.submit)?;
        required("status", &p.status)?;
        required("cancel", &p.cancel)?;
        if self.cmd.is_empty() {
            return Err(ConfigError("cmd is empty".to_owned()));
        }
        let regex = |name: &str, pattern: &str| {
            if pattern.is_empty() {
                return Err(ConfigError(format!("{name} is not set")));
            }
            Regex::new(pattern).map_err(|e| ConfigError(format!("{name}: {e}")))
        };
        let job_id = regex("job_id_pattern", &p.job_id_pattern)?;
        let host = regex("host_pattern", &p.host_pattern)?;
        if host.captures_len() < 2 {
            return Err(ConfigError(
                "host_pattern needs a capture group around the host".to_owned(),
            ));
        }
        let mut details = Vec::new();
        for pattern in &p.details {
            let compiled = regex("details", pattern)?;
            if compiled.capture_names().flatten().next().is_none() {
                return Err(ConfigError(format!(
                    "details: {pattern:?} has no named capture group such as (?P<reason>...)"
                )));
            }
            details.push(compiled);
        }
        let patterns = StatusPatterns {
            running: regex("running_pattern", &p.running_pattern)?,
            pending: regex("pending_pattern", &p.pending_pattern)?,
            unknown: p
                .unknown_pattern
                .as_deref()
                .filter(|u| !u.is_empty())
                .map(|u| regex("unknown_pattern", u))
                .transpose()?,
            host,
            details,
        };
        let mut options = BTreeMap::new();
        for (name, pattern) in &self.options {
            if !valid_option_name(name) {
                return Err(ConfigError(format!(
                    "options: {name:?} is not a usable option name (letters, digits and _, \
                     not starting with a digit)"
                )));
            }
            let anchored = format!(r"\A(?:{pattern})\z");
            let compiled =
                Regex::new(&anchored).map_err(|e| ConfigError(format!("options.{name}: {e}")))?;
            options.insert(name.clone(), compiled);
        }
        for (name, value) in &self.variables {
            if !valid_option_name(name) {
                return Err(ConfigError(format!(
                    "variables: {name:?} is not a usable variable name"
                )));
            }
            let ok = match value {
                Value::String(_) => true,
                Value::Array(items) => items.iter().all(Value::is_string),
                _ => false,
            };
            if !ok {
                return Err(ConfigError(format!(
                    "variables.{name}: only strings and lists of strings are allowed"
                )));
            }
        }
        if self.status_interval.is_zero() {
            return Err(ConfigError("status_interval must be above 0".to_owned()));
        }
        let templates = Templates::compile(&self)?;
        Ok(Compiled {
            job_id,
            patterns,
            options,
            templates,
            config: self,
        })
    }
}

/// Whether `name` can be a variable or option name (a template identifier).
fn valid_option_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The settings with every pattern and template compiled.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub config: BatchConfig,
    pub job_id: Regex,
    pub patterns: StatusPatterns,
    pub options: BTreeMap<String, Regex>,
    pub templates: Templates,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::{SlurmRequest, preset};

    #[test]
    fn the_slurm_preset_compiles() {
        let compiled = BatchConfig::slurm(&SlurmRequest::new()).compile().unwrap();
        assert_eq!(compiled.config.preset.kind, "slurm");
    }

    type Change = Box<dyn Fn(&mut BatchConfig)>;

    #[test]
    fn bad_settings_are_named() {
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|c| c.preset = Preset::empty()),
                "submit is not set",
            ),
            (
                Box::new(|c| c.preset.running_pattern = "(".into()),
                "running_pattern: regex parse error",
            ),
            (
                Box::new(|c| c.preset.host_pattern = r"BatchHost=\S+".into()),
                "host_pattern needs a capture group",
            ),
            (
                Box::new(|c| c.preset.details = vec![r"Reason=(\S+)".into()]),
                "no named capture group",
            ),
            (
                Box::new(|c| {
                    c.options.insert("partition".into(), "[".into());
                }),
                "options.partition: regex parse error",
            ),
            (
                Box::new(|c| {
                    c.options.insert("bad-name".into(), "x".into());
                }),
                "not a usable option name",
            ),
            (
                Box::new(|c| {
                    c.variables.insert("n".into(), Value::from(3));
                }),
                "variables.n: only strings",
            ),
            (Box::new(|c| c.preset.script = "{% if %}".into()), "script:"),
            (
                Box::new(|c| c.preset.status = vec!["squeue".into(), "{{ job_id".into()]),
                "status, word 2: syntax error",
            ),
            (Box::new(|c| c.cmd.clear()), "cmd is empty"),
        ];
        for (change, expected) in cases {
            let mut config = BatchConfig::new(preset());
            change(&mut config);
            let err = config.compile().unwrap_err();
            assert!(err.0.contains(expected), "{err} should say {expected:?}");
        }
    }
}
