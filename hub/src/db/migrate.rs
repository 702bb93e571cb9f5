//! Embedded migrations, one directory per backend (`hub/migrations/sqlite`,
//! `hub/migrations/postgres`), and the `upgrade-db` procedure.
//!
//! Rules for changing the schema:
//! - Never edit a migration that has been released; add a new one, under the same version name
//!   in both directories, with the same meaning (only the SQL dialect differs), and update
//!   `schema.rs` (the suite's `schema_rs_matches_the_migrations` test fails until they agree).
//! - Prefer additive changes (new nullable or defaulted columns, new tables): during a rolling
//!   upgrade of several hubs on one PostgreSQL database, old code runs against the new schema.
//! - SQLite table rebuilds need `PRAGMA foreign_keys = OFF`, which cannot change inside the
//!   transaction diesel wraps each migration in; avoid them or write them to survive cascades.
//!
//! Applying refuses a database that already carries versions this binary does not know (a newer
//! hub migrated it), because running old code on a newer schema corrupts data quietly.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use diesel::backend::Backend as DieselBackend;
use diesel::migration::MigrationSource;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::connection::DbConnection;
use super::error::DbError;

/// SQLite migrations, compiled into the binary.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
/// PostgreSQL migrations, compiled into the binary.
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Key for `pg_advisory_lock`, so hubs sharing one PostgreSQL database never migrate at once.
/// (The bytes spell "jhrsmigr".)
const PG_MIGRATION_LOCK: i64 = 0x6a68_7273_6d69_6772;

/// Applies every pending migration; returns the versions applied, oldest first.
pub fn run_pending(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
    match conn {
        DbConnection::Sqlite(c) => apply(c, SQLITE_MIGRATIONS),
        DbConnection::Postgresql(c) => {
            diesel::sql_query("SELECT pg_advisory_lock($1)")
                .bind::<BigInt, _>(PG_MIGRATION_LOCK)
                .execute(c)?;
            let result = apply(c, POSTGRES_MIGRATIONS);
            let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1)")
                .bind::<BigInt, _>(PG_MIGRATION_LOCK)
                .execute(c);
            let applied = result?;
            unlocked?;
            Ok(applied)
        }
    }
}

/// Versions this binary would apply to the database, oldest first.
pub fn pending(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
    match conn {
        DbConnection::Sqlite(c) => list_pending(c, SQLITE_MIGRATIONS),
        DbConnection::Postgresql(c) => list_pending(c, POSTGRES_MIGRATIONS),
    }
}

fn apply<C, DB>(conn: &mut C, migrations: EmbeddedMigrations) -> Result<Vec<String>, DbError>
where
    DB: DieselBackend,
    C: MigrationHarness<DB>,
    EmbeddedMigrations: MigrationSource<DB>,
{
    refuse_unknown_versions(conn, &migrations)?;
    let applied = conn
        .run_pending_migrations(migrations)
        .map_err(migration_error)?;
    Ok(applied.iter().map(ToString::to_string).collect())
}

fn list_pending<C, DB>(conn: &mut C, migrations: EmbeddedMigrations) -> Result<Vec<String>, DbError>
where
    DB: DieselBackend,
    C: MigrationHarness<DB>,
    EmbeddedMigrations: MigrationSource<DB>,
{
    refuse_unknown_versions(conn, &migrations)?;
    let pending = conn
        .pending_migrations(migrations)
        .map_err(migration_error)?;
    Ok(pending
        .iter()
        .map(|m| m.name().version().to_string())
        .collect())
}

fn refuse_unknown_versions<C, DB>(
    conn: &mut C,
    migrations: &EmbeddedMigrations,
) -> Result<(), DbError>
where
    DB: DieselBackend,
    C: MigrationHarness<DB>,
    EmbeddedMigrations: MigrationSource<DB>,
{
    let known: BTreeSet<String> = MigrationSource::<DB>::migrations(migrations)
        .map_err(migration_error)?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    let applied = conn.applied_migrations().map_err(migration_error)?;
    let unknown: Vec<String> = applied
        .iter()
        .map(ToString::to_string)
        .filter(|v| !known.contains(v))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(DbError::Migration(format!(
            "the database has schema versions this hub does not know ({}); it was upgraded by a newer \
             version — run that version, or restore a backup",
            unknown.join(", ")
        )))
    }
}

fn migration_error(err: Box<dyn std::error::Error + Send + Sync>) -> DbError {
    match err.downcast::<diesel::result::Error>() {
        Ok(diesel_error) => match DbError::from(*diesel_error) {
            DbError::Other(msg) => DbError::Migration(msg),
            classified => classified,
        },
        Err(other) => DbError::Migration(other.to_string()),
    }
}

/// What [`super::upgrade_db`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeReport {
    /// The SQLite backup written before migrating, if one was needed.
    pub backup: Option<PathBuf>,
    /// Versions applied, oldest first; empty if the database was already current.
    pub applied: Vec<String>,
}

/// Writes a consistent copy of the open SQLite database next to `db_file`, named
/// `<file>.<UTC timestamp>.bak` with the original's permissions.
///
/// `VACUUM INTO` is used instead of a file copy: in WAL mode the main file alone may lack
/// committed transactions, and a copy taken while another process writes can be torn.
pub fn backup_sqlite(conn: &mut DbConnection, db_file: &Path) -> Result<PathBuf, DbError> {
    let DbConnection::Sqlite(sqlite) = conn else {
        return Err(DbError::Config(
            "backup_sqlite needs a SQLite connection".into(),
        ));
    };
    let stamp = chrono::Utc::now().format("%Y-%m-%d-%H%M%S").to_string();
    let mut backup = suffixed(db_file, &format!(".{stamp}.bak"));
    let mut n = 1;
    while backup.exists() {
        backup = suffixed(db_file, &format!(".{stamp}-{n}.bak"));
        n += 1;
    }
    let target = backup
        .to_str()
        .ok_or_else(|| {
            DbError::Config(format!(
                "backup path {} is not valid UTF-8",
                backup.display()
            ))
        })?
        .to_string();
    diesel::sql_query("VACUUM INTO ?")
        .bind::<Text, _>(&target)
        .execute(sqlite)?;
    let permissions = std::fs::metadata(db_file)
        .map_err(|source| DbError::Io {
            context: format!("reading {}", db_file.display()),
            source,
        })?
        .permissions();
    std::fs::set_permissions(&backup, permissions).map_err(|source| DbError::Io {
        context: format!("setting permissions on {}", backup.display()),
        source,
    })?;
    Ok(backup)
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}
