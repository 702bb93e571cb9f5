//! The authenticator and spawner a configuration selects.
//!
//! Built in here: the dummy authenticator (any name; an optional shared password, for tests
//! and demos) and the shared-password authenticator (JupyterHub 5.3's, for workshops). The PAM
//! authenticator (`auth-pam`) and the local spawner (`spawner-local`) are separate crates; until
//! they are part of this build, selecting them is reported clearly instead of pretending.

use std::sync::Arc;

use async_trait::async_trait;
use hub_plugin::{
    AuthError, AuthModel, Authenticator, LoginForm, PollStatus, ServerRef, SpawnContext,
    SpawnError, Spawner, Started,
};
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::config::{AuthenticatorClass, HubConfig, Secret, SpawnerClass};

/// A configuration that selects something unusable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(String);

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Accepts any valid username; with a password configured, only that password.
#[derive(Debug, Default)]
pub struct DummyAuthenticator {
    password: Option<String>,
}

#[async_trait]
impl Authenticator for DummyAuthenticator {
    fn kind(&self) -> &str {
        "dummy"
    }

    async fn authenticate(&self, form: &LoginForm) -> Result<Option<AuthModel>, AuthError> {
        if self
            .password
            .as_deref()
            .is_some_and(|p| !same(p, &form.password))
        {
            return Ok(None);
        }
        Ok(Some(AuthModel {
            name: form.username.clone(),
            ..AuthModel::default()
        }))
    }
}

/// JupyterHub 5.3's shared passwords: users outside `admin_users` log in with the global
/// password; users in `admin_users` only with the admin password (when none is set, admins
/// cannot log in at all). Neither password works for the other group.
#[derive(Debug)]
pub struct SharedPasswordAuthenticator {
    user_password: Option<String>,
    admin_password: Option<String>,
    /// Normalised names of the admin users.
    admin_users: std::collections::BTreeSet<String>,
}

#[async_trait]
impl Authenticator for SharedPasswordAuthenticator {
    fn kind(&self) -> &str {
        "shared-password"
    }

    async fn authenticate(&self, form: &LoginForm) -> Result<Option<AuthModel>, AuthError> {
        let is_admin = self
            .admin_users
            .contains(&self.normalize_username(&form.username));
        let expected = if is_admin {
            &self.admin_password
        } else {
            &self.user_password
        };
        if !expected.as_deref().is_some_and(|p| same(p, &form.password)) {
            return Ok(None);
        }
        Ok(Some(AuthModel {
            name: form.username.clone(),
            admin: is_admin.then_some(true),
            ..AuthModel::default()
        }))
    }
}

/// Stands in when the configured spawner is not part of this build: every start is refused
/// with a message saying so; nothing is ever running.
#[derive(Debug)]
pub struct UnavailableSpawner {
    reason: String,
}

#[async_trait]
impl Spawner for UnavailableSpawner {
    fn kind(&self) -> &str {
        "unavailable"
    }

    async fn start(&self, _ctx: &SpawnContext) -> Result<Started, SpawnError> {
        Err(SpawnError::Refused {
            message: self.reason.clone(),
            status: 501,
        })
    }

    async fn poll(&self, _server: &ServerRef, _state: &Value) -> Result<PollStatus, SpawnError> {
        Ok(PollStatus::Stopped(None))
    }

    async fn stop(
        &self,
        _server: &ServerRef,
        _state: &Value,
        _now: bool,
    ) -> Result<(), SpawnError> {
        Ok(())
    }
}

// Presence and length (at least 8 characters) are checked when the configuration is loaded.
fn password(secret: Option<&Secret>) -> Option<String> {
    secret.map(|s| s.expose().to_owned())
}

/// The authenticator `config` selects.
///
/// # Errors
/// When it is not available in this build or its settings are unusable.
pub fn authenticator(config: &HubConfig) -> Result<Arc<dyn Authenticator>, PluginError> {
    let auth = &config.authenticator;
    match auth.class {
        AuthenticatorClass::Dummy => Ok(Arc::new(DummyAuthenticator {
            password: auth.dummy.password.as_ref().map(|p| p.expose().to_owned()),
        })),
        AuthenticatorClass::SharedPassword => {
            let user_password = password(auth.shared_password.global_password.as_ref());
            let admin_password = password(auth.shared_password.admin_password.as_ref());
            let admin_users = auth.admin_users.iter().map(|n| n.to_lowercase()).collect();
            Ok(Arc::new(SharedPasswordAuthenticator {
                user_password,
                admin_password,
                admin_users,
            }))
        }
        AuthenticatorClass::Pam => Err(PluginError(
            "authenticator.class = \"pam\" is not available in this build yet; use \"shared-password\" or \"dummy\"".into(),
        )),
    }
}

/// The spawner `config` selects.
pub fn spawner(config: &HubConfig) -> Arc<dyn Spawner> {
    match config.spawner.class {
        SpawnerClass::Local => Arc::new(UnavailableSpawner {
            reason: "The local spawner is not available in this build yet, so servers cannot be started.".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(user: &str, password: &str) -> LoginForm {
        LoginForm {
            username: user.into(),
            password: password.into(),
            ..LoginForm::default()
        }
    }

    async fn accepts(
        a: &SharedPasswordAuthenticator,
        user: &str,
        password: &str,
    ) -> Option<AuthModel> {
        a.authenticate(&form(user, password)).await.unwrap()
    }

    #[tokio::test]
    async fn shared_passwords() {
        let a = SharedPasswordAuthenticator {
            user_password: Some("user-pass-1".into()),
            admin_password: Some("admin-pass-1".into()),
            admin_users: ["bob".to_owned()].into(),
        };
        let user = accepts(&a, "ann", "user-pass-1").await.unwrap();
        assert_eq!((user.name.as_str(), user.admin), ("ann", None));
        let admin = accepts(&a, "Bob", "admin-pass-1").await.unwrap();
        assert_eq!(admin.admin, Some(true));
        assert!(accepts(&a, "eve", "user-pass-").await.is_none());
        // Neither password works for the other group.
        assert!(accepts(&a, "bob", "user-pass-1").await.is_none());
        assert!(accepts(&a, "ann", "admin-pass-1").await.is_none());
        // Without an admin password, admins cannot log in at all.
        let no_admin = SharedPasswordAuthenticator {
            admin_password: None,
            ..a
        };
        assert!(accepts(&no_admin, "bob", "user-pass-1").await.is_none());
    }

    #[tokio::test]
    async fn unavailable_spawner_says_so() {
        let config = HubConfig::default();
        let s = spawner(&config);
        let ctx = SpawnContext {
            server: ServerRef {
                user: "a".into(),
                name: String::new(),
            },
            env: Default::default(),
            prefix: "/user/a/".into(),
            user_options: Value::Null,
            progress: hub_plugin::ProgressSender::channel().0,
        };
        match s.start(&ctx).await {
            Err(SpawnError::Refused {
                status: 501,
                message,
            }) => assert!(message.contains("not available")),
            other => panic!("{other:?}"),
        }
    }
}
