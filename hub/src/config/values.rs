//! The typed values configuration keys hold, each with its TOML form and the message an
//! operator sees when a value does not fit. Nothing past `config` handles these as raw strings.

use std::fmt;
use std::net::IpAddr;
use std::num::{NonZeroU16, NonZeroU32};
use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration;

use toml::Value;
use url::Url;

use super::schema::{Decoder, Kind, REDACTED, Scalar, Secrets, TomlValue};
use crate::cookie_secret::CookieSecret;

// === plain values ===

impl TomlValue for String {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::String)
    }
    fn type_name() -> String {
        "string".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        match value {
            Value::String(s) => Some(s),
            other => {
                cx.expected(path, "a string", &other);
                None
            }
        }
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(Value::String(self.clone()))
    }
}

impl TomlValue for bool {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::Bool)
    }
    fn type_name() -> String {
        "boolean".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        match value {
            Value::Boolean(b) => Some(b),
            other => {
                cx.expected(path, "true or false", &other);
                None
            }
        }
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(Value::Boolean(*self))
    }
}

/// Decodes an integer in `lo..=hi`, or records `expected`.
fn integer_in(
    value: Value,
    cx: &mut Decoder<'_>,
    path: &str,
    lo: i64,
    hi: i64,
    expected: &str,
) -> Option<i64> {
    match value {
        Value::Integer(i) if (lo..=hi).contains(&i) => Some(i),
        other => {
            cx.expected(path, expected, &other);
            None
        }
    }
}

/// Decodes a finite number of at least 0, integer or float.
fn non_negative(value: Value, cx: &mut Decoder<'_>, path: &str, expected: &str) -> Option<f64> {
    match value {
        Value::Integer(i) if i >= 0 => Some(i as f64),
        Value::Float(f) if f.is_finite() && f >= 0.0 => Some(f),
        other => {
            cx.expected(path, expected, &other);
            None
        }
    }
}

/// A port where 0 means "pick a free one".
impl TomlValue for u16 {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::Integer)
    }
    fn type_name() -> String {
        "integer (0–65535)".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        let n = integer_in(value, cx, path, 0, 65535, "an integer from 0 to 65535")?;
        u16::try_from(n).ok()
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(Value::Integer(i64::from(*self)))
    }
}

impl TomlValue for NonZeroU32 {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::Integer)
    }
    fn type_name() -> String {
        "integer (≥ 1)".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        let n = integer_in(
            value,
            cx,
            path,
            1,
            i64::from(u32::MAX),
            "an integer of at least 1",
        )?;
        u32::try_from(n).ok().and_then(NonZeroU32::new)
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(Value::Integer(i64::from(self.get())))
    }
}

/// A non-zero `u32` for defaults written as constants.
pub(crate) const fn nonzero(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => panic!("zero where a non-zero constant is required"),
    }
}

impl TomlValue for PathBuf {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::String)
    }
    fn type_name() -> String {
        "path".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        match value {
            Value::String(s) if !s.is_empty() => Some(PathBuf::from(s)),
            other => {
                cx.expected(path, "a non-empty path", &other);
                None
            }
        }
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(Value::String(self.to_string_lossy().into_owned()))
    }
}

impl TomlValue for IpAddr {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::String)
    }
    fn type_name() -> String {
        "IP address".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        let parsed = match &value {
            // JupyterHub writes "all interfaces" as an empty string; CHP also takes `*`.
            Value::String(s) if s.is_empty() || s == "*" => {
                Some(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
            }
            Value::String(s) => {
                let bare = s.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
                bare.unwrap_or(s).parse().ok()
            }
            _ => None,
        };
        if parsed.is_none() {
            cx.expected(
                path,
                "an IP address such as 127.0.0.1 or ::1 (\"\" for all interfaces)",
                &value,
            );
        }
        parsed
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(Value::String(self.to_string()))
    }
}

/// Whole seconds are written as integers, as JupyterHub operators write them.
impl TomlValue for Duration {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::Number)
    }
    fn type_name() -> String {
        "seconds".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        let secs = non_negative(value, cx, path, "a number of seconds (0 or more)")?;
        Duration::try_from_secs_f64(secs).ok()
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(seconds_value(*self))
    }
}

