//! Throwaway system accounts and PAM policy files, for tests whose servers run as other users.
//!
//! Creating them needs root (CI runs as root). Everything is removed when the [`Accounts`]
//! value is dropped, also when the test panics.

use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// `useradd`, `userdel` and `chpasswd` lock `/etc/passwd`: one at a time in this process
/// (other processes are waited for by retrying).
static ACCOUNTS: Mutex<()> = Mutex::new(());

fn accounts_lock() -> MutexGuard<'static, ()> {
    ACCOUNTS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A short random lowercase hex string, for names that must not collide between test
/// processes.
pub fn random_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let seed = (
        Instant::now(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    );
    format!("{:08x}", RandomState::new().hash_one(seed) as u32)
}

/// Runs an account-management command, retrying while another process holds the lock of
/// the account files.
fn admin(cmd: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut child = Command::new(cmd)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot run {cmd}: {e}"))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())?;
        }
        drop(child.stdin.take());
        let out = child.wait_with_output()?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Another test process holds /etc/passwd.lock (or a sibling) for a moment.
        if !stderr.contains("lock") || Instant::now() > deadline {
            anyhow::bail!(
                "{cmd} {} failed ({}): {}",
                args.join(" "),
                out.status,
                stderr.trim()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A system account made by [`Accounts::user`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemUser {
    /// Login name (also the hub user name).
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory (created).
    pub home: PathBuf,
}

/// Throwaway accounts and PAM service files; removed on drop.
#[derive(Debug, Default)]
pub struct Accounts {
    users: Vec<String>,
    services: Vec<PathBuf>,
}

impl Accounts {
    /// An empty set.
    ///
    /// # Panics
    /// When not running as root, with a message saying why root is needed.
    pub fn new() -> Self {
        assert!(
            is_root(),
            "this test must run as root: it creates system users (and /etc/pam.d files) whose \
             servers the hub starts under their own uid (CI runs as root; run `sudo -E cargo \
             nextest run -p workspace-tests`)"
        );
        Self::default()
    }

    /// A new account `<prefix>_<random>` with a home directory and a login shell, and with
    /// `password` when given (otherwise the password is locked).
    ///
    /// # Errors
    /// When `useradd` or `chpasswd` fails.
    pub fn user(&mut self, prefix: &str, password: Option<&str>) -> anyhow::Result<SystemUser> {
        let name = format!("{prefix}_{}", random_suffix());
        let _lock = accounts_lock();
        admin("useradd", &["-m", "-s", "/bin/sh", "--", &name], None)?;
        self.users.push(name.clone());
        if let Some(password) = password {
            admin("chpasswd", &[], Some(&format!("{name}:{password}\n")))?;
        }
        let user = nix::unistd::User::from_name(&name)?
            .ok_or_else(|| anyhow::anyhow!("useradd made {name}, yet it cannot be found"))?;
        Ok(SystemUser {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        })
    }

    /// Takes over an account someone else made (such as the hub with
    /// `create_system_users`): it is removed with the others. Returns it once it exists.
    ///
    /// # Errors
    /// When there is no such account.
    pub fn adopt(&mut self, name: &str) -> anyhow::Result<SystemUser> {
        if !self.users.iter().any(|u| u == name) {
            self.users.push(name.to_owned());
        }
        let user = nix::unistd::User::from_name(name)?
            .ok_or_else(|| anyhow::anyhow!("there is no system account {name}"))?;
        Ok(SystemUser {
            name: name.to_owned(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        })
    }

    /// Removes `name` with the others when this value is dropped, whether or not it exists by
    /// then.
    pub fn remove_later(&mut self, name: &str) {
        if !self.users.iter().any(|u| u == name) {
            self.users.push(name.to_owned());
        }
    }

    /// A PAM policy file `/etc/pam.d/jhrs-e2e-<random>`; returns the service name.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn pam_service(&mut self, policy: &str) -> anyhow::Result<String> {
        let name = format!("jhrs-e2e-{}", random_suffix());
        let path = Path::new("/etc/pam.d").join(&name);
        std::fs::write(&path, policy)?;
        self.services.push(path);
        Ok(name)
    }
}

/// A policy that checks passwords and accounts against `/etc/shadow` with `pam_unix`.
pub const UNIX_POLICY: &str = "auth required pam_unix.so\n\
                               account required pam_unix.so\n\
                               session required pam_unix.so\n";

impl Drop for Accounts {
    fn drop(&mut self) {
        for path in &self.services {
            if let Err(e) = std::fs::remove_file(path) {
                eprintln!("cleanup: cannot remove {}: {e}", path.display());
            }
        }
        let _lock = accounts_lock();
        for user in &self.users {
            // Processes the test left behind under this uid would keep the uid in use.
            match nix::unistd::User::from_name(user) {
                Ok(Some(account)) => {
                    crate::procs::kill_where(|p| p.uid == Some(account.uid.as_raw()));
                }
                // Never made (see `remove_later`).
                Ok(None) => continue,
                Err(_) => {}
            }
            if let Err(e) = admin("userdel", &["-r", "-f", user], None) {
                eprintln!("cleanup: cannot remove user {user}: {e}");
            }
        }
    }
}
