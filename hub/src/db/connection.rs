//! The connection type every model function takes: one enum over the two supported backends,
//! so a single binary serves SQLite and PostgreSQL and picks one from the URL at runtime.
// The derive generates backend, row and query-builder types without docs or Debug impls.
#![allow(missing_debug_implementations, missing_docs)]

use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;

/// A live connection to SQLite or PostgreSQL.
///
/// Model functions take `&mut DbConnection` and work on both variants. Backend-specific SQL
/// (PRAGMAs, advisory locks, `BEGIN IMMEDIATE`) matches on the variant; nothing else should.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// PostgreSQL, from a `postgresql://` or `postgres://` URL.
    Postgresql(PgConnection),
    /// SQLite, from a `sqlite://` URL.
    Sqlite(SqliteConnection),
}
