//! How one configuration key is decoded, encoded and documented.
//!
//! [`TomlValue`] is implemented once per value type (in `values.rs`) and once per section by the
//! `config_section!` macro, which also turns the section's doc comments into a
//! [`SectionSchema`]. Decoding, `--generate-config`, `--show-config` and the reference docs all
//! walk that one schema, so they cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};

use toml::Value;

use super::error::Problem;
use super::layers::Provenance;

/// What a key holds, as far as layering and rendering care.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A single value that an environment variable or a flag can set.
    Scalar(Scalar),
    /// An array of plain values, written inline.
    List,
    /// A table of plain values, written inline (`{ A = "1" }`).
    Map,
    /// A nested table with its own keys (`[authenticator.pam]`).
    Section(&'static SectionSchema),
    /// An array of tables (`[[services]]`).
    Sections(&'static SectionSchema),
    /// A table of tables keyed by a name (`[groups.<name>]`).
    NamedSections(&'static SectionSchema),
}

/// The TOML type a text value from the environment or the command line is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar {
    String,
    Integer,
    /// An integer or a float.
    Number,
    Bool,
}

impl Kind {
    /// Whether the key is a plain value inside its section (rendered as `key = value`).
    pub(crate) fn is_inline(self) -> bool {
        matches!(self, Kind::Scalar(_) | Kind::List | Kind::Map)
    }
}

/// The keys of one section, with the doc comments written on its struct.
#[derive(Debug)]
pub(crate) struct SectionSchema {
    /// The doc comment of the struct.
    pub doc: &'static str,
    pub fields: &'static [FieldSchema],
}

impl SectionSchema {
    pub(crate) fn field(&self, name: &str) -> Option<&'static FieldSchema> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// One key of a section.
#[derive(Debug)]
pub(crate) struct FieldSchema {
    pub name: &'static str,
    /// The doc comment of the field, one line per `///` line.
    pub doc: &'static str,
    pub kind: fn() -> Kind,
    pub type_name: fn() -> String,
}

/// Whether secrets are written out or replaced by `"<redacted>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secrets {
    Show,
    Redact,
}

/// The text that stands in for every secret in `--show-config`.
pub const REDACTED: &str = "<redacted>";

/// A value that can be read from and written to TOML.
pub(crate) trait TomlValue: Sized {
    fn kind() -> Kind;
    /// Short type description for the reference docs ("URL", "list of strings").
    fn type_name() -> String;
    /// Decodes `value` found at `path`. On failure the problem is recorded in `cx` and `None`
    /// is returned, so decoding can go on and report every problem at once.
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self>;
    /// The TOML form; `None` leaves the key out (an unset optional value).
    fn encode(&self, secrets: Secrets) -> Option<Value>;
}

/// Collects problems while a TOML tree is decoded.
#[derive(Debug)]
pub(crate) struct Decoder<'a> {
    provenance: &'a Provenance,
    problems: Vec<Problem>,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(provenance: &'a Provenance) -> Self {
        Self {
            provenance,
            problems: Vec::new(),
        }
    }

    pub(crate) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// Records a problem with the value at `path`.
    pub(crate) fn invalid(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            key: path.to_owned(),
            message: message.into(),
            source: self.provenance.source_of_value(path),
        });
    }

    /// Records "expected X, found Y", quoting what was found.
    pub(crate) fn expected(&mut self, path: &str, expected: &str, found: &Value) {
        self.invalid(
            path,
            format!("expected {expected}, found {}", describe(found)),
        );
    }

    /// Like [`Decoder::expected`] but names only the type found, never the text: for secrets.
    pub(crate) fn expected_secret(&mut self, path: &str, expected: &str, found: &Value) {
        self.invalid(
            path,
            format!("expected {expected}, found {}", describe_type(found)),
        );
    }

    /// Records a key that the section does not have, with a suggestion when one is close.
    pub(crate) fn unknown_key(&mut self, path: &str, key: &str, known: &[&str]) {
        let renamed = JUPYTERHUB_NAMES
            .iter()
            .find(|(theirs, ours)| key.eq_ignore_ascii_case(theirs) && known.contains(ours))
            .map(|(_, ours)| *ours);
        let what = if path.contains(['.', '[']) {
            "key"
        } else {
            "section"
        };
        let message = match renamed.or_else(|| suggest(key, known)) {
            Some(s) => format!("unknown {what}, did you mean `{s}`?"),
            None => format!("unknown {what} (`hub --generate-config` lists every key)"),
        };
        self.invalid(path, message);
    }
}

