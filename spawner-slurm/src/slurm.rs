//! The Slurm preset: the commands, patterns and job script that make the command-template
//! spawner drive Slurm, and the resource requests (partition, time, memory, CPUs, GPUs, ...)
//! that fill the script.
//!
//! Commands: `sbatch --parsable` with the script on stdin; `scontrol show job --oneliner <id>`
//! for the state, the reason, the node (`BatchHost`), the exit code and the output file, both
//! while the job exists and for `MinJobAge` (300 s by default) after it ended, so a failed job's
//! reason can be shown; `scancel <id>`. Accounting (`sacct`) is not needed.

use serde_json::{Map, Value};

use crate::config::Preset;

/// The job script. Variables: see the crate documentation; every resource request is left out
/// when empty.
pub const SCRIPT: &str = r#"#!/bin/bash
#SBATCH --job-name={{ job_name }}
#SBATCH --chdir={{ home }}
#SBATCH --output={{ output }}
{% if partition %}#SBATCH --partition={{ partition }}
{% endif %}{% if account %}#SBATCH --account={{ account }}
{% endif %}{% if qos %}#SBATCH --qos={{ qos }}
{% endif %}{% if reservation %}#SBATCH --reservation={{ reservation }}
{% endif %}{% if time %}#SBATCH --time={{ time }}
{% endif %}{% if memory %}#SBATCH --mem={{ memory }}
{% endif %}{% if cpus %}#SBATCH --cpus-per-task={{ cpus }}
{% endif %}{% if gpus %}#SBATCH --gres=gpu:{{ gpus }}
{% endif %}{% if constraint %}#SBATCH --constraint={{ constraint }}
{% endif %}{% for directive in directives %}#SBATCH {{ directive }}
{% endfor %}
set -euo pipefail
{{ prologue }}
{% if srun %}{{ srun }} {% endif %}{{ cmd }}
{{ epilogue }}
"#;

/// The Slurm commands and patterns.
pub fn preset() -> Preset {
    let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Preset {
        kind: "slurm".to_owned(),
        submit: words(&["sbatch", "--parsable"]),
        script: SCRIPT.to_owned(),
        // `<id>` or `<id>;<cluster>` on the last line; earlier lines may hold warnings.
        job_id_pattern: r"(?m)^\s*(\d+)(?:;\S*)?\s*\z".to_owned(),
        status: words(&["scontrol", "show", "job", "--oneliner", "{{ job_id }}"]),
        running_pattern: r"(?:^|\s)JobState=(?:RUNNING|COMPLETING|SIGNALING|STAGE_OUT)(?:\s|$)"
            .to_owned(),
        pending_pattern: r"(?:^|\s)JobState=(?:PENDING|CONFIGURING|REQUEUED|REQUEUE_HOLD|REQUEUE_FED|RESV_DEL_HOLD|SUSPENDED|STOPPED|RESIZING)(?:\s|$)"
            .to_owned(),
        unknown_pattern: Some(
            r"(?i)(?:Unable to contact slurm controller|Socket timed out|Transport endpoint is not connected|Zero Bytes were transmitted|Slurm backup controller in standby mode)"
                .to_owned(),
        ),
        host_pattern: r"(?:^|\s)BatchHost=(\S+)".to_owned(),
        details: words(&[
            r"(?:^|\s)JobState=(?P<state>\S+)",
            r"(?:^|\s)Reason=(?P<reason>\S+)",
            r"(?:^|\s)ExitCode=(?P<exit_code>[1-9]\S*|0:[1-9]\d*)",
            r"(?:^|\s)StdOut=(?P<output>\S+)",
        ]),
        cancel: words(&["scancel", "{{ job_id }}"]),
        // Run as the user, so only the user's own jobs of that name are touched.
        cancel_by_name: Some(words(&["scancel", "--name={{ job_name }}"])),
    }
}

/// What a Slurm job asks for. Empty values are left out of the script; each is also a template
/// variable of the same name, which a user option of that name replaces (when the operator
/// allows it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlurmRequest {
    /// `--partition`.
    pub partition: String,
    /// `--account`.
    pub account: String,
    /// `--qos`.
    pub qos: String,
    /// `--reservation`.
    pub reservation: String,
    /// `--time`, e.g. `8:00:00`.
    pub time: String,
    /// `--mem`, e.g. `4G`.
    pub memory: String,
    /// `--cpus-per-task`.
    pub cpus: String,
    /// `--gres=gpu:<n>`.
    pub gpus: String,
    /// `--constraint`.
    pub constraint: String,
    /// More `#SBATCH` lines, each without the `#SBATCH ` prefix (e.g. `--exclusive`).
    pub directives: Vec<String>,
    /// Shell lines before the server starts (e.g. `module load python`).
    pub prologue: String,
    /// Shell lines after the server ends.
    pub epilogue: String,
    /// The job step launcher put before the server command; empty runs it in the batch step.
    pub srun: String,
    /// The job's output file; `%j` is the job id.
    pub output: String,
}

impl SlurmRequest {
    /// The defaults: the server runs under `srun`, output goes to
    /// `~/.jupyterhub-slurm-<job id>.log`.
    pub fn new() -> Self {
        SlurmRequest {
            srun: "srun".to_owned(),
            output: "{{ home }}/.jupyterhub-slurm-%j.log".to_owned(),
            ..SlurmRequest::default()
        }
    }

    /// The template variables.
    pub fn variables(&self) -> Map<String, Value> {
        let mut vars = Map::new();
        for (name, value) in [
            ("partition", &self.partition),
            ("account", &self.account),
            ("qos", &self.qos),
            ("reservation", &self.reservation),
            ("time", &self.time),
            ("memory", &self.memory),
            ("cpus", &self.cpus),
            ("gpus", &self.gpus),
            ("constraint", &self.constraint),
            ("prologue", &self.prologue),
            ("epilogue", &self.epilogue),
            ("srun", &self.srun),
            ("output", &self.output),
        ] {
            vars.insert(name.to_owned(), Value::String(value.clone()));
        }
        vars.insert(
            "directives".to_owned(),
            Value::Array(
                self.directives
                    .iter()
                    .map(|d| Value::String(d.clone()))
                    .collect(),
            ),
        );
        vars
    }
}
