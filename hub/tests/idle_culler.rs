//! The real `jupyterhub-idle-culler` 2.0.0 against our hub (hub-protocol §8.2): it must find
//! idle servers through `GET /users?state=ready`, stop them with `DELETE …/server`, leave
//! active ones alone, and with `--cull-users` delete idle users.
//!
//! The culler comes from the venv that `scripts/python-test-env.sh` creates (and creates on
//! first use). It has no one-shot mode, so it runs with `--cull-every=1` and is killed once the
//! outcome is seen, or after a deadline.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeDelta, Utc};
use common::{Persona, TestHub};
use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
use hub::db::models::users;
use hub::db::schema;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The culler service's token (from the config below).
const CULLER_TOKEN: &str = "culler-token-0123456789abcdef";

/// How long the culler gets to reach the expected outcome.
const DEADLINE: Duration = Duration::from_secs(60);

/// The culler as a service with the scopes its README asks for, plus named servers (to check
/// `DELETE …/servers/{name}` with `{"remove": true}`).
const SERVERS_CONFIG: &str = r#"[hub]
allow_named_servers = true
[[services]]
name = "culler"
api_token = "culler-token-0123456789abcdef"
[[roles]]
name = "idle-culler"
scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
services = ["culler"]
"#;

/// The culler's role with `admin:users` added, which `--cull-users` needs.
const USERS_CONFIG: &str = r#"[[services]]
name = "culler"
api_token = "culler-token-0123456789abcdef"
[[roles]]
name = "idle-culler"
scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers", "admin:users"]
services = ["culler"]
"#;

/// The venv holding the culler: `scripts/python-test-env.sh` creates it when missing and
/// prints its path. Failing to get it fails the test; skipping would hide a broken setup.
fn venv() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let path = common::manifest_dir().join("../scripts/python-test-env.sh");
        let script = path.display();
        let out = std::process::Command::new("bash")
            .arg(&path)
            .arg("test")
            .env("CI", "true")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
        assert!(
            out.status.success(),
            "the Python venv with jupyterhub-idle-culler is missing and `{script} test` could \
             not create it ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(
            path.join("bin/python").exists(),
            "{script} printed {path:?}, which has no bin/python"
        );
        path
    })
    .clone()
}

