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

/// The ids of a page of rows, for loading the rows related to them.
///
/// A page's ids usually lie close together (lists are sorted by id unless asked otherwise), so
/// related rows are read with `BETWEEN lowest AND highest`: one statement whose shape does not
/// depend on the page, which the connection keeps prepared, where an `IN` list of a page's
/// ids is parsed and planned again on every call. Rows of ids inside the range but not on the
/// page are dropped with [`IdFilter::keeps`]. Scattered ids would read too many rows that way
/// and go out as an `IN` list instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdFilter {
    /// No ids: nothing to load.
    Empty,
    /// `lo..=hi`, and which ids of the range are wanted (`wanted[id - lo]`).
    Range { lo: i32, hi: i32, wanted: Vec<bool> },
    /// Scattered ids.
    List(Vec<i32>),
}

impl IdFilter {
    pub(crate) fn new(ids: &[i32]) -> IdFilter {
        let (Some(&lo), Some(&hi)) = (ids.iter().min(), ids.iter().max()) else {
            return IdFilter::Empty;
        };
        let span = usize::try_from(i64::from(hi) - i64::from(lo) + 1).unwrap_or(usize::MAX);
        if span > ids.len().saturating_mul(2).saturating_add(32) {
            return IdFilter::List(ids.to_vec());
        }
        let mut wanted = vec![false; span];
        for &id in ids {
            wanted[(i64::from(id) - i64::from(lo)) as usize] = true;
        }
        IdFilter::Range { lo, hi, wanted }
    }

    /// Whether rows of `id` belong to the page.
    pub(crate) fn keeps(&self, id: i32) -> bool {
        match self {
            IdFilter::Empty => false,
            IdFilter::Range { lo, hi, wanted } => {
                (*lo..=*hi).contains(&id) && wanted[(i64::from(id) - i64::from(*lo)) as usize]
            }
            IdFilter::List(ids) => ids.contains(&id),
        }
    }
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

#[cfg(test)]
mod id_filter_tests {
    use super::IdFilter;

    #[test]
    fn close_ids_become_a_range_that_keeps_only_the_page() {
        let f = IdFilter::new(&[7, 5, 9]);
        assert!(matches!(f, IdFilter::Range { lo: 5, hi: 9, .. }));
        let kept: Vec<i32> = (0..12).filter(|&id| f.keeps(id)).collect();
        assert_eq!(kept, [5, 7, 9]);
    }

    #[test]
    fn scattered_ids_stay_a_list() {
        let f = IdFilter::new(&[1, 1_000_000]);
        assert_eq!(f, IdFilter::List(vec![1, 1_000_000]));
        assert!(f.keeps(1) && f.keeps(1_000_000) && !f.keeps(2));
    }

    #[test]
    fn extreme_and_empty_ids() {
        assert_eq!(IdFilter::new(&[]), IdFilter::Empty);
        assert!(!IdFilter::new(&[]).keeps(0));
        let f = IdFilter::new(&[i32::MIN, i32::MAX]);
        assert!(matches!(f, IdFilter::List(_)));
        let f = IdFilter::new(&[i32::MAX - 1, i32::MAX]);
        assert!(f.keeps(i32::MAX) && f.keeps(i32::MAX - 1) && !f.keeps(i32::MAX - 2));
    }
}
