//! Building the server's command: its own process group, a clean environment, and, when the
//! hub runs as root, the user's identity and working directory set in the child just before
//! `exec`.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{SigHandler, Signal, signal};
use nix::unistd::{Gid, Uid, chdir, setgid, setgroups, setuid};

use crate::account::Account;

/// Who the child becomes, prepared in the parent so that the child only makes raw system
/// calls (no allocation, no locks, no name service lookups) between `fork` and `exec`.
#[derive(Debug)]
pub(crate) struct Identity {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    /// Directories to start in, first that works wins (the last is always `/`).
    dirs: Vec<CString>,
}

impl Identity {
    /// The identity of `account`, starting in `dir` (else its home, else `/`).
    pub fn of(account: &Account, dir: &Path) -> Self {
        let dirs = [dir, account.home.as_path(), Path::new("/")]
            .iter()
            .filter_map(|d| CString::new(d.as_os_str().as_bytes()).ok())
            .collect();
        Identity {
            uid: account.uid,
            gid: account.gid,
            groups: account.groups.clone(),
            dirs,
        }
    }

    /// Runs in the child between `fork` and `exec`: drops to the account and enters its
    /// directory. Each step is one system call through `nix`'s thin wrappers, which neither
    /// allocate nor lock; errors become `io::Error`s from the raw errno, which does not
    /// allocate either.
    fn become_account(&self) -> io::Result<()> {
        // Groups first and the user last: after `setuid` the others are no longer allowed.
        setgroups(&self.groups)?;
        setgid(self.gid)?;
        setuid(self.uid)?;
        // As the account, so a directory it may not enter is skipped.
        let mut last = Ok(());
        for dir in &self.dirs {
            last = chdir(dir.as_c_str());
            if last.is_ok() {
                break;
            }
        }
        Ok(last?)
    }
}

/// What to run.
#[derive(Debug)]
pub(crate) struct Launch {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The complete environment.
    pub env: BTreeMap<String, String>,
    /// Who to become (the hub runs as root); `None` runs as the hub's own account.
    pub identity: Option<Identity>,
    /// The working directory when `identity` is `None`.
    pub dir: PathBuf,
    /// Where stdout and stderr go: a file, or (`None`) pipes to the hub.
    pub log_file: Option<std::fs::File>,
}

impl Launch {
    /// The command, ready to spawn: stdin from `/dev/null`, stdout and stderr to the log file
    /// or piped to the hub, in a new process group whose id is the child's pid, not killed
    /// when the hub's handle is dropped (servers may outlive a hub restart).
    pub fn command(self) -> io::Result<tokio::process::Command> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the server command is empty",
            ));
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        match self.log_file {
            Some(file) => {
                command.stdout(file.try_clone()?).stderr(file);
            }
            None => {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
        }
        if self.identity.is_none() {
            command.current_dir(&self.dir);
        }
        let identity = self.identity;
        let in_child = move || -> io::Result<()> {
            if let Some(identity) = &identity {
                identity.become_account()?;
            }
            // A hub started with SIGINT or SIGTERM ignored (a non-interactive shell's `&`
            // ignores SIGINT) would pass that on, and the graceful steps of a stop would do
            // nothing. Give the server the default dispositions; it sets its own after exec.
            for sig in [Signal::SIGINT, Signal::SIGTERM] {
                // SAFETY: resetting to the default disposition installs no handler, and
                // `signal` is a single async-signal-safe system call.
                #[allow(unsafe_code, reason = "signal(2) is unsafe in nix; SIG_DFL is sound")]
                unsafe {
                    signal(sig, SigHandler::SigDfl)?;
                }
            }
            Ok(())
        };
        // SAFETY: `pre_exec` runs the closure in the forked child of a multi-threaded process,
        // where only async-signal-safe operations are sound. The closure makes nothing but
        // raw system calls (setgroups, setgid, setuid, chdir, signal) on data prepared in the
        // parent; it does not allocate, lock, log or look anything up.
        #[allow(
            unsafe_code,
            reason = "pre_exec is how a child drops privileges before exec; the closure is \
                      async-signal-safe"
        )]
        unsafe {
            command.pre_exec(in_child);
        }
        Ok(command)
    }
}
