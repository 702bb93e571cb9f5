//! Command-line flags. Everything the hub decides comes from the `JUPYTERHUB_*` environment
//! (see [`crate::config`]), as for `jupyterhub-singleuser`; the flags choose the app and tune
//! the shim. Each flag can also be set through the environment variable `--help` names, so a
//! spawner's `environment` can set it too.

// The flag docs below are also the --help text, where `<code>` is a placeholder, not HTML.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Fronts a user's Jupyter server (or any web app) and lets in only those the hub allows.
///
/// Reads the environment a JupyterHub spawner sets (JUPYTERHUB_SERVICE_URL, JUPYTERHUB_API_URL,
/// JUPYTERHUB_API_TOKEN, ...), listens at JUPYTERHUB_SERVICE_URL, starts the app as a child on
/// a private socket, and forwards HTTP and websockets to it for users the hub authorizes.
#[derive(Debug, Parser)]
#[command(name = "singleuser-auth-shim", version, about, long_about)]
pub struct Cli {
    /// The Jupyter app to start: `lab`, `server` or `notebook` (Notebook 7). Default:
    /// from $JUPYTERHUB_SINGLEUSER_APP, else `lab` when `jupyter-lab` is on the PATH, else
    /// `server`. Ignored with --command.
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,

    /// The `jupyter` program to run the app with.
    #[arg(
        long,
        value_name = "PROGRAM",
        default_value = "jupyter",
        env = "JUPYTERHUB_SHIM_JUPYTER"
    )]
    pub jupyter: PathBuf,

    /// How the shim reaches a Jupyter app: `socket` (a unix socket in a private 0700
    /// directory) or `tcp` (a loopback port protected by a random token).
    #[arg(
        long,
        value_enum,
        default_value_t = Transport::Socket,
        env = "JUPYTERHUB_SHIM_CHILD_TRANSPORT"
    )]
    pub child_transport: Transport,

    /// Run another web app instead of Jupyter, e.g. "myapp --port {port} --prefix
    /// {base_url}". Placeholders: {port} (a free loopback port the app must listen on),
    /// {socket} (a unix socket path it must listen on instead), {base_url} (the server's URL
    /// prefix, e.g. /user/alice/), {token} (a random token the shim sends as `Authorization:
    /// token <token>`); {{ and }} are literal braces. Words are split like a shell does
    /// (quotes, backslashes), without any expansion.
    #[arg(long, value_name = "TEMPLATE", env = "JUPYTERHUB_SHIM_COMMAND")]
    pub command: Option<String>,

    /// Seconds the app may take to accept connections.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_seconds,
          env = "JUPYTERHUB_SHIM_CHILD_START_TIMEOUT")]
    pub child_start_timeout: f64,

    /// Seconds a token check by the hub is reused. Revoking a token, logging out at the hub or
    /// stopping the server takes effect on this server within this time.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_seconds,
          env = "JUPYTERHUB_SHIM_AUTH_CACHE_TTL")]
    pub auth_cache_ttl: f64,

    /// Seconds past --auth-cache-ttl during which users already checked keep access while the
    /// hub cannot be reached. 0 turns this off.
    #[arg(long, value_name = "SECONDS", default_value = "300", value_parser = parse_seconds,
          env = "JUPYTERHUB_SHIM_HUB_DOWN_GRACE")]
    pub hub_down_grace: f64,

    /// Seconds each request to the hub may take.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds,
          env = "JUPYTERHUB_SHIM_HUB_TIMEOUT")]
    pub hub_timeout: f64,

    /// How cookie-authenticated requests are protected against cross-site use: `token` (the
    /// XSRF token of the `_xsrf` cookie must come back, as Jupyter front ends do) or
    /// `same-origin` (the token, or the browser's word that the request is same-origin).
    /// Default: `token` for Jupyter, `same-origin` with --command.
    #[arg(long, value_enum, value_name = "POLICY", env = "JUPYTERHUB_SHIM_XSRF")]
    pub xsrf: Option<XsrfPolicy>,

    /// Another origin (`scheme://host`, or `scheme://host:port`) allowed to send cookie-authenticated requests
    /// and websockets, besides the Host of the request and $JUPYTERHUB_PUBLIC_URL. Repeat for
    /// several.
    #[arg(
        long,
        value_name = "ORIGIN",
        env = "JUPYTERHUB_SHIM_ALLOW_ORIGIN",
        value_delimiter = ','
    )]
    pub allow_origin: Vec<String>,

    /// Days a login cookie of this server stays valid.
    #[arg(long, value_name = "DAYS", default_value = "14", value_parser = parse_seconds,
          env = "JUPYTERHUB_SHIM_COOKIE_MAX_AGE_DAYS")]
    pub cookie_max_age_days: f64,

    /// File holding the key that signs this server's cookies (hex; created with mode 0600 if
    /// missing). Default: a new random key at every start, so a restart logs users out of this
    /// server (they are logged in again through the hub without typing anything).
    #[arg(long, value_name = "PATH", env = "JUPYTERHUB_SHIM_COOKIE_SECRET_FILE")]
    pub cookie_secret_file: Option<PathBuf>,

    /// Seconds between activity reports to the hub. Default: $JUPYTERHUB_ACTIVITY_INTERVAL,
    /// else 300. 0 turns reports off.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds,
          env = "JUPYTERHUB_SHIM_ACTIVITY_INTERVAL")]
    pub activity_interval: Option<f64>,

    /// The `frame-ancestors` sources every response's Content-Security-Policy gets (pages of
    /// one hub share an origin, so framing is refused by default). Empty: leave the app's
    /// policy alone.
    #[arg(
        long,
        value_name = "SOURCES",
        default_value = "'none'",
        env = "JUPYTERHUB_SHIM_FRAME_ANCESTORS"
    )]
    pub frame_ancestors: String,

    /// Path under the server prefix that logs out of this server (clears its cookie, then goes
    /// to the hub's logout). Empty: none, every path goes to the app.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "logout",
        env = "JUPYTERHUB_SHIM_LOGOUT_PATH"
    )]
    pub logout_path: String,

    /// Log level: trace, debug, info, warn or error ($JUPYTERHUB_DEBUG=1 means debug).
    /// RUST_LOG overrides it.
    #[arg(long, value_name = "LEVEL", env = "JUPYTERHUB_SHIM_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Log format: `text` or `json`.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "JUPYTERHUB_SHIM_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Extra arguments: appended to the Jupyter command (e.g. --allow-root, or
    /// --ServerApp.<option>=<value>), or to the --command template. Arguments the shim does not
    /// know are passed on too, so a spawner's `args` meant for jupyterhub-singleuser keep
    /// working.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

/// How the shim reaches the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// A unix socket in a private directory.
    Socket,
    /// A loopback TCP port plus a random token.
    Tcp,
}

/// See `--xsrf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XsrfPolicy {
    /// The session's XSRF token is required.
    Token,
    /// The token or a same-origin request.
    SameOrigin,
}

/// See `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A non-negative, finite number of seconds (or days), fractions allowed.
fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if (0.0..1e12).contains(&v) => Ok(v),
        _ => Err(format!("expected a number of seconds ≥ 0, found {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_arguments_are_kept_for_the_app() {
        let cli = Cli::try_parse_from([
            "shim",
            "--auth-cache-ttl",
            "1.5",
            "--allow-root",
            "--ServerApp.x=1",
            "-y",
        ])
        .unwrap();
        assert_eq!(cli.auth_cache_ttl, 1.5);
        assert_eq!(cli.args, ["--allow-root", "--ServerApp.x=1", "-y"]);
    }

    #[test]
    fn bad_numbers_are_refused() {
        for bad in ["-1", "nan", "inf", "x"] {
            assert!(
                Cli::try_parse_from(["shim", "--hub-timeout", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
