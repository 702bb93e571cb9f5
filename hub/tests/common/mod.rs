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

/// Defines an async test for both databases.
#[macro_export]
macro_rules! hub_test {
    ($name:ident, |$hub:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let owned =
                    $crate::common::TestHub::start($crate::common::Backend::Sqlite, "").await;
                {
                    let $hub = &owned;
                    $body.await;
                }
                owned.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let owned =
                    $crate::common::TestHub::start($crate::common::Backend::Postgres, "").await;
                {
                    let $hub = &owned;
                    $body.await;
                }
                owned.stop().await;
            }
        }
    };
    ($name:ident, config = $config:expr, |$hub:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let owned =
                    $crate::common::TestHub::start($crate::common::Backend::Sqlite, $config).await;
                {
                    let $hub = &owned;
                    $body.await;
                }
                owned.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let owned =
                    $crate::common::TestHub::start($crate::common::Backend::Postgres, $config)
                        .await;
                {
                    let $hub = &owned;
                    $body.await;
                }
                owned.stop().await;
            }
        }
    };
}

fn postgres_server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("JHRS_TEST_POSTGRES_URL") {
            return url;
        }
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/postgres-test-server.sh"
        );
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
fn fresh_postgres_db() -> String {
    let server = postgres_server_url();
    let name = format!("hubtest_{}", uuid::Uuid::new_v4().simple());
    let mut admin = diesel::PgConnection::establish(&server)
        .unwrap_or_else(|e| panic!("connect to {server}: {e} (JHRS_TEST_POSTGRES_URL)"));
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .expect("create test database");
    match server.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("unexpected postgres url {server}"),
    }
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
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let db_url = match backend {
            Backend::Sqlite => format!(
                "sqlite:///{}",
                dir.path().join("jupyterhub.sqlite").display()
            ),
            Backend::Postgres => tokio::task::spawn_blocking(fresh_postgres_db)
                .await
                .expect("pg"),
        };
        let text = format!(
            "[hub]\ndb_url = \"{db_url}\"\n[proxy]\nshould_start = false\nauth_token = \"unused-test-token\"\n{extra_config}"
        );
        let config = HubConfig::from_toml_str(&text, &dir.path().join("test_config.toml"))
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        let db = Db::connect(&db_url).await.expect("connect db");
        db.migrate().await.expect("migrate");
        let mock = Arc::new(MockSpawner::new());
        let spawner: Arc<dyn Spawner> = spawner.unwrap_or_else(|| mock.clone());
        let authenticator: Arc<dyn Authenticator> = Arc::new(DummyAuthenticator::default());
        let state = AppState::new(
            config,
            db,
            CookieSecret::generate(),
            spawner,
            authenticator,
            None,
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
