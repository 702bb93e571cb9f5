//! Backend-independent checks of every model function. Each function gets a connection to a
//! freshly migrated, empty database and panics on failure; `tests/mod.rs` runs them on SQLite,
//! and the PostgreSQL harness runs the same functions against a real server. Paths go through
//! `crate::db` only, so the file can be included from another crate that re-exports `db`.

use chrono::{Duration, NaiveDateTime};
use serde_json::{Map, Value, json};

use crate::db::models::api_tokens::{self, NewApiToken, TokenOwner};
use crate::db::models::groups;
use crate::db::models::oauth_clients::{self, ClientOwner, JUPYTERHUB_CLIENT_ID, NewOAuthClient};
use crate::db::models::oauth_codes::{self, NewOAuthCode};
use crate::db::models::roles::{self, Grantee};
use crate::db::models::services::{self, ServiceSpec};
use crate::db::models::share_codes::{self, NewShareCode};
use crate::db::models::shares::{self, ShareWith};
use crate::db::models::spawners::{self, NewSpawner, ServerAddress, ServerPhase};
use crate::db::models::users::{
    self, NewUser, ServerStateFilter, User, UserQuery, UserScopeFilter, UserSort, UserSortKey,
};
use crate::db::models::{Page, PageRequest};
use crate::db::{DbConnection, DbError, now, write_transaction};

// === helpers ===

fn t0() -> NaiveDateTime {
    now()
}

fn user(conn: &mut DbConnection, name: &str) -> User {
    users::insert(
        conn,
        &NewUser {
            name,
            admin: false,
            cookie_id: &format!("cookie-{name}"),
        },
    )
    .unwrap()
}

fn scopes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn user_token(conn: &mut DbConnection, user_id: i32, hashed: &str) -> api_tokens::ApiToken {
    api_tokens::insert(
        conn,
        &NewApiToken {
            prefix: &hashed[..4],
            hashed,
            owner: TokenOwner::User(user_id),
            spawner_id: None,
            client_id: JUPYTERHUB_CLIENT_ID,
            session_id: None,
            note: "",
            scopes: &scopes(&["inherit"]),
            expires_at: None,
        },
    )
    .unwrap()
}

fn client(
    conn: &mut DbConnection,
    identifier: &str,
    owner: ClientOwner,
) -> oauth_clients::OAuthClient {
    oauth_clients::insert(
        conn,
        &NewOAuthClient {
            identifier,
            description: "a client",
            secret: "sha512:1:00:ff",
            redirect_uri: "/cb",
            allowed_scopes: &scopes(&["read:users"]),
            owner,
        },
    )
    .unwrap()
}

fn service(conn: &mut DbConnection, name: &str, from_config: bool) -> services::Service {
    services::insert(
        conn,
        &ServiceSpec {
            name,
            admin: false,
            from_config,
            url: None,
            info: Map::new(),
            display: true,
            oauth_no_confirm: false,
        },
    )
    .unwrap()
}

fn names(page: &Page<User>) -> Vec<&str> {
    page.items.iter().map(|u| u.name.as_str()).collect()
}

fn is_unique_violation(err: diesel::result::Error) -> bool {
    matches!(DbError::from(err), DbError::UniqueViolation(_))
}

// === schema ===

/// The migration seeds the built-in OAuth client, and every table is reachable.
pub fn schema_is_seeded(conn: &mut DbConnection) {
    let builtin = oauth_clients::find_by_identifier(conn, JUPYTERHUB_CLIENT_ID)
        .unwrap()
        .unwrap();
    assert_eq!(builtin.description, "JupyterHub");
    assert_eq!(builtin.secret, "");
    assert!(builtin.allowed_scopes.is_empty());
    assert_eq!(oauth_clients::list(conn).unwrap().len(), 1);
    assert_eq!(users::count(conn).unwrap(), 0);
    assert!(roles::list(conn).unwrap().is_empty());
    assert!(services::list(conn).unwrap().is_empty());
}

