//! Who may log in: the authenticator's answer combined with the hub's rules (JupyterHub 5's
//! `check_allowed` / `check_blocked_users` with their defaults), and what a login changes in the
//! database (the user is created; admin flag and groups follow the authenticator).
//!
//! Order: authenticate → map (`username_map`) → normalise → validate → blocked (always wins,
//! even over `allow_all`) → allowed (`allow_all`, `allowed_users`, `admin_users`, existing
//! users when `allow_existing_users`, or the PAM group rules the authenticator already
//! applied). Rejected names are logged bounded and escaped (CVE-2026-54338).

use std::collections::BTreeSet;

use hub_plugin::{AuthError, AuthModel, LoginForm};

use crate::config::AuthenticatorClass;
use crate::db::DbError;
use crate::db::models::{groups, spawners, users};
use crate::identity::tokens;
use crate::state::AppState;

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong credentials or not allowed: the visitor sees only this generic message.
    #[error("Invalid username or password")]
    Invalid,
    /// The authenticator refused with a message meant for the visitor.
    #[error("{0}")]
    Refused(String),
    /// The authenticator or the database failed (logged in full; the visitor sees a generic
    /// message).
    #[error("login failed: {0}")]
    Failed(String),
}

/// The authenticator's decision, after the hub's rules: a normalised name and admin flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Normalised, validated name.
    pub name: String,
    /// `Some` when config or the authenticator decides the admin flag.
    pub admin: Option<bool>,
    /// Groups to make the user's, when `manage_groups` is on and the authenticator gave some.
    pub groups: Option<Vec<String>>,
}

/// Runs the authenticator on `form` and applies the hub's rules, without changing anything.
///
/// # Errors
/// [`LoginError`] for every refusal.
pub async fn authenticate(state: &AppState, form: &LoginForm) -> Result<Accepted, LoginError> {
    let model = match state.authenticator.authenticate(form).await {
        Ok(Some(model)) => model,
        Ok(None) => {
            tracing::warn!("failed login for {}", auth_pam::loggable(&form.username));
            return Err(LoginError::Invalid);
        }
        Err(AuthError::Refused(message)) => {
            tracing::warn!(
                "login refused for {}: {message}",
                auth_pam::loggable(&form.username)
            );
            return Err(LoginError::Refused(message));
        }
        Err(AuthError::Failed(e)) => {
            tracing::error!(
                "authenticator failed for {}: {e:#}",
                auth_pam::loggable(&form.username)
            );
            return Err(LoginError::Failed(e.to_string()));
        }
    };
    check_allowed(state, model).await
}

/// The hub's rules applied to an authenticator's answer.
///
/// # Errors
/// [`LoginError::Invalid`] when the name is invalid, blocked or not allowed.
pub async fn check_allowed(state: &AppState, model: AuthModel) -> Result<Accepted, LoginError> {
    let authenticator = &state.authenticator;
    let settings = &state.config.authenticator;
    let mapped = settings
        .username_map
        .get(&model.name)
        .cloned()
        .unwrap_or(model.name);
    let name = authenticator.normalize_username(&mapped);
    if !authenticator.validate_username(&name) {
        tracing::warn!(
            "refused login: invalid username {}",
            auth_pam::loggable(&name)
        );
        return Err(LoginError::Invalid);
    }
    let normalized = |set: &BTreeSet<String>| {
        set.iter()
            .any(|n| authenticator.normalize_username(n) == name)
    };
    if crate::access::is_blocked(state, &name) {
        tracing::warn!("refused login: {} is blocked", auth_pam::loggable(&name));
        return Err(LoginError::Invalid);
    }
    let is_admin_user = normalized(&settings.admin_users);
    let by_config = settings.allows_all()
        || normalized(&settings.allowed_users)
        || is_admin_user
        // PAM already refused anyone outside `allowed_groups`.
        || (settings.class == AuthenticatorClass::Pam && !settings.pam.allowed_groups.is_empty());
    if !by_config {
        let exists = if settings.allows_existing_users() {
            let lookup = name.clone();
            state
                .db
                .run(move |conn| users::find_by_name(conn, &lookup))
                .await
                .map_err(|e| LoginError::Failed(e.to_string()))?
                .is_some()
        } else {
            false
        };
        if !exists {
            tracing::warn!(
                "refused login: {} is not allowed",
                auth_pam::loggable(&name)
            );
            return Err(LoginError::Invalid);
        }
    }
    let admin = if is_admin_user {
        Some(true)
    } else {
        model.admin
    };
    let groups = model.groups.filter(|_| settings.manage_groups);
    Ok(Accepted {
        name,
        admin,
        groups,
    })
}

/// Records an accepted login: creates the user (with a stopped default server) if new, and
/// applies the admin flag and managed groups. Returns the user as stored.
///
/// # Errors
/// When the database fails.
pub async fn record(state: &AppState, accepted: Accepted) -> Result<users::User, DbError> {
    let user = state
        .db
        .run(move |conn| {
            crate::db::write_transaction(conn, |conn| {
                let user = match users::find_by_name(conn, &accepted.name)? {
                    Some(user) => user,
                    None => {
                        let cookie_id = tokens::new_session_id();
                        let user = users::insert(
                            conn,
                            &users::NewUser {
                                name: &accepted.name,
                                admin: accepted.admin.unwrap_or(false),
                                cookie_id: &cookie_id,
                            },
                        )?;
                        spawners::find_or_insert(conn, user.id, "")?;
                        user
                    }
                };
                if let Some(admin) = accepted.admin.filter(|a| *a != user.admin) {
                    users::set_admin(conn, user.id, admin)?;
                }
                if let Some(names) = &accepted.groups {
                    let mut ids = Vec::with_capacity(names.len());
                    for name in names {
                        let group = match groups::find_by_name(conn, name)? {
                            Some(group) => group,
                            None => groups::insert(conn, name, &serde_json::Map::new())?,
                        };
                        ids.push(group.id);
                    }
                    groups::set_user_groups(conn, user.id, &ids)?;
                }
                users::find_by_id(conn, user.id)?.ok_or(diesel::result::Error::NotFound)
            })
        })
        .await?;
    state.identities.invalidate();
    Ok(user)
}
