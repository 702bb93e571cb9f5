//! Running one batch-system command (`sbatch`, `squeue`, `scancel`, or a site's own script):
//! no shell, a complete environment, a time limit, stdout and stderr captured, and, when the hub
//! runs as root, the user's identity (uid, gid and every group) taken in the child just before
//! `exec`, so that the scheduler sees the job as the user's own.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::unistd::{Gid, Uid, chdir, setgid, setgroups, setuid};
use tokio::io::AsyncWriteExt as _;

use crate::account::Account;

/// Who a command runs as, prepared in the parent so that the child only makes raw system calls
/// (no allocation, no locks, no name service) between `fork` and `exec`.
#[derive(Debug, Clone)]
pub(crate) struct RunAs {
    /// `None`: the hub's own identity.
    switch: Option<(Uid, Gid, Vec<Gid>)>,
    /// Directories to start in, the first that works (the last is always `/`).
    dirs: Vec<CString>,
    /// The same, for a command that keeps the hub's identity.
    dir: PathBuf,
}

impl RunAs {
    /// As `account` when `switch` is set (the hub runs as root), else as the hub; in the
    /// account's home directory (else `/`).
    pub fn new(account: &Account, switch: bool) -> Self {
        let dirs = [account.home.as_path(), Path::new("/")]
            .iter()
            .filter_map(|d| CString::new(d.as_os_str().as_bytes()).ok())
            .collect();
        let dir = if account.home.is_dir() {
            account.home.clone()
        } else {
            PathBuf::from("/")
        };
        RunAs {
            switch: switch.then(|| (account.uid, account.gid, account.groups.clone())),
            dirs,
            dir,
        }
    }

    /// Runs in the child between `fork` and `exec`. Each step is one system call through `nix`,
    /// which neither allocates nor locks; errors come from the raw errno.
    fn enter(&self) -> io::Result<()> {
        if let Some((uid, gid, groups)) = &self.switch {
            // Groups first and the user last: after `setuid` the others are not allowed.
            setgroups(groups)?;
            setgid(*gid)?;
            setuid(*uid)?;
            // As the user, so a home the user may not enter is skipped.
            let mut last = Ok(());
            for dir in &self.dirs {
                last = chdir(dir.as_c_str());
                if last.is_ok() {
                    break;
                }
            }
            last?;
        }
        Ok(())
    }
}

/// What a finished command left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Output {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Output {
    /// Standard output and standard error together (what status patterns look at), each
    /// trimmed.
    pub fn text(&self) -> String {
        let (out, err) = (self.stdout.trim(), self.stderr.trim());
        match (out.is_empty(), err.is_empty()) {
            (_, true) => out.to_owned(),
            (true, false) => err.to_owned(),
            (false, false) => format!("{out}\n{err}"),
        }
    }

    /// What to show people about a failure: standard error, else standard output, cut to a
    /// few hundred characters.
    pub fn complaint(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            self.stdout.trim()
        } else {
            self.stderr.trim()
        };
        let mut shown: String = text.chars().take(MAX_SHOWN).collect();
        if text.chars().count() > MAX_SHOWN {
            shown.push('…');
        }
        if shown.is_empty() {
            match self.code {
                Some(code) => format!("exit status {code}, no output"),
                None => "killed by a signal, no output".to_owned(),
            }
        } else {
            shown
        }
    }
}

/// How much of a command's output a message shows.
const MAX_SHOWN: usize = 600;

