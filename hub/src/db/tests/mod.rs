//! Database tests on SQLite. `suite.rs` holds the backend-independent checks of every model
//! function; each runs here against its own freshly migrated database file, and the PostgreSQL
//! harness runs the same functions against a real server. The tests below the suite cover what
//! only SQLite files and the pool show: PRAGMAs, concurrent writers, migrations, `upgrade-db`.

#[macro_use]
pub(crate) mod suite;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};

use crate::db::models::users::{self, NewUser};
use crate::db::{Backend, Db, DbError, DbOptions, DbTarget, upgrade_db};

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "jhrs-db-test-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sqlite_url(path: &Path) -> String {
    // sqlite:/// + an absolute path = SQLAlchemy's four-slash absolute form.
    format!("sqlite:///{}", path.display())
}

/// A migrated database in its own file; the directory goes when this is dropped.
struct SqliteDb {
    db: Db,
    dir: TempDir,
}

fn sqlite_db() -> SqliteDb {
    let dir = TempDir::new();
    let db = Db::connect_blocking(
        &sqlite_url(&dir.path().join("jupyterhub.sqlite")),
        &DbOptions::default(),
    )
    .unwrap();
    db.migrate_blocking().unwrap();
    SqliteDb { db, dir }
}

macro_rules! sqlite_suite {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let t = sqlite_db();
                t.db.run_blocking(|conn| {
                    suite::$name(conn);
                    Ok(())
                })
                .unwrap();
            }
        )*
    };
}

mod suite_on_sqlite {
    use super::*;
    for_each_suite_test!(sqlite_suite);
}

#[derive(QueryableByName)]
struct Pragmas {
    #[diesel(sql_type = Integer)]
    foreign_keys: i32,
    #[diesel(sql_type = Text)]
    journal_mode: String,
    #[diesel(sql_type = Integer)]
    busy_timeout: i32,
    #[diesel(sql_type = Integer)]
    synchronous: i32,
}

#[test]
fn every_pooled_connection_has_the_pragmas() {
    let t = sqlite_db();
    assert_eq!(t.db.backend(), Backend::Sqlite);
    // Hold several connections at once so the pool has to open more than one.
    let held: Vec<_> = (0..4).map(|_| t.db.pool.get().unwrap()).collect();
    for mut conn in held {
        let p: Pragmas = diesel::sql_query(
            "SELECT (SELECT foreign_keys FROM pragma_foreign_keys()) AS foreign_keys,
                    (SELECT journal_mode FROM pragma_journal_mode()) AS journal_mode,
                    (SELECT timeout FROM pragma_busy_timeout()) AS busy_timeout,
                    (SELECT synchronous FROM pragma_synchronous()) AS synchronous",
        )
        .get_result(&mut *conn)
        .unwrap();
        assert_eq!(
            (
                p.foreign_keys,
                p.journal_mode.as_str(),
                p.busy_timeout,
                p.synchronous
            ),
            (1, "wal", 5000, 1)
        );
    }
}

#[derive(QueryableByName)]
struct ForeignKey {
    #[diesel(sql_type = Text)]
    child: String,
    #[diesel(sql_type = Text)]
    parent: String,
    #[diesel(sql_type = Text)]
    on_delete: String,
}

/// Every foreign key cascades: deleting a parent never fails on, or leaves behind, a child.
#[test]
fn every_foreign_key_cascades() {
    let t = sqlite_db();
    let keys: Vec<ForeignKey> =
        t.db.run_blocking(|conn| {
            diesel::sql_query(
                "SELECT m.name AS child, f.\"table\" AS parent, f.on_delete AS on_delete
                 FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f
                 WHERE m.type = 'table' ORDER BY m.name",
            )
            .load(conn)
        })
        .unwrap();
    assert!(keys.len() >= 20, "found only {} foreign keys", keys.len());
    for key in &keys {
        assert_eq!(key.on_delete, "CASCADE", "{} -> {}", key.child, key.parent);
    }
    for child in [
        "spawners",
        "api_tokens",
        "oauth_codes",
        "shares",
        "share_codes",
        "user_group_map",
    ] {
        assert!(
            keys.iter()
                .any(|k| k.child == child && (k.parent == "users" || k.parent == "spawners")),
            "{child}"
        );
    }
}

#[test]
fn migrations_are_idempotent() {
    let dir = TempDir::new();
    let db = Db::connect_blocking(
        &sqlite_url(&dir.path().join("a.sqlite")),
        &DbOptions::default(),
    )
    .unwrap();
    let pending = db.pending_migrations_blocking().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(db.migrate_blocking().unwrap(), pending);
    assert!(db.migrate_blocking().unwrap().is_empty());
    assert!(db.pending_migrations_blocking().unwrap().is_empty());
}

#[test]
fn migrate_refuses_a_database_from_a_newer_hub() {
    let t = sqlite_db();
    t.db.run_blocking(|conn| {
        diesel::sql_query(
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('29990101000000')",
        )
        .execute(conn)
    })
    .unwrap();
    assert!(
        matches!(t.db.migrate_blocking(), Err(DbError::Migration(msg)) if msg.contains("29990101000000"))
    );
    assert!(matches!(
        t.db.pending_migrations_blocking(),
        Err(DbError::Migration(_))
    ));
}

