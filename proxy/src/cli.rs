//! Command-line flags: configurable-http-proxy 5.x's, with the same names, defaults and
//! environment variables, validated into a [`Config`].

// The flag docs below are also the --help text, where `<code>` is a placeholder, not HTML.
#![allow(rustdoc::invalid_html_tags)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use http::{HeaderName, HeaderValue};

use crate::routes::Target;

/// A drop-in replacement for configurable-http-proxy.
#[derive(Debug, Parser)]
#[command(name = "chp-proxy", version, about, long_about = None)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "one field per command-line flag"
)]
pub struct Cli {
    /// Public-facing IP of the proxy (all interfaces when unset; `*` means all).
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// Public-facing port of the proxy.
    #[arg(long, value_name = "N", default_value_t = 8000)]
    pub port: u16,
    /// Path to a unix socket for the public-facing proxy (instead of --ip/--port).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["ip"])]
    pub socket: Option<PathBuf>,

    /// SSL key to use, if any (turns the public port into HTTPS).
    #[arg(long, value_name = "KEYFILE")]
    pub ssl_key: Option<PathBuf>,
    /// SSL certificate to use, if any.
    #[arg(long, value_name = "CERTFILE")]
    pub ssl_cert: Option<PathBuf>,
    /// SSL CA for client certificates on the public port.
    #[arg(long, value_name = "CAFILE")]
    pub ssl_ca: Option<PathBuf>,
    /// Ask clients of the public port for a certificate.
    #[arg(long)]
    pub ssl_request_cert: bool,
    /// Refuse clients of the public port without a valid certificate.
    #[arg(long)]
    pub ssl_reject_unauthorized: bool,
    /// Minimum TLS version: `TLSv1_2` or `TLSv1_3` (other values are refused).
    #[arg(long, value_name = "PROTOCOL")]
    pub ssl_protocol: Option<String>,
    /// Accepted for compatibility and ignored: the cipher suites are rustls's safe defaults.
    #[arg(long, value_name = "CIPHERS")]
    pub ssl_ciphers: Option<String>,
    /// Accepted for compatibility and ignored: RC4 is never offered.
    #[arg(long)]
    pub ssl_allow_rc4: bool,
    /// Accepted for compatibility and ignored: only ECDHE key exchange is offered.
    #[arg(long, value_name = "DHPARAMFILE")]
    pub ssl_dhparam: Option<PathBuf>,

    /// Inward-facing IP for the API.
    #[arg(long, value_name = "IP", default_value = "localhost")]
    pub api_ip: String,
    /// Inward-facing port for the API (default: public port + 1).
    #[arg(long, value_name = "N")]
    pub api_port: Option<u16>,
    /// Path to a unix socket for the API (instead of --api-ip/--api-port).
    #[arg(long, value_name = "PATH")]
    pub api_socket: Option<PathBuf>,
    /// SSL key for the API.
    #[arg(long, value_name = "KEYFILE")]
    pub api_ssl_key: Option<PathBuf>,
    /// SSL certificate for the API.
    #[arg(long, value_name = "CERTFILE")]
    pub api_ssl_cert: Option<PathBuf>,
    /// SSL CA for client certificates on the API.
    #[arg(long, value_name = "CAFILE")]
    pub api_ssl_ca: Option<PathBuf>,
    /// Ask API clients for a certificate.
    #[arg(long)]
    pub api_ssl_request_cert: bool,
    /// Refuse API clients without a valid certificate.
    #[arg(long)]
    pub api_ssl_reject_unauthorized: bool,

    /// Client SSL key toward `https://` targets.
    #[arg(long, value_name = "KEYFILE")]
    pub client_ssl_key: Option<PathBuf>,
    /// Client SSL certificate toward `https://` targets.
    #[arg(long, value_name = "CERTFILE")]
    pub client_ssl_cert: Option<PathBuf>,
    /// CA that `https://` targets' certificates must chain to.
    #[arg(long, value_name = "CAFILE")]
    pub client_ssl_ca: Option<PathBuf>,
    /// Accepted for compatibility and ignored (a client certificate is sent when one is given).
    #[arg(long)]
    pub client_ssl_request_cert: bool,
    /// Accepted for compatibility and ignored (targets are always verified unless --insecure).
    #[arg(long)]
    pub client_ssl_reject_unauthorized: bool,

    /// Default proxy target (a route for `/`).
    #[arg(long, value_name = "HOST")]
    pub default_target: Option<String>,
    /// Alternate server for handling proxy errors: GET <target>/<code>?url=<path>.
    #[arg(long, value_name = "HOST", conflicts_with = "error_path")]
    pub error_target: Option<String>,
    /// Alternate directory for error pages (<code>.html, else error.html).
    #[arg(long, value_name = "PATH")]
    pub error_path: Option<PathBuf>,

