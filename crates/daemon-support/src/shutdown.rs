//! Waiting for the signals that ask a daemon to stop.

use tokio::signal::unix::{SignalKind, signal};

/// The signal that asked the daemon to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM, as sent by service managers.
    Terminate,
    /// SIGINT, as sent by Ctrl-C.
    Interrupt,
}

/// Resolves at the first SIGTERM or SIGINT.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub async fn signal_received() -> std::io::Result<Signal> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => Signal::Terminate,
        _ = int.recv() => Signal::Interrupt,
    })
}
