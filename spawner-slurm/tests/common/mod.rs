//! Helpers for the tests against a real single-node Slurm (started by
//! `scripts/slurm-test-cluster.sh`): throwaway accounts, a server program for the jobs, and a
//! stand-in for the hub's `POST /hub/api/batchspawner` that hands reports to the spawner.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use hub_plugin::{
    PollStatus, ProgressEvent, ProgressSender, ServerRef, ServerReport, SpawnContext, Spawner,
};
use serde_json::Value;
use spawner_slurm::{BatchConfig, BatchSpawner, SlurmRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Starts the test cluster once per test binary (the script returns at once when it runs).
pub fn cluster() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("spawner_slurm=debug")
                .with_test_writer()
                .try_init();
        }
        let script = manifest_dir().join("../scripts/slurm-test-cluster.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg("start")
            .output()
            .expect("run scripts/slurm-test-cluster.sh");
        assert!(
            out.status.success(),
            "scripts/slurm-test-cluster.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// The server the jobs run: binds the host and port of `JUPYTERHUB_SERVICE_URL` (port 0: any
/// free one), reports the port to `$JUPYTERHUB_API_URL/batchspawner` with its token (what
/// `batchspawner-singleuser` does), and answers every GET with who and where it is as JSON.
pub const JOB_SERVER: &str = r#"
import json, os, urllib.parse as up, urllib.request as ur, http.server as hs
url = up.urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
class H(hs.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "user": os.environ["JUPYTERHUB_USER"],
            "server": os.environ["JUPYTERHUB_SERVER_NAME"],
            "uid": os.getuid(),
            "job": os.environ.get("SLURM_JOB_ID"),
            "path": self.path,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = hs.HTTPServer((url.hostname, url.port or 0), H)
if not url.port:
    request = ur.Request(
        os.environ["JUPYTERHUB_API_URL"] + "/batchspawner",
        data=json.dumps({"port": server.server_address[1]}).encode(),
        headers={"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"],
                 "Content-Type": "application/json"},
        method="POST")
    ur.urlopen(request, timeout=10).read()
server.serve_forever()
"#;

/// `python3 -c JOB_SERVER`.
pub fn job_server_cmd() -> Vec<String> {
    vec!["/usr/bin/python3".into(), "-c".into(), JOB_SERVER.into()]
}

/// Slurm settings for the tests: the job server without a wrapper (it reports by itself),
/// partitions `debug` and `closed` open to users, status checks every 200 ms.
pub fn slurm_config() -> BatchConfig {
    let mut config = BatchConfig::slurm(&SlurmRequest::new());
    config.cmd = job_server_cmd();
    config.wrapper = Vec::new();
    config.status_interval = Duration::from_millis(200);
    config.start_timeout = Duration::from_secs(60);
    config.stop_timeout = Duration::from_secs(20);
    config
        .options
        .insert("partition".into(), "debug|closed".into());
    config
}

pub fn server(user: &str, name: &str) -> ServerRef {
    ServerRef {
        user: user.into(),
        name: name.into(),
    }
}

/// A stand-in for the hub's report endpoint: `POST /hub/api/batchspawner` with
/// `Authorization: token <t>` hands `{"port": N}` to the spawner for the server `<t>` was
/// given to; the reply is what the spawner answered.
pub struct ReportEndpoint {
    /// `http://127.0.0.1:<port>/hub/api`.
    pub api_url: String,
    tokens: Arc<Mutex<HashMap<String, ServerRef>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReportEndpoint {
    pub async fn start(spawner: BatchSpawner) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_url = format!("http://{}/hub/api", listener.local_addr().unwrap());
        let tokens: Arc<Mutex<HashMap<String, ServerRef>>> = Arc::default();
        let known = Arc::clone(&tokens);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let spawner = spawner.clone();
                let known = Arc::clone(&known);
                tokio::spawn(async move {
                    let (status, body) = match read_request(&mut stream).await {
                        Some((head, body)) => answer(&spawner, &known, &head, &body).await,
                        None => (400, "bad request".to_owned()),
                    };
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        ReportEndpoint {
            api_url,
            tokens,
            task,
        }
    }

    /// A context as the hub builds it for `user`'s server `name` (the part the job server
    /// uses), with a fresh token this endpoint knows, and the receiver of its progress events.
    pub fn ctx(
        &self,
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
        let token = random_token();
        self.tokens
            .lock()
            .unwrap()
            .insert(token.clone(), server(user, name));
        let env: BTreeMap<String, String> = [
            ("JUPYTERHUB_USER", user.to_owned()),
            ("JUPYTERHUB_SERVER_NAME", name.to_owned()),
            ("JUPYTERHUB_SERVICE_PREFIX", prefix.clone()),
            ("JUPYTERHUB_API_URL", self.api_url.clone()),
            ("JUPYTERHUB_API_TOKEN", token),
            ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
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
}

impl Drop for ReportEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// 32 random hex digits (`RandomState` is seeded from the OS).
fn random_token() -> String {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    format!("{:016x}{:016x}", state.hash_one(1u8), state.hash_one(2u8))
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Duration::from_secs(10);
    loop {
        let n = tokio::time::timeout(deadline, stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return Some((head.to_owned(), body[..length].to_owned()));
            }
        }
    }
}

async fn answer(
    spawner: &BatchSpawner,
    known: &Mutex<HashMap<String, ServerRef>>,
    head: &str,
    body: &str,
) -> (u16, String) {
    if !head.starts_with("POST /hub/api/batchspawner ") {
        return (404, "{}".into());
    }
    let token = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("authorization")
            .then(|| v.trim().strip_prefix("token ").map(str::to_owned))?
    });
    let Some(server) = token.and_then(|t| known.lock().unwrap().get(&t).cloned()) else {
        return (403, "{}".into());
    };
    let Ok(report) = serde_json::from_str::<ServerReport>(body) else {
        return (400, "{}".into());
    };
    match spawner.server_reported(&server, &report).await {
        Ok(()) => (200, r#"{"message": "BatchSpawner data configured"}"#.into()),
        Err(e) => (
            409,
            serde_json::json!({"message": e.to_string()}).to_string(),
        ),
    }
}

/// `GET url` over HTTP/1.0; the JSON body when the answer is 200.
pub async fn http_get(url: &str) -> Option<Value> {
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
    if !head.starts_with("HTTP/1.0 200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

/// Polls until the job is gone (the spawner says so).
pub async fn wait_stopped(s: &dyn Spawner, server: &ServerRef, state: &Value, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let PollStatus::Stopped(_) = s.poll(server, state).await.unwrap() {
            return;
        }
        assert!(Instant::now() < deadline, "still running after {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `scontrol show job --oneliner <id>` as root: what Slurm says about a job.
pub fn scontrol(job_id: &str) -> String {
    let out = std::process::Command::new("scontrol")
        .args(["show", "job", "--oneliner", job_id])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `JobState=` of a job.
pub fn job_state(job_id: &str) -> String {
    let text = scontrol(job_id);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("JobState="))
        .unwrap_or("")
        .to_owned()
}

/// Waits until `job_state(job_id)` is `state`.
pub async fn wait_job_state(job_id: &str, state: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if job_state(job_id) == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job {job_id} not {state} after {limit:?}: {}",
            scontrol(job_id)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The job ids of `user`'s jobs that Slurm still has queued or running.
pub fn active_jobs(user: &str) -> Vec<String> {
    let out = std::process::Command::new("squeue")
        .args([
            "-h",
            "-u",
            user,
            "-t",
            "PENDING,RUNNING,CONFIGURING",
            "-o",
            "%i",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Every progress message received so far.
pub fn messages(rx: &mut tokio::sync::broadcast::Receiver<ProgressEvent>) -> Vec<String> {
    let mut all = Vec::new();
    while let Ok(event) = rx.try_recv() {
        all.push(event.message);
    }
    all
}

/// The job id in a message such as `Job 12 submitted`.
pub fn job_id_in(message: &str) -> Option<String> {
    let rest = message.strip_prefix("Job ")?;
    let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!id.is_empty()).then_some(id)
}

/// Runs a command that must succeed; its standard output.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A throwaway system account with a home directory; its jobs are cancelled and it is removed
/// on drop.
pub struct TempUser {
    pub name: String,
}

impl TempUser {
    pub fn create(tag: &str) -> Self {
        let name = format!("jhsl{tag}{}", std::process::id());
        let _ = std::process::Command::new("userdel")
            .args(["-f", "-r", &name])
            .output();
        run("useradd", &["-m", &name]);
        TempUser { name }
    }

    pub fn uid(&self) -> u32 {
        run("id", &["-u", &self.name]).trim().parse().unwrap()
    }

    pub fn home(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/home/{}", self.name))
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("scancel")
            .args(["--user", &self.name])
            .output();
        let _ = std::process::Command::new("userdel")
            .args(["-f", "-r", &self.name])
            .output();
    }
}

/// This package's directory at run time (not at build time: the test binary may come from a
/// build in another checkout of the workspace).
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        std::path::PathBuf::from,
    )
}