    /// Port for an HTTP server that redirects every request to HTTPS.
    #[arg(long, value_name = "PORT")]
    pub redirect_port: Option<u16>,
    /// Port written into those redirects (default: the public port).
    #[arg(long, value_name = "PORT")]
    pub redirect_to: Option<u16>,
    /// Write the process id to this file; removed on exit.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,

    /// Don't add X-Forwarded-* headers to proxied requests.
    #[arg(long)]
    pub no_x_forward: bool,
    /// Don't prepend the target's path to proxied requests.
    #[arg(long)]
    pub no_prepend_path: bool,
    /// Don't include the route prefix in proxied requests.
    #[arg(long)]
    pub no_include_prefix: bool,
    /// Rewrite the Location host of redirects from the target to the client's Host.
    #[arg(long)]
    pub auto_rewrite: bool,
    /// Send the target's host:port as the Host header.
    #[arg(long)]
    pub change_origin: bool,
    /// Rewrite the Location scheme of redirects to this one (http or https).
    #[arg(long, value_name = "PROTOCOL")]
    pub protocol_rewrite: Option<String>,
    /// Extra header for proxied requests, "name: value"; repeatable.
    #[arg(long, value_name = "HEADER")]
    pub custom_header: Vec<String>,
    /// Don't verify the certificates of `https://` targets.
    #[arg(long)]
    pub insecure: bool,
    /// Route on the Host header: route keys are /<hostname>[/path].
    #[arg(long)]
    pub host_routing: bool,

    /// IP of the metrics server (all interfaces when empty).
    #[arg(long, value_name = "IP", default_value = "")]
    pub metrics_ip: String,
    /// Port of the metrics server; no metrics server when unset.
    #[arg(long, value_name = "N")]
    pub metrics_port: Option<u16>,
    /// Path to a unix socket for the metrics server.
    #[arg(long, value_name = "PATH")]
    pub metrics_socket: Option<PathBuf>,

    /// Log level: debug, info, warn or error.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format: text or json (not in configurable-http-proxy).
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: String,
    /// Idle time (ms) allowed for a client's HTTP request before its connection is dropped.
    #[arg(long, value_name = "MS")]
    pub timeout: Option<u64>,
    /// Time (ms) to wait for a target's response before answering 503.
    #[arg(long, value_name = "MS")]
    pub proxy_timeout: Option<u64>,
    /// Keep-alive idle timeout (ms) of the public server.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub keep_alive_timeout: u64,
    /// Write to each connection as soon as a response or request is ready, instead of sending
    /// each round's writes together through io_uring (not in configurable-http-proxy). Without
    /// io_uring in the kernel, the proxy does this anyway.
    #[arg(long)]
    pub no_io_uring: bool,
    /// Not supported: routes are kept in memory. Given a value, the proxy refuses to start.
    #[arg(long, value_name = "NAME")]
    pub storage_backend: Option<String>,
}

/// Where a listener binds.
#[derive(Debug, Clone)]
pub enum Bind {
    /// A TCP address; the host is resolved at startup.
    Tcp(String, u16),
    /// A unix socket.
    Unix(PathBuf),
}

/// Everything the proxy needs, validated.
#[derive(Debug, Clone)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent switches from the command line"
)]
pub struct Config {
    pub public: Bind,
    pub api: Bind,
    pub metrics: Option<Bind>,
    pub redirect: Option<(u16, u16)>,
    pub public_tls: Option<daemon_support::tls::ServerTls>,
    pub api_tls: Option<daemon_support::tls::ServerTls>,
    pub client_tls: daemon_support::tls::ClientTls,
    pub default_target: Option<String>,
    pub error_target: Option<Target>,
    pub error_path: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub x_forward: bool,
    pub prepend_path: bool,
    pub include_prefix: bool,
    pub auto_rewrite: bool,
    pub change_origin: bool,
    pub protocol_rewrite: Option<String>,
    pub custom_headers: Vec<(HeaderName, HeaderValue)>,
    pub host_routing: bool,
    pub log_level: tracing::Level,
    pub log_format: daemon_support::logging::LogFormat,
    pub timeout: Option<Duration>,
    pub proxy_timeout: Option<Duration>,
    pub keep_alive_timeout: Duration,
    pub auth_token: Option<String>,
    /// Send each round's writes together through io_uring when the kernel allows it.
    pub io_uring: bool,
}