#[tokio::test]
async fn upgrade_db_backs_up_an_outdated_file_first() {
    use std::os::unix::fs::PermissionsExt;

    let dir = TempDir::new();
    let file = dir.path().join("jupyterhub.sqlite");
    let url = sqlite_url(&file);
    // An existing, unmigrated database with some data in it.
    {
        let db = Db::connect(&url).await.unwrap();
        db.run(|conn| {
            diesel::sql_query("CREATE TABLE legacy (x INTEGER)").execute(conn)?;
            diesel::sql_query("INSERT INTO legacy VALUES (42)").execute(conn)
        })
        .await
        .unwrap();
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let report = upgrade_db(&url).await.unwrap();
    assert_eq!(report.applied.len(), 1);
    let backup = report.backup.unwrap();
    let backup_name = backup.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        backup_name.starts_with("jupyterhub.sqlite.") && backup_name.ends_with(".bak"),
        "{backup_name}"
    );
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The backup is the database as it was: the legacy table, no hub tables.
    let old = Db::connect(&sqlite_url(&backup)).await.unwrap();
    #[derive(QueryableByName)]
    struct X {
        #[diesel(sql_type = Integer)]
        x: i32,
    }
    let rows: Vec<X> = old
        .run(|conn| diesel::sql_query("SELECT x FROM legacy").load(conn))
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.x).collect::<Vec<_>>(), [42]);
    assert!(old.run(users::count).await.is_err());

    // Up to date now: nothing to apply, no second backup.
    let again = upgrade_db(&url).await.unwrap();
    assert_eq!((again.backup, again.applied.len()), (None, 0));
    let backups = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".bak"))
        })
        .count();
    assert_eq!(backups, 1);
}

#[tokio::test]
async fn upgrade_db_creates_a_missing_file_without_backup() {
    let dir = TempDir::new();
    let file = dir.path().join("new.sqlite");
    let report = upgrade_db(&sqlite_url(&file)).await.unwrap();
    assert_eq!((report.backup, report.applied.len()), (None, 1));
    assert!(file.exists());
}

#[tokio::test]
async fn run_classifies_errors_and_transaction_rolls_back() {
    let t = sqlite_db();
    let db = &t.db;
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
        matches!(dup, Err(ref e @ DbError::UniqueViolation(_)) if e.is_unique_violation() && !e.is_retryable())
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
    db.ping().await.unwrap();
}

/// Four pooled connections, read-then-write transactions from many tasks: `BEGIN IMMEDIATE`
/// plus the busy timeout serialise the writers instead of failing them with "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_serialised_not_failed() {
    let t = sqlite_db();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let db = t.db.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                db.transaction(move |conn| {
                    let n = users::count(conn)?;
                    let name = format!("w{worker}-{i}-{n}");
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
    assert_eq!(t.db.run(users::count).await.unwrap(), 120);
}

/// A writer that cannot get the lock reports `Busy` (retryable), not a generic error.
#[test]
fn lock_contention_is_classified_as_busy() {
    use diesel::connection::SimpleConnection;

    let t = sqlite_db();
    let mut holder = t.db.pool.get().unwrap();
    let mut other = t.db.pool.get().unwrap();
    holder.batch_execute("BEGIN IMMEDIATE").unwrap();
    // Give up at once instead of after the 5 s busy timeout.
    other.batch_execute("PRAGMA busy_timeout = 0").unwrap();
    let err = users::insert(
        &mut other,
        &NewUser {
            name: "x",
            admin: false,
            cookie_id: "x",
        },
    )
    .unwrap_err();
    let err = DbError::from(err);
    assert!(
        matches!(err, DbError::Busy(_)) && err.is_retryable(),
        "{err:?}"
    );
    holder.batch_execute("ROLLBACK").unwrap();
}

#[tokio::test]
async fn memory_databases_live_in_one_connection() {
    for url in ["sqlite://", "sqlite://:memory:", "sqlite:///:memory:"] {
        let db = Db::connect(url).await.unwrap();
        assert_eq!(db.target(), &DbTarget::SqliteMemory);
        db.migrate().await.unwrap();
        db.run(|conn| {
            users::insert(
                conn,
                &NewUser {
                    name: "a",
                    admin: false,
                    cookie_id: "a",
                },
            )
        })
        .await
        .unwrap();
        let clone = db.clone();
        assert_eq!(clone.run(users::count).await.unwrap(), 1, "{url}");
    }
}

#[tokio::test]
async fn bad_urls_fail_fast() {
    let dir = TempDir::new();
    let started = Instant::now();
    assert!(matches!(
        Db::connect("mysql://localhost/jh").await,
        Err(DbError::Config(_))
    ));
    assert!(matches!(
        Db::connect("jupyterhub.sqlite").await,
        Err(DbError::Config(_))
    ));
    let missing_dir = dir.path().join("no/such/dir/jupyterhub.sqlite");
    assert!(Db::connect(&sqlite_url(&missing_dir)).await.is_err());
    // Nothing listens on port 1.
    let options = DbOptions {
        connection_timeout: Duration::from_secs(2),
        ..DbOptions::default()
    };
    let unreachable = Db::connect_with(
        "postgresql://postgres@127.0.0.1:1/jh?connect_timeout=2",
        options,
    )
    .await;
    assert!(
        matches!(unreachable, Err(DbError::Unavailable(_))),
        "{unreachable:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn debug_output_hides_secrets() {
    let t = sqlite_db();
    let debug = format!("{:?}", t.db);
    assert!(debug.contains("SqliteFile"), "{debug}");
    let user =
        t.db.run_blocking(|conn| {
            users::insert(
                conn,
                &NewUser {
                    name: "alice",
                    admin: false,
                    cookie_id: "secret-cookie",
                },
            )
        })
        .unwrap();
    assert!(!format!("{user:?}").contains("secret-cookie"));
    let _ = &t.dir;
}
