//! End to end on a real Slurm cluster: the `hub` binary with `spawner.class = "slurm"`, its
//! `chp-proxy`, the single-node cluster of `scripts/slurm-test-cluster.sh` (started on first
//! use), and in the job the real `batchspawner-singleuser` wrapping the real
//! `jupyterhub-singleuser` (from the venv of `scripts/python-test-env.sh singleuser`). The
//! wrapper reports its port to the hub's `POST /hub/api/batchspawner`, as at a real site.
//!
//! One user's server life: started through the REST API as a Slurm job under the user's
//! system account; reached by a browser through the proxy (login form, the server's OAuth
//! round trip through the hub); found again by a restarted hub; stopped, which cancels the
//! job. Another user's job fails before its server starts, and the API says why, with
//! Slurm's own reason.
//!
//! Needs root (system accounts, Slurm as the users). Run `cargo build -p hub -p chp-proxy`
//! first (or set `HUB_BIN`, `CHP_PROXY_BIN`).

use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use workspace_tests::accounts::{Accounts, SystemUser};
use workspace_tests::bins;
use workspace_tests::browser::{Browser, describe, form_field};
use workspace_tests::hubproc::{Deadline, Hub, hello_text};

type TestResult = anyhow::Result<()>;

/// From the start request to a ready server: queueing, the job starting, the real server
/// starting inside it (a debug hub on a busy 2-core machine).
const START_WITHIN: Duration = Duration::from_secs(120);

