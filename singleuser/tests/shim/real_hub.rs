//! The shim as the workspace's real `hub` runs it: the hub binary with its managed `chp-proxy`
//! starts the shim through the local spawner (`[spawner] cmd`), with the echo app behind it,
//! and everything goes through the proxy's public port.
//!
//! This checks what only the real hub can: that its readiness check accepts the shim, that the
//! environment it gives (service URL, OAuth client, access scopes, activity URL) is read
//! right, that its OAuth2 provider and `GET /hub/api/user` work with the shim's client, that
//! its logout and its stopping of the server end access, and that activity reaches it.
//!
//! Needs `cargo build -p hub -p chp-proxy` (or `HUB_BIN` and `CHP_PROXY_BIN`); without the
//! binaries these tests say so and pass without running. As root, the hub runs each server as
//! the system account named like its user, so the tests create a throwaway account (and remove
//! it afterwards).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::header;
use serde_json::{Value, json};

use crate::common::*;

pub fn binary(var: &str, name: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(var) {
        return Some(PathBuf::from(path));
    }
    // The test executable is <target>/<profile>/deps/shim-<hash>.
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join(name);
    path.is_file().then_some(path)
}

/// The hub process and what it was started with.
struct RealHub {
    child: Child,
    dir: tempfile::TempDir,
    public: u16,
    hub_port: u16,
    admin_token: String,
    http: reqwest::Client,
    /// The hub user whose server runs (the system account it runs as, when root).
    owner: String,
    /// Whether `owner` is a system account made for the test.
    account: bool,
}

impl Drop for RealHub {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.account {
            let _ = Command::new("userdel")
                .args(["-r", "-f", &self.owner])
                .stderr(Stdio::null())
                .status();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("hub.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("--- hub log (last lines) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

pub fn python() -> String {
    if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3".into()
    } else {
        "python3".into()
    }
}

impl RealHub {
    /// Starts the hub; `None` when the binaries are not built.
    async fn start(shim_args: &[&str]) -> Option<Self> {
        let mut args = vec![
            "--command".to_owned(),
            format!("{} {} --port {{port}}", python(), echo_app()),
        ];
        args.extend(shim_args.iter().map(|a| (*a).to_owned()));
        Self::start_shim_with(args).await
    }

