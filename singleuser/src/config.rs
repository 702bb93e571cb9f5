//! The shim's configuration: the `JUPYTERHUB_*` environment a spawner sets (hub-protocol §6.1,
//! the same variables `jupyterhub-singleuser` reads) plus the flags, checked into typed values.
//!
//! The environment is read through a lookup function, never from `std::env` directly, so tests
//! build configurations from maps. An empty variable counts as unset.

use std::path::PathBuf;
use std::time::Duration;

use hub_api::env as names;

use crate::access::default_access_scopes;
use crate::child::{ChildSpec, JupyterApp, Template};
use crate::cli::{Cli, LogFormat, Transport, XsrfPolicy};
use crate::xsrf::Policy;

/// A problem with the configuration, naming the variable or flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is missing.
    #[error("${0} is not set; the shim must be started by a JupyterHub spawner (or given it)")]
    Missing(&'static str),
    /// A variable or flag holds an unusable value.
    #[error("{name}: {message}")]
    Invalid {
        /// The variable or flag.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(name: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        message: message.into(),
    }
}

/// Where the shim listens.
#[derive(Debug, Clone)]
pub struct BindAddr {
    /// Host name or IP; empty means every interface.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS files when `JUPYTERHUB_SERVICE_URL` is `https`.
    pub tls: Option<daemon_support::tls::ServerTls>,
}

/// Everything the shim needs to talk to the hub and to decide who gets in.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// `$JUPYTERHUB_API_URL` without a trailing slash, e.g. `http://127.0.0.1:8081/hub/api`.
    pub api_url: String,
    /// The server's own API token (also the OAuth client secret).
    pub api_token: Secret,
    /// OAuth client id, also the login cookie's name.
    pub client_id: String,
    /// Public origin of the hub for browser redirects (`$JUPYTERHUB_HOST`, often empty).
    pub hub_host: String,
    /// The hub's URL prefix, e.g. `/hub/`.
    pub hub_prefix: String,
    /// The OAuth `redirect_uri`, exactly as the hub registered it.
    pub redirect_uri: String,
    /// The path of the OAuth callback (the path part of `redirect_uri`).
    pub callback_path: String,
    /// Where activity is posted, if anywhere.
    pub activity_url: Option<String>,
    /// Owner of the server.
    pub user: String,
    /// Name of the server (`""` for the default one).
    pub server_name: String,
    /// Scopes that grant access; any one is enough.
    pub access_scopes: Vec<String>,
    /// TLS toward the hub (internal SSL).
    pub client_tls: Option<daemon_support::tls::ClientTls>,
    /// Per-request deadline.
    pub timeout: Duration,
}

/// A secret string whose `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How requests are authenticated and protected.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Reuse of a hub answer about a token.
    pub cache_ttl: Duration,
    /// Extra reuse while the hub cannot be reached.
    pub hub_down_grace: Duration,
    /// Lifetime of the login cookie.
    pub cookie_max_age: Duration,
    /// `?token=` accepted on plain requests (`$JUPYTERHUB_ALLOW_TOKEN_IN_URL`); it is always
    /// accepted on websocket handshakes.
    pub allow_token_in_url: bool,
    /// `__Host-` cookie names, path `/`, always Secure.
    pub cookie_host_prefix: bool,
    /// XSRF policy for cookie requests.
    pub xsrf: Policy,
    /// Whether the shim sets and manages the `_xsrf` cookie.
    pub manage_xsrf_cookie: bool,
    /// Origins allowed besides the request's own host.
    pub extra_origins: Vec<String>,
    /// Logout path under the prefix, if any.
    pub logout_path: Option<String>,
    /// The key file, if cookies must survive restarts.
    pub cookie_secret_file: Option<PathBuf>,
    /// Whether the public URL is HTTPS (cookies are then always Secure).
    pub public_https: bool,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listening address.
    pub bind: BindAddr,
    /// The server's URL prefix, e.g. `/user/alice/`, always with both slashes.
    pub prefix: String,
    /// Hub connection and identity.
    pub hub: HubSettings,
    /// Authentication behaviour.
    pub auth: AuthSettings,
    /// The app.
    pub child: ChildSpec,
    /// How long the app may take to accept connections.
    pub child_start_timeout: Duration,
    /// Activity report interval; zero disables.
    pub activity_interval: Duration,
    /// `frame-ancestors` sources, if the shim enforces them.
    pub frame_ancestors: Option<String>,
    /// Log level.
    pub log_level: tracing::Level,
    /// Log format.
    pub log_format: daemon_support::logging::LogFormat,
}

