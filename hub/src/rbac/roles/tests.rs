//! Default roles, `self`, and role configuration.

use super::*;

fn spec(name: &str) -> RoleSpec {
    RoleSpec {
        name: name.to_owned(),
        ..RoleSpec::default()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn no_extras() -> &'static [&'static str] {
    &[]
}

#[test]
fn self_for_alice_is_exactly_the_fifteen_scopes() {
    let expected = [
        "access:servers!user=alice",
        "delete:servers!user=alice",
        "read:servers!user=alice",
        "read:shares!user=alice",
        "read:tokens!user=alice",
        "read:users!user=alice",
        "read:users:activity!user=alice",
        "read:users:groups!user=alice",
        "read:users:name!user=alice",
        "read:users:shares!user=alice",
        "servers!user=alice",
        "start:servers!user=alice",
        "tokens!user=alice",
        "users:activity!user=alice",
        "users:shares!user=alice",
    ];
    assert_eq!(self_scopes("alice").to_strings(), expected);
    let reg = ScopeRegistry::new();
    let via_expansion = reg
        .expand(["self"], &ExpandContext::owner(Owner::User("alice")))
        .unwrap();
    assert_eq!(via_expansion.to_strings(), expected);
}

#[test]
fn self_matches_the_expansion_of_its_seven_raw_scopes() {
    let reg = ScopeRegistry::new();
    let raw = [
        "read:users!user=alice",
        "users:shares!user=alice",
        "read:shares!user=alice",
        "users:activity!user=alice",
        "servers!user=alice",
        "tokens!user=alice",
        "access:servers!user=alice",
    ];
    assert_eq!(
        reg.expand(raw, &ExpandContext::default()).unwrap(),
        self_scopes("alice")
    );
}

#[test]
fn default_roles_have_jupyterhubs_scopes() {
    let roles = default_roles(no_extras());
    let by_name = |name: &str| {
        roles
            .iter()
            .find(|r| r.name == name)
            .unwrap()
            .scopes
            .clone()
    };
    assert_eq!(by_name("user"), ["self"]);
    assert_eq!(
        by_name("admin"),
        [
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
        ]
    );
    assert_eq!(
        by_name("server"),
        ["users:activity!user", "access:servers!server"]
    );
    assert_eq!(by_name("token"), ["inherit"]);
    assert_eq!(roles.len(), 4);
}

#[test]
fn extra_user_scopes_are_added_to_the_user_role() {
    let reg = ScopeRegistry::new();
    let table = RoleTable::load(&reg, &[], &["access:services", "self"]).unwrap();
    assert_eq!(
        table.get("user").unwrap().scopes,
        ["self", "access:services"]
    );
    assert!(table.warnings().is_empty());
}

#[test]
fn overriding_user_scopes_ignores_extra_user_scopes_with_warnings() {
    let reg = ScopeRegistry::new();
    let mut user = spec("user");
    user.scopes = Some(strings(&["read:hub"]));
    let table = RoleTable::load(&reg, &[user], &["access:services"]).unwrap();
    let role = table.get("user").unwrap();
    assert_eq!(role.scopes, ["read:hub"]);
    // The default description survives a partial override.
    assert_eq!(
        role.description.as_deref(),
        Some("Standard user privileges")
    );
    assert_eq!(table.warnings().len(), 2);
    assert!(table.warnings()[0].contains("will be ignored"));
    assert!(table.warnings()[1].contains("does not include 'self'"));
}

#[test]
fn admin_role_cannot_be_changed_but_can_get_members() {
    let reg = ScopeRegistry::new();
    let mut admin = spec("admin");
    admin.scopes = Some(strings(&["read:hub"]));
    let err = RoleTable::load(&reg, &[admin], no_extras()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Cannot override admin role admin.scopes = [\"read:hub\"]"
    );

    let mut admin = spec("admin");
    admin.description = Some("mine".to_owned());
    assert!(matches!(
        RoleTable::load(&reg, &[admin], no_extras()),
        Err(RoleError::AdminOverride {
            key: "description",
            ..
        })
    ));

    let mut admin = spec("admin");
    admin.users = Some(strings(&["root"]));
    admin.scopes = Some(ADMIN_ROLE_SCOPES.iter().map(|s| (*s).to_owned()).collect());
    let table = RoleTable::load(&reg, &[admin], no_extras()).unwrap();
    assert_eq!(table.get("admin").unwrap().users, Some(strings(&["root"])));
}

#[test]
fn configured_roles_are_validated() {
    let reg = ScopeRegistry::new();
    let mut teacher = spec("teacher");
    teacher.scopes = Some(strings(&["users", "nope"]));
    assert_eq!(
        RoleTable::load(&reg, &[teacher], no_extras())
            .unwrap_err()
            .to_string(),
        "Scope 'nope' for role teacher does not exist"
    );

    let err = RoleTable::load(&reg, &[spec("twice"), spec("twice")], no_extras()).unwrap_err();
    assert_eq!(
        err,
        RoleError::Duplicate {
            name: "twice".to_owned()
        }
    );

    assert!(matches!(
        RoleTable::load(&reg, &[spec("Teacher")], no_extras()),
        Err(RoleError::InvalidName { .. })
    ));

    let table = RoleTable::load(&reg, &[spec("empty-role")], no_extras()).unwrap();
    assert_eq!(table.warnings(), ["Role empty-role will have no scopes"]);
    assert_eq!(table.iter().count(), 5);
}

#[test]
fn role_names_follow_jupyterhubs_rule() {
    let long_ok = format!("a{}", "b".repeat(254));
    let too_long = format!("a{}", "b".repeat(255));
    for good in ["abc", "teacher", "a-b", "a.b~c_d", "x12", long_ok.as_str()] {
        assert!(validate_role_name(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "ab",
        "Abc",
        "1abc",
        "abc-",
        "abc.",
        "a b",
        "r\u{00f4}le",
        too_long.as_str(),
    ] {
        assert!(validate_role_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn roles_expand_for_their_holder() {
    let mut reg = ScopeRegistry::new();
    reg.define_custom_scopes([(
        "custom:lab:read".to_owned(),
        crate::rbac::CustomScopeSpec {
            description: "read".to_owned(),
            subscopes: Vec::new(),
        },
    )])
    .unwrap();
    let mut grader = spec("grader");
    grader.scopes = Some(strings(&[
        "read:users!group=students",
        "custom:lab:read!user",
    ]));
    grader.groups = Some(strings(&["teachers"]));
    let table = RoleTable::load(&reg, &[grader], no_extras()).unwrap();

    let scopes = table
        .expand_for(&reg, ["grader", "missing-role"], Owner::User("tina"))
        .unwrap();
    assert_eq!(
        scopes.to_strings(),
        [
            "custom:lab:read!user=tina",
            "read:users!group=students",
            "read:users:activity!group=students",
            "read:users:groups!group=students",
            "read:users:name!group=students",
        ]
    );
    // The server role has nothing to resolve `!server` against outside a token.
    assert_eq!(
        table
            .expand_for(&reg, ["server"], Owner::User("alice"))
            .unwrap()
            .to_strings(),
        [
            "read:users:activity!user=alice",
            "users:activity!user=alice"
        ]
    );
    assert_eq!(
        table.raw_scopes(["user", "token"]),
        BTreeSet::from(["self".to_owned(), "inherit".to_owned()])
    );
}

#[test]
fn default_role_assignment() {
    assert_eq!(default_user_role_names(false), ["user"]);
    assert_eq!(default_user_role_names(true), ["user", "admin"]);
    assert!(default_service_role_names(false).is_empty());
    assert_eq!(default_service_role_names(true), ["admin"]);
}

#[test]
fn role_specs_deserialize_from_config() {
    let spec: RoleSpec = serde_json::from_str(
        r#"{"name": "teacher", "description": "d", "scopes": ["users", "groups"],
            "users": ["cyclops"], "services": [], "groups": []}"#,
    )
    .unwrap();
    assert_eq!(spec.scopes, Some(strings(&["users", "groups"])));
    assert_eq!(spec.services, Some(Vec::new()));
    assert!(serde_json::from_str::<RoleSpec>(r#"{"name": "x", "scope": []}"#).is_err());
    assert!(serde_json::from_str::<RoleSpec>(r#"{"scopes": []}"#).is_err());
}
