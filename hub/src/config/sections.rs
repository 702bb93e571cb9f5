//! The sections of the config file. Sections are named after JupyterHub's configurable classes
//! and keys keep JupyterHub's names, so `c.JupyterHub.port = 8000` becomes `port = 8000` under
//! `[hub]`. The doc comment of each key is what `--generate-config` and
//! `docs/reference/hub-config.md` say about it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::schema::config_section;
use super::values::{
    ApiTokens, AuthenticatorClass, BaseUrl, Command, Days, DbUrl, DurationLimit, HttpUrl, Limit,
    Location, LogFormat, LogLevel, MetricsPrefix, Port, Secret, SpawnerClass, nonzero,
};
use crate::cookie_secret::{self, CookieSecret};

const HUB_PORT: Port = Port::constant(8081);

/// The default `[spawner] cmd` of the `local` spawner.
pub const DEFAULT_SERVER_CMD: &str = "singleuser-auth-shim";

/// The default `[spawner] cmd` of the `slurm` and `batch` spawners: their default wrapper,
/// `batchspawner-singleuser`, runs the command as a Python script.
pub const DEFAULT_BATCH_SERVER_CMD: &str = "jupyterhub-singleuser";

config_section! {
    /// The hub process: where it and the public proxy listen, its database, cookies, API limits
    /// and logging. JupyterHub's `JupyterHub.*` settings.
    pub struct HubSection {
        /// Public URL the proxy listens on: scheme, address, port and URL prefix. An empty host
        /// (`http://:8000`) means all IPv4 interfaces; write `http://[::]:8000` for IPv6 too.
        /// A path here is taken as `base_url` when `base_url` is not set.
        pub bind_url: HttpUrl = HttpUrl::constant("http://:8000"),
        /// Public IP address the proxy listens on. Overrides the host of `bind_url`.
        pub ip: Option<IpAddr> = None,
        /// Public port the proxy listens on. Overrides the port of `bind_url`.
        pub port: Option<Port> = None,
        /// URL prefix of the whole deployment. The hub lives under `{base_url}hub/` and user
        /// servers under `{base_url}user/<name>/`. Leading and trailing `/` are added.
        pub base_url: BaseUrl = BaseUrl::root(),
        /// The URL users reach the deployment at, when it differs from `bind_url` (for example
        /// behind a load balancer that terminates TLS). Used for absolute links and redirects.
        pub public_url: Option<HttpUrl> = None,
        /// IP address of the hub's own HTTP server. Only the proxy, single-user servers and
        /// services talk to it directly.
        pub hub_ip: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST),
        /// Port of the hub's own HTTP server.
        pub hub_port: Port = HUB_PORT,
        /// Full URL of the hub's own HTTP server (scheme, IP address and port); overrides
        /// `hub_ip` and `hub_port`.
        pub hub_bind_url: Option<HttpUrl> = None,
        /// Seconds a client of the hub's own HTTP server may take to send a request's headers;
        /// also how long an idle keep-alive connection stays open. Slower clients are
        /// disconnected, so that connections trickling headers (slowloris) cannot pile up. Keep
        /// it above 30, the idle time after which the proxy and single-user servers drop
        /// their pooled connections to the hub.
        pub http_header_timeout: Duration = Duration::from_secs(60),
        /// Seconds a client of the hub's own HTTP server may take to send a whole request
        /// body, counted from the end of its headers. A slower body is refused (400) and the
        /// connection closed.
        pub http_body_timeout: Duration = Duration::from_secs(60),
        /// URL at which the proxy, single-user servers and services reach the hub, when the
        /// address it listens on is not reachable from them (containers, other hosts). Without
        /// a path, `{base_url}hub/` is added. Default: derived from where the hub listens.
        pub hub_connect_url: Option<HttpUrl> = None,
        /// TLS private key (PEM) for the public port, handed to the proxy. Set with `ssl_cert`.
        pub ssl_key: Option<PathBuf> = None,
        /// TLS certificate chain (PEM) for the public port, handed to the proxy. Set with
        /// `ssl_key`; `bind_url` then defaults to https.
        pub ssl_cert: Option<PathBuf> = None,
        /// The database: `sqlite:///jupyterhub.sqlite` (relative to the working directory),
        /// `sqlite:////absolute/path.sqlite`, or
        /// `postgresql://user:password@host:5432/dbname`. The password is never shown by
        /// `--show-config`. Pending schema migrations are applied at startup, after a
        /// timestamped backup of a SQLite file (JupyterHub refuses to start and asks for
        /// `upgrade-db`; see [running the hub](../howto/run-the-hub.md)).
        pub db_url: DbUrl = DbUrl::default_sqlite(),
        /// File holding the key that signs login cookies, as hex. Created with mode 0600 when
        /// missing; the hub refuses to start if group or others have any access to it.
        /// Deleting it logs everyone out.
        pub cookie_secret_file: PathBuf = PathBuf::from(cookie_secret::DEFAULT_FILE),
        /// The cookie-signing key itself, as hex (e.g. from `openssl rand -hex 32`). Usually
        /// given through `JUPYTERHUB_COOKIE_SECRET` or `JPY_COOKIE_SECRET` rather than written
        /// here. When set, `cookie_secret_file` is not used.
        pub cookie_secret: Option<CookieSecret> = None,
        /// Days a login cookie stays valid. Fractions are allowed.
        pub cookie_max_age_days: Days = Days::whole(14),
        /// Key(s) for encrypting authentication state, as `JUPYTERHUB_CRYPT_KEY` holds them.
        /// Read and kept for a later release; nothing is encrypted yet.
        pub crypt_key: Option<Secret> = None,
        /// API tokens to create at startup: `"<token>" = "<username>"`. Each token must be 8 to
        /// 64 characters. The users are created if they do not exist.
        pub api_tokens: ApiTokens = ApiTokens::default(),
        /// Deprecated in JupyterHub: lets admins use any user's server. Prefer a role with the
        /// `access:servers` scope.
        pub admin_access: bool = false,
        /// Items per page when a paginated API request gives no `limit`.
        pub api_page_default_limit: NonZeroU32 = nonzero(50),
        /// Largest `limit` a paginated API request may ask for. Unpaginated list requests are
        /// also cut at this many items.
        pub api_page_max_limit: NonZeroU32 = nonzero(200),
        /// Longest lifetime, in seconds, a user may request for a new API token; a request
        /// without `expires_in` then gets this lifetime. 0 means no limit.
        pub token_expires_in_max_seconds: DurationLimit = DurationLimit::NONE,
        /// Lifetime, in seconds, of OAuth access tokens given to single-user servers and
        /// services. Default: `cookie_max_age_days`.
        pub oauth_token_expires_in: Option<Duration> = None,
        /// Whether OAuth clients must use PKCE: authorization requests without a
        /// `code_challenge` are refused. Single-user servers and services of JupyterHub 6.0 and
        /// later always send one; older ones do not.
        pub oauth_require_pkce: bool = false,
        /// Most servers that may be starting at the same time; further requests are refused
        /// with 429 until one finishes. 0 means no limit.
        pub concurrent_spawn_limit: Limit = Limit::at_most(100),
        /// Most servers that may be running (or starting) at once. 0 means no limit.
        pub active_server_limit: Limit = Limit::NONE,
        /// Consecutive failed starts after which the hub exits, so a supervisor can restart it
        /// in a clean state. 0 means never.
        pub consecutive_failure_limit: Limit = Limit::NONE,
        /// Whether users may run named servers besides their default one.
        pub allow_named_servers: bool = false,
        /// Most named servers one user may have. 0 means no limit.
        pub named_server_limit_per_user: Limit = Limit::NONE,
        /// Whether visiting `/hub/` sends a user with a running server straight to it.
        pub redirect_to_server: bool = true,
        /// Where a logged-in user lands when visiting the root URL: a path on this deployment
        /// (such as `/hub/home`) or an absolute URL. Default: the user's server, or the home
        /// page when `redirect_to_server` is false.
        pub default_url: Option<Location> = None,
        /// Seconds between passes that collect activity from the proxy and check its routes.
        pub last_activity_interval: Duration = Duration::from_secs(300),
        /// Whether tokens from configuration (`api_tokens`, services' `api_token`) are hashed
        /// with one round, like generated tokens, instead of 16384. Only for tokens with as
        /// much randomness as generated ones.
        pub trust_user_provided_tokens: bool = false,
        /// Whether `/hub/metrics` requires a token with the `read:metrics` scope.
        pub authenticate_prometheus: bool = true,
        /// Prefix of the Prometheus metric names (`jupyterhub_request_duration_seconds`).
        pub metrics_prefix: MetricsPrefix = MetricsPrefix::default(),
        /// Whether logging out also stops the user's servers.
        pub shutdown_on_logout: bool = false,
        /// Whether stopping the hub stops all single-user servers. Set to false to keep them
        /// running across hub restarts and upgrades.
        pub cleanup_servers: bool = true,
        /// Whether stopping the hub stops the proxy it started.
        pub cleanup_proxy: bool = true,
        /// Directories searched for page templates before the built-in ones.
        pub template_paths: Vec<PathBuf> = Vec::new(),
        /// Extra variables made available to page templates.
        pub template_vars: BTreeMap<String, String> = BTreeMap::new(),
        /// Image shown as the logo on the hub's pages, instead of the built-in one.
        pub logo_file: Option<PathBuf> = None,
        /// Directories searched for files under `/hub/static/` before the built-in ones, in
        /// order: a `style.css` or `hub.js` here replaces the built-in one, and other files
        /// (images, fonts) are served too. When one holds a `custom.css` as the hub starts,
        /// every page loads it after the built-in style sheet, for small changes. Files are
        /// read when requested, so they can change while the hub runs.
        pub static_paths: Vec<PathBuf> = Vec::new(),
        /// A message shown in a banner at the top of every page (plain text), such as planned
        /// maintenance. A `template_vars` entry named `announcement` takes its place.
        pub announcement: Option<String> = None,
        /// File to write the hub's process id to.
        pub pid_file: Option<PathBuf> = None,
        /// How much the hub logs: `trace`, `debug`, `info`, `warn` or `error`. `RUST_LOG`, when
        /// set, overrides it with a full filter.
        pub log_level: LogLevel = LogLevel::Info,
        /// How log lines are written: `text` for people, `json` for log collectors.
        pub log_format: LogFormat = LogFormat::Text,
        /// Scopes added to the built-in `user` role, which every user has, on top of `self`.
        pub extra_user_scopes: Vec<String> = Vec::new(),
        /// Scopes defined by this deployment, each under its name:
        /// `[hub.custom_scopes."custom:name"]`. Names must start with `custom:`.
        pub custom_scopes: BTreeMap<String, CustomScope> = BTreeMap::new(),
    }
}

