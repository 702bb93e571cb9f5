//! The quick start: `scripts/run-hub.sh`, the README's first command, run as a newcomer runs
//! it, then used as a newcomer would: open the page, log in with what the script printed,
//! get JupyterLab, run a cell (`1+1` in a kernel, over its websocket).
//!
//! The script builds release binaries and a venv with JupyterLab; here it is pointed at the
//! debug binaries (`JHRS_BIN_DIR`) and at the tests' JupyterLab venv (`JHRS_VENV`, the same
//! pinned packages), so that the test needs no release build and no second venv. Everything
//! else is the script's own: the configuration it writes, the login it sets up, the hub with
//! its managed proxy and the default server command.
//!
//! - As root: PAM (a throwaway system user logs in with its password, and its server runs as
//!   that user); and `--shared-password`, where the password is the one printed and a new
//!   username becomes a system account.
//! - Not as root: the shared password, with servers running as this account.
//!
//! A second run on the same directory keeps the configuration and its password.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use reqwest::StatusCode;
use workspace_tests::accounts::{Accounts, SystemUser, is_root, random_suffix};
use workspace_tests::bins;
use workspace_tests::browser::{Browser, describe};
use workspace_tests::flows::{follow_through_spawn, log_in};
use workspace_tests::hubproc::Deadline;
use workspace_tests::{free_port, kernel, procs};

type TestResult = anyhow::Result<()>;

/// From the login to JupyterLab's page (a debug hub on a busy machine).
const START_WITHIN: Duration = Duration::from_secs(120);

/// `scripts/run-hub.sh` running in the background (after its checks it becomes the hub).
struct QuickStart {
    child: Option<Child>,
    log: std::path::PathBuf,
    port: u16,
}

impl QuickStart {
    /// Runs the script with `args` and `--home home`, on free ports, and waits until the hub
    /// answers through its proxy.
    async fn run(home: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let port = free_port();
        let log = home.join(format!("run-hub-{}.log", random_suffix()));
        let out = std::fs::File::create(&log)?;
        let debug_bins = bins::hub()
            .parent()
            .context("the hub binary has no directory")?
            .to_path_buf();
        let child = Command::new("bash")
            .arg(bins::workspace_root().join("scripts").join("run-hub.sh"))
            .arg("--home")
            .arg(home)
            .args(["--port", &port.to_string()])
            .args(["--hub-port", &free_port().to_string()])
            .args(["--api-port", &free_port().to_string()])
            .args(args)
            .env("JHRS_BIN_DIR", &debug_bins)
            .env("JHRS_VENV", bins::lab_venv())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .context("running scripts/run-hub.sh")?;
        let mut run = Self {
            child: Some(child),
            log,
            port,
        };
        run.wait_up().await?;
        Ok(run)
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_up(&mut self) -> TestResult {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let url = format!("http://127.0.0.1:{}/hub/api/", self.port);
        let deadline = Deadline::new("the quick start's hub to answer", Duration::from_secs(90));
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("run-hub.sh exited with {status}:\n{}", self.output());
            }
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
            {
                return Ok(());
            }
            if let Err(e) = deadline.tick().await {
                bail!("{e}\n{}", self.output());
            }
        }
    }

    /// What the script printed after `label` on one line (the password).
    fn printed(&self, label: &str) -> anyhow::Result<String> {
        let output = self.output();
        output
            .lines()
            .find_map(|l| l.split_once(label).map(|(_, v)| v.trim().to_owned()))
            .with_context(|| format!("the script printed no {label:?}:\n{output}"))
    }

    /// Stops the hub (SIGTERM, as Ctrl-C would) and checks that it exits cleanly.
    async fn stop(&mut self) -> TestResult {
        let mut child = self.child.take().context("not running")?;
        kill(Pid::from_raw(i32::try_from(child.id())?), Signal::SIGTERM)?;
        let deadline = Deadline::new("the quick start's hub to exit", Duration::from_secs(60));
        loop {
            if let Some(status) = child.try_wait()? {
                ensure!(
                    status.success(),
                    "the hub exited with {status}:\n{}",
                    self.output()
                );
                return Ok(());
            }
            if let Err(e) = deadline.tick().await {
                let _ = killpg(Pid::from_raw(i32::try_from(child.id())?), Signal::SIGKILL);
                let _ = child.wait();
                bail!("{e}\n{}", self.output());
            }
        }
    }
}

