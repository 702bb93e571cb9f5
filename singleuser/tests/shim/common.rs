//! What the shim's tests share: a hub double speaking the documented hub endpoints, the shim
//! binary started as a spawner would start it, a browser-like client with a cookie jar, and
//! a websocket client.

#![allow(dead_code, reason = "each test module uses a different part")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Path as AxPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;

/// The shim binary of this package.
pub const SHIM: &str = env!("CARGO_BIN_EXE_singleuser-auth-shim");

/// The test app's source.
pub fn echo_app() -> String {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/support/echo_app.py")
        .display()
        .to_string()
}

/// The server token the hub double expects (also the OAuth client secret).
pub const SERVER_TOKEN: &str = "server-token-0123456789abcdef";

/// A hub user known to the double.
#[derive(Debug, Clone)]
pub struct HubUser {
    pub name: String,
    pub kind: &'static str,
    pub scopes: Vec<String>,
}

#[derive(Debug)]
struct Code {
    user: String,
    challenge: Option<String>,
    redirect_uri: String,
}

/// State of the hub double.
#[derive(Debug, Default)]
pub struct HubState {
    tokens: Mutex<HashMap<String, HubUser>>,
    /// Scopes a user's OAuth tokens get.
    users: Mutex<HashMap<String, HubUser>>,
    codes: Mutex<HashMap<String, Code>>,
    pub identify_calls: AtomicUsize,
    pub token_calls: AtomicUsize,
    pub activity: Mutex<Vec<(String, Value)>>,
    pub down: AtomicBool,
    client_id: String,
    redirect_uri: String,
}

