//! Authenticator that checks usernames and passwords with PAM, JupyterHub's default.
//!
//! # How a login is checked
//!
//! 1. The username is refused before PAM sees it when it is empty, longer than
//!    [`MAX_USERNAME_BYTES`] or contains control characters; the password when it is empty,
//!    contains NUL or is longer than [`MAX_PASSWORD_BYTES`]. Those are answered like a wrong
//!    password.
//! 2. PAM runs on tokio's blocking pool, never on the async worker threads, and at most
//!    [`PamConfig::max_concurrent`] checks run at once: a flood of logins waits for a permit
//!    instead of taking every blocking thread (each permit is held until PAM returns, even if
//!    the login request is dropped meanwhile). Note that `pam_unix` sleeps about two seconds
//!    after a failed password while holding its permit, so a flood of wrong passwords slows
//!    every login down; this authenticator does not rate-limit by itself.
//! 3. `pam_authenticate` (with `PAM_DISALLOW_NULL_AUTHTOK`, so accounts without a password
//!    cannot log in), then, with [`PamConfig::check_account`], `pam_acct_mgmt` (locked,
//!    expired or otherwise unusable accounts are refused).
//! 4. Group rules, from the system's group database (`getgrouplist`): with
//!    [`PamConfig::allowed_groups`] non-empty, only their members and admins may log in;
//!    [`PamConfig::admin_groups`] decides the admin flag.
//! 5. With [`PamConfig::open_sessions`], a PAM session is opened and closed right away.
//!
//! A wrong password and an unknown user both give `Ok(None)`: the caller cannot tell them
//! apart (the log says which). PAM failing in any other way (service misconfigured, a module
//! that cannot be loaded, a directory service that is down) gives [`AuthError::Failed`], and
//! the detail is logged. Usernames are always logged escaped and bounded (CVE-2026-54338), and
//! the password is never logged nor shown by `Debug`.
//!
//! # Sessions
//!
//! JupyterHub's `open_sessions` is off by default because session lifetimes never matched what
//! PAM modules expect, and the same holds here: the session (with `pam_setcred`) is opened
//! after a successful check and closed before `authenticate` returns, in the hub's process, not
//! around the user's server. Modules whose effect is meant to last as long as the session
//! (mounting home directories, Kerberos tickets, `pam_systemd` user slices, resource limits)
//! undo it straight away; only one-shot effects such as `pam_mkhomedir` or login accounting
//! are useful. A session that cannot be opened is logged and does not refuse the login.
//!
//! PAM modules run inside the hub process with its privileges; `pam_unix` needs root (or
//! membership of the `shadow` group) to check other users' passwords.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use async_trait::async_trait;
use hub_plugin::{AuthError, AuthModel, Authenticator, LoginForm};
use nix::unistd::{Group, User, getgrouplist};
use pam_client2::{Context, ErrorCode, Flag};
use tokio::sync::Semaphore;

mod conversation;
mod redact;

use conversation::FormConversation;
use redact::Secret;
pub use redact::loggable;

/// Usernames longer than this (in bytes) are refused without calling PAM.
pub const MAX_USERNAME_BYTES: usize = 256;
/// Passwords longer than this (in bytes) are refused without calling PAM.
pub const MAX_PASSWORD_BYTES: usize = 8192;
/// How many PAM checks may run at once by default.
pub const DEFAULT_MAX_CONCURRENT: usize = 8;

/// Settings of the PAM authenticator (JupyterHub's `PAMAuthenticator.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamConfig {
    /// PAM service: the policy file under `/etc/pam.d/`. Default `login`.
    pub service: String,
    /// Open (and immediately close) a PAM session after a successful check. Default off; see
    /// the crate documentation for why the session cannot last.
    pub open_sessions: bool,
    /// Check the account with `pam_acct_mgmt` (locked, expired) after the password. Default on.
    pub check_account: bool,
    /// System groups whose members are admins. When non-empty, members get `admin: Some(true)`
    /// and everyone else `Some(false)` (unless listed in [`Self::admin_users`]), so removing
    /// someone from the group revokes admin at their next login.
    pub admin_groups: BTreeSet<String>,
    /// System groups whose members may log in. When non-empty, users in none of them are
    /// refused unless they are admins (by [`Self::admin_users`] or [`Self::admin_groups`]).
    pub allowed_groups: BTreeSet<String>,
    /// The hub's `admin_users`: always admins, also when `admin_groups` is set. Compared after
    /// lower-casing, like the hub's default normalisation.
    pub admin_users: BTreeSet<String>,
    /// How many PAM checks may run at once (at least 1). Default [`DEFAULT_MAX_CONCURRENT`].
    pub max_concurrent: usize,
}

