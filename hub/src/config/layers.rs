//! The layers of configuration and where each value came from.
//!
//! Built-in defaults, then the TOML file, then environment variables, then command-line flags:
//! each layer writes into one TOML tree, and [`Provenance`] remembers which layer wrote each
//! key so that every error can say where the bad value came from.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::HubConfig;
use super::error::ConfigError;
use super::schema::{Kind, Scalar, SectionSchema, index, join};

/// The file read when `--config` is not given, if it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "jupyterhub_config.toml";

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "JUPYTERHUB_CONFIG";

/// Prefix of the environment variable of every scalar key: `JUPYTERHUB_<SECTION>_<KEY>`.
pub const ENV_PREFIX: &str = "JUPYTERHUB_";

/// Environment variables JupyterHub and configurable-http-proxy already define, read as
/// aliases of our keys. When both are set, the `JUPYTERHUB_<SECTION>_<KEY>` name wins, then
/// these in order.
pub(crate) const ENV_ALIASES: &[(&str, &[&str])] = &[
    (
        "hub.cookie_secret",
        &["JUPYTERHUB_COOKIE_SECRET", "JPY_COOKIE_SECRET"],
    ),
    ("hub.crypt_key", &["JUPYTERHUB_CRYPT_KEY"]),
    ("hub.metrics_prefix", &["JUPYTERHUB_METRICS_PREFIX"]),
    ("proxy.auth_token", &["CONFIGPROXY_AUTH_TOKEN"]),
];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Nobody set it: the built-in default.
    Default,
    /// The config file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Cli(String),
    /// Made up at startup (the proxy token when none is configured).
    Generated,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("built-in default"),
            Source::File(path) => write!(f, "from {}", path.display()),
            Source::Env(name) => write!(f, "from environment {name}"),
            Source::Cli(flag) => write!(f, "from command line {flag}"),
            Source::Generated => f.write_str("generated at startup"),
        }
    }
}

/// Which layer set which key.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    file: Option<PathBuf>,
    /// Every key path present in the file, down to plain values (not inside them).
    in_file: BTreeSet<String>,
    /// Keys whose whole content came from the file: plain values, and the entries of lists
    /// and tables of sections (`services[0]`, `groups.staff`), but not fixed sections such
    /// as `[hub]`, whose missing keys are defaults.
    whole_in_file: BTreeSet<String>,
    /// Keys set by the environment or the command line, with the variable or flag.
    overrides: BTreeMap<String, Source>,
}

impl Provenance {
    /// Where the value of `key` (a dotted path such as `hub.port`) came from.
    pub fn source_of(&self, key: &str) -> Source {
        if let Some(source) = self.overrides.get(key) {
            return source.clone();
        }
        // Entries inside lists and plain tables are not tracked one by one: the nearest
        // enclosing key that the file set answers for them.
        let in_file =
            self.in_file.contains(key) || ancestors(key).any(|k| self.whole_in_file.contains(k));
        match &self.file {
            Some(file) if in_file => Source::File(file.clone()),
            _ => Source::Default,
        }
    }

    /// The config file that was read, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Source of a value being decoded: it is in the tree, so unless the environment or a
    /// flag put it there it came from the file (also for items inside lists and tables,
    /// which are not tracked one by one).
    pub(crate) fn source_of_value(&self, key: &str) -> Source {
        if let Some(source) = self.overrides.get(key) {
            return source.clone();
        }
        match &self.file {
            Some(file) => Source::File(file.clone()),
            None => Source::Default,
        }
    }

    pub(crate) fn set_override(&mut self, key: &str, source: Source) {
        self.overrides.insert(key.to_owned(), source);
    }
}

/// The enclosing keys of a dotted path, nearest first: `a.b[2].c` gives `a.b[2]`, `a.b`, `a`.
/// Quoted keys (`groups."x.y"`) are kept whole.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut cuts = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in path.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if (c == '.' || c == '[') && i > 0 => cuts.push(i),
            None => {}
        }
    }
    cuts.into_iter().rev().map(move |i| &path[..i])
}

