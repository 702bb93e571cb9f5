//! The `hub` binary. The hub is being built; until it can serve, this binary says so and exits.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "hub {}: the hub daemon is not built yet; chp-proxy can be used with JupyterHub meanwhile",
        hub::VERSION
    );
    ExitCode::from(1)
}