/// An environment lookup (`std::env::var` in the binary, a map in tests).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn get(env: Env<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

fn truthy(env: Env<'_>, name: &str) -> bool {
    get(env, name).is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value)
}

/// `/a/b` → `/a/b/`; `a` → `/a/`; `` → `/`.
fn with_slashes(path: &str) -> String {
    let inner = path.trim_matches('/');
    if inner.is_empty() {
        "/".to_owned()
    } else {
        format!("/{inner}/")
    }
}

/// Splits `scheme://host:port/path` into its parts; the host may be empty or an IPv6 literal.
fn parse_service_url(url: &str) -> Result<(bool, String, u16, String), ConfigError> {
    let bad = |m: &str| invalid("JUPYTERHUB_SERVICE_URL", format!("{m} in {url:?}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ => return Err(bad("the scheme must be http or https")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(bad("credentials are not allowed"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        (addr.to_owned(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    let port = match port.filter(|p| !p.is_empty()) {
        Some(p) => p.parse().map_err(|_| bad("bad port"))?,
        None if https => 443,
        None => 80,
    };
    Ok((https, host, port, path.to_owned()))
}

impl Config {
    /// Checks the flags and the environment.
    ///
    /// # Errors
    /// When a required variable is missing or a value is unusable.
    pub fn load(cli: Cli, env: Env<'_>) -> Result<Self, ConfigError> {
        let service_url =
            get(env, names::SERVICE_URL).ok_or(ConfigError::Missing(names::SERVICE_URL))?;
        let (https, host, port, url_path) = parse_service_url(&service_url)?;
        let prefix = with_slashes(&get(env, names::SERVICE_PREFIX).unwrap_or(url_path));
        if prefix.contains(['?', '#', ' ']) {
            return Err(invalid(
                names::SERVICE_PREFIX,
                format!("not a URL path: {prefix:?}"),
            ));
        }
        let tls = if https {
            let key = get(env, "JUPYTERHUB_SSL_KEYFILE").ok_or_else(|| {
                invalid(names::SERVICE_URL, "https needs $JUPYTERHUB_SSL_KEYFILE")
            })?;
            let cert = get(env, "JUPYTERHUB_SSL_CERTFILE").ok_or_else(|| {
                invalid(names::SERVICE_URL, "https needs $JUPYTERHUB_SSL_CERTFILE")
            })?;
            let client_ca = get(env, "JUPYTERHUB_SSL_CLIENT_CA").map(PathBuf::from);
            Some(daemon_support::tls::ServerTls {
                cert: cert.into(),
                key: key.into(),
                request_client_cert: client_ca.is_some(),
                require_client_cert: client_ca.is_some(),
                client_ca,
                alpn: vec![b"http/1.1".to_vec()],
                tls13_only: false,
            })
        } else {
            None
        };

        let hub = Self::hub_settings(&cli, env, &prefix)?;
        let child = Self::child_spec(&cli, env)?;
        let is_jupyter = matches!(child, ChildSpec::Jupyter { .. });
        let xsrf = match cli.xsrf {
            Some(XsrfPolicy::Token) => Policy::Token,
            Some(XsrfPolicy::SameOrigin) => Policy::SameOrigin,
            None if is_jupyter => Policy::Token,
            None => Policy::SameOrigin,
        };
        let public_url = get(env, "JUPYTERHUB_PUBLIC_URL");
        let mut extra_origins = Vec::new();
        for origin in public_url
            .iter()
            .chain(std::iter::once(&hub.hub_host).filter(|h| !h.is_empty()))
            .chain(&cli.allow_origin)
        {
            let o = origin_of(origin)
                .ok_or_else(|| invalid("--allow-origin", format!("not an origin: {origin:?}")))?;
            extra_origins.push(o);
        }
        let public_https = public_url
            .as_deref()
            .or(Some(hub.hub_host.as_str()))
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"));
        let logout_path =
            Some(cli.logout_path.trim_matches('/').to_owned()).filter(|p| !p.is_empty());
        let auth = AuthSettings {
            cache_ttl: secs(cli.auth_cache_ttl),
            hub_down_grace: secs(cli.hub_down_grace),
            cookie_max_age: secs(cli.cookie_max_age_days * 86_400.0),
            allow_token_in_url: truthy(env, "JUPYTERHUB_ALLOW_TOKEN_IN_URL"),
            cookie_host_prefix: truthy(env, "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED"),
            xsrf,
            manage_xsrf_cookie: is_jupyter || xsrf == Policy::Token,
            extra_origins,
            logout_path,
            cookie_secret_file: cli.cookie_secret_file.clone(),
            public_https,
        };

        let activity_interval = match cli.activity_interval {
            Some(s) => secs(s),
            None => match get(env, "JUPYTERHUB_ACTIVITY_INTERVAL") {
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| {
                        invalid(
                            "JUPYTERHUB_ACTIVITY_INTERVAL",
                            format!("expected whole seconds, found {v:?}"),
                        )
                    })?,
                None => Duration::from_secs(300),
            },
        };
        let log_level = match cli.log_level.as_deref() {
            Some(level) => daemon_support::logging::parse_level(level)
                .map_err(|e| invalid("--log-level", e.to_string()))?,
            None if truthy(env, names::DEBUG) => tracing::Level::DEBUG,
            None => tracing::Level::INFO,
        };
        let frame_ancestors = Some(cli.frame_ancestors.trim().to_owned()).filter(|s| !s.is_empty());
        if let Some(fa) = &frame_ancestors
            && fa.contains([';', ',', '\r', '\n'])
        {
            return Err(invalid(
                "--frame-ancestors",
                "give only the sources, without ';' or ','",
            ));
        }
        Ok(Self {
            bind: BindAddr { host, port, tls },
            prefix,
            hub,
            auth,
            child,
            child_start_timeout: secs(cli.child_start_timeout),
            activity_interval,
            frame_ancestors,
            log_level,
            log_format: match cli.log_format {
                LogFormat::Text => daemon_support::logging::LogFormat::Text,
                LogFormat::Json => daemon_support::logging::LogFormat::Json,
            },
        })
    }

    fn hub_settings(cli: &Cli, env: Env<'_>, prefix: &str) -> Result<HubSettings, ConfigError> {
        let api_url = get(env, names::API_URL).ok_or(ConfigError::Missing(names::API_URL))?;
        let parsed = url::Url::parse(&api_url)
            .map_err(|e| invalid(names::API_URL, format!("{e}: {api_url:?}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(names::API_URL, "the scheme must be http or https"));
        }
        let api_token = get(env, names::API_TOKEN)
            .or_else(|| get(env, "JPY_API_TOKEN"))
            .ok_or(ConfigError::Missing(names::API_TOKEN))?;
        let user = get(env, names::USER).ok_or(ConfigError::Missing(names::USER))?;
        let server_name = get(env, names::SERVER_NAME).unwrap_or_default();
        let client_id = get(env, names::CLIENT_ID).ok_or(ConfigError::Missing(names::CLIENT_ID))?;
        if !client_id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        {
            return Err(invalid(
                names::CLIENT_ID,
                format!("{client_id:?} cannot be a cookie name"),
            ));
        }
        let hub_host = get(env, names::HOST)
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        let base_url = with_slashes(&get(env, names::BASE_URL).unwrap_or_default());
        let hub_prefix = format!("{base_url}hub/");
        let redirect_uri = get(env, names::OAUTH_CALLBACK_URL)
            .unwrap_or_else(|| format!("{prefix}oauth_callback"));
        let callback_path = if redirect_uri.starts_with('/') {
            redirect_uri
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .to_owned()
        } else {
            url::Url::parse(&redirect_uri)
                .map_err(|e| invalid(names::OAUTH_CALLBACK_URL, format!("{e}")))?
                .path()
                .to_owned()
        };
        if !callback_path.starts_with(prefix) {
            return Err(invalid(
                names::OAUTH_CALLBACK_URL,
                format!("{callback_path:?} is not under the server prefix {prefix:?}"),
            ));
        }
        let access_scopes = match get(env, names::OAUTH_ACCESS_SCOPES)
            .or_else(|| get(env, "JUPYTERHUB_OAUTH_SCOPES"))
        {
            Some(json) => serde_json::from_str::<Vec<String>>(&json).map_err(|e| {
                invalid(
                    names::OAUTH_ACCESS_SCOPES,
                    format!("expected a JSON list of strings: {e}"),
                )
            })?,
            None => default_access_scopes(&user, &server_name),
        };
        if access_scopes.is_empty() {
            return Err(invalid(
                names::OAUTH_ACCESS_SCOPES,
                "the list is empty, so nobody could get in",
            ));
        }
        let client_tls = match (
            get(env, "JUPYTERHUB_SSL_CERTFILE"),
            get(env, "JUPYTERHUB_SSL_KEYFILE"),
        ) {
            (Some(cert), Some(key)) => Some(daemon_support::tls::ClientTls {
                ca: get(env, "JUPYTERHUB_SSL_CLIENT_CA").map(PathBuf::from),
                cert: Some(cert.into()),
                key: Some(key.into()),
                insecure: false,
            }),
            _ => get(env, "JUPYTERHUB_SSL_CLIENT_CA").map(|ca| daemon_support::tls::ClientTls {
                ca: Some(ca.into()),
                ..Default::default()
            }),
        };
        Ok(HubSettings {
            api_url: api_url.trim_end_matches('/').to_owned(),
            api_token: Secret(api_token),
            client_id,
            hub_host,
            hub_prefix,
            redirect_uri,
            callback_path,
            activity_url: get(env, names::ACTIVITY_URL),
            user,
            server_name,
            access_scopes,
            client_tls,
            timeout: secs(cli.hub_timeout.max(0.001)),
        })
    }

    fn child_spec(cli: &Cli, env: Env<'_>) -> Result<ChildSpec, ConfigError> {
        if let Some(command) = &cli.command {
            let template = Template::parse(command, &cli.args)
                .map_err(|e| invalid("--command", e.to_string()))?;
            return Ok(ChildSpec::Command { template });
        }
        let app = match &cli.app {
            Some(name) => JupyterApp::from_flag(name)
                .ok_or_else(|| invalid("--app", format!("unknown app {name:?}")))?,
            None => match get(env, "JUPYTERHUB_SINGLEUSER_APP") {
                Some(name) => JupyterApp::from_singleuser_app(&name).ok_or_else(|| {
                    invalid(
                        "JUPYTERHUB_SINGLEUSER_APP",
                        format!(
                            "{name:?} is not supported (use jupyter-server, notebook or lab, or --command)"
                        ),
                    )
                })?,
                None => JupyterApp::Default,
            },
        };
        Ok(ChildSpec::Jupyter {
            program: cli.jupyter.clone(),
            app,
            transport: cli.child_transport,
            extra_args: cli.args.clone(),
            root_dir: get(env, "JUPYTERHUB_ROOT_DIR"),
            default_url: get(env, names::DEFAULT_URL),
            debug: truthy(env, names::DEBUG),
            disable_user_config: truthy(env, "JUPYTERHUB_DISABLE_USER_CONFIG"),
        })
    }
}

/// `scheme://host[:port]` of a URL, lowercased, or `None` when it has no host.
fn origin_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let origin = parsed.origin();
    origin
        .is_tuple()
        .then(|| origin.ascii_serialization().to_ascii_lowercase())
}

impl Transport {
    /// Whether this is the unix-socket transport.
    pub fn is_socket(self) -> bool {
        self == Self::Socket
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use std::collections::HashMap;

    fn base_env() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            (
                "JUPYTERHUB_SERVICE_URL",
                "http://127.0.0.1:42305/user/alice/",
            ),
            ("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/"),
            ("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api"),
            ("JUPYTERHUB_API_TOKEN", "0123456789abcdef0123456789abcdef"),
            ("JUPYTERHUB_CLIENT_ID", "jupyterhub-user-alice"),
            ("JUPYTERHUB_USER", "alice"),
            ("JUPYTERHUB_SERVER_NAME", ""),
            ("JUPYTERHUB_HOST", ""),
            ("JUPYTERHUB_BASE_URL", "/"),
            (
                "JUPYTERHUB_OAUTH_CALLBACK_URL",
                "/user/alice/oauth_callback",
            ),
            (
                "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
                r#"["access:servers!server=alice/", "access:servers!user=alice"]"#,
            ),
            (
                "JUPYTERHUB_ACTIVITY_URL",
                "http://127.0.0.1:8081/hub/api/users/alice/activity",
            ),
        ])
    }

    fn load(args: &[&str], env: &HashMap<&str, &str>) -> Result<Config, ConfigError> {
        let mut argv = vec!["shim"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).unwrap();
        Config::load(cli, &|k| env.get(k).map(|v| (*v).to_owned()))
    }

    #[test]
    fn spawner_environment() {
        let c = load(&[], &base_env()).unwrap();
        assert_eq!((c.bind.host.as_str(), c.bind.port), ("127.0.0.1", 42305));
        assert!(c.bind.tls.is_none());
        assert_eq!(c.prefix, "/user/alice/");
        assert_eq!(c.hub.api_url, "http://127.0.0.1:8081/hub/api");
        assert_eq!(c.hub.hub_prefix, "/hub/");
        assert_eq!(c.hub.callback_path, "/user/alice/oauth_callback");
        assert_eq!(c.hub.access_scopes.len(), 2);
        assert_eq!(c.activity_interval, Duration::from_secs(300));
        assert_eq!(c.auth.xsrf, Policy::Token);
        assert_eq!(c.auth.logout_path.as_deref(), Some("logout"));
        assert_eq!(c.frame_ancestors.as_deref(), Some("'none'"));
        assert!(matches!(c.child, ChildSpec::Jupyter { .. }));
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn missing_and_bad_values_are_named() {
        for (key, value, expect) in [
            ("JUPYTERHUB_SERVICE_URL", "", "JUPYTERHUB_SERVICE_URL"),
            (
                "JUPYTERHUB_SERVICE_URL",
                "ftp://x/",
                "JUPYTERHUB_SERVICE_URL",
            ),
            ("JUPYTERHUB_SERVICE_URL", "http://h:99999/", "bad port"),
            ("JUPYTERHUB_API_TOKEN", "", "JUPYTERHUB_API_TOKEN"),
            ("JUPYTERHUB_API_URL", "not a url", "JUPYTERHUB_API_URL"),
            ("JUPYTERHUB_OAUTH_ACCESS_SCOPES", "nope", "JSON list"),
            ("JUPYTERHUB_OAUTH_ACCESS_SCOPES", "[]", "nobody"),
            (
                "JUPYTERHUB_OAUTH_CALLBACK_URL",
                "/elsewhere/cb",
                "not under",
            ),
            ("JUPYTERHUB_CLIENT_ID", "a b", "cookie name"),
            ("JUPYTERHUB_ACTIVITY_INTERVAL", "soon", "whole seconds"),
            ("JUPYTERHUB_SINGLEUSER_APP", "jupyverse", "not supported"),
        ] {
            let mut env = base_env();
            env.insert(key, value);
            let err = load(&[], &env).unwrap_err().to_string();
            assert!(err.contains(expect), "{key}={value:?}: {err}");
        }
    }

    #[test]
    fn service_url_forms() {
        let mut env = base_env();
        env.insert("JUPYTERHUB_SERVICE_URL", "http://:8888/user/alice/");
        let c = load(&[], &env).unwrap();
        assert_eq!((c.bind.host.as_str(), c.bind.port), ("", 8888));
        env.insert("JUPYTERHUB_SERVICE_URL", "http://[::1]/x");
        env.remove("JUPYTERHUB_SERVICE_PREFIX");
        env.insert("JUPYTERHUB_OAUTH_CALLBACK_URL", "/x/oauth_callback");
        let c = load(&[], &env).unwrap();
        assert_eq!((c.bind.host.as_str(), c.bind.port), ("::1", 80));
        assert_eq!(c.prefix, "/x/");
        env.insert("JUPYTERHUB_SERVICE_URL", "https://h/x/");
        assert!(
            load(&[], &env)
                .unwrap_err()
                .to_string()
                .contains("SSL_KEYFILE")
        );
    }

    #[test]
    fn defaults_without_optional_variables() {
        let mut env = base_env();
        for k in [
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
            "JUPYTERHUB_OAUTH_CALLBACK_URL",
            "JUPYTERHUB_BASE_URL",
            "JUPYTERHUB_ACTIVITY_URL",
        ] {
            env.remove(k);
        }
        env.insert("JUPYTERHUB_SERVER_NAME", "gpu");
        env.insert("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/gpu");
        env.insert("JPY_API_TOKEN", "x");
        let c = load(&[], &env).unwrap();
        assert_eq!(c.prefix, "/user/alice/gpu/");
        assert_eq!(c.hub.redirect_uri, "/user/alice/gpu/oauth_callback");
        assert_eq!(c.hub.access_scopes[0], "access:servers!server=alice/gpu");
        assert!(c.hub.activity_url.is_none());
    }

    #[test]
    fn command_mode_and_origins() {
        let mut env = base_env();
        env.insert("JUPYTERHUB_PUBLIC_URL", "https://hub.example/user/alice/");
        let c = load(
            &[
                "--command",
                "app --port {port}",
                "--allow-origin",
                "http://a.example:81",
                "--logout-path",
                "",
            ],
            &env,
        )
        .unwrap();
        assert!(matches!(c.child, ChildSpec::Command { .. }));
        assert_eq!(c.auth.xsrf, Policy::SameOrigin);
        assert!(!c.auth.manage_xsrf_cookie);
        assert_eq!(
            c.auth.extra_origins,
            ["https://hub.example", "http://a.example:81"]
        );
        assert!(c.auth.public_https);
        assert!(c.auth.logout_path.is_none());
        let err = load(&["--command", "app --port {prot}"], &env).unwrap_err();
        assert!(err.to_string().contains("{prot}"), "{err}");
    }
}