fn seconds_value(d: Duration) -> Value {
    match i64::try_from(d.as_secs()) {
        Ok(secs) if d.subsec_nanos() == 0 => Value::Integer(secs),
        _ => Value::Float(d.as_secs_f64()),
    }
}

// === ports, limits, durations ===

/// A TCP port from 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port(NonZeroU16);

impl Port {
    /// The port `n`; `None` for 0.
    pub const fn new(n: u16) -> Option<Self> {
        match NonZeroU16::new(n) {
            Some(p) => Some(Port(p)),
            None => None,
        }
    }

    /// A port known at compile time; panics on 0.
    pub(crate) const fn constant(n: u16) -> Self {
        match Self::new(n) {
            Some(p) => p,
            None => panic!("port 0 is not a port"),
        }
    }

    /// The port number.
    pub const fn get(self) -> u16 {
        self.0.get()
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TomlValue for Port {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::Integer)
    }
    fn type_name() -> String {
        "integer (1–65535)".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        let n = integer_in(value, cx, path, 1, 65535, "an integer from 1 to 65535")?;
        u16::try_from(n).ok().and_then(Port::new)
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(Value::Integer(i64::from(self.get())))
    }
}

/// A count where 0 means "no limit", as in JupyterHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limit(Option<NonZeroU32>);

impl Limit {
    /// No limit.
    pub const NONE: Limit = Limit(None);

    /// At most `n`; 0 means no limit.
    pub const fn at_most(n: u32) -> Self {
        Limit(NonZeroU32::new(n))
    }

    /// The limit, or `None` when there is none.
    pub fn get(self) -> Option<u32> {
        self.0.map(NonZeroU32::get)
    }

    /// Whether `count` things in use already reach the limit (so one more must be refused).
    pub fn is_reached(self, count: usize) -> bool {
        self.0
            .is_some_and(|max| usize::try_from(max.get()).is_ok_and(|max| count >= max))
    }
}

impl TomlValue for Limit {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::Integer)
    }
    fn type_name() -> String {
        "integer (0 = no limit)".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        let expected = "an integer of 0 or more (0 means no limit)";
        let n = integer_in(value, cx, path, 0, i64::from(u32::MAX), expected)?;
        u32::try_from(n).ok().map(Limit::at_most)
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(Value::Integer(i64::from(self.get().unwrap_or(0))))
    }
}

/// A duration where 0 means "no limit", as in JupyterHub's `*_seconds` caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DurationLimit(Option<Duration>);

impl DurationLimit {
    /// No limit.
    pub const NONE: DurationLimit = DurationLimit(None);

    /// At most `d`; zero means no limit.
    pub fn at_most(d: Duration) -> Self {
        DurationLimit((!d.is_zero()).then_some(d))
    }

    /// The limit, or `None` when there is none.
    pub fn get(self) -> Option<Duration> {
        self.0
    }
}

impl TomlValue for DurationLimit {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::Number)
    }
    fn type_name() -> String {
        "seconds (0 = no limit)".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        let expected = "a number of seconds, 0 or more (0 means no limit)";
        let secs = non_negative(value, cx, path, expected)?;
        Duration::try_from_secs_f64(secs)
            .ok()
            .map(DurationLimit::at_most)
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(seconds_value(self.0.unwrap_or_default()))
    }
}

/// A duration written in days; fractions are allowed (`0.5` is twelve hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(Duration);

impl Days {
    const SECONDS_PER_DAY: u64 = 86_400;

    /// `n` whole days.
    pub const fn whole(n: u64) -> Self {
        Days(Duration::from_secs(n * Self::SECONDS_PER_DAY))
    }

    /// The length of time.
    pub fn duration(self) -> Duration {
        self.0
    }
}

impl TomlValue for Days {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::Number)
    }
    fn type_name() -> String {
        "days".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        let days = non_negative(value, cx, path, "a number of days (0 or more)")?;
        let per_day = Self::SECONDS_PER_DAY as f64;
        Duration::try_from_secs_f64(days * per_day).ok().map(Days)
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        let secs = self.0.as_secs();
        if self.0.subsec_nanos() == 0 && secs.is_multiple_of(Self::SECONDS_PER_DAY) {
            i64::try_from(secs / Self::SECONDS_PER_DAY)
                .ok()
                .map(Value::Integer)
        } else {
            let per_day = Self::SECONDS_PER_DAY as f64;
            Some(Value::Float(self.0.as_secs_f64() / per_day))
        }
    }
}

