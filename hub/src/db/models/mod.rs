//! One module per table: a row struct (`X`), a typed input for inserts (`NewX`), and query
//! functions named for what they do. Every function takes `&mut DbConnection`, works on both
//! backends and returns diesel's `QueryResult`.
//!
//! Conventions:
//! - `find_*` returns `Option`; updates and deletes of one row by id return
//!   `Err(diesel::result::Error::NotFound)` when the row does not exist.
//! - Collisions with unique constraints surface as diesel's `UniqueViolation`
//!   (→ `DbError::UniqueViolation`, 409). There is no `ON CONFLICT` through the multi-backend
//!   connection; idempotent helpers read first inside a write transaction instead.
//! - Functions that change several rows run in one `write_transaction`.

pub mod api_tokens;
pub mod groups;
pub mod oauth_clients;
pub mod oauth_codes;
pub mod roles;
pub mod services;
pub mod share_codes;
pub mod shares;
pub mod spawners;
pub mod users;

use diesel::QueryResult;

diesel::define_sql_function! {
    /// SQL `lower()`: ASCII folding on SQLite, full Unicode folding on PostgreSQL.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// One page of a longer list, plus the size of the whole list (before offset and limit).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows on this page.
    pub items: Vec<T>,
    /// How many rows match in total.
    pub total: i64,
}

impl<T> Page<T> {
    /// Converts the items, keeping the total.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
        }
    }
}

/// Offset and limit of a page. `limit: None` means no limit (internal callers only: the REST
/// layer always caps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageRequest {
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return at most.
    pub limit: Option<i64>,
}

impl PageRequest {
    /// Everything, unpaged.
    pub const ALL: PageRequest = PageRequest {
        offset: 0,
        limit: None,
    };

    /// A page of `limit` rows after `offset`.
    pub fn new(offset: i64, limit: i64) -> PageRequest {
        PageRequest {
            offset,
            limit: Some(limit),
        }
    }

    pub(crate) fn offset(&self) -> i64 {
        self.offset.max(0)
    }

    // Both backends accept a huge LIMIT as "no limit"; it keeps one query shape for both.
    pub(crate) fn limit(&self) -> i64 {
        self.limit.map_or(i64::MAX, |l| l.max(0))
    }
}

/// Turns "zero rows affected" into `NotFound`, for updates and deletes of one row by key.
pub(crate) fn expect_one(affected: usize) -> QueryResult<()> {
    if affected == 0 {
        Err(diesel::result::Error::NotFound)
    } else {
        Ok(())
    }
}
