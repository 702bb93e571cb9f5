//! What the three daemons share at startup and at the edge of the network:
//!
//! - [`logging`]: tracing setup with a level name and an optional JSON format.
//! - [`shutdown`]: a future that resolves on SIGTERM or SIGINT.
//! - [`pidfile`]: a pid file removed when the daemon stops.
//! - [`tls`]: rustls server and client configuration from PEM files.
//! - [`listen`]: TCP or unix-socket listeners and the one accept loop every daemon serves with.
//! - [`memory`]: allocator settings that keep a daemon's resident memory near its working set.

pub mod batched;
pub mod listen;
pub mod logging;
pub mod memory;
pub mod pidfile;
pub mod shutdown;
pub mod tls;

/// Installs aws-lc-rs as the process's rustls crypto provider. Call it first in every `main`
/// and test harness; calling it again is harmless.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
