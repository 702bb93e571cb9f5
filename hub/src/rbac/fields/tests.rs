//! Model key gating per caller scopes.

use serde_json::{Value, json};

use super::*;
use crate::rbac::roles::self_scopes;

fn set(scopes: &[&str]) -> ScopeSet {
    ScopeSet::parse_expanded(scopes).unwrap()
}

fn keys(items: &[&'static str]) -> BTreeSet<&'static str> {
    items.iter().copied().collect()
}

#[test]
fn the_cullers_scopes_show_what_was_observed() {
    // Observed with list:users, read:users:activity, read:servers, delete:servers: kind, name,
    // admin, user_info, last_activity and servers; no created, roles, groups or server.
    let culler = set(&[
        "delete:servers",
        "list:users",
        "read:servers",
        "read:users:activity",
        "read:users:name",
    ]);
    assert_eq!(
        user_model_keys(&culler, "alice", &NoGroups),
        keys(&[
            "admin",
            "kind",
            "last_activity",
            "name",
            "servers",
            "user_info"
        ])
    );
}

#[test]
fn user_keys_follow_filters() {
    let alice = self_scopes("alice");
    assert_eq!(
        user_model_keys(&alice, "alice", &NoGroups),
        keys(&[
            "admin",
            "created",
            "groups",
            "kind",
            "last_activity",
            "name",
            "pending",
            "roles",
            "server",
            "servers",
            "user_info",
        ])
    );
    assert!(user_model_keys(&alice, "bob", &NoGroups).is_empty());

    let admin_like = set(&["read:users", "admin:auth_state", "read:roles:users"]);
    assert!(user_model_keys(&admin_like, "bob", &NoGroups).contains("auth_state"));

    let staff = set(&["read:users:groups!group=staff"]);
    let in_staff = |user: &str, group: &str| user == "bob" && group == "staff";
    assert_eq!(
        user_model_keys(&staff, "bob", &in_staff),
        keys(&["groups", "kind", "name"])
    );
    assert!(user_model_keys(&staff, "carol", &in_staff).is_empty());
}

#[test]
fn group_and_service_keys() {
    assert_eq!(
        group_model_keys(&set(&["read:groups:name!group=staff"]), "staff"),
        keys(&["kind", "name"])
    );
    assert_eq!(
        group_model_keys(&set(&["read:groups", "read:roles:groups"]), "x"),
        keys(&["kind", "name", "properties", "roles", "users"])
    );
    assert!(group_model_keys(&set(&["read:groups!group=staff"]), "other").is_empty());

    assert_eq!(
        service_model_keys(&set(&["read:services:name"]), "culler"),
        keys(&["admin", "kind", "name"])
    );
    assert_eq!(
        service_model_keys(
            &set(&["read:services!service=culler", "read:roles:services"]),
            "culler"
        ),
        keys(&[
            "admin", "command", "display", "info", "kind", "name", "pid", "prefix", "roles", "url",
        ])
    );
}

#[test]
fn servers_and_state_need_their_own_scopes() {
    let s = set(&[
        "read:servers!server=alice/gpu",
        "admin:server_state!user=bob",
    ]);
    assert!(server_visible(&s, "alice", "gpu", &NoGroups));
    assert!(!server_visible(&s, "alice", "", &NoGroups));
    assert!(server_state_visible(&s, "bob", "", &NoGroups));
    assert!(!server_state_visible(&s, "alice", "gpu", &NoGroups));

    let visible = user_model_keys(&s, "alice", &NoGroups);
    // No key is unlocked for alice, but a visible server still brings `servers`.
    assert!(visible.is_empty());
    assert!(include_servers_key(&visible, 1));
    assert!(!include_servers_key(&visible, 0));
    assert!(include_servers_key(&keys(&["servers"]), 0));
}

#[test]
fn retain_keys_filters_a_model() {
    let mut model =
        json!({"kind": "user", "name": "alice", "admin": false, "auth_state": {"x": 1}})
            .as_object()
            .cloned()
            .unwrap();
    retain_keys(&mut model, &keys(&["kind", "name"]));
    assert_eq!(
        Value::Object(model),
        json!({"kind": "user", "name": "alice"})
    );
}