// === the file ===

/// Picks the config file: `--config`, else `$JUPYTERHUB_CONFIG`, else `jupyterhub_config.toml`
/// in `cwd` when it exists. The first two must exist.
pub(crate) fn choose_file(
    flag: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Option<(PathBuf, bool)> {
    if let Some(path) = flag {
        return Some((path.to_owned(), true));
    }
    if let Some(path) = env(CONFIG_FILE_ENV).filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(path), true));
    }
    let default = cwd.join(DEFAULT_CONFIG_FILE);
    default.is_file().then_some((default, false))
}

/// Reads and parses the config file, recording which keys it sets.
pub(crate) fn read_file(path: &Path, provenance: &mut Provenance) -> Result<Table, ConfigError> {
    if path.extension().is_some_and(|e| e == "py") {
        return Err(ConfigError::PythonConfig {
            path: path.to_owned(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table = parse_toml(&text).map_err(|message| ConfigError::Syntax {
        path: path.to_owned(),
        message,
    })?;
    record_parsed(provenance, path, &table);
    Ok(table)
}

/// Records `table` as the content of the config file `path`.
pub(crate) fn record_parsed(provenance: &mut Provenance, path: &Path, table: &Table) {
    provenance.file = Some(path.to_owned());
    let mut keys = Recorded::default();
    record_keys(HubConfig::schema(), table, "", &mut keys);
    provenance.in_file = keys.all;
    provenance.whole_in_file = keys.whole;
}

#[derive(Default)]
struct Recorded {
    all: BTreeSet<String>,
    whole: BTreeSet<String>,
}

/// Parses TOML text, with the parser's line, column and excerpt in the error.
pub(crate) fn parse_toml(text: &str) -> Result<Table, String> {
    text.parse::<Table>()
        .map_err(|e| e.to_string().trim_end().to_owned())
}

/// Records every key path of `table`, following the schema into sections but not into plain
/// values (whose keys may be secrets, as in `hub.api_tokens`).
fn record_keys(schema: &SectionSchema, table: &Table, path: &str, out: &mut Recorded) {
    for (key, value) in table {
        let at = join(path, key);
        let kind = schema.field(key).map(|f| (f.kind)());
        match (kind, value) {
            (Some(Kind::Section(s)), Value::Table(t)) => record_keys(s, t, &at, out),
            (Some(Kind::Sections(s)), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let at = index(&at, i);
                    if let Value::Table(t) = item {
                        record_keys(s, t, &at, out);
                    }
                    out.all.insert(at.clone());
                    out.whole.insert(at);
                }
            }
            (Some(Kind::NamedSections(s)), Value::Table(t)) => {
                for (name, item) in t {
                    let at = join(&at, name);
                    if let Value::Table(t) = item {
                        record_keys(s, t, &at, out);
                    }
                    out.all.insert(at.clone());
                    out.whole.insert(at);
                }
            }
            _ => {
                out.whole.insert(at.clone());
            }
        }
        out.all.insert(at);
    }
}

// === environment and flags ===

/// A key that an environment variable can set.
#[derive(Debug, Clone)]
pub(crate) struct EnvKey {
    /// Dotted path, e.g. `proxy.api_url`.
    pub path: String,
    /// Path segments, for writing into the tree.
    pub segments: Vec<&'static str>,
    pub scalar: Scalar,
    /// `JUPYTERHUB_PROXY_API_URL` first, then any aliases.
    pub names: Vec<String>,
}

/// Every key settable from the environment: the scalar keys of `[hub]`, `[proxy]`,
/// `[authenticator]`, `[spawner]` and their sub-sections (not `[[services]]`, `[[roles]]` or
/// `[groups]`, whose entries have no fixed names).
pub(crate) fn env_keys() -> Vec<EnvKey> {
    let mut out = Vec::new();
    collect_env_keys(HubConfig::schema(), &mut Vec::new(), &mut out);
    out
}

fn collect_env_keys(
    schema: &'static SectionSchema,
    prefix: &mut Vec<&'static str>,
    out: &mut Vec<EnvKey>,
) {
    for field in schema.fields {
        prefix.push(field.name);
        match (field.kind)() {
            Kind::Scalar(scalar) => {
                let path = prefix.join(".");
                let mut names = vec![format!(
                    "{ENV_PREFIX}{}",
                    prefix.join("_").to_ascii_uppercase()
                )];
                if let Some((_, aliases)) = ENV_ALIASES.iter().find(|(p, _)| *p == path) {
                    names.extend(aliases.iter().map(|a| (*a).to_owned()));
                }
                out.push(EnvKey {
                    path,
                    segments: prefix.clone(),
                    scalar,
                    names,
                });
            }
            Kind::Section(s) => collect_env_keys(s, prefix, out),
            _ => {}
        }
        prefix.pop();
    }
}

/// The environment variable names of `path` (empty when the environment cannot set it).
pub(crate) fn env_names(path: &str) -> Vec<String> {
    env_keys()
        .into_iter()
        .find(|k| k.path == path)
        .map(|k| k.names)
        .unwrap_or_default()
}

/// Writes the environment's values into `tree`. An empty variable counts as unset, as
/// container tooling often leaves variables defined but empty.
pub(crate) fn apply_env(
    tree: &mut Table,
    provenance: &mut Provenance,
    env: &dyn Fn(&str) -> Option<String>,
    notices: &mut Vec<String>,
) {
    for key in env_keys() {
        let mut set: Vec<(String, String)> = key
            .names
            .iter()
            .filter_map(|name| Some((name.clone(), env(name).filter(|v| !v.is_empty())?)))
            .collect();
        if set.is_empty() {
            continue;
        }
        let (name, text) = set.remove(0);
        for (other, other_text) in &set {
            if *other_text != text {
                notices.push(format!(
                    "{name} and {other} are both set and differ; using {name} for {}",
                    key.path
                ));
            }
        }
        set_path(tree, &key.segments, text_to_value(key.scalar, &text));
        provenance.set_override(&key.path, Source::Env(name));
    }
}

/// Writes a flag's value into `tree`.
pub(crate) fn apply_flag(
    tree: &mut Table,
    provenance: &mut Provenance,
    path: &str,
    flag: &str,
    text: &str,
) {
    let Some(key) = env_keys().into_iter().find(|k| k.path == path) else {
        return;
    };
    set_path(tree, &key.segments, text_to_value(key.scalar, text));
    provenance.set_override(path, Source::Cli(flag.to_owned()));
}

/// Converts text from the environment or a flag to the TOML type the key expects. Text that
/// does not convert is kept as a string, so decoding reports it with the key's own message.
pub(crate) fn text_to_value(scalar: Scalar, text: &str) -> Value {
    let trimmed = text.trim();
    let converted = match scalar {
        Scalar::String => None,
        Scalar::Integer => trimmed.parse().ok().map(Value::Integer),
        Scalar::Number => trimmed
            .parse()
            .ok()
            .map(Value::Integer)
            .or_else(|| trimmed.parse().ok().map(Value::Float)),
        Scalar::Bool => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Some(Value::Boolean(false)),
            _ => None,
        },
    };
    converted.unwrap_or_else(|| Value::String(text.to_owned()))
}

/// Sets `segments` in `tree`, creating tables on the way. If the file put something other than
/// a table on the way, it is left for decoding to report.
fn set_path(tree: &mut Table, segments: &[&str], value: Value) {
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut table = tree;
    for segment in parents {
        let entry = table
            .entry((*segment).to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        match entry {
            Value::Table(t) => table = t,
            _ => return,
        }
    }
    table.insert((*last).to_owned(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_respect_quotes() {
        let all: Vec<&str> = ancestors("groups.\"a.b\".users[2]").collect();
        assert_eq!(all, ["groups.\"a.b\".users", "groups.\"a.b\"", "groups"]);
        assert_eq!(ancestors("hub").count(), 0);
        let all: Vec<&str> = ancestors("x.'q[1]'.y").collect();
        assert_eq!(all, ["x.'q[1]'", "x"]);
    }

    #[test]
    fn text_converts_to_the_expected_type_or_stays_text() {
        assert_eq!(text_to_value(Scalar::Integer, "8000"), Value::Integer(8000));
        assert_eq!(
            text_to_value(Scalar::Integer, "eighty"),
            Value::String("eighty".into())
        );
        assert_eq!(text_to_value(Scalar::Number, "1.5"), Value::Float(1.5));
        assert_eq!(text_to_value(Scalar::Bool, "Yes"), Value::Boolean(true));
        assert_eq!(text_to_value(Scalar::Bool, "0"), Value::Boolean(false));
        assert_eq!(
            text_to_value(Scalar::String, "0"),
            Value::String("0".into())
        );
    }

    #[test]
    fn env_names_follow_the_section_and_key() {
        assert_eq!(env_names("hub.port"), ["JUPYTERHUB_HUB_PORT"]);
        assert_eq!(env_names("proxy.api_url"), ["JUPYTERHUB_PROXY_API_URL"]);
        assert_eq!(
            env_names("proxy.auth_token"),
            ["JUPYTERHUB_PROXY_AUTH_TOKEN", "CONFIGPROXY_AUTH_TOKEN"]
        );
        assert_eq!(
            env_names("authenticator.pam.service"),
            ["JUPYTERHUB_AUTHENTICATOR_PAM_SERVICE"]
        );
        assert!(
            env_names("hub.template_paths").is_empty(),
            "lists are file-only"
        );
        assert!(env_names("services").is_empty());
    }

    #[test]
    fn every_alias_names_a_scalar_key() {
        let keys = env_keys();
        for (path, _) in ENV_ALIASES {
            assert!(keys.iter().any(|k| k.path == *path), "{path}");
        }
    }

    #[test]
    fn no_env_name_collides_with_what_jupyterhub_gives_servers() {
        // A hub started from inside a single-user session inherits these; none may be read
        // as hub configuration by accident.
        let server_env = [
            "JUPYTERHUB_API_TOKEN",
            "JUPYTERHUB_API_URL",
            "JUPYTERHUB_CLIENT_ID",
            "JUPYTERHUB_USER",
            "JUPYTERHUB_SERVER_NAME",
            "JUPYTERHUB_SERVICE_PREFIX",
            "JUPYTERHUB_SERVICE_URL",
            "JUPYTERHUB_SERVICE_NAME",
            "JUPYTERHUB_BASE_URL",
            "JUPYTERHUB_HUB_PREFIX",
            "JUPYTERHUB_OAUTH_CALLBACK_URL",
            "JUPYTERHUB_OAUTH_SCOPES",
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
            "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES",
            "JUPYTERHUB_ACTIVITY_URL",
            "JUPYTERHUB_HOST",
            "JUPYTERHUB_ADMIN_ACCESS",
            "JUPYTERHUB_DEFAULT_URL",
            "JUPYTERHUB_DEBUG",
            "JUPYTERHUB_PUBLIC_URL",
            "JUPYTERHUB_PUBLIC_HUB_URL",
            "JUPYTERHUB_ROOT_DIR",
            "JUPYTERHUB_ACTIVITY_INTERVAL",
            "JUPYTERHUB_SINGLEUSER_APP",
            "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED",
            "JUPYTERHUB_DISABLE_USER_CONFIG",
        ];
        for key in env_keys() {
            for name in &key.names {
                assert!(
                    !server_env.contains(&name.as_str()),
                    "{name} ({})",
                    key.path
                );
            }
        }
    }

    #[test]
    fn set_path_creates_tables_but_leaves_a_bad_file_value_alone() {
        let mut tree = Table::new();
        set_path(&mut tree, &["hub", "port"], Value::Integer(1));
        assert_eq!(tree["hub"]["port"].as_integer(), Some(1));
        let mut tree: Table = "hub = 3".parse().unwrap();
        set_path(&mut tree, &["hub", "port"], Value::Integer(1));
        assert_eq!(tree["hub"].as_integer(), Some(3));
    }
}