impl Default for PamConfig {
    fn default() -> Self {
        Self {
            service: "login".to_owned(),
            open_sessions: false,
            check_account: true,
            admin_groups: BTreeSet::new(),
            allowed_groups: BTreeSet::new(),
            admin_users: BTreeSet::new(),
            max_concurrent: DEFAULT_MAX_CONCURRENT,
        }
    }
}

/// Settings the PAM authenticator cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum PamConfigError {
    /// The service name cannot name a PAM policy file.
    #[error(
        "PAM service {0} is not usable: it must be a non-empty file name under /etc/pam.d (no '/', no control characters)"
    )]
    BadService(String),
    /// `max_concurrent` is zero.
    #[error("PAM max_concurrent must be at least 1")]
    NoConcurrency,
}

/// Checks logins with PAM. Cheap to share: clone the `Arc` it is kept in.
pub struct PamAuthenticator {
    config: Arc<PamConfig>,
    permits: Arc<Semaphore>,
}

impl fmt::Debug for PamAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PamAuthenticator")
            .field("config", &self.config)
            .field("idle_permits", &self.permits.available_permits())
            .finish()
    }
}

impl PamAuthenticator {
    /// An authenticator with these settings. Warns (does not fail) when no policy file for the
    /// service exists, since PAM then silently uses its `other` policy.
    ///
    /// # Errors
    /// When the service name is unusable or `max_concurrent` is zero.
    pub fn new(config: PamConfig) -> Result<Self, PamConfigError> {
        let service = config.service.as_str();
        if service.is_empty()
            || service.len() > 255
            || service == "."
            || service == ".."
            || service.contains('/')
            || service.chars().any(char::is_control)
        {
            return Err(PamConfigError::BadService(loggable(service)));
        }
        if config.max_concurrent == 0 {
            return Err(PamConfigError::NoConcurrency);
        }
        let known = [
            "/etc/pam.d",
            "/usr/lib/pam.d",
            "/lib/pam.d",
            "/usr/share/pam.d",
        ]
        .iter()
        .any(|dir| Path::new(dir).join(service).is_file());
        if !known && !Path::new("/etc/pam.conf").is_file() {
            tracing::warn!(
                service = %loggable(service),
                "no PAM policy file found for this service; PAM will use its \"other\" policy"
            );
        }
        Ok(Self {
            permits: Arc::new(Semaphore::new(config.max_concurrent)),
            config: Arc::new(config),
        })
    }

    /// The settings in use.
    #[must_use]
    pub fn config(&self) -> &PamConfig {
        &self.config
    }
}

/// Why a username or password is refused before PAM is called.
fn refuse_before_pam(form: &LoginForm) -> Option<&'static str> {
    let name = form.username.as_str();
    if name.is_empty() {
        Some("empty username")
    } else if name.len() > MAX_USERNAME_BYTES {
        Some("username too long")
    } else if name.chars().any(char::is_control) {
        Some("control character in username")
    } else if form.password.is_empty() {
        Some("empty password")
    } else if form.password.len() > MAX_PASSWORD_BYTES {
        Some("password too long")
    } else if form.password.contains('\0') {
        Some("NUL in password")
    } else {
        None
    }
}

/// The outcome of a PAM check that ran to the end.
#[derive(Debug)]
enum Verdict {
    Accepted { admin: Option<bool> },
    Rejected(String),
}

/// PAM results that mean "these credentials do not let this user in" rather than "PAM is
/// broken". Unknown users are among them, so they look like wrong passwords.
fn is_denial(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::AUTH_ERR
            | ErrorCode::USER_UNKNOWN
            | ErrorCode::MAXTRIES
            | ErrorCode::PERM_DENIED
            | ErrorCode::ACCT_EXPIRED
            | ErrorCode::NEW_AUTHTOK_REQD
            | ErrorCode::AUTHTOK_EXPIRED
            | ErrorCode::CRED_EXPIRED
    )
}

fn describe(e: &pam_client2::Error) -> String {
    format!("{:?}: {}", e.code(), e.message().unwrap_or("no message"))
}

fn with_messages(what: String, conv: &FormConversation) -> String {
    let said = conv.messages();
    if said.is_empty() {
        what
    } else {
        format!("{what} (PAM said: {said})")
    }
}