impl HubSection {
    /// Where the hub's own HTTP server listens.
    pub fn hub_bind_addr(&self) -> SocketAddr {
        let from_url = self.hub_bind_url.as_ref().and_then(|url| {
            let ip = host_ip(url)?;
            Some(SocketAddr::new(ip, url.port_or_known_default()?))
        });
        from_url.unwrap_or(SocketAddr::new(self.hub_ip, self.hub_port.get()))
    }

    /// Where the public proxy listens, as its `--ip` and `--port` take them: the host of
    /// `bind_url` (an IPv6 address without brackets) and its port, explicit or the scheme's.
    pub fn public_listen(&self) -> (String, u16) {
        let host = match self.bind_url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => String::new(),
        };
        let port = self.bind_url.port_or_known_default().unwrap_or(8000);
        (host, port)
    }

    /// The prefix of the hub's own pages and API: `{base_url}hub/`.
    pub fn hub_prefix(&self) -> String {
        self.base_url.hub_prefix()
    }

    /// The URL of the hub's prefix as the proxy, single-user servers and services reach it,
    /// ending in `/hub/`: `hub_connect_url`, else where the hub listens (with a wildcard
    /// address replaced by loopback).
    pub fn hub_connect_url(&self) -> Url {
        if let Some(url) = &self.hub_connect_url {
            let mut url = url.as_url().clone();
            if url.path() == "/" {
                url.set_path(&self.hub_prefix());
            }
            return url;
        }
        let addr = self.hub_bind_addr();
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let scheme = self.hub_bind_url.as_ref().map_or("http", |u| u.scheme());
        let host = match ip {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let text = format!("{scheme}://{host}:{}{}", addr.port(), self.hub_prefix());
        // Built from parts that are each valid, so this parses; fall back to the bare origin.
        Url::parse(&text).unwrap_or_else(|_| self.bind_url.as_url().clone())
    }

    /// Lifetime of OAuth access tokens: `oauth_token_expires_in`, else the cookie lifetime.
    pub fn oauth_token_lifetime(&self) -> Duration {
        self.oauth_token_expires_in
            .unwrap_or_else(|| self.cookie_max_age_days.duration())
    }
}