// === URLs ===

/// An absolute `http://` or `https://` URL.
///
/// An empty host (`http://:8000`, JupyterHub's way of saying "all interfaces") is read as
/// `0.0.0.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(Url);

impl HttpUrl {
    /// Parses `text`, explaining what is wrong when it is not an http(s) URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let filled;
        let text = match text.split_once("://:") {
            Some((scheme, rest)) => {
                filled = format!("{scheme}://0.0.0.0:{rest}");
                filled.as_str()
            }
            None => text,
        };
        let url = Url::parse(text).map_err(|e| e.to_string())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("scheme {:?} is not http or https", url.scheme()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("it has no host".to_owned());
        }
        Ok(HttpUrl(url))
    }

    /// A URL known to be valid at compile time; panics otherwise.
    pub(crate) fn constant(text: &str) -> Self {
        match Self::parse(text) {
            Ok(url) => url,
            Err(e) => panic!("bad built-in URL {text:?}: {e}"),
        }
    }

    /// The URL.
    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// The URL, by value.
    pub fn into_url(self) -> Url {
        self.0
    }

    pub(crate) fn url_mut(&mut self) -> &mut Url {
        &mut self.0
    }
}

impl Deref for HttpUrl {
    type Target = Url;
    fn deref(&self) -> &Url {
        &self.0
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TomlValue for HttpUrl {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::String)
    }
    fn type_name() -> String {
        "URL".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        match value {
            Value::String(s) => match HttpUrl::parse(&s) {
                Ok(url) => Some(url),
                Err(why) => {
                    cx.invalid(
                        path,
                        format!("expected an http:// or https:// URL, found {s:?} ({why})"),
                    );
                    None
                }
            },
            other => {
                cx.expected(path, "an http:// or https:// URL", &other);
                None
            }
        }
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(Value::String(self.0.to_string()))
    }
}

/// The URL prefix of the whole deployment. Always starts and ends with `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BaseUrl(String);

impl BaseUrl {
    /// `/`.
    pub fn root() -> Self {
        BaseUrl("/".to_owned())
    }

    /// Parses a path, adding the leading and trailing `/` when missing (as JupyterHub does).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(c) = text
            .chars()
            .find(|c| matches!(c, '?' | '#' | '\\') || c.is_whitespace() || c.is_control())
        {
            return Err(format!("{c:?} cannot appear in a URL prefix"));
        }
        let mut path = String::with_capacity(text.len() + 2);
        if !text.starts_with('/') {
            path.push('/');
        }
        path.push_str(text);
        if !path.ends_with('/') {
            path.push('/');
        }
        if path.contains("//") {
            return Err("empty path segment (`//`)".to_owned());
        }
        Ok(BaseUrl(path))
    }

    /// The prefix, e.g. `/` or `/jupyter/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hub's own prefix: `{base_url}hub/`.
    pub fn hub_prefix(&self) -> String {
        format!("{}hub/", self.0)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TomlValue for BaseUrl {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::String)
    }
    fn type_name() -> String {
        "URL path".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        match value {
            Value::String(s) => match BaseUrl::parse(&s) {
                Ok(b) => Some(b),
                Err(why) => {
                    cx.invalid(
                        path,
                        format!("expected a URL path such as /jupyter/, found {s:?} ({why})"),
                    );
                    None
                }
            },
            other => {
                cx.expected(path, "a URL path such as /jupyter/", &other);
                None
            }
        }
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

/// Where to send a browser: a path on this deployment or an absolute URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A path starting with `/`; it may hold placeholders such as `{username}`.
    Path(String),
    /// An absolute http(s) URL.
    Url(HttpUrl),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Path(p) => f.write_str(p),
            Location::Url(u) => u.fmt(f),
        }
    }
}