/// Starts the test cluster once (the script returns at once when it already runs).
fn slurm_cluster() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let script = bins::workspace_root()
            .join("scripts")
            .join("slurm-test-cluster.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} start failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Cancels every job of the given users when dropped, whatever the test did.
struct CancelJobs(Vec<String>);

impl Drop for CancelJobs {
    fn drop(&mut self) {
        for user in &self.0 {
            let _ = Command::new("scancel").args(["--user", user]).output();
        }
    }
}

fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The ids of `user`'s jobs that Slurm has queued or running.
fn active_jobs(user: &str) -> anyhow::Result<Vec<String>> {
    let text = output(
        "squeue",
        &[
            "-h",
            "-u",
            user,
            "-t",
            "PENDING,RUNNING,CONFIGURING",
            "-o",
            "%i",
        ],
    )?;
    Ok(text.split_whitespace().map(str::to_owned).collect())
}

/// What `scontrol show job --oneliner` says about a job.
fn job_info(id: &str) -> anyhow::Result<String> {
    output("scontrol", &["show", "job", "--oneliner", id])
}

fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

/// Logs `user` in through the form (the dummy authenticator takes any password).
async fn log_in(browser: &mut Browser, user: &str) -> TestResult {
    let page = browser.get("/hub/login").await?;
    ensure!(page.status == StatusCode::OK, "{page}: the login page");
    let xsrf = form_field(&page.body, "_xsrf").context("the login form has no _xsrf")?;
    let post = browser
        .post_form(
            "/hub/login",
            &[
                ("_xsrf", xsrf.as_str()),
                ("username", user),
                ("password", "any"),
            ],
        )
        .await?;
    ensure!(
        post.status.is_redirection(),
        "{post}: a successful login redirects\n{:.500}",
        post.body
    );
    Ok(())
}

/// Visits `/user/<user>/files/hello.txt` through the proxy (and the server's OAuth round trip
/// through the hub) and checks the file comes back.
async fn read_hello(browser: &mut Browser, user: &str) -> TestResult {
    let hops = browser
        .visit(&format!("/user/{user}/files/hello.txt"))
        .await?;
    let last = hops.last().context("no response")?;
    ensure!(
        last.status == StatusCode::OK && last.body == hello_text(user),
        "the server's file through the proxy:\n{}\n{:.500}",
        describe(&hops),
        last.body
    );
    Ok(())
}

#[tokio::test]
async fn a_slurm_server_through_the_real_hub_proxy_and_restart() -> TestResult {
    let mut accounts = Accounts::new();
    slurm_cluster();
    let venv = bins::singleuser_venv();
    let wrapper = venv.join("bin").join("batchspawner-singleuser");
    ensure!(
        wrapper.is_file(),
        "{} is missing: scripts/python-test-env.sh singleuser installs batchspawner",
        wrapper.display()
    );
    let alice = accounts.user("slurma", None)?;
    let bob = accounts.user("slurmb", None)?;
    let _cleanup = CancelJobs(vec![alice.name.clone(), bob.name.clone()]);
    let node = output("hostname", &["-s"])?.trim().to_owned();

    let extra = format!(
        r#"
[hub]
cleanup_servers = false

[spawner]
class = "slurm"
start_timeout = 150
http_timeout = 60

[spawner.batch]
wrapper = [{wrapper:?}]
status_interval = 0.5
# Lets the test make a job fail before its server starts.
options = {{ prologue = "exit [1-9]" }}
"#,
        wrapper = wrapper.display().to_string(),
    );
    let mut hub = Hub::start(&extra).await?;
    hub.create_users(&[&alice.name, &bob.name]).await?;
    hub.prepare_notebook_dir(&alice.name, Some(&alice))?;

    // Started through the REST API, with the user's own token.
    let token = hub.token_for(&alice.name).await?;
    let (status, body) = hub
        .api(
            Method::POST,
            &format!("/users/{}/server", alice.name),
            Some(&token),
            None,
        )
        .await?;
    ensure!(
        status == StatusCode::CREATED || status == StatusCode::ACCEPTED,
        "starting: {status} {body}"
    );
    hub.wait_server_ready(&alice.name, START_WITHIN).await?;

    // Slurm runs it as the user's job, named after the server, on this node.
    let jobs = active_jobs(&alice.name)?;
    ensure!(jobs.len() == 1, "one job of {}: {jobs:?}", alice.name);
    let job = jobs[0].clone();
    let info = job_info(&job)?;
    ensure!(
        field(&info, "JobState") == Some("RUNNING"),
        "the job runs: {info}"
    );
    ensure!(
        field(&info, "UserId") == Some(format!("{}({})", alice.name, alice.uid).as_str()),
        "the job is the user's: {info}"
    );
    ensure!(
        field(&info, "JobName") == Some(format!("jupyterhub-{}", alice.name).as_str()),
        "{info}"
    );
    // The proxy sends the user's URL to the node, at the port the server reported.
    let target = hub
        .wait_route(
            &format!("/user/{}", alice.name),
            true,
            Duration::from_secs(10),
        )
        .await?
        .context("a route without a target")?;
    ensure!(
        target.starts_with(&format!("http://{node}:")),
        "the route goes to the job's node {node}: {target}"
    );
    ensure!(
        hub.log().contains("the server reported its port"),
        "the port came through POST /hub/api/batchspawner"
    );

    // A browser logs in and reaches the server through the proxy.
    let mut browser = Browser::new(&alice.name, hub.public_port);
    log_in(&mut browser, &alice.name).await?;
    read_hello(&mut browser, &alice.name).await?;

    // The hub restarts; the job keeps running and the new hub finds it.
    hub.terminate(Duration::from_secs(60)).await?;
    ensure!(
        field(&job_info(&job)?, "JobState") == Some("RUNNING"),
        "the job outlives the hub"
    );
    hub.start_again().await?;
    hub.wait_server_ready(&alice.name, Duration::from_secs(60))
        .await?;
    hub.wait_route(
        &format!("/user/{}", alice.name),
        true,
        Duration::from_secs(30),
    )
    .await?;
    read_hello(&mut browser, &alice.name).await?;
    ensure!(
        active_jobs(&alice.name)? == [job.clone()],
        "still the same job after the restart"
    );

    // Stopping the server cancels the job.
    let (status, body) = hub
        .api(
            Method::DELETE,
            &format!("/users/{}/server", alice.name),
            Some(&token),
            None,
        )
        .await?;
    ensure!(
        status == StatusCode::NO_CONTENT || status == StatusCode::ACCEPTED,
        "stopping: {status} {body}"
    );
    let deadline = Deadline::new("the server to stop", Duration::from_secs(60));
    while hub.default_server(&alice.name).await?.is_some() {
        deadline.tick().await?;
    }
    ensure!(
        active_jobs(&alice.name)?.is_empty(),
        "no job of {} left",
        alice.name
    );
    ensure!(
        field(&job_info(&job)?, "JobState") == Some("CANCELLED"),
        "{}",
        job_info(&job)?
    );
    hub.wait_route(
        &format!("/user/{}", alice.name),
        false,
        Duration::from_secs(10),
    )
    .await?;

    // A job that fails before its server starts: the start fails with Slurm's reason.
    failing_job(&hub, &bob).await?;
    hub.done();
    Ok(())
}

async fn failing_job(hub: &Hub, bob: &SystemUser) -> TestResult {
    let token = hub.token_for(&bob.name).await?;
    let path = format!("/users/{}/server", bob.name);
    let (status, body) = hub
        .api(
            Method::POST,
            &path,
            Some(&token),
            Some(&json!({"prologue": "exit 3"})),
        )
        .await?;
    let message = if status == StatusCode::ACCEPTED {
        // Slower than the hub's 10 s wait: the failure is on the progress stream.
        let (_, progress) = hub
            .api(Method::GET, &format!("{path}/progress"), Some(&token), None)
            .await?;
        match progress {
            Value::String(events) => events,
            other => other.to_string(),
        }
    } else {
        ensure!(
            status == StatusCode::INTERNAL_SERVER_ERROR,
            "a failed start: {status} {body}"
        );
        body["message"].as_str().unwrap_or_default().to_owned()
    };
    ensure!(
        message.contains("ended before the server started")
            && message.contains("state FAILED")
            && message.contains("reason NonZeroExitCode")
            && message.contains("exit code 3:0"),
        "the failure says what Slurm says: {message}"
    );
    ensure!(hub.default_server(&bob.name).await?.is_none());
    ensure!(active_jobs(&bob.name)?.is_empty());
    Ok(())
}
