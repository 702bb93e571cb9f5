//! Parsing `db_url` into the database to open. The syntax is SQLAlchemy's, so JupyterHub
//! configurations keep working: `sqlite:///relative.sqlite`, `sqlite:////absolute/path.sqlite`,
//! `sqlite://` (in memory), `postgresql://user:pass@host:port/db`, and dialect+driver forms such
//! as `postgresql+psycopg2://…`, whose driver part is ignored.

use std::fmt;
use std::path::{Path, PathBuf};

use super::error::DbError;

/// Which backend a database URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite: a file, or memory for tests.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        })
    }
}

/// A parsed database URL.
#[derive(Clone, PartialEq, Eq)]
pub enum DbTarget {
    /// A SQLite file; relative paths are relative to the working directory.
    SqliteFile(PathBuf),
    /// A private in-memory SQLite database (one connection; gone when the pool is dropped).
    SqliteMemory,
    /// A libpq connection URL, normalised to the `postgresql://` scheme.
    Postgres(String),
}

impl DbTarget {
    /// Parses a `db_url`. Rejects unknown schemes and SQLite URLs with a host or query string,
    /// rather than guessing what was meant.
    pub fn parse(url: &str) -> Result<DbTarget, DbError> {
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once(':') else {
            return Err(DbError::Config(format!(
                "database URL {:?} has no scheme (expected sqlite:// or postgresql://)",
                redact(url)
            )));
        };
        // SQLAlchemy's `dialect+driver`: the driver is a Python concern.
        let dialect = scheme
            .split('+')
            .next()
            .unwrap_or(scheme)
            .to_ascii_lowercase();
        match dialect.as_str() {
            "sqlite" => parse_sqlite(url, rest),
            "postgres" | "postgresql" => {
                let Some(after) = rest.strip_prefix("//") else {
                    return Err(DbError::Config(format!(
                        "PostgreSQL URL {:?} must start with postgresql://",
                        redact(url)
                    )));
                };
                let url = format!("postgresql://{after}");
                let debian = Path::new(DEBIAN_SOCKET_DIR);
                let socket_dir = (std::env::var_os("PGHOST").is_none() && debian.is_dir())
                    .then_some(DEBIAN_SOCKET_DIR);
                Ok(DbTarget::Postgres(with_socket_dir(url, socket_dir)))
            }
            "mysql" | "mariadb" => Err(DbError::Config(
                "MySQL/MariaDB are not supported; use sqlite:// or postgresql://".into(),
            )),
            _ => Err(DbError::Config(format!(
                "unsupported database URL scheme {scheme:?} (expected sqlite:// or postgresql://)"
            ))),
        }
    }

    /// The backend this target selects.
    pub fn backend(&self) -> Backend {
        match self {
            DbTarget::SqliteFile(_) | DbTarget::SqliteMemory => Backend::Sqlite,
            DbTarget::Postgres(_) => Backend::Postgres,
        }
    }
}

// Debug must never print a password.
impl fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbTarget::SqliteFile(path) => f.debug_tuple("SqliteFile").field(path).finish(),
            DbTarget::SqliteMemory => f.write_str("SqliteMemory"),
            DbTarget::Postgres(url) => f.debug_tuple("Postgres").field(&redact(url)).finish(),
        }
    }
}

impl fmt::Display for DbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbTarget::SqliteFile(path) => write!(f, "sqlite:///{}", path.display()),
            DbTarget::SqliteMemory => f.write_str("sqlite://"),
            DbTarget::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// Where Debian's and Ubuntu's PostgreSQL servers put their Unix socket.
const DEBIAN_SOCKET_DIR: &str = "/var/run/postgresql";

/// Adds `host=<socket_dir>` to a PostgreSQL URL that names no host.
///
/// Without a host, libpq connects to a Unix socket in the directory compiled into it. The hub's
/// libpq is built from source with PostgreSQL's default, `/tmp`, where the system libpq of
/// Debian and Ubuntu looks in `/var/run/postgresql`: a URL such as `postgresql:///jupyterhub`
/// keeps meaning the local server there.
fn with_socket_dir(url: String, socket_dir: Option<&str>) -> String {
    let Some(dir) = socket_dir else { return url };
    let rest = url.strip_prefix("postgresql://").unwrap_or(&url);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let host_in_query = query
        .split('&')
        .any(|pair| pair.split('=').next() == Some("host") || pair.starts_with("hostaddr="));
    if !host.is_empty() && !host.starts_with(':') || host_in_query {
        return url;
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}host={dir}")
}

