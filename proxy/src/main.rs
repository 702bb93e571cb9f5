//! `chp-proxy`: parse the flags, set up logging, run until SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;

// The route table's many small long-lived allocations fragment glibc's heap, which then makes
// every request's allocations slower; mimalloc keeps them apart.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use daemon_support::pidfile::PidFile;

fn main() -> ExitCode {
    daemon_support::install_crypto_provider();
    let cli = chp_proxy::cli::Cli::parse();
    let token = std::env::var(hub_api::chp::AUTH_TOKEN_ENV).ok();
    let config = match cli.into_config(token) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chp-proxy: {e}");
            return ExitCode::from(1);
        }
    };
    daemon_support::logging::init(config.log_level, config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chp-proxy: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let mut signals = match daemon_support::shutdown::Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("chp-proxy: cannot install signal handlers: {e}");
                return ExitCode::from(1);
            }
        };
        let _pid_file = match &config.pid_file {
            Some(path) => match PidFile::create(path) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!("cannot write pid file {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            },
            None => None,
        };
        let signals = async move {
            let sig = signals.recv().await;
            tracing::warn!("Shutting down on {sig:?}");
        };
        match chp_proxy::run(config, signals).await {
            // Stopped by a signal: exit 2, as configurable-http-proxy does.
            Ok(()) => ExitCode::from(2),
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::from(1)
            }
        }
    })
}