impl TomlValue for Location {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::String)
    }
    fn type_name() -> String {
        "path or URL".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        let expected = "a path starting with / or an http(s):// URL";
        let parsed = match &value {
            Value::String(s) if s.starts_with('/') && !s.starts_with("//") => {
                (!s.chars().any(|c| c.is_whitespace() || c.is_control()))
                    .then(|| Location::Path(s.clone()))
            }
            Value::String(s) => HttpUrl::parse(s).ok().map(Location::Url),
            _ => None,
        };
        if parsed.is_none() {
            cx.expected(path, expected, &value);
        }
        parsed
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(Value::String(self.to_string()))
    }
}

/// Where the hub's database lives.
#[derive(Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// An SQLite file (`sqlite:///relative.sqlite`, `sqlite:////absolute/path.sqlite`); a
    /// relative path is relative to the working directory.
    Sqlite(PathBuf),
    /// A private in-memory SQLite database (`sqlite://` or `sqlite:///:memory:`), lost at exit.
    SqliteMemory,
    /// A PostgreSQL server (`postgresql://user:password@host:5432/dbname`).
    Postgres(Url),
}

impl DbUrl {
    /// JupyterHub's default: `jupyterhub.sqlite` in the working directory.
    pub fn default_sqlite() -> Self {
        DbUrl::Sqlite(PathBuf::from("jupyterhub.sqlite"))
    }

    /// Parses an SQLAlchemy-style database URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err("it has no scheme (sqlite:// or postgresql://)".to_owned());
        };
        let scheme = scheme.to_ascii_lowercase();
        // SQLAlchemy names a driver after a `+` (`postgresql+psycopg2`); we have our own.
        let dialect = scheme.split('+').next().unwrap_or_default();
        match dialect {
            "sqlite" => {
                if rest.contains('?') {
                    return Err("query parameters are not supported for SQLite".to_owned());
                }
                match rest {
                    "" | "/:memory:" => Ok(DbUrl::SqliteMemory),
                    _ => match rest.strip_prefix('/') {
                        Some(path) if !path.is_empty() => Ok(DbUrl::Sqlite(PathBuf::from(path))),
                        _ => {
                            Err("write sqlite:///relative/path or sqlite:////absolute/path"
                                .to_owned())
                        }
                    },
                }
            }
            "postgres" | "postgresql" => Url::parse(&format!("postgresql://{rest}"))
                .map(DbUrl::Postgres)
                .map_err(|e| e.to_string()),
            "mysql" | "mariadb" => {
                Err("MySQL is not supported; use SQLite or PostgreSQL".to_owned())
            }
            other => Err(format!("unknown database {other:?}")),
        }
    }

    /// The URL to connect with, password included: never log it.
    pub fn connection_url(&self) -> String {
        self.to_text(Secrets::Show)
    }

    /// The URL as written in the config, with the password replaced by `<redacted>` when
    /// `secrets` says so.
    pub(crate) fn to_text(&self, secrets: Secrets) -> String {
        match self {
            DbUrl::Sqlite(path) => format!("sqlite:///{}", path.to_string_lossy()),
            DbUrl::SqliteMemory => "sqlite://".to_owned(),
            DbUrl::Postgres(url) => match (url.password(), secrets) {
                (Some(_), Secrets::Redact) => {
                    let mut shown = url.clone();
                    // A marker the URL parser keeps verbatim, swapped for the redaction text.
                    let _ = shown.set_password(Some("REDACTED"));
                    shown
                        .to_string()
                        .replacen(":REDACTED@", &format!(":{REDACTED}@"), 1)
                }
                _ => url.to_string(),
            },
        }
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbUrl({})", self.to_text(Secrets::Redact))
    }
}

impl TomlValue for DbUrl {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::String)
    }
    fn type_name() -> String {
        "database URL".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        let expected = "a database URL (sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB)";
        match value {
            Value::String(s) if s.contains(REDACTED) => {
                cx.invalid(path, format!("the password {PLACEHOLDER_MESSAGE}"));
                None
            }
            // The reason is shown but never the text: it may hold a password.
            Value::String(s) => match DbUrl::parse(&s) {
                Ok(db) => Some(db),
                Err(why) => {
                    cx.invalid(path, format!("expected {expected}: {why}"));
                    None
                }
            },
            other => {
                cx.expected_secret(path, expected, &other);
                None
            }
        }
    }
    fn encode(&self, secrets: Secrets) -> Option<Value> {
        Some(Value::String(self.to_text(secrets)))
    }
}