    /// Starts the hub with `[spawner] cmd` = the shim and `shim_args`.
    async fn start_shim_with(shim_args: Vec<String>) -> Option<Self> {
        let (Some(hub_bin), Some(chp)) = (
            binary("HUB_BIN", "hub"),
            binary("CHP_PROXY_BIN", "chp-proxy"),
        ) else {
            eprintln!("SKIPPED: build the hub first: cargo build -p hub -p chp-proxy");
            return None;
        };
        let dir = tempdir();
        let public = free_port();
        let hub_port = free_port();
        let api = free_port();
        let admin_token = format!("admin-{}", free_port()) + "-0123456789abcdef";
        let account = nix::unistd::geteuid().is_root();
        let owner = if account {
            let name = format!(
                "shim{}",
                (0..6)
                    .map(|_| char::from(b'a' + rand::random_range(0..26u8)))
                    .collect::<String>()
            );
            let status = Command::new("useradd")
                .args(["-m", "-s", "/bin/sh", &name])
                .status()
                .unwrap();
            assert!(status.success(), "useradd {name}");
            name
        } else {
            "shimtest".to_owned()
        };
        let mut cmd = vec![SHIM.to_owned()];
        cmd.extend(shim_args);
        let config = format!(
            r#"
[hub]
bind_url = "http://127.0.0.1:{public}"
hub_ip = "127.0.0.1"
hub_port = {hub_port}
allow_named_servers = true

[hub.api_tokens]
"{admin_token}" = "admin"

[proxy]
command = [{chp:?}]
api_url = "http://127.0.0.1:{api}"
auth_token = "proxy-token-0123456789abcdef"

[authenticator]
class = "dummy"
admin_users = ["admin"]

[spawner]
cmd = {cmd}
http_timeout = 30
poll_interval = 1
"#,
            chp = chp.display().to_string(),
            cmd = serde_json::to_string(&cmd).unwrap(),
        );
        std::fs::write(dir.path().join("jupyterhub_config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("hub.log")).unwrap();
        let child = Command::new(hub_bin)
            .arg("--config")
            .arg(dir.path().join("jupyterhub_config.toml"))
            .current_dir(dir.path())
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let hub = Self {
            child,
            dir,
            public,
            hub_port,
            admin_token,
            http: client(),
            owner,
            account,
        };
        let up = eventually(Duration::from_secs(60), async || {
            hub.http
                .get(hub.public_url("/hub/api/"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(up, "the hub did not come up");
        Some(hub)
    }

    fn public_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.public)
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(
                method,
                format!("http://127.0.0.1:{}/hub/api{path}", self.hub_port),
            )
            .header(header::AUTHORIZATION, format!("token {}", self.admin_token));
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

    async fn token_for(&self, user: &str) -> String {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                &format!("/users/{user}/tokens"),
                Some(json!({"note": "shim test"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    async fn server(&self, user: &str) -> Option<Value> {
        self.named_server(user, "").await
    }

    async fn named_server(&self, user: &str, name: &str) -> Option<Value> {
        let (status, body) = self
            .admin(reqwest::Method::GET, &format!("/users/{user}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["servers"].get(name).cloned()
    }

    /// Creates the users and starts the owner's default server; waits until it is ready.
    async fn start_server(&self) -> Value {
        self.start_named_server("").await
    }

    /// Creates the users and starts the owner's server `name` (`""`: the default one).
    async fn start_named_server(&self, name: &str) -> Value {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                "/users",
                Some(json!({"usernames": [self.owner, "bob"]})),
            )
            .await;
        assert!(status == 201 || status == 409, "{status} {body}");
        let path = if name.is_empty() {
            format!("/users/{}/server", self.owner)
        } else {
            format!("/users/{}/servers/{name}", self.owner)
        };
        let (status, body) = self.admin(reqwest::Method::POST, &path, None).await;
        assert!(status == 201 || status == 202, "{status} {body}");
        let mut last = None;
        let ready = eventually(Duration::from_secs(90), async || {
            last = self.named_server(&self.owner, name).await;
            last.as_ref().is_some_and(|s| s["ready"] == true)
        })
        .await;
        assert!(ready, "the server never became ready: {last:?}");
        last.unwrap()
    }

    /// Logs a browser in at the hub's login form (dummy authenticator).
    async fn login_form(&self, browser: &mut Browser, user: &str) {
        login_at_hub(browser, &self.public_url(""), user).await;
    }
}

fn browser_for(hub: &RealHub) -> Browser {
    // Everything goes through the proxy: the hub's pages and the server alike.
    Browser {
        http: client(),
        jar: Jar::default(),
        hub_origin: hub.public_url(""),
        shim_origin: hub.public_url(""),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_websockets_activity_and_stop_through_the_real_hub() {
    let Some(hub) = RealHub::start(&["--activity-interval", "1", "--auth-cache-ttl", "1"]).await
    else {
        return;
    };
    let started = chrono::Utc::now();
    let server = hub.start_server().await;
    let owner = hub.owner.clone();
    let prefix = format!("/user/{owner}/");
    assert_eq!(server["url"], prefix);

    let owner_token = hub.token_for(&owner).await;
    let bob_token = hub.token_for("bob").await;
    let get = |token: Option<&str>, path: &str| {
        let mut req = hub.http.get(hub.public_url(path));
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("token {t}"));
        }
        req.send()
    };
    let resp = get(Some(&owner_token), &format!("{prefix}hello?x=1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["x-jupyterhub-version"]
            .to_str()
            .unwrap()
            .starts_with("6.1.1")
    );
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["path"], format!("{prefix}hello?x=1"));
    assert!(echo["headers"].get("authorization").is_none());

    // The admin (whose role holds access:servers) gets in; bob and nobody do not.
    let resp = get(Some(&hub.admin_token), &prefix).await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = get(Some(&bob_token), &format!("{prefix}api/x"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "user bob is not allowed.");
    let resp = get(None, &format!("{prefix}api/x")).await.unwrap();
    assert_eq!(resp.status(), 403);

    // Sharing the server with bob lets him in once the cached answer has expired.
    let (status, body) = hub
        .admin(
            reqwest::Method::POST,
            &format!("/shares/{owner}/"),
            Some(json!({"user": "bob"})),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let shared = eventually(Duration::from_secs(5), async || {
        get(Some(&bob_token), &format!("{prefix}api/x"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(shared, "bob never got in through the share");

    // Websockets through chp-proxy and the shim.
    let ws_url = format!("ws://127.0.0.1:{}{prefix}ws", hub.public);
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(
        &ws_url,
        &[("authorization", &format!("token {owner_token}"))],
    ))
    .await
    .unwrap();
    assert_eq!(
        ws_echo(&mut ws, "through the proxy").await,
        "echo:through the proxy"
    );
    drop(ws);

    // The shim's activity report reaches the hub's server model.
    let mut last = None;
    let reported = eventually(Duration::from_secs(10), async || {
        last = hub.server(&owner).await;
        last.as_ref()
            .and_then(|s| s["last_activity"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t > started)
    })
    .await;
    assert!(reported, "no activity reached the hub: {last:?}");

    // Revoking the owner's token counts within the cache lifetime.
    let (status, tokens) = hub
        .admin(
            reqwest::Method::GET,
            &format!("/users/{owner}/tokens"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    for t in tokens["api_tokens"].as_array().unwrap() {
        if t["note"] == "shim test" {
            let id = t["id"].as_str().unwrap();
            let (status, body) = hub
                .admin(
                    reqwest::Method::DELETE,
                    &format!("/users/{owner}/tokens/{id}"),
                    None,
                )
                .await;
            assert_eq!(status, 204, "{body}");
        }
    }
    let refused = eventually(Duration::from_secs(5), async || {
        get(Some(&owner_token), &format!("{prefix}api/x"))
            .await
            .is_ok_and(|r| r.status() == 403)
    })
    .await;
    assert!(refused, "the revoked token still works");

    // Stopping the server through the API ends the shim (the spawner's signal is passed on).
    let (status, body) = hub
        .admin(
            reqwest::Method::DELETE,
            &format!("/users/{owner}/server"),
            None,
        )
        .await;
    assert!(status == 202 || status == 204, "{status} {body}");
    let stopped = eventually(Duration::from_secs(60), async || {
        hub.server(&owner).await.is_none()
    })
    .await;
    assert!(stopped, "the server did not stop");
    let resp = get(Some(&hub.admin_token), &format!("{prefix}api/x"))
        .await
        .unwrap();
    assert_ne!(resp.status(), 200, "nothing answers for a stopped server");
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_login_through_the_real_hubs_oauth_provider() {
    let Some(hub) = RealHub::start(&["--auth-cache-ttl", "1"]).await else {
        return;
    };
    hub.start_server().await;
    let owner = hub.owner.clone();
    let prefix = format!("/user/{owner}/");

    // Not logged in anywhere: the shim sends the browser to the hub, which asks for a login.
    let mut browser = browser_for(&hub);
    let (resp, visited) = browser.follow(&format!("{prefix}notes?x=1")).await;
    assert_eq!(resp.status(), 200, "{visited:#?}");
    assert!(
        visited
            .iter()
            .any(|u| u.contains("/hub/api/oauth2/authorize?")),
        "{visited:#?}"
    );
    assert!(
        visited.last().unwrap().contains("/hub/login"),
        "{visited:#?}"
    );

    // Log in at the hub, then the server: authorize, callback, cookie, the app.
    hub.login_form(&mut browser, &owner).await;
    let (resp, visited) = browser.follow(&format!("{prefix}notes?x=1")).await;
    assert_eq!(resp.status(), 200, "{visited:#?}");
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["path"], format!("{prefix}notes?x=1"), "{visited:#?}");
    assert!(
        visited
            .iter()
            .any(|u| u.contains(&format!("{prefix}oauth_callback?code="))),
        "{visited:#?}"
    );
    let client_id = format!("jupyterhub-user-{owner}");
    let login_cookie = browser
        .jar
        .seen
        .iter()
        .find(|c| c.starts_with(&format!("{client_id}=")))
        .unwrap()
        .clone();
    assert!(
        login_cookie.contains(&format!("Path={prefix}")),
        "{login_cookie}"
    );
    assert!(login_cookie.contains("HttpOnly"), "{login_cookie}");
    let cookies = echo["headers"]["cookie"][0].as_str().unwrap_or_default();
    assert!(
        !cookies.contains(&client_id),
        "the app saw the login cookie: {cookies}"
    );

    // Another user is refused by the hub at authorize, and never gets a cookie here.
    let mut other = browser_for(&hub);
    hub.login_form(&mut other, "bob").await;
    let (resp, visited) = other.follow(&prefix).await;
    assert_eq!(resp.status(), 403, "{visited:#?}");
    assert!(
        visited
            .last()
            .unwrap()
            .contains("/hub/api/oauth2/authorize"),
        "{visited:#?}"
    );
    assert!(other.jar.get(&client_id).is_none());

    // Logging out at the hub ends access here at the next check.
    let resp = browser.navigate("/hub/logout").await;
    assert!(resp.status().is_redirection() || resp.status() == 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let resp = browser.navigate(&prefix).await;
    assert_eq!(resp.status(), 302, "sent to log in again");
    let location = resp.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        location.contains("/hub/api/oauth2/authorize?"),
        "{location}"
    );

    // The shim's own logout clears its cookie and goes on to the hub's.
    let mut third = browser_for(&hub);
    hub.login_form(&mut third, &owner).await;
    let (resp, _) = third.follow(&prefix).await;
    assert_eq!(resp.status(), 200);
    let resp = third.navigate(&format!("{prefix}logout")).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()[header::LOCATION], "/hub/logout");
    assert!(third.jar.get(&client_id).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_server() {
    let Some(hub) = RealHub::start(&["--activity-interval", "1"]).await else {
        return;
    };
    let started = chrono::Utc::now();
    let server = hub.start_named_server("gpu").await;
    let owner = hub.owner.clone();
    let prefix = format!("/user/{owner}/gpu/");
    assert_eq!(server["url"], prefix);

    let token = hub.token_for(&owner).await;
    let resp = hub
        .http
        .get(hub.public_url(&format!("{prefix}x")))
        .header(header::AUTHORIZATION, format!("token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["path"], format!("{prefix}x"));

    // Activity goes to the named server's entry.
    let mut last = None;
    let reported = eventually(Duration::from_secs(10), async || {
        last = hub.named_server(&owner, "gpu").await;
        last.as_ref()
            .and_then(|s| s["last_activity"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t > started)
    })
    .await;
    assert!(reported, "no activity for the named server: {last:?}");

    // A browser logs in with the named server's own OAuth client and cookie.
    let mut browser = browser_for(&hub);
    hub.login_form(&mut browser, &owner).await;
    let (resp, visited) = browser.follow(&prefix).await;
    assert_eq!(resp.status(), 200, "{visited:#?}");
    let client_id = format!("jupyterhub-user-{owner}-gpu");
    let cookie = browser
        .jar
        .seen
        .iter()
        .find(|c| c.starts_with(&format!("{client_id}=")))
        .unwrap_or_else(|| panic!("no {client_id} cookie: {:?}", browser.jar.seen));
    assert!(cookie.contains(&format!("Path={prefix}")), "{cookie}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jupyter_server_behind_the_shim_spawned_by_the_real_hub() {
    let Some(jupyter) = crate::jupyter::jupyter() else {
        return;
    };
    let args = vec![
        "--jupyter".to_owned(),
        jupyter.display().to_string(),
        "--app".to_owned(),
        "server".to_owned(),
    ];
    let Some(hub) = RealHub::start_shim_with(args).await else {
        return;
    };
    hub.start_server().await;
    let owner = hub.owner.clone();
    let prefix = format!("/user/{owner}/");

    // A browser logs in at the hub, then reaches Jupyter through the proxy and the shim.
    let mut browser = browser_for(&hub);
    hub.login_form(&mut browser, &owner).await;
    let (resp, visited) = browser.follow(&prefix).await;
    assert_eq!(resp.status(), 200, "{visited:#?}");
    let xsrf = browser.jar.get("_xsrf").map(str::to_owned);
    // The hub's _xsrf lives on /hub/; the server's own on its prefix.
    let server_xsrf = browser
        .jar
        .cookies
        .iter()
        .find(|(n, _, p)| n == "_xsrf" && *p == prefix)
        .map(|(_, v, _)| v.clone())
        .unwrap_or_else(|| {
            panic!(
                "no _xsrf for {prefix}: {:?} (any: {xsrf:?})",
                browser.jar.cookies
            )
        });
    let resp = browser
        .http
        .post(hub.public_url(&format!("{prefix}api/contents")))
        .header(
            header::COOKIE,
            browser.jar.header_for(&format!("{prefix}api/contents")),
        )
        .header("sec-fetch-mode", "cors")
        .header("sec-fetch-site", "same-origin")
        .header("x-xsrftoken", server_xsrf)
        .json(&json!({"type": "file", "ext": ".txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);

    // A terminal over a websocket through chp-proxy and the shim, as the server's account.
    let resp = hub
        .http
        .post(hub.public_url(&format!("{prefix}api/terminals")))
        .header(
            header::AUTHORIZATION,
            format!("token {}", hub.token_for(&owner).await),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let name = resp.json::<Value>().await.unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let ws_url = format!(
        "ws://127.0.0.1:{}{prefix}terminals/websocket/{name}",
        hub.public
    );
    let cookie = browser
        .jar
        .header_for(&format!("{prefix}terminals/websocket/{name}"));
    let origin = hub.public_url("");
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(
        &ws_url,
        &[("cookie", &cookie), ("origin", &origin)],
    ))
    .await
    .unwrap();
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(json!(["stdin", "id -un\r"]).to_string()))
        .await
        .unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains(&owner) {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("terminal output so far: {seen:?}"))
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg
            && let Ok(Value::Array(a)) = serde_json::from_str::<Value>(&t)
            && a[0] == "stdout"
        {
            seen.push_str(a[1].as_str().unwrap_or_default());
        }
    }
}
