//! `TestHub`: the real hub application on a loopback port, with its own database (a fresh
//! SQLite file, or a fresh PostgreSQL database), test-double plugins, and typed callers.
//!
//! `hub_test!(name, |hub| async move { ... })` defines the test twice: `name::sqlite` and
//! `name::postgres`. PostgreSQL comes from `JHRS_TEST_POSTGRES_URL`, or is started with
//! `scripts/postgres-test-server.sh` on first use.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::sync::{Arc, OnceLock};

use chrono::Utc;
use diesel::{Connection, RunQueryDsl};
use hub::config::HubConfig;
use hub::cookie_secret::CookieSecret;
use hub::db::Db;
use hub::db::models::{api_tokens, oauth_clients, users};
use hub::identity::tokens::{self, HashedToken};
use hub::state::AppState;
use hub_plugin::test_util::{DummyAuthenticator, MockSpawner};
use hub_plugin::{Authenticator, Spawner};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Defines `sqlite` and `postgres`, the test run against each database: each calls
/// `$run(backend).await`. For the test macros of a file that starts its hub in a way of its own.
#[macro_export]
macro_rules! each_backend {
    ($run:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sqlite() {
            $run($crate::common::Backend::Sqlite).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn postgres() {
            $run($crate::common::Backend::Postgres).await;
        }
    };
}

/// Defines an async test for both databases.
#[macro_export]
macro_rules! hub_test {
    ($name:ident, |$hub:ident| $body:expr) => {
        $crate::hub_test!($name, config = "", |$hub| $body);
    };
    ($name:ident, config = $config:expr, |$hub:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[allow(
                clippy::unwrap_used,
                clippy::expect_used,
                reason = "the body of a test: a panic is a clear failure"
            )]
            async fn run(backend: $crate::common::Backend) {
                let owned = $crate::common::TestHub::start(backend, $config).await;
                {
                    let $hub = &owned;
                    $body.await;
                }
                owned.stop().await;
            }

            $crate::each_backend!(run);
        }
    };
}

fn postgres_server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("JHRS_TEST_POSTGRES_URL") {
            return url;
        }
        let script = manifest_dir().join("../scripts/postgres-test-server.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg("start")
            .output()
            .expect("run scripts/postgres-test-server.sh");
        assert!(
            out.status.success(),
            "scripts/postgres-test-server.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8 url")
            .trim()
            .to_owned()
    })
    .clone()
}

/// A fresh database on the test PostgreSQL server.
fn fresh_postgres_db() -> PgDatabase {
    let server = postgres_server_url();
    let name = format!("hubtest_{}", uuid::Uuid::new_v4().simple());
    let mut admin = diesel::PgConnection::establish(&server)
        .unwrap_or_else(|e| panic!("connect to {server}: {e} (JHRS_TEST_POSTGRES_URL)"));
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .expect("create test database");
    let url = match server.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("unexpected postgres url {server}"),
    };
    PgDatabase { server, name, url }
}

/// A test's own PostgreSQL database, dropped (with any connections still open) when the test
/// ends, passed or failed, so a test run does not fill the disk with databases.
pub struct PgDatabase {
    server: String,
    name: String,
    pub url: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let Ok(mut admin) = diesel::PgConnection::establish(&self.server) else {
            return;
        };
        let _ = diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin);
    }
}

/// Splits a leading `[hub]` section off `extra_config`, so tests can set `[hub]` keys (TOML
/// allows a table only once; the harness writes `[hub]` itself). Returns the hub keys (each
/// line ending in a newline) and the rest.
fn split_hub_keys(extra_config: &str) -> (String, &str) {
    let Some(rest) = extra_config.strip_prefix("[hub]\n") else {
        return (String::new(), extra_config);
    };
    let end = rest
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| rest[i..].starts_with('['))
        .unwrap_or(rest.len());
    let mut keys = rest[..end].to_owned();
    if !keys.is_empty() && !keys.ends_with('\n') {
        keys.push('\n');
    }
    (keys, &rest[end..])
}

/// A caller with a token.
#[derive(Debug, Clone)]
pub struct Persona {
    pub name: String,
    pub token: String,
}

/// The hub under test.
pub struct TestHub {
    pub state: AppState,
    /// `http://127.0.0.1:<port>`.
    pub origin: String,
    pub client: reqwest::Client,
    pub spawner: Arc<MockSpawner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
    /// Dropped last: the database outlives the hub's connections to it.
    _pg: Option<PgDatabase>,
    /// The `chp-proxy` of [`TestHub::start_with_proxy`].
    pub proxy: Option<TestProxy>,
}

impl TestHub {
    /// Starts a hub with `extra_config` (TOML) added to the test defaults.
    pub async fn start(backend: Backend, extra_config: &str) -> Self {
        Self::start_with(backend, extra_config, None).await
    }

