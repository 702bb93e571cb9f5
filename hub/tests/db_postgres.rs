//! The database suite against a real PostgreSQL server, plus what only a server shows:
//! concurrent migration, killed connections, server-side error codes.
//!
//! The server comes from `JHRS_TEST_POSTGRES_URL` (a URL to any database the test user may
//! create databases from); if that is set but unreachable, every test here FAILS. If it is not
//! set, `scripts/postgres-test-server.sh start` provides one (installing PostgreSQL if needed).
//! Each test gets its own freshly created database, dropped afterwards.
//!
//! Portable: to run this from `hub/tests/`, change the `use` below to `use hub::db;`.

use hub::db;

#[path = "../src/db/tests/suite.rs"]
#[macro_use]
#[cfg(test)]
mod suite;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::Text;

use db::models::users::{self, NewUser};
use db::{Backend, Db, DbError, DbOptions, upgrade_db};

// === server and per-test databases ===

/// The base URL, resolved once per test binary.
fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("JHRS_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => {
            if let Err(e) = PgConnection::establish(&url) {
                panic!("JHRS_TEST_POSTGRES_URL is set but PostgreSQL is unreachable there: {e}");
            }
            url
        }
        _ => start_local_server(),
    })
}

fn start_local_server() -> String {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let script = std::env::var_os("JHRS_PG_SCRIPT")
        .map(PathBuf::from)
        .or_else(|| {
            [manifest.join("scripts"), manifest.join("../scripts")]
                .into_iter()
                .map(|dir| dir.join("postgres-test-server.sh"))
                .find(|p| p.exists())
        })
        .expect("scripts/postgres-test-server.sh not found; set JHRS_TEST_POSTGRES_URL or JHRS_PG_SCRIPT");
    let output = Command::new("bash")
        .arg(&script)
        .arg("start")
        .output()
        .expect("running postgres-test-server.sh");
    assert!(
        output.status.success(),
        "{} start failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .last()
        .expect("postgres-test-server.sh printed no URL")
        .trim()
        .to_string()
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let (head, rest) = url.split_at(scheme_end);
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{head}{authority}/{name}{query}")
}

/// A fresh database on the test server, dropped (with its connections) on drop.
struct PgTestDb {
    name: String,
    url: String,
}

impl PgTestDb {
    fn create() -> PgTestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base = server_url();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "jhrs_test_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::establish(base).expect("connecting to the test server");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .expect("CREATE DATABASE");
        PgTestDb {
            url: with_database(base, &name),
            name,
        }
    }

    fn connect(&self) -> Db {
        let options = DbOptions {
            max_connections: Some(4),
            connection_timeout: Duration::from_secs(10),
        };
        Db::connect_blocking(&self.url, &options).expect("connecting to the test database")
    }

    fn migrated(&self) -> Db {
        let db = self.connect();
        db.migrate_blocking().expect("migrating the test database");
        db
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(server_url()) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

// === the suite ===

macro_rules! postgres_suite {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let test_db = PgTestDb::create();
                let db = test_db.migrated();
                assert_eq!(db.backend(), Backend::Postgres);
                db.run_blocking(|conn| {
                    suite::$name(conn);
                    Ok(())
                })
                .unwrap();
            }
        )*
    };
}

mod suite_on_postgres {
    use super::*;
    for_each_suite_test!(postgres_suite);
}

// === server-only behaviour ===

