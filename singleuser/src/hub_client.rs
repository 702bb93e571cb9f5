//! Calls to the hub, straight to `$JUPYTERHUB_API_URL` (never through the proxy): the version
//! check at startup, identifying a token (`GET /user`), the OAuth code exchange
//! (`POST /oauth2/token`) and activity reports.
//!
//! How answers are read follows HubAuth (hub-protocol §4.4): `GET /user` answering 403 means
//! "not a valid token"; any other 4xx is an error of ours or the hub's; 5xx or no answer means
//! the hub is unavailable, which callers may treat differently (a cached user keeps access).

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::config::HubSettings;

/// What `GET /hub/api/user` says about a token's owner (the fields the shim uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HubUser {
    /// User or service name.
    pub name: String,
    /// `user` or `service`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// The token's expanded scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Whether the owner is an admin.
    #[serde(default)]
    pub admin: bool,
}

fn default_kind() -> String {
    "user".to_owned()
}

/// A failed call to the hub.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HubError {
    /// No answer (connection refused, timeout, TLS failure).
    #[error("the hub cannot be reached: {0}")]
    Unreachable(String),
    /// An answer with an unexpected status.
    #[error("the hub answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The start of the body, for the log.
        message: String,
    },
    /// An answer that could not be read.
    #[error("unexpected answer from the hub: {0}")]
    Invalid(String),
}

impl HubError {
    /// Whether the hub is down or failing, as opposed to refusing the request.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Status { status, .. } => *status >= 500,
            Self::Invalid(_) => false,
        }
    }
}

/// A successful OAuth token answer.
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
}

/// The HTTP client toward the hub.
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    settings: HubSettings,
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

async fn status_error(resp: reqwest::Response) -> HubError {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    HubError::Status {
        status,
        message: body.chars().take(200).collect(),
    }
}

impl HubClient {
    /// A client for `settings`.
    ///
    /// # Errors
    /// When the TLS files cannot be read.
    pub fn new(settings: HubSettings) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            // Below the hub's keep-alive limit (`[hub] http_header_timeout`, 60 s by
            // default), so the shim drops an idle connection before the hub does and never
            // sends a request into one the hub is closing.
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("singleuser-auth-shim/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = &settings.client_tls {
            builder = builder.tls_backend_preconfigured(tls.build()?);
        }
        Ok(Self {
            http: builder.build()?,
            settings,
        })
    }

    fn token_header(token: &str) -> String {
        format!("token {token}")
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &'static str,
    ) -> Result<reqwest::Response, HubError> {
        let started = Instant::now();
        let span = tracing::debug_span!("hub_request", hub.call = what);
        let result = request.send().instrument(span).await;
        let duration_ms = started.elapsed().as_millis();
        match result {
            Ok(resp) => {
                tracing::debug!(
                    hub.call = what,
                    status = resp.status().as_u16(),
                    duration_ms,
                    "hub answered"
                );
                Ok(resp)
            }
            Err(e) => {
                tracing::debug!(
                    hub.call = what,
                    duration_ms,
                    "hub unreachable: {}",
                    error_chain(&e)
                );
                Err(HubError::Unreachable(error_chain(&e)))
            }
        }
    }

    /// The hub's version header, from `GET $JUPYTERHUB_API_URL` (no credentials), as
    /// `jupyterhub-singleuser` checks it at startup.
    ///
    /// # Errors
    /// When the hub does not answer with a 2xx.
    pub async fn version(&self) -> Result<Option<String>, HubError> {
        let resp = self
            .send(self.http.get(&self.settings.api_url), "version")
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(resp).await);
        }
        Ok(resp
            .headers()
            .get("x-jupyterhub-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned))
    }

    /// Who holds `token`: `Ok(None)` when the hub says it is not a valid token (403).
    ///
    /// # Errors
    /// When the hub is unavailable or answers unexpectedly.
    pub async fn identify(&self, token: &str) -> Result<Option<HubUser>, HubError> {
        let url = format!("{}/user", self.settings.api_url);
        let resp = self
            .send(
                self.http
                    .get(url)
                    .header(http::header::AUTHORIZATION, Self::token_header(token)),
                "identify",
            )
            .await?;
        match resp.status().as_u16() {
            200 => resp
                .json::<HubUser>()
                .await
                .map(Some)
                .map_err(|e| HubError::Invalid(error_chain(&e))),
            403 => Ok(None),
            _ => Err(status_error(resp).await),
        }
    }

    /// Exchanges an authorization code for an access token (hub-protocol §4.3).
    ///
    /// # Errors
    /// When the hub refuses the code or is unavailable.
    pub async fn exchange_code(&self, code: &str, verifier: &str) -> Result<String, HubError> {
        let s = &self.settings;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &s.client_id)
            .append_pair("client_secret", &s.api_token.0)
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &s.redirect_uri)
            .append_pair("code_verifier", verifier)
            .finish();
        let resp = self
            .send(
                self.http
                    .post(format!("{}/oauth2/token", s.api_url))
                    .header(
                        http::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body),
                "oauth_token",
            )
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(resp).await);
        }
        resp.json::<TokenAnswer>()
            .await
            .map(|t| t.access_token)
            .map_err(|e| HubError::Invalid(error_chain(&e)))
    }

    /// Posts an activity report to `url` with the server's token.
    ///
    /// # Errors
    /// When the hub does not answer with a 2xx.
    pub async fn post_activity(&self, url: &str, body: &serde_json::Value) -> Result<(), HubError> {
        let resp = self
            .send(
                self.http
                    .post(url)
                    .header(
                        http::header::AUTHORIZATION,
                        Self::token_header(&self.settings.api_token.0),
                    )
                    .json(body),
                "activity",
            )
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(status_error(resp).await)
        }
    }
}
