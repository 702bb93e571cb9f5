//! The browser side of the hub's OAuth2 flow (hub-protocol §4.4, as HubOAuth does it).
//!
//! 1. A browser without a valid login cookie is sent to the hub's authorize URL with a fresh
//!    `state` and a PKCE S256 challenge. The state id goes into the signed, HttpOnly state
//!    cookie `<client_id>-oauth-state` (a random suffix is added when one already exists, so
//!    logins in several tabs do not clobber each other); the URL to return to and the PKCE
//!    verifier stay in this process, keyed by the state id, for ten minutes.
//! 2. The hub sends the browser back to `oauth_callback` with a code and the state. The state
//!    must equal the state cookie; the code is exchanged (with the verifier) for a token, the
//!    token identifies the user, and the login cookie `<client_id>` is set on the server's
//!    path.
//!
//! The URL to return to comes only from the stored state, and it is always a path on this
//! server (security.md D.41).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use crate::config::HubSettings;
use crate::signing::random_urlsafe;

/// How long a login may take between the redirect and the callback.
pub const STATE_TTL: Duration = Duration::from_secs(600);
/// Most logins in flight kept (anonymous requests create them, so they must be bounded).
const MAX_STATES: usize = 10_000;

/// A login in flight.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    /// Where to go once logged in.
    pub next_url: String,
    /// PKCE verifier sent with the code exchange.
    pub verifier: String,
    /// The state cookie's name.
    pub cookie_name: String,
    created: Instant,
}

/// Logins in flight, keyed by state id.
#[derive(Debug, Default)]
pub struct OAuthStates {
    map: Mutex<HashMap<String, PendingLogin>>,
}

/// What a new login needs.
#[derive(Debug, Clone)]
pub struct NewLogin {
    /// The `state` parameter and state cookie value.
    pub state: String,
    /// The PKCE challenge.
    pub challenge: String,
}

/// `base64url(sha256(verifier))`, unpadded.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl OAuthStates {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, PendingLogin>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a login that returns to `next_url`, with its state cookie called `cookie_name`.
    pub fn begin(&self, next_url: String, cookie_name: String) -> NewLogin {
        let state = random_urlsafe(16);
        let verifier = random_urlsafe(32);
        let challenge = pkce_challenge(&verifier);
        let now = Instant::now();
        let mut map = self.map();
        if map.len() >= MAX_STATES {
            map.retain(|_, p| now.duration_since(p.created) < STATE_TTL);
            while map.len() >= MAX_STATES {
                // Evict the oldest: a flood of anonymous requests only pushes out itself.
                let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, p)| p.created)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                map.remove(&oldest);
            }
        }
        map.insert(
            state.clone(),
            PendingLogin {
                next_url,
                verifier,
                cookie_name,
                created: now,
            },
        );
        NewLogin { state, challenge }
    }

    /// The login of `state`, if it is known and not expired; it stays stored.
    pub fn get(&self, state: &str) -> Option<PendingLogin> {
        self.map()
            .get(state)
            .filter(|p| p.created.elapsed() < STATE_TTL)
            .cloned()
    }

    /// Removes and returns the login of `state`, if it is known and not expired.
    pub fn take(&self, state: &str) -> Option<PendingLogin> {
        self.map()
            .remove(state)
            .filter(|p| p.created.elapsed() < STATE_TTL)
    }

    /// How many logins are in flight.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no login is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The authorize URL the browser is sent to.
pub fn authorize_url(hub: &HubSettings, login: &NewLogin) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", &hub.client_id)
        .append_pair("redirect_uri", &hub.redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("code_challenge", &login.challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", &login.state)
        .finish();
    format!(
        "{}{}api/oauth2/authorize?{query}",
        hub.hub_host, hub.hub_prefix
    )
}

/// A request target made safe to redirect to: a path on this server. Leading slashes and
/// backslashes collapse to one `/` (so `//evil.example` cannot become a protocol-relative
/// URL), and anything outside `prefix` becomes `prefix`.
pub fn local_next_url(target: &str, prefix: &str) -> String {
    let trimmed = target.trim_start_matches(['/', '\\']);
    let path = format!("/{trimmed}");
    if path.starts_with(prefix) && !path.contains(['\r', '\n', '\\']) {
        path
    } else {
        prefix.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn hub() -> HubSettings {
        HubSettings {
            api_url: "http://127.0.0.1:8081/hub/api".into(),
            api_token: Secret("s".into()),
            client_id: "jupyterhub-user-a%40b".into(),
            hub_host: String::new(),
            hub_prefix: "/hub/".into(),
            redirect_uri: "/user/a@b/oauth_callback".into(),
            callback_path: "/user/a@b/oauth_callback".into(),
            activity_url: None,
            user: "a@b".into(),
            server_name: String::new(),
            access_scopes: vec![],
            client_tls: None,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn pkce_matches_rfc_7636_example() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn authorize_url_carries_every_parameter() {
        let login = NewLogin {
            state: "st".into(),
            challenge: "ch".into(),
        };
        let url = authorize_url(&hub(), &login);
        assert_eq!(
            url,
            "/hub/api/oauth2/authorize?client_id=jupyterhub-user-a%2540b\
             &redirect_uri=%2Fuser%2Fa%40b%2Foauth_callback&response_type=code\
             &code_challenge=ch&code_challenge_method=S256&state=st"
        );
        let mut h = hub();
        h.hub_host = "https://hub.example".into();
        assert!(
            authorize_url(&h, &login).starts_with("https://hub.example/hub/api/oauth2/authorize?")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn states_expire_and_are_taken_once() {
        let states = OAuthStates::default();
        let a = states.begin("/user/x/lab".into(), "c".into());
        let b = states.begin("/user/x/".into(), "c-abc".into());
        assert_ne!(a.state, b.state);
        assert_eq!(a.state.len(), 22);
        let got = states.take(&a.state).unwrap();
        assert_eq!(got.next_url, "/user/x/lab");
        assert_eq!(pkce_challenge(&got.verifier), a.challenge);
        assert!(states.take(&a.state).is_none());
        tokio::time::advance(STATE_TTL).await;
        assert!(states.get(&b.state).is_none());
        assert!(states.take(&b.state).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn bounded() {
        let states = OAuthStates::default();
        for _ in 0..MAX_STATES + 10 {
            states.begin("/".into(), "c".into());
        }
        assert!(states.len() <= MAX_STATES);
    }

    #[test]
    fn next_urls_stay_local() {
        let p = "/user/a/";
        assert_eq!(local_next_url("/user/a/lab?x=1", p), "/user/a/lab?x=1");
        assert_eq!(local_next_url("//evil.example/user/a/", p), "/user/a/");
        assert_eq!(local_next_url("/\\evil.example", p), "/user/a/");
        assert_eq!(local_next_url("https://evil.example/", p), "/user/a/");
        assert_eq!(local_next_url("/user/b/", p), "/user/a/");
        assert_eq!(local_next_url("//user/a/x", "/"), "/user/a/x");
    }

    proptest::proptest! {
        // Whatever the request target, the redirect after login stays a path on this server.
        #[test]
        fn next_url_is_always_local(target in "[/\\\\a-z:.%@?#\r\n]{0,30}") {
            for prefix in ["/", "/user/a/"] {
                let next = local_next_url(&target, prefix);
                proptest::prop_assert!(next.starts_with(prefix));
                proptest::prop_assert!(!next.starts_with("//"));
                proptest::prop_assert!(!next.contains(['\\', '\r', '\n']));
            }
        }
    }
}
