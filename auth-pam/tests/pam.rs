//! The PAM authenticator against the real libpam and `pam_unix`.
//!
//! These tests create throwaway system users and groups and `/etc/pam.d/jhrs-test-*` policy
//! files, so they must run as root (CI does). Everything they create is removed when the test
//! ends, also when it panics.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use auth_pam::{PamAuthenticator, PamConfig, loggable};
use hub_plugin::{AuthError, AuthModel, Authenticator, LoginForm};

/// `useradd`, `groupadd` and friends lock `/etc/passwd`; run them one at a time.
static ACCOUNTS: Mutex<()> = Mutex::new(());

fn accounts_lock() -> MutexGuard<'static, ()> {
    ACCOUNTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the auth-pam tests must run as root: they create system users, groups and \
         /etc/pam.d files, and pam_unix needs root to read /etc/shadow (CI runs as root; \
         run `sudo -E cargo test -p auth-pam`)"
    );
}

fn token() -> String {
    format!("{:08x}", RandomState::new().hash_one(Instant::now()) as u32)
}

/// Runs an account-management command, retrying while another process holds the lock.
fn admin(cmd: &str, args: &[&str], stdin: Option<&str>) {
    let mut last = String::new();
    // Other test processes (nextest runs one per test) may hold the lock for a moment.
    for attempt in 0..60 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(150));
        }
        let mut child = Command::new(cmd)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            return;
        }
        last = format!(
            "{cmd} {} failed ({}): {}",
            args.first().copied().unwrap_or(""),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    panic!("{last}");
}

/// Throwaway users, groups, policy files and scripts, removed on drop (also on panic).
struct Scratch {
    users: Vec<String>,
    groups: Vec<String>,
    services: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        require_root();
        Self {
            users: Vec::new(),
            groups: Vec::new(),
            services: Vec::new(),
            dir: tempfile::Builder::new()
                .prefix("jhrs-pam-")
                .tempdir()
                .unwrap(),
        }
    }

    /// A new system user with a home directory and this password; returns its name.
    fn user(&mut self, password: &str) -> String {
        let name = format!("jhrs_{}", token());
        let _lock = accounts_lock();
        admin("useradd", &["-m", "-s", "/bin/sh", &name], None);
        self.users.push(name.clone());
        admin("chpasswd", &[], Some(&format!("{name}:{password}\n")));
        name
    }

    /// A new system group with these members; returns its name.
    fn group(&mut self, members: &[&str]) -> String {
        let name = format!("jhrsg_{}", token());
        let _lock = accounts_lock();
        admin("groupadd", &[&name], None);
        self.groups.push(name.clone());
        for member in members {
            admin("usermod", &["-a", "-G", &name, member], None);
        }
        name
    }

    /// A PAM policy file `/etc/pam.d/jhrs-test-<random>`; returns the service name.
    fn service(&mut self, policy: &str) -> String {
        let name = format!("jhrs-test-{}", token());
        let path = Path::new("/etc/pam.d").join(&name);
        std::fs::write(&path, policy).unwrap();
        self.services.push(path);
        name
    }

    /// An executable shell script in the scratch directory.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(
            &path,
            format!("#!/bin/sh\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\n{body}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for path in &self.services {
            if let Err(e) = std::fs::remove_file(path) {
                eprintln!("cleanup: cannot remove {}: {e}", path.display());
            }
        }
        let _lock = accounts_lock();
        for user in &self.users {
            let ok = Command::new("userdel")
                .args(["-r", "-f", user])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("cleanup: cannot remove user {user}");
            }
        }
        for group in &self.groups {
            let ok = Command::new("groupdel")
                .arg(group)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("cleanup: cannot remove group {group}");
            }
        }
    }
}

const UNIX_POLICY: &str = "auth required pam_unix.so\n\
                           account required pam_unix.so\n\
                           session required pam_unix.so\n";

fn authenticator(service: &str, tweak: impl FnOnce(&mut PamConfig)) -> PamAuthenticator {
    let mut config = PamConfig {
        service: service.to_owned(),
        ..PamConfig::default()
    };
    tweak(&mut config);
    PamAuthenticator::new(config).unwrap()
}

fn form(user: &str, password: &str) -> LoginForm {
    LoginForm {
        username: user.into(),
        password: password.into(),
        ..LoginForm::default()
    }
}

async fn login(a: &PamAuthenticator, user: &str, password: &str) -> Option<AuthModel> {
    match a.authenticate(&form(user, password)).await {
        Ok(answer) => answer,
        Err(e) => panic!("PAM error for {user}: {e:#}"),
    }
}