/// The IP address in a URL's host, if it is one.
pub(crate) fn host_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

config_section! {
    /// A scope defined by this deployment (JupyterHub's `custom_scopes`).
    pub struct CustomScope {
        /// What holding the scope allows, shown to users on the OAuth confirmation page.
        pub description: String = String::new(),
        /// Other custom scopes that this one implies.
        pub subscopes: Vec<String> = Vec::new(),
    }
}

config_section! {
    /// The HTTP proxy in front of the hub and the single-user servers.
    /// JupyterHub's `ConfigurableHTTPProxy.*` settings.
    pub struct ProxySection {
        /// Whether the hub starts the proxy itself. Set to false when the proxy runs as its
        /// own service (so it survives hub restarts); `auth_token` is then required.
        pub should_start: bool = true,
        /// The proxy program, and any arguments before the ones the hub adds.
        pub command: Command = Command::new("chp-proxy", []),
        /// Arguments added after the ones the hub passes (`--ip`, `--port`, `--api-ip`, ...).
        pub extra_args: Vec<String> = Vec::new(),
        /// URL of the proxy's REST API. When the hub starts the proxy, the proxy's API listens
        /// on this address and port.
        pub api_url: HttpUrl = HttpUrl::constant("http://127.0.0.1:8001"),
        /// Token that authenticates the hub to the proxy's REST API, also read from
        /// `CONFIGPROXY_AUTH_TOKEN`. When unset and the hub starts the proxy, a random one is
        /// generated at each start.
        pub auth_token: Option<Secret> = None,
        /// File to write the started proxy's process id to. A proxy left behind by a previous
        /// hub is found through it and stopped.
        pub pid_file: PathBuf = PathBuf::from("jupyterhub-proxy.pid"),
        /// Seconds between checks that the started proxy is still running; a dead proxy is
        /// restarted and given all routes again.
        pub check_running_interval: Duration = Duration::from_secs(5),
    }
}

