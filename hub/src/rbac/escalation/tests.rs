//! The admin-escalation advisories as pure checks.

use super::*;
use crate::rbac::roles::RoleSpec;
use crate::rbac::scope_set::{Access, NoGroups, Target};
use crate::rbac::scopes::ExpandContext;

fn in_staff(user: &str, group: &str) -> bool {
    group == "staff" && matches!(user, "sam" | "mallory")
}

/// A non-admin "user manager" for the staff group, as a filtered role would grant it.
fn staff_manager(reg: &ScopeRegistry) -> ScopeSet {
    reg.expand(
        [
            "admin:users!group=staff",
            "admin:groups!group=staff",
            "self",
        ],
        &ExpandContext::owner(Owner::User("mallory")),
    )
    .unwrap()
}

fn roles(reg: &ScopeRegistry) -> RoleTable {
    let role = |name: &str, scopes: &[&str]| RoleSpec {
        name: name.to_owned(),
        scopes: Some(scopes.iter().map(|s| (*s).to_owned()).collect()),
        ..RoleSpec::default()
    };
    RoleTable::load(
        reg,
        &[
            role("operator", &["admin:servers"]),
            role("activity-reporter", &["users:activity!user"]),
        ],
        &[] as &[&str],
    )
    .unwrap()
}

// === CVE-2024-41942: admin:users is not admin ===

#[test]
fn holding_admin_users_does_not_allow_granting_admin() {
    let reg = ScopeRegistry::new();
    // Even the unfiltered scope: the check is on the admin flag, not on scopes.
    let manager = reg
        .expand(
            ["admin:users"],
            &ExpandContext::owner(Owner::User("mallory")),
        )
        .unwrap();
    assert!(
        manager
            .check(&["admin:users"], &Target::None, &NoGroups)
            .is_allowed()
    );
    assert_eq!(
        check_user_create(false, true),
        Err(EscalationError::GrantAdmin)
    );
    // PATCH /users/mallory {"admin": true} on herself.
    assert_eq!(
        check_user_update(false, false, true),
        Err(EscalationError::GrantAdmin)
    );
    assert_eq!(
        check_user_update(false, false, true)
            .unwrap_err()
            .to_string(),
        GRANT_ADMIN_MESSAGE
    );
    // Any change to an existing admin.
    assert_eq!(
        check_user_update(false, true, false),
        Err(EscalationError::ModifyAdmin)
    );
    assert_eq!(
        EscalationError::ModifyAdmin.to_string(),
        MODIFY_ADMIN_MESSAGE
    );
    assert_eq!(EscalationError::ModifyAdmin.status(), 403);

    // What non-admins may still do, and what admins may do.
    assert_eq!(check_user_create(false, false), Ok(()));
    assert_eq!(check_user_update(false, false, false), Ok(()));
    assert_eq!(check_user_create(true, true), Ok(()));
    assert_eq!(check_user_update(true, true, true), Ok(()));
}

// === GHSA-69wv-m5fw-2fhp: filtered admin scopes do not create resources ===

#[test]
fn filtered_admin_scopes_cannot_create_users_or_groups() {
    let reg = ScopeRegistry::new();
    let manager = staff_manager(&reg);
    let membership = in_staff;
    for scope in ["admin:users", "admin:groups"] {
        let access = manager.check(&[scope], &Target::None, &membership);
        assert_eq!(access.status(), 403, "{scope}");
        assert_eq!(
            access.message().unwrap(),
            format!("Action is not authorized with current scopes; requires any of [{scope}]")
        );
    }
    // Inside the filter, acting on existing resources works; outside it is a 404.
    assert_eq!(
        manager.check(&["admin:users"], &Target::User("sam"), &membership),
        Access::Allowed
    );
    assert_eq!(
        manager.check(&["admin:users"], &Target::User("root"), &membership),
        Access::NotFound
    );
    assert_eq!(
        manager.check(&["admin:groups"], &Target::Group("staff"), &membership),
        Access::Allowed
    );
    assert_eq!(
        manager.check(&["admin:groups"], &Target::Group("admins"), &membership),
        Access::NotFound
    );
}