fn set<const N: usize>(names: [&str; N]) -> BTreeSet<String> {
    names.into_iter().map(str::to_owned).collect()
}

#[tokio::test]
async fn right_password_logs_in() {
    let mut s = Scratch::new();
    let password = format!("Right-{}", token());
    let user = s.user(&password);
    let service = s.service(UNIX_POLICY);
    let a = authenticator(&service, |_| {});
    let model = login(&a, &user, &password).await.unwrap();
    assert_eq!(model.name, user);
    assert_eq!(model.admin, None);
    assert_eq!(model.groups, None);
    assert!(!format!("{a:?}").contains(&password));
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let mut s = Scratch::new();
    let password = format!("Right-{}", token());
    let user = s.user(&password);
    let service = s.service(UNIX_POLICY);
    let a = authenticator(&service, |_| {});
    assert_eq!(login(&a, &user, "wrong-password").await, None);
    assert_eq!(login(&a, &user, &password.to_uppercase()).await, None);
    assert_eq!(login(&a, &user, "").await, None);
    let nobody = format!("jhrs_nobody_{}", token());
    assert_eq!(login(&a, &nobody, &password).await, None);
    // Names are passed to PAM as typed: the system name is case-sensitive.
    assert_eq!(login(&a, &user.to_uppercase(), &password).await, None);
}

#[tokio::test]
async fn account_check_refuses_expired_and_locked_accounts() {
    let mut s = Scratch::new();
    let password = format!("Right-{}", token());
    let expired = s.user(&password);
    let locked = s.user(&password);
    {
        let _lock = accounts_lock();
        admin("chage", &["-E", "0", &expired], None);
        admin("usermod", &["-L", &locked], None);
    }
    let service = s.service(UNIX_POLICY);
    let checking = authenticator(&service, |_| {});
    assert_eq!(login(&checking, &expired, &password).await, None);
    assert_eq!(login(&checking, &locked, &password).await, None);
    // The password is right: only the account check refuses the expired account.
    let unchecked = authenticator(&service, |c| c.check_account = false);
    assert!(login(&unchecked, &expired, &password).await.is_some());
    // A locked password cannot authenticate at all.
    assert_eq!(login(&unchecked, &locked, &password).await, None);
}

#[tokio::test]
async fn admin_groups_make_admins() {
    let mut s = Scratch::new();
    let password = format!("Right-{}", token());
    let member = s.user(&password);
    let other = s.user(&password);
    let admins = s.group(&[&member]);
    let service = s.service(UNIX_POLICY);
    let a = authenticator(&service, |c| c.admin_groups = set([admins.as_str()]));
    assert_eq!(
        login(&a, &member, &password).await.unwrap().admin,
        Some(true)
    );
    // With admin_groups set, everyone else is explicitly not an admin...
    assert_eq!(
        login(&a, &other, &password).await.unwrap().admin,
        Some(false)
    );
    // ...unless listed in admin_users (compared lower-cased).
    let listed = authenticator(&service, |c| {
        c.admin_groups = set([admins.as_str()]);
        c.admin_users = set([other.to_uppercase().as_str()]);
    });
    assert_eq!(
        login(&listed, &other, &password).await.unwrap().admin,
        Some(true)
    );
    // A wrong password stays wrong for admins.
    assert_eq!(login(&a, &member, "wrong-password").await, None);
    // The primary group counts too.
    let primary = authenticator(&service, |c| c.admin_groups = set([member.as_str()]));
    assert_eq!(
        login(&primary, &member, &password).await.unwrap().admin,
        Some(true)
    );
}