// === secrets ===

/// A secret string: a token or a password. `Debug` never shows it and `--show-config`
/// writes `<redacted>` in its place.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret itself. Call this only where it is used (hashing, a request header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in characters.
    pub fn char_len(&self) -> usize {
        self.0.chars().count()
    }
}

/// Whether a secret is a stand-in such as `<redacted>` (from `--show-config`) or
/// `<output of: openssl rand -hex 32>` (from `--generate-config`) rather than a real value.
fn is_placeholder(secret: &str) -> bool {
    secret.starts_with('<') && secret.ends_with('>')
}

const PLACEHOLDER_MESSAGE: &str = "is a placeholder such as \"<redacted>\" (from --show-config or \
     --generate-config), not a real secret; put the real value";

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl TomlValue for Secret {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::String)
    }
    fn type_name() -> String {
        "string (secret)".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        match value {
            Value::String(s) if is_placeholder(&s) => {
                cx.invalid(path, PLACEHOLDER_MESSAGE);
                None
            }
            Value::String(s) if !s.is_empty() => Some(Secret(s)),
            other => {
                cx.expected_secret(path, "a non-empty string", &other);
                None
            }
        }
    }
    fn encode(&self, secrets: Secrets) -> Option<Value> {
        Some(Value::String(match secrets {
            Secrets::Show => self.0.clone(),
            Secrets::Redact => REDACTED.to_owned(),
        }))
    }
}

impl TomlValue for CookieSecret {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::String)
    }
    fn type_name() -> String {
        "hex string (secret)".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        let expected = "an even number of hexadecimal digits (e.g. from `openssl rand -hex 32`)";
        match value {
            Value::String(s) => match CookieSecret::from_hex(&s) {
                Ok(secret) => Some(secret),
                // The value is not repeated: it is meant to be a secret.
                Err(why) => {
                    cx.invalid(path, format!("expected {expected}: {why}"));
                    None
                }
            },
            other => {
                cx.expected_secret(path, expected, &other);
                None
            }
        }
    }
    fn encode(&self, secrets: Secrets) -> Option<Value> {
        Some(Value::String(match secrets {
            Secrets::Show => self.to_hex(),
            Secrets::Redact => REDACTED.to_owned(),
        }))
    }
}

/// API tokens created at startup, each owned by a user: JupyterHub's `api_tokens`
/// (`token = "username"`). The tokens are secrets, so they are the redacted part.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiTokens(Vec<(Secret, String)>);

impl ApiTokens {
    /// Builds the map from `(token, username)` pairs.
    pub fn new(pairs: impl IntoIterator<Item = (Secret, String)>) -> Self {
        ApiTokens(pairs.into_iter().collect())
    }

