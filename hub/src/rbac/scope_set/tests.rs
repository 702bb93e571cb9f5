//! Access checks (403 vs 404), list filters and intersection, with property tests.

use proptest::prelude::*;

use super::*;

fn set(scopes: &[&str]) -> ScopeSet {
    ScopeSet::parse_expanded(scopes).unwrap()
}

fn server<'a>(user: &'a str, server: &'a str) -> Target<'a> {
    Target::Server { user, server }
}

fn staff_members() -> BTreeMap<String, BTreeSet<String>> {
    let mut m = BTreeMap::new();
    m.insert("alice".to_owned(), BTreeSet::from(["staff".to_owned()]));
    m.insert(
        "bob".to_owned(),
        BTreeSet::from(["staff".to_owned(), "physics".to_owned()]),
    );
    m
}

#[test]
fn unfiltered_scopes_allow_every_target() {
    let s = set(&["read:users"]);
    for target in [
        Target::None,
        Target::User("x"),
        server("x", ""),
        Target::Group("g"),
        Target::Service("s"),
    ] {
        assert!(s.allows("read:users", &target, &NoGroups), "{target:?}");
    }
    assert!(!s.allows("read:servers", &Target::None, &NoGroups));
}

#[test]
fn user_filters_cover_the_user_and_their_servers() {
    let s = set(&["servers!user=alice"]);
    assert!(s.allows("servers", &Target::User("alice"), &NoGroups));
    assert!(s.allows("servers", &server("alice", ""), &NoGroups));
    assert!(s.allows("servers", &server("alice", "gpu"), &NoGroups));
    assert!(!s.allows("servers", &Target::User("bob"), &NoGroups));
    assert!(!s.allows("servers", &server("bob", ""), &NoGroups));
    assert!(!s.allows("servers", &Target::None, &NoGroups));
}

#[test]
fn server_filters_cover_only_that_server() {
    let s = set(&["access:servers!server=alice/"]);
    assert!(s.allows("access:servers", &server("alice", ""), &NoGroups));
    assert!(!s.allows("access:servers", &server("alice", "gpu"), &NoGroups));
    assert!(!s.allows("access:servers", &Target::User("alice"), &NoGroups));
}

#[test]
fn group_filters_cover_members_and_their_servers() {
    let s = set(&["read:users!group=staff"]);
    let groups = staff_members();
    assert!(s.allows("read:users", &Target::User("alice"), &groups));
    assert!(s.allows("read:users", &server("bob", "x"), &groups));
    assert!(!s.allows("read:users", &Target::User("carol"), &groups));
    assert!(s.allows("read:users", &Target::Group("staff"), &groups));
    assert!(!s.allows("read:users", &Target::Group("physics"), &groups));
    // Without a membership oracle, group filters cover no user.
    assert!(!s.allows("read:users", &Target::User("alice"), &NoGroups));

    let alice_groups = ["staff".to_owned()];
    let one_user = UserGroups {
        user: "alice",
        groups: &alice_groups,
    };
    assert!(s.allows("read:users", &Target::User("alice"), &one_user));
    assert!(!s.allows("read:users", &Target::User("bob"), &one_user));

    let closure = |user: &str, group: &str| user == "carol" && group == "staff";
    assert!(s.allows("read:users", &Target::User("carol"), &closure));
}

#[test]
fn service_filters_cover_that_service() {
    let s = set(&["read:services!service=culler"]);
    assert!(s.allows("read:services", &Target::Service("culler"), &NoGroups));
    assert!(!s.allows("read:services", &Target::Service("other"), &NoGroups));
    assert!(!s.allows("read:services", &Target::User("culler"), &NoGroups));
}

#[test]
fn check_allows_with_any_required_scope() {
    let s = set(&["read:users:name!user=alice"]);
    assert_eq!(
        s.check(
            &["read:users", "read:users:name"],
            &Target::User("alice"),
            &NoGroups
        ),
        Access::Allowed
    );
}

#[test]
fn check_answers_404_for_scopes_held_for_other_resources() {
    // The protocol notes' example: `users:activity!user=alice` used on bob.
    let s = set(&["users:activity!user=alice"]);
    let access = s.check(&["users:activity"], &Target::User("bob"), &NoGroups);
    assert_eq!(access, Access::NotFound);
    assert_eq!(access.status(), 404);
    assert_eq!(
        access.message().as_deref(),
        Some("No access to resources or resources not found")
    );
}

#[test]
fn check_answers_403_for_scopes_not_held_at_all() {
    let s = set(&["read:users!user=alice"]);
    let access = s.check(&["admin:users"], &Target::User("alice"), &NoGroups);
    assert_eq!(access.status(), 403);
    assert_eq!(
        access.message().as_deref(),
        Some("Action is not authorized with current scopes; requires any of [admin:users]")
    );
    let several = s.check(&["read:hub", "proxy"], &Target::None, &NoGroups);
    assert_eq!(
        several.message().as_deref(),
        Some("Action is not authorized with current scopes; requires any of [read:hub, proxy]")
    );
    assert_eq!(Access::Allowed.message(), None);
    assert!(Access::Allowed.is_allowed());
}

