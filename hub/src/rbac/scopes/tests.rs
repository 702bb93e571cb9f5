//! Scope definitions, parsing, expansion and custom scopes.

use super::*;

fn alice() -> ExpandContext<'static> {
    ExpandContext::owner(Owner::User("alice"))
}

fn expand(scopes: &[&str], ctx: &ExpandContext<'_>) -> Vec<String> {
    ScopeRegistry::new()
        .expand(scopes, ctx)
        .unwrap()
        .to_strings()
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

/// Every built-in scope and its full (transitive) expansion, from §3.1 of the protocol notes.
const EXPANSIONS: &[(&str, &[&str])] = &[
    ("(no_scope)", &["(no_scope)"]),
    ("inherit", &["inherit"]),
    ("admin-ui", &["admin-ui"]),
    (
        "admin:users",
        &[
            "admin:users",
            "admin:auth_state",
            "users",
            "read:users",
            "read:users:name",
            "read:users:groups",
            "read:users:activity",
            "list:users",
            "users:activity",
            "read:roles:users",
            "delete:users",
        ],
    ),
    ("admin:auth_state", &["admin:auth_state"]),
    (
        "users",
        &[
            "users",
            "read:users",
            "read:users:name",
            "read:users:groups",
            "read:users:activity",
            "list:users",
            "users:activity",
        ],
    ),
    ("delete:users", &["delete:users"]),
    ("list:users", &["list:users", "read:users:name"]),
    (
        "read:users",
        &[
            "read:users",
            "read:users:name",
            "read:users:groups",
            "read:users:activity",
        ],
    ),
    ("read:users:name", &["read:users:name"]),
    ("read:users:groups", &["read:users:groups"]),
    ("read:users:activity", &["read:users:activity"]),
    (
        "read:roles",
        &[
            "read:roles",
            "read:roles:users",
            "read:roles:services",
            "read:roles:groups",
        ],
    ),
    ("read:roles:users", &["read:roles:users"]),
    ("read:roles:services", &["read:roles:services"]),
    ("read:roles:groups", &["read:roles:groups"]),
    ("users:activity", &["users:activity", "read:users:activity"]),
    (
        "admin:servers",
        &[
            "admin:servers",
            "admin:server_state",
            "servers",
            "read:servers",
            "start:servers",
            "delete:servers",
            "read:users:name",
        ],
    ),
    ("admin:server_state", &["admin:server_state"]),
    (
        "servers",
        &[
            "servers",
            "read:servers",
            "start:servers",
            "delete:servers",
            "read:users:name",
        ],
    ),
    ("read:servers", &["read:servers", "read:users:name"]),
    ("start:servers", &["start:servers"]),
    ("delete:servers", &["delete:servers"]),
    ("tokens", &["tokens", "read:tokens"]),
    ("read:tokens", &["read:tokens"]),
    (
        "admin:groups",
        &[
            "admin:groups",
            "groups",
            "read:groups",
            "list:groups",
            "read:groups:name",
            "read:roles:groups",
            "delete:groups",
        ],
    ),
    (
        "groups",
        &["groups", "read:groups", "list:groups", "read:groups:name"],
    ),
    ("list:groups", &["list:groups", "read:groups:name"]),
    ("read:groups", &["read:groups", "read:groups:name"]),
    ("read:groups:name", &["read:groups:name"]),
    ("delete:groups", &["delete:groups"]),
    (
        "admin:services",
        &[
            "admin:services",
            "list:services",
            "read:services",
            "read:services:name",
            "read:roles:services",
        ],
    ),
    ("list:services", &["list:services", "read:services:name"]),
    ("read:services", &["read:services", "read:services:name"]),
    ("read:services:name", &["read:services:name"]),
    ("read:hub", &["read:hub"]),
    ("access:servers", &["access:servers"]),
    ("access:services", &["access:services"]),
    ("users:shares", &["users:shares", "read:users:shares"]),
    ("read:users:shares", &["read:users:shares"]),
    ("groups:shares", &["groups:shares", "read:groups:shares"]),
    ("read:groups:shares", &["read:groups:shares"]),
    ("read:shares", &["read:shares"]),
    (
        "shares",
        &[
            "shares",
            "access:servers",
            "read:shares",
            "users:shares",
            "read:users:shares",
            "groups:shares",
            "read:groups:shares",
        ],
    ),
    ("proxy", &["proxy"]),
    ("shutdown", &["shutdown"]),
    ("read:metrics", &["read:metrics"]),
];

#[test]
fn every_builtin_scope_expands_as_jupyterhub() {
    for (scope, expected) in EXPANSIONS {
        assert_eq!(expand(&[scope], &alice()), sorted(expected), "{scope}");
    }
}

#[test]
fn expansion_table_covers_every_builtin_scope() {
    let tested: BTreeSet<&str> = EXPANSIONS.iter().map(|(s, _)| *s).collect();
    let defined: BTreeSet<&str> = BUILTIN_SCOPES.iter().map(|s| s.name).collect();
    let untested: Vec<_> = defined.difference(&tested).collect();
    // `self` is a metascope, tested with the roles.
    assert_eq!(untested, vec![&"self"]);
    assert_eq!(BUILTIN_SCOPES.len(), 48);
}

#[test]
fn every_subscope_is_defined_and_every_scope_described() {
    for s in BUILTIN_SCOPES {
        assert!(!s.description.is_empty(), "{}", s.name);
        for sub in s.subscopes {
            assert!(builtin(sub).is_some(), "{} -> {sub}", s.name);
        }
    }
}

#[test]
fn implied_follows_subscopes_transitively() {
    let reg = ScopeRegistry::new();
    assert_eq!(
        reg.subscopes("users"),
        ["read:users", "list:users", "users:activity"]
    );
    assert!(reg.implied("admin:users").contains("read:users:groups"));
    assert!(reg.implied("nope").is_empty());
    assert!(reg.subscopes("nope").is_empty());
}

#[test]
fn self_expands_to_fifteen_scopes_for_users_and_nothing_for_services() {
    let scopes = expand(&["self"], &alice());
    assert_eq!(scopes.len(), 15);
    assert!(scopes.iter().all(|s| s.ends_with("!user=alice")));

    let reg = ScopeRegistry::new();
    let service = reg
        .expand_detailed(["self"], &ExpandContext::owner(Owner::Service("culler")))
        .unwrap();
    assert!(service.scopes.is_empty());
    assert_eq!(service.unresolved, ["self"]);
}

#[test]
fn filters_are_applied_to_every_implied_scope() {
    assert_eq!(
        expand(&["users:activity!user=bob"], &alice()),
        ["read:users:activity!user=bob", "users:activity!user=bob"]
    );
    assert_eq!(
        expand(&["read:groups!group=staff"], &alice()),
        ["read:groups!group=staff", "read:groups:name!group=staff"]
    );
    assert_eq!(
        expand(&["read:services!service=culler"], &alice()),
        [
            "read:services!service=culler",
            "read:services:name!service=culler"
        ]
    );
}

#[test]
fn server_filters_drop_implied_read_users_scopes() {
    // read:servers implies read:users:name, which makes no sense for one server.
    assert_eq!(
        expand(&["servers!server=alice/"], &alice()),
        [
            "delete:servers!server=alice/",
            "read:servers!server=alice/",
            "servers!server=alice/",
            "start:servers!server=alice/",
        ]
    );
    assert_eq!(
        expand(&["shares!server=alice/gpu"], &alice()),
        [
            "access:servers!server=alice/gpu",
            "groups:shares!server=alice/gpu",
            "read:groups:shares!server=alice/gpu",
            "read:shares!server=alice/gpu",
            "shares!server=alice/gpu",
            "users:shares!server=alice/gpu",
        ]
    );
    // JupyterHub drops the base too when it is itself a read:users scope.
    assert!(expand(&["read:users!server=alice/"], &alice()).is_empty());
}

#[test]
fn user_and_group_filters_keep_implied_read_users_scopes() {
    assert!(
        expand(&["servers!user=alice"], &alice())
            .contains(&"read:users:name!user=alice".to_owned())
    );
    assert!(
        expand(&["servers!group=staff"], &alice())
            .contains(&"read:users:name!group=staff".to_owned())
    );
}

#[test]
fn bare_filters_resolve_against_the_owner_and_client() {
    let reg = ScopeRegistry::new();
    assert_eq!(
        expand(&["users:activity!user"], &alice()),
        [
            "read:users:activity!user=alice",
            "users:activity!user=alice"
        ]
    );

    let server_client = alice().with_client(Some(ClientTarget::Server {
        user: "alice",
        server: "gpu",
    }));
    assert_eq!(
        expand(&["access:servers!server"], &server_client),
        ["access:servers!server=alice/gpu"]
    );

    let service = ExpandContext::owner(Owner::Service("culler"));
    assert_eq!(
        expand(&["read:services:name!service"], &service),
        ["read:services:name!service=culler"]
    );
    // An OAuth client's service wins over a service owner.
    let via_client = service.with_client(Some(ClientTarget::Service("dashboard")));
    assert_eq!(
        expand(&["access:services!service"], &via_client),
        ["access:services!service=dashboard"]
    );

    // Nothing to resolve against: dropped and reported.
    let result = reg
        .expand_detailed(
            ["access:servers!server", "users:activity!user", "read:hub"],
            &service,
        )
        .unwrap();
    assert_eq!(result.scopes.to_strings(), ["read:hub"]);
    assert_eq!(
        result.unresolved,
        ["access:servers!server", "users:activity!user"]
    );
}

#[test]
fn expansion_is_reduced() {
    assert_eq!(
        expand(&["read:users:name!user=alice", "list:users"], &alice()),
        ["list:users", "read:users:name"]
    );
}

#[test]
fn unknown_scopes_are_worded_as_jupyterhub() {
    let reg = ScopeRegistry::new();
    let msg = |s: &str, who: Option<&str>| reg.parse(s, who).unwrap_err().to_string();
    assert_eq!(
        msg("nope", Some("token")),
        "Scope 'nope' for token does not exist"
    );
    assert_eq!(
        msg("nope!user=x", Some("role teacher")),
        "Scope 'nope!user=x' for role teacher does not exist"
    );
    // JupyterHub leaves two spaces when nobody is named.
    assert_eq!(msg("nope", None), "Scope 'nope'  does not exist");
    assert_eq!(
        msg("all", None),
        "Draft scope 'all' is now called 'inherit'"
    );
    assert_eq!(
        msg("read:users!group", Some("token")),
        "Scope filter group '!group' in scope 'read:users!group' for token does not exist"
    );
    assert_eq!(
        msg("read:users!team=x", Some("token")),
        "Scope filter team=x '!team=x' in scope 'read:users!team=x' for token does not exist"
    );
    assert!(matches!(
        reg.parse("read:users!", None),
        Err(ScopeError::UnknownFilter { .. })
    ));
    assert_eq!(
        msg("read:users!user=", None),
        "Empty string is not a valid filter: read:users!user="
    );
    assert!(reg.expand(["nope"], &alice()).is_err());
    assert!(
        reg.check_scopes_exist(["read:users", "self", "inherit"], None)
            .is_ok()
    );
}

#[test]
fn raw_scopes_parse_and_print_back() {
    for text in [
        "read:users",
        "read:users!user",
        "access:servers!server",
        "access:servers!server=alice/",
        "read:groups!group=staff",
        "access:services!service=x",
    ] {
        assert_eq!(RawScope::parse(text).unwrap().to_string(), text);
    }
    let parsed = RawScope::parse("access:servers!server=alice/gpu").unwrap();
    assert_eq!(
        parsed.filter,
        Some(RawFilter::Value(Filter::server("alice", "gpu")))
    );
    assert_eq!(Filter::server("alice", "").to_string(), "server=alice/");
}

fn custom(description: &str, subscopes: &[&str]) -> CustomScopeSpec {
    CustomScopeSpec {
        description: description.to_owned(),
        subscopes: subscopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

#[test]
fn custom_scopes_expand_with_their_subscopes() {
    let mut reg = ScopeRegistry::new();
    reg.define_custom_scopes([
        (
            "custom:jupyter_server:read:*".to_owned(),
            custom("read-only access", &["custom:jupyter_server:read:contents"]),
        ),
        (
            "custom:jupyter_server:read:contents".to_owned(),
            custom("read files", &[]),
        ),
    ])
    .unwrap();
    assert!(reg.exists("custom:jupyter_server:read:contents"));
    assert_eq!(
        reg.description("custom:jupyter_server:read:*"),
        Some("read-only access")
    );
    assert_eq!(
        reg.expand(["custom:jupyter_server:read:*!user"], &alice())
            .unwrap()
            .to_strings(),
        [
            "custom:jupyter_server:read:*!user=alice",
            "custom:jupyter_server:read:contents!user=alice",
        ]
    );
    assert!(reg.names().any(|n| n == "custom:jupyter_server:read:*"));
}

#[test]
fn custom_scope_names_follow_jupyterhubs_pattern() {
    for good in ["custom:abc", "custom:a_*", "custom:x:y-z", "custom:9a:b*"] {
        assert!(is_valid_custom_name(good), "{good}");
    }
    for bad in [
        "custom:",
        "custom:ab",
        "custom:-ab",
        "custom:ab-",
        "custom:ab:",
        "custom:ABC",
        "Custom:abc",
        "read:thing",
        "custom:a b",
    ] {
        let mut reg = ScopeRegistry::new();
        let err = reg
            .define_custom_scopes([(bad.to_owned(), custom("d", &[]))])
            .unwrap_err();
        assert!(matches!(err, ScopeError::InvalidCustomName { .. }), "{bad}");
    }
}

#[test]
fn custom_scope_definitions_are_validated_all_or_nothing() {
    let mut reg = ScopeRegistry::new();
    let err = reg
        .define_custom_scopes([
            ("custom:ok:one".to_owned(), custom("fine", &[])),
            ("custom:bad:one".to_owned(), custom("d", &["read:users"])),
        ])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "non-custom subscope read:users in custom:bad:one is not allowed. Custom scopes may only \
         have custom subscopes. Roles should be used to assign multiple scopes together."
    );
    assert!(!reg.exists("custom:ok:one"));

    let err = reg
        .define_custom_scopes([("custom:a:b".to_owned(), custom("d", &["custom:missing"]))])
        .unwrap_err();
    assert!(matches!(err, ScopeError::MissingSubscope { .. }));

    let err = reg
        .define_custom_scopes([("read:users".to_owned(), custom("d", &[]))])
        .unwrap_err();
    assert!(matches!(err, ScopeError::Redefined { .. }));

    reg.define_custom_scopes([("custom:a:b".to_owned(), custom("d", &[]))])
        .unwrap();
    // The same definition again is fine; a different one is not.
    reg.define_custom_scopes([("custom:a:b".to_owned(), custom("d", &[]))])
        .unwrap();
    assert!(
        reg.define_custom_scopes([("custom:a:b".to_owned(), custom("other", &[]))])
            .is_err()
    );
}

#[test]
fn custom_scope_cycles_terminate() {
    let mut reg = ScopeRegistry::new();
    reg.define_custom_scopes([
        ("custom:a:x".to_owned(), custom("a", &["custom:b:y"])),
        ("custom:b:y".to_owned(), custom("b", &["custom:a:x"])),
    ])
    .unwrap();
    assert_eq!(
        reg.expand(["custom:a:x"], &alice()).unwrap().to_strings(),
        ["custom:a:x", "custom:b:y"]
    );
}

#[test]
fn custom_scope_specs_deserialize_from_config() {
    let spec: CustomScopeSpec =
        serde_json::from_str(r#"{"description": "read", "subscopes": ["custom:x:y"]}"#).unwrap();
    assert_eq!(spec, custom("read", &["custom:x:y"]));
    let bare: CustomScopeSpec = serde_json::from_str(r#"{"description": "d"}"#).unwrap();
    assert!(bare.subscopes.is_empty());
    assert!(serde_json::from_str::<CustomScopeSpec>(r#"{"subscopes": []}"#).is_err());
    assert!(serde_json::from_str::<CustomScopeSpec>(r#"{"description": "d", "x": 1}"#).is_err());
}
