//! Waiting for the signals that ask a daemon to stop.
//!
//! Install the handlers with [`Signals::install`] first thing, before binding ports or writing
//! pid files: a signal that arrives before its handler exists kills the process outright, and
//! the pid file would be left behind.

use tokio::signal::unix::{SignalKind, signal};

/// The signal that asked the daemon to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM, as sent by service managers.
    Terminate,
    /// SIGINT, as sent by Ctrl-C.
    Interrupt,
}

/// Installed SIGTERM and SIGINT handlers.
#[derive(Debug)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers; from now on the signals are queued, not fatal.
    ///
    /// # Errors
    /// When the handlers cannot be installed.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves at the next SIGTERM or SIGINT.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Terminate,
            _ = self.int.recv() => Signal::Interrupt,
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT, installing the handlers when first polled.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub async fn signal_received() -> std::io::Result<Signal> {
    Ok(Signals::install()?.recv().await)
}