/// `schema.rs` lists exactly the columns the migrations create, in the same order, for every
/// table (the order matters: rows are read back with `RETURNING` all columns). Column types
/// are checked by every other test, which load full rows.
pub fn schema_rs_matches_the_migrations(conn: &mut DbConnection) {
    use crate::db::schema;
    use diesel::prelude::*;

    fn diesel_columns<Q: diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite>>(
        query: Q,
    ) -> Vec<String> {
        let sql = diesel::debug_query::<diesel::sqlite::Sqlite, _>(&query).to_string();
        let start = "SELECT ".len();
        let end = sql.find(" FROM ").unwrap();
        sql[start..end]
            .split(", ")
            .map(|c| c.rsplit('.').next().unwrap().trim_matches('`').to_string())
            .collect()
    }

    #[derive(diesel::QueryableByName)]
    struct Column {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }

    let expected: Vec<(&str, Vec<String>)> = vec![
        (
            "api_tokens",
            diesel_columns(schema::api_tokens::table.select(schema::api_tokens::all_columns)),
        ),
        (
            "group_role_map",
            diesel_columns(
                schema::group_role_map::table.select(schema::group_role_map::all_columns),
            ),
        ),
        (
            "groups",
            diesel_columns(schema::groups::table.select(schema::groups::all_columns)),
        ),
        (
            "oauth_clients",
            diesel_columns(schema::oauth_clients::table.select(schema::oauth_clients::all_columns)),
        ),
        (
            "oauth_codes",
            diesel_columns(schema::oauth_codes::table.select(schema::oauth_codes::all_columns)),
        ),
        (
            "roles",
            diesel_columns(schema::roles::table.select(schema::roles::all_columns)),
        ),
        (
            "service_role_map",
            diesel_columns(
                schema::service_role_map::table.select(schema::service_role_map::all_columns),
            ),
        ),
        (
            "services",
            diesel_columns(schema::services::table.select(schema::services::all_columns)),
        ),
        (
            "share_codes",
            diesel_columns(schema::share_codes::table.select(schema::share_codes::all_columns)),
        ),
        (
            "shares",
            diesel_columns(schema::shares::table.select(schema::shares::all_columns)),
        ),
        (
            "spawners",
            diesel_columns(schema::spawners::table.select(schema::spawners::all_columns)),
        ),
        (
            "user_group_map",
            diesel_columns(
                schema::user_group_map::table.select(schema::user_group_map::all_columns),
            ),
        ),
        (
            "user_role_map",
            diesel_columns(schema::user_role_map::table.select(schema::user_role_map::all_columns)),
        ),
        (
            "users",
            diesel_columns(schema::users::table.select(schema::users::all_columns)),
        ),
    ];
    let (tables_sql, columns_sql) = match conn {
        DbConnection::Sqlite(_) => (
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             AND name <> '__diesel_schema_migrations' ORDER BY name",
            "SELECT name FROM pragma_table_info(?) ORDER BY cid",
        ),
        DbConnection::Postgresql(_) => (
            "SELECT table_name::text AS name FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name <> '__diesel_schema_migrations' \
             ORDER BY table_name",
            "SELECT column_name::text AS name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        ),
    };
    let tables: Vec<String> = diesel::sql_query(tables_sql)
        .load::<Column>(conn)
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(
        tables,
        expected
            .iter()
            .map(|(t, _)| t.to_string())
            .collect::<Vec<_>>()
    );
    for (table, columns) in expected {
        let actual: Vec<String> = diesel::sql_query(columns_sql)
            .bind::<diesel::sql_types::Text, _>(table)
            .load::<Column>(conn)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(actual, columns, "columns of {table}");
    }
}

// === users ===

pub fn users_crud(conn: &mut DbConnection) {
    let alice = users::insert(
        conn,
        &NewUser {
            name: "alice",
            admin: true,
            cookie_id: "c-alice",
        },
    )
    .unwrap();
    assert!(alice.admin);
    assert!(alice.last_activity.is_none());
    assert!(alice.encrypted_auth_state.is_none());
    assert!(alice.created <= now());
    let bob = user(conn, "bob");

    assert_eq!(
        users::find_by_id(conn, alice.id).unwrap().as_ref(),
        Some(&alice)
    );
    assert_eq!(
        users::find_by_name(conn, "alice").unwrap().as_ref(),
        Some(&alice)
    );
    assert_eq!(users::find_by_name(conn, "ALICE").unwrap(), None);
    assert_eq!(
        users::find_by_cookie_id(conn, "c-alice").unwrap().as_ref(),
        Some(&alice)
    );
    assert_eq!(users::find_by_cookie_id(conn, "nope").unwrap(), None);
    let found = users::find_by_names(conn, &["bob", "alice", "carol"]).unwrap();
    assert_eq!(
        found.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![alice.id, bob.id]
    );
    assert!(users::find_by_names::<&str>(conn, &[]).unwrap().is_empty());
    assert_eq!(users::count(conn).unwrap(), 2);

    // Unique name and cookie id.
    let dup = users::insert(
        conn,
        &NewUser {
            name: "alice",
            admin: false,
            cookie_id: "other",
        },
    )
    .unwrap_err();
    assert!(is_unique_violation(dup));
    let dup = users::insert(
        conn,
        &NewUser {
            name: "zed",
            admin: false,
            cookie_id: "c-alice",
        },
    )
    .unwrap_err();
    assert!(is_unique_violation(dup));

    users::set_admin(conn, bob.id, true).unwrap();
    assert!(users::find_by_id(conn, bob.id).unwrap().unwrap().admin);
    users::set_cookie_id(conn, bob.id, "c-bob-2").unwrap();
    assert_eq!(
        users::find_by_cookie_id(conn, "c-bob-2")
            .unwrap()
            .unwrap()
            .id,
        bob.id
    );

    let secret = vec![0u8, 1, 2, 255, 254];
    users::set_auth_state(conn, bob.id, Some(&secret)).unwrap();
    assert_eq!(
        users::find_by_id(conn, bob.id)
            .unwrap()
            .unwrap()
            .encrypted_auth_state,
        Some(secret)
    );
    users::set_auth_state(conn, bob.id, None).unwrap();
    assert_eq!(
        users::find_by_id(conn, bob.id)
            .unwrap()
            .unwrap()
            .encrypted_auth_state,
        None
    );

    // Activity only moves forward.
    let t = t0();
    assert!(users::touch_last_activity(conn, bob.id, t).unwrap());
    assert!(!users::touch_last_activity(conn, bob.id, t - Duration::seconds(5)).unwrap());
    assert!(users::touch_last_activity(conn, bob.id, t + Duration::seconds(5)).unwrap());
    assert_eq!(
        users::find_by_id(conn, bob.id)
            .unwrap()
            .unwrap()
            .last_activity,
        Some(t + Duration::seconds(5))
    );
    assert!(!users::touch_last_activity(conn, 9999, t).unwrap());
    // Only bob has been active; the bound is inclusive.
    assert_eq!(users::count_active_since(conn, t).unwrap(), 1);
    assert_eq!(
        users::count_active_since(conn, t + Duration::seconds(5)).unwrap(),
        1
    );
    assert_eq!(
        users::count_active_since(conn, t + Duration::seconds(6)).unwrap(),
        0
    );

    // Rename; collisions are unique violations.
    users::rename(conn, bob.id, "robert").unwrap();
    assert_eq!(
        users::find_by_name(conn, "robert").unwrap().unwrap().id,
        bob.id
    );
    assert!(users::find_by_name(conn, "bob").unwrap().is_none());
    assert!(is_unique_violation(
        users::rename(conn, bob.id, "alice").unwrap_err()
    ));

    // Unknown ids are NotFound for updates and deletes.
    for result in [
        users::set_admin(conn, 9999, true),
        users::rename(conn, 9999, "x"),
        users::set_cookie_id(conn, 9999, "x"),
        users::set_auth_state(conn, 9999, None),
        users::delete(conn, 9999),
    ] {
        assert!(matches!(result, Err(diesel::result::Error::NotFound)));
    }

    users::delete(conn, alice.id).unwrap();
    assert!(users::find_by_id(conn, alice.id).unwrap().is_none());
    assert!(matches!(
        users::delete(conn, alice.id),
        Err(diesel::result::Error::NotFound)
    ));
}

pub fn users_insert_many_is_all_or_nothing(conn: &mut DbConnection) {
    user(conn, "taken");
    let batch = [
        NewUser {
            name: "n1",
            admin: false,
            cookie_id: "k1",
        },
        NewUser {
            name: "taken",
            admin: false,
            cookie_id: "k2",
        },
    ];
    assert!(is_unique_violation(
        users::insert_many(conn, &batch).unwrap_err()
    ));
    assert!(users::find_by_name(conn, "n1").unwrap().is_none());

    let batch = [
        NewUser {
            name: "n1",
            admin: false,
            cookie_id: "k1",
        },
        NewUser {
            name: "n2",
            admin: true,
            cookie_id: "k2",
        },
    ];
    let created = users::insert_many(conn, &batch).unwrap();
    assert_eq!(
        created.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        ["n1", "n2"]
    );
    assert_eq!(users::count(conn).unwrap(), 3);
}

pub fn users_list_filters_sorts_and_pages(conn: &mut DbConnection) {
    let t = t0();
    // Created in this order: ids ascend.
    let names_in_order = ["carol", "Alice", "bob", "a_b", "axb", "dave%"];
    let mut ids = Vec::new();
    for name in names_in_order {
        ids.push(user(conn, name).id);
    }
    users::touch_last_activity(conn, ids[0], t + Duration::seconds(30)).unwrap(); // carol
    users::touch_last_activity(conn, ids[1], t + Duration::seconds(10)).unwrap(); // Alice
    users::touch_last_activity(conn, ids[2], t + Duration::seconds(20)).unwrap(); // bob

    let all = users::list(conn, &UserQuery::default()).unwrap();
    assert_eq!(all.total, 6);
    assert_eq!(names(&all), names_in_order);

    let sorted = |key, descending| UserQuery {
        sort: UserSort { key, descending },
        ..UserQuery::default()
    };
    assert_eq!(
        names(&users::list(conn, &sorted(UserSortKey::Id, true)).unwrap()),
        ["dave%", "axb", "a_b", "bob", "Alice", "carol"]
    );
    // Name order is the database's collation; compare only names every collation orders alike.
    let plain = |page: Page<User>| -> Vec<String> {
        page.items
            .into_iter()
            .map(|u| u.name)
            .filter(|n| n.chars().all(|c| c.is_ascii_lowercase()))
            .collect()
    };
    assert_eq!(
        plain(users::list(conn, &sorted(UserSortKey::Name, false)).unwrap()),
        ["axb", "bob", "carol"]
    );
    assert_eq!(
        plain(users::list(conn, &sorted(UserSortKey::Name, true)).unwrap()),
        ["carol", "bob", "axb"]
    );
    // Never-active users are the oldest, ties by id.
    assert_eq!(
        names(&users::list(conn, &sorted(UserSortKey::LastActivity, false)).unwrap()),
        ["a_b", "axb", "dave%", "Alice", "bob", "carol"]
    );
    assert_eq!(
        names(&users::list(conn, &sorted(UserSortKey::LastActivity, true)).unwrap()),
        ["carol", "bob", "Alice", "dave%", "axb", "a_b"]
    );

    // Pagination keeps the total.
    let page = users::list(
        conn,
        &UserQuery {
            page: PageRequest::new(2, 2),
            ..UserQuery::default()
        },
    )
    .unwrap();
    assert_eq!(page.total, 6);
    assert_eq!(names(&page), ["bob", "a_b"]);
    let past_end = users::list(
        conn,
        &UserQuery {
            page: PageRequest::new(10, 2),
            ..UserQuery::default()
        },
    )
    .unwrap();
    assert_eq!(past_end.total, 6);
    assert!(past_end.items.is_empty());

    // name_filter: case-insensitive substring; LIKE wildcards match literally.
    let filter = |f: &str| UserQuery {
        name_filter: Some(f.to_string()),
        ..UserQuery::default()
    };
    assert_eq!(
        names(&users::list(conn, &filter("A")).unwrap()),
        ["carol", "Alice", "a_b", "axb", "dave%"]
    );
    assert_eq!(
        names(&users::list(conn, &filter("LIC")).unwrap()),
        ["Alice"]
    );
    assert_eq!(names(&users::list(conn, &filter("a_")).unwrap()), ["a_b"]);
    assert_eq!(names(&users::list(conn, &filter("%")).unwrap()), ["dave%"]);
    let filtered = users::list(
        conn,
        &UserQuery {
            page: PageRequest::new(0, 1),
            ..filter("a")
        },
    )
    .unwrap();
    assert_eq!((filtered.total, filtered.items.len()), (5, 1));

    // State filters come from server phases.
    let sp = |conn: &mut DbConnection, user_id, name| {
        spawners::find_or_insert(conn, user_id, name).unwrap()
    };
    let carol_default = sp(conn, ids[0], "");
    let carol_named = sp(conn, ids[0], "gpu");
    let alice_default = sp(conn, ids[1], "");
    sp(conn, ids[2], ""); // bob: stopped server only
    assert!(
        spawners::transition(
            conn,
            carol_default.id,
            &[ServerPhase::Stopped],
            ServerPhase::Spawning,
            t
        )
        .unwrap()
    );
    assert!(
        spawners::transition(
            conn,
            carol_named.id,
            &[ServerPhase::Stopped],
            ServerPhase::Spawning,
            t
        )
        .unwrap()
    );
    assert!(
        spawners::transition(
            conn,
            carol_named.id,
            &[ServerPhase::Spawning],
            ServerPhase::Running,
            t
        )
        .unwrap()
    );
    assert!(
        spawners::transition(
            conn,
            alice_default.id,
            &[ServerPhase::Stopped],
            ServerPhase::Spawning,
            t
        )
        .unwrap()
    );
    let state = |s| UserQuery {
        state: Some(s),
        ..UserQuery::default()
    };
    assert_eq!(
        names(&users::list(conn, &state(ServerStateFilter::Active)).unwrap()),
        ["carol", "Alice"]
    );
    assert_eq!(
        names(&users::list(conn, &state(ServerStateFilter::Ready)).unwrap()),
        ["carol"]
    );
    let inactive = users::list(conn, &state(ServerStateFilter::Inactive)).unwrap();
    assert_eq!(names(&inactive), ["bob", "a_b", "axb", "dave%"]);
    assert_eq!(inactive.total, 4);

    // Scope restriction: named users or members of named groups.
    let g = groups::insert(conn, "team", &Map::new()).unwrap();
    groups::add_members(conn, g.id, &[ids[3], ids[4]]).unwrap();
    let only = |users: &[&str], groups: &[&str]| UserQuery {
        only: Some(UserScopeFilter {
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        }),
        ..UserQuery::default()
    };
    assert_eq!(
        names(&users::list(conn, &only(&["bob"], &[])).unwrap()),
        ["bob"]
    );
    assert_eq!(
        names(&users::list(conn, &only(&[], &["team"])).unwrap()),
        ["a_b", "axb"]
    );
    assert_eq!(
        names(&users::list(conn, &only(&["carol"], &["team"])).unwrap()),
        ["carol", "a_b", "axb"]
    );
    assert!(users::list(conn, &only(&[], &[])).unwrap().items.is_empty());
    // Filters combine.
    let combined = UserQuery {
        state: Some(ServerStateFilter::Inactive),
        ..only(&["carol", "bob"], &["team"])
    };
    assert_eq!(
        names(&users::list(conn, &combined).unwrap()),
        ["bob", "a_b", "axb"]
    );

    assert_eq!(
        UserSort::parse("-last_activity"),
        Some(UserSort {
            key: UserSortKey::LastActivity,
            descending: true
        })
    );
    assert_eq!(
        UserSort::parse("name"),
        Some(UserSort {
            key: UserSortKey::Name,
            descending: false
        })
    );
    assert_eq!(UserSort::parse("created"), None);
    assert_eq!(
        ServerStateFilter::parse("ready"),
        Some(ServerStateFilter::Ready)
    );
    assert_eq!(ServerStateFilter::parse("x"), None);
}

/// One DELETE removes everything that belongs to a user, and nothing else.
pub fn user_delete_cascades(conn: &mut DbConnection) {
    let t = t0();
    let alice = user(conn, "alice");
    let bob = user(conn, "bob");
    let team = groups::insert(conn, "team", &Map::new()).unwrap();
    groups::add_members(conn, team.id, &[alice.id, bob.id]).unwrap();
    let role = roles::insert(conn, "r", None, &scopes(&["self"])).unwrap();
    roles::grant(conn, role.id, Grantee::User(alice.id)).unwrap();
    roles::grant(conn, role.id, Grantee::User(bob.id)).unwrap();

    let alice_server = spawners::find_or_insert(conn, alice.id, "").unwrap();
    let bob_server = spawners::find_or_insert(conn, bob.id, "").unwrap();
    let alice_client = client(
        conn,
        "jupyterhub-user-alice",
        ClientOwner::Spawner(alice_server.id),
    );
    client(
        conn,
        "jupyterhub-user-bob",
        ClientOwner::Spawner(bob_server.id),
    );
    user_token(conn, alice.id, "aaaa-1");
    let oauth_token = api_tokens::insert(
        conn,
        &NewApiToken {
            prefix: "bbbb",
            hashed: "bbbb-1",
            owner: TokenOwner::User(bob.id),
            spawner_id: None,
            client_id: &alice_client.identifier,
            session_id: Some("s1"),
            note: "",
            scopes: &[],
            expires_at: None,
        },
    )
    .unwrap();
    user_token(conn, bob.id, "bbbb-2");
    oauth_codes::insert(
        conn,
        &NewOAuthCode {
            code_hash: "code-1",
            client_id: "jupyterhub-user-bob",
            user_id: alice.id,
            session_id: None,
            redirect_uri: "/cb",
            scopes: &[],
            code_challenge: None,
            code_challenge_method: None,
            expires_at: t + Duration::minutes(5),
        },
    )
    .unwrap();
    shares::grant(
        conn,
        alice_server.id,
        ShareWith::User(bob.id),
        &scopes(&["access:servers"]),
        t,
    )
    .unwrap();
    shares::grant(
        conn,
        bob_server.id,
        ShareWith::User(alice.id),
        &scopes(&["access:servers"]),
        t,
    )
    .unwrap();
    share_codes::insert(
        conn,
        &NewShareCode {
            spawner_id: alice_server.id,
            prefix: "sc00",
            hashed: "sc-1",
            scopes: &[],
            expires_at: None,
        },
    )
    .unwrap();

    users::delete(conn, alice.id).unwrap();

    assert!(spawners::list_for_user(conn, alice.id).unwrap().is_empty());
    assert!(
        oauth_clients::find_by_identifier(conn, "jupyterhub-user-alice")
            .unwrap()
            .is_none()
    );
    // Bob's OAuth token from alice's server went with the client; his API token stays.
    assert!(
        api_tokens::find_by_id(conn, oauth_token.id)
            .unwrap()
            .is_none()
    );
    let bob_tokens = api_tokens::list_for_owner(conn, TokenOwner::User(bob.id), t).unwrap();
    assert_eq!(
        bob_tokens
            .iter()
            .map(|t| t.hashed.as_str())
            .collect::<Vec<_>>(),
        ["bbbb-2"]
    );
    assert!(
        api_tokens::find_by_prefix(conn, "aaaa", t)
            .unwrap()
            .is_empty()
    );
    assert!(
        oauth_codes::find_valid(conn, "code-1", "jupyterhub-user-bob", t)
            .unwrap()
            .is_none()
    );
    assert_eq!(groups::member_names(conn, team.id).unwrap(), ["bob"]);
    assert_eq!(roles::user_ids_with_role(conn, role.id).unwrap(), [bob.id]);
    assert_eq!(
        shares::list_for_user(conn, bob.id, true, PageRequest::ALL)
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        shares::list_for_owner(conn, bob.id, PageRequest::ALL)
            .unwrap()
            .total,
        0
    );
    assert!(
        share_codes::find_by_prefix(conn, "sc00", t)
            .unwrap()
            .is_empty()
    );
    // Bob's things are intact.
    assert!(
        oauth_clients::find_by_identifier(conn, "jupyterhub-user-bob")
            .unwrap()
            .is_some()
    );
    assert_eq!(spawners::list_for_user(conn, bob.id).unwrap().len(), 1);
}

// === spawners ===

pub fn spawners_lifecycle(conn: &mut DbConnection) {
    let t = t0();
    let alice = user(conn, "alice");
    let default = spawners::find_or_insert(conn, alice.id, "").unwrap();
    assert_eq!(
        spawners::find_or_insert(conn, alice.id, "").unwrap().id,
        default.id
    );
    assert_eq!(default.phase, ServerPhase::Stopped);
    assert!(!default.is_active() && !default.is_ready());
    assert!(default.state.is_empty() && default.user_options.is_empty());
    assert!(default.server().is_none());

    let named = spawners::insert(
        conn,
        &NewSpawner {
            user_id: alice.id,
            name: "gpu",
            display_name: "GPU box",
            user_options: object(json!({"profile": "large", "n": 2})),
        },
    )
    .unwrap();
    assert_eq!(named.display_name, "GPU box");
    assert_eq!(
        named.user_options,
        object(json!({"profile": "large", "n": 2}))
    );
    let dup = NewSpawner {
        user_id: alice.id,
        name: "gpu",
        display_name: "",
        user_options: Map::new(),
    };
    assert!(is_unique_violation(
        spawners::insert(conn, &dup).unwrap_err()
    ));
    assert_eq!(spawners::count_named(conn, alice.id).unwrap(), 1);
    assert_eq!(
        spawners::find(conn, alice.id, "gpu").unwrap().unwrap().id,
        named.id
    );
    assert!(spawners::find(conn, alice.id, "nope").unwrap().is_none());
    assert_eq!(
        spawners::find_by_id(conn, default.id)
            .unwrap()
            .unwrap()
            .name,
        ""
    );
    let listed: Vec<String> = spawners::list_for_user(conn, alice.id)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(listed, ["", "gpu"]);

    // Compare-and-set transitions.
    assert!(
        spawners::transition(
            conn,
            default.id,
            &[ServerPhase::Stopped],
            ServerPhase::Spawning,
            t
        )
        .unwrap()
    );
    assert!(
        !spawners::transition(
            conn,
            default.id,
            &[ServerPhase::Stopped],
            ServerPhase::Spawning,
            t
        )
        .unwrap()
    );
    assert!(
        !spawners::transition(
            conn,
            9999,
            &[ServerPhase::Stopped],
            ServerPhase::Spawning,
            t
        )
        .unwrap()
    );
    let spawning = spawners::find_by_id(conn, default.id).unwrap().unwrap();
    assert_eq!(spawning.phase, ServerPhase::Spawning);
    assert_eq!((spawning.started, spawning.phase_changed), (Some(t), t));
    assert!(spawning.is_active() && !spawning.is_ready());
    assert_eq!(
        spawners::count_in_phase(conn, ServerPhase::Spawning).unwrap(),
        1
    );
    assert_eq!(spawners::count_active(conn).unwrap(), 1);

    let address = ServerAddress {
        proto: "http".into(),
        ip: "127.0.0.1".into(),
        port: 36069,
        base_url: "/user/alice/".into(),
    };
    spawners::record_started(conn, default.id, &address, &object(json!({"pid": 2766}))).unwrap();
    let t1 = t + Duration::seconds(1);
    assert!(
        spawners::transition(
            conn,
            default.id,
            &[ServerPhase::Spawning],
            ServerPhase::Running,
            t1
        )
        .unwrap()
    );
    let running = spawners::find_by_id(conn, default.id).unwrap().unwrap();
    assert_eq!(running.server(), Some(address.clone()));
    assert_eq!(running.state, object(json!({"pid": 2766})));
    assert_eq!((running.started, running.phase_changed), (Some(t), t1));
    assert!(running.is_ready());
    assert_eq!(address.origin(), "http://127.0.0.1:36069");
    let v6 = ServerAddress {
        ip: "::1".into(),
        ..address.clone()
    };
    assert_eq!(v6.origin(), "http://[::1]:36069");

    let resumable =
        spawners::list_in_phases(conn, &[ServerPhase::Spawning, ServerPhase::Running]).unwrap();
    assert_eq!(
        resumable.iter().map(|s| s.id).collect::<Vec<_>>(),
        [default.id]
    );
    assert!(spawners::list_in_phases(conn, &[]).unwrap().is_empty());

    assert!(spawners::touch_last_activity(conn, default.id, t1).unwrap());
    assert!(!spawners::touch_last_activity(conn, default.id, t).unwrap());

    assert!(
        spawners::transition(
            conn,
            default.id,
            &[ServerPhase::Running, ServerPhase::Spawning],
            ServerPhase::Stopping,
            t1
        )
        .unwrap()
    );
    let t2 = t1 + Duration::seconds(1);
    spawners::record_stopped(conn, default.id, &Map::new(), t2).unwrap();
    let stopped = spawners::find_by_id(conn, default.id).unwrap().unwrap();
    assert_eq!(stopped.phase, ServerPhase::Stopped);
    assert_eq!(
        (stopped.started, stopped.server(), stopped.phase_changed),
        (None, None, t2)
    );
    assert!(stopped.server_proto.is_none() && stopped.server_port.is_none());
    assert!(stopped.state.is_empty());
    assert_eq!(stopped.last_activity, Some(t1));
    assert_eq!(spawners::count_active(conn).unwrap(), 0);

    spawners::save_state(
        conn,
        named.id,
        &object(json!({"job": "42", "nested": {"a": [1, 2]}})),
    )
    .unwrap();
    spawners::set_user_options(conn, named.id, &object(json!({"z": 1, "a": 2}))).unwrap();
    spawners::set_display_name(conn, named.id, "").unwrap();
    let named = spawners::find_by_id(conn, named.id).unwrap().unwrap();
    assert_eq!(
        named.state,
        object(json!({"job": "42", "nested": {"a": [1, 2]}}))
    );
    assert_eq!(
        named.user_options.keys().collect::<Vec<_>>(),
        ["z", "a"],
        "key order is kept"
    );
    assert_eq!(named.display_name, "");

    assert!(is_unique_violation(
        spawners::rename(conn, named.id, "").unwrap_err()
    ));
    spawners::rename(conn, named.id, "cpu").unwrap();
    assert!(spawners::find(conn, alice.id, "cpu").unwrap().is_some());

    let bob = user(conn, "bob");
    spawners::find_or_insert(conn, bob.id, "").unwrap();
    let both = spawners::list_for_users(conn, &[bob.id, alice.id]).unwrap();
    assert_eq!(
        both.iter()
            .map(|s| (s.user_id, s.name.as_str()))
            .collect::<Vec<_>>(),
        [(alice.id, ""), (alice.id, "cpu"), (bob.id, "")]
    );
    assert!(spawners::list_for_users(conn, &[]).unwrap().is_empty());

    for result in [
        spawners::record_started(conn, 9999, &address, &Map::new()),
        spawners::record_stopped(conn, 9999, &Map::new(), t),
        spawners::save_state(conn, 9999, &Map::new()),
        spawners::set_user_options(conn, 9999, &Map::new()),
        spawners::set_display_name(conn, 9999, ""),
        spawners::rename(conn, 9999, "x"),
        spawners::delete(conn, 9999),
    ] {
        assert!(matches!(result, Err(diesel::result::Error::NotFound)));
    }

    assert_eq!(ServerPhase::parse("running"), Some(ServerPhase::Running));
    assert_eq!(ServerPhase::parse("pending"), None);
    for phase in ServerPhase::ALL {
        assert_eq!(ServerPhase::parse(phase.as_str()), Some(phase));
    }
}

/// Deleting a server takes its OAuth client (and the client's tokens and codes), its own
/// token, its shares and share codes; the owner's other tokens stay.
pub fn spawner_delete_cascades(conn: &mut DbConnection) {
    let t = t0();
    let alice = user(conn, "alice");
    let bob = user(conn, "bob");
    let server = spawners::find_or_insert(conn, alice.id, "gpu").unwrap();
    client(
        conn,
        "jupyterhub-user-alice-gpu",
        ClientOwner::Spawner(server.id),
    );
    let server_token = api_tokens::insert(
        conn,
        &NewApiToken {
            prefix: "srvt",
            hashed: "srvt-1",
            owner: TokenOwner::User(alice.id),
            spawner_id: Some(server.id),
            client_id: JUPYTERHUB_CLIENT_ID,
            session_id: None,
            note: "Server at /user/alice/gpu/",
            scopes: &scopes(&["access:servers!server=alice/gpu"]),
            expires_at: None,
        },
    )
    .unwrap();
    let oauth = api_tokens::insert(
        conn,
        &NewApiToken {
            prefix: "oaut",
            hashed: "oaut-1",
            owner: TokenOwner::User(bob.id),
            spawner_id: None,
            client_id: "jupyterhub-user-alice-gpu",
            session_id: Some("sess"),
            note: "",
            scopes: &[],
            expires_at: Some(t + Duration::days(14)),
        },
    )
    .unwrap();
    let keep = user_token(conn, alice.id, "keep-1");
    shares::grant(
        conn,
        server.id,
        ShareWith::User(bob.id),
        &scopes(&["access:servers!server=alice/gpu"]),
        t,
    )
    .unwrap();
    share_codes::insert(
        conn,
        &NewShareCode {
            spawner_id: server.id,
            prefix: "sc01",
            hashed: "sc01-x",
            scopes: &[],
            expires_at: None,
        },
    )
    .unwrap();

    spawners::delete(conn, server.id).unwrap();
    assert!(
        oauth_clients::find_by_identifier(conn, "jupyterhub-user-alice-gpu")
            .unwrap()
            .is_none()
    );
    assert!(
        api_tokens::find_by_id(conn, server_token.id)
            .unwrap()
            .is_none()
    );
    assert!(api_tokens::find_by_id(conn, oauth.id).unwrap().is_none());
    assert!(api_tokens::find_by_id(conn, keep.id).unwrap().is_some());
    assert_eq!(
        shares::list_for_user(conn, bob.id, false, PageRequest::ALL)
            .unwrap()
            .total,
        0
    );
    assert!(
        share_codes::find_by_prefix(conn, "sc01", t)
            .unwrap()
            .is_empty()
    );
}

// === groups ===

pub fn groups_and_membership(conn: &mut DbConnection) {
    let alice = user(conn, "alice");
    let bob = user(conn, "bob");
    let carol = user(conn, "carol");
    let props = object(json!({"b": 1, "a": {"nested": [true, null]}}));
    let red = groups::insert(conn, "red", &props).unwrap();
    assert_eq!(red.properties, props);
    let blue = groups::insert(conn, "blue", &Map::new()).unwrap();
    assert!(is_unique_violation(
        groups::insert(conn, "red", &Map::new()).unwrap_err()
    ));

    assert_eq!(
        groups::find_by_name(conn, "red").unwrap().as_ref(),
        Some(&red)
    );
    assert_eq!(
        groups::find_by_id(conn, blue.id).unwrap().as_ref(),
        Some(&blue)
    );
    assert!(groups::find_by_name(conn, "green").unwrap().is_none());
    let found = groups::find_by_names(
        conn,
        &["blue".to_string(), "red".to_string(), "x".to_string()],
    )
    .unwrap();
    assert_eq!(
        found.iter().map(|g| g.id).collect::<Vec<_>>(),
        [red.id, blue.id]
    );

    let page = groups::list(conn, PageRequest::new(0, 1), None).unwrap();
    assert_eq!((page.total, page.items.len()), (2, 1));
    assert_eq!(page.items[0].name, "red");
    let only = groups::list(conn, PageRequest::ALL, Some(&["blue".to_string()])).unwrap();
    assert_eq!(only.map(|g| g.name).items, ["blue"]);

    let new_props = object(json!({"z": "last", "a": "first"}));
    groups::set_properties(conn, red.id, &new_props).unwrap();
    let reread = groups::find_by_id(conn, red.id).unwrap().unwrap();
    assert_eq!(reread.properties.keys().collect::<Vec<_>>(), ["z", "a"]);

    assert_eq!(
        groups::add_members(conn, red.id, &[alice.id, bob.id, bob.id]).unwrap(),
        2
    );
    assert_eq!(
        groups::add_members(conn, red.id, &[alice.id, carol.id]).unwrap(),
        1
    );
    assert_eq!(groups::add_members(conn, red.id, &[]).unwrap(), 0);
    assert_eq!(
        groups::member_names(conn, red.id).unwrap(),
        ["alice", "bob", "carol"]
    );
    assert_eq!(
        groups::remove_members(conn, red.id, &[bob.id, 9999]).unwrap(),
        1
    );
    assert_eq!(
        groups::member_names(conn, red.id).unwrap(),
        ["alice", "carol"]
    );
    // Adding an unknown user is a foreign-key violation, and rolls back the whole call.
    let err = groups::add_members(conn, blue.id, &[bob.id, 9999]).unwrap_err();
    assert!(matches!(
        DbError::from(err),
        DbError::ForeignKeyViolation(_)
    ));
    assert!(groups::member_names(conn, blue.id).unwrap().is_empty());

    groups::set_user_groups(conn, bob.id, &[blue.id, red.id]).unwrap();
    assert_eq!(
        groups::for_user(conn, bob.id)
            .unwrap()
            .into_iter()
            .map(|g| g.name)
            .collect::<Vec<_>>(),
        ["blue", "red"]
    );
    groups::set_user_groups(conn, bob.id, &[blue.id]).unwrap();
    assert_eq!(
        groups::for_user(conn, bob.id)
            .unwrap()
            .into_iter()
            .map(|g| g.name)
            .collect::<Vec<_>>(),
        ["blue"]
    );
    groups::set_user_groups(conn, carol.id, &[]).unwrap();
    assert!(groups::for_user(conn, carol.id).unwrap().is_empty());

    let by_group = groups::member_names_by_group(conn, &[red.id, blue.id]).unwrap();
    assert_eq!(
        by_group.get(&red.id).cloned().unwrap_or_default(),
        ["alice"]
    );
    assert_eq!(by_group.get(&blue.id).cloned().unwrap_or_default(), ["bob"]);
    let by_user = groups::names_by_user(conn, &[alice.id, bob.id, carol.id]).unwrap();
    assert_eq!(by_user.get(&alice.id).cloned().unwrap_or_default(), ["red"]);
    assert_eq!(by_user.get(&bob.id).cloned().unwrap_or_default(), ["blue"]);
    assert!(!by_user.contains_key(&carol.id));

    groups::delete(conn, red.id).unwrap();
    assert!(groups::find_by_id(conn, red.id).unwrap().is_none());
    assert!(groups::for_user(conn, alice.id).unwrap().is_empty());
    assert!(matches!(
        groups::delete(conn, red.id),
        Err(diesel::result::Error::NotFound)
    ));
    assert!(matches!(
        groups::set_properties(conn, red.id, &Map::new()),
        Err(diesel::result::Error::NotFound)
    ));
}

pub fn groups_insert_many_is_all_or_nothing(conn: &mut DbConnection) {
    let alice = user(conn, "alice");
    let bob = user(conn, "bob");
    groups::insert(conn, "taken", &Map::new()).unwrap();
    let err = groups::insert_many_with_members(conn, &["new1", "taken"], &[alice.id]).unwrap_err();
    assert!(is_unique_violation(err));
    assert!(groups::find_by_name(conn, "new1").unwrap().is_none());

    let created =
        groups::insert_many_with_members(conn, &["g1", "g2"], &[alice.id, bob.id]).unwrap();
    assert_eq!(created.len(), 2);
    for g in &created {
        assert_eq!(groups::member_names(conn, g.id).unwrap(), ["alice", "bob"]);
    }
}

// === roles ===

pub fn roles_and_grants(conn: &mut DbConnection) {
    let alice = user(conn, "alice");
    let bob = user(conn, "bob");
    let team = groups::insert(conn, "team", &Map::new()).unwrap();
    let svc = service(conn, "culler", true);

    let user_role = roles::insert(conn, "user", Some("default"), &scopes(&["self"])).unwrap();
    assert_eq!(user_role.scopes, ["self"]);
    assert!(is_unique_violation(
        roles::insert(conn, "user", None, &[]).unwrap_err()
    ));
    let admin = roles::save(
        conn,
        "admin",
        None,
        &scopes(&["admin:users", "admin:servers"]),
    )
    .unwrap();
    let updated = roles::save(conn, "admin", Some("admins"), &scopes(&["admin-ui"])).unwrap();
    assert_eq!(updated.id, admin.id);
    assert_eq!(
        (updated.description.as_deref(), updated.scopes.as_slice()),
        (Some("admins"), ["admin-ui".to_string()].as_slice())
    );
    let cleared = roles::save(conn, "admin", None, &scopes(&["admin-ui"])).unwrap();
    assert_eq!(cleared.description, None);
    let culler = roles::insert(
        conn,
        "culler",
        None,
        &scopes(&["list:users", "admin:servers"]),
    )
    .unwrap();

    assert_eq!(
        roles::find_by_name(conn, "user").unwrap().as_ref(),
        Some(&user_role)
    );
    assert!(roles::find_by_name(conn, "x").unwrap().is_none());
    assert_eq!(
        roles::find_by_names(conn, &["culler", "user"])
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        roles::list(conn)
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect::<Vec<_>>(),
        ["admin", "culler", "user"]
    );

    assert!(roles::grant(conn, user_role.id, Grantee::User(alice.id)).unwrap());
    assert!(!roles::grant(conn, user_role.id, Grantee::User(alice.id)).unwrap());
    assert!(roles::grant(conn, admin.id, Grantee::Group(team.id)).unwrap());
    assert!(!roles::grant(conn, admin.id, Grantee::Group(team.id)).unwrap());
    assert!(roles::grant(conn, culler.id, Grantee::Service(svc.id)).unwrap());
    assert!(!roles::grant(conn, culler.id, Grantee::Service(svc.id)).unwrap());
    let err = roles::grant(conn, user_role.id, Grantee::User(9999)).unwrap_err();
    assert!(matches!(
        DbError::from(err),
        DbError::ForeignKeyViolation(_)
    ));

    let names = |rs: Vec<roles::Role>| rs.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(
        names(roles::granted_to(conn, Grantee::User(alice.id)).unwrap()),
        ["user"]
    );
    assert_eq!(
        names(roles::granted_to(conn, Grantee::Group(team.id)).unwrap()),
        ["admin"]
    );
    assert_eq!(
        names(roles::granted_to(conn, Grantee::Service(svc.id)).unwrap()),
        ["culler"]
    );

    // Effective roles: direct plus through groups, each once.
    groups::add_members(conn, team.id, &[alice.id]).unwrap();
    roles::grant(conn, admin.id, Grantee::User(alice.id)).unwrap();
    assert_eq!(
        names(roles::effective_for_user(conn, alice.id).unwrap()),
        ["admin", "user"]
    );
    assert!(roles::effective_for_user(conn, bob.id).unwrap().is_empty());

    let by_user = roles::names_by_user(conn, &[alice.id, bob.id]).unwrap();
    assert_eq!(
        by_user.get(&alice.id).cloned().unwrap_or_default(),
        ["admin", "user"]
    );
    assert!(!by_user.contains_key(&bob.id));
    assert_eq!(
        roles::names_by_group(conn, &[team.id])
            .unwrap()
            .get(&team.id)
            .cloned()
            .unwrap_or_default(),
        ["admin"]
    );
    assert_eq!(
        roles::names_by_service(conn, &[svc.id])
            .unwrap()
            .get(&svc.id)
            .cloned()
            .unwrap_or_default(),
        ["culler"]
    );

    roles::set_roles(conn, Grantee::User(alice.id), &[culler.id, user_role.id]).unwrap();
    assert_eq!(
        names(roles::granted_to(conn, Grantee::User(alice.id)).unwrap()),
        ["culler", "user"]
    );
    roles::set_roles(conn, Grantee::Group(team.id), &[]).unwrap();
    assert!(
        roles::granted_to(conn, Grantee::Group(team.id))
            .unwrap()
            .is_empty()
    );
    roles::set_roles(conn, Grantee::Service(svc.id), &[user_role.id]).unwrap();
    assert_eq!(
        names(roles::granted_to(conn, Grantee::Service(svc.id)).unwrap()),
        ["user"]
    );
    assert_eq!(
        roles::user_ids_with_role(conn, user_role.id).unwrap(),
        [alice.id]
    );

    assert!(roles::revoke(conn, user_role.id, Grantee::User(alice.id)).unwrap());
    assert!(!roles::revoke(conn, user_role.id, Grantee::User(alice.id)).unwrap());
    assert!(roles::revoke(conn, user_role.id, Grantee::Service(svc.id)).unwrap());
    assert!(!roles::revoke(conn, admin.id, Grantee::Group(team.id)).unwrap());

    // Removing roles from configuration removes their grants.
    assert_eq!(roles::delete_except(conn, &["user", "admin"]).unwrap(), 1);
    assert!(
        roles::granted_to(conn, Grantee::User(alice.id))
            .unwrap()
            .is_empty()
    );
    roles::delete(conn, admin.id).unwrap();
    assert!(matches!(
        roles::delete(conn, admin.id),
        Err(diesel::result::Error::NotFound)
    ));
    assert_eq!(names(roles::list(conn).unwrap()), ["user"]);
}

// === services ===

pub fn services_crud(conn: &mut DbConnection) {
    let t = t0();
    let spec = ServiceSpec {
        name: "websvc",
        admin: true,
        from_config: true,
        url: Some("http://127.0.0.1:10101"),
        info: object(json!({"k": "v"})),
        display: false,
        oauth_no_confirm: true,
    };
    let svc = services::insert(conn, &spec).unwrap();
    assert_eq!(
        (
            svc.admin,
            svc.from_config,
            svc.url.as_deref(),
            svc.display,
            svc.oauth_no_confirm
        ),
        (true, true, Some("http://127.0.0.1:10101"), false, true)
    );
    assert_eq!(svc.info, object(json!({"k": "v"})));
    assert!(is_unique_violation(
        services::insert(conn, &spec).unwrap_err()
    ));

    let changed = services::update(
        conn,
        svc.id,
        &ServiceSpec {
            url: None,
            admin: false,
            ..spec.clone()
        },
    )
    .unwrap();
    assert_eq!(
        (changed.url.clone(), changed.admin, changed.created),
        (None, false, svc.created)
    );
    assert_eq!(
        services::find_by_name(conn, "websvc").unwrap().unwrap(),
        changed
    );
    assert_eq!(
        services::find_by_id(conn, svc.id).unwrap().unwrap(),
        changed
    );
    assert!(matches!(
        services::update(conn, 9999, &spec),
        Err(diesel::result::Error::NotFound)
    ));

    let api_made = service(conn, "api-made", false);
    let old = service(conn, "old", true);
    assert_eq!(
        services::list(conn)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<_>>(),
        ["api-made", "old", "websvc"]
    );

    // Tokens, OAuth client and role grants go with the service.
    let token = api_tokens::insert(
        conn,
        &NewApiToken {
            prefix: "svct",
            hashed: "svct-1",
            owner: TokenOwner::Service(old.id),
            spawner_id: None,
            client_id: JUPYTERHUB_CLIENT_ID,
            session_id: None,
            note: "from config",
            scopes: &[],
            expires_at: None,
        },
    )
    .unwrap();
    assert_eq!(token.owner(), Some(TokenOwner::Service(old.id)));
    client(conn, "service-old", ClientOwner::Service(old.id));
    let role = roles::insert(conn, "r", None, &[]).unwrap();
    roles::grant(conn, role.id, Grantee::Service(old.id)).unwrap();

    assert_eq!(
        services::delete_from_config_except(conn, &["websvc"]).unwrap(),
        1
    );
    assert!(services::find_by_id(conn, old.id).unwrap().is_none());
    assert!(services::find_by_id(conn, api_made.id).unwrap().is_some());
    assert!(
        api_tokens::find_by_prefix(conn, "svct", t)
            .unwrap()
            .is_empty()
    );
    assert!(
        oauth_clients::find_by_identifier(conn, "service-old")
            .unwrap()
            .is_none()
    );
    assert!(roles::names_by_service(conn, &[old.id]).unwrap().is_empty());

    services::delete(conn, svc.id).unwrap();
    assert!(matches!(
        services::delete(conn, svc.id),
        Err(diesel::result::Error::NotFound)
    ));
}

// === api_tokens ===

pub fn api_tokens_lookup_and_lifecycle(conn: &mut DbConnection) {
    let t = t0();
    let alice = user(conn, "alice");
    let bob = user(conn, "bob");
    let svc = service(conn, "svc", true);
    let new = |prefix, hashed, owner, expires_at| NewApiToken {
        prefix,
        hashed,
        owner,
        spawner_id: None,
        client_id: JUPYTERHUB_CLIENT_ID,
        session_id: None,
        note: "Requested via api",
        scopes: &[],
        expires_at,
    };
    let a1 =
        api_tokens::insert(conn, &new("abcd", "h-a1", TokenOwner::User(alice.id), None)).unwrap();
    assert_eq!(
        (a1.note.as_str(), a1.client_id.as_str(), a1.owner()),
        (
            "Requested via api",
            "jupyterhub",
            Some(TokenOwner::User(alice.id))
        )
    );
    assert!(!a1.is_oauth() && !a1.is_expired(t));
    let a2 = api_tokens::insert(
        conn,
        &new(
            "abcd",
            "h-a2",
            TokenOwner::User(alice.id),
            Some(t + Duration::hours(1)),
        ),
    )
    .unwrap();
    let expired = api_tokens::insert(
        conn,
        &new(
            "abcd",
            "h-a3",
            TokenOwner::User(alice.id),
            Some(t - Duration::seconds(1)),
        ),
    )
    .unwrap();
    assert!(expired.is_expired(t));
    let b1 =
        api_tokens::insert(conn, &new("abcd", "h-b1", TokenOwner::User(bob.id), None)).unwrap();
    let s1 = api_tokens::insert(
        conn,
        &new("zzzz", "h-s1", TokenOwner::Service(svc.id), None),
    )
    .unwrap();

    // Hashes are unique; unknown clients and owners are foreign-key violations.
    assert!(is_unique_violation(
        api_tokens::insert(conn, &new("abcd", "h-a1", TokenOwner::User(bob.id), None)).unwrap_err()
    ));
    let bad_client = NewApiToken {
        client_id: "no-such-client",
        ..new("abcd", "h-x", TokenOwner::User(bob.id), None)
    };
    assert!(matches!(
        DbError::from(api_tokens::insert(conn, &bad_client).unwrap_err()),
        DbError::ForeignKeyViolation(_)
    ));
    let bad_owner = new("abcd", "h-y", TokenOwner::User(9999), None);
    assert!(matches!(
        DbError::from(api_tokens::insert(conn, &bad_owner).unwrap_err()),
        DbError::ForeignKeyViolation(_)
    ));

    let candidates: Vec<i32> = api_tokens::find_by_prefix(conn, "abcd", t)
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(candidates, [a1.id, a2.id, b1.id]);
    // An hour later a2 has expired too.
    let later: Vec<i32> = api_tokens::find_by_prefix(conn, "abcd", t + Duration::hours(2))
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(later, [a1.id, b1.id]);
    assert!(
        api_tokens::find_by_prefix(conn, "nope", t)
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        api_tokens::find_by_id(conn, expired.id)
            .unwrap()
            .map(|t| t.id),
        Some(expired.id)
    );
    assert!(
        api_tokens::find_for_owner(conn, TokenOwner::User(alice.id), a1.id)
            .unwrap()
            .is_some()
    );
    assert!(
        api_tokens::find_for_owner(conn, TokenOwner::User(bob.id), a1.id)
            .unwrap()
            .is_none()
    );
    assert!(
        api_tokens::find_for_owner(conn, TokenOwner::Service(svc.id), s1.id)
            .unwrap()
            .is_some()
    );
    assert!(
        api_tokens::find_for_owner(conn, TokenOwner::User(alice.id), s1.id)
            .unwrap()
            .is_none()
    );

    // Listing: unexpired only, least recently used first (activity, else creation).
    assert!(api_tokens::touch(conn, a1.id, t + Duration::minutes(10)).unwrap());
    assert!(!api_tokens::touch(conn, a1.id, t).unwrap());
    let listed: Vec<i32> = api_tokens::list_for_owner(conn, TokenOwner::User(alice.id), t)
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, [a2.id, a1.id]);
    assert_eq!(
        api_tokens::list_for_owner(conn, TokenOwner::Service(svc.id), t)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        api_tokens::find_by_id(conn, a1.id)
            .unwrap()
            .unwrap()
            .last_activity,
        Some(t + Duration::minutes(10))
    );

    assert_eq!(api_tokens::purge_expired(conn, t).unwrap(), 1);
    assert!(api_tokens::find_by_id(conn, expired.id).unwrap().is_none());
    api_tokens::delete(conn, a2.id).unwrap();
    assert!(matches!(
        api_tokens::delete(conn, a2.id),
        Err(diesel::result::Error::NotFound)
    ));
}