impl ProxySection {
    /// The token for the proxy's API. Always set after [`super::load`]: configured, or
    /// generated when the hub starts the proxy.
    pub fn auth_token(&self) -> Option<&Secret> {
        self.auth_token.as_ref()
    }
}

config_section! {
    /// Who may log in, and who is an admin. JupyterHub's `Authenticator.*` settings; the
    /// sub-tables hold the settings of each authenticator class.
    pub struct AuthenticatorSection {
        /// Which authenticator checks logins: `pam` (system accounts, the default), `dummy`
        /// (any username, for testing) or `shared-password`. JupyterHub class names such as
        /// `jupyterhub.auth.PAMAuthenticator` are accepted too.
        pub class: AuthenticatorClass = AuthenticatorClass::Pam,
        /// Users who are admins. They are allowed to log in.
        pub admin_users: BTreeSet<String> = BTreeSet::new(),
        /// Users allowed to log in. Admins are always allowed.
        pub allowed_users: BTreeSet<String> = BTreeSet::new(),
        /// Users never allowed to log in, even when another rule allows them. They hold no
        /// permissions from then on (their tokens and cookies stop working at once), and a
        /// server of a blocked user found running when the hub starts is stopped (route, API
        /// token and OAuth client removed).
        pub blocked_users: BTreeSet<String> = BTreeSet::new(),
        /// Whether everyone who authenticates may log in. Default: false for `pam`; for
        /// `dummy` and `shared-password`, true unless `allowed_users` is set.
        pub allow_all: Option<bool> = None,
        /// Whether users already in the database may log in, so admins can add users through
        /// the API. Default: true when `allowed_users` is set, otherwise false.
        pub allow_existing_users: Option<bool> = None,
        /// Maps names as typed at login to hub usernames (`"Alice.Smith" = "alice"`), after
        /// lower-casing.
        pub username_map: BTreeMap<String, String> = BTreeMap::new(),
        /// Whether users in the database that the authenticator now rejects as invalid are
        /// deleted at startup instead of stopping it.
        pub delete_invalid_users: bool = false,
        /// Whether the authenticator decides group membership at login.
        pub manage_groups: bool = false,
        /// Whether the authenticator decides role assignment at login.
        pub manage_roles: bool = false,
        /// Whether to keep the authenticator's per-user state (needs `hub.crypt_key`).
        pub enable_auth_state: bool = false,
        /// Whether to skip the login form and go straight to the authenticator's external
        /// login (for OAuth-style authenticators).
        pub auto_login: bool = false,
        /// Settings of the `pam` authenticator.
        pub pam: PamSection = PamSection::default(),
        /// Settings of the `dummy` authenticator.
        pub dummy: DummySection = DummySection::default(),
        /// Settings of the `shared-password` authenticator.
        pub shared_password: SharedPasswordSection = SharedPasswordSection::default(),
    }
}

impl AuthenticatorSection {
    /// Whether everyone who authenticates may log in, with the class's default applied.
    pub fn allows_all(&self) -> bool {
        self.allow_all.unwrap_or(match self.class {
            AuthenticatorClass::Pam => false,
            AuthenticatorClass::Dummy | AuthenticatorClass::SharedPassword => {
                self.allowed_users.is_empty()
            }
        })
    }

    /// Whether users already in the database may log in, with the default applied.
    pub fn allows_existing_users(&self) -> bool {
        self.allow_existing_users
            .unwrap_or(!self.allowed_users.is_empty())
    }
}