#[test]
fn filtered_scopes_never_pass_without_a_target() {
    // GHSA-69wv-m5fw-2fhp: `admin:users!group=x` must not create users (no name in the URL).
    let s = set(&["admin:users!group=staff"]);
    let access = s.check(&["admin:users"], &Target::None, &staff_members());
    assert_eq!(access.status(), 403);
    // Only list endpoints that filter their results opt in.
    assert!(s.check_post_filter(&["admin:users"]).is_allowed());
    assert_eq!(s.check_post_filter(&["list:users"]).status(), 403);
}

#[test]
fn list_filters_say_what_a_list_may_show() {
    let s = set(&[
        "list:users!group=staff",
        "list:users!user=carol",
        "list:groups",
    ]);
    assert_eq!(s.filter_for_list("list:groups"), ListFilter::All);
    assert_eq!(s.filter_for_list("list:services"), ListFilter::Nothing);
    let ListFilter::Only(filters) = s.filter_for_list("list:users") else {
        panic!("expected a filtered list");
    };
    assert_eq!(filters.users(), &BTreeSet::from(["carol".to_owned()]));
    assert_eq!(filters.groups(), &BTreeSet::from(["staff".to_owned()]));
    assert_eq!(filters.kinds(), [FilterKind::User, FilterKind::Group]);

    let users = s
        .filter_for_list("list:users")
        .restrict_to(&[FilterKind::User, FilterKind::Group])
        .unwrap();
    let groups = staff_members();
    assert!(users.matches(&Target::User("bob"), &groups));
    assert!(users.matches(&Target::User("carol"), &groups));
    assert!(!users.matches(&Target::User("dave"), &groups));
    assert!(ListFilter::All.matches(&Target::User("dave"), &groups));
    assert!(!ListFilter::Nothing.matches(&Target::User("dave"), &groups));
}

#[test]
fn list_filters_of_the_wrong_kind_are_refused() {
    // `list:users!server=...` must not widen to all users.
    let s = set(&["list:users!server=alice/"]);
    assert_eq!(
        s.filter_for_list("list:users")
            .restrict_to(&[FilterKind::User, FilterKind::Group]),
        Err(FilterKind::Server)
    );
    assert_eq!(
        ListFilter::All.restrict_to(&[FilterKind::Group]),
        Ok(ListFilter::All)
    );
}

#[test]
fn sets_stay_reduced() {
    let mut s = ScopeSet::new();
    s.insert("read:users", Some(Filter::User("alice".into())));
    s.insert("read:users", None);
    s.insert("read:users", Some(Filter::User("bob".into())));
    assert_eq!(s.to_strings(), ["read:users"]);
    assert_eq!(s.len(), 1);
    assert_eq!(
        set(&["a!user=x", "a", "b!group=g"]).to_strings(),
        ["a", "b!group=g"]
    );
}

#[test]
fn strings_are_sorted_and_serialised_as_a_list() {
    let s = set(&[
        "users:activity!user=alice",
        "access:servers!server=alice/",
        "read:users:name!user=alice",
    ]);
    let expected = [
        "access:servers!server=alice/",
        "read:users:name!user=alice",
        "users:activity!user=alice",
    ];
    assert_eq!(s.to_strings(), expected);
    assert_eq!(
        serde_json::to_value(&s).unwrap(),
        serde_json::json!(expected)
    );
    assert!(s.contains_str("read:users:name!user=alice"));
    assert!(!s.contains_str("read:users:name"));
    assert!(!s.contains_str("read:users:name!user=bob"));
    assert_eq!(
        s.bases().collect::<Vec<_>>(),
        ["access:servers", "read:users:name", "users:activity"]
    );
}

#[test]
fn parse_expanded_refuses_bare_filters() {
    assert_eq!(
        ScopeSet::parse_expanded(["read:users!user"])
            .unwrap_err()
            .to_string(),
        "Unexpanded scope filter read:users!user not allowed. Use expanded scopes."
    );
}

#[test]
fn intersection_with_unfiltered_keeps_the_filtered_side() {
    let a = set(&["read:users", "proxy"]);
    let b = set(&["read:users!user=alice", "read:hub"]);
    assert_eq!(
        a.intersection(&b, &NoGroups).to_strings(),
        ["read:users!user=alice"]
    );
}

#[test]
fn intersection_nests_servers_within_users() {
    // How a single-user server checks a token against $JUPYTERHUB_OAUTH_ACCESS_SCOPES.
    let access = set(&["access:servers!server=alice/", "access:servers!user=alice"]);
    let token = set(&["access:servers!server=alice/"]);
    assert_eq!(
        token.intersection(&access, &NoGroups).to_strings(),
        ["access:servers!server=alice/"]
    );
    let user_token = set(&["access:servers!user=alice"]);
    assert_eq!(
        user_token.intersection(&access, &NoGroups).to_strings(),
        ["access:servers!server=alice/", "access:servers!user=alice"]
    );
    let other = set(&["access:servers!server=bob/"]);
    assert!(other.intersection(&access, &NoGroups).is_empty());
}

