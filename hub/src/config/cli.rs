//! The `hub` command line: flags that override configuration keys (the last layer), and what
//! to do (`--generate-config`, `--show-config`, `--check-config`, `upgrade-db`).
//!
//! Flag values are taken as text and decoded like every other layer, so a bad `--port` gets
//! the same message as a bad `port` in the file, naming the flag as its source.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use toml::Table;

use super::layers::{Provenance, apply_flag};

/// A drop-in replacement for JupyterHub.
#[derive(Debug, Clone, Parser)]
#[command(name = "hub", version, about = "The JupyterHub-compatible hub daemon", long_about = None)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "one field per command-line flag"
)]
pub struct Cli {
    /// Config file (TOML). Default: $JUPYTERHUB_CONFIG, else jupyterhub_config.toml in the
    /// working directory if it exists.
    #[arg(short = 'f', long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Public IP address the proxy listens on (hub.ip).
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// Public port the proxy listens on (hub.port).
    #[arg(long, value_name = "PORT")]
    pub port: Option<String>,
    /// URL prefix of the whole deployment (hub.base_url).
    #[arg(long, value_name = "PATH")]
    pub base_url: Option<String>,
    /// Database URL, e.g. sqlite:///jupyterhub.sqlite (hub.db_url).
    #[arg(long, visible_alias = "db", value_name = "URL")]
    pub db_url: Option<String>,
    /// Log level: trace, debug, info, warn or error (hub.log_level).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log at debug level; the same as --log-level debug.
    #[arg(long, conflicts_with = "log_level")]
    pub debug: bool,
    /// Print a config file listing every key with its documentation and default, then exit.
    #[arg(long, conflicts_with_all = ["show_config", "check_config"])]
    pub generate_config: bool,
    /// Print the effective configuration with secrets redacted, then exit.
    #[arg(long, conflicts_with = "check_config")]
    pub show_config: bool,
    /// Check the configuration, then exit: status 0 when it is valid.
    #[arg(long)]
    pub check_config: bool,
    /// A one-off task instead of running the hub.
    #[command(subcommand)]
    pub command: Option<HubCommand>,
}

/// One-off tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum HubCommand {
    /// Upgrade the database schema to this version's, then exit. Back up the database first.
    UpgradeDb,
}

/// What the command line asks the binary to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run the hub.
    Run,
    /// Print [`super::generate_config`]'s output; needs no configuration loaded.
    GenerateConfig,
    /// Load the configuration and print [`super::Loaded::show_config`].
    ShowConfig,
    /// Load the configuration and exit.
    CheckConfig,
    /// Load the configuration, upgrade the database and exit.
    UpgradeDb,
}

/// The flags that set configuration keys, as `(key, flag)`.
pub(crate) const FLAG_KEYS: &[(&str, &str)] = &[
    ("hub.ip", "--ip"),
    ("hub.port", "--port"),
    ("hub.base_url", "--base-url"),
    ("hub.db_url", "--db-url"),
    ("hub.log_level", "--log-level"),
];

impl Cli {
    /// What to do.
    pub fn action(&self) -> Action {
        if self.generate_config {
            Action::GenerateConfig
        } else if self.show_config {
            Action::ShowConfig
        } else if self.check_config {
            Action::CheckConfig
        } else if self.command == Some(HubCommand::UpgradeDb) {
            Action::UpgradeDb
        } else {
            Action::Run
        }
    }

    /// Writes the flags that were given into the configuration tree.
    pub(crate) fn apply(&self, tree: &mut Table, provenance: &mut Provenance) {
        let values = [
            self.ip.as_deref(),
            self.port.as_deref(),
            self.base_url.as_deref(),
            self.db_url.as_deref(),
            self.log_level.as_deref(),
        ];
        for ((path, flag), value) in FLAG_KEYS.iter().zip(values) {
            if let Some(value) = value {
                apply_flag(tree, provenance, path, flag, value);
            }
        }
        if self.debug {
            apply_flag(tree, provenance, "hub.log_level", "--debug", "debug");
        }
    }
}

/// The flag that sets `path`, if there is one.
pub(crate) fn flag_for(path: &str) -> Option<&'static str> {
    FLAG_KEYS.iter().find(|(p, _)| *p == path).map(|(_, f)| *f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_key_is_a_flag() {
        let command = Cli::command();
        for (_, flag) in FLAG_KEYS {
            let long = flag.trim_start_matches("--");
            assert!(
                command.get_arguments().any(|a| a.get_long() == Some(long)),
                "{flag}"
            );
        }
    }

    #[test]
    fn actions() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap().action();
        assert_eq!(parse(&["hub"]), Action::Run);
        assert_eq!(parse(&["hub", "--generate-config"]), Action::GenerateConfig);
        assert_eq!(parse(&["hub", "--show-config"]), Action::ShowConfig);
        assert_eq!(parse(&["hub", "--check-config"]), Action::CheckConfig);
        assert_eq!(parse(&["hub", "upgrade-db"]), Action::UpgradeDb);
        assert_eq!(
            parse(&["hub", "-f", "x.toml", "upgrade-db"]),
            Action::UpgradeDb
        );
        assert!(Cli::try_parse_from(["hub", "--debug", "--log-level", "info"]).is_err());
        let cli = Cli::try_parse_from(["hub", "--db", "sqlite://"]).unwrap();
        assert_eq!(cli.db_url.as_deref(), Some("sqlite://"));
    }
}