config_section! {
    /// Settings of the `pam` authenticator (JupyterHub's `PAMAuthenticator.*`).
    pub struct PamSection {
        /// PAM service name, i.e. the file under `/etc/pam.d/` that decides how to check
        /// passwords.
        pub service: String = "login".to_owned(),
        /// Whether to open a PAM session when a user's server starts (this may mount home
        /// directories or fetch credentials, depending on the system).
        pub open_sessions: bool = false,
        /// Whether to check that the account is valid (not expired or locked) after the
        /// password.
        pub check_account: bool = true,
        /// System groups whose members are admins.
        pub admin_groups: BTreeSet<String> = BTreeSet::new(),
        /// System groups whose members may log in.
        pub allowed_groups: BTreeSet<String> = BTreeSet::new(),
    }
}

config_section! {
    /// Settings of the `dummy` authenticator. Never use it where the hub is reachable by
    /// people you do not trust.
    pub struct DummySection {
        /// A password every user must type. Unset: any password is accepted.
        pub password: Option<Secret> = None,
    }
}

config_section! {
    /// Settings of the `shared-password` authenticator (JupyterHub's
    /// `SharedPasswordAuthenticator.*`).
    pub struct SharedPasswordSection {
        /// Password for users who are not admins; at least 8 characters. Required with this
        /// authenticator.
        pub global_password: Option<Secret> = None,
        /// Password for the users in `admin_users`; at least 32 characters and different from
        /// `global_password`. Unset: admins cannot log in with this authenticator.
        pub admin_password: Option<Secret> = None,
    }
}

config_section! {
    /// How single-user servers are started. JupyterHub's `Spawner.*` and
    /// `LocalProcessSpawner.*` settings.
    pub struct SpawnerSection {
        /// Which spawner starts servers: `local` (local processes, as the user's system
        /// account when the hub runs as root), `slurm` (batch jobs on a Slurm cluster, see
        /// `[spawner.slurm]`) or `batch` (batch jobs on another scheduler, driven by the
        /// commands of `[spawner.batch]`). JupyterHub and batchspawner class names are
        /// accepted too.
        pub class: SpawnerClass = SpawnerClass::Local,
        /// The single-user server program. It reads everything else from the `JUPYTERHUB_*`
        /// environment the hub gives it. The default, `singleuser-auth-shim`, runs
        /// `jupyter lab` (or `jupyter server` when JupyterLab is not installed) from the
        /// servers' `PATH` behind the hub's login; the `local` spawner finds it beside the
        /// hub's executable first, then on the servers' `PATH`. `["jupyterhub-singleuser"]`
        /// runs JupyterHub's own. With `slurm` and `batch` the default is
        /// `jupyterhub-singleuser`, which their `wrapper` runs as a Python script.
        pub cmd: Command = Command::new(DEFAULT_SERVER_CMD, []),
        /// Extra arguments for `cmd`.
        pub args: Vec<String> = Vec::new(),
        /// IP address single-user servers listen on (`local` spawner; batch jobs use
        /// `spawner.batch.ip`).
        pub ip: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST),
        /// Port single-user servers listen on; 0 picks a free port for each (with `slurm` and
        /// `batch`: the server picks one on its node and reports it to the hub).
        pub port: u16 = 0,
        /// Seconds a server may take to start before the start counts as failed. For batch
        /// jobs this includes the time in the queue: raise it (to 300 or more).
        pub start_timeout: Duration = Duration::from_secs(60),
        /// Seconds a started server may take to answer HTTP before the start counts as failed.
        pub http_timeout: Duration = Duration::from_secs(30),
        /// Seconds between checks that running servers are still alive.
        pub poll_interval: Duration = Duration::from_secs(30),
        /// Extra environment variables for single-user servers. Applied last, so they can
        /// override anything the hub sets.
        pub environment: BTreeMap<String, String> = BTreeMap::new(),
        /// Variables of the hub's own environment passed on to single-user servers.
        pub env_keep: Vec<String> = default_env_keep(),
        /// Page a user's server opens on, such as `/lab` or `/tree`. `{username}` is replaced
        /// by the user's name.
        pub default_url: Option<Location> = None,
        /// Directory the server starts in. `~` is the user's home directory and `{username}`
        /// the user's name.
        pub notebook_dir: Option<String> = None,
        /// Whether the server ignores the user's own Jupyter configuration files.
        pub disable_user_config: bool = false,
        /// Whether to start servers with debug logging.
        pub debug: bool = false,
        /// Scopes that a server may request for the users who log in to it (for example
        /// `read:users` to see who else is on the hub). Access to the server itself is always
        /// included.
        pub oauth_client_allowed_scopes: Vec<String> = Vec::new(),
        /// Scopes of the API token each server gets. Default: the `server` role's scopes.
        pub server_token_scopes: Option<Vec<String>> = None,
        /// `local` spawner, hub running as root: create a missing system account (with
        /// `useradd -m`) the first time its user starts a server. Off: a user without a system
        /// account cannot start a server.
        pub create_system_users: bool = false,
        /// `local` spawner: directory for one log file per server
        /// (`<user>[-<server>].log`, owned by the user). Unset: servers' output goes to the
        /// hub's own log, which ties the servers to the hub's output streams.
        pub log_dir: Option<PathBuf> = None,
        /// `local` spawner: seconds a stop waits after SIGINT before sending SIGTERM.
        pub interrupt_timeout: Duration = Duration::from_secs(10),
        /// `local` spawner: seconds a stop waits after SIGTERM before sending SIGKILL.
        pub term_timeout: Duration = Duration::from_secs(5),
        /// `local` spawner: seconds a stop waits after SIGKILL before reporting failure.
        pub kill_timeout: Duration = Duration::from_secs(5),
        /// What each server's job asks Slurm for (`slurm` spawner).
        pub slurm: SlurmSection = SlurmSection::default(),
        /// The commands and patterns that drive the scheduler (`batch` spawner; the `slurm`
        /// spawner takes each one left unset from its Slurm preset), and settings of both.
        pub batch: BatchSection = BatchSection::default(),
    }
}

