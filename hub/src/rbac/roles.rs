//! Roles: named bundles of raw scopes. The four default roles, the `self` metascope, and roles
//! from configuration (`load_roles`, `extra_user_scopes`), validated.
//!
//! Mirrors `roles.py` (`get_default_roles`, `_validate_role_name`, `create_role`) and the role
//! loading in `app.py` (`init_role_creation`). Assigning roles to users, groups and services is
//! database work and happens elsewhere; this module says what a role grants.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::rbac::scope_set::ScopeSet;
use crate::rbac::scopes::{ExpandContext, Filter, Owner, ScopeError, ScopeRegistry};

/// The 15 scopes `self` expands to for a user, each filtered `!user=<name>`. This is the
/// expansion of `read:users`, `users:shares`, `read:shares`, `users:activity`, `servers`,
/// `tokens` and `access:servers` (JupyterHub's `_expand_self_scope`).
pub const SELF_SCOPES: [&str; 15] = [
    "read:users",
    "read:users:name",
    "read:users:groups",
    "read:users:activity",
    "users:activity",
    "servers",
    "read:servers",
    "start:servers",
    "delete:servers",
    "tokens",
    "read:tokens",
    "access:servers",
    "users:shares",
    "read:users:shares",
    "read:shares",
];

/// Scopes of the default `admin` role.
pub const ADMIN_ROLE_SCOPES: [&str; 16] = [
    "admin-ui",
    "admin:users",
    "admin:servers",
    "admin:services",
    "tokens",
    "admin:groups",
    "list:services",
    "read:services",
    "read:hub",
    "proxy",
    "shutdown",
    "access:services",
    "access:servers",
    "read:roles",
    "read:metrics",
    "shares",
];

/// Scopes of the default `server` role, given to a server's own API token.
pub const SERVER_ROLE_SCOPES: [&str; 2] = ["users:activity!user", "access:servers!server"];

/// The expanded scopes `self` stands for, for user `user`.
pub fn self_scopes(user: &str) -> ScopeSet {
    let mut set = ScopeSet::new();
    for name in SELF_SCOPES {
        set.insert(name, Some(Filter::User(user.to_owned())));
    }
    set
}

/// A role: a name, a description and raw scopes, plus the members named in configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The role name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Raw scopes (may contain `self`, `inherit` and bare filters).
    pub scopes: Vec<String>,
    /// Users named in configuration. `None` means "not specified": for the `user` role the
    /// existing membership is kept; for other roles it means nobody.
    pub users: Option<Vec<String>>,
    /// Groups named in configuration; `None` as for `users`.
    pub groups: Option<Vec<String>>,
    /// Services named in configuration; `None` as for `users`.
    pub services: Option<Vec<String>>,
}

impl Role {
    fn new(name: &str, description: &str, scopes: &[&str]) -> Self {
        Role {
            name: name.to_owned(),
            description: Some(description.to_owned()),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            users: None,
            groups: None,
            services: None,
        }
    }
}

/// The default roles: `user` (`self` plus `extra_user_scopes`), `admin`, `server` and `token`.
pub fn default_roles<S: AsRef<str>>(extra_user_scopes: &[S]) -> Vec<Role> {
    let mut user = Role::new("user", "Standard user privileges", &["self"]);
    for extra in extra_user_scopes {
        let extra = extra.as_ref();
        if !user.scopes.iter().any(|s| s == extra) {
            user.scopes.push(extra.to_owned());
        }
    }
    vec![
        user,
        Role::new(
            "admin",
            "Elevated privileges (can do anything)",
            &ADMIN_ROLE_SCOPES,
        ),
        Role::new("server", "Post activity only", &SERVER_ROLE_SCOPES),
        Role::new(
            "token",
            "Token with same permissions as its owner",
            &["inherit"],
        ),
    ]
}

/// The default roles a user gets: `user`, plus `admin` for admins.
pub fn default_user_role_names(admin: bool) -> Vec<&'static str> {
    if admin {
        vec!["user", "admin"]
    } else {
        vec!["user"]
    }
}

/// The default roles a service gets: `admin` for admin services, otherwise none.
pub fn default_service_role_names(admin: bool) -> Vec<&'static str> {
    if admin { vec!["admin"] } else { Vec::new() }
}

/// A role as written in configuration (`load_roles`). Only `name` is required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// The role name; see [`validate_role_name`].
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Raw scopes.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Users to hold the role.
    #[serde(default)]
    pub users: Option<Vec<String>>,
    /// Groups to hold the role.
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// Services to hold the role.
    #[serde(default)]
    pub services: Option<Vec<String>>,
}

/// Why role configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// The name does not match `^[a-z][a-z0-9\-_~\.]{1,253}[a-z0-9]$`.
    #[error(
        "Invalid role name: '{name}'. Role names must be 3-255 characters, contain only lowercase \
         ascii letters, numbers and the URL-safe characters '-.~_', start with a letter and end \
         with a letter or number"
    )]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// The `admin` role's description or scopes were changed.
    #[error("Cannot override admin role admin.{key} = {value}")]
    AdminOverride {
        /// `description` or `scopes`.
        key: &'static str,
        /// The configured value, debug-formatted.
        value: String,
    },
    /// The same role name appears twice in `load_roles`.
    #[error("Role {name} multiply defined. Please check the `load_roles` configuration")]
    Duplicate {
        /// The repeated name.
        name: String,
    },
    /// A role lists a scope that does not exist or is malformed.
    #[error(transparent)]
    Scope(#[from] ScopeError),
}

