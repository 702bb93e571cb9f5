//! The shim under the reference JupyterHub 6.1.1 (Python), in place of
//! `jupyterhub-singleuser`: JupyterHub's own spawner starts it, JupyterHub's readiness check,
//! OAuth provider, `GET /hub/api/user`, activity endpoint and logout deal with it, with
//! `chp-proxy` as JupyterHub's proxy. This is the check that the hub sees the shim exactly as it
//! sees `jupyterhub-singleuser`.
//!
//! Needs JupyterHub 6.1.1 from a venv of `scripts/python-test-env.sh` (`bench`:
//! `$JHRS_CACHE/venv`, or `singleuser`: `$JHRS_SINGLEUSER_VENV`) and `cargo build -p chp-proxy`;
//! without them these tests say so and pass without running.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::header;
use serde_json::{Value, json};

use crate::common::*;
use crate::real_hub::{binary, python};

const SERVICE_TOKEN: &str = "reference-service-token-0123456789";

fn jupyterhub() -> Option<PathBuf> {
    let cache = std::env::var("JHRS_CACHE").map_or_else(
        |_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/jupyterhub-rs")
        },
        PathBuf::from,
    );
    let singleuser = std::env::var("JHRS_SINGLEUSER_VENV")
        .unwrap_or_else(|_| "/var/tmp/jupyterhub-rs/venv-singleuser".into());
    // Both venvs hold JupyterHub 6.1.1.
    let candidates = [
        cache.join("venv/bin/jupyterhub"),
        PathBuf::from(singleuser).join("bin/jupyterhub"),
    ];
    let found = candidates.iter().find(|p| p.is_file()).cloned();
    if found.is_none() {
        eprintln!(
            "SKIPPED: no JupyterHub 6.1.1 at {candidates:?} (run scripts/python-test-env.sh bench)"
        );
    }
    found
}

struct Reference {
    child: Child,
    dir: tempfile::TempDir,
    public: u16,
    hub_port: u16,
    http: reqwest::Client,
}

impl Drop for Reference {
    fn drop(&mut self) {
        // SIGTERM: JupyterHub stops its servers and its proxy.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("hub.log")).unwrap_or_default();
            eprintln!("--- JupyterHub log ---\n{log}");
        }
    }
}