#[test]
fn concurrent_migrations_apply_once() {
    let test_db = PgTestDb::create();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let db = test_db.connect();
            std::thread::spawn(move || db.migrate_blocking())
        })
        .collect();
    let applied: Vec<Vec<String>> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert_eq!(
        applied.iter().filter(|a| !a.is_empty()).count(),
        1,
        "{applied:?}"
    );
    assert!(
        test_db
            .connect()
            .pending_migrations_blocking()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn migrate_refuses_a_database_from_a_newer_hub() {
    let test_db = PgTestDb::create();
    let db = test_db.migrated();
    db.run_blocking(|conn| {
        diesel::sql_query(
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('29990101000000')",
        )
        .execute(conn)
    })
    .unwrap();
    assert!(
        matches!(db.migrate_blocking(), Err(DbError::Migration(msg)) if msg.contains("29990101000000"))
    );
}

#[tokio::test]
async fn upgrade_db_migrates_in_place() {
    let test_db = PgTestDb::create();
    let report = upgrade_db(&test_db.url).await.unwrap();
    assert_eq!((report.backup, report.applied.len()), (None, 1));
    let again = upgrade_db(&test_db.url).await.unwrap();
    assert!(again.applied.is_empty());
}

#[tokio::test]
async fn run_classifies_server_errors() {
    let test_db = PgTestDb::create();
    let db = test_db.migrated();
    db.run(|conn| {
        users::insert(
            conn,
            &NewUser {
                name: "alice",
                admin: false,
                cookie_id: "c",
            },
        )
    })
    .await
    .unwrap();
    let dup = db
        .run(|conn| {
            users::insert(
                conn,
                &NewUser {
                    name: "alice",
                    admin: false,
                    cookie_id: "d",
                },
            )
        })
        .await;
    assert!(
        matches!(dup, Err(DbError::UniqueViolation(ref m)) if m.contains("users")),
        "{dup:?}"
    );
    assert!(matches!(
        db.run(|conn| users::delete(conn, 9999)).await,
        Err(DbError::NotFound)
    ));
    let failed = db
        .transaction(|conn| {
            users::insert(
                conn,
                &NewUser {
                    name: "bob",
                    admin: false,
                    cookie_id: "b",
                },
            )?;
            users::insert(
                conn,
                &NewUser {
                    name: "alice",
                    admin: false,
                    cookie_id: "e",
                },
            )
        })
        .await;
    assert!(matches!(failed, Err(DbError::UniqueViolation(_))));
    assert!(
        db.run(|conn| users::find_by_name(conn, "bob"))
            .await
            .unwrap()
            .is_none()
    );
}

#[derive(QueryableByName)]
struct Terminated {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Connections killed under the pool (a server restart looks the same) are replaced: the
/// next calls succeed, and any call caught in between reports `Unavailable`.
#[tokio::test]
async fn pool_recovers_when_the_server_drops_connections() {
    let test_db = PgTestDb::create();
    let db = test_db.migrated();
    db.ping().await.unwrap();
    let mut admin = PgConnection::establish(server_url()).unwrap();
    let killed: Terminated = diesel::sql_query(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE datname = $1",
    )
    .bind::<Text, _>(&test_db.name)
    .get_result(&mut admin)
    .unwrap();
    assert!(killed.n >= 1);

    let mut ok = false;
    for _ in 0..5 {
        match db.run(users::count).await {
            Ok(n) => {
                assert_eq!(n, 0);
                ok = true;
                break;
            }
            Err(e) => assert!(matches!(e, DbError::Unavailable(_)), "{e:?}"),
        }
    }
    assert!(ok, "the pool never recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_all_succeed() {
    let test_db = PgTestDb::create();
    let db = test_db.migrated();
    let mut tasks = Vec::new();
    for worker in 0..6 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                db.transaction(move |conn| {
                    let name = format!("w{worker}-{i}");
                    users::insert(
                        conn,
                        &NewUser {
                            name: &name,
                            admin: false,
                            cookie_id: &name,
                        },
                    )?;
                    Ok(())
                })
                .await?;
            }
            Ok::<_, DbError>(())
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(db.run(users::count).await.unwrap(), 60);
}

#[test]
fn database_urls_are_rewritten_per_test() {
    assert_eq!(
        with_database("postgresql://u@h:1/base", "t1"),
        "postgresql://u@h:1/t1"
    );
    assert_eq!(
        with_database("postgresql://u@h:1", "t1"),
        "postgresql://u@h:1/t1"
    );
    assert_eq!(
        with_database("postgresql://u:p@h/base?sslmode=disable", "t1"),
        "postgresql://u:p@h/t1?sslmode=disable"
    );
}