/// Checks a role name against JupyterHub's rule: 3 to 255 characters of lowercase ASCII letters,
/// digits and `-_~.`, starting with a letter and ending with a letter or digit.
pub fn validate_role_name(name: &str) -> Result<(), RoleError> {
    let bytes = name.as_bytes();
    let lower_or_digit = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let valid = (3..=255).contains(&bytes.len())
        && bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes.last().is_some_and(lower_or_digit)
        && bytes
            .iter()
            .all(|b| lower_or_digit(b) || matches!(b, b'-' | b'_' | b'~' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(RoleError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// Every role the hub knows: the defaults, overridden or extended by configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleTable {
    roles: BTreeMap<String, Role>,
    warnings: Vec<String>,
}

impl RoleTable {
    /// Builds the table from `load_roles` and `extra_user_scopes`, as JupyterHub does at
    /// startup:
    /// - a spec naming a default role overrides only the keys it sets;
    /// - the `admin` role's description and scopes cannot be changed;
    /// - overriding the `user` role's scopes discards `extra_user_scopes` (with a warning);
    /// - every scope must exist in `registry` and names must be valid and unique.
    ///
    /// Things JupyterHub merely logs are collected in [`warnings`](Self::warnings).
    pub fn load<S: AsRef<str>>(
        registry: &ScopeRegistry,
        specs: &[RoleSpec],
        extra_user_scopes: &[S],
    ) -> Result<Self, RoleError> {
        let mut table = RoleTable::default();
        let mut defaults: BTreeMap<String, Role> = default_roles(extra_user_scopes)
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        let default_admin = defaults.get("admin").cloned();

        let mut seen = BTreeSet::new();
        let mut configured = Vec::new();
        for spec in specs {
            validate_role_name(&spec.name)?;
            if !seen.insert(spec.name.as_str()) {
                return Err(RoleError::Duplicate {
                    name: spec.name.clone(),
                });
            }
            if spec.name == "admin"
                && let Some(admin) = &default_admin
            {
                if let Some(d) = &spec.description
                    && admin.description.as_ref() != Some(d)
                {
                    return Err(RoleError::AdminOverride {
                        key: "description",
                        value: format!("{d:?}"),
                    });
                }
                if let Some(s) = &spec.scopes
                    && *s != admin.scopes
                {
                    return Err(RoleError::AdminOverride {
                        key: "scopes",
                        value: format!("{s:?}"),
                    });
                }
            }
            let role = match defaults.remove(&spec.name) {
                Some(default) => {
                    if spec.name == "user"
                        && let Some(scopes) = &spec.scopes
                    {
                        let extras: Vec<&str> =
                            extra_user_scopes.iter().map(AsRef::as_ref).collect();
                        if !extras.is_empty() {
                            table.warnings.push(format!(
                                "user role overridden with scopes={scopes:?}, \
                                 extra_user_scopes={extras:?} will be ignored."
                            ));
                        }
                        if !scopes.iter().any(|s| s == "self") {
                            table.warnings.push(format!(
                                "user role overridden with scopes={scopes:?}, which does not \
                                 include 'self', users may lack necessary permissions. Consider \
                                 setting extra_user_scopes to add user permissions."
                            ));
                        }
                    }
                    merge(default, spec)
                }
                None => Role {
                    name: spec.name.clone(),
                    description: spec.description.clone(),
                    scopes: spec.scopes.clone().unwrap_or_default(),
                    users: spec.users.clone(),
                    groups: spec.groups.clone(),
                    services: spec.services.clone(),
                },
            };
            configured.push(role);
        }

        for role in defaults.into_values().chain(configured) {
            let who_for = format!("role {}", role.name);
            registry.check_scopes_exist(&role.scopes, Some(&who_for))?;
            if role.scopes.is_empty() {
                table
                    .warnings
                    .push(format!("Role {} will have no scopes", role.name));
            }
            table.roles.insert(role.name.clone(), role);
        }
        Ok(table)
    }

    /// A role by name.
    pub fn get(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Every role, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Role> {
        self.roles.values()
    }

    /// What JupyterHub would log while loading (nothing here is fatal).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The union of the raw scopes of the named roles. Unknown names contribute nothing.
    pub fn raw_scopes<'a, I>(&self, role_names: I) -> BTreeSet<String>
    where
        I: IntoIterator<Item = &'a str>,
    {
        role_names
            .into_iter()
            .filter_map(|name| self.roles.get(name))
            .flat_map(|role| role.scopes.iter().cloned())
            .collect()
    }

    /// The expanded scopes the named roles give `owner` (a user's own roles plus those of their
    /// groups; shares are added by the caller).
    pub fn expand_for<'a, I>(
        &self,
        registry: &ScopeRegistry,
        role_names: I,
        owner: Owner<'_>,
    ) -> Result<ScopeSet, ScopeError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        registry.expand(self.raw_scopes(role_names), &ExpandContext::owner(owner))
    }
}

fn merge(default: Role, spec: &RoleSpec) -> Role {
    Role {
        name: default.name,
        description: spec.description.clone().or(default.description),
        scopes: spec.scopes.clone().unwrap_or(default.scopes),
        users: spec.users.clone().or(default.users),
        groups: spec.groups.clone().or(default.groups),
        services: spec.services.clone().or(default.services),
    }
}

#[cfg(test)]
mod tests;