    /// The tokens and their users.
    pub fn iter(&self) -> impl Iterator<Item = (&Secret, &str)> {
        self.0.iter().map(|(t, u)| (t, u.as_str()))
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TomlValue for ApiTokens {
    fn kind() -> Kind {
        Kind::Map
    }
    fn type_name() -> String {
        "table of token = username (secret)".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        let table = match value {
            Value::Table(table) => table,
            other => {
                cx.expected(path, "a table of token = \"username\"", &other);
                return None;
            }
        };
        let mut out = Vec::with_capacity(table.len());
        let mut ok = true;
        for (token, user) in table {
            // Problems are reported against the table: the key is a secret.
            match user {
                _ if is_placeholder(&token) => {
                    cx.invalid(path, format!("a token {PLACEHOLDER_MESSAGE}"));
                    ok = false;
                }
                Value::String(user) => out.push((Secret(token), user)),
                other => {
                    cx.expected_secret(path, "usernames as strings", &other);
                    ok = false;
                }
            }
        }
        ok.then_some(ApiTokens(out))
    }
    fn encode(&self, secrets: Secrets) -> Option<Value> {
        let count = self.0.len();
        let table = self
            .0
            .iter()
            .enumerate()
            .map(|(i, (token, user))| {
                let key = match secrets {
                    Secrets::Show => token.0.clone(),
                    // Keys must stay distinct for the output to be valid TOML.
                    Secrets::Redact if count == 1 => REDACTED.to_owned(),
                    Secrets::Redact => format!("<redacted-{}>", i + 1),
                };
                (key, Value::String(user.clone()))
            })
            .collect();
        Some(Value::Table(table))
    }
}

// === free-form data ===

/// Free-form properties (`[groups.<name>] properties`), kept as JSON for the REST API.
impl TomlValue for serde_json::Map<String, serde_json::Value> {
    fn kind() -> Kind {
        Kind::Map
    }
    fn type_name() -> String {
        "table".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        match toml_to_json(value) {
            Ok(serde_json::Value::Object(map)) => Some(map),
            Ok(_) => {
                cx.invalid(path, "expected a table");
                None
            }
            Err(why) => {
                cx.invalid(path, why);
                None
            }
        }
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(Value::Table(
            self.iter()
                .filter_map(|(k, v)| Some((k.clone(), json_to_toml(v)?)))
                .collect(),
        ))
    }
}

fn toml_to_json(value: Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match value {
        Value::String(s) => J::String(s),
        Value::Integer(i) => J::from(i),
        Value::Float(f) => serde_json::Number::from_f64(f)
            .map(J::Number)
            .ok_or_else(|| format!("{f} cannot be represented in JSON"))?,
        Value::Boolean(b) => J::Bool(b),
        Value::Datetime(d) => J::String(d.to_string()),
        Value::Array(items) => J::Array(
            items
                .into_iter()
                .map(toml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Value::Table(t) => J::Object(
            t.into_iter()
                .map(|(k, v)| Ok((k, toml_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// JSON null has no TOML form, so it is left out.
fn json_to_toml(value: &serde_json::Value) -> Option<Value> {
    use serde_json::Value as J;
    Some(match value {
        J::Null => return None,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64()?),
        },
        J::String(s) => Value::String(s.clone()),
        J::Array(items) => Value::Array(items.iter().filter_map(json_to_toml).collect()),
        J::Object(map) => Value::Table(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), json_to_toml(v)?)))
                .collect(),
        ),
    })
}

// === commands ===

/// A program and its arguments. In TOML a list of strings; a single string is the program
/// alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command(Vec<String>);

impl Command {
    /// `program` with `args`.
    pub fn new(program: impl Into<String>, args: impl IntoIterator<Item = String>) -> Self {
        let mut argv = vec![program.into()];
        argv.extend(args);
        Command(argv)
    }

    /// The program to run.
    pub fn program(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }

    /// The arguments after the program.
    pub fn args(&self) -> &[String] {
        self.0.get(1..).unwrap_or_default()
    }

    /// Program and arguments together.
    pub fn argv(&self) -> &[String] {
        &self.0
    }
}

impl TomlValue for Command {
    fn kind() -> Kind {
        // Scalar so that an environment variable can name the program.
        Kind::Scalar(Scalar::String)
    }
    fn type_name() -> String {
        "command (list of strings)".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        let expected = "a command: a list of strings whose first is the program";
        let argv = match &value {
            Value::String(s) if !s.is_empty() => Some(vec![s.clone()]),
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .filter(|argv| argv.first().is_some_and(|p| !p.is_empty())),
            _ => None,
        };
        if argv.is_none() {
            cx.expected(path, expected, &value);
        }
        argv.map(Command)
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(Value::Array(
            self.0.iter().map(|s| Value::String(s.clone())).collect(),
        ))
    }
}

/// The prefix of the hub's Prometheus metric names (`jupyterhub` gives
/// `jupyterhub_request_duration_seconds`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsPrefix(String);

impl MetricsPrefix {
    /// Validates a Prometheus name prefix.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut chars = text.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
        if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            Ok(MetricsPrefix(text.to_owned()))
        } else {
            Err(
                "a metric name prefix is letters, digits, `_` and `:`, not starting with a digit"
                    .to_owned(),
            )
        }
    }

    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for MetricsPrefix {
    fn default() -> Self {
        MetricsPrefix("jupyterhub".to_owned())
    }
}

impl TomlValue for MetricsPrefix {
    fn kind() -> Kind {
        Kind::Scalar(Scalar::String)
    }
    fn type_name() -> String {
        "string".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        match value {
            Value::String(s) => match MetricsPrefix::parse(&s) {
                Ok(p) => Some(p),
                Err(why) => {
                    cx.invalid(path, format!("found {s:?}: {why}"));
                    None
                }
            },
            other => {
                cx.expected(path, "a string", &other);
                None
            }
        }
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

// === keyword enums ===

/// Defines an enum whose TOML form is one of a few names, with accepted aliases (JupyterHub's
/// class names among them), matched case-insensitively.
macro_rules! keyword_enum {
    (
        $(#[doc = $doc:literal])*
        pub enum $name:ident {
            $(
                $(#[doc = $vdoc:literal])*
                $variant:ident = $canonical:literal $(| $alias:literal)*
            ),+ $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[doc = $vdoc])* $variant, )+
        }

        impl $name {
            /// The name used in the config file.
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $canonical, )+ }
            }

            /// Looks up a name or an alias, ignoring case.
            pub fn from_name(name: &str) -> Option<Self> {
                let name = name.trim();
                $(
                    if name.eq_ignore_ascii_case($canonical)
                        $(|| name.eq_ignore_ascii_case($alias))*
                    {
                        return Some($name::$variant);
                    }
                )+
                None
            }

            fn expected() -> String {
                let names: &[&str] = &[$($canonical),+];
                let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                format!("one of {}", quoted.join(", "))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TomlValue for $name {
            fn kind() -> Kind {
                Kind::Scalar(Scalar::String)
            }
            fn type_name() -> String {
                Self::expected()
            }
            fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
                let found = match &value {
                    Value::String(s) => $name::from_name(s),
                    Value::Integer(i) => $name::from_name(&i.to_string()),
                    _ => None,
                };
                if found.is_none() {
                    cx.expected(path, &Self::expected(), &value);
                }
                found
            }
            fn encode(&self, _: Secrets) -> Option<Value> {
                Some(Value::String(self.as_str().to_owned()))
            }
        }
    };
}

keyword_enum! {
    /// How much the hub logs. Python's level names and numbers are accepted too.
    pub enum LogLevel {
        /// Everything, including per-request internals.
        Trace = "trace",
        /// Per-request detail.
        Debug = "debug" | "10",
        /// Lifecycle: servers started and stopped, routes added and removed.
        Info = "info" | "20",
        /// Degraded but handled.
        Warn = "warn" | "warning" | "30",
        /// Someone should act.
        Error = "error" | "critical" | "fatal" | "40" | "50",
    }
}

impl LogLevel {
    /// The matching `tracing` level.
    pub fn as_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Trace => tracing::Level::TRACE,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        }
    }
}

keyword_enum! {
    /// How log lines are written.
    pub enum LogFormat {
        /// Human-readable lines.
        Text = "text",
        /// One JSON object per line, for log collectors.
        Json = "json",
    }
}

keyword_enum! {
    /// Which authenticator checks logins. JupyterHub's class names are accepted as aliases.
    pub enum AuthenticatorClass {
        /// Local system accounts through PAM (JupyterHub's default).
        Pam = "pam" | "default" | "PAMAuthenticator" | "jupyterhub.auth.PAMAuthenticator",
        /// Any username; an optional shared password. For testing only.
        Dummy = "dummy" | "DummyAuthenticator" | "jupyterhub.auth.DummyAuthenticator",
        /// One shared password for users and another for admins.
        SharedPassword = "shared-password" | "shared_password" | "SharedPasswordAuthenticator"
            | "jupyterhub.authenticators.shared.SharedPasswordAuthenticator",
    }
}

keyword_enum! {
    /// Which spawner starts single-user servers. JupyterHub's class names are accepted as
    /// aliases.
    pub enum SpawnerClass {
        /// Local processes, as the user's system account when the hub runs as root.
        Local = "local" | "default" | "localprocess" | "LocalProcessSpawner"
            | "jupyterhub.spawner.LocalProcessSpawner" | "SimpleLocalProcessSpawner"
            | "jupyterhub.spawner.SimpleLocalProcessSpawner",
        /// Batch jobs on a Slurm cluster (batchspawner's `SlurmSpawner`).
        Slurm = "slurm" | "SlurmSpawner" | "batchspawner.SlurmSpawner",
        /// Batch jobs on any scheduler, driven by the commands and patterns of
        /// `[spawner.batch]` (batchspawner's `BatchSpawnerRegexStates`).
        Batch = "batch" | "BatchSpawnerRegexStates" | "batchspawner.BatchSpawnerRegexStates",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls() {
        let url = HttpUrl::parse("http://:8000").unwrap();
        assert_eq!(url.as_str(), "http://0.0.0.0:8000/");
        assert!(HttpUrl::parse("ftp://x").is_err());
        assert!(HttpUrl::parse("/relative").is_err());
        assert_eq!(
            HttpUrl::parse("https://hub.example.org/x").unwrap().path(),
            "/x"
        );
    }

    #[test]
    fn base_urls_are_normalised() {
        assert_eq!(BaseUrl::parse("jupyter").unwrap().as_str(), "/jupyter/");
        assert_eq!(BaseUrl::parse("/a/b/").unwrap().as_str(), "/a/b/");
        assert_eq!(BaseUrl::parse("").unwrap().as_str(), "/");
        assert_eq!(BaseUrl::parse("/x").unwrap().hub_prefix(), "/x/hub/");
        assert!(BaseUrl::parse("/a b/").is_err());
        assert!(BaseUrl::parse("/a?b").is_err());
        assert!(BaseUrl::parse("//evil").is_err());
    }

    #[test]
    fn database_urls() {
        assert_eq!(
            DbUrl::parse("sqlite:///jupyterhub.sqlite").unwrap(),
            DbUrl::default_sqlite()
        );
        assert_eq!(
            DbUrl::parse("sqlite:////var/lib/hub.db").unwrap(),
            DbUrl::Sqlite("/var/lib/hub.db".into())
        );
        assert_eq!(DbUrl::parse("sqlite://").unwrap(), DbUrl::SqliteMemory);
        assert_eq!(
            DbUrl::parse("sqlite:///:memory:").unwrap(),
            DbUrl::SqliteMemory
        );
        let pg = DbUrl::parse("postgresql+psycopg2://hub:s3cret@db:5432/hub").unwrap();
        assert!(matches!(&pg, DbUrl::Postgres(u) if u.scheme() == "postgresql"));
        assert_eq!(
            pg.to_text(Secrets::Redact),
            "postgresql://hub:<redacted>@db:5432/hub"
        );
        assert!(!format!("{pg:?}").contains("s3cret"));
        assert!(DbUrl::parse("mysql://x/y").is_err());
        assert!(DbUrl::parse("sqlite://relative.db").is_err());
        assert!(DbUrl::parse("jupyterhub.sqlite").is_err());
        // Round trip of the SQLite forms.
        for text in [
            "sqlite:///jupyterhub.sqlite",
            "sqlite:////abs/x.db",
            "sqlite://",
        ] {
            assert_eq!(DbUrl::parse(text).unwrap().to_text(Secrets::Show), text);
        }
    }

    #[test]
    fn keyword_aliases() {
        assert_eq!(LogLevel::from_name("WARNING"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::from_name("10"), Some(LogLevel::Debug));
        assert_eq!(
            AuthenticatorClass::from_name("jupyterhub.auth.DummyAuthenticator"),
            Some(AuthenticatorClass::Dummy)
        );
        assert_eq!(
            SpawnerClass::from_name("LocalProcessSpawner"),
            Some(SpawnerClass::Local)
        );
        assert_eq!(AuthenticatorClass::from_name("ldap"), None);
    }

    #[test]
    fn limits() {
        assert!(!Limit::NONE.is_reached(1_000_000));
        assert!(Limit::at_most(2).is_reached(2));
        assert!(!Limit::at_most(2).is_reached(1));
        assert_eq!(Limit::at_most(0), Limit::NONE);
        assert_eq!(DurationLimit::at_most(Duration::ZERO), DurationLimit::NONE);
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let s = Secret::new("hunter2hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let tokens = ApiTokens::new([(s, "alice".to_owned())]);
        assert!(!format!("{tokens:?}").contains("hunter2"));
    }

    #[test]
    fn commands() {
        let c = Command::new("chp-proxy", ["--x".to_owned()]);
        assert_eq!(c.program(), "chp-proxy");
        assert_eq!(c.args(), ["--x".to_owned()]);
    }
}