    /// Like [`TestHub::start`], with another spawner.
    pub async fn start_with(
        backend: Backend,
        extra_config: &str,
        spawner: Option<Arc<dyn Spawner>>,
    ) -> Self {
        Self::start_inner(backend, extra_config, spawner, None, None).await
    }

    /// Like [`TestHub::start_with`], with another authenticator too.
    pub async fn start_with_authenticator(
        backend: Backend,
        extra_config: &str,
        spawner: Option<Arc<dyn Spawner>>,
        authenticator: Arc<dyn Authenticator>,
    ) -> Self {
        Self::start_inner(backend, extra_config, spawner, None, Some(authenticator)).await
    }

    /// Like [`TestHub::start_with`], with a real `chp-proxy` (see [`TestProxy`]) that the hub
    /// drives: `state.proxy` is set.
    pub async fn start_with_proxy(
        backend: Backend,
        extra_config: &str,
        spawner: Option<Arc<dyn Spawner>>,
    ) -> Self {
        let proxy = TestProxy::start().await;
        Self::start_inner(backend, extra_config, spawner, Some(proxy), None).await
    }

    async fn start_inner(
        backend: Backend,
        extra_config: &str,
        spawner: Option<Arc<dyn Spawner>>,
        proxy: Option<TestProxy>,
        authenticator: Option<Arc<dyn Authenticator>>,
    ) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut pg = None;
        let db_url = match backend {
            Backend::Sqlite => format!(
                "sqlite:///{}",
                dir.path().join("jupyterhub.sqlite").display()
            ),
            Backend::Postgres => {
                let db = tokio::task::spawn_blocking(fresh_postgres_db)
                    .await
                    .expect("pg");
                let url = db.url.clone();
                pg = Some(db);
                url
            }
        };
        let (hub_keys, extra_config) = split_hub_keys(extra_config);
        let text = format!(
            "[hub]\ndb_url = \"{db_url}\"\n{hub_keys}[proxy]\nshould_start = false\nauth_token = \"unused-test-token\"\n{extra_config}"
        );
        let config = HubConfig::from_toml_str(&text, &dir.path().join("test_config.toml"))
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        let db = Db::connect(&db_url).await.expect("connect db");
        db.migrate().await.expect("migrate");
        let mock = Arc::new(MockSpawner::new());
        let spawner: Arc<dyn Spawner> = spawner.unwrap_or_else(|| mock.clone());
        let authenticator: Arc<dyn Authenticator> =
            authenticator.unwrap_or_else(|| Arc::new(DummyAuthenticator::default()));
        let state = AppState::new(
            config,
            db,
            CookieSecret::generate(),
            spawner,
            authenticator,
            proxy.as_ref().map(TestProxy::control),
        )
        .expect("state");
        hub::startup::load_config_entities(&state)
            .await
            .expect("config entities");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serve_state = state.clone();
        let task = tokio::spawn(async move {
            let _ = hub::app::serve(serve_state, listener, async {
                let _ = rx.await;
            })
            .await;
        });
        Self {
            state,
            origin,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            spawner: mock,
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
            proxy,
            _pg: pg,
        }
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
    }

    /// `http://127.0.0.1:<port>/hub/api<path>`.
    pub fn api_url(&self, path: &str) -> String {
        format!("{}/hub/api{path}", self.origin)
    }

    /// Creates a user directly in the database and gives them an API token (scopes `inherit`
    /// unless given).
    pub async fn user(&self, name: &str, admin: bool) -> Persona {
        self.user_with_scopes(name, admin, &["inherit"]).await
    }

    /// Creates a user (if missing) with a token holding `scopes`.
    pub async fn user_with_scopes(&self, name: &str, admin: bool, scopes: &[&str]) -> Persona {
        let name = name.to_owned();
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let token = tokens::new_api_token();
        let hashed = HashedToken::new(&token, tokens::GENERATED_ROUNDS).to_string();
        let prefix = tokens::token_prefix(&token).to_owned();
        let n = name.clone();
        self.state
            .db
            .run(move |conn| {
                let user = match users::find_by_name(conn, &n)? {
                    Some(u) => u,
                    None => {
                        let cookie_id = tokens::new_session_id();
                        users::insert(
                            conn,
                            &users::NewUser {
                                name: &n,
                                admin,
                                cookie_id: &cookie_id,
                            },
                        )?
                    }
                };
                api_tokens::insert(
                    conn,
                    &api_tokens::NewApiToken {
                        prefix: &prefix,
                        hashed: &hashed,
                        owner: api_tokens::TokenOwner::User(user.id),
                        spawner_id: None,
                        client_id: oauth_clients::JUPYTERHUB_CLIENT_ID,
                        session_id: None,
                        note: "test",
                        scopes: &scopes,
                        expires_at: None,
                    },
                )?;
                Ok(())
            })
            .await
            .expect("create user");
        Persona { name, token }
    }

    /// Sends an API request; returns status, headers and the JSON body (`Null` if empty or
    /// not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        who: Option<&Persona>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.client.request(method, self.api_url(path));
        if let Some(p) = who {
            req = req.header("Authorization", format!("token {}", p.token));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, json)
    }

    pub async fn get(&self, path: &str, who: Option<&Persona>) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::GET, path, who, None).await;
        (s, v)
    }

    pub async fn post(
        &self,
        path: &str,
        who: Option<&Persona>,
        body: Value,
    ) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::POST, path, who, Some(body)).await;
        (s, v)
    }

    pub async fn delete(&self, path: &str, who: Option<&Persona>) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::DELETE, path, who, None).await;
        (s, v)
    }

    /// The current time, for comparisons.
    pub fn now() -> chrono::DateTime<Utc> {
        Utc::now()
    }
}