/// Names a JupyterHub operator may reach for, and the key that holds those settings here.
const JUPYTERHUB_NAMES: &[(&str, &str)] = &[
    ("JupyterHub", "hub"),
    ("ConfigurableHTTPProxy", "proxy"),
    ("Proxy", "proxy"),
    ("Authenticator", "authenticator"),
    ("PAMAuthenticator", "authenticator"),
    ("DummyAuthenticator", "authenticator"),
    ("SharedPasswordAuthenticator", "authenticator"),
    ("LocalAuthenticator", "authenticator"),
    ("Spawner", "spawner"),
    ("LocalProcessSpawner", "spawner"),
    ("SimpleLocalProcessSpawner", "spawner"),
    ("service", "services"),
    ("role", "roles"),
    ("load_roles", "roles"),
    ("group", "groups"),
    ("load_groups", "groups"),
];

/// Describes a TOML value for an error message: `the string "abc"`, `the integer 70000`.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => {
            let mut shown: String = s.chars().take(60).collect();
            if shown.len() < s.len() {
                shown.push('…');
            }
            format!("the string {shown:?}")
        }
        Value::Integer(i) => format!("the integer {i}"),
        Value::Float(f) => format!("the number {f}"),
        Value::Boolean(b) => format!("the boolean {b}"),
        other => describe_type(other).to_owned(),
    }
}

/// The type of a TOML value, with an article: `a string`, `a table`.
pub(crate) fn describe_type(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    }
}

/// `path.key`, quoting the key when TOML needs it.
pub(crate) fn join(path: &str, key: &str) -> String {
    let key = toml_key(key);
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// `path[index]`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// A key as written in TOML: bare when it can be, quoted otherwise.
pub(crate) fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

/// The known name closest to `key`, if it is close enough to be a likely typo.
pub(crate) fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = key.to_ascii_lowercase().replace('-', "_");
    let (best, distance) = known
        .iter()
        .map(|k| (*k, edit_distance(&lower, k)))
        .min_by_key(|(_, d)| *d)?;
    // One edit per three characters, at least one and at most three.
    let allowed = (key.chars().count() / 3).clamp(1, 3);
    (distance <= allowed).then_some(best)
}

/// Levenshtein distance, counting an adjacent swap as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

// === generic impls ===

impl<T: TomlValue> TomlValue for Option<T> {
    fn kind() -> Kind {
        T::kind()
    }
    fn type_name() -> String {
        T::type_name()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        // TOML has no null: a key that is present is set.
        T::decode(value, cx, path).map(Some)
    }
    fn encode(&self, secrets: Secrets) -> Option<Value> {
        self.as_ref().and_then(|v| v.encode(secrets))
    }
}