fn parse_sqlite(url: &str, rest: &str) -> Result<DbTarget, DbError> {
    if rest.is_empty() || rest == "//" || rest == "//:memory:" || rest == "///:memory:" {
        return Ok(DbTarget::SqliteMemory);
    }
    let Some(after) = rest.strip_prefix("//") else {
        return Err(DbError::Config(format!(
            "SQLite URL {url:?} must look like sqlite:///relative/path or sqlite:////absolute/path"
        )));
    };
    // Everything after `sqlite:///` is the path verbatim, so a fourth slash makes it absolute.
    let Some(path) = after.strip_prefix('/') else {
        return Err(DbError::Config(format!(
            "SQLite URL {url:?} names a host; use sqlite:///relative/path or sqlite:////absolute/path"
        )));
    };
    if path.contains('?') {
        return Err(DbError::Config(format!(
            "SQLite URL {url:?} has query parameters, which are not supported"
        )));
    }
    if path.is_empty() {
        return Ok(DbTarget::SqliteMemory);
    }
    Ok(DbTarget::SqliteFile(PathBuf::from(path)))
}

/// Replaces the password in a URL's userinfo with `****` so the URL can be logged.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:****@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_without_a_host_use_the_distributions_socket_dir() {
        let dir = Some("/var/run/postgresql");
        let cases = [
            (
                "postgresql:///jh",
                "postgresql:///jh?host=/var/run/postgresql",
            ),
            (
                "postgresql://hub@/jh",
                "postgresql://hub@/jh?host=/var/run/postgresql",
            ),
            (
                "postgresql://:5433/jh?sslmode=disable",
                "postgresql://:5433/jh?sslmode=disable&host=/var/run/postgresql",
            ),
            ("postgresql://db/jh", "postgresql://db/jh"),
            (
                "postgresql://hub:pw@db:5432/jh",
                "postgresql://hub:pw@db:5432/jh",
            ),
            ("postgresql:///jh?host=/tmp", "postgresql:///jh?host=/tmp"),
            (
                "postgresql:///jh?hostaddr=127.0.0.1",
                "postgresql:///jh?hostaddr=127.0.0.1",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(with_socket_dir(url.to_owned(), dir), expected, "{url}");
        }
        assert_eq!(
            with_socket_dir("postgresql:///jh".into(), None),
            "postgresql:///jh"
        );
    }

    #[test]
    fn sqlite_urls_follow_sqlalchemy() {
        let cases = [
            (
                "sqlite:///jupyterhub.sqlite",
                DbTarget::SqliteFile("jupyterhub.sqlite".into()),
            ),
            (
                "sqlite:////srv/jh/jupyterhub.sqlite",
                DbTarget::SqliteFile("/srv/jh/jupyterhub.sqlite".into()),
            ),
            (
                "sqlite+pysqlite:///a/b.db",
                DbTarget::SqliteFile("a/b.db".into()),
            ),
            ("sqlite://", DbTarget::SqliteMemory),
            ("sqlite:", DbTarget::SqliteMemory),
            ("sqlite://:memory:", DbTarget::SqliteMemory),
            ("sqlite:///:memory:", DbTarget::SqliteMemory),
            ("sqlite:///", DbTarget::SqliteMemory),
        ];
        for (url, expected) in cases {
            assert_eq!(DbTarget::parse(url).unwrap(), expected, "{url}");
        }
        for bad in [
            "sqlite://host/x.db",
            "sqlite:///x.db?mode=ro",
            "sqlite:x.db",
            "jupyterhub.sqlite",
        ] {
            assert!(
                matches!(DbTarget::parse(bad), Err(DbError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn postgres_urls_are_normalised_and_redacted() {
        let t = DbTarget::parse("postgres://hub:s3cret@db:5432/jupyterhub").unwrap();
        assert_eq!(
            t,
            DbTarget::Postgres("postgresql://hub:s3cret@db:5432/jupyterhub".into())
        );
        assert_eq!(t.backend(), Backend::Postgres);
        assert_eq!(t.to_string(), "postgresql://hub:****@db:5432/jupyterhub");
        assert!(!format!("{t:?}").contains("s3cret"));
        let t = DbTarget::parse("postgresql+psycopg2://hub@db/jh").unwrap();
        assert_eq!(t, DbTarget::Postgres("postgresql://hub@db/jh".into()));
        assert!(matches!(
            DbTarget::parse("mysql://x"),
            Err(DbError::Config(_))
        ));
        assert!(matches!(
            DbTarget::parse("postgresql:db"),
            Err(DbError::Config(_))
        ));
    }
}
