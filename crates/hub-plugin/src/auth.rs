//! The `Authenticator` extension point: who may log in, and as whom.
//!
//! Override [`Authenticator::authenticate`]; the other methods have JupyterHub's defaults.
//! `authenticate` returns `Ok(None)` for a wrong password: that is an answer, not an error.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the login page submitted: every field except `_xsrf`. `Debug` leaves out the password
/// and the values of the other fields.
#[derive(Clone, Default)]
pub struct LoginForm {
    /// The `username` field, already trimmed.
    pub username: String,
    /// The `password` field.
    pub password: String,
    /// Any other fields (e.g. `otp`).
    pub extra: BTreeMap<String, String>,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A successful login.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AuthModel {
    /// The user's name, before normalisation by the hub.
    pub name: String,
    /// `Some(true)` to make the user an admin, `Some(false)` to revoke; `None` leaves it.
    pub admin: Option<bool>,
    /// Groups to put the user in, when the authenticator manages groups.
    pub groups: Option<Vec<String>>,
    /// State kept (encrypted) with the user, e.g. upstream OAuth tokens.
    pub auth_state: Option<Value>,
}

/// Why authentication could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A refusal with a message for the user (e.g. "account locked").
    #[error("{0}")]
    Refused(String),
    /// Something broke (e.g. PAM unavailable); logged in full.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// The extension point that checks credentials.
#[async_trait]
pub trait Authenticator: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for logs and `/hub/api/info` (e.g. `pam`).
    fn kind(&self) -> &str;

    /// Checks a login. `Ok(None)` means the credentials are wrong.
    async fn authenticate(&self, form: &LoginForm) -> Result<Option<AuthModel>, AuthError>;

    /// For authenticators that log people in elsewhere (OAuth, OpenID Connect, SAML): the URL
    /// of the identity provider's login page. The browser is sent there from
    /// `/hub/oauth_login`, and the provider must send it back to `callback_url`
    /// (`/hub/oauth_callback`) with `state` unchanged. `None` (the default) means the hub's
    /// own login form is used.
    fn external_login_url(&self, _callback_url: &str, _state: &str) -> Option<String> {
        None
    }

    /// Finishes an external login: `params` are the query parameters the identity provider
    /// sent back to `/hub/oauth_callback` (the hub has already checked `state`). `Ok(None)`
    /// means the provider did not vouch for anyone.
    async fn complete_external_login(
        &self,
        _callback_url: &str,
        _params: &BTreeMap<String, String>,
    ) -> Result<Option<AuthModel>, AuthError> {
        Ok(None)
    }

    /// JupyterHub's default normalisation: lower case.
    fn normalize_username(&self, name: &str) -> String {
        name.to_lowercase()
    }

    /// JupyterHub's default validation: not empty, no `/`, not only dots, no leading or
    /// trailing whitespace.
    fn validate_username(&self, name: &str) -> bool {
        !name.is_empty()
            && !name.contains('/')
            && !name.chars().all(|c| c == '.')
            && name.trim() == name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Nobody;

    #[async_trait]
    impl Authenticator for Nobody {
        fn kind(&self) -> &str {
            "nobody"
        }
        async fn authenticate(&self, _form: &LoginForm) -> Result<Option<AuthModel>, AuthError> {
            Ok(None)
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let form = LoginForm {
            username: "ann".into(),
            password: "hunter2".into(),
            extra: [("otp".to_owned(), "123456".to_owned())].into(),
        };
        let shown = format!("{form:?}");
        assert!(shown.contains("ann") && shown.contains("otp"), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("123456"),
            "{shown}"
        );
    }

    #[test]
    fn default_name_rules() {
        let a = Nobody;
        assert_eq!(a.normalize_username("ÉMILE"), "émile");
        for bad in ["", "a/b", ".", "..", " a", "a "] {
            assert!(!a.validate_username(bad), "{bad:?}");
        }
        for good in ["alice", "a.b", "a b", "a@b~c"] {
            assert!(a.validate_username(good), "{good:?}");
        }
    }
}
