//! `proxy-bench`: compares, in one run, requests sent straight to a backend,
//! through configurable-http-proxy (CHP) and through `chp-proxy`.
//!
//! `proxy-bench run` starts every process itself (nginx, a websocket echo
//! server, each proxy in turn), pins the servers to one core and the load
//! generators to another, and prints a table of figures, ratios and targets.
//! `scripts/bench-proxy.sh` installs the tools and builds the binaries first.
#![allow(
    clippy::print_stdout,
    reason = "a benchmark command: the report it prints on stdout is its interface"
)]

mod api;
mod nginx;
mod procs;
mod report;
mod run;
mod wrk;
mod ws;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "proxy-bench",
    version,
    about = "Compare a direct backend, configurable-http-proxy and chp-proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole comparison and print the results table.
    Run(Box<run::RunArgs>),
    /// Serve a websocket endpoint on every path that echoes each message back
    /// (the websocket backend of the benchmark).
    WsEchoServer {
        /// Address to listen on.
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
        ip: IpAddr,
        /// Port to listen on.
        #[arg(long)]
        port: u16,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::main(*args),
        Command::WsEchoServer { ip, port } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building the tokio runtime")?;
            runtime.block_on(ws::serve(SocketAddr::new(ip, port)))
        }
    }
}