/// Runs the whole PAM check. Blocking: call on the blocking pool only.
fn check(config: &PamConfig, username: &str, password: Secret) -> anyhow::Result<Verdict> {
    let service = &config.service;
    let conv = FormConversation::new(username, password);
    let mut ctx = Context::new(service, Some(username), conv).map_err(|e| {
        anyhow!(
            "PAM could not start service {}: {}",
            loggable(service),
            describe(&e)
        )
    })?;

    let authenticated = ctx.authenticate(Flag::DISALLOW_NULL_AUTHTOK);
    ctx.conversation_mut().forget_password();
    match authenticated {
        Ok(()) => {}
        Err(e) if is_denial(e.code()) => {
            let why = format!("authentication failed: {}", describe(&e));
            return Ok(Verdict::Rejected(with_messages(why, ctx.conversation())));
        }
        Err(e) => {
            return Err(anyhow!(
                "pam_authenticate with service {} failed: {}",
                loggable(service),
                with_messages(describe(&e), ctx.conversation())
            ));
        }
    }

    if config.check_account {
        match ctx.acct_mgmt(Flag::DISALLOW_NULL_AUTHTOK) {
            Ok(()) => {}
            Err(e) if is_denial(e.code()) => {
                let why = format!("account check failed: {}", describe(&e));
                return Ok(Verdict::Rejected(with_messages(why, ctx.conversation())));
            }
            Err(e) => {
                return Err(anyhow!(
                    "pam_acct_mgmt with service {} failed: {}",
                    loggable(service),
                    with_messages(describe(&e), ctx.conversation())
                ));
            }
        }
    }

    let admin = match group_rules(config, username)? {
        GroupRules::Allowed { admin } => admin,
        GroupRules::NotAllowed(why) => return Ok(Verdict::Rejected(why)),
    };

    if config.open_sessions {
        match ctx.open_session(Flag::NONE) {
            Ok(session) => {
                if let Err(e) = session.close(Flag::NONE) {
                    tracing::warn!(
                        username = %loggable(username),
                        "could not close PAM session: {}",
                        describe(&e.into_without_payload())
                    );
                }
            }
            Err(e) => tracing::warn!(
                username = %loggable(username),
                "could not open PAM session (login goes on): {}",
                describe(&e)
            ),
        }
    }
    Ok(Verdict::Accepted { admin })
}

enum GroupRules {
    Allowed { admin: Option<bool> },
    NotAllowed(String),
}

/// Applies `admin_users`, `admin_groups` and `allowed_groups`.
fn group_rules(config: &PamConfig, username: &str) -> anyhow::Result<GroupRules> {
    let lower = username.to_lowercase();
    let listed_admin = config.admin_users.iter().any(|n| n.to_lowercase() == lower);
    let groups = if config.admin_groups.is_empty() && config.allowed_groups.is_empty() {
        BTreeSet::new()
    } else {
        system_groups(username)?
    };
    let member = |wanted: &BTreeSet<String>| wanted.iter().any(|g| groups.contains(g));
    let admin = if listed_admin {
        Some(true)
    } else if config.admin_groups.is_empty() {
        None
    } else {
        Some(member(&config.admin_groups))
    };
    if !config.allowed_groups.is_empty() && admin != Some(true) && !member(&config.allowed_groups) {
        return Ok(GroupRules::NotAllowed(
            "not a member of any of allowed_groups".to_owned(),
        ));
    }
    Ok(GroupRules::Allowed { admin })
}

/// Names of the system groups `username` belongs to (primary and supplementary); empty when
/// the user has no entry in the user database. Lookup failures are errors: group rules must
/// not be skipped silently.
fn system_groups(username: &str) -> anyhow::Result<BTreeSet<String>> {
    let shown = loggable(username);
    let Some(user) =
        User::from_name(username).with_context(|| format!("looking up user {shown}"))?
    else {
        tracing::warn!(username = %shown, "authenticated by PAM but not in the user database: no groups");
        return Ok(BTreeSet::new());
    };
    let c_name = CString::new(username).context("username contains NUL")?;
    let gids = getgrouplist(&c_name, user.gid)
        .with_context(|| format!("listing the groups of {shown}"))?;
    let mut names = BTreeSet::new();
    for gid in gids {
        match Group::from_gid(gid).with_context(|| format!("looking up group {gid}"))? {
            Some(group) => {
                names.insert(group.name);
            }
            None => tracing::debug!(username = %shown, %gid, "group id without a name"),
        }
    }
    Ok(names)
}

#[async_trait]
impl Authenticator for PamAuthenticator {
    fn kind(&self) -> &str {
        "pam"
    }