/// What LocalProcessSpawner passes on from the hub's environment by default.
fn default_env_keep() -> Vec<String> {
    [
        "PATH",
        "PYTHONPATH",
        "CONDA_ROOT",
        "CONDA_DEFAULT_ENV",
        "VIRTUAL_ENV",
        "LANG",
        "LC_ALL",
        "LD_LIBRARY_PATH",
        "JUPYTERHUB_SINGLEUSER_APP",
    ]
    .map(str::to_owned)
    .to_vec()
}

config_section! {
    /// What each server's job asks Slurm for (`slurm` spawner). Every key is also a variable
    /// of the job script (`{{ partition }}`), which a user option of the same name replaces
    /// when `spawner.batch.options` allows that option. Empty values are left out of the
    /// script, so Slurm's own defaults apply.
    pub struct SlurmSection {
        /// `--partition` of the job.
        pub partition: String = String::new(),
        /// `--account` the job is charged to.
        pub account: String = String::new(),
        /// `--qos` of the job.
        pub qos: String = String::new(),
        /// `--reservation` the job runs in.
        pub reservation: String = String::new(),
        /// `--time`: the job's time limit, such as `8:00:00`. Slurm ends the server then.
        pub time: String = String::new(),
        /// `--mem`: memory of the job, such as `4G`.
        pub memory: String = String::new(),
        /// `--cpus-per-task`: CPUs of the job, such as `2`.
        pub cpus: String = String::new(),
        /// GPUs of the job, such as `1` (`--gres=gpu:1`).
        pub gpus: String = String::new(),
        /// `--constraint`: node features the job needs.
        pub constraint: String = String::new(),
        /// More `#SBATCH` lines, each without the `#SBATCH ` prefix, such as `--exclusive`.
        pub directives: Vec<String> = Vec::new(),
        /// Shell lines run in the job before the server starts, such as `module load python`.
        pub prologue: String = String::new(),
        /// Shell lines run in the job after the server ends.
        pub epilogue: String = String::new(),
        /// The job step launcher put before the server command; empty runs the server in the
        /// job's batch step.
        pub srun: String = "srun".to_owned(),
        /// The job's output file (`--output`): `%j` is the job id, `{{ home }}` the user's home
        /// directory.
        pub output: String = "{{ home }}/.jupyterhub-slurm-%j.log".to_owned(),
    }
}

