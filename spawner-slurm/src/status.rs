//! Reading a batch system's answers: the job id in the submit command's output, and the job's
//! state, host and details (state name, reason, exit code, output file) in the status command's
//! output. Everything is configured as regular expressions, so PBS, LSF, SGE, HTCondor or a
//! site's own scripts need no code. Pure functions; the spawner runs the commands.

use regex::Regex;

/// Where a job is, as far as the spawner cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobState {
    /// Waiting to run (queued, held, configuring nodes).
    Pending,
    /// Running (the server may still be starting inside it).
    Running,
    /// The scheduler did not answer; the job may well exist.
    Unknown,
    /// Finished, failed, cancelled, or not known to the scheduler any more.
    Gone,
}

/// One status command's answer, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobStatus {
    /// The state.
    pub state: JobState,
    /// The host the job runs on, when the host pattern matched.
    pub host: Option<String>,
    /// Labelled details for messages, in the configured order (`state`, `reason`, ...).
    pub details: Vec<(String, String)>,
}

impl JobStatus {
    /// The details as people read them: `state PENDING, reason Resources`; empty when there are
    /// none.
    pub fn describe(&self) -> String {
        self.details
            .iter()
            .map(|(label, value)| format!("{label} {value}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// ` (state PENDING, reason Resources)`, or nothing when there are no details.
    pub fn in_parentheses(&self) -> String {
        let text = self.describe();
        if text.is_empty() {
            text
        } else {
            format!(" ({text})")
        }
    }
}

/// The compiled patterns that read the status command's output.
#[derive(Debug, Clone)]
pub(crate) struct StatusPatterns {
    /// Matches the output of a running job.
    pub running: Regex,
    /// Matches the output of a job waiting to run.
    pub pending: Regex,
    /// Matches the output when the scheduler does not answer (optional).
    pub unknown: Option<Regex>,
    /// Its first capture group is the job's host.
    pub host: Regex,
    /// Each has one named capture group; the name is the label.
    pub details: Vec<Regex>,
}

/// Values of details that say nothing (`Reason=None`, `(null)`), left out of messages.
const EMPTY_VALUES: [&str; 4] = ["", "None", "(null)", "n/a"];

impl StatusPatterns {
    /// Reads a status command's output (`text`: standard output and error together).
    pub fn read(&self, text: &str) -> JobStatus {
        let state = if self.running.is_match(text) {
            JobState::Running
        } else if self.pending.is_match(text) {
            JobState::Pending
        } else if self.unknown.as_ref().is_some_and(|r| r.is_match(text)) {
            JobState::Unknown
        } else {
            JobState::Gone
        };
        let host = self
            .host
            .captures(text)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().to_owned())
            .filter(|h| valid_host(h));
        let mut details = Vec::new();
        for pattern in &self.details {
            let Some(captures) = pattern.captures(text) else {
                continue;
            };
            for name in pattern.capture_names().flatten() {
                if let Some(value) = captures.name(name)
                    && !EMPTY_VALUES.contains(&value.as_str())
                {
                    details.push((name.replace('_', " "), value.as_str().to_owned()));
                }
            }
        }
        JobStatus {
            state,
            host,
            details,
        }
    }
}

/// The job id in the submit command's output: the pattern's first capture group (or the whole
/// match), when it looks like a job id.
pub(crate) fn job_id(pattern: &Regex, output: &str) -> Option<String> {
    let captures = pattern.captures(output)?;
    let found = captures.get(1).or_else(|| captures.get(0))?.as_str().trim();
    valid_job_id(found).then(|| found.to_owned())
}

/// Whether `id` can be a job id: 1 to 128 characters of letters, digits and `._-@:[]+`. Job ids
/// go into command arguments; anything else (a space, a quote, a newline) means the pattern
/// or the saved state is wrong.
pub(crate) fn valid_job_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@:[]+".contains(c))
}

/// Whether `host` can be a host name or an IP address as the scheduler names a node.
pub(crate) fn valid_host(host: &str) -> bool {
    (1..=253).contains(&host.len())
        && !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm;

    fn slurm_patterns() -> StatusPatterns {
        let preset = slurm::preset();
        StatusPatterns {
            running: Regex::new(&preset.running_pattern).unwrap(),
            pending: Regex::new(&preset.pending_pattern).unwrap(),
            unknown: preset
                .unknown_pattern
                .as_deref()
                .map(|p| Regex::new(p).unwrap()),
            host: Regex::new(&preset.host_pattern).unwrap(),
            details: preset
                .details
                .iter()
                .map(|p| Regex::new(p).unwrap())
                .collect(),
        }
    }

    // Lines as `scontrol show job --oneliner` prints them (Slurm 22.05), shortened.
    const PENDING: &str = "JobId=2 JobName=jupyterhub-alice UserId=alice(1001) \
        JobState=PENDING Reason=PartitionDown Dependency=(null) ExitCode=0:0 \
        BatchHost=(null) NodeList=(null) StdOut=/home/alice/.jupyterhub-slurm-2.log";
    const RUNNING: &str = "JobId=1 JobName=jupyterhub-alice UserId=alice(1001) \
        JobState=RUNNING Reason=None Dependency=(null) ExitCode=0:0 NodeList=node7 \
        BatchHost=node7 StdOut=/home/alice/.jupyterhub-slurm-1.log";
    const FAILED: &str = "JobId=3 JobName=jupyterhub-alice UserId=alice(1001) \
        JobState=FAILED Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0 NodeList=vm \
        BatchHost=vm StdOut=/home/alice/.jupyterhub-slurm-3.log";

    #[test]
    fn slurm_states() {
        let p = slurm_patterns();
        let pending = p.read(PENDING);
        assert_eq!(pending.state, JobState::Pending);
        assert_eq!(pending.host, None);
        assert_eq!(
            pending.describe(),
            "state PENDING, reason PartitionDown, output /home/alice/.jupyterhub-slurm-2.log"
        );
        let running = p.read(RUNNING);
        assert_eq!(running.state, JobState::Running);
        assert_eq!(running.host.as_deref(), Some("node7"));
        let failed = p.read(FAILED);
        assert_eq!(failed.state, JobState::Gone);
        assert_eq!(
            failed.in_parentheses(),
            " (state FAILED, reason NonZeroExitCode, exit code 3:0, \
             output /home/alice/.jupyterhub-slurm-3.log)"
        );
        for (text, state) in [
            (
                "slurm_load_jobs error: Invalid job id specified",
                JobState::Gone,
            ),
            (
                "slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
                JobState::Unknown,
            ),
            (
                "slurm_load_jobs error: Socket timed out on send/recv operation",
                JobState::Unknown,
            ),
            ("", JobState::Gone),
            ("JobId=4 JobState=COMPLETING Reason=None", JobState::Running),
            (
                "JobId=4 JobState=CONFIGURING Reason=None",
                JobState::Pending,
            ),
            ("JobId=4 JobState=CANCELLED Reason=None", JobState::Gone),
            ("JobId=4 JobState=TIMEOUT Reason=TimeLimit", JobState::Gone),
            // A job name that spells a state does not fool the patterns.
            (
                "JobId=4 JobName=JobState=RUNNING JobState=FAILED",
                JobState::Gone,
            ),
        ] {
            assert_eq!(p.read(text).state, state, "{text}");
        }
    }

    #[test]
    fn job_ids() {
        let slurm = Regex::new(&slurm::preset().job_id_pattern).unwrap();
        assert_eq!(job_id(&slurm, "42\n").as_deref(), Some("42"));
        assert_eq!(job_id(&slurm, "42;cluster2\n").as_deref(), Some("42"));
        // Warnings before the id (a Slurm quirk) are skipped: the id is on the last line.
        assert_eq!(
            job_id(&slurm, "sbatch: warning: something\n77\n").as_deref(),
            Some("77")
        );
        assert_eq!(job_id(&slurm, "Submitted batch job 42\n"), None);
        assert_eq!(job_id(&slurm, ""), None);
        let pbs = Regex::new(r"^\s*(\S+)\s*$").unwrap();
        assert_eq!(
            job_id(&pbs, "1234.pbs-server.example.org\n").as_deref(),
            Some("1234.pbs-server.example.org")
        );
        assert_eq!(job_id(&Regex::new(r".+").unwrap(), "a b"), None);
        assert!(valid_job_id("12_3"));
        assert!(!valid_job_id("1;rm -rf /"));
        assert!(!valid_job_id(""));
    }

    #[test]
    fn hosts() {
        for good in [
            "node7",
            "n7.cluster.example.org",
            "10.0.0.7",
            "fe80::1",
            "gpu_3",
        ] {
            assert!(valid_host(good), "{good}");
        }
        for bad in ["", "-x", "a b", "a/b", "(null)", "a@b"] {
            assert!(!valid_host(bad), "{bad}");
        }
    }
}
