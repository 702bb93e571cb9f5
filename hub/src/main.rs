//! The `hub` binary: parse the flags, load the configuration, set up logging, then run the hub
//! (or one of the one-shot actions: `--generate-config`, `--show-config`, `--check-config`,
//! `upgrade-db`) until SIGTERM or SIGINT.

#![allow(
    clippy::print_stdout,
    reason = "the one-shot actions print their result on stdout"
)]

use std::process::ExitCode;

use clap::Parser;
use hub::config::{self, Action, Cli, LogFormat};

fn main() -> ExitCode {
    daemon_support::memory::limit_malloc_arenas(2);
    daemon_support::install_crypto_provider();
    let cli = Cli::parse();
    let action = cli.action();
    if action == Action::GenerateConfig {
        print!("{}", config::generate_config());
        return ExitCode::SUCCESS;
    }
    let loaded = match config::load(&cli, &|key| std::env::var(key).ok()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("hub: {e}");
            return ExitCode::from(1);
        }
    };
    match action {
        Action::ShowConfig => {
            print!("{}", loaded.show_config());
            return ExitCode::SUCCESS;
        }
        Action::CheckConfig => {
            println!("configuration OK");
            return ExitCode::SUCCESS;
        }
        Action::GenerateConfig | Action::UpgradeDb | Action::Run => {}
    }
    let hub_config = &loaded.config.hub;
    let format = match hub_config.log_format {
        LogFormat::Text => daemon_support::logging::LogFormat::Text,
        LogFormat::Json => daemon_support::logging::LogFormat::Json,
    };
    daemon_support::logging::init(hub_config.log_level.as_tracing(), format);
    for notice in &loaded.notices {
        tracing::warn!("{notice}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hub: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        if action == Action::UpgradeDb {
            let url = loaded.config.hub.db_url.connection_url();
            return match hub::db::upgrade_db(&url).await {
                Ok(report) => {
                    if let Some(backup) = &report.backup {
                        println!("backed up the database to {}", backup.display());
                    }
                    println!("applied {} migration(s)", report.applied.len());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("hub upgrade-db: {e}");
                    ExitCode::from(1)
                }
            };
        }
        let mut signals = match daemon_support::shutdown::Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("hub: cannot install signal handlers: {e}");
                return ExitCode::from(1);
            }
        };
        let shutdown = async move {
            let sig = signals.recv().await;
            tracing::info!("shutting down on {sig:?}");
        };
        daemon_support::memory::spawn_periodic_release(daemon_support::memory::RELEASE_INTERVAL);
        match hub::daemon::run(loaded.config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("hub: {e:#}");
                ExitCode::from(1)
            }
        }
    })
}