config_section! {
    /// Batch jobs on a cluster scheduler (`batch` and `slurm` spawners). Commands are lists of
    /// words run without a shell, as the user's system account; every word, the job script
    /// and the variables are Jinja templates (`{{ username }}`, `{{ job_id }}`, ...; see the
    /// Slurm how-to for the list). With `class = "slurm"`, every command and pattern left unset
    /// here is Slurm's; with `class = "batch"`, `submit`, `status`, `cancel` and the patterns
    /// must be set.
    pub struct BatchSection {
        /// Command that submits a job; the rendered `script` is its standard input. Slurm:
        /// `["sbatch", "--parsable"]`.
        pub submit: Option<Vec<String>> = None,
        /// The job script (a template). Slurm: a script with an `#SBATCH` line per request of
        /// `[spawner.slurm]`, then `{{ prologue }}`, `{{ srun }} {{ cmd }}`,
        /// `{{ epilogue }}`. An empty script sends nothing to `submit`.
        pub script: Option<String> = None,
        /// Regular expression that finds the job id in the output of `submit`: its first
        /// capture group, else the whole match.
        pub job_id_pattern: Option<String> = None,
        /// Command that shows a job's state (`{{ job_id }}`); its standard output and error are
        /// read together. Slurm: `scontrol show job --oneliner {{ job_id }}`.
        pub status: Option<Vec<String>> = None,
        /// Regular expression matching the `status` output of a running job.
        pub running_pattern: Option<String> = None,
        /// Regular expression matching the `status` output of a job waiting to run.
        pub pending_pattern: Option<String> = None,
        /// Regular expression matching the `status` output when the scheduler does not answer;
        /// the job is then taken as still there. Any other output means the job is gone.
        pub unknown_pattern: Option<String> = None,
        /// Regular expression whose first capture group, in the `status` output of a running
        /// job, is the host the job runs on: the hub and the proxy connect to it.
        pub host_pattern: Option<String> = None,
        /// Regular expressions with a named capture group each, picking details out of the
        /// `status` output for progress and error messages: `(?P<reason>...)` shows as
        /// `reason <value>`.
        pub details: Option<Vec<String>> = None,
        /// Command that cancels a job (`{{ job_id }}`). Slurm: `scancel {{ job_id }}`.
        pub cancel: Option<Vec<String>> = None,
        /// Command that cancels the user's jobs named `{{ job_name }}`, for a server whose job
        /// id the hub never learnt (it restarted while the job was queued). Slurm:
        /// `scancel --name={{ job_name }}`. An empty list leaves such jobs alone.
        pub cancel_by_name: Option<Vec<String>> = None,
        /// More template variables, such as a `queue` your script uses. Values may use the
        /// fixed variables (`{{ username }}`, `{{ home }}`).
        pub variables: BTreeMap<String, String> = BTreeMap::new(),
        /// User options users may set, each with a regular expression every value must match
        /// in full (`partition = "debug|gpu"`). An option replaces the variable of the same
        /// name. Options not listed are refused, and values with control characters always.
        pub options: BTreeMap<String, String> = BTreeMap::new(),
        /// HTML of the options form shown on the spawn page; its fields are the user options.
        pub options_form: Option<String> = None,
        /// Program put before `spawner.cmd` when `spawner.port` is 0: it picks a free port on
        /// the node, reports it to the hub (`POST /hub/api/batchspawner`) and runs the server
        /// on it. `batchspawner-singleuser` comes with the `batchspawner` Python package.
        pub wrapper: Vec<String> = vec!["batchspawner-singleuser".to_owned()],
        /// IP address the server binds on its node (in `JUPYTERHUB_SERVICE_URL`): all
        /// addresses by default, since the hub and the proxy connect from another host.
        pub ip: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        /// Seconds a job may take to be queued, started and to report its port before it is
        /// cancelled with a message saying how far it got. Default: `spawner.start_timeout`
        /// less a tenth (at most 10 s), so this message comes before the hub's own timeout.
        pub start_timeout: Option<Duration> = None,
        /// Seconds between status checks while a job starts or stops.
        pub status_interval: Duration = Duration::from_secs(1),
        /// Seconds a stop waits for the job to be gone after cancelling it.
        pub stop_timeout: Duration = Duration::from_secs(30),
        /// Seconds any one command (`submit`, `status`, `cancel`) may run before it is killed.
        pub command_timeout: Duration = Duration::from_secs(30),
        /// Variables of the hub's own environment that every command gets, such as
        /// `SLURM_CONF`; a trailing `*` matches a prefix. `PATH` is always given.
        pub command_env_keep: Vec<String> = ["PATH", "SLURM_CONF", "LANG", "LC_ALL"]
            .map(str::to_owned)
            .to_vec(),
    }
}

config_section! {
    /// A service: a program that uses the hub's API, optionally behind the proxy at
    /// `/services/<name>/` and optionally started by the hub. JupyterHub's
    /// `JupyterHub.services` entries.
    pub struct ServiceConfig {
        /// The service's name (required). It appears in its URL, `/services/<name>/`.
        pub name: String = String::new(),
        /// Where the service listens. With a URL, the proxy routes `/services/<name>/` to it.
        pub url: Option<HttpUrl> = None,
        /// The service's API token, 8 to 64 characters. The hub makes one for services it
        /// starts, when unset.
        pub api_token: Option<Secret> = None,
        /// Command that the hub runs and keeps running (a managed service). Unset: the service
        /// runs elsewhere.
        pub command: Option<Command> = None,
        /// Extra environment variables for a managed service.
        pub environment: BTreeMap<String, String> = BTreeMap::new(),
        /// Working directory of a managed service.
        pub cwd: Option<PathBuf> = None,
        /// System account a managed service runs as (the hub must run as root).
        pub user: Option<String> = None,
        /// Deprecated in JupyterHub: gives the service the `admin` role. Prefer a role.
        pub admin: bool = false,
        /// Whether the service is listed in the Services menu of the hub's pages.
        pub display: bool = true,
        /// Free-form information shown in the API's service model.
        pub info: BTreeMap<String, String> = BTreeMap::new(),
        /// Whether users logging in to the service skip the OAuth confirmation page.
        pub oauth_no_confirm: bool = false,
        /// The service's OAuth client id; must start with `service-`. Default:
        /// `service-<name>`.
        pub oauth_client_id: Option<String> = None,
        /// Where the OAuth flow returns to. Default: `/services/<name>/oauth_callback`.
        pub oauth_redirect_uri: Option<Location> = None,
        /// Scopes the service may request for the users who log in to it.
        pub oauth_client_allowed_scopes: Vec<String> = Vec::new(),
    }
}