impl Drop for QuickStart {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if std::thread::panicking() {
            eprintln!("----- run-hub.sh output -----\n{}", self.output());
        }
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().ok().flatten().is_none() {
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// A home directory for the script that every account can search (its parent is `/tmp`).
fn home_dir() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("jhrs-quick-start-")
        .tempdir()?;
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    Ok(dir)
}

/// `user` logs in with `password`, gets JupyterLab's page from a new server, and runs `1+1`.
async fn log_in_and_run_a_cell(port: u16, user: &str, password: &str) -> TestResult {
    let mut browser = Browser::new(user, port);
    let post = log_in(&mut browser, user, password, None).await?;
    let hops = follow_through_spawn(&mut browser, user, post, START_WITHIN).await?;
    let page = hops.last().context("no hops")?;
    ensure!(
        page.status == StatusCode::OK
            && page.url.path() == format!("/user/{user}/lab")
            && page.body.contains("\"appName\": \"JupyterLab\""),
        "the login should end at JupyterLab's page:\n{}\n{:.500}",
        describe(&hops),
        page.body
    );
    let prefix = format!("/user/{user}/");
    let id = kernel::start_kernel(&mut browser, &prefix).await?;
    let mut socket = kernel::connect(&browser, &prefix, &id).await?;
    socket.kernel_info().await?;
    let done = socket.execute("1+1").await?;
    ensure!(
        done.result.as_deref() == Some("2") && done.status == "ok",
        "1+1 gave {done:?}"
    );
    socket.close().await;
    Ok(())
}

/// Checks that `user`'s server runs as `account`.
fn check_runs_as(user: &str, account: &SystemUser) -> TestResult {
    let shims: Vec<i32> = procs::all()
        .into_iter()
        .filter(|p| p.running() && p.uid == Some(account.uid))
        .map(|p| p.pid)
        .filter(|&pid| {
            procs::cmdline(pid).is_some_and(|c| {
                c.split(' ')
                    .next()
                    .is_some_and(|program| program.ends_with("/singleuser-auth-shim"))
            })
        })
        .collect();
    ensure!(
        shims.len() == 1,
        "{user}'s server (singleuser-auth-shim) should run as uid {}: {shims:?}",
        account.uid
    );
    Ok(())
}

/// As root, with no option: PAM. A system user logs in with its password; its server runs
/// as that user. A second run keeps the configuration.
#[tokio::test]
async fn quick_start_with_pam_as_root() -> TestResult {
    if !is_root() {
        eprintln!("SKIPPED: PAM logins of other users need root (CI runs as root)");
        return Ok(());
    }
    let mut accounts = Accounts::new();
    let password = format!("Pw-{}-{}", random_suffix(), random_suffix());
    let carol = accounts.user("jhrs_q", Some(&password))?;
    let home = home_dir()?;
    let mut run = QuickStart::run(home.path(), &[]).await?;
    ensure!(
        run.output()
            .contains("Log in with a system account's username and password"),
        "{}",
        run.output()
    );
    let config = std::fs::read_to_string(home.path().join("hub/jupyterhub_config.toml"))?;
    ensure!(
        config.contains("class = \"pam\""),
        "the PAM mode's config:\n{config}"
    );
    // Through the PAM service of the script's configuration (the default, `login`).
    log_in_and_run_a_cell(run.port, &carol.name, &password).await?;
    check_runs_as(&carol.name, &carol)?;
    run.stop().await?;

    // Again on the same directory: the configuration is kept, the hub comes back.
    let mut again = QuickStart::run(home.path(), &[]).await?;
    ensure!(
        again.output().contains("(kept)"),
        "the second run should keep the configuration:\n{}",
        again.output()
    );
    let mut browser = Browser::new(&carol.name, again.port);
    log_in(&mut browser, &carol.name, &password, Some("/hub/home")).await?;
    again.stop().await
}

/// The shared password the script prints lets a new user in: as root with
/// `--shared-password`, the user becomes a system account (and the script says so); not as
/// root, the server runs as this account. A second run prints the same password.
#[tokio::test]
async fn quick_start_with_the_printed_shared_password() -> TestResult {
    let mut accounts = is_root().then(Accounts::new);
    let home = home_dir()?;
    let args: &[&str] = if is_root() {
        &["--shared-password"]
    } else {
        &[]
    };
    let user = format!("jhrs_w_{}", random_suffix());
    if let Some(accounts) = &mut accounts {
        // The hub creates it; it goes with the test's accounts.
        accounts.remove_later(&user);
    }
    let mut run = QuickStart::run(home.path(), args).await?;
    let password = run.printed("Log in with any username and the password:")?;
    ensure!(password.len() >= 8, "a short password: {password:?}");
    if is_root() {
        ensure!(
            run.output()
                .contains("each new username becomes a system account"),
            "the script must say that accounts are created:\n{}",
            run.output()
        );
    }
    // A wrong password is refused.
    let mut stranger = Browser::new(&user, run.port);
    let refused =
        workspace_tests::flows::submit_login(&mut stranger, &user, "not-the-password", None)
            .await?;
    ensure!(
        refused.status == StatusCode::FORBIDDEN,
        "{refused}: a wrong password must be refused"
    );
    log_in_and_run_a_cell(run.port, &user, &password).await?;
    if let Some(accounts) = &mut accounts {
        let account = accounts.adopt(&user)?;
        check_runs_as(&user, &account)?;
    }
    // A system account's name is refused (it exists: a server would run as it).
    if is_root() {
        let mut daemon = Browser::new("daemon", run.port);
        let refused =
            workspace_tests::flows::submit_login(&mut daemon, "daemon", &password, None).await?;
        ensure!(
            refused.status == StatusCode::FORBIDDEN,
            "{refused}: the system account daemon must not log in with the shared password"
        );
    }
    run.stop().await?;

    let mut again = QuickStart::run(home.path(), args).await?;
    let second = again.printed("Log in with any username and the password:")?;
    ensure!(
        second == password,
        "the second run printed another password: {second:?} (first: {password:?})"
    );
    let mut browser = Browser::new(&user, again.port);
    log_in(&mut browser, &user, &password, Some("/hub/home")).await?;
    again.stop().await
}