#[test]
fn intersection_nests_users_and_servers_within_groups() {
    let groups = staff_members();
    let a = set(&["read:users!group=staff", "servers!group=staff"]);
    let b = set(&[
        "read:users!user=alice",
        "read:users!user=carol",
        "servers!server=bob/gpu",
    ]);
    assert_eq!(
        a.intersection(&b, &groups).to_strings(),
        ["read:users!user=alice", "servers!server=bob/gpu"]
    );
    // Without membership data, group against user resolves to nothing (narrower, never wider).
    assert!(a.intersection(&b, &NoGroups).is_empty());
    // Group against the same group is kept; different groups are not inferred.
    assert_eq!(
        a.intersection(&set(&["read:users!group=staff"]), &groups)
            .to_strings(),
        ["read:users!group=staff"]
    );
    assert!(
        a.intersection(&set(&["read:users!group=physics"]), &groups)
            .is_empty()
    );
}

#[test]
fn union_difference_and_covers() {
    let a = set(&["read:users!user=alice", "proxy"]);
    let b = set(&["read:users", "read:hub"]);
    assert_eq!(
        a.union(&b).to_strings(),
        ["proxy", "read:hub", "read:users"]
    );
    assert_eq!(
        a.difference(&b).to_strings(),
        ["proxy", "read:users!user=alice"]
    );
    assert_eq!(b.difference(&a).to_strings(), ["read:hub", "read:users"]);
    assert!(b.covers(&set(&["read:users!user=alice"]), &NoGroups));
    assert!(!a.covers(&b, &NoGroups));
    assert!(a.covers(&ScopeSet::new(), &NoGroups));
}

// === properties ===

const BASES: &[&str] = &[
    "read:users",
    "servers",
    "access:servers",
    "read:groups",
    "read:services",
];
const USERS: &[&str] = &["alice", "bob", "carol"];
const SERVERS: &[(&str, &str)] = &[("alice", ""), ("alice", "gpu"), ("bob", ""), ("carol", "x")];
const GROUPS: &[&str] = &["staff", "physics"];
const SERVICES: &[&str] = &["culler", "dash"];

fn arb_filter() -> impl Strategy<Value = Option<Filter>> {
    prop_oneof![
        Just(None),
        prop::sample::select(USERS).prop_map(|u| Some(Filter::User(u.to_owned()))),
        prop::sample::select(SERVERS).prop_map(|(u, s)| Some(Filter::server(u, s))),
        prop::sample::select(GROUPS).prop_map(|g| Some(Filter::Group(g.to_owned()))),
        prop::sample::select(SERVICES).prop_map(|s| Some(Filter::Service(s.to_owned()))),
    ]
}

pub(crate) fn arb_scope_set() -> impl Strategy<Value = ScopeSet> {
    prop::collection::vec((prop::sample::select(BASES), arb_filter()), 0..8).prop_map(|entries| {
        let mut set = ScopeSet::new();
        for (base, filter) in entries {
            set.insert(base, filter);
        }
        set
    })
}

fn all_targets() -> Vec<Target<'static>> {
    let mut targets = vec![Target::None];
    targets.extend(USERS.iter().map(|u| Target::User(u)));
    targets.extend(
        SERVERS
            .iter()
            .map(|(user, server)| Target::Server { user, server }),
    );
    targets.extend(GROUPS.iter().map(|g| Target::Group(g)));
    targets.extend(SERVICES.iter().map(|s| Target::Service(s)));
    targets
}

proptest! {
    #[test]
    fn intersection_is_within_both(a in arb_scope_set(), b in arb_scope_set()) {
        let groups = staff_members();
        let both = a.intersection(&b, &groups);
        for base in BASES {
            for target in all_targets() {
                if both.allows(base, &target, &groups) {
                    prop_assert!(a.allows(base, &target, &groups), "{base} {target:?}");
                    prop_assert!(b.allows(base, &target, &groups), "{base} {target:?}");
                }
            }
        }
    }

    #[test]
    fn intersection_is_commutative_and_idempotent(a in arb_scope_set(), b in arb_scope_set()) {
        let groups = staff_members();
        prop_assert_eq!(a.intersection(&b, &groups), b.intersection(&a, &groups));
        prop_assert_eq!(a.intersection(&a, &groups), a.clone());
    }

    #[test]
    fn strings_round_trip(a in arb_scope_set()) {
        let strings = a.to_strings();
        prop_assert_eq!(strings.len(), a.len());
        prop_assert_eq!(ScopeSet::parse_expanded(&strings).unwrap(), a);
    }

    #[test]
    fn check_never_allows_what_allows_refuses(a in arb_scope_set()) {
        let groups = staff_members();
        for base in BASES {
            for target in all_targets() {
                let access = a.check(&[base], &target, &groups);
                prop_assert_eq!(access.is_allowed(), a.allows(base, &target, &groups));
                if access == Access::NotFound {
                    prop_assert!(a.holds(base) && target != Target::None);
                }
            }
        }
    }
}