#[tokio::test]
async fn allowed_groups_exclude_non_members() {
    let mut s = Scratch::new();
    let password = format!("Right-{}", token());
    let member = s.user(&password);
    let outsider = s.user(&password);
    let boss = s.user(&password);
    let allowed = s.group(&[&member]);
    let admins = s.group(&[&boss]);
    let service = s.service(UNIX_POLICY);
    let a = authenticator(&service, |c| {
        c.allowed_groups = set([allowed.as_str()]);
        c.admin_groups = set([admins.as_str()]);
    });
    let model = login(&a, &member, &password).await.unwrap();
    assert_eq!(model.admin, Some(false));
    assert_eq!(login(&a, &outsider, &password).await, None);
    // Admins may always log in.
    assert_eq!(login(&a, &boss, &password).await.unwrap().admin, Some(true));
    // A group that does not exist lets nobody in.
    let ghost = authenticator(&service, |c| {
        c.allowed_groups = set(["jhrs_no_such_group_at_all"]);
    });
    assert_eq!(login(&ghost, &member, &password).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_logins_are_bounded() {
    let mut s = Scratch::new();
    let password = format!("Right-{}", token());
    let user = s.user(&password);
    // Each check runs a script that counts how many checks are inside PAM at the same time.
    let counter = s.path("inside");
    let peaks = s.path("peaks");
    let lock = s.path("lock");
    std::fs::write(&counter, "0\n").unwrap();
    let probe = s.script(
        "slow.sh",
        &format!(
            "exec 9>>'{lock}'\n\
             flock 9; n=$(( $(cat '{counter}') + 1 )); echo $n > '{counter}'; echo $n >> '{peaks}'; flock -u 9\n\
             sleep 0.2\n\
             flock 9; n=$(( $(cat '{counter}') - 1 )); echo $n > '{counter}'; flock -u 9\n\
             exit 0",
            lock = lock.display(),
            counter = counter.display(),
            peaks = peaks.display(),
        ),
    );
    let service = s.service(&format!(
        "auth required pam_exec.so quiet {}\n\
         auth required pam_unix.so nodelay\n\
         account required pam_unix.so\n",
        probe.display()
    ));
    let a = Arc::new(authenticator(&service, |c| c.max_concurrent = 8));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let a = Arc::clone(&a);
        let user = user.clone();
        let password = if i % 2 == 0 {
            password.clone()
        } else {
            "wrong-password".to_owned()
        };
        tasks.spawn(async move { (i, a.authenticate(&form(&user, &password)).await) });
    }
    let mut accepted = 0;
    let mut refused = 0;
    let all = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(joined) = tasks.join_next().await {
            let (i, answer) = joined.unwrap();
            match answer.unwrap() {
                Some(model) => {
                    assert_eq!(i % 2, 0, "wrong password accepted");
                    assert_eq!(model.name, user);
                    accepted += 1;
                }
                None => {
                    assert_eq!(i % 2, 1, "right password refused");
                    refused += 1;
                }
            }
        }
    })
    .await;
    assert!(all.is_ok(), "50 concurrent logins did not finish in 60 s");
    assert_eq!((accepted, refused), (25, 25));
    let seen: Vec<usize> = std::fs::read_to_string(&peaks)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(seen.len(), 50, "every login went through PAM once");
    let peak = seen.iter().copied().max().unwrap();
    assert!(peak <= 8, "{peak} PAM checks ran at once; the limit is 8");
    assert!(
        peak >= 2,
        "PAM checks did not run in parallel (peak {peak})"
    );
    // 50 checks of 0.2 s, 8 at a time, take at least 7 rounds.
    assert!(started.elapsed() >= Duration::from_millis(1200));
}