/// A running culler; killed on drop. Its log (stderr and stdout) goes to a file.
struct Culler {
    child: tokio::process::Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Culler {
    /// Starts `python -m jupyterhub_idle_culler` against `hub`, with `args` after the common
    /// ones (`--url`, `--timeout=60`, `--cull-every=1`, debug logging).
    fn start(hub: &TestHub, args: &[&str]) -> Culler {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("culler.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = tokio::process::Command::new(venv().join("bin/python"))
            .args(["-m", "jupyterhub_idle_culler"])
            .arg(format!("--url={}", hub.api_url("")))
            .args([
                "--timeout=60",
                "--cull-every=1",
                "--IdleCuller.log_level=DEBUG",
            ])
            .args(args)
            .env("JUPYTERHUB_API_TOKEN", CULLER_TOKEN)
            .env_remove("JUPYTERHUB_API_URL")
            // It reads `idle_culler_config.py` from its working directory, if there is one.
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("start the idle culler");
        Culler {
            child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many cull cycles have listed the running servers' users so far.
    fn cycles(&self) -> usize {
        self.log().matches("users with ready servers").count()
    }

    /// Panics with the culler's log if it has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("culler status") {
            panic!("the idle culler exited ({status}):\n{}", self.log());
        }
    }

    /// Waits until `done` holds, checking every 200 ms; panics with `what` and the culler's log
    /// after [`DEADLINE`].
    async fn wait_for<F, Fut>(&mut self, what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let started = Instant::now();
        loop {
            if done().await {
                return;
            }
            self.assert_running();
            assert!(
                started.elapsed() < DEADLINE,
                "timed out after {DEADLINE:?} waiting for {what}; culler log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `n` cycles that started after this call have finished.
    async fn wait_cycles(&mut self, n: usize) {
        let start = self.cycles();
        // A cycle logs its listing line before it acts, and the next cycle starts only when it
        // is done; so the line of cycle `start + n + 1` marks the end of cycle `start + n`.
        let target = start + n + 1;
        let what = format!("{} more cull cycles", n + 1);
        let log = self.log.clone();
        let count = move || {
            let log = log.clone();
            async move {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .matches("users with ready servers")
                    .count()
                    >= target
            }
        };
        self.wait_for(&what, count).await;
    }

    /// Stops the culler and checks that no cycle logged an error (any non-2xx reply from the
    /// hub, or a model the culler could not read, is logged at error level).
    async fn finish(mut self) {
        self.assert_running();
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let log = self.log();
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("[E ") || l.contains("Traceback"))
            .collect();
        assert!(
            errors.is_empty(),
            "the idle culler logged errors: {errors:#?}\nfull log:\n{log}"
        );
    }
}

/// Sets `last_activity` in the database, bypassing the API (which only moves it forward): of
/// the user when `server` is `None`, else of that server.
async fn set_last_activity(hub: &TestHub, user: &str, server: Option<&str>, at: NaiveDateTime) {
    let (user, server) = (user.to_owned(), server.map(str::to_owned));
    hub.state
        .db
        .run(move |conn| {
            let u = users::find_by_name(conn, &user)?.expect("user");
            let changed = match &server {
                None => diesel::update(schema::users::table.find(u.id))
                    .set(schema::users::last_activity.eq(at))
                    .execute(conn)?,
                Some(name) => diesel::update(
                    schema::spawners::table
                        .filter(schema::spawners::user_id.eq(u.id))
                        .filter(schema::spawners::name.eq(name)),
                )
                .set(schema::spawners::last_activity.eq(at))
                .execute(conn)?,
            };
            assert_eq!(changed, 1, "no row for {user} {server:?}");
            Ok(())
        })
        .await
        .expect("set last_activity");
}

fn ago(seconds: i64) -> NaiveDateTime {
    (Utc::now() - TimeDelta::seconds(seconds)).naive_utc()
}

/// Starts a server (`""` for the default) as `admin` and checks it is ready.
async fn start_server(hub: &TestHub, admin: &Persona, user: &str, server: &str) {
    let path = if server.is_empty() {
        format!("/users/{user}/server")
    } else {
        format!("/users/{user}/servers/{server}")
    };
    let (status, body) = hub.post(&path, Some(admin), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "POST {path}: {body}");
    let (status, model) = hub.get(&format!("/users/{user}"), Some(admin)).await;
    assert_eq!(status, StatusCode::OK, "GET /users/{user}: {model}");
    assert_eq!(
        model["servers"][server]["ready"], true,
        "{user}/{server} not ready after POST {path}: {model}"
    );
}

/// The user model (`None` once the user is gone).
async fn user_model(hub: &TestHub, admin: &Persona, user: &str) -> Option<Value> {
    let (status, model) = hub.get(&format!("/users/{user}"), Some(admin)).await;
    match status {
        StatusCode::OK => Some(model),
        StatusCode::NOT_FOUND => None,
        other => panic!("GET /users/{user}: {other} {model}"),
    }
}

/// Whether `user` has `server` running (present in the model's `servers`, ready, not pending).
async fn is_running(hub: &TestHub, admin: &Persona, user: &str, server: &str) -> bool {
    let Some(model) = user_model(hub, admin, user).await else {
        return false;
    };
    let s = &model["servers"][server];
    s.is_object() && s["ready"] == true && s["pending"].is_null()
}

/// Whether `user`'s `server` is stopped and not pending (for the default server, also the
/// model's `server` field).
async fn is_stopped(hub: &TestHub, admin: &Persona, user: &str, server: &str) -> bool {
    let Some(model) = user_model(hub, admin, user).await else {
        return false;
    };
    let listed = model["servers"]
        .as_object()
        .is_some_and(|s| s.contains_key(server));
    !listed && (!server.is_empty() || (model["server"].is_null() && model["pending"].is_null()))
}

hub_test!(
    culls_idle_servers_only,
    config = SERVERS_CONFIG,
    |hub| async move {
        let admin = hub.user("admin", true).await;
        for name in ["idle", "busy"] {
            hub.user(name, false).await;
            start_server(hub, &admin, name, "").await;
        }
        start_server(hub, &admin, "idle", "lab").await;
        start_server(hub, &admin, "busy", "lab").await;
        assert_eq!(hub.spawner.running(), 4);

        // `idle` last reported two hours ago; `busy` reports now, as a server does.
        set_last_activity(hub, "idle", Some(""), ago(7200)).await;
        set_last_activity(hub, "idle", Some("lab"), ago(7200)).await;
        let now = Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let (status, body) = hub
            .post(
                "/users/busy/activity",
                Some(&admin),
                json!({"servers": {"": {"last_activity": now}, "lab": {"last_activity": now}},
                       "last_activity": now}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let mut culler = Culler::start(hub, &["--remove-named-servers=true"]);
        let a = &admin;
        culler
            .wait_for("idle's servers to be stopped", || async move {
                is_stopped(hub, a, "idle", "").await && is_stopped(hub, a, "idle", "lab").await
            })
            .await;
        // Another full cycle must leave the active servers alone.
        culler.wait_cycles(1).await;
        culler.finish().await;

        assert!(
            is_running(hub, &admin, "busy", "").await,
            "busy's server was culled"
        );
        assert!(
            is_running(hub, &admin, "busy", "lab").await,
            "busy/lab was culled"
        );
        assert_eq!(hub.spawner.running(), 2, "exactly busy's two servers run");

        // Without --cull-users nobody is deleted. `--remove-named-servers` removed idle/lab.
        assert!(
            user_model(hub, &admin, "idle").await.is_some(),
            "idle deleted"
        );
        let (status, body) = hub.get("/users/idle/servers/lab", Some(&admin)).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "idle/lab not removed: {body}"
        );
        let (status, body) = hub.get("/users/idle/server", Some(&admin)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["ready"], false, "{body}");
    }
);

hub_test!(culls_idle_users, config = USERS_CONFIG, |hub| async move {
    let admin = hub.user("admin", true).await;
    for name in ["gone", "fresh"] {
        hub.user(name, false).await;
        start_server(hub, &admin, name, "").await;
    }
    hub.user("stale", false).await;
    hub.user("quiet", false).await;

    // `gone`: server and user idle for two hours; `stale`: no server, idle for a day;
    // `quiet`: no server, active ten seconds ago; `fresh`: running and just started.
    set_last_activity(hub, "gone", Some(""), ago(7200)).await;
    set_last_activity(hub, "gone", None, ago(7200)).await;
    set_last_activity(hub, "stale", None, ago(86_400)).await;
    set_last_activity(hub, "quiet", None, ago(10)).await;

    let mut culler = Culler::start(hub, &["--cull-users=true"]);
    let a = &admin;
    culler
        .wait_for("users gone and stale to be deleted", || async move {
            user_model(hub, a, "gone").await.is_none()
                && user_model(hub, a, "stale").await.is_none()
        })
        .await;
    culler.wait_cycles(1).await;
    culler.finish().await;

    for name in ["fresh", "quiet", "admin"] {
        assert!(
            user_model(hub, &admin, name).await.is_some(),
            "{name} was deleted"
        );
    }
    assert!(
        is_running(hub, &admin, "fresh", "").await,
        "fresh's server was culled"
    );
    assert_eq!(
        hub.spawner.running(),
        1,
        "gone's server stopped, fresh's runs"
    );
});
