//! The authenticator and spawner a configuration selects.
//!
//! Built in here: the dummy authenticator (any name; an optional shared password, for tests
//! and demos) and the shared-password authenticator (JupyterHub 5.3's, for workshops). The
//! local spawner is the `spawner-local` crate, set up from the `[spawner]` section; the batch
//! spawners (`slurm`, `batch`) are the `spawner-slurm` crate, set up from `[spawner]`,
//! `[spawner.slurm]` and `[spawner.batch]`. The PAM authenticator is the `auth-pam` crate, set
//! up from `[authenticator.pam]`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use auth_pam::{PamAuthenticator, PamConfig};
use hub_plugin::{AuthError, AuthModel, Authenticator, LoginForm, Spawner};
use spawner_local::{LocalProcessSpawner, LocalSpawnerConfig};
use spawner_slurm::{BatchConfig, BatchSpawner, Preset, SlurmRequest};
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

/// The server command with a bare `singleuser-auth-shim` replaced by the one in `hub_dir` (the
/// directory of the hub's executable, where it is installed with the hub), when it is there;
/// otherwise unchanged (a bare name is then looked up on the servers' `PATH`).
fn server_command(cmd: &[String], hub_dir: Option<&std::path::Path>) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut cmd = cmd.to_vec();
    if let (Some(program), Some(dir)) = (cmd.first_mut(), hub_dir)
        && program == crate::config::sections::DEFAULT_SERVER_CMD
    {
        let beside = dir.join(&*program);
        if beside
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        {
            *program = beside.display().to_string();
        }
    }
    cmd
}