/// An in-process hub double on a loopback port.
pub struct MockHub {
    pub state: Arc<HubState>,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 15];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl MockHub {
    /// A hub for alice's default server (`/user/alice/`).
    pub async fn start() -> Self {
        Self::start_for("jupyterhub-user-alice", "/user/alice/oauth_callback").await
    }

    /// A hub expecting the OAuth client `client_id` with `redirect_uri`.
    pub async fn start_for(client_id: &str, redirect_uri: &str) -> Self {
        let state = Arc::new(HubState {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            ..HubState::default()
        });
        let app = Router::new()
            .route("/hub/api", get(version))
            .route("/hub/api/user", get(whoami))
            .route("/hub/api/oauth2/authorize", get(authorize))
            .route("/hub/api/oauth2/token", post(token))
            .route("/hub/api/users/{name}/activity", post(activity))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let hub = Self { state, addr, task };
        hub.add_user(
            "alice",
            &["access:servers!server=alice/", "access:servers!user=alice"],
        );
        hub.add_user("bob", &["access:servers!server=bob/"]);
        hub.add_user("root", &["access:servers", "admin:users"]);
        hub
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Declares a user and the scopes their tokens carry.
    pub fn add_user(&self, name: &str, scopes: &[&str]) {
        self.state.users.lock().unwrap().insert(
            name.to_owned(),
            HubUser {
                name: name.to_owned(),
                kind: "user",
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            },
        );
    }

    /// Issues an API token for `user`.
    pub fn token_for(&self, user: &str) -> String {
        let u = self.state.users.lock().unwrap()[user].clone();
        let token = random_token();
        self.state.tokens.lock().unwrap().insert(token.clone(), u);
        token
    }

    /// Every token the hub knows (API tokens and OAuth access tokens).
    pub fn all_tokens(&self) -> Vec<String> {
        self.state.tokens.lock().unwrap().keys().cloned().collect()
    }

    pub fn revoke(&self, token: &str) {
        self.state.tokens.lock().unwrap().remove(token);
    }

    pub fn revoke_all(&self) {
        self.state.tokens.lock().unwrap().clear();
    }

    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    pub fn identify_calls(&self) -> usize {
        self.state.identify_calls.load(Ordering::SeqCst)
    }

    pub fn activity(&self) -> Vec<(String, Value)> {
        self.state.activity.lock().unwrap().clone()
    }

    /// The environment a spawner gives alice's default server.
    pub fn env_for_alice(&self, port: u16) -> Vec<(String, String)> {
        let hub = self.url();
        [
            (
                "JUPYTERHUB_SERVICE_URL",
                format!("http://127.0.0.1:{port}/user/alice/"),
            ),
            ("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/".into()),
            ("JUPYTERHUB_API_URL", format!("{hub}/hub/api")),
            ("JUPYTERHUB_API_TOKEN", SERVER_TOKEN.into()),
            ("JPY_API_TOKEN", SERVER_TOKEN.into()),
            ("JUPYTERHUB_CLIENT_ID", "jupyterhub-user-alice".into()),
            ("JUPYTERHUB_USER", "alice".into()),
            ("JUPYTERHUB_SERVER_NAME", String::new()),
            ("JUPYTERHUB_HOST", String::new()),
            ("JUPYTERHUB_BASE_URL", "/".into()),
            (
                "JUPYTERHUB_OAUTH_CALLBACK_URL",
                "/user/alice/oauth_callback".into(),
            ),
            (
                "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
                r#"["access:servers!server=alice/", "access:servers!user=alice"]"#.into(),
            ),
            (
                "JUPYTERHUB_OAUTH_SCOPES",
                r#"["access:servers!server=alice/", "access:servers!user=alice"]"#.into(),
            ),
            ("JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES", "[]".into()),
            (
                "JUPYTERHUB_ACTIVITY_URL",
                format!("{hub}/hub/api/users/alice/activity"),
            ),
            ("JUPYTERHUB_PUBLIC_URL", String::new()),
            ("JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED", "0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

fn model(u: &HubUser) -> Value {
    json!({"kind": u.kind, "name": u.name, "admin": false, "groups": [], "scopes": u.scopes,
           "token_id": "a1", "session_id": null, "user_info": null})
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "hub down").into_response()
}

async fn version() -> Response {
    (
        [("x-jupyterhub-version", "6.1.1")],
        axum::Json(json!({"version": "6.1.1"})),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        .then(|| token.trim().to_owned())
}

async fn whoami(State(s): State<Arc<HubState>>, headers: HeaderMap) -> Response {
    s.identify_calls.fetch_add(1, Ordering::SeqCst);
    if s.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    let user = bearer(&headers).and_then(|t| s.tokens.lock().unwrap().get(&t).cloned());
    match user {
        Some(u) => axum::Json(model(&u)).into_response(),
        None => (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"status": 403, "message": null})),
        )
            .into_response(),
    }
}

async fn authorize(
    State(s): State<Arc<HubState>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if q.get("client_id") != Some(&s.client_id) || q.get("redirect_uri") != Some(&s.redirect_uri) {
        return (StatusCode::BAD_REQUEST, "bad client or redirect_uri").into_response();
    }
    if q.get("response_type").map(String::as_str) != Some("code") {
        return (StatusCode::BAD_REQUEST, "bad response_type").into_response();
    }
    // The browser's hub login, reduced to a cookie naming the user.
    let user = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|p| p.trim().strip_prefix("mock-hub-user=").map(str::to_owned));
    let Some(user) = user else {
        return (
            StatusCode::FOUND,
            [(header::LOCATION, "/hub/login?next=x".to_owned())],
        )
            .into_response();
    };
    let code = random_token();
    let challenge = match (q.get("code_challenge"), q.get("code_challenge_method")) {
        (Some(c), Some(m)) if m == "S256" => Some(c.clone()),
        (None, None) => None,
        _ => return (StatusCode::BAD_REQUEST, "bad PKCE").into_response(),
    };
    s.codes.lock().unwrap().insert(
        code.clone(),
        Code {
            user,
            challenge,
            redirect_uri: s.redirect_uri.clone(),
        },
    );
    let state = q.get("state").cloned().unwrap_or_default();
    let location = format!(
        "{}?code={code}&state={}",
        s.redirect_uri,
        url::form_urlencoded::byte_serialize(state.as_bytes()).collect::<String>()
    );
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

async fn token(State(s): State<Arc<HubState>>, Form(f): Form<HashMap<String, String>>) -> Response {
    s.token_calls.fetch_add(1, Ordering::SeqCst);
    if s.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    let err =
        |status: StatusCode, e: &str| (status, axum::Json(json!({"error": e}))).into_response();
    if f.get("client_id") != Some(&s.client_id)
        || f.get("client_secret").map(String::as_str) != Some(SERVER_TOKEN)
    {
        return err(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if f.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return err(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let Some(code) = f.get("code") else {
        return err(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let mut codes = s.codes.lock().unwrap();
    let Some(stored) = codes.get(code) else {
        return err(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    if f.get("redirect_uri") != Some(&stored.redirect_uri) {
        return err(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    if let Some(challenge) = &stored.challenge {
        let Some(verifier) = f.get("code_verifier") else {
            return err(StatusCode::BAD_REQUEST, "invalid_request");
        };
        let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        if &computed != challenge {
            return err(StatusCode::BAD_REQUEST, "invalid_grant");
        }
    }
    let stored = codes.remove(code).unwrap();
    drop(codes);
    let user = s.users.lock().unwrap()[&stored.user].clone();
    let access = random_token();
    s.tokens.lock().unwrap().insert(access.clone(), user);
    axum::Json(json!({"access_token": access, "token_type": "Bearer", "expires_in": 1_209_600}))
        .into_response()
}

async fn activity(
    State(s): State<Arc<HubState>>,
    AxPath(name): AxPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if s.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    if bearer(&headers).as_deref() != Some(SERVER_TOKEN) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    s.activity.lock().unwrap().push((name, v));
    StatusCode::OK.into_response()
}

// === The shim process ===

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running shim; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Shim {
    pub child: Child,
    pub port: u16,
}

impl Shim {
    /// `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A URL on the shim.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// Sends a signal to the shim.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// Waits up to `limit` for the shim to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Starts the shim with `env` and `args`; returns once it accepts connections.
pub fn start_shim(port: u16, env: &[(String, String)], args: &[&str]) -> Shim {
    start_shim_logging_to(port, env, args, None)
}

/// [`start_shim`], with the shim's (and its app's) output going to `log`.
pub fn start_shim_logging_to(
    port: u16,
    env: &[(String, String)],
    args: &[&str],
    log: Option<&Path>,
) -> Shim {
    let mut child = spawn_shim_logging_to(env, args, log);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Shim { child, port };
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the shim exited during startup: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the shim did not start listening"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Spawns the shim without waiting.
pub fn spawn_shim(env: &[(String, String)], args: &[&str]) -> Child {
    spawn_shim_logging_to(env, args, None)
}

fn spawn_shim_logging_to(env: &[(String, String)], args: &[&str], log: Option<&Path>) -> Child {
    let mut cmd = Command::new(SHIM);
    if let Some(path) = log {
        let file = std::fs::File::create(path).unwrap();
        cmd.stdout(file.try_clone().unwrap()).stderr(file);
    }
    cmd.args(args).env_clear().stdin(Stdio::null()).env(
        "RUST_LOG",
        std::env::var("SHIM_TEST_LOG").unwrap_or_else(|_| "info".into()),
    );
    for keep in [
        "PATH",
        "HOME",
        "LANG",
        "PYENV_ROOT",
        "PYENV_VERSION",
        "TMPDIR",
    ] {
        if let Ok(v) = std::env::var(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd.spawn().expect("start the shim binary")
}

/// The usual command line: the echo app through the command template.
pub fn echo_command(extra: &str) -> String {
    format!("python3 {} --port {{port}} {extra}", echo_app())
}

// === Clients ===

/// An HTTP client that never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A cookie jar that keeps each cookie's path.
#[derive(Debug, Default, Clone)]
pub struct Jar {
    /// `(name, value, path)`.
    pub cookies: Vec<(String, String, String)>,
    /// Every Set-Cookie seen, for attribute checks.
    pub seen: Vec<String>,
}

impl Jar {
    pub fn absorb(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all(header::SET_COOKIE) {
            let text = v.to_str().unwrap().to_owned();
            self.seen.push(text.clone());
            let mut attrs = text.split(';');
            let pair = attrs.next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let (name, value) = (name.trim(), value.trim().trim_matches('"'));
            let path = attrs
                .filter_map(|a| a.trim().split_once('='))
                .find(|(k, _)| k.eq_ignore_ascii_case("path"))
                .map_or("/", |(_, v)| v)
                .to_owned();
            let expired = text.contains("Max-Age=0");
            self.cookies.retain(|(n, _, p)| !(n == name && *p == path));
            if !expired {
                self.cookies.push((name.to_owned(), value.to_owned(), path));
            }
        }
    }

    /// Every cookie, whatever its path.
    pub fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v, _)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The cookies a browser sends to `path`, most specific path first.
    pub fn header_for(&self, path: &str) -> String {
        let mut matching: Vec<_> = self
            .cookies
            .iter()
            .filter(|(_, _, p)| path.starts_with(p.as_str()) || path == p.trim_end_matches('/'))
            .collect();
        matching.sort_by_key(|(_, _, p)| std::cmp::Reverse(p.len()));
        matching
            .iter()
            .map(|(n, v, _)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.cookies.retain(|(n, _, _)| n != name);
        self.cookies
            .push((name.to_owned(), value.to_owned(), "/".to_owned()));
    }

    pub fn remove(&mut self, name: &str) {
        self.cookies.retain(|(n, _, _)| n != name);
    }

    pub fn names(&self) -> Vec<String> {
        self.cookies.iter().map(|(n, _, _)| n.clone()).collect()
    }
}

/// A browser: follows redirects itself across the shim and the hub double, keeping cookies.
pub struct Browser {
    pub http: reqwest::Client,
    pub jar: Jar,
    /// Where relative `Location`s of the hub go (the hub's origin).
    pub hub_origin: String,
    /// Where relative `Location`s under the server prefix go (the shim's origin).
    pub shim_origin: String,
}

impl Browser {
    pub fn new(hub: &MockHub, shim: &Shim) -> Self {
        Self {
            http: client(),
            jar: Jar::default(),
            hub_origin: hub.url(),
            shim_origin: shim.origin(),
        }
    }

    /// Absolute URL for a location: `/hub/...` goes to the hub, everything else to the shim
    /// (the proxy's routing, reduced).
    pub fn absolute(&self, location: &str) -> String {
        if location.starts_with("http") {
            location.to_owned()
        } else if location.starts_with("/hub/") {
            format!("{}{location}", self.hub_origin)
        } else {
            format!("{}{location}", self.shim_origin)
        }
    }

    /// One navigation request (no redirect following).
    pub async fn navigate(&mut self, url: &str) -> reqwest::Response {
        let url = self.absolute(url);
        let path = url::Url::parse(&url).unwrap().path().to_owned();
        let resp = self
            .http
            .get(&url)
            .header(header::COOKIE, self.jar.header_for(&path))
            .header("sec-fetch-mode", "navigate")
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        self.jar.absorb(&resp);
        resp
    }

    /// Navigates, following redirects; returns the final response and the URLs visited.
    pub async fn follow(&mut self, url: &str) -> (reqwest::Response, Vec<String>) {
        let mut visited = vec![self.absolute(url)];
        let mut resp = self.navigate(url).await;
        for _ in 0..10 {
            if !resp.status().is_redirection() {
                break;
            }
            let location = resp.headers()[header::LOCATION]
                .to_str()
                .unwrap()
                .to_owned();
            visited.push(self.absolute(&location));
            resp = self.navigate(&location).await;
        }
        (resp, visited)
    }

    /// Logs in as `user` at the hub (the double's cookie) and opens `path` on the shim.
    pub async fn login(&mut self, user: &str, path: &str) -> reqwest::Response {
        self.jar.set("mock-hub-user", user);
        self.follow(path).await.0
    }
}

/// A websocket handshake request with extra headers.
pub fn ws_request(
    url: &str,
    headers: &[(&str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    req
}

/// Sends `text` over a websocket and returns the first text answer.
pub async fn ws_echo(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    text: &str,
) -> String {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(text)).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("websocket answer")
        {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(_)) => {}
            other => panic!("websocket ended: {other:?}"),
        }
    }
}

/// Sends raw bytes as one HTTP/1.1 request and returns the status line.
pub async fn raw_status(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Polls `check` until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A temporary directory kept for the test's duration.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Whether a process with `pid` exists.
pub fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Where an executable is, if anywhere.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// The value of the hidden input `name` in a page.
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let value = tag.split("value=\"").nth(1)?.split('"').next()?;
    Some(
        value
            .replace("&#x2f;", "/")
            .replace("&#x3d;", "=")
            .replace("&#43;", "+")
            .replace("&amp;", "&"),
    )
}

/// Logs `browser` in at a hub's login form (`origin` is where the hub's pages are), as a
/// person would: the form, its `_xsrf`, any password (dummy authenticator).
pub async fn login_at_hub(browser: &mut Browser, origin: &str, user: &str) {
    let page = browser.navigate(&format!("{origin}/hub/login")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let xsrf = hidden_field(&html, "_xsrf").expect("the login form's _xsrf");
    let resp = browser
        .http
        .post(format!("{origin}/hub/login"))
        .header(header::COOKIE, browser.jar.header_for("/hub/login"))
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-site", "same-origin")
        .header("origin", origin)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("_xsrf", &xsrf)
                .append_pair("username", user)
                .append_pair("password", "any")
                .finish(),
        )
        .send()
        .await
        .unwrap();
    browser.jar.absorb(&resp);
    assert_eq!(resp.status(), 302, "login: {:?}", resp.text().await);
}
