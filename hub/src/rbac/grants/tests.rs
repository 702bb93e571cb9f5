//! Effective token scopes, token creation checks, OAuth scope resolution, shares.

use proptest::prelude::*;

use super::*;
use crate::rbac::roles::{ADMIN_ROLE_SCOPES, self_scopes};
use crate::rbac::scope_set::{NoGroups, Target};

fn set(scopes: &[&str]) -> ScopeSet {
    ScopeSet::parse_expanded(scopes).unwrap()
}

fn owned(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn token<'a>(raw: &'a [&'a str], owner: Owner<'a>) -> TokenScopes<'a, &'a str> {
    TokenScopes {
        raw,
        owner,
        client: None,
    }
}

#[test]
fn identify_and_access_scopes() {
    assert_eq!(
        identify_scopes(Owner::User("alice")).to_strings(),
        ["read:users:groups!user=alice", "read:users:name!user=alice"]
    );
    assert_eq!(
        identify_scopes(Owner::Service("culler")).to_strings(),
        ["read:services:name!service=culler"]
    );
    let server = ClientTarget::Server {
        user: "alice",
        server: "",
    };
    assert_eq!(access_scope(server), "access:servers!server=alice/");
    assert_eq!(
        access_scope_set(server).to_strings(),
        [access_scope(server)]
    );
    assert_eq!(
        access_scope(ClientTarget::Service("dash")),
        "access:services!service=dash"
    );
    assert_eq!(
        access_scope_set(ClientTarget::Service("dash")).to_strings(),
        ["access:services!service=dash"]
    );
    assert_eq!(
        server_oauth_access_scopes("carol", "gpu2"),
        [
            "access:servers!server=carol/gpu2",
            "access:servers!user=carol"
        ]
    );
    assert_eq!(
        service_oauth_access_scopes("websvc"),
        ["access:services", "access:services!service=websvc"]
    );
}

#[test]
fn inherit_tokens_hold_exactly_the_owners_current_scopes() {
    let reg = ScopeRegistry::new();
    let owner = self_scopes("alice");
    let t = token(&["inherit"], Owner::User("alice"));
    assert_eq!(
        effective_token_scopes(&reg, &t, &owner, &NoGroups).unwrap(),
        owner
    );
    // Re-evaluated live: demoting the owner shrinks the token at once.
    let demoted = set(&["read:users:name!user=alice"]);
    assert_eq!(
        effective_token_scopes(&reg, &t, &demoted, &NoGroups).unwrap(),
        demoted
    );
}

#[test]
fn server_token_scopes_match_the_observed_identity_reply() {
    // The server's own API token, as stored: ["users:activity!user", "access:servers!server=alice/"].
    let reg = ScopeRegistry::new();
    let t = token(
        &["users:activity!user", "access:servers!server=alice/"],
        Owner::User("alice"),
    );
    let scopes = effective_token_scopes(&reg, &t, &self_scopes("alice"), &NoGroups).unwrap();
    assert_eq!(
        scopes.to_strings(),
        [
            "access:servers!server=alice/",
            "read:users:activity!user=alice",
            "read:users:groups!user=alice",
            "read:users:name!user=alice",
            "users:activity!user=alice",
        ]
    );
}

#[test]
fn oauth_tokens_get_their_clients_access_scope() {
    // An OAuth token issued to alice's default server with the default identify scopes.
    let reg = ScopeRegistry::new();
    let t = TokenScopes {
        raw: &IDENTIFY_RAW_SCOPES,
        owner: Owner::User("alice"),
        client: Some(ClientTarget::Server {
            user: "alice",
            server: "",
        }),
    };
    let scopes = effective_token_scopes(&reg, &t, &self_scopes("alice"), &NoGroups).unwrap();
    assert_eq!(
        scopes.to_strings(),
        [
            "access:servers!server=alice/",
            "read:users:groups!user=alice",
            "read:users:name!user=alice",
        ]
    );
    // bob's token issued by alice's server client: bob cannot reach alice's server.
    let t = TokenScopes {
        owner: Owner::User("bob"),
        ..t
    };
    let scopes = effective_token_scopes(&reg, &t, &self_scopes("bob"), &NoGroups).unwrap();
    assert!(!scopes.allows(
        "access:servers",
        &Target::Server {
            user: "alice",
            server: ""
        },
        &NoGroups
    ));
}

#[test]
fn service_tokens_intersect_with_the_services_roles() {
    // The idle culler: a role with list:users, read:users:activity, read:servers, delete:servers.
    let reg = ScopeRegistry::new();
    let owner = reg
        .expand(
            [
                "list:users",
                "read:users:activity",
                "read:servers",
                "delete:servers",
            ],
            &ExpandContext::owner(Owner::Service("culler")),
        )
        .unwrap();
    let t = token(&["inherit"], Owner::Service("culler"));
    assert_eq!(
        effective_token_scopes(&reg, &t, &owner, &NoGroups)
            .unwrap()
            .to_strings(),
        [
            "delete:servers",
            "list:users",
            "read:servers",
            "read:users:activity",
            "read:users:name"
        ]
    );
    // Identify scopes are offered but dropped when the service does not hold them.
    let t = token(&["read:servers"], Owner::Service("culler"));
    assert_eq!(
        effective_token_scopes(&reg, &t, &owner, &NoGroups)
            .unwrap()
            .to_strings(),
        ["read:servers", "read:users:name"]
    );
}

#[test]
fn tokens_requesting_more_than_the_owner_holds_are_refused() {
    let reg = ScopeRegistry::new();
    let owner = self_scopes("alice");
    let err = check_token_scopes(
        &reg,
        &token(&["read:hub", "proxy"], Owner::User("alice")),
        &owner,
        &NoGroups,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Not assigning requested scopes proxy,read:hub not held by User alice"
    );
    let err = check_token_scopes(
        &reg,
        &token(&["nope"], Owner::User("alice")),
        &owner,
        &NoGroups,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "Scope 'nope' for token does not exist");

    for ok in [
        &["inherit"][..],
        &["self"],
        &["read:users!user=alice"],
        &["servers!server=alice/gpu", "inherit"],
        &[],
    ] {
        assert_eq!(
            check_token_scopes(&reg, &token(ok, Owner::User("alice")), &owner, &NoGroups),
            Ok(()),
            "{ok:?}"
        );
    }
    let err = check_token_scopes(
        &reg,
        &token(&["read:users!user=bob"], Owner::User("alice")),
        &owner,
        &NoGroups,
    )
    .unwrap_err();
    assert!(matches!(err, GrantError::NotHeld { ref owner, .. } if owner == "User alice"));
}

#[test]
fn requested_oauth_scopes_are_resolved_against_held_ones() {
    let reg = ScopeRegistry::new();
    let client = Some(ClientTarget::Server {
        user: "alice",
        server: "",
    });
    let have = owned(&["self"]);

    // The default request of a server's OAuth client: all covered through `self`.
    let requested = owned(&[
        "read:users:name!user",
        "read:users:groups!user",
        "access:servers!server=alice/",
    ]);
    let (allowed, refused) =
        resolve_requested_scopes(&reg, &requested, &have, "alice", client, &NoGroups).unwrap();
    assert_eq!(allowed, requested);
    assert!(refused.is_empty());

    // Partly covered: the covered part is granted, the raw scope still reported as refused.
    let (allowed, refused) = resolve_requested_scopes(
        &reg,
        &owned(&["read:users"]),
        &have,
        "alice",
        client,
        &NoGroups,
    )
    .unwrap();
    assert_eq!(
        allowed,
        owned(&[
            "read:users!user=alice",
            "read:users:activity!user=alice",
            "read:users:groups!user=alice",
            "read:users:name!user=alice",
        ])
    );
    assert_eq!(refused, owned(&["read:users"]));

    // Not covered at all.
    let (allowed, refused) = resolve_requested_scopes(
        &reg,
        &owned(&["admin-ui"]),
        &have,
        "alice",
        client,
        &NoGroups,
    )
    .unwrap();
    assert!(allowed.is_empty());
    assert_eq!(refused, owned(&["admin-ui"]));

    // Held verbatim.
    let (allowed, _) =
        resolve_requested_scopes(&reg, &owned(&["self"]), &have, "alice", client, &NoGroups)
            .unwrap();
    assert_eq!(allowed, owned(&["self"]));
}

#[test]
fn server_tokens_request_the_server_role_with_the_server_resolved() {
    assert_eq!(
        server_token_requested_scopes::<&str>(&[], "alice", ""),
        owned(&["access:servers!server=alice/", "users:activity!user"])
    );
    assert_eq!(
        server_token_requested_scopes(&["read:users:name!user"], "carol", "gpu2"),
        owned(&["read:users:name!user", "users:activity!user"])
    );
    assert_eq!(
        server_token_requested_scopes(&["inherit"], "carol", "gpu2"),
        owned(&["inherit"])
    );

    // Resolved against the user's raw role scopes plus `inherit`, with the jupyterhub client.
    let reg = ScopeRegistry::new();
    let requested = server_token_requested_scopes::<&str>(&[], "alice", "");
    let have = owned(&["self", "inherit"]);
    let (allowed, refused) =
        resolve_requested_scopes(&reg, &requested, &have, "alice", None, &NoGroups).unwrap();
    assert_eq!(allowed, requested);
    assert!(refused.is_empty());
}

#[test]
fn share_scopes_are_forced_onto_the_shared_server() {
    assert_eq!(
        apply_share_filter(
            &["access:servers", "read:shares!server=alice/"],
            "alice",
            ""
        )
        .unwrap(),
        owned(&["access:servers!server=alice/", "read:shares!server=alice/"])
    );
    assert_eq!(
        apply_share_filter(&["access:servers!user=alice"], "alice", "")
            .unwrap_err()
            .to_string(),
        "!user=alice not allowed on sharing access:servers!user=alice, only !server=alice/"
    );
}

// === a token can never exceed its owner ===

const RAW: &[&str] = &[
    "inherit",
    "self",
    "read:users",
    "read:users!user",
    "servers!server=alice/",
    "servers!user=bob",
    "admin:users",
    "read:groups!group=staff",
    "access:servers!server",
    "tokens",
    "read:hub",
];

fn arb_raw() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(RAW), 0..5)
}