pub fn api_tokens_oauth_revocation(conn: &mut DbConnection) {
    let t = t0();
    let alice = user(conn, "alice");
    let server = spawners::find_or_insert(conn, alice.id, "").unwrap();
    let c = client(
        conn,
        "jupyterhub-user-alice",
        ClientOwner::Spawner(server.id),
    );
    let oauth = |conn: &mut DbConnection, hashed: &str, session: &str| {
        api_tokens::insert(
            conn,
            &NewApiToken {
                prefix: "oaut",
                hashed,
                owner: TokenOwner::User(alice.id),
                spawner_id: None,
                client_id: &c.identifier,
                session_id: Some(session),
                note: "",
                scopes: &scopes(&["read:users:name!user", "access:servers!server=alice/"]),
                expires_at: Some(t + Duration::days(14)),
            },
        )
        .unwrap()
    };
    let o1 = oauth(conn, "o1", "s1");
    assert!(o1.is_oauth());
    assert_eq!(
        o1.scopes,
        ["read:users:name!user", "access:servers!server=alice/"]
    );
    oauth(conn, "o2", "s2");
    oauth(conn, "o3", "s1");
    let api = user_token(conn, alice.id, "api1");
    let server_token = api_tokens::insert(
        conn,
        &NewApiToken {
            spawner_id: Some(server.id),
            note: "Server at /user/alice/",
            ..new_plain(alice.id, "srv1")
        },
    )
    .unwrap();

    assert_eq!(
        api_tokens::list_for_user_client(conn, alice.id, &c.identifier, t)
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        api_tokens::list_for_user_client(conn, alice.id, JUPYTERHUB_CLIENT_ID, t)
            .unwrap()
            .len(),
        2
    );
    // Logout of session s1: its OAuth tokens go, API tokens never belong to a session.
    let api_in_session = api_tokens::insert(
        conn,
        &NewApiToken {
            session_id: Some("s1"),
            ..new_plain(alice.id, "api2")
        },
    )
    .unwrap();
    assert_eq!(api_tokens::delete_for_session(conn, "s1").unwrap(), 2);
    assert!(
        api_tokens::find_by_id(conn, api_in_session.id)
            .unwrap()
            .is_some()
    );
    assert_eq!(
        api_tokens::delete_for_user_client(conn, alice.id, &c.identifier).unwrap(),
        1
    );
    assert!(
        api_tokens::list_for_user_client(conn, alice.id, &c.identifier, t)
            .unwrap()
            .is_empty()
    );
    assert_eq!(api_tokens::delete_for_spawner(conn, server.id).unwrap(), 1);
    assert!(
        api_tokens::find_by_id(conn, server_token.id)
            .unwrap()
            .is_none()
    );
    assert!(api_tokens::find_by_id(conn, api.id).unwrap().is_some());
}