/// A configuration error, shown to the operator before exiting with status 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Parses `"name: value"`; the name and value are trimmed and the value may hold colons.
pub fn parse_custom_header(raw: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let Some((name, value)) = raw.split_once(':').filter(|(n, _)| !n.trim().is_empty()) else {
        return err(format!(
            "A colon was expected in custom header {raw:?}: use --custom-header \"name: value\""
        ));
    };
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| ConfigError(format!("invalid header name in custom header {raw:?}")))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| ConfigError(format!("invalid header value in custom header {raw:?}")))?;
    Ok((name, value))
}

impl Cli {
    /// Validates the flags; `auth_token` comes from `CONFIGPROXY_AUTH_TOKEN`.
    pub fn into_config(self, auth_token: Option<String>) -> Result<Config, ConfigError> {
        use daemon_support::tls::{ClientTls, ServerTls};

        if let Some(backend) = &self.storage_backend {
            return err(format!(
                "--storage-backend {backend:?}: storage backends are Node.js modules and are not supported; routes are kept in memory"
            ));
        }
        if self.socket.is_some() && self.port != 8000 {
            return err("--socket cannot be combined with --ip or --port");
        }
        if self.api_socket.is_some() && (self.api_port.is_some() || self.api_ip != "localhost") {
            return err("--api-socket cannot be combined with --api-ip or --api-port");
        }
        let ip = match self.ip.as_deref() {
            None | Some("" | "*") => String::new(),
            Some(ip) => ip.to_owned(),
        };
        let public = match &self.socket {
            Some(path) => Bind::Unix(path.clone()),
            None => Bind::Tcp(ip, self.port),
        };
        let api = match &self.api_socket {
            Some(path) => Bind::Unix(path.clone()),
            None => {
                let port = match self.api_port {
                    Some(p) => p,
                    None if self.socket.is_some() => 8001,
                    None => self.port.checked_add(1).ok_or_else(|| {
                        ConfigError("--api-port is needed when --port is 65535".into())
                    })?,
                };
                Bind::Tcp(self.api_ip.clone(), port)
            }
        };
        let metrics = match (&self.metrics_socket, self.metrics_port) {
            (Some(path), _) => Some(Bind::Unix(path.clone())),
            (None, Some(port)) => Some(Bind::Tcp(self.metrics_ip.clone(), port)),
            (None, None) => None,
        };

        let public_tls = match (&self.ssl_key, &self.ssl_cert) {
            (None, None) => None,
            (Some(key), Some(cert)) => Some(ServerTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.ssl_ca.clone(),
                request_client_cert: self.ssl_request_cert,
                require_client_cert: self.ssl_reject_unauthorized,
                alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
                tls13_only: false,
            }),
            _ => return err("--ssl-key and --ssl-cert must be given together"),
        };
        if public_tls
            .as_ref()
            .is_some_and(|t| t.request_client_cert && t.client_ca.is_none())
        {
            return err("--ssl-request-cert needs --ssl-ca");
        }
        let api_tls = match (&self.api_ssl_key, &self.api_ssl_cert) {
            (None, None) => None,
            (Some(key), Some(cert)) => Some(ServerTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.api_ssl_ca.clone(),
                request_client_cert: self.api_ssl_request_cert,
                require_client_cert: self.api_ssl_reject_unauthorized,
                alpn: vec![b"http/1.1".to_vec()],
                tls13_only: false,
            }),
            _ => return err("--api-ssl-key and --api-ssl-cert must be given together"),
        };
        if api_tls
            .as_ref()
            .is_some_and(|t| t.request_client_cert && t.client_ca.is_none())
        {
            return err("--api-ssl-request-cert needs --api-ssl-ca");
        }
        let tls13_only = match self.ssl_protocol.as_deref() {
            None | Some("TLSv1_2" | "TLSv1_2_method" | "SSLv23" | "TLS" | "TLS_method") => false,
            Some("TLSv1_3" | "TLSv1_3_method") => true,
            Some(other) => {
                return err(format!(
                    "--ssl-protocol {other:?} is not supported: use TLSv1_2 or TLSv1_3"
                ));
            }
        };
        // --ssl-protocol applies to the public port and the API, as in configurable-http-proxy.
        let (mut public_tls, mut api_tls) = (public_tls, api_tls);
        for tls in [public_tls.as_mut(), api_tls.as_mut()]
            .into_iter()
            .flatten()
        {
            tls.tls13_only = tls13_only;
        }
        let redirect = match self.redirect_port {
            None => None,
            Some(_) if public_tls.is_none() => {
                return err("--redirect-port requires --ssl-key and --ssl-cert");
            }
            // Not started when the public port is 80 or a unix socket, as configurable-http-proxy.
            Some(_) if self.socket.is_some() || self.port == 80 => None,
            Some(from) => Some((from, self.redirect_to.unwrap_or(self.port))),
        };

        let mut custom_headers = Vec::with_capacity(self.custom_header.len());
        for raw in &self.custom_header {
            custom_headers.push(parse_custom_header(raw)?);
        }
        let error_target = match &self.error_target {
            None => None,
            Some(raw) => {
                let with_slash = if raw.ends_with('/') {
                    raw.clone()
                } else {
                    format!("{raw}/")
                };
                Some(Target::parse(&with_slash).map_err(|_| {
                    ConfigError(format!(
                        "--error-target {raw:?} is not an http(s) or http+unix URL"
                    ))
                })?)
            }
        };
        if let Some(t) = &self.default_target {
            Target::parse(t).map_err(|_| {
                ConfigError(format!(
                    "--default-target {t:?} is not an http(s) or http+unix URL"
                ))
            })?;
        }
        if let Some(p) = &self.protocol_rewrite
            && p != "http"
            && p != "https"
        {
            return err(format!("--protocol-rewrite {p:?}: expected http or https"));
        }
        let log_level = daemon_support::logging::parse_level(&self.log_level)
            .map_err(|e| ConfigError(e.to_string()))?;
        let log_format = match self.log_format.as_str() {
            "text" => daemon_support::logging::LogFormat::Text,
            "json" => daemon_support::logging::LogFormat::Json,
            other => return err(format!("--log-format {other:?}: expected text or json")),
        };
        let ms = |v: Option<u64>| v.filter(|&v| v > 0).map(Duration::from_millis);
        Ok(Config {
            public,
            api,
            metrics,
            redirect,
            public_tls,
            api_tls,
            client_tls: ClientTls {
                ca: self.client_ssl_ca,
                cert: self.client_ssl_cert,
                key: self.client_ssl_key,
                insecure: self.insecure,
            },
            default_target: self.default_target,
            error_target,
            error_path: self.error_path,
            pid_file: self.pid_file,
            x_forward: !self.no_x_forward,
            prepend_path: !self.no_prepend_path,
            include_prefix: !self.no_include_prefix,
            auto_rewrite: self.auto_rewrite,
            change_origin: self.change_origin,
            protocol_rewrite: self.protocol_rewrite,
            custom_headers,
            host_routing: self.host_routing,
            log_level,
            log_format,
            timeout: ms(self.timeout),
            proxy_timeout: ms(self.proxy_timeout),
            keep_alive_timeout: Duration::from_millis(self.keep_alive_timeout.max(1)),
            auth_token: auth_token.filter(|t| !t.is_empty()),
            io_uring: !self.no_io_uring,
        })
    }
}