/// How a [`Browser`] request carries the `_xsrf` token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Xsrf {
    /// Not at all.
    Omit,
    /// As the `_xsrf` query argument (what the admin UI and `jhapi.js` do).
    Query,
    /// In the `X-XSRFToken` header.
    Header,
    /// A well-formed token that does not match the `_xsrf` cookie.
    Wrong,
}

/// A logged-in browser: the `jupyterhub-hub-login` cookie of a user, a session id, and the
/// matching `_xsrf` cookie and token.
#[derive(Debug, Clone)]
pub struct Browser {
    pub name: String,
    /// The `Cookie` header sent with every request.
    pub cookie: String,
    /// The `_xsrf` token (also the `_xsrf` cookie's value).
    pub xsrf: String,
    api_base: String,
    client: reqwest::Client,
    wrong_xsrf: String,
}

impl TestHub {
    /// A browser logged in as `name` (created as a non-admin if missing).
    pub async fn browser(&self, name: &str) -> Browser {
        use hub::identity::cookies::{self, HUB_LOGIN_COOKIE, SESSION_COOKIE, XSRF_COOKIE};
        use hub::identity::xsrf;
        let n = name.to_owned();
        let cookie_id = self
            .state
            .db
            .run(move |conn| {
                let user = match users::find_by_name(conn, &n)? {
                    Some(u) => u,
                    None => {
                        let cookie_id = tokens::new_session_id();
                        users::insert(
                            conn,
                            &users::NewUser {
                                name: &n,
                                admin: false,
                                cookie_id: &cookie_id,
                            },
                        )?
                    }
                };
                Ok(user.cookie_id)
            })
            .await
            .expect("create browser user");
        let secret = self.state.cookie_secret.as_bytes();
        let now = Utc::now().timestamp();
        let login =
            cookies::create_signed_value(secret, HUB_LOGIN_COOKIE, cookie_id.as_bytes(), now);
        let session = tokens::new_session_id();
        let xsrf_token =
            xsrf::create_xsrf_token(secret, &xsrf::logged_in_xsrf_id(&session, &cookie_id), now);
        let wrong_xsrf = xsrf::create_xsrf_token(
            secret,
            &xsrf::logged_in_xsrf_id(&tokens::new_session_id(), &cookie_id),
            now,
        );
        let cookie = format!(
            "{HUB_LOGIN_COOKIE}={}; {SESSION_COOKIE}={session}; {XSRF_COOKIE}={xsrf_token}",
            cookies::quote_cookie_value(&login)
        );
        Browser {
            name: name.to_owned(),
            cookie,
            xsrf: xsrf_token,
            api_base: self.api_url(""),
            client: self.client.clone(),
            wrong_xsrf,
        }
    }
}