fn new_plain(user_id: i32, hashed: &str) -> NewApiToken<'_> {
    NewApiToken {
        prefix: "plai",
        hashed,
        owner: TokenOwner::User(user_id),
        spawner_id: None,
        client_id: JUPYTERHUB_CLIENT_ID,
        session_id: None,
        note: "",
        scopes: &[],
        expires_at: None,
    }
}

// === oauth_clients ===

pub fn oauth_clients_registration(conn: &mut DbConnection) {
    let t = t0();
    let alice = user(conn, "alice");
    let server = spawners::find_or_insert(conn, alice.id, "").unwrap();
    let svc = service(conn, "svc", true);

    let first = NewOAuthClient {
        identifier: "jupyterhub-user-alice",
        description: "Server at /user/alice/",
        secret: "sha512:16384:aa:bb",
        redirect_uri: "/user/alice/oauth_callback",
        allowed_scopes: &scopes(&["access:servers!server=alice/"]),
        owner: ClientOwner::Spawner(server.id),
    };
    let c = oauth_clients::upsert(conn, &first).unwrap();
    assert_eq!((c.spawner_id, c.service_id), (Some(server.id), None));
    assert!(is_unique_violation(
        oauth_clients::insert(conn, &first).unwrap_err()
    ));
    let token = api_tokens::insert(
        conn,
        &NewApiToken {
            client_id: "jupyterhub-user-alice",
            ..new_plain(alice.id, "tok1")
        },
    )
    .unwrap();

    // Re-registration at the next spawn replaces the settings and keeps issued tokens.
    let again = oauth_clients::upsert(
        conn,
        &NewOAuthClient {
            secret: "sha512:16384:cc:dd",
            allowed_scopes: &[],
            ..first.clone()
        },
    )
    .unwrap();
    assert_eq!(again.id, c.id);
    assert_eq!(
        (again.secret.as_str(), again.allowed_scopes.len()),
        ("sha512:16384:cc:dd", 0)
    );
    assert!(api_tokens::find_by_id(conn, token.id).unwrap().is_some());

    client(conn, "service-svc", ClientOwner::Service(svc.id));
    let ids = |cs: Vec<oauth_clients::OAuthClient>| {
        cs.into_iter().map(|c| c.identifier).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(oauth_clients::find_for_owner(conn, ClientOwner::Spawner(server.id)).unwrap()),
        ["jupyterhub-user-alice"]
    );
    assert_eq!(
        ids(oauth_clients::find_for_owner(conn, ClientOwner::Service(svc.id)).unwrap()),
        ["service-svc"]
    );
    assert_eq!(
        ids(oauth_clients::find_for_owner(conn, ClientOwner::None).unwrap()),
        ["jupyterhub"]
    );
    assert_eq!(
        ids(
            oauth_clients::find_by_identifiers(conn, &["service-svc", "jupyterhub", "nope"])
                .unwrap()
        ),
        ["jupyterhub", "service-svc"]
    );
    assert_eq!(
        ids(oauth_clients::list(conn).unwrap()),
        ["jupyterhub", "jupyterhub-user-alice", "service-svc"]
    );

    // Deleting a client takes its tokens and codes; the built-in client is protected.
    oauth_codes::insert(
        conn,
        &NewOAuthCode {
            code_hash: "ch",
            client_id: "jupyterhub-user-alice",
            user_id: alice.id,
            session_id: None,
            redirect_uri: "/user/alice/oauth_callback",
            scopes: &[],
            code_challenge: None,
            code_challenge_method: None,
            expires_at: t + Duration::minutes(5),
        },
    )
    .unwrap();
    assert!(oauth_clients::delete_by_identifier(conn, "jupyterhub-user-alice").unwrap());
    assert!(!oauth_clients::delete_by_identifier(conn, "jupyterhub-user-alice").unwrap());
    assert!(api_tokens::find_by_id(conn, token.id).unwrap().is_none());
    assert!(
        oauth_codes::find_valid(conn, "ch", "jupyterhub-user-alice", t)
            .unwrap()
            .is_none()
    );
    let plain = user_token(conn, alice.id, "keep");
    assert!(!oauth_clients::delete_by_identifier(conn, JUPYTERHUB_CLIENT_ID).unwrap());
    assert!(api_tokens::find_by_id(conn, plain.id).unwrap().is_some());
}

