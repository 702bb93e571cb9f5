//! Names of the environment variables a spawner gives a single-user server (the same set
//! JupyterHub gives `jupyterhub-singleuser`).

/// API token of the server, also accepted as `JPY_API_TOKEN` by old clients.
pub const API_TOKEN: &str = "JUPYTERHUB_API_TOKEN";
/// Base URL of the hub API, e.g. `http://127.0.0.1:8081/hub/api`.
pub const API_URL: &str = "JUPYTERHUB_API_URL";
/// OAuth client id of the server (`jupyterhub-user-<name>` or with the server name).
pub const CLIENT_ID: &str = "JUPYTERHUB_CLIENT_ID";
/// The owner's name.
pub const USER: &str = "JUPYTERHUB_USER";
/// The server's name (empty for the default server).
pub const SERVER_NAME: &str = "JUPYTERHUB_SERVER_NAME";
/// URL prefix of the server, e.g. `/user/alice/`.
pub const SERVICE_PREFIX: &str = "JUPYTERHUB_SERVICE_PREFIX";
/// Where the server must listen, e.g. `http://127.0.0.1:50123/user/alice/`.
pub const SERVICE_URL: &str = "JUPYTERHUB_SERVICE_URL";
/// Hub's URL prefix, e.g. `/hub/`.
pub const BASE_URL: &str = "JUPYTERHUB_BASE_URL";
/// Hub prefix under the base URL, e.g. `/hub/`.
pub const HUB_PREFIX: &str = "JUPYTERHUB_HUB_PREFIX";
/// Full OAuth callback URL of the server.
pub const OAUTH_CALLBACK_URL: &str = "JUPYTERHUB_OAUTH_CALLBACK_URL";
/// Scopes a token must hold to access the server (JSON list).
pub const OAUTH_ACCESS_SCOPES: &str = "JUPYTERHUB_OAUTH_ACCESS_SCOPES";
/// Scopes the server's OAuth client may request (JSON list).
pub const OAUTH_CLIENT_ALLOWED_SCOPES: &str = "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES";
/// Where the server posts its activity.
pub const ACTIVITY_URL: &str = "JUPYTERHUB_ACTIVITY_URL";
/// Public host of the hub in subdomain mode.
pub const HOST: &str = "JUPYTERHUB_HOST";
/// Set to `1` when the hub runs with admin access enabled.
pub const ADMIN_ACCESS: &str = "JUPYTERHUB_ADMIN_ACCESS";
/// Default URL to open after login (e.g. `/lab`).
pub const DEFAULT_URL: &str = "JUPYTERHUB_DEFAULT_URL";
/// Debug logging on the server.
pub const DEBUG: &str = "JUPYTERHUB_DEBUG";
