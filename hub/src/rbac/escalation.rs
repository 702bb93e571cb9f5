//! Checks that stop a caller from granting more than they hold. All refusals are 403.
//!
//! - CVE-2024-41942 (GHSA-9x4q-3gxw-849f): holding `admin:users`, filtered or not, is not being
//!   an admin. Only real admins may set `admin: true` (POST `/users`, POST `/users/{name}`,
//!   PATCH `/users/{name}`) or modify an existing admin ([`check_user_create`],
//!   [`check_user_update`]; mirrors `apihandlers/users.py`).
//! - GHSA-69wv-m5fw-2fhp: creating users or groups needs the *unfiltered* `admin:users` /
//!   `admin:groups`. [`ScopeSet::check`](crate::rbac::ScopeSet::check) with
//!   [`Target::None`](crate::rbac::Target::None) already refuses filtered scopes; handlers must
//!   not use post-filtering for these endpoints.
//! - Roles and group membership: a non-admin may only hand out (through a role, or by adding a
//!   user to a group that carries roles) scopes they hold themselves for that user
//!   ([`check_grant_within_held`]). JupyterHub lets `groups` holders add members to any group on
//!   purpose; this hub refuses when the group's roles would grant the new member more than the
//!   caller holds.
//!
//! "Admin" means the caller's `admin` flag (for a token: its owner's), as in JupyterHub.

use crate::rbac::roles::RoleTable;
use crate::rbac::scope_set::{GroupMembership, ScopeSet};
use crate::rbac::scopes::{Owner, ScopeError, ScopeRegistry};

/// JupyterHub's message for a non-admin setting `admin: true`.
pub const GRANT_ADMIN_MESSAGE: &str = "Only admins can grant admin permissions";

/// JupyterHub's message for a non-admin changing an admin user.
pub const MODIFY_ADMIN_MESSAGE: &str = "Only admins can modify other admins";

/// Why a grant was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscalationError {
    /// A non-admin tried to make someone an admin.
    #[error("Only admins can grant admin permissions")]
    GrantAdmin,
    /// A non-admin tried to change an admin user.
    #[error("Only admins can modify other admins")]
    ModifyAdmin,
    /// The grant would give scopes the caller does not hold.
    #[error("Not granting scopes {} beyond those held by the requester", .scopes.join(", "))]
    ExceedsHeld {
        /// The scopes the caller lacks, sorted.
        scopes: Vec<String>,
    },
    /// A role to grant lists an unknown scope.
    #[error(transparent)]
    Scope(#[from] ScopeError),
}

impl EscalationError {
    /// The HTTP status: 403, except 500 for a role with an unknown scope (a configuration bug).
    pub fn status(&self) -> u16 {
        match self {
            EscalationError::Scope(_) => 500,
            _ => 403,
        }
    }
}

/// Creating users: only admins may create them as admins.
pub fn check_user_create(caller_is_admin: bool, grants_admin: bool) -> Result<(), EscalationError> {
    if grants_admin && !caller_is_admin {
        return Err(EscalationError::GrantAdmin);
    }
    Ok(())
}

/// Updating a user: a non-admin may neither touch an admin nor set `admin: true`. The admin check
/// comes first, as in JupyterHub.
pub fn check_user_update(
    caller_is_admin: bool,
    target_is_admin: bool,
    grants_admin: bool,
) -> Result<(), EscalationError> {
    if caller_is_admin {
        return Ok(());
    }
    if target_is_admin {
        return Err(EscalationError::ModifyAdmin);
    }
    check_user_create(caller_is_admin, grants_admin)
}

/// A non-admin may only grant scopes they hold: every scope of `granted` must survive
/// intersection with `caller`. Admins may grant anything.
pub fn check_grant_within_held<M: GroupMembership + ?Sized>(
    caller_is_admin: bool,
    caller: &ScopeSet,
    granted: &ScopeSet,
    membership: &M,
) -> Result<(), EscalationError> {
    if caller_is_admin {
        return Ok(());
    }
    let excess = granted.difference(&granted.intersection(caller, membership));
    if excess.is_empty() {
        Ok(())
    } else {
        Err(EscalationError::ExceedsHeld {
            scopes: excess.to_strings(),
        })
    }
}

/// Granting roles to `target` (directly, or by adding a user to a group holding `role_names`):
/// the roles' scopes, expanded for the target, must be within what a non-admin caller holds.
/// Granting the `admin` role is granting admin and needs an admin caller.
pub fn check_role_grant<'a, I, M>(
    registry: &ScopeRegistry,
    roles: &RoleTable,
    caller_is_admin: bool,
    caller: &ScopeSet,
    role_names: I,
    target: Owner<'_>,
    membership: &M,
) -> Result<(), EscalationError>
where
    I: IntoIterator<Item = &'a str>,
    M: GroupMembership + ?Sized,
{
    if caller_is_admin {
        return Ok(());
    }
    let names: Vec<&str> = role_names.into_iter().collect();
    if names.contains(&"admin") {
        return Err(EscalationError::GrantAdmin);
    }
    let granted = roles.expand_for(registry, names, target)?;
    check_grant_within_held(caller_is_admin, caller, &granted, membership)
}

#[cfg(test)]
mod tests;