// === oauth_codes ===

pub fn oauth_codes_single_use(conn: &mut DbConnection) {
    let t = t0();
    let alice = user(conn, "alice");
    client(conn, "c1", ClientOwner::None);
    client(conn, "c2", ClientOwner::None);
    let code = |hash, client_id, expires_at| NewOAuthCode {
        code_hash: hash,
        client_id,
        user_id: alice.id,
        session_id: Some("sess"),
        redirect_uri: "/cb",
        scopes: &[],
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
        code_challenge_method: Some("S256"),
        expires_at,
    };
    let live = oauth_codes::insert(conn, &code("live", "c1", t + Duration::minutes(5))).unwrap();
    assert_eq!(live.code_challenge_method.as_deref(), Some("S256"));
    assert_eq!(live.session_id.as_deref(), Some("sess"));
    oauth_codes::insert(conn, &code("old", "c1", t - Duration::seconds(1))).unwrap();
    assert!(is_unique_violation(
        oauth_codes::insert(conn, &code("live", "c2", t)).unwrap_err()
    ));
    let unknown_client = oauth_codes::insert(conn, &code("x", "nope", t)).unwrap_err();
    assert!(matches!(
        DbError::from(unknown_client),
        DbError::ForeignKeyViolation(_)
    ));

    assert!(
        oauth_codes::find_valid(conn, "live", "c2", t)
            .unwrap()
            .is_none()
    );
    assert!(
        oauth_codes::find_valid(conn, "old", "c1", t)
            .unwrap()
            .is_none()
    );
    assert_eq!(
        oauth_codes::find_valid(conn, "live", "c1", t)
            .unwrap()
            .map(|c| c.id),
        Some(live.id)
    );
    // Still there after a find: PKCE failures must not burn the code.
    assert!(oauth_codes::take(conn, "live", "c2", t).unwrap().is_none());
    assert_eq!(
        oauth_codes::take(conn, "live", "c1", t)
            .unwrap()
            .map(|c| c.id),
        Some(live.id)
    );
    assert!(oauth_codes::take(conn, "live", "c1", t).unwrap().is_none());
    assert!(oauth_codes::take(conn, "old", "c1", t).unwrap().is_none());

    assert_eq!(oauth_codes::purge_expired(conn, t).unwrap(), 1);
    let again = oauth_codes::insert(conn, &code("again", "c1", t + Duration::minutes(5))).unwrap();
    oauth_codes::delete(conn, again.id).unwrap();
    assert!(matches!(
        oauth_codes::delete(conn, again.id),
        Err(diesel::result::Error::NotFound)
    ));
}