    async fn authenticate(&self, form: &LoginForm) -> Result<Option<AuthModel>, AuthError> {
        let shown = loggable(&form.username);
        if let Some(why) = refuse_before_pam(form) {
            tracing::warn!(username = %shown, "login refused: {why}");
            return Ok(None);
        }
        // Wait for a permit here, on the async side, so waiting costs no thread. The permit
        // moves into the blocking task and is released only when PAM has returned.
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| AuthError::Failed(anyhow!("the PAM authenticator is shut down")))?;
        let config = Arc::clone(&self.config);
        let username = form.username.clone();
        let password = Secret::new(form.password.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            check(&config, &username, password)
        })
        .await;
        match outcome {
            Ok(Ok(Verdict::Accepted { admin })) => {
                tracing::info!(username = %shown, ?admin, "PAM login accepted");
                Ok(Some(AuthModel {
                    name: form.username.clone(),
                    admin,
                    ..AuthModel::default()
                }))
            }
            Ok(Ok(Verdict::Rejected(why))) => {
                tracing::warn!(username = %shown, "PAM login refused: {why}");
                Ok(None)
            }
            Ok(Err(e)) => {
                tracing::error!(username = %shown, "PAM is unavailable or misconfigured: {e:#}");
                Err(AuthError::Failed(e))
            }
            Err(e) => {
                tracing::error!(username = %shown, "PAM check did not finish: {e}");
                Err(AuthError::Failed(anyhow!("PAM check did not finish: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn form(user: &str, password: &str) -> LoginForm {
        LoginForm {
            username: user.into(),
            password: password.into(),
            ..LoginForm::default()
        }
    }

    #[test]
    fn names_refused_before_pam() {
        for bad in [
            String::new(),
            "a".repeat(MAX_USERNAME_BYTES + 1),
            "a\nb".into(),
            "a\0b".into(),
            "\u{1b}[31m".into(),
            "a\u{85}".into(),
        ] {
            assert!(refuse_before_pam(&form(&bad, "pw")).is_some(), "{bad:?}");
        }
        assert!(refuse_before_pam(&form(&"é".repeat(128), "pw")).is_none());
        assert!(refuse_before_pam(&form("alice", "a\0b")).is_some());
        assert!(refuse_before_pam(&form("alice", "")).is_some());
        assert!(refuse_before_pam(&form("alice", &"p".repeat(MAX_PASSWORD_BYTES + 1))).is_some());
        assert!(refuse_before_pam(&form("alice", "pw with spaces ")).is_none());
    }

    #[test]
    fn config_is_checked() {
        for bad in ["", ".", "..", "../etc/x", "a/b", "lo\ngin"] {
            let c = PamConfig {
                service: bad.into(),
                ..PamConfig::default()
            };
            assert!(
                matches!(PamAuthenticator::new(c), Err(PamConfigError::BadService(_))),
                "{bad:?}"
            );
        }
        let c = PamConfig {
            max_concurrent: 0,
            ..PamConfig::default()
        };
        assert!(matches!(
            PamAuthenticator::new(c),
            Err(PamConfigError::NoConcurrency)
        ));
        let a = PamAuthenticator::new(PamConfig::default()).unwrap();
        assert_eq!(a.kind(), "pam");
        assert_eq!(a.config().service, "login");
        assert!(a.config().check_account && !a.config().open_sessions);
    }

    #[test]
    fn admin_and_allowed_rules_without_groups() {
        let mut c = PamConfig::default();
        let allowed = |c: &PamConfig, n: &str| match group_rules(c, n).unwrap() {
            GroupRules::Allowed { admin } => Some(admin),
            GroupRules::NotAllowed(_) => None,
        };
        assert_eq!(allowed(&c, "x"), Some(None));
        c.admin_users.insert("Alice".into());
        assert_eq!(allowed(&c, "ALICE"), Some(Some(true)));
        assert_eq!(allowed(&c, "bob"), Some(None));
    }

    #[tokio::test]
    async fn refused_names_do_not_need_pam() {
        // A service that does not exist: were PAM called, the answer could differ.
        let a = PamAuthenticator::new(PamConfig {
            service: "jhrs-no-such-service".into(),
            ..PamConfig::default()
        })
        .unwrap();
        let huge = "x".repeat(1 << 20);
        assert!(a.authenticate(&form(&huge, "pw")).await.unwrap().is_none());
        assert!(a.authenticate(&form("a\tb", "pw")).await.unwrap().is_none());
        assert_eq!(a.permits.available_permits(), DEFAULT_MAX_CONCURRENT);
    }
}
