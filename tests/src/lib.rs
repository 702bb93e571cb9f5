//! Support for tests that start the real binaries and talk to them over the network.
//!
//! - [`bins`]: where the binaries under test live (`chp-proxy`, `hub`, the reference
//!   configurable-http-proxy for differential tests, the venv with `jupyterhub-singleuser`).
//! - [`proxy`]: start a proxy process on free loopback ports, wait until it answers, talk to its
//!   REST API, and kill it when the handle is dropped.
//! - [`upstream`]: in-process upstream servers (HTTP/websocket echo, error pages) over TCP, TLS
//!   or a unix socket.
//! - [`raw`]: a byte-exact HTTP/1.1 client, for request targets that URL libraries would
//!   normalise (`/a/../b`, `%2e`, `//x`) and for watching what happens to the connection.
//! - [`ws`]: websocket client helpers.
//! - [`tls`]: throw-away certificate authorities and rustls configurations.
//! - [`metrics`]: a small Prometheus text-format reader.
//! - [`hubproc`]: the real `hub` binary with its managed proxy and single-user servers from
//!   the real `jupyterhub-singleuser`: start, stop with SIGTERM, restart, clean up everything.
//! - [`browser`]: a cookie-keeping client that follows redirects one hop at a time.
//! - [`accounts`]: throwaway system users and PAM service files (as root).
//! - [`procs`]: what `/proc` says about a process (uid, environment, sockets).
//! - [`flows`]: browser flows through the hub's pages (login form, spawn-pending).
//! - [`kernel`]: a Jupyter kernel client as JupyterLab is one (REST API with the XSRF header,
//!   the kernel websocket).
//! - [`netns`]: a network namespace joined by a veth pair, as another host (as root).

pub mod accounts;
pub mod bins;
pub mod browser;
pub mod flows;
pub mod hubproc;
pub mod kernel;
pub mod metrics;
pub mod netns;
pub mod procs;
pub mod proxy;
pub mod raw;
pub mod tls;
pub mod upstream;
pub mod ws;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Once;
use std::time::Duration;

pub use proxy::{Flavor, Proxy, ProxyBuilder};
pub use upstream::{Upstream, UpstreamMode};

/// The API token the test proxies are started with, unless a test says otherwise.
pub const TOKEN: &str = "secret";

/// Upper bound for any single network exchange in the tests; a test that would hang fails instead.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Installs the aws-lc-rs rustls provider once per process (tolerates another installer).
pub fn init_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a provider is already installed, which is just as good.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// A loopback port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0 for a free port");
    listener
        .local_addr()
        .expect("local address of a freshly bound listener")
        .port()
}

/// `127.0.0.1:<port>`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Awaits `fut`, failing with `what` if it takes longer than [`IO_TIMEOUT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(IO_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {IO_TIMEOUT:?}: {what}"))
}

/// Parses a `last_activity` value, insisting on CHP's exact format:
/// ISO 8601 UTC with exactly three fractional digits and a `Z` (`2026-11-23T10:51:16.658Z`).
pub fn parse_last_activity(value: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    let well_formed = value.len() == 24
        && value.ends_with('Z')
        && value.as_bytes().get(19) == Some(&b'.')
        && value.as_bytes().get(10) == Some(&b'T');
    anyhow::ensure!(
        well_formed,
        "last_activity {value:?} is not in the form YYYY-MM-DDTHH:MM:SS.mmmZ"
    );
    let parsed = chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.3fZ")
        .map_err(|e| anyhow::anyhow!("last_activity {value:?} does not parse: {e}"))?;
    Ok(parsed.and_utc())
}

/// Formats a time the way CHP prints `last_activity` (milliseconds, `Z`).
pub fn format_js_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Percent-encodes everything except unreserved characters (like JavaScript's
/// `encodeURIComponent`, minus its `!*'()` exceptions).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The value of query parameter `name` in `query` (form-decoded), if present.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
