//! Which keys of a user, group or service model a caller may see. The hub builds the full model,
//! then keeps the keys unlocked by any scope the caller holds *for that resource*.
//!
//! Mirrors `apihandlers/base.py` (`user_model`, `group_model`, `service_model`, `server_model`
//! and `_filter_model`).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::rbac::scope_set::{GroupMembership, NoGroups, ScopeSet, Target};

/// Scope → user model keys it unlocks.
pub const USER_MODEL_ACCESS: &[(&str, &[&str])] = &[
    (
        "read:users",
        &[
            "kind",
            "name",
            "user_info",
            "admin",
            "roles",
            "groups",
            "server",
            "pending",
            "created",
            "last_activity",
        ],
    ),
    ("read:users:name", &["kind", "name", "user_info", "admin"]),
    ("read:users:groups", &["kind", "name", "groups"]),
    ("read:users:activity", &["kind", "name", "last_activity"]),
    ("read:servers", &["kind", "name", "servers"]),
    ("read:roles:users", &["kind", "name", "roles", "admin"]),
    ("admin:auth_state", &["kind", "name", "auth_state"]),
];

/// Scope → group model keys it unlocks.
pub const GROUP_MODEL_ACCESS: &[(&str, &[&str])] = &[
    ("read:groups", &["kind", "name", "properties", "users"]),
    ("read:groups:name", &["kind", "name"]),
    ("read:roles:groups", &["kind", "name", "roles"]),
];

/// Scope → service model keys it unlocks.
pub const SERVICE_MODEL_ACCESS: &[(&str, &[&str])] = &[
    (
        "read:services",
        &[
            "kind", "name", "admin", "url", "prefix", "command", "pid", "info", "display",
        ],
    ),
    ("read:services:name", &["kind", "name", "admin"]),
    ("read:roles:services", &["kind", "name", "roles", "admin"]),
];

fn visible_keys<M: GroupMembership + ?Sized>(
    access: &[(&str, &'static [&'static str])],
    scopes: &ScopeSet,
    target: &Target<'_>,
    membership: &M,
) -> BTreeSet<&'static str> {
    access
        .iter()
        .filter(|(scope, _)| scopes.allows(scope, target, membership))
        .flat_map(|(_, keys)| keys.iter().copied())
        .collect()
}

/// The user model keys visible to `scopes` for `user`. Empty means the user is invisible (in a
/// list, leave it out). `auth_state` appearing here still needs the handler to fill it (only
/// single-user GET and PATCH do).
pub fn user_model_keys<M: GroupMembership + ?Sized>(
    scopes: &ScopeSet,
    user: &str,
    membership: &M,
) -> BTreeSet<&'static str> {
    visible_keys(USER_MODEL_ACCESS, scopes, &Target::User(user), membership)
}

/// The group model keys visible to `scopes` for `group`.
pub fn group_model_keys(scopes: &ScopeSet, group: &str) -> BTreeSet<&'static str> {
    // Group filters match groups by name only; no membership lookup is needed.
    visible_keys(GROUP_MODEL_ACCESS, scopes, &Target::Group(group), &NoGroups)
}

/// The service model keys visible to `scopes` for `service`.
pub fn service_model_keys(scopes: &ScopeSet, service: &str) -> BTreeSet<&'static str> {
    visible_keys(
        SERVICE_MODEL_ACCESS,
        scopes,
        &Target::Service(service),
        &NoGroups,
    )
}

/// Whether a server appears in the user model's `servers` (needs `read:servers` for it).
pub fn server_visible<M: GroupMembership + ?Sized>(
    scopes: &ScopeSet,
    user: &str,
    server: &str,
    membership: &M,
) -> bool {
    scopes.allows("read:servers", &Target::Server { user, server }, membership)
}

/// Whether a server model carries `state` (needs `admin:server_state` for that server).
pub fn server_state_visible<M: GroupMembership + ?Sized>(
    scopes: &ScopeSet,
    user: &str,
    server: &str,
    membership: &M,
) -> bool {
    scopes.allows(
        "admin:server_state",
        &Target::Server { user, server },
        membership,
    )
}

/// Whether the user model gets a `servers` key: when `servers` is among the visible keys (then
/// possibly `{}`), or when at least one server survived [`server_visible`].
pub fn include_servers_key(keys: &BTreeSet<&str>, visible_servers: usize) -> bool {
    keys.contains("servers") || visible_servers > 0
}

/// Drops every key of `model` not in `keys`.
pub fn retain_keys(model: &mut Map<String, Value>, keys: &BTreeSet<&str>) {
    model.retain(|key, _| keys.contains(key.as_str()));
}

#[cfg(test)]
mod tests;