// === roles and group membership beyond what the caller holds ===

#[test]
fn filtered_user_admins_cannot_grant_the_admin_role_or_roles_beyond_their_scopes() {
    let reg = ScopeRegistry::new();
    let table = roles(&reg);
    let manager = staff_manager(&reg);
    let grant = |names: &[&str], target: &str| {
        check_role_grant(
            &reg,
            &table,
            false,
            &manager,
            names.iter().copied(),
            Owner::User(target),
            &in_staff,
        )
    };
    assert_eq!(grant(&["admin"], "sam"), Err(EscalationError::GrantAdmin));
    assert_eq!(
        grant(&["admin"], "mallory"),
        Err(EscalationError::GrantAdmin)
    );
    let Err(EscalationError::ExceedsHeld { scopes }) = grant(&["operator"], "sam") else {
        panic!("operator must exceed a user manager's scopes");
    };
    assert!(scopes.contains(&"admin:servers".to_owned()));
    // A role within the caller's scopes for that user passes; for a user outside the group not.
    assert_eq!(grant(&["activity-reporter"], "sam"), Ok(()));
    assert!(grant(&["activity-reporter"], "root").is_err());
    // Admins may grant anything.
    assert_eq!(
        check_role_grant(
            &reg,
            &table,
            true,
            &ScopeSet::new(),
            ["admin", "operator"],
            Owner::User("x"),
            &NoGroups
        ),
        Ok(())
    );
}

#[test]
fn group_managers_cannot_smuggle_roles_in_through_membership() {
    // mallory holds `groups` for staff; adding bob to a group carrying `operator` would hand bob
    // admin:servers, which mallory does not hold.
    let reg = ScopeRegistry::new();
    let table = roles(&reg);
    let caller = reg
        .expand(
            ["groups!group=staff", "self"],
            &ExpandContext::owner(Owner::User("mallory")),
        )
        .unwrap();
    assert!(
        caller
            .check(&["groups"], &Target::Group("staff"), &in_staff)
            .is_allowed()
    );
    let group_roles = ["operator"];
    assert!(matches!(
        check_role_grant(
            &reg,
            &table,
            false,
            &caller,
            group_roles,
            Owner::User("bob"),
            &in_staff
        ),
        Err(EscalationError::ExceedsHeld { .. })
    ));
    assert_eq!(
        check_role_grant(
            &reg,
            &table,
            false,
            &caller,
            ["admin"],
            Owner::User("bob"),
            &in_staff
        ),
        Err(EscalationError::GrantAdmin)
    );
    // A group without roles grants nothing.
    assert_eq!(
        check_role_grant(
            &reg,
            &table,
            false,
            &caller,
            std::iter::empty::<&str>(),
            Owner::User("bob"),
            &in_staff
        ),
        Ok(())
    );
}

#[test]
fn grants_within_held_scopes() {
    let held = ScopeSet::parse_expanded(["servers!group=staff", "read:users"]).unwrap();
    let within = ScopeSet::parse_expanded(["servers!user=sam", "read:users!user=bob"]).unwrap();
    let beyond = ScopeSet::parse_expanded(["servers!user=bob", "proxy"]).unwrap();
    assert_eq!(
        check_grant_within_held(false, &held, &within, &in_staff),
        Ok(())
    );
    assert_eq!(
        check_grant_within_held(false, &held, &beyond, &in_staff),
        Err(EscalationError::ExceedsHeld {
            scopes: vec!["proxy".to_owned(), "servers!user=bob".to_owned()]
        })
    );
    assert_eq!(
        check_grant_within_held(false, &held, &beyond, &in_staff)
            .unwrap_err()
            .to_string(),
        "Not granting scopes proxy, servers!user=bob beyond those held by the requester"
    );
    assert_eq!(
        check_grant_within_held(true, &ScopeSet::new(), &beyond, &NoGroups),
        Ok(())
    );
}
