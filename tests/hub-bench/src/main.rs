//! `hub-bench`: measures our hub against JupyterHub 6.1.1 on this machine, in one run, with
//! the same HTTP client, and prints a Markdown table with the ratios and the targets. It is a
//! command, not a test: `scripts/bench-hub.sh` builds and runs it; `docs/benchmarks.md` (Hub)
//! says what is measured.
//!
//! - [`run`]: the measurement sequence and the report (`hub-bench run`).
//! - [`subjects`]: starting each hub with its proxy, config and database.
//! - [`serve`]: our hub with `MockSpawner`, as its own process (`hub-bench serve-mock-hub`).
//! - [`client`], [`load`]: the HTTP client and the concurrent load loop.
//! - [`procs`]: child processes, CPU time and memory from `/proc`.
//! - [`report`]: figures and the table.

#![allow(
    clippy::print_stdout,
    reason = "the report is this command's output, on stdout"
)]

mod client;
mod load;
mod procs;
mod report;
mod run;
mod serve;
mod subjects;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Benchmark our hub against JupyterHub 6.1.1.
#[derive(Debug, Parser)]
#[command(name = "hub-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure both hubs and print the comparison (Markdown on stdout).
    Run(run::RunArgs),
    /// Run our hub with MockSpawner until SIGTERM (started by `run`; a process of its own so
    /// that its memory is its own).
    ServeMockHub(serve::ServeArgs),
}

fn main() -> ExitCode {
    // `serve-mock-hub` stands for the hub binary, so it starts with the hub's allocator
    // settings.
    daemon_support::memory::limit_malloc_arenas(2);
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => run::main(args),
        Command::ServeMockHub(args) => serve::main(args).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("hub-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}