config_section! {
    /// A role: a named set of scopes, given to users, groups and services. JupyterHub's
    /// `JupyterHub.load_roles` entries. The built-in roles `user`, `server` and `token` may be
    /// redefined; `admin` may only be given to more members.
    pub struct RoleConfig {
        /// The role's name (required): 3 to 255 characters of lowercase letters, digits and
        /// `-_.~`, starting with a letter and ending with a letter or digit.
        pub name: String = String::new(),
        /// What the role is for.
        pub description: Option<String> = None,
        /// The scopes the role grants, such as `read:users` or `admin:servers!group=staff`.
        pub scopes: Vec<String> = Vec::new(),
        /// Users who have the role.
        pub users: Vec<String> = Vec::new(),
        /// Groups whose members have the role.
        pub groups: Vec<String> = Vec::new(),
        /// Services that have the role.
        pub services: Vec<String> = Vec::new(),
    }
}

config_section! {
    /// A group of users, under its name: `[groups.<name>]`. JupyterHub's
    /// `JupyterHub.load_groups` entries.
    pub struct GroupConfig {
        /// Members of the group. Users are created if they do not exist.
        pub users: Vec<String> = Vec::new(),
        /// Free-form properties, visible through the API (for example to spawners).
        pub properties: serde_json::Map<String, serde_json::Value> = serde_json::Map::new(),
    }
}

config_section! {
    /// A server profile users choose from on the spawn page: `[[profiles]]`. Profiles work
    /// with any spawner: the chosen profile's `user_options` are given to the spawner as the
    /// server's options (over what the user sent), and its `environment` is added to the
    /// server's environment. When profiles are configured every start uses one: the profile
    /// named by the `profile` user option, else the default one. A start naming a profile the
    /// user may not use is refused.
    pub struct ProfileConfig {
        /// Identifier of the profile (required, unique): 1 to 63 lowercase letters, digits,
        /// `-` and `_`, starting with a letter or digit. It is the value of the `profile` user
        /// option (`/hub/spawn?profile=<slug>`, or `{"profile": "<slug>"}` in the API).
        pub slug: String = String::new(),
        /// Name shown on the spawn page. Default: the slug.
        pub display_name: Option<String> = None,
        /// What the profile offers, shown under its name (plain text).
        pub description: String = String::new(),
        /// Whether this profile is preselected and used when a start names none. At most one
        /// profile may be the default; without one, the first profile the user may use is.
        pub default: bool = false,
        /// Groups whose members may use the profile. Empty, together with `users`: everyone.
        pub groups: Vec<String> = Vec::new(),
        /// Users who may use the profile, besides the members of `groups`.
        pub users: Vec<String> = Vec::new(),
        /// Environment variables added to the server's environment (after
        /// `spawner.environment`, so they override it).
        pub environment: BTreeMap<String, String> = BTreeMap::new(),
        /// The server command for this profile, instead of `spawner.cmd` (for spawners that
        /// start a program: `local`). Only the configuration sets it; users choose a profile,
        /// never a command.
        pub cmd: Option<Command> = None,
        /// Options handed to the spawner as if the user had chosen them, overriding the
        /// user's own choices: what the spawner reads, such as a container `image`, a
        /// command (`cmd`), or resources (`cpu_limit`, `mem_limit`). The spawn page lists them
        /// under the profile's description.
        pub user_options: serde_json::Map<String, serde_json::Value> = serde_json::Map::new(),
    }
}

impl ProfileConfig {
    /// The name people see: `display_name`, else the slug.
    pub fn label(&self) -> &str {
        self.display_name
            .as_deref()
            .filter(|name| !name.trim().is_empty())
            .unwrap_or(&self.slug)
    }

    /// Whether `user`, a member of `groups`, may use the profile.
    pub fn visible_to(&self, user: &str, groups: &[String]) -> bool {
        (self.groups.is_empty() && self.users.is_empty())
            || self.users.iter().any(|u| u == user)
            || self.groups.iter().any(|g| groups.contains(g))
    }
}
