//! [`DbError`]: what went wrong with a database call, sorted into the cases callers act on
//! differently (404, 409, retry later, 503, 500). Model functions return diesel's
//! `QueryResult`; [`super::Db::run`] converts, and `DbError::from` does the same for callers
//! that hold a raw diesel error.

use diesel::result::{ConnectionError, DatabaseErrorKind, Error as DieselError};

/// A classified database failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The row asked for does not exist (diesel's `NotFound`, or an update/delete that matched
    /// nothing where the caller expected a row).
    #[error("not found")]
    NotFound,
    /// An insert or update collided with a unique constraint: the name (or token, or
    /// membership) already exists. The HTTP layer answers 409.
    #[error("already exists ({0})")]
    UniqueViolation(String),
    /// A referenced row does not exist (or still has dependants that may not be removed).
    #[error("referenced row does not exist ({0})")]
    ForeignKeyViolation(String),
    /// The database is locked by another writer (SQLite `SQLITE_BUSY`/`SQLITE_LOCKED` after the
    /// busy timeout) or a PostgreSQL serialization failure or deadlock. Safe to retry.
    #[error("database is busy: {0}")]
    Busy(String),
    /// No usable connection: the server is down or restarting, the pool timed out, or the
    /// connection was closed under us. The HTTP layer answers 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database URL or options are unusable.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// Applying or inspecting migrations failed, or the schema is newer than this binary.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// Reading or writing a file next to the database (the `upgrade-db` backup) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. "backing up /srv/jupyterhub.sqlite".
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else: a bug, a constraint we do not classify, a row that failed to decode.
    #[error("database error: {0}")]
    Other(String),
}

impl DbError {
    /// True for failures that may succeed if the same operation is tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DbError::Busy(_) | DbError::Unavailable(_))
    }

    /// True if this is a unique-constraint collision.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::UniqueViolation(_))
    }
}

impl From<DieselError> for DbError {
    fn from(err: DieselError) -> Self {
        match err {
            DieselError::NotFound => DbError::NotFound,
            DieselError::DatabaseError(kind, info) => {
                let message = describe(info.message(), info.table_name(), info.constraint_name());
                match kind {
                    DatabaseErrorKind::UniqueViolation => DbError::UniqueViolation(message),
                    DatabaseErrorKind::ForeignKeyViolation
                    | DatabaseErrorKind::RestrictViolation => DbError::ForeignKeyViolation(message),
                    DatabaseErrorKind::SerializationFailure => DbError::Busy(message),
                    DatabaseErrorKind::ClosedConnection
                    | DatabaseErrorKind::UnableToSendCommand => DbError::Unavailable(message),
                    _ => classify_message(message),
                }
            }
            DieselError::BrokenTransactionManager => {
                DbError::Unavailable("connection left in a broken transaction state".into())
            }
            other => DbError::Other(other.to_string()),
        }
    }
}

impl From<ConnectionError> for DbError {
    fn from(err: ConnectionError) -> Self {
        match err {
            ConnectionError::InvalidConnectionUrl(msg) => DbError::Config(msg),
            ConnectionError::BadConnection(msg) => DbError::Unavailable(msg),
            ConnectionError::CouldntSetupConfiguration(e) => DbError::from(e),
            other => DbError::Unavailable(other.to_string()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for DbError {
    fn from(err: diesel::r2d2::PoolError) -> Self {
        DbError::Unavailable(err.to_string())
    }
}

/// Errors diesel leaves as `Unknown` but that callers must tell apart: SQLite reports lock
/// contention only by message, and PostgreSQL's deadlock/lock-timeout/shutdown codes are not
/// mapped to a kind.
fn classify_message(message: String) -> DbError {
    let lower = message.to_ascii_lowercase();
    let busy = [
        "database is locked",
        "database table is locked",
        "database schema is locked",
        "deadlock detected",
        "could not obtain lock",
        "canceling statement due to lock timeout",
    ];
    let gone = [
        "terminating connection",
        "server closed the connection",
        "no connection to the server",
        "connection to server",
        "the database system is shutting down",
        "the database system is starting up",
        "could not connect",
    ];
    if busy.iter().any(|needle| lower.contains(needle)) {
        DbError::Busy(message)
    } else if gone.iter().any(|needle| lower.contains(needle)) {
        DbError::Unavailable(message)
    } else {
        DbError::Other(message)
    }
}

fn describe(message: &str, table: Option<&str>, constraint: Option<&str>) -> String {
    match (table, constraint) {
        (Some(table), Some(constraint)) => {
            format!("{message} [table {table}, constraint {constraint}]")
        }
        (None, Some(constraint)) => format!("{message} [constraint {constraint}]"),
        (Some(table), None) => format!("{message} [table {table}]"),
        (None, None) => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_messages_are_classified() {
        assert!(matches!(
            classify_message("database is locked".into()),
            DbError::Busy(_)
        ));
        assert!(matches!(
            classify_message("FATAL: terminating connection due to administrator command".into()),
            DbError::Unavailable(_)
        ));
        assert!(matches!(
            classify_message("syntax error".into()),
            DbError::Other(_)
        ));
        assert!(DbError::Busy(String::new()).is_retryable());
        assert!(!DbError::NotFound.is_retryable());
    }
}