// === shares ===

pub fn shares_grant_revoke_and_list(conn: &mut DbConnection) {
    let t = t0();
    let alice = user(conn, "alice");
    let bob = user(conn, "bob");
    let carol = user(conn, "carol");
    let team = groups::insert(conn, "team", &Map::new()).unwrap();
    groups::add_members(conn, team.id, &[carol.id, bob.id]).unwrap();
    let default = spawners::find_or_insert(conn, alice.id, "").unwrap();
    let gpu = spawners::find_or_insert(conn, alice.id, "gpu").unwrap();

    let access = scopes(&["access:servers!server=alice/"]);
    let s1 = shares::grant(conn, default.id, ShareWith::User(bob.id), &access, t).unwrap();
    assert_eq!(
        (s1.user_id, s1.group_id, s1.recipient()),
        (Some(bob.id), None, Some(ShareWith::User(bob.id)))
    );
    assert_eq!(s1.created_at, t);
    // Granting again merges (sorted, no duplicates) and keeps the creation time.
    let merged = shares::grant(
        conn,
        default.id,
        ShareWith::User(bob.id),
        &scopes(&["read:servers!server=alice/", "access:servers!server=alice/"]),
        t + Duration::hours(1),
    )
    .unwrap();
    assert_eq!(merged.id, s1.id);
    assert_eq!(
        merged.scopes,
        ["access:servers!server=alice/", "read:servers!server=alice/"]
    );
    assert_eq!(merged.created_at, t);

    let g1 = shares::grant(conn, default.id, ShareWith::Group(team.id), &access, t).unwrap();
    assert_eq!(g1.recipient(), Some(ShareWith::Group(team.id)));
    let s2 = shares::grant(
        conn,
        gpu.id,
        ShareWith::User(carol.id),
        &scopes(&["access:servers!server=alice/gpu"]),
        t,
    )
    .unwrap();

    assert_eq!(
        shares::find(conn, default.id, ShareWith::User(bob.id))
            .unwrap()
            .map(|s| s.id),
        Some(s1.id)
    );
    assert!(
        shares::find(conn, gpu.id, ShareWith::User(bob.id))
            .unwrap()
            .is_none()
    );
    assert_eq!(
        shares::find_by_id(conn, g1.id).unwrap().map(|s| s.id),
        Some(g1.id)
    );

    let ids = |p: Page<shares::Share>| {
        (
            p.total,
            p.items.into_iter().map(|s| s.id).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        ids(shares::list_for_spawner(conn, default.id, PageRequest::ALL).unwrap()),
        (2, vec![s1.id, g1.id])
    );
    assert_eq!(
        ids(shares::list_for_owner(conn, alice.id, PageRequest::new(1, 1)).unwrap()),
        (3, vec![g1.id])
    );
    assert_eq!(
        ids(shares::list_for_owner(conn, bob.id, PageRequest::ALL).unwrap()),
        (0, vec![])
    );
    assert_eq!(
        ids(shares::list_for_user(conn, carol.id, false, PageRequest::ALL).unwrap()),
        (1, vec![s2.id])
    );
    assert_eq!(
        ids(shares::list_for_user(conn, carol.id, true, PageRequest::ALL).unwrap()),
        (2, vec![g1.id, s2.id])
    );
    assert_eq!(
        ids(shares::list_for_user(conn, bob.id, true, PageRequest::ALL).unwrap()),
        (2, vec![s1.id, g1.id])
    );
    assert_eq!(
        ids(shares::list_for_user(conn, alice.id, true, PageRequest::ALL).unwrap()),
        (0, vec![])
    );
    assert_eq!(
        ids(shares::list_for_group(conn, team.id, PageRequest::ALL).unwrap()),
        (1, vec![g1.id])
    );

    let page = shares::list_for_owner(conn, alice.id, PageRequest::ALL).unwrap();
    let details = shares::details(conn, page.items).unwrap();
    let summary: Vec<_> = details
        .iter()
        .map(|d| {
            (
                d.owner_name.as_str(),
                d.server_name.as_str(),
                d.user_name.as_deref(),
                d.group_name.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("alice", "", Some("bob"), None),
            ("alice", "", None, Some("team")),
            ("alice", "gpu", Some("carol"), None),
        ]
    );
    assert!(
        details
            .iter()
            .all(|d| d.server_phase == ServerPhase::Stopped)
    );
    assert!(shares::details(conn, Vec::new()).unwrap().is_empty());

    // What a recipient gains, directly or through a group, with current names.
    let received = |conn: &mut DbConnection, user_id| {
        shares::received_scopes(conn, user_id)
            .unwrap()
            .into_iter()
            .map(|r| (r.owner_name, r.server_name, r.scopes))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        received(conn, carol.id),
        [
            ("alice".to_string(), String::new(), access.clone()),
            (
                "alice".to_string(),
                "gpu".to_string(),
                scopes(&["access:servers!server=alice/gpu"])
            ),
        ]
    );
    assert_eq!(received(conn, bob.id).len(), 2);
    assert!(received(conn, alice.id).is_empty());

    // Partial revoke keeps the share; revoking the rest removes it.
    let left = shares::revoke(conn, default.id, ShareWith::User(bob.id), Some(&access))
        .unwrap()
        .unwrap();
    assert_eq!(left.scopes, ["read:servers!server=alice/"]);
    assert!(
        shares::revoke(
            conn,
            default.id,
            ShareWith::User(bob.id),
            Some(&scopes(&["read:servers!server=alice/"]))
        )
        .unwrap()
        .is_none()
    );
    assert!(
        shares::find(conn, default.id, ShareWith::User(bob.id))
            .unwrap()
            .is_none()
    );
    assert!(
        shares::revoke(conn, default.id, ShareWith::User(bob.id), None)
            .unwrap()
            .is_none()
    );
    assert!(
        shares::revoke(conn, default.id, ShareWith::Group(team.id), None)
            .unwrap()
            .is_none()
    );

    shares::grant(conn, default.id, ShareWith::Group(team.id), &access, t).unwrap();
    groups::delete(conn, team.id).unwrap();
    assert_eq!(
        shares::list_for_spawner(conn, default.id, PageRequest::ALL)
            .unwrap()
            .total,
        0
    );

    shares::grant(conn, default.id, ShareWith::User(carol.id), &access, t).unwrap();
    assert_eq!(shares::delete_for_spawner(conn, default.id).unwrap(), 1);
    shares::delete(conn, s2.id).unwrap();
    assert!(matches!(
        shares::delete(conn, s2.id),
        Err(diesel::result::Error::NotFound)
    ));
}

// === share_codes ===

pub fn share_codes_lifecycle(conn: &mut DbConnection) {
    let t = t0();
    let alice = user(conn, "alice");
    let bob = user(conn, "bob");
    let default = spawners::find_or_insert(conn, alice.id, "").unwrap();
    let gpu = spawners::find_or_insert(conn, alice.id, "gpu").unwrap();
    let bob_server = spawners::find_or_insert(conn, bob.id, "").unwrap();
    let access = scopes(&["access:servers!server=alice/"]);
    let new = |spawner_id, hashed, expires_at| NewShareCode {
        spawner_id,
        prefix: "abcd",
        hashed,
        scopes: &access,
        expires_at,
    };

    let c1 =
        share_codes::insert(conn, &new(default.id, "h1", Some(t + Duration::days(1)))).unwrap();
    assert_eq!(
        (c1.exchange_count, c1.last_exchanged_at, c1.scopes.clone()),
        (0, None, access.clone())
    );
    let c2 = share_codes::insert(conn, &new(gpu.id, "h2", None)).unwrap();
    let old =
        share_codes::insert(conn, &new(default.id, "h3", Some(t - Duration::seconds(1)))).unwrap();
    let c4 = share_codes::insert(conn, &new(bob_server.id, "h4", None)).unwrap();
    assert!(is_unique_violation(
        share_codes::insert(conn, &new(default.id, "h1", None)).unwrap_err()
    ));

    let found: Vec<i32> = share_codes::find_by_prefix(conn, "abcd", t)
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(found, [c1.id, c2.id, c4.id]);
    assert_eq!(
        share_codes::find_by_id(conn, old.id).unwrap().map(|c| c.id),
        Some(old.id)
    );

    let ids = |p: Page<share_codes::ShareCode>| {
        (
            p.total,
            p.items.into_iter().map(|c| c.id).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        ids(share_codes::list_for_spawner(conn, default.id, t, PageRequest::ALL).unwrap()),
        (1, vec![c1.id])
    );
    assert_eq!(
        ids(share_codes::list_for_owner(conn, alice.id, t, PageRequest::ALL).unwrap()),
        (2, vec![c1.id, c2.id])
    );
    assert_eq!(
        ids(share_codes::list_for_owner(conn, alice.id, t, PageRequest::new(1, 5)).unwrap()),
        (2, vec![c2.id])
    );

    share_codes::record_exchange(conn, c1.id, t).unwrap();
    share_codes::record_exchange(conn, c1.id, t + Duration::seconds(1)).unwrap();
    let exchanged = share_codes::find_by_id(conn, c1.id).unwrap().unwrap();
    assert_eq!(
        (exchanged.exchange_count, exchanged.last_exchanged_at),
        (2, Some(t + Duration::seconds(1)))
    );
    assert!(matches!(
        share_codes::record_exchange(conn, 9999, t),
        Err(diesel::result::Error::NotFound)
    ));

    assert_eq!(share_codes::purge_expired(conn, t).unwrap(), 1);
    assert_eq!(share_codes::delete_for_spawner(conn, gpu.id).unwrap(), 1);
    share_codes::delete(conn, c1.id).unwrap();
    assert!(matches!(
        share_codes::delete(conn, c1.id),
        Err(diesel::result::Error::NotFound)
    ));
    spawners::delete(conn, bob_server.id).unwrap();
    assert!(share_codes::find_by_id(conn, c4.id).unwrap().is_none());
}

// === transactions ===

pub fn write_transaction_is_atomic(conn: &mut DbConnection) {
    let result: Result<(), diesel::result::Error> = write_transaction(conn, |conn| {
        user(conn, "inside");
        Err(diesel::result::Error::RollbackTransaction)
    });
    assert!(result.is_err());
    assert!(users::find_by_name(conn, "inside").unwrap().is_none());

    // Nested calls are savepoints: the inner failure undoes only the inner work.
    write_transaction(conn, |conn| {
        user(conn, "outer");
        let inner: Result<(), diesel::result::Error> = write_transaction(conn, |conn| {
            user(conn, "inner");
            Err(diesel::result::Error::RollbackTransaction)
        });
        assert!(inner.is_err());
        Ok::<_, diesel::result::Error>(())
    })
    .unwrap();
    assert!(users::find_by_name(conn, "outer").unwrap().is_some());
    assert!(users::find_by_name(conn, "inner").unwrap().is_none());

    // A unique violation inside the transaction surfaces as such, and nothing is kept.
    let err = write_transaction(conn, |conn| {
        user(conn, "fresh");
        users::insert(
            conn,
            &NewUser {
                name: "outer",
                admin: false,
                cookie_id: "other",
            },
        )
    })
    .unwrap_err();
    assert!(is_unique_violation(err));
    assert!(users::find_by_name(conn, "fresh").unwrap().is_none());
}

/// Calls `$runner!(name, ...)` with the name of every suite function, so each harness declares
/// one `#[test]` per function and none can be forgotten.
macro_rules! for_each_suite_test {
    ($runner:ident) => {
        $runner!(
            schema_is_seeded,
            schema_rs_matches_the_migrations,
            users_crud,
            users_insert_many_is_all_or_nothing,
            users_list_filters_sorts_and_pages,
            user_delete_cascades,
            spawners_lifecycle,
            spawner_delete_cascades,
            groups_and_membership,
            groups_insert_many_is_all_or_nothing,
            roles_and_grants,
            services_crud,
            api_tokens_lookup_and_lifecycle,
            api_tokens_oauth_revocation,
            oauth_clients_registration,
            oauth_codes_single_use,
            shares_grant_revoke_and_list,
            share_codes_lifecycle,
            write_transaction_is_atomic,
        );
    };
}