impl<T: TomlValue> TomlValue for Vec<T> {
    fn kind() -> Kind {
        match T::kind() {
            Kind::Section(s) => Kind::Sections(s),
            _ => Kind::List,
        }
    }
    fn type_name() -> String {
        list_of(&T::type_name())
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        let items = match value {
            Value::Array(items) => items,
            other => {
                cx.expected(path, &format!("a {}", Self::type_name()), &other);
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            match T::decode(item, cx, &index(path, i)) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
    fn encode(&self, secrets: Secrets) -> Option<Value> {
        Some(Value::Array(
            self.iter().filter_map(|v| v.encode(secrets)).collect(),
        ))
    }
}

impl TomlValue for BTreeSet<String> {
    fn kind() -> Kind {
        Kind::List
    }
    fn type_name() -> String {
        "list of strings".to_owned()
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        Vec::<String>::decode(value, cx, path).map(|v| v.into_iter().collect())
    }
    fn encode(&self, _: Secrets) -> Option<Value> {
        Some(Value::Array(
            self.iter().map(|s| Value::String(s.clone())).collect(),
        ))
    }
}

impl<T: TomlValue> TomlValue for BTreeMap<String, T> {
    fn kind() -> Kind {
        match T::kind() {
            Kind::Section(s) => Kind::NamedSections(s),
            _ => Kind::Map,
        }
    }
    fn type_name() -> String {
        format!("table of {}", plural(&T::type_name()))
    }
    fn decode(value: Value, cx: &mut Decoder<'_>, path: &str) -> Option<Self> {
        let table = match value {
            Value::Table(table) => table,
            other => {
                cx.expected(path, "a table", &other);
                return None;
            }
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (key, item) in table {
            let at = join(path, &key);
            match T::decode(item, cx, &at) {
                Some(v) => {
                    out.insert(key, v);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
    fn encode(&self, secrets: Secrets) -> Option<Value> {
        Some(Value::Table(
            self.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.encode(secrets)?)))
                .collect(),
        ))
    }
}

/// "list of strings", "list of (integer (1–65535))".
pub(crate) fn list_of(item: &str) -> String {
    format!("list of {}", plural(item))
}

fn plural(item: &str) -> String {
    if item.chars().all(|c| c.is_ascii_alphabetic()) {
        format!("{item}s")
    } else {
        format!("({item})")
    }
}

/// Defines a configuration section: the struct with its doc comments, its `Default`, its
/// [`TomlValue`] impl (unknown keys are errors with a suggestion) and its [`SectionSchema`].
///
/// Every field is `pub name: Type = default_expression`; the field's doc comment is the text
/// that `--generate-config` and `docs/reference/hub-config.md` show for the key.
macro_rules! config_section {
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                pub $field:ident : $ty:ty = $default:expr
            ),* $(,)?
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                pub $field: $ty,
            )*
        }

        #[allow(clippy::derivable_impls, reason = "generated for every section alike")]
        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $name {
            /// The keys of this section and their documentation.
            #[allow(dead_code, reason = "not every section is walked by every renderer")]
            pub(crate) fn schema() -> &'static $crate::config::schema::SectionSchema {
                use $crate::config::schema::{FieldSchema, SectionSchema, TomlValue};
                static SCHEMA: SectionSchema = SectionSchema {
                    doc: concat!($($sdoc, "\n",)*),
                    fields: &[
                        $(
                            FieldSchema {
                                name: stringify!($field),
                                doc: concat!($($doc, "\n",)*),
                                kind: <$ty as TomlValue>::kind,
                                type_name: <$ty as TomlValue>::type_name,
                            },
                        )*
                    ],
                };
                &SCHEMA
            }
        }

        impl $crate::config::schema::TomlValue for $name {
            fn kind() -> $crate::config::schema::Kind {
                $crate::config::schema::Kind::Section(Self::schema())
            }

            fn type_name() -> String {
                "table".to_owned()
            }

            fn decode(
                value: toml::Value,
                cx: &mut $crate::config::schema::Decoder<'_>,
                path: &str,
            ) -> Option<Self> {
                use $crate::config::schema::{join, TomlValue};
                let table = match value {
                    toml::Value::Table(table) => table,
                    other => {
                        cx.expected(path, "a table", &other);
                        return None;
                    }
                };
                let mut out = Self::default();
                let mut ok = true;
                for (key, value) in table {
                    let at = join(path, &key);
                    match key.as_str() {
                        $(
                            stringify!($field) => match <$ty as TomlValue>::decode(value, cx, &at) {
                                Some(v) => out.$field = v,
                                None => ok = false,
                            },
                        )*
                        _ => {
                            cx.unknown_key(&at, &key, &[$(stringify!($field)),*]);
                            ok = false;
                        }
                    }
                }
                ok.then_some(out)
            }

            fn encode(&self, secrets: $crate::config::schema::Secrets) -> Option<toml::Value> {
                use $crate::config::schema::TomlValue;
                let mut table = toml::Table::new();
                $(
                    if let Some(v) = TomlValue::encode(&self.$field, secrets) {
                        table.insert(stringify!($field).to_owned(), v);
                    }
                )*
                Some(toml::Value::Table(table))
            }
        }
    };
}

pub(crate) use config_section;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_but_not_strangers() {
        let known = ["port", "ip", "base_url", "cookie_secret_file"];
        assert_eq!(suggest("prot", &known), Some("port"));
        assert_eq!(suggest("Port", &known), Some("port"));
        assert_eq!(suggest("base-url", &known), Some("base_url"));
        assert_eq!(
            suggest("cookie_secrt_file", &known),
            Some("cookie_secret_file")
        );
        assert_eq!(suggest("frobnicate", &known), None);
        assert_eq!(suggest("x", &["ip"]), None);
    }

    #[test]
    fn keys_are_quoted_only_when_needed() {
        assert_eq!(join("hub", "port"), "hub.port");
        assert_eq!(join("", "hub"), "hub");
        assert_eq!(join("groups", "data science"), "groups.\"data science\"");
        assert_eq!(index("services", 2), "services[2]");
    }

    #[test]
    fn describe_truncates_long_strings() {
        let long = "x".repeat(100);
        let text = describe(&Value::String(long));
        assert!(text.len() < 80, "{text}");
        assert_eq!(describe(&Value::Integer(7)), "the integer 7");
    }
}