/// Resolves a bind host: empty means all interfaces (IPv6 and IPv4), `localhost` the IPv4
/// loopback.
pub async fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    match host {
        "" => Ok(SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 0], port))),
        "localhost" => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        _ => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            tokio::net::lookup_host((host, port))
                .await?
                .next()
                .ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host}: no address"))
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["chp-proxy"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().into_config(None)
    }

    #[test]
    fn defaults_match_chp() {
        let c = config(&[]).unwrap();
        assert!(matches!(c.public, Bind::Tcp(ref ip, 8000) if ip.is_empty()));
        assert!(matches!(c.api, Bind::Tcp(ref ip, 8001) if ip == "localhost"));
        assert!(c.x_forward && c.prepend_path && c.include_prefix);
        assert_eq!(c.keep_alive_timeout, Duration::from_secs(5));
        assert!(c.metrics.is_none());
    }

    #[test]
    fn custom_headers() {
        let (n, v) = parse_custom_header(" k2 : host:123 ").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("k2", "host:123"));
        let e = parse_custom_header("invalid").unwrap_err();
        assert!(e.to_string().contains("colon was expected"));
        assert!(parse_custom_header(":x").is_err());
    }

    #[test]
    fn refused_combinations() {
        assert!(config(&["--redirect-port", "80"]).is_err());
        assert!(config(&["--ssl-key", "k"]).is_err());
        assert!(config(&["--storage-backend", "x"]).is_err());
        assert!(config(&["--error-target", "ftp://x"]).is_err());
        assert!(config(&["--socket", "/tmp/x", "--port", "9"]).is_err());
        assert!(
            Cli::try_parse_from([
                "chp-proxy",
                "--error-target",
                "http://a",
                "--error-path",
                "/x"
            ])
            .is_err()
        );
    }

    #[test]
    fn api_port_follows_public_port() {
        let c = config(&["--port", "9000"]).unwrap();
        assert!(matches!(c.api, Bind::Tcp(_, 9001)));
    }
}