impl Reference {
    async fn start(shim_args: &[&str]) -> Option<Self> {
        let jupyterhub = jupyterhub()?;
        let Some(chp) = binary("CHP_PROXY_BIN", "chp-proxy") else {
            eprintln!("SKIPPED: build chp-proxy first: cargo build -p chp-proxy");
            return None;
        };
        let dir = tempdir();
        let (public, hub_port, api) = (free_port(), free_port(), free_port());
        let mut cmd = vec![
            SHIM.to_owned(),
            "--command".to_owned(),
            format!("{} {} --port {{port}}", python(), echo_app()),
        ];
        cmd.extend(shim_args.iter().map(|a| (*a).to_owned()));
        let config = format!(
            r#"
c.JupyterHub.bind_url = "http://127.0.0.1:{public}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.command = [{chp:?}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api}"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
# Servers run as this account (no system users needed).
c.JupyterHub.spawner_class = "simple"
c.Spawner.cmd = {cmd}
c.JupyterHub.services = [{{"name": "tester", "api_token": "{SERVICE_TOKEN}"}}]
c.JupyterHub.load_roles = [{{
    "name": "tester",
    "scopes": ["admin:users", "admin:servers", "tokens", "access:servers"],
    "services": ["tester"],
}}]
"#,
            chp = chp.display().to_string(),
            cmd = serde_json::to_string(&cmd).unwrap(),
        );
        std::fs::write(dir.path().join("jupyterhub_config.py"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("hub.log")).unwrap();
        let child = Command::new(jupyterhub)
            .arg("-f")
            .arg(dir.path().join("jupyterhub_config.py"))
            .current_dir(dir.path())
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env(
                "HOME",
                std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
            )
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let hub = Self {
            child,
            dir,
            public,
            hub_port,
            http: client(),
        };
        let up = eventually(Duration::from_secs(60), async || {
            hub.http
                .get(hub.public_url("/hub/api/"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(up, "JupyterHub did not come up");
        Some(hub)
    }

    fn public_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.public)
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(
                method,
                format!("http://127.0.0.1:{}/hub/api{path}", self.hub_port),
            )
            .header(header::AUTHORIZATION, format!("token {SERVICE_TOKEN}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn start_alices_server(&self) -> Value {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                "/users",
                Some(json!({"usernames": ["alice", "bob"]})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = self
            .api(reqwest::Method::POST, "/users/alice/server", None)
            .await;
        assert!(status == 201 || status == 202, "{status} {body}");
        let mut last = Value::Null;
        let ready = eventually(Duration::from_secs(60), async || {
            last = self.api(reqwest::Method::GET, "/users/alice", None).await.1;
            last["servers"][""]["ready"] == true
        })
        .await;
        assert!(ready, "never ready: {last}");
        last["servers"][""].clone()
    }

    async fn token_for(&self, user: &str) -> String {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                &format!("/users/{user}/tokens"),
                Some(json!({"note": "shim test"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }
}

fn browser_for(hub: &Reference) -> Browser {
    Browser {
        http: client(),
        jar: Jar::default(),
        hub_origin: hub.public_url(""),
        shim_origin: hub.public_url(""),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jupyterhub_6_1_1_runs_the_shim_in_place_of_jupyterhub_singleuser() {
    let Some(hub) = Reference::start(&["--auth-cache-ttl", "1", "--activity-interval", "1"]).await
    else {
        return;
    };
    let started = chrono::Utc::now();
    // JupyterHub's readiness check accepted the shim.
    let server = hub.start_alices_server().await;
    assert_eq!(server["url"], "/user/alice/");

    // Tokens through the proxy.
    let alice = hub.token_for("alice").await;
    let bob = hub.token_for("bob").await;
    let get = |token: &str| {
        hub.http
            .get(hub.public_url("/user/alice/api/x"))
            .header(header::AUTHORIZATION, format!("token {token}"))
            .send()
    };
    assert_eq!(get(&alice).await.unwrap().status(), 200);
    assert_eq!(get(&bob).await.unwrap().status(), 403);
    assert_eq!(
        get(SERVICE_TOKEN).await.unwrap().status(),
        200,
        "a service with access:servers"
    );

    // Activity reaches JupyterHub.
    let reported = eventually(Duration::from_secs(10), async || {
        let model = hub.api(reqwest::Method::GET, "/users/alice", None).await.1;
        model["servers"][""]["last_activity"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t > started)
    })
    .await;
    assert!(reported);

    // A browser: JupyterHub's login form, then its OAuth provider, then the app.
    let mut browser = browser_for(&hub);
    login_at_hub(&mut browser, &hub.public_url(""), "alice").await;
    let (resp, visited) = browser.follow("/user/alice/notes?x=1").await;
    assert_eq!(resp.status(), 200, "{visited:#?}");
    assert_eq!(
        resp.json::<Value>().await.unwrap()["path"],
        "/user/alice/notes?x=1"
    );
    assert!(
        visited
            .iter()
            .any(|u| u.contains("/hub/api/oauth2/authorize?") && u.contains("code_challenge=")),
        "{visited:#?}"
    );

    // bob is refused by JupyterHub at authorize.
    let mut other = browser_for(&hub);
    login_at_hub(&mut other, &hub.public_url(""), "bob").await;
    let (resp, visited) = other.follow("/user/alice/").await;
    assert_eq!(resp.status(), 403, "{visited:#?}");
    assert!(other.jar.get("jupyterhub-user-alice").is_none());

    // JupyterHub's logout ends access at the next check.
    browser.navigate("/hub/logout").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let resp = browser.navigate("/user/alice/").await;
    assert_eq!(resp.status(), 302);
    assert!(
        resp.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .contains("/hub/api/oauth2/authorize?")
    );

    // Stopping the server through JupyterHub stops the shim.
    let (status, _) = hub
        .api(reqwest::Method::DELETE, "/users/alice/server", None)
        .await;
    assert!(status == 202 || status == 204);
    let stopped = eventually(Duration::from_secs(60), async || {
        hub.api(reqwest::Method::GET, "/users/alice", None).await.1["servers"]
            .get("")
            .is_none()
    })
    .await;
    assert!(stopped);
}