proptest! {
    #[test]
    fn effective_scopes_never_exceed_the_owner(token_raw in arb_raw(), owner_raw in arb_raw()) {
        let reg = ScopeRegistry::new();
        let owner = Owner::User("alice");
        let client = Some(ClientTarget::Server { user: "alice", server: "" });
        let owner_scopes = reg
            .expand(owner_raw.iter().filter(|s| **s != "inherit"), &ExpandContext::owner(owner))
            .unwrap();
        let t = TokenScopes { raw: &token_raw, owner, client };
        let groups = |user: &str, group: &str| user == "alice" && group == "staff";
        let effective = effective_token_scopes(&reg, &t, &owner_scopes, &groups).unwrap();
        prop_assert!(owner_scopes.covers(&effective, &groups));

        let targets = [
            Target::None,
            Target::User("alice"),
            Target::User("bob"),
            Target::Server { user: "alice", server: "" },
            Target::Server { user: "bob", server: "x" },
            Target::Group("staff"),
        ];
        for base in effective.bases() {
            for target in &targets {
                if effective.allows(base, target, &groups) {
                    prop_assert!(owner_scopes.allows(base, target, &groups));
                }
            }
        }
    }

    #[test]
    fn admins_can_create_any_token(token_raw in arb_raw()) {
        let reg = ScopeRegistry::new();
        let owner = Owner::User("root");
        let mut raw: Vec<&str> = ADMIN_ROLE_SCOPES.to_vec();
        raw.push("self");
        let owner_scopes = reg.expand(raw, &ExpandContext::owner(owner)).unwrap();
        // Scopes outside the admin role (read:groups via admin:groups is inside; `self` too).
        let t = TokenScopes { raw: &token_raw, owner, client: None };
        prop_assert!(check_token_scopes(&reg, &t, &owner_scopes, &NoGroups).is_ok());
    }
}
