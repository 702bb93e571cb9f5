//! Helpers for the spawner's tests: real processes, real sockets, real accounts.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hub_plugin::{PollStatus, ProgressEvent, ProgressSender, ServerRef, SpawnContext, Spawner};
use serde_json::Value;
use spawner_local::{LocalProcessSpawner, LocalSpawnerConfig, ProcessState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A tiny HTTP server: binds the host and port of `JUPYTERHUB_SERVICE_URL` and answers every
/// GET with `<user>/<server>` from its environment.
pub const HTTP_SERVER: &str = r#"
import os, urllib.parse as u, http.server as h
p = u.urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
who = (os.environ["JUPYTERHUB_USER"] + "/" + os.environ["JUPYTERHUB_SERVER_NAME"]).encode()
class H(h.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(who)))
        self.end_headers()
        self.wfile.write(who)
    def log_message(self, *args):
        pass
h.HTTPServer((p.hostname, p.port), H).serve_forever()
"#;

/// `python3 -c HTTP_SERVER`.
pub fn http_server_cmd() -> Vec<String> {
    vec!["/usr/bin/python3".into(), "-c".into(), HTTP_SERVER.into()]
}

/// `sh -c script`.
pub fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// Settings with short stop timeouts.
pub fn config(cmd: Vec<String>) -> LocalSpawnerConfig {
    LocalSpawnerConfig {
        cmd,
        interrupt_timeout: Duration::from_secs(1),
        term_timeout: Duration::from_secs(1),
        kill_timeout: Duration::from_secs(2),
        ..LocalSpawnerConfig::default()
    }
}

pub fn spawner(cmd: Vec<String>) -> LocalProcessSpawner {
    LocalProcessSpawner::new(config(cmd))
}

pub fn server(user: &str, name: &str) -> ServerRef {
    ServerRef {
        user: user.into(),
        name: name.into(),
    }
}

/// A context as the hub builds it (the part of the environment these tests look at), and
/// the receiver of its progress events.
pub fn ctx(
    user: &str,
    name: &str,
) -> (
    SpawnContext,
    tokio::sync::broadcast::Receiver<ProgressEvent>,
) {
    let prefix = if name.is_empty() {
        format!("/user/{user}/")
    } else {
        format!("/user/{user}/{name}/")
    };
    let env: BTreeMap<String, String> = [
        ("JUPYTERHUB_USER", user.to_owned()),
        ("JUPYTERHUB_SERVER_NAME", name.to_owned()),
        ("JUPYTERHUB_SERVICE_PREFIX", prefix.clone()),
        // The hub's placeholder; the spawner puts in the real port.
        (
            "JUPYTERHUB_SERVICE_URL",
            format!("http://127.0.0.1:0{prefix}"),
        ),
        ("JUPYTERHUB_API_TOKEN", "0123456789abcdef".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let (progress, rx) = ProgressSender::channel();
    (
        SpawnContext {
            server: server(user, name),
            env,
            prefix,
            user_options: Value::Null,
            command: None,
            progress,
        },
        rx,
    )
}

/// The process state of a start's saved state.
pub fn state_of(state: &Value) -> ProcessState {
    ProcessState::from_value(state).expect("a process state")
}

/// `GET url` over HTTP/1.0; the body when the answer is 200.
pub async fn http_get(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(authority),
    )
    .await
    .ok()?
    .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .ok()?
        .ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_owned())
}

/// Waits until `url` answers 200; its body.
pub async fn wait_http(url: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(body) = http_get(url).await {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the server stops; its status.
pub async fn wait_stopped(
    s: &dyn Spawner,
    server: &ServerRef,
    state: &Value,
    limit: Duration,
) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let PollStatus::Stopped(status) = s.poll(server, state).await.unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether any live (not zombie) process is in process group `pgid`.
pub fn group_exists(pgid: i32) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .any(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields[0] != "Z" && fields[2].parse::<i32>() == Ok(pgid)
        })
}

/// Field 22 of `/proc/<pid>/stat`.
pub fn start_time(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// The real uid of a process, from `/proc/<pid>/status`.
pub fn uid_of(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs a command that must succeed.
pub fn run(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway system account (and optionally a group it is in), removed on drop.
pub struct TempUser {
    pub name: String,
    pub group: Option<String>,
}

impl TempUser {
    /// Creates `name` with a home directory, in the new group `group` when given.
    pub fn create(name: &str, group: Option<&str>) -> Self {
        let _ = std::process::Command::new("userdel")
            .args(["-f", "-r", name])
            .output();
        if let Some(g) = group {
            let _ = std::process::Command::new("groupdel").arg(g).output();
            run("groupadd", &[g]);
            run("useradd", &["-m", "-G", g, name]);
        } else {
            run("useradd", &["-m", name]);
        }
        TempUser {
            name: name.into(),
            group: group.map(str::to_owned),
        }
    }

    /// Takes over removal of an account someone else created.
    pub fn adopt(name: &str) -> Self {
        TempUser {
            name: name.into(),
            group: None,
        }
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        // `-f`: a test that failed half-way may leave a process of the account behind (its
        // commands end by themselves); the account goes anyway.
        let _ = std::process::Command::new("userdel")
            .args(["-f", "-r", &self.name])
            .output();
        if let Some(g) = &self.group {
            let _ = std::process::Command::new("groupdel").arg(g).output();
        }
    }
}
