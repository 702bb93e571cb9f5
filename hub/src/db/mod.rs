//! The hub's database: diesel schema, one model file per table, embedded migrations, and a
//! pooled handle that async code uses.
//!
//! - `connection.rs`: [`DbConnection`], one enum over SQLite and PostgreSQL; the URL's scheme
//!   picks the backend at runtime (`target.rs` parses JupyterHub/SQLAlchemy-style URLs).
//! - `pool.rs`: the r2d2 pool and the per-connection SQLite PRAGMAs.
//! - `migrate.rs`: `hub/migrations/{sqlite,postgres}` compiled in; [`upgrade_db`] backs up first.
//! - `schema.rs`: the `table!` definitions; `models/`: typed rows and intent-named queries.
//! - `error.rs`: [`DbError`], the classification callers map to HTTP statuses.
//!
//! Model functions are synchronous and take `&mut DbConnection`; async code calls them inside
//! [`Db::run`], which borrows a pooled connection on tokio's blocking pool. Functions that write
//! several rows do so in one [`write_transaction`], so a failure never leaves half a change.

mod connection;
mod error;
mod json;
mod migrate;
pub mod models;
mod pool;
pub mod schema;
mod target;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use chrono::{NaiveDateTime, SubsecRound, Utc};
use diesel::QueryResult;
use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::r2d2::Pool;
use tokio::sync::Semaphore;

pub use self::connection::{DbConnection, MultiBackend};
pub use self::error::DbError;
pub use self::json::JsonText;
pub use self::migrate::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, UpgradeReport};
pub use self::pool::DbOptions;
pub use self::target::{Backend, DbTarget};

/// A cloneable handle to the connection pool. Cheap to clone; every clone shares the pool.
#[derive(Clone)]
pub struct Db {
    pool: Pool<pool::Manager>,
    target: Arc<DbTarget>,
    /// One permit per pooled connection. [`Db::run`] takes one before it moves to the blocking
    /// pool, so callers beyond the pool's size wait here, as tasks, instead of each parking a
    /// blocking thread (its stack and malloc cache) inside r2d2 until a connection frees up.
    slots: Arc<Semaphore>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.pool.state();
        f.debug_struct("Db")
            .field("target", &self.target)
            .field("connections", &state.connections)
            .field("idle", &state.idle_connections)
            .finish()
    }
}

impl Db {
    /// Opens a pool for `url` with default options. Does not run migrations.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        Db::connect_with(url, DbOptions::default()).await
    }

    /// Opens a pool for `url`. The first connection is made before this returns, so a bad URL
    /// or an unreachable server is reported here ([`DbError::Config`] or
    /// [`DbError::Unavailable`]).
    pub async fn connect_with(url: &str, options: DbOptions) -> Result<Db, DbError> {
        let url = url.to_string();
        tokio::task::spawn_blocking(move || Db::connect_blocking(&url, &options))
            .await
            .map_err(|e| DbError::Other(format!("database connect task failed: {e}")))?
    }

    /// [`Db::connect_with`] for code that is not on a tokio runtime (CLI subcommands, tests).
    pub fn connect_blocking(url: &str, options: &DbOptions) -> Result<Db, DbError> {
        let target = DbTarget::parse(url)?;
        let pool = pool::build(target.clone(), options)?;
        tracing::debug!(target_db = %target, "database pool ready");
        let slots = Arc::new(Semaphore::new(pool.max_size() as usize));
        Ok(Db {
            pool,
            target: Arc::new(target),
            slots,
        })
    }

    /// Which backend this handle talks to.
    pub fn backend(&self) -> Backend {
        self.target.backend()
    }

    /// The parsed URL (its `Display` hides any password).
    pub fn target(&self) -> &DbTarget {
        &self.target
    }

    /// Runs `f` with a pooled connection on tokio's blocking pool and classifies its error.
    ///
    /// Waiting for a connection counts against `DbOptions::connection_timeout`; when it runs
    /// out the result is [`DbError::Unavailable`].
    pub async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let wait = self.pool.connection_timeout();
        let slot = match tokio::time::timeout(wait, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(DbError::Unavailable("the database pool is closed".into())),
            Err(_) => {
                return Err(DbError::Unavailable(format!(
                    "no database connection became free within {wait:?}"
                )));
            }
        };
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let result = db.run_blocking(f);
            drop(slot);
            result
        })
        .await
        .map_err(|e| DbError::Other(format!("database task failed: {e}")))?
    }

    /// Like [`Db::run`], but the closure runs inside [`write_transaction`]: everything it does
    /// is committed together or not at all.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.run(|conn| write_transaction(conn, f)).await
    }

    /// [`Db::run`] for synchronous callers. Blocks the thread: never call it on an async worker.
    pub fn run_blocking<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> QueryResult<T>,
    {
        let mut conn = self.pool.get()?;
        f(&mut conn).map_err(DbError::from)
    }

    /// Checks that a connection can be had and answers a trivial query.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(|conn| {
            use diesel::r2d2::R2D2Connection;
            conn.ping()
        })
        .await
    }

    /// Applies pending migrations for the active backend; returns the versions applied.
    /// On PostgreSQL an advisory lock keeps hubs sharing the database from migrating at once.
    pub async fn migrate(&self) -> Result<Vec<String>, DbError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.migrate_blocking())
            .await
            .map_err(|e| DbError::Other(format!("migration task failed: {e}")))?
    }

    /// [`Db::migrate`] for synchronous callers.
    pub fn migrate_blocking(&self) -> Result<Vec<String>, DbError> {
        let mut conn = self.pool.get()?;
        let applied = migrate::run_pending(&mut conn)?;
        for version in &applied {
            tracing::info!(version = %version, backend = %self.backend(), "applied database migration");
        }
        Ok(applied)
    }

    /// Versions that [`Db::migrate`] would apply, oldest first. Fails with
    /// [`DbError::Migration`] if the database was migrated by a newer hub.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, DbError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.pending_migrations_blocking())
            .await
            .map_err(|e| DbError::Other(format!("migration task failed: {e}")))?
    }

    /// [`Db::pending_migrations`] for synchronous callers.
    pub fn pending_migrations_blocking(&self) -> Result<Vec<String>, DbError> {
        let mut conn = self.pool.get()?;
        migrate::pending(&mut conn)
    }
}

