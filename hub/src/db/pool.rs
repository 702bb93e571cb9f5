//! The r2d2 pool behind [`super::Db`]: a connection manager that opens exactly the backend the
//! URL names (never "try PostgreSQL, then fall back to a SQLite file"), and the per-connection
//! SQLite settings.

use std::time::Duration;

use diesel::connection::{Connection, SimpleConnection};
use diesel::pg::PgConnection;
use diesel::r2d2::{
    CustomizeConnection, Error as ManagerError, HandleError, ManageConnection, Pool, R2D2Connection,
};
use diesel::sqlite::SqliteConnection;

use super::connection::DbConnection;
use super::error::DbError;
use super::target::DbTarget;

/// Pool sizing and timeouts. `Default` picks per-backend sizes when a field is `None`.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Maximum open connections. Default: 4 for a SQLite file (one writer at a time anyway),
    /// 1 for in-memory SQLite (every connection would otherwise be a separate database),
    /// 10 for PostgreSQL.
    pub max_connections: Option<u32>,
    /// How long a caller waits for a free or new connection before getting
    /// [`DbError::Unavailable`]. Also bounds how long `connect` waits for the server.
    pub connection_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            max_connections: None,
            connection_timeout: Duration::from_secs(10),
        }
    }
}

/// Opens connections for one [`DbTarget`].
#[derive(Debug)]
pub struct Manager {
    target: DbTarget,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = ManagerError;

    fn connect(&self) -> Result<DbConnection, ManagerError> {
        if !matches!(self.target, DbTarget::Postgres(_)) {
            sqlite_multithread();
        }
        match &self.target {
            DbTarget::SqliteFile(path) => {
                let path = path.to_str().ok_or_else(|| {
                    ManagerError::ConnectionError(diesel::ConnectionError::InvalidConnectionUrl(
                        format!("SQLite path {} is not valid UTF-8", path.display()),
                    ))
                })?;
                Ok(DbConnection::Sqlite(SqliteConnection::establish(path)?))
            }
            DbTarget::SqliteMemory => Ok(DbConnection::Sqlite(SqliteConnection::establish(
                ":memory:",
            )?)),
            DbTarget::Postgres(url) => Ok(DbConnection::Postgresql(PgConnection::establish(url)?)),
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), ManagerError> {
        conn.ping().map_err(ManagerError::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

/// Settings every SQLite connection needs; PostgreSQL connections pass through untouched.
///
/// - `busy_timeout` first, so the WAL switch itself waits for other connections' locks;
/// - WAL lets readers run beside the single writer;
/// - foreign keys are off by default in SQLite, and every cascade in the schema relies on them;
/// - `synchronous=NORMAL` is durable across application crashes in WAL mode.
#[derive(Debug, Clone, Copy)]
pub struct SqlitePragmas;

impl CustomizeConnection<DbConnection, ManagerError> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), ManagerError> {
        if let DbConnection::Sqlite(sqlite) = conn {
            sqlite.batch_execute(
                "PRAGMA busy_timeout = 5000;
                 PRAGMA journal_mode = WAL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA synchronous = NORMAL;",
            )?;
        }
        Ok(())
    }
}

/// Sends r2d2's background connection errors to tracing instead of the `log` crate.
#[derive(Debug, Clone, Copy)]
struct TracingErrors;

impl HandleError<ManagerError> for TracingErrors {
    fn handle_error(&self, error: ManagerError) {
        tracing::warn!(error = %error, "database connection error");
    }
}

/// Puts SQLite in multi-thread mode before its first connection: a pooled connection is only
/// ever used by one thread at a time, so SQLite's own per-call mutex (serialized mode, the
/// build's default) is pure overhead: it cost about a tenth of the CPU of reading user lists.
/// Once SQLite is initialised the mode cannot change; then this does nothing.
fn sqlite_multithread() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[allow(
            unsafe_code,
            reason = "sqlite3_config is a C function; this call passes no pointers"
        )]
        // SAFETY: `sqlite3_config` with `SQLITE_CONFIG_MULTITHREAD` takes no further
        // arguments; it only fails (with SQLITE_MISUSE) once SQLite is initialised.
        let rc =
            unsafe { libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD) };
        if rc != libsqlite3_sys::SQLITE_OK {
            tracing::debug!(rc, "SQLite already initialised; keeping its threading mode");
        }
    });
}

/// Builds the pool. One connection is opened and set up first, outside the pool, so a wrong
/// URL, an unwritable SQLite path, a full disk (the WAL switch writes) or a server that is down
/// fails at once with its real error instead of r2d2's retry-until-timeout.
pub fn build(target: DbTarget, options: &DbOptions) -> Result<Pool<Manager>, DbError> {
    let manager = Manager { target };
    if !matches!(manager.target, DbTarget::SqliteMemory) {
        let mut first = manager.connect().map_err(manager_error)?;
        SqlitePragmas
            .on_acquire(&mut first)
            .map_err(manager_error)?;
    }
    let target = &manager.target;
    let memory = matches!(target, DbTarget::SqliteMemory);
    let default_size = match target {
        DbTarget::SqliteFile(_) => 4,
        DbTarget::SqliteMemory => 1,
        DbTarget::Postgres(_) => 10,
    };
    let max_size = if memory {
        1
    } else {
        options.max_connections.unwrap_or(default_size).max(1)
    };
    let mut builder = Pool::builder()
        .max_size(max_size)
        .min_idle(Some(1))
        .connection_timeout(options.connection_timeout)
        .connection_customizer(Box::new(SqlitePragmas))
        .error_handler(Box::new(TracingErrors));
    if memory {
        // The database lives exactly as long as its one connection: never recycle it.
        builder = builder.idle_timeout(None).max_lifetime(None);
    }
    builder.build(manager).map_err(DbError::from)
}

fn manager_error(err: ManagerError) -> DbError {
    match err {
        ManagerError::ConnectionError(e) => DbError::from(e),
        ManagerError::QueryError(e) => DbError::from(e),
    }
}
