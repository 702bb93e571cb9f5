//! Writes the configuration out: `--generate-config` (every key with its doc and default),
//! `--show-config` (effective values, secrets redacted, sources noted) and the Markdown
//! reference in `docs/reference/hub-config.md`. All three walk the same schema, whose text
//! comes from the doc comments in `sections.rs`.

use std::fmt::Write as _;

use toml::{Table, Value};

use super::HubConfig;
use super::cli::flag_for;
use super::layers::{CONFIG_FILE_ENV, ENV_ALIASES, Provenance, Source, env_names};
use super::schema::{FieldSchema, Kind, Secrets, SectionSchema, TomlValue, index, join, toml_key};

/// Example values for keys that are unset by default, shown commented out by
/// `--generate-config`. Secrets get placeholders that the hub refuses if used as they are.
pub(crate) const LEAF_EXAMPLES: &[(&str, &str)] = &[
    ("hub.ip", "\"0.0.0.0\""),
    ("hub.port", "8000"),
    ("hub.public_url", "\"https://hub.example.org/\""),
    ("hub.hub_bind_url", "\"http://0.0.0.0:8081\""),
    (
        "hub.hub_connect_url",
        "\"http://hub.internal.example:8081\"",
    ),
    ("hub.ssl_key", "\"/etc/jupyterhub/tls/key.pem\""),
    ("hub.ssl_cert", "\"/etc/jupyterhub/tls/fullchain.pem\""),
    ("hub.cookie_secret", "\"<output of: openssl rand -hex 32>\""),
    ("hub.crypt_key", "\"<output of: openssl rand -hex 32>\""),
    ("hub.oauth_token_expires_in", "86400"),
    ("hub.default_url", "\"/hub/home\""),
    ("hub.logo_file", "\"/etc/jupyterhub/logo.png\""),
    (
        "hub.announcement",
        "\"Maintenance on Saturday from 8:00 to 10:00 UTC.\"",
    ),
    ("hub.pid_file", "\"/run/jupyterhub/hub.pid\""),
    ("proxy.auth_token", "\"<output of: openssl rand -hex 32>\""),
    ("authenticator.allow_all", "true"),
    ("authenticator.allow_existing_users", "true"),
    ("authenticator.dummy.password", "\"<a password>\""),
    (
        "authenticator.shared_password.global_password",
        "\"<at least 8 characters>\"",
    ),
    (
        "authenticator.shared_password.admin_password",
        "\"<at least 32 characters>\"",
    ),
    ("spawner.default_url", "\"/lab\""),
    ("spawner.notebook_dir", "\"~/notebooks\""),
    ("spawner.log_dir", "\"/var/log/jupyterhub/servers\""),
    (
        "spawner.server_token_scopes",
        "[\"users:activity!user\", \"access:servers!server\"]",
    ),
    // A PBS Pro site described for the `batch` spawner.
    ("spawner.batch.submit", r#"["qsub"]"#),
    (
        "spawner.batch.script",
        r##""#!/bin/sh\n#PBS -N {{ job_name }}\n#PBS -l walltime=8:00:00\n{{ cmd }}\n""##,
    ),
    ("spawner.batch.job_id_pattern", r"'^\s*(\S+)\s*$'"),
    (
        "spawner.batch.status",
        r#"["qstat", "-f", "-x", "{{ job_id }}"]"#,
    ),
    ("spawner.batch.running_pattern", "'job_state = R'"),
    ("spawner.batch.pending_pattern", "'job_state = [QH]'"),
    (
        "spawner.batch.unknown_pattern",
        "'Connection refused|cannot connect to server'",
    ),
    ("spawner.batch.host_pattern", r"'exec_host = ([\w.-]+)/'"),
    (
        "spawner.batch.details",
        r"['job_state = (?P<state>\w)', 'comment = (?P<reason>.+)']",
    ),
    ("spawner.batch.cancel", r#"["qdel", "{{ job_id }}"]"#),
    ("spawner.batch.cancel_by_name", "[]"),
    (
        "spawner.batch.options_form",
        r#"'<select name="partition"><option>debug</option><option>gpu</option></select>'"#,
    ),
    ("spawner.batch.start_timeout", "600"),
];

/// Example entries for the tables that are empty by default.
pub(crate) const BLOCK_EXAMPLES: &[(&str, &str)] = &[
    (
        "hub.custom_scopes",
        r#"[hub.custom_scopes."custom:grades:read"]
description = "Read the grades of your courses."
subscopes = []"#,
    ),
    (
        "services",
        r#"[[services]]
name = "idle-culler"
command = ["python3", "-m", "jupyterhub_idle_culler", "--timeout=3600"]

[[services]]
name = "dashboard"
url = "http://127.0.0.1:10101"
oauth_no_confirm = true"#,
    ),
    (
        "roles",
        r#"[[roles]]
name = "idle-culler"
description = "Find and stop idle servers."
scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
services = ["idle-culler"]"#,
    ),
    (
        "groups",
        r#"[groups.teachers]
users = ["alice", "bob"]
properties = { course = "physics-101" }"#,
    ),
    (
        "profiles",
        r#"[[profiles]]
slug = "standard"
display_name = "Standard"
description = "2 CPUs and 4 GB of memory."
default = true
user_options = { cpu_limit = 2, mem_limit = "4G" }

[[profiles]]
slug = "gpu"
display_name = "GPU"
description = "One GPU, for the machine-learning course."
groups = ["teachers"]
environment = { CUDA_VISIBLE_DEVICES = "0" }
user_options = { image = "quay.io/jupyter/pytorch-notebook:cuda12-latest", gpus = 1 }"#,
    ),
];

const GENERATED_HEADER: &str = "\
# Configuration of the hub, in TOML.
#
# Printed by `hub --generate-config`: every key, what it does and its default. Keys left at
# their default may be deleted; keys commented out are unset by default. Unknown keys are
# errors, so a typo cannot go unnoticed.
#
# Layers, each overriding the one before: built-in defaults, this file, environment
# variables (JUPYTERHUB_<SECTION>_<KEY>, e.g. JUPYTERHUB_HUB_PORT), command-line flags.
";

/// A config file listing every key with its documentation and default value. Parsed back, it
/// gives the defaults.
pub fn generate_config() -> String {
    let defaults = encode(&HubConfig::default(), Secrets::Show);
    let mut out = String::from(GENERATED_HEADER);
    write_section(
        &mut out,
        "",
        HubConfig::schema(),
        &defaults,
        &Mode::Generate,
    );
    out
}

/// The effective configuration, secrets redacted.
pub(crate) fn show_config(config: &HubConfig, provenance: &Provenance) -> String {
    let values = encode(config, Secrets::Redact);
    let mut out = String::from(
        "# Effective configuration of the hub. Secrets are shown as \"<redacted>\".\n",
    );
    match provenance.file() {
        Some(file) => writeln!(out, "# Config file: {}", file.display()),
        None => writeln!(
            out,
            "# Config file: none (defaults, environment and flags only)"
        ),
    }
    .ok();
    write_section(
        &mut out,
        "",
        HubConfig::schema(),
        &values,
        &Mode::Show(provenance),
    );
    out
}

fn encode(config: &HubConfig, secrets: Secrets) -> Table {
    match config.encode(secrets) {
        Some(Value::Table(t)) => t,
        _ => Table::new(),
    }
}

enum Mode<'a> {
    Generate,
    Show(&'a Provenance),
}

fn write_section(
    out: &mut String,
    path: &str,
    schema: &SectionSchema,
    table: &Table,
    mode: &Mode<'_>,
) {
    for field in schema.fields {
        let kind = (field.kind)();
        if !kind.is_inline() {
            continue;
        }
        let key_path = join(path, field.name);
        let value = table.get(field.name);
        match mode {
            Mode::Generate => {
                out.push('\n');
                write_comment(out, "", field.doc);
                let mut meta = format!("Type: {}.", (field.type_name)());
                let names = env_names(&key_path);
                if !names.is_empty() {
                    write!(meta, " Environment: {}.", names.join(", ")).ok();
                }
                if let Some(flag) = flag_for(&key_path) {
                    write!(meta, " Flag: {flag}.").ok();
                }
                writeln!(out, "# {meta}").ok();
                match value {
                    Some(v) => writeln!(out, "{} = {}", toml_key(field.name), inline(v)),
                    None => writeln!(out, "# {} = {}", toml_key(field.name), example(&key_path)),
                }
                .ok();
            }
            Mode::Show(provenance) => match value {
                Some(v) => {
                    write!(out, "{} = {}", toml_key(field.name), inline(v)).ok();
                    match provenance.source_of(&key_path) {
                        source @ (Source::Env(_) | Source::Cli(_) | Source::Generated) => {
                            write!(out, "  # {source}").ok();
                        }
                        Source::Default | Source::File(_) => {}
                    }
                    out.push('\n');
                }
                None => {
                    writeln!(out, "# {} is unset", toml_key(field.name)).ok();
                }
            },
        }
    }

    for field in schema.fields {
        let key_path = join(path, field.name);
        let value = table.get(field.name);
        match ((field.kind)(), mode) {
            (Kind::Section(s), _) => {
                out.push('\n');
                if matches!(mode, Mode::Generate) {
                    write_comment(out, "", s.doc);
                }
                writeln!(out, "[{key_path}]").ok();
                let empty = Table::new();
                let sub = value.and_then(Value::as_table).unwrap_or(&empty);
                write_section(out, &key_path, s, sub, mode);
            }
            (Kind::Sections(s) | Kind::NamedSections(s), Mode::Generate) => {
                write_example_block(out, &key_path, field, s);
            }
            (Kind::Sections(s), Mode::Show(_)) => {
                let items = value
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                for (i, item) in items.iter().enumerate() {
                    if let Value::Table(t) = item {
                        writeln!(out, "\n[[{key_path}]]").ok();
                        write_section(out, &index(&key_path, i), s, t, mode);
                    }
                }
            }
            (Kind::NamedSections(s), Mode::Show(_)) => {
                if let Some(entries) = value.and_then(Value::as_table) {
                    for (name, item) in entries {
                        if let Value::Table(t) = item {
                            let at = join(&key_path, name);
                            writeln!(out, "\n[{at}]").ok();
                            write_section(out, &at, s, t, mode);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// The documented keys of a table of entries, then a commented-out example.
fn write_example_block(out: &mut String, path: &str, field: &FieldSchema, schema: &SectionSchema) {
    let header = match (field.kind)() {
        Kind::Sections(_) => format!("[[{path}]]"),
        _ => format!("[{path}.<name>]"),
    };
    let defaults = default_entry(schema);
    writeln!(out, "\n# {header}").ok();
    write_comment(out, "", schema.doc);
    writeln!(out, "#\n# Keys of each entry:").ok();
    for key in schema.fields {
        let mut head = format!("#   {}: {}", key.name, (key.type_name)());
        if let Some(v) = defaults.get(key.name).filter(|v| !is_empty_value(v)) {
            write!(head, ", default {}", inline(v)).ok();
        }
        writeln!(out, "{head}").ok();
        write_comment(out, "      ", key.doc);
    }
    if let Some((_, example)) = BLOCK_EXAMPLES.iter().find(|(p, _)| *p == path) {
        writeln!(out, "#\n# For example:\n#").ok();
        for line in example.lines() {
            if line.is_empty() {
                out.push_str("#\n");
            } else {
                writeln!(out, "# {line}").ok();
            }
        }
    }
}

/// The encoded defaults of one entry of a table of sections.
fn default_entry(schema: &SectionSchema) -> Table {
    // Every table of sections in the config is one of these; look the defaults up by schema.
    let candidates = [
        (
            super::ServiceConfig::schema(),
            super::ServiceConfig::default().encode(Secrets::Show),
        ),
        (
            super::RoleConfig::schema(),
            super::RoleConfig::default().encode(Secrets::Show),
        ),
        (
            super::GroupConfig::schema(),
            super::GroupConfig::default().encode(Secrets::Show),
        ),
        (
            super::CustomScope::schema(),
            super::CustomScope::default().encode(Secrets::Show),
        ),
    ];
    candidates
        .into_iter()
        .find(|(s, _)| std::ptr::eq(*s, schema))
        .and_then(|(_, v)| match v {
            Some(Value::Table(t)) => Some(t),
            _ => None,
        })
        .unwrap_or_default()
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Table(t) => t.is_empty(),
        _ => false,
    }
}

fn example(path: &str) -> &'static str {
    LEAF_EXAMPLES
        .iter()
        .find(|(p, _)| *p == path)
        .map_or("...", |(_, e)| *e)
}

/// A value on one line, as TOML.
fn inline(value: &Value) -> String {
    value.to_string()
}

/// Doc-comment text as `#` comment lines.
fn write_comment(out: &mut String, indent: &str, doc: &str) {
    for line in doc_lines(doc) {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            writeln!(out, "# {indent}{line}").ok();
        }
    }
}

/// The lines of a doc comment without the space after `///`.
fn doc_lines(doc: &str) -> impl Iterator<Item = &str> {
    doc.lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
}

/// A doc comment as one paragraph, for a table cell.
fn doc_paragraph(doc: &str) -> String {
    doc_lines(doc)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

// === Markdown ===

const REFERENCE_INTRO: &str = "\
# Hub configuration reference

<!-- Generated from the doc comments in hub/src/config/sections.rs; do not edit by hand.
     After changing a key, run: cargo test -p hub -- --ignored write_reference_doc -->

The hub reads its configuration in layers, each overriding the one before:

1. built-in defaults;
2. a TOML file: `hub --config PATH` (or `-f PATH`), else the file named by `$JUPYTERHUB_CONFIG`,
   else `jupyterhub_config.toml` in the working directory if it exists;
3. environment variables: `JUPYTERHUB_<SECTION>_<KEY>` for every key holding a single value
   (for example `JUPYTERHUB_HUB_PORT`, `JUPYTERHUB_PROXY_API_URL`,
   `JUPYTERHUB_AUTHENTICATOR_PAM_SERVICE`), and the variables JupyterHub already uses (below).
   Lists and tables can only be set in the file, and a command set this way is the program
   alone, without arguments. An empty variable counts as unset;
4. command-line flags.

Sections are named after JupyterHub's configurable classes and keys keep JupyterHub's names:
`c.JupyterHub.base_url` is `base_url` under `[hub]`, `c.Spawner.start_timeout` is
`start_timeout` under `[spawner]`, `c.JupyterHub.services` is `[[services]]`.

Every value is checked when the hub starts. An error names the key and where its value came
from, for example `hub.port: expected an integer from 1 to 65535, found the integer 70000
(from /etc/jupyterhub/jupyterhub_config.toml)` or `(from environment JUPYTERHUB_HUB_PORT)`.
Unknown keys are errors, with a suggestion when the key looks like a typo. All problems are
reported at once.

- `hub --generate-config` prints a file with every key, its documentation and its default.
- `hub --show-config` prints the effective configuration; every secret (tokens, passwords,
  the cookie secret, the database password) is shown as `\"<redacted>\"`, and values set by the
  environment or a flag are marked. Secret values written as `<...>` are refused, so such
  output cannot be used as a config file by mistake.
- `hub --check-config` checks the configuration and exits.

## The cookie secret

Login cookies are signed with the cookie secret. The hub takes it from `hub.cookie_secret`
(usually through `JUPYTERHUB_COOKIE_SECRET` or `JPY_COOKIE_SECRET`, as hex), else from the file
`hub.cookie_secret_file` (`jupyterhub_cookie_secret` in the working directory by default). When
the file does not exist, the hub writes 32 random bytes to it as 64 hex digits, creating it with
mode 0600. It refuses to start when the file grants any permission to the group or to others
(JupyterHub refuses only the latter): fix it with `chmod 600 <file>`. Legacy base64 content is
still read, with a warning. **Deleting or changing the secret logs everyone out.**
";

/// The configuration reference in Markdown, as kept in `docs/reference/hub-config.md`.
pub fn reference_markdown() -> String {
    let mut out = String::from(REFERENCE_INTRO);

    out.push_str("\n## Environment variables from JupyterHub\n\n");
    out.push_str("Besides `JUPYTERHUB_<SECTION>_<KEY>`, these are read. When several are set, ");
    out.push_str("`JUPYTERHUB_<SECTION>_<KEY>` wins, then this list in order.\n\n");
    out.push_str("| variable | key |\n|---|---|\n");
    for (path, names) in ENV_ALIASES {
        for name in *names {
            writeln!(out, "| `{name}` | `{path}` |").ok();
        }
    }
    writeln!(
        out,
        "| `{CONFIG_FILE_ENV}` | the config file, when `--config` is not given |"
    )
    .ok();

    let defaults = encode(&HubConfig::default(), Secrets::Show);
    for field in HubConfig::schema().fields {
        let value = defaults.get(field.name);
        markdown_field(&mut out, "", field, value, 2);
    }
    out
}

/// A section's heading, its doc and a table of its keys; then its nested sections.
fn markdown_field(
    out: &mut String,
    parent: &str,
    field: &FieldSchema,
    value: Option<&Value>,
    level: usize,
) {
    let path = join(parent, field.name);
    let (schema, heading, with_env) = match (field.kind)() {
        Kind::Section(s) => (s, format!("[{path}]"), true),
        Kind::Sections(s) => (s, format!("[[{path}]]"), false),
        Kind::NamedSections(s) => (s, format!("[{path}.<name>]"), false),
        _ => return,
    };
    let hashes = "#".repeat(level);
    writeln!(
        out,
        "\n{hashes} `{heading}`\n\n{}",
        doc_paragraph(schema.doc)
    )
    .ok();
    let table = match (field.kind)() {
        Kind::Section(_) => value.and_then(Value::as_table).cloned().unwrap_or_default(),
        _ => default_entry(schema),
    };
    if with_env {
        out.push_str("\n| key | type | default | environment | flag | meaning |\n");
        out.push_str("|---|---|---|---|---|---|\n");
    } else {
        out.push_str("\n| key | type | default | meaning |\n|---|---|---|---|\n");
    }
    let key_prefix = match (field.kind)() {
        Kind::Section(_) => path.clone(),
        _ => String::new(),
    };
    for key in schema.fields.iter().filter(|k| (k.kind)().is_inline()) {
        let default = match table.get(key.name) {
            Some(v) if matches!((field.kind)(), Kind::Section(_)) || !is_empty_value(v) => {
                format!("`{}`", inline(v).replace('|', "\\|"))
            }
            Some(_) => String::new(),
            None => "unset".to_owned(),
        };
        let ty = (key.type_name)().replace('|', "\\|");
        let doc = doc_paragraph(key.doc);
        if with_env {
            let key_path = join(&key_prefix, key.name);
            let env = env_names(&key_path)
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let flag = flag_for(&key_path)
                .map(|f| format!("`{f}`"))
                .unwrap_or_default();
            writeln!(
                out,
                "| `{}` | {ty} | {default} | {env} | {flag} | {doc} |",
                key.name
            )
            .ok();
        } else {
            writeln!(out, "| `{}` | {ty} | {default} | {doc} |", key.name).ok();
        }
    }
    for key in schema.fields.iter().filter(|k| !(k.kind)().is_inline()) {
        markdown_field(out, &path, key, table.get(key.name), level + 1);
    }
    if !matches!((field.kind)(), Kind::Section(_))
        && let Some((_, example)) = BLOCK_EXAMPLES.iter().find(|(p, _)| *p == path)
    {
        writeln!(out, "\nFor example:\n\n```toml\n{example}\n```").ok();
    }
}
