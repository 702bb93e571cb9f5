//! The authenticator and spawner a configuration selects.
//!
//! Built in here: the dummy authenticator (any name; an optional shared password, for tests
//! and demos) and the shared-password authenticator (JupyterHub 5.3's, for workshops). The
//! local spawner is the `spawner-local` crate, set up from the `[spawner]` section. The PAM
//! authenticator is the `auth-pam` crate, set up from `[authenticator.pam]`.

use std::sync::Arc;

use async_trait::async_trait;
use auth_pam::{PamAuthenticator, PamConfig};
use hub_plugin::{AuthError, AuthModel, Authenticator, LoginForm, Spawner};
use spawner_local::{LocalProcessSpawner, LocalSpawnerConfig};
use subtle::ConstantTimeEq;

use crate::config::{AuthenticatorClass, HubConfig, Secret, SpawnerClass, SpawnerSection};

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

// Presence and length (at least 8 characters) are checked when the configuration is loaded.
fn password(secret: Option<&Secret>) -> Option<String> {
    secret.map(|s| s.expose().to_owned())
}

/// The authenticator `config` selects.
///
/// # Errors
/// When its settings are unusable (e.g. a PAM service name that cannot name a policy file).
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
        AuthenticatorClass::Pam => {
            let pam = &auth.pam;
            let settings = PamConfig {
                service: pam.service.clone(),
                open_sessions: pam.open_sessions,
                check_account: pam.check_account,
                admin_groups: pam.admin_groups.clone(),
                allowed_groups: pam.allowed_groups.clone(),
                admin_users: auth.admin_users.clone(),
                ..PamConfig::default()
            };
            let authenticator = PamAuthenticator::new(settings)
                .map_err(|e| PluginError(format!("authenticator.pam: {e}")))?;
            Ok(Arc::new(authenticator))
        }
    }
}

/// The local spawner's settings from the `[spawner]` section.
fn local_spawner_config(section: &SpawnerSection) -> LocalSpawnerConfig {
    LocalSpawnerConfig {
        cmd: section.cmd.argv().to_vec(),
        args: section.args.clone(),
        ip: section.ip,
        port: section.port,
        environment: section.environment.clone(),
        env_keep: section.env_keep.clone(),
        default_url: section.default_url.as_ref().map(ToString::to_string),
        notebook_dir: section.notebook_dir.clone(),
        start_timeout: section.start_timeout,
        create_system_users: section.create_system_users,
        log_dir: section.log_dir.clone(),
        interrupt_timeout: section.interrupt_timeout,
        term_timeout: section.term_timeout,
        kill_timeout: section.kill_timeout,
    }
}

/// The spawner `config` selects.
pub fn spawner(config: &HubConfig) -> Arc<dyn Spawner> {
    match config.spawner.class {
        SpawnerClass::Local => Arc::new(LocalProcessSpawner::new(local_spawner_config(
            &config.spawner,
        ))),
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

    #[test]
    fn local_spawner_from_the_spawner_section() {
        let mut config = HubConfig::default();
        config.spawner.args = vec!["--debug".into()];
        config.spawner.port = 9999;
        config.spawner.notebook_dir = Some("~/work".into());
        assert_eq!(spawner(&config).kind(), "local");
        let local = local_spawner_config(&config.spawner);
        assert_eq!(local.cmd, ["jupyterhub-singleuser"]);
        assert_eq!(local.args, ["--debug"]);
        assert_eq!(local.port, 9999);
        assert_eq!(local.notebook_dir.as_deref(), Some("~/work"));
        assert_eq!(local.env_keep, config.spawner.env_keep);
        assert_eq!(local.start_timeout, config.spawner.start_timeout);
        assert!(!local.create_system_users);
        assert_eq!(local.log_dir, None);
        assert_eq!(
            (
                local.interrupt_timeout,
                local.term_timeout,
                local.kill_timeout
            ),
            (
                std::time::Duration::from_secs(10),
                std::time::Duration::from_secs(5),
                std::time::Duration::from_secs(5)
            )
        );
        config.spawner.create_system_users = true;
        config.spawner.log_dir = Some("/var/log/jupyterhub".into());
        config.spawner.term_timeout = std::time::Duration::from_millis(1500);
        let local = local_spawner_config(&config.spawner);
        assert!(local.create_system_users);
        assert_eq!(
            local.log_dir.as_deref(),
            Some(std::path::Path::new("/var/log/jupyterhub"))
        );
        assert_eq!(local.term_timeout, std::time::Duration::from_millis(1500));
    }
}