/// The local spawner's settings from the `[spawner]` section.
fn local_spawner_config(section: &SpawnerSection) -> LocalSpawnerConfig {
    let exe = std::env::current_exe().ok();
    LocalSpawnerConfig {
        cmd: server_command(section.cmd.argv(), exe.as_deref().and_then(|e| e.parent())),
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

/// How long the batch spawner gives a job by default: the hub's start timeout less a tenth,
/// at most 10 s less, so the spawner's own message (and cancel) comes first.
fn batch_start_timeout(hub_start_timeout: Duration) -> Duration {
    hub_start_timeout.saturating_sub((hub_start_timeout / 10).min(Duration::from_secs(10)))
}

/// The batch spawner's settings: the Slurm preset (for `slurm`) or nothing (for `batch`), with
/// every command and pattern set in `[spawner.batch]` replacing the preset's.
fn batch_spawner_config(section: &SpawnerSection) -> BatchConfig {
    let mut config = match section.class {
        SpawnerClass::Slurm => {
            let s = &section.slurm;
            BatchConfig::slurm(&SlurmRequest {
                partition: s.partition.clone(),
                account: s.account.clone(),
                qos: s.qos.clone(),
                reservation: s.reservation.clone(),
                time: s.time.clone(),
                memory: s.memory.clone(),
                cpus: s.cpus.clone(),
                gpus: s.gpus.clone(),
                constraint: s.constraint.clone(),
                directives: s.directives.clone(),
                prologue: s.prologue.clone(),
                epilogue: s.epilogue.clone(),
                srun: s.srun.clone(),
                output: s.output.clone(),
            })
        }
        _ => BatchConfig::new(Preset::empty()),
    };
    let b = &section.batch;
    let p = &mut config.preset;
    let set_words = |target: &mut Vec<String>, value: &Option<Vec<String>>| {
        if let Some(words) = value {
            target.clone_from(words);
        }
    };
    set_words(&mut p.submit, &b.submit);
    set_words(&mut p.status, &b.status);
    set_words(&mut p.cancel, &b.cancel);
    set_words(&mut p.details, &b.details);
    let set_text = |target: &mut String, value: &Option<String>| {
        if let Some(text) = value {
            target.clone_from(text);
        }
    };
    set_text(&mut p.script, &b.script);
    set_text(&mut p.job_id_pattern, &b.job_id_pattern);
    set_text(&mut p.running_pattern, &b.running_pattern);
    set_text(&mut p.pending_pattern, &b.pending_pattern);
    set_text(&mut p.host_pattern, &b.host_pattern);
    if let Some(unknown) = &b.unknown_pattern {
        p.unknown_pattern = (!unknown.is_empty()).then(|| unknown.clone());
    }
    if let Some(words) = &b.cancel_by_name {
        p.cancel_by_name = (!words.is_empty()).then(|| words.clone());
    }
    for (name, value) in &b.variables {
        config
            .variables
            .insert(name.clone(), serde_json::Value::String(value.clone()));
    }
    config.options = b.options.clone();
    config.options_form = b.options_form.clone();
    config.cmd = section.cmd.argv().to_vec();
    config.args = section.args.clone();
    config.wrapper = b.wrapper.clone();
    config.ip = b.ip;
    config.port = section.port;
    config.environment = section.environment.clone();
    config.command_env_keep = b.command_env_keep.clone();
    config.start_timeout = b
        .start_timeout
        .unwrap_or_else(|| batch_start_timeout(section.start_timeout));
    config.status_interval = b.status_interval;
    config.stop_timeout = b.stop_timeout;
    config.command_timeout = b.command_timeout;
    config
}

/// The spawner `config` selects.
///
/// # Errors
/// When its settings cannot work (e.g. a batch spawner's pattern or template that does not
/// compile, or a command that is not set).
pub fn spawner(config: &HubConfig) -> Result<Arc<dyn Spawner>, PluginError> {
    match config.spawner.class {
        SpawnerClass::Local => Ok(Arc::new(LocalProcessSpawner::new(local_spawner_config(
            &config.spawner,
        )))),
        SpawnerClass::Slurm | SpawnerClass::Batch => {
            let settings = batch_spawner_config(&config.spawner);
            let spawner = BatchSpawner::new(settings).map_err(|e| {
                PluginError(format!(
                    "spawner.batch ({} spawner): {e}",
                    config.spawner.class.as_str()
                ))
            })?;
            Ok(Arc::new(spawner))
        }
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
    fn the_shim_is_found_beside_the_hub() {
        let dir = tempfile::tempdir().unwrap();
        let shim = vec![
            "singleuser-auth-shim".to_owned(),
            "--app".into(),
            "lab".into(),
        ];
        // Not there: left to the servers' PATH.
        assert_eq!(server_command(&shim, Some(dir.path())), shim);
        assert_eq!(server_command(&shim, None), shim);
        let path = dir.path().join("singleuser-auth-shim");
        std::fs::write(&path, "").unwrap();
        // Not executable: not taken.
        assert_eq!(server_command(&shim, Some(dir.path())), shim);
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            server_command(&shim, Some(dir.path())),
            [path.display().to_string(), "--app".into(), "lab".into()]
        );
        // Other commands, and paths, are never rewritten.
        let other = vec!["jupyterhub-singleuser".to_owned()];
        std::fs::write(dir.path().join("jupyterhub-singleuser"), "").unwrap();
        assert_eq!(server_command(&other, Some(dir.path())), other);
        let explicit = vec!["/opt/shim/singleuser-auth-shim".to_owned()];
        assert_eq!(server_command(&explicit, Some(dir.path())), explicit);
    }

    #[test]
    fn local_spawner_from_the_spawner_section() {
        let mut config = HubConfig::default();
        config.spawner.args = vec!["--debug".into()];
        config.spawner.port = 9999;
        config.spawner.notebook_dir = Some("~/work".into());
        assert_eq!(spawner(&config).unwrap().kind(), "local");
        let local = local_spawner_config(&config.spawner);
        assert!(
            local.cmd.len() == 1 && local.cmd[0].ends_with("singleuser-auth-shim"),
            "{:?}",
            local.cmd
        );
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
                Duration::from_secs(10),
                Duration::from_secs(5),
                Duration::from_secs(5)
            )
        );
        config.spawner.create_system_users = true;
        config.spawner.log_dir = Some("/var/log/jupyterhub".into());
        config.spawner.term_timeout = Duration::from_millis(1500);
        let local = local_spawner_config(&config.spawner);
        assert!(local.create_system_users);
        assert_eq!(
            local.log_dir.as_deref(),
            Some(std::path::Path::new("/var/log/jupyterhub"))
        );
        assert_eq!(local.term_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn slurm_spawner_from_the_spawner_sections() {
        let mut config = HubConfig::default();
        config.spawner.class = SpawnerClass::Slurm;
        config.spawner.start_timeout = Duration::from_secs(600);
        config.spawner.port = 0;
        config.spawner.slurm.partition = "gpu".into();
        config.spawner.slurm.directives = vec!["--exclusive".into()];
        config.spawner.batch.status = Some(vec!["squeue".into(), "{{ job_id }}".into()]);
        config.spawner.batch.cancel_by_name = Some(Vec::new());
        config
            .spawner
            .batch
            .variables
            .insert("cluster".into(), "c1".into());
        config
            .spawner
            .batch
            .options
            .insert("partition".into(), "gpu|debug".into());
        assert_eq!(spawner(&config).unwrap().kind(), "slurm");
        let batch = batch_spawner_config(&config.spawner);
        assert_eq!(batch.preset.submit, ["sbatch", "--parsable"]);
        assert_eq!(batch.preset.status, ["squeue", "{{ job_id }}"]);
        assert_eq!(batch.preset.cancel, ["scancel", "{{ job_id }}"]);
        assert_eq!(batch.preset.cancel_by_name, None);
        assert_eq!(batch.variables["partition"], "gpu");
        assert_eq!(
            batch.variables["directives"],
            serde_json::json!(["--exclusive"])
        );
        assert_eq!(batch.variables["cluster"], "c1");
        assert_eq!(batch.cmd, config.spawner.cmd.argv());
        assert_eq!(batch.wrapper, ["batchspawner-singleuser"]);
        assert_eq!(batch.ip.to_string(), "0.0.0.0");
        assert_eq!(batch.start_timeout, Duration::from_secs(590));
        assert_eq!(
            batch_start_timeout(Duration::from_secs(60)),
            Duration::from_secs(54)
        );

        // `batch` has no preset: without commands it cannot work, and says what is missing.
        config.spawner.class = SpawnerClass::Batch;
        let err = spawner(&config).unwrap_err().to_string();
        assert!(
            err.contains("spawner.batch (batch spawner): submit is not set"),
            "{err}"
        );
        // A bad pattern is named.
        config.spawner.class = SpawnerClass::Slurm;
        config.spawner.batch.running_pattern = Some("(".into());
        let err = spawner(&config).unwrap_err().to_string();
        assert!(err.contains("running_pattern"), "{err}");
    }
}