impl Browser {
    /// Sends an API request with the browser's cookies; `sec_fetch_mode` is sent as
    /// `Sec-Fetch-Mode` when given. Returns status and JSON body (`Null` if none).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        xsrf: Xsrf,
        sec_fetch_mode: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut url = format!("{}{path}", self.api_base);
        let token = match xsrf {
            Xsrf::Wrong => Some(self.wrong_xsrf.as_str()),
            Xsrf::Query | Xsrf::Header => Some(self.xsrf.as_str()),
            Xsrf::Omit => None,
        };
        if let (Some(token), Xsrf::Query | Xsrf::Wrong) = (token, xsrf) {
            url.push(if path.contains('?') { '&' } else { '?' });
            url.push_str("_xsrf=");
            url.push_str(token);
        }
        let mut req = self
            .client
            .request(method, url)
            .header("Cookie", &self.cookie);
        if let (Some(token), Xsrf::Header) = (token, xsrf) {
            req = req.header("X-XSRFToken", token);
        }
        if let Some(mode) = sec_fetch_mode {
            req = req.header("Sec-Fetch-Mode", mode);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A request with the `_xsrf` query argument, as the hub's own pages send them.
    pub async fn with_xsrf(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.send(method, path, body, Xsrf::Query, Some("cors"))
            .await
    }

    /// A request without any `_xsrf` token (a forged cross-site request).
    pub async fn without_xsrf(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.send(method, path, body, Xsrf::Omit, Some("cors"))
            .await
    }
}

/// A `chp-proxy` on free loopback ports, killed on drop. The binary is `CHP_PROXY_BIN`, else
/// `chp-proxy` beside the test binary's `deps/` directory (`cargo build -p chp-proxy`).
#[derive(Debug)]
pub struct TestProxy {
    _child: tokio::process::Child,
    /// Public port.
    pub port: u16,
    /// API port.
    pub api_port: u16,
    /// API token.
    pub token: String,
}

impl TestProxy {
    fn binary() -> std::path::PathBuf {
        if let Some(path) = std::env::var_os("CHP_PROXY_BIN") {
            return path.into();
        }
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(std::path::Path::parent)
            .expect("target/<profile>/deps");
        let path = profile_dir.join("chp-proxy");
        assert!(
            path.is_file(),
            "{} is missing: cargo build -p chp-proxy (or set CHP_PROXY_BIN)",
            path.display()
        );
        path
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
    }

    /// Starts the proxy and waits for its API.
    pub async fn start() -> Self {
        let (port, api_port) = (Self::free_port(), Self::free_port());
        let token = tokens::new_api_token();
        let child = tokio::process::Command::new(Self::binary())
            .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--api-ip", "127.0.0.1", "--api-port", &api_port.to_string()])
            .env("CONFIGPROXY_AUTH_TOKEN", &token)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chp-proxy");
        let proxy = TestProxy {
            _child: child,
            port,
            api_port,
            token,
        };
        let client = proxy.client();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while client
            .ping(std::time::Duration::from_secs(1))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "chp-proxy did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        proxy
    }

    /// An API client for the proxy.
    pub fn client(&self) -> hub::proxy::ChpClient {
        let url = url::Url::parse(&format!("http://127.0.0.1:{}", self.api_port)).expect("url");
        let mut config = hub::proxy::ChpClientConfig::new(url, self.token.clone());
        config.retry_timeout = std::time::Duration::from_secs(5);
        hub::proxy::ChpClient::new(config).expect("proxy client")
    }

    /// A control for the hub (reconciliation only on demand).
    pub fn control(&self) -> hub::proxy::ProxyControl {
        hub::proxy::ProxyControl::new(self.client(), std::time::Duration::from_secs(3600))
    }
}

/// A page response: status, headers and body text.
#[derive(Debug)]
pub struct PageResponse {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl PageResponse {
    /// The `Location` header.
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// The `Set-Cookie` header that sets or clears `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value of the hidden `_xsrf` field of a form on the page.
    pub fn xsrf_field(&self) -> Option<String> {
        let marker = "name=\"_xsrf\" value=\"";
        let start = self.body.find(marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].to_owned())
    }
}

/// Cookies a browser keeps across page requests (names only; paths are not modelled).
#[derive(Debug, Clone, Default)]
pub struct CookieJar {
    cookies: std::collections::BTreeMap<String, String>,
}

impl CookieJar {
    /// Applies the `Set-Cookie` headers of `resp` (a cleared cookie is dropped).
    pub fn update(&mut self, resp: &PageResponse) {
        for header in resp.set_cookies() {
            let pair = header.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let cleared = header.contains("Max-Age=0") || value.is_empty() || value == "\"\"";
            if cleared {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    /// The value of cookie `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// The `Cookie` header.
    pub fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl TestHub {
    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// Sends a page request: `cookie` as the `Cookie` header, `form` form-encoded, and extra
    /// `headers`.
    pub async fn page(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        form: Option<&[(&str, &str)]>,
        headers: &[(&str, &str)],
    ) -> PageResponse {
        let mut req = self.client.request(method, self.url(path));
        if let Some(cookie) = cookie.filter(|c| !c.is_empty()) {
            req = req.header("Cookie", cookie);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(form) = form {
            let body: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form.iter())
                .finish();
            req = req
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let resp = req.send().await.expect("page request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        PageResponse {
            status,
            headers,
            body,
        }
    }

    /// `GET path` with `cookie`.
    pub async fn get_page(&self, path: &str, cookie: Option<&str>) -> PageResponse {
        self.page(Method::GET, path, cookie, None, &[]).await
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