/// Why a command did not run to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    /// The template rendered to nothing.
    #[error("the command is empty")]
    Empty,
    /// The program is not there.
    #[error("{program}: not found (is it installed, and on the PATH the hub gives commands?)")]
    NotFound {
        /// The program.
        program: String,
    },
    /// It ran longer than allowed and was killed.
    #[error("{program} did not finish within {} s and was killed", .limit.as_secs_f64())]
    Timeout {
        /// The program.
        program: String,
        /// The limit.
        limit: Duration,
    },
    /// Starting or talking to it failed.
    #[error("running {program}: {source}")]
    Io {
        /// The program.
        program: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

/// Runs `argv` as `run_as` with exactly `env`, feeding `stdin` (when given) and killing the
/// command's whole process group after `limit`.
///
/// # Errors
/// When the command cannot start, or runs too long. A command that runs and fails is not an
/// error: its [`Output`] says so.
pub(crate) async fn run(
    argv: &[String],
    stdin: Option<&str>,
    env: &BTreeMap<String, String>,
    run_as: &RunAs,
    limit: Duration,
) -> Result<Output, CommandError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(CommandError::Empty);
    };
    let io_error = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound => CommandError::NotFound {
            program: program.clone(),
        },
        _ => CommandError::Io {
            program: program.clone(),
            source,
        },
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if run_as.switch.is_none() {
        command.current_dir(&run_as.dir);
    }
    let identity = run_as.clone();
    // SAFETY: `pre_exec` runs the closure in the forked child of a multi-threaded process, where
    // only async-signal-safe operations are sound. `enter` makes nothing but raw system calls
    // (setgroups, setgid, setuid, chdir) on data prepared in the parent: it does not allocate,
    // lock, log or look anything up.
    #[allow(
        unsafe_code,
        reason = "pre_exec is how a child takes the user's identity before exec; the closure \
                  is async-signal-safe"
    )]
    unsafe {
        command.pre_exec(move || identity.enter());
    }
    let mut child = command.spawn().map_err(io_error)?;
    let pid = child.id();
    let feed = child.stdin.take();
    let input = stdin.unwrap_or_default().as_bytes().to_vec();
    let write = async move {
        if let Some(mut pipe) = feed {
            // A command that does not read its input closes the pipe: not our failure.
            match pipe.write_all(&input).await {
                Ok(()) | Err(_) => {}
            }
            drop(pipe);
        }
    };
    let finished = async {
        let ((), output) = tokio::join!(write, child.wait_with_output());
        output
    };
    match tokio::time::timeout(limit, finished).await {
        Ok(Ok(output)) => Ok(Output {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }),
        Ok(Err(e)) => Err(io_error(e)),
        Err(_) => {
            // The child leads its own process group: end everything it started too.
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(CommandError::Timeout {
                program: program.clone(),
                limit,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> RunAs {
        RunAs {
            switch: None,
            dirs: Vec::new(),
            dir: PathBuf::from("/"),
        }
    }

    fn env() -> BTreeMap<String, String> {
        [("PATH".to_owned(), "/usr/bin:/bin".to_owned())].into()
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[tokio::test]
    async fn output_input_and_environment() {
        let out = run(
            &argv(&["sh", "-c", "cat; echo \"[$X]\"; echo oops >&2; exit 3"]),
            Some("script\n"),
            &[
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("X".into(), "y".into()),
            ]
            .into(),
            &me(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(!out.success);
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "script\n[y]\n");
        assert_eq!(out.text(), "script\n[y]\noops");
        assert_eq!(out.complaint(), "oops");
    }

    #[tokio::test]
    async fn missing_programs_and_time_limits() {
        let missing = run(
            &argv(&["no-such-program-here"]),
            None,
            &env(),
            &me(),
            Duration::from_secs(5),
        )
        .await;
        assert!(
            matches!(missing, Err(CommandError::NotFound { .. })),
            "{missing:?}"
        );
        let slow = run(
            &argv(&["sh", "-c", "sleep 30 & wait"]),
            None,
            &env(),
            &me(),
            Duration::from_millis(300),
        )
        .await;
        let Err(e) = slow else { panic!("{slow:?}") };
        assert!(e.to_string().contains("did not finish within 0.3 s"), "{e}");
        assert!(matches!(
            run(&[], None, &env(), &me(), Duration::from_secs(1)).await,
            Err(CommandError::Empty)
        ));
    }

    #[test]
    fn complaints_are_short() {
        let out = Output {
            success: false,
            code: Some(1),
            stdout: "x".repeat(2000),
            stderr: String::new(),
        };
        assert_eq!(out.complaint().chars().count(), MAX_SHOWN + 1);
        let silent = Output {
            success: false,
            code: Some(2),
            stdout: String::new(),
            stderr: " \n".into(),
        };
        assert_eq!(silent.complaint(), "exit status 2, no output");
    }
}
