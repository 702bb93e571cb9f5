//! The hub's configuration: a TOML file, then environment variables, then command-line flags,
//! merged over built-in defaults and validated into a typed [`HubConfig`].
//!
//! - [`sections`]: the sections and keys, named after JupyterHub's classes and settings; the
//!   doc comment of each key is its documentation everywhere.
//! - [`values`]: the typed values keys hold (URLs, ports, durations, secrets, ...).
//! - [`layers`]: reading the file, the environment and the flags, and remembering where each
//!   value came from ([`Provenance`]).
//! - [`cli`]: the `hub` command line.
//! - `render`: `--generate-config`, `--show-config` and `docs/reference/hub-config.md`.
//! - `validate`: checks that span keys, and the values derived from others.
//!
//! Design: values are decoded straight into their final types (no stage holding raw strings),
//! key by key, so an error can name the key and the layer that set it; the raw stage is the
//! merged TOML tree itself. Unknown keys are errors with a "did you mean" suggestion.
//!
//! Loading never reads the process environment or logs: [`load`] takes the environment as a
//! function, and returns warnings in [`Loaded::notices`] for the caller to log once logging is
//! set up (the log level is itself configuration).

pub mod cli;
pub mod error;
pub mod layers;
mod render;
pub(crate) mod schema;
pub mod sections;
mod validate;
pub mod values;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

pub use cli::{Action, Cli, HubCommand};
pub use error::{ConfigError, Problem};
pub use layers::{Provenance, Source};
pub use render::{generate_config, reference_markdown};
pub use schema::REDACTED;
pub use sections::{
    AuthenticatorSection, CustomScope, DummySection, GroupConfig, HubSection, PamSection,
    ProfileConfig, ProxySection, RoleConfig, ServiceConfig, SharedPasswordSection, SpawnerSection,
};
pub use values::{
    ApiTokens, AuthenticatorClass, BaseUrl, Command, Days, DbUrl, DurationLimit, HttpUrl, Limit,
    Location, LogFormat, LogLevel, MetricsPrefix, Port, Secret, SpawnerClass,
};

use schema::{Decoder, TomlValue, config_section};

config_section! {
    /// The hub's whole configuration, validated. Built by [`load`]; tests may also start from
    /// `HubConfig::default()` and set fields.
    pub struct HubConfig {
        /// `[hub]`: the hub process.
        pub hub: HubSection = HubSection::default(),
        /// `[proxy]`: the HTTP proxy.
        pub proxy: ProxySection = ProxySection::default(),
        /// `[authenticator]`: who may log in.
        pub authenticator: AuthenticatorSection = AuthenticatorSection::default(),
        /// `[spawner]`: how servers are started.
        pub spawner: SpawnerSection = SpawnerSection::default(),
        /// `[[services]]`: services registered with the hub.
        pub services: Vec<ServiceConfig> = Vec::new(),
        /// `[[roles]]`: roles to create or update at startup.
        pub roles: Vec<RoleConfig> = Vec::new(),
        /// `[groups.<name>]`: groups to create or update at startup.
        pub groups: BTreeMap<String, GroupConfig> = BTreeMap::new(),
        /// `[[profiles]]`: server profiles users choose from when they start a server.
        pub profiles: Vec<ProfileConfig> = Vec::new(),
    }
}

impl HubConfig {
    /// Decodes and validates TOML text alone, with no environment or flags, as if it were a
    /// config file at `path` (used in messages only). Values derived at startup, such as a
    /// generated proxy token, are not filled in.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<HubConfig, ConfigError> {
        let table = layers::parse_toml(text).map_err(|message| ConfigError::Syntax {
            path: path.to_owned(),
            message,
        })?;
        let mut provenance = Provenance::default();
        layers::record_parsed(&mut provenance, path, &table);
        let mut notices = Vec::new();
        decode_and_validate(table, &provenance, &mut notices)
    }
}

/// A loaded configuration and what is known about how it was put together.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: HubConfig,
    /// Which layer set each key, for messages and `--show-config`.
    pub provenance: Provenance,
    /// Warnings found while loading (deprecated keys, conflicting settings), to be logged
    /// once logging is set up.
    pub notices: Vec<String>,
}

impl Loaded {
    /// The config file that was read, if any.
    pub fn config_file(&self) -> Option<&Path> {
        self.provenance.file()
    }

    /// The effective configuration as TOML, every secret replaced by `"<redacted>"`, with
    /// comments saying which values came from the environment or the command line.
    pub fn show_config(&self) -> String {
        render::show_config(&self.config, &self.provenance)
    }
}

/// Loads the configuration: defaults, then the file (`--config`, else `$JUPYTERHUB_CONFIG`,
/// else `jupyterhub_config.toml` in the working directory when it exists), then the
/// environment as seen through `env`, then the flags in `cli`.
///
/// # Errors
/// When the file cannot be read or parsed, or any key is unknown or invalid; all problems are
/// reported together.
pub fn load(cli: &Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    load_in(cli, env, Path::new(""))
}

/// [`load`] with `cwd` standing for the working directory when looking for the default file.
pub(crate) fn load_in(
    cli: &Cli,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<Loaded, ConfigError> {
    let mut provenance = Provenance::default();
    let mut notices = Vec::new();

    let mut tree = match layers::choose_file(cli.config.as_deref(), env, cwd) {
        Some((path, _)) => layers::read_file(&path, &mut provenance)?,
        None => {
            let python = cwd.join("jupyterhub_config.py");
            if python.is_file() {
                notices.push(format!(
                    "{} is not read: this hub reads TOML (jupyterhub_config.toml); \
                     `hub --generate-config` shows every key",
                    python.display()
                ));
            }
            toml::Table::new()
        }
    };
    layers::apply_env(&mut tree, &mut provenance, env, &mut notices);
    cli.apply(&mut tree, &mut provenance);

    let mut config = decode_and_validate(tree, &provenance, &mut notices)?;
    if config.proxy.should_start && config.proxy.auth_token.is_none() {
        config.proxy.auth_token = Some(generate_proxy_token());
        provenance.set_override("proxy.auth_token", Source::Generated);
    }
    Ok(Loaded {
        config,
        provenance,
        notices,
    })
}

fn decode_and_validate(
    tree: toml::Table,
    provenance: &Provenance,
    notices: &mut Vec<String>,
) -> Result<HubConfig, ConfigError> {
    let mut cx = Decoder::new(provenance);
    let decoded = HubConfig::decode(toml::Value::Table(tree), &mut cx, "");
    let mut problems = cx.into_problems();
    match decoded {
        Some(mut config) if problems.is_empty() => {
            validate::validate(&mut config, provenance, &mut problems, notices);
            if problems.is_empty() {
                Ok(config)
            } else {
                Err(ConfigError::Invalid(problems))
            }
        }
        _ => Err(ConfigError::Invalid(problems)),
    }
}

/// A proxy token like JupyterHub's (`uuid4().hex`): 32 hex digits, 128 random bits.
fn generate_proxy_token() -> Secret {
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    Secret::new(hex::encode(bytes))
}