#[tokio::test]
async fn bad_usernames_never_reach_pam() {
    let mut s = Scratch::new();
    let calls = s.path("calls");
    let probe = s.script(
        "probe.sh",
        &format!("echo called >> '{}'\nexit 0", calls.display()),
    );
    let service = s.service(&format!(
        "auth required pam_exec.so quiet {}\n\
         auth required pam_permit.so\n\
         account required pam_permit.so\n",
        probe.display()
    ));
    let a = authenticator(&service, |_| {});
    let count = || {
        std::fs::read_to_string(&calls)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    // The probe works: a plausible name goes through PAM (which permits anything here).
    assert!(login(&a, "jhrs_probe", "any-password").await.is_some());
    assert_eq!(count(), 1);
    let huge = "u".repeat(1 << 20);
    let long = "v".repeat(257);
    for bad in [
        huge.as_str(),
        long.as_str(),
        "a\nb",
        "bell\u{7}",
        "nul\0name",
        "\u{1b}[2J",
        "",
    ] {
        assert_eq!(
            login(&a, bad, "any-password").await,
            None,
            "{}",
            loggable(bad)
        );
    }
    // Nor do unusable passwords.
    for bad in ["", "nul\0inside", &"p".repeat(9000)] {
        assert_eq!(login(&a, "jhrs_probe", bad).await, None);
    }
    assert_eq!(count(), 1, "PAM was called for a refused login");
    // 256 bytes is still allowed.
    assert!(login(&a, &"w".repeat(256), "any-password").await.is_some());
    assert_eq!(count(), 2);
}

#[tokio::test]
async fn broken_pam_setups_are_errors_not_wrong_passwords() {
    let mut s = Scratch::new();
    let password = format!("Right-{}", token());
    let user = s.user(&password);
    let missing_module = s.service("auth required pam_jhrs_no_such_module.so\n");
    let a = authenticator(&missing_module, |_| {});
    match a.authenticate(&form(&user, &password)).await {
        Err(AuthError::Failed(e)) => {
            let text = format!("{e:#}");
            assert!(text.contains(&missing_module), "{text}");
            assert!(!text.contains(&password), "{text}");
        }
        other => panic!("expected a PAM failure, got {other:?}"),
    }
}

#[tokio::test]
async fn sessions_open_and_close_only_when_asked() {
    let mut s = Scratch::new();
    let password = format!("Right-{}", token());
    let user = s.user(&password);
    let log = s.path("sessions");
    let probe = s.script(
        "session.sh",
        &format!(
            "echo \"$PAM_TYPE $PAM_USER\" >> '{}'\nexit 0",
            log.display()
        ),
    );
    let service = s.service(&format!(
        "auth required pam_unix.so\n\
         account required pam_unix.so\n\
         session required pam_exec.so quiet {}\n",
        probe.display()
    ));
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let off = authenticator(&service, |_| {});
    assert!(login(&off, &user, &password).await.is_some());
    assert_eq!(read(), "", "a session was opened with open_sessions off");
    let on = authenticator(&service, |c| c.open_sessions = true);
    assert!(login(&on, &user, &password).await.is_some());
    assert_eq!(
        read(),
        format!("open_session {user}\nclose_session {user}\n")
    );
    // No session for a refused login.
    assert_eq!(login(&on, &user, "wrong-password").await, None);
    assert_eq!(read().lines().count(), 2);
}

/// On a single-threaded runtime, other tasks keep running while PAM is busy.
#[tokio::test(flavor = "current_thread")]
async fn pam_runs_off_the_async_threads() {
    let mut s = Scratch::new();
    let probe = s.script("slow.sh", "sleep 1\nexit 0");
    let service = s.service(&format!(
        "auth required pam_exec.so quiet {}\n\
         auth required pam_permit.so\n\
         account required pam_permit.so\n",
        probe.display()
    ));
    let a = authenticator(&service, |_| {});
    let ticks = Arc::new(AtomicUsize::new(0));
    let ticker = {
        let ticks = Arc::clone(&ticks);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(50));
            loop {
                every.tick().await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    assert!(login(&a, "jhrs_slow", "any-password").await.is_some());
    ticker.abort();
    let n = ticks.load(Ordering::Relaxed);
    assert!(n >= 10, "only {n} ticks during a 1 s PAM check");
}

/// Captures what the authenticator logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends every log of this test binary to one buffer. Global, not scoped to a test: scoped
/// subscribers miss events whose call sites other test threads register first.
fn captured_logs() -> Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        captured
    })
    .clone()
}

#[tokio::test]
async fn logs_are_bounded_and_never_show_passwords() {
    let captured = captured_logs();
    let mut s = Scratch::new();
    let password = format!("Right-{}", token());
    let user = s.user(&password);
    let service = s.service(UNIX_POLICY);
    let missing_module = s.service("auth required pam_jhrs_no_such_module.so\n");
    let a = authenticator(&service, |_| {});
    let broken = authenticator(&missing_module, |_| {});
    let huge = format!("{}\n{}", "h".repeat(1 << 20), "forged log line");
    let wrong = format!("Wrong-{}", token());
    assert_eq!(login(&a, &huge, &password).await, None);
    assert_eq!(login(&a, &user, &wrong).await, None);
    assert!(login(&a, &user, &password).await.is_some());
    let long_valid = "q".repeat(256);
    assert_eq!(login(&a, &long_valid, &wrong).await, None);
    assert!(broken.authenticate(&form(&user, &wrong)).await.is_err());

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for line in text.lines() {
        assert!(line.len() <= 400, "{} bytes: {line:.200}", line.len());
        assert!(
            !line.contains(&password) && !line.contains(&wrong),
            "{line}"
        );
        assert!(!line.starts_with("forged"), "{line}");
    }
    let ours = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(ours("(1048592 bytes)"), 1, "{text}");
    assert_eq!(ours("(256 bytes)"), 1, "{text}");
    // Wrong password, accepted, broken service.
    assert_eq!(ours(&format!("username=\"{user}\"")), 3, "{text}");
    assert_eq!(ours(&missing_module), 1, "{text}");
}
