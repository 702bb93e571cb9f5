//! `singleuser-auth-shim`: read the flags and the `JUPYTERHUB_*` environment, set up logging,
//! then run the app behind the shim and leave with its exit code.

use std::process::ExitCode;

use clap::Parser as _;
use singleuser_auth_shim::{Config, EXIT_CONFIG, OwnedHostEnv, Signals, cli::Cli};

fn main() -> ExitCode {
    daemon_support::install_crypto_provider();
    let cli = Cli::parse();
    let env = |name: &str| std::env::var(name).ok();
    let config = match Config::load(cli, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("singleuser-auth-shim: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    daemon_support::logging::init(config.log_level, config.log_format);
    let host = OwnedHostEnv {
        home: env("HOME"),
        path: env("PATH"),
        runtime_dir: env("XDG_RUNTIME_DIR"),
        jupyter_config_path: env("JUPYTER_CONFIG_PATH"),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("singleuser-auth-shim: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // `block_on` runs `run` on this (the main) thread, which starts the app: see `run`.
    ExitCode::from(runtime.block_on(async move {
        let signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("singleuser-auth-shim: cannot install signal handlers: {e}");
                return 1;
            }
        };
        singleuser_auth_shim::run(config, signals, host).await
    }))
}