/// The `upgrade-db` procedure: for an existing SQLite file with pending migrations, write a
/// consistent backup `<file>.<timestamp>.bak` beside it first; then apply all pending migrations.
/// PostgreSQL databases are migrated in place (back them up with `pg_dump`).
pub async fn upgrade_db(url: &str) -> Result<UpgradeReport, DbError> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || upgrade_db_blocking(&url))
        .await
        .map_err(|e| DbError::Other(format!("upgrade task failed: {e}")))?
}

/// [`upgrade_db`] for synchronous callers.
pub fn upgrade_db_blocking(url: &str) -> Result<UpgradeReport, DbError> {
    let existing_file = existing_sqlite_file(url)?;
    let options = DbOptions {
        max_connections: Some(1),
        ..DbOptions::default()
    };
    let db = Db::connect_blocking(url, &options)?;
    db.upgrade_blocking(existing_file.as_deref())
}

/// The SQLite file `url` names, if it exists now: call before
/// [`Db::connect`] (which creates a missing file) and pass it to [`Db::upgrade`].
pub fn existing_sqlite_file(url: &str) -> Result<Option<std::path::PathBuf>, DbError> {
    Ok(match DbTarget::parse(url)? {
        DbTarget::SqliteFile(path) if path.exists() => Some(path),
        _ => None,
    })
}

impl Db {
    /// Applies pending migrations as `upgrade-db` does: when `existing_file` (the SQLite file
    /// as it was before this process opened it) has migrations pending, a consistent backup
    /// `<file>.<timestamp>.bak` is written beside it first, and the migrations run only if
    /// the backup succeeded.
    pub async fn upgrade(
        &self,
        existing_file: Option<std::path::PathBuf>,
    ) -> Result<UpgradeReport, DbError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.upgrade_blocking(existing_file.as_deref()))
            .await
            .map_err(|e| DbError::Other(format!("upgrade task failed: {e}")))?
    }

    /// [`Db::upgrade`] for synchronous callers.
    pub fn upgrade_blocking(
        &self,
        existing_file: Option<&std::path::Path>,
    ) -> Result<UpgradeReport, DbError> {
        let pending = self.pending_migrations_blocking()?;
        let backup = match existing_file {
            Some(path) if !pending.is_empty() => {
                let mut conn = self.pool.get()?;
                let written = migrate::backup_sqlite(&mut conn, path)?;
                tracing::info!(backup = %written.display(), "backed up database before upgrading");
                Some(written)
            }
            _ => None,
        };
        let applied = self.migrate_blocking()?;
        Ok(UpgradeReport { backup, applied })
    }
}

/// Runs `f` in a transaction meant to write.
///
/// On SQLite the transaction starts with `BEGIN IMMEDIATE`, taking the write lock up front
/// (waiting up to `busy_timeout`). A plain `BEGIN` would read first and then fail with
/// `SQLITE_BUSY`, without waiting, if another connection wrote in between. Nested calls become
/// savepoints. On PostgreSQL this is an ordinary transaction.
pub fn write_transaction<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    let began = match &mut *conn {
        DbConnection::Sqlite(sqlite) => {
            match AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE") {
                Err(diesel::result::Error::AlreadyInTransaction) => {
                    <DbConnection as Connection>::TransactionManager::begin_transaction(conn)
                }
                other => other,
            }
        }
        DbConnection::Postgresql(_) => {
            <DbConnection as Connection>::TransactionManager::begin_transaction(conn)
        }
    };
    began?;
    match f(conn) {
        Ok(value) => {
            <DbConnection as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(err) => {
            match <DbConnection as Connection>::TransactionManager::rollback_transaction(conn) {
                Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(err),
                Err(rollback_error) => Err(rollback_error.into()),
            }
        }
    }
}

/// The current time as stored in the database: naive UTC, truncated to microseconds so values
/// read back compare equal on both backends (PostgreSQL keeps microseconds).
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}
