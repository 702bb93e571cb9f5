//! The admin page (`admin-ui`), the API calls its script makes (paged, searched and sorted
//! users; groups with search, members and properties; bulk actions), its speed with 10,000
//! users, and what operators can change without rebuilding: static files and `custom.css`
//! from `hub.static_paths`, the announcement banner; each on SQLite and PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::large_futures,
    missing_docs
)]

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestHub};
use diesel::RunQueryDsl;
use hub::db::models::users;
use hub::identity::tokens;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PAGINATED: &str = "application/jupyterhub-pagination+json";

async fn make_admin(hub: &TestHub, name: &str) -> common::Browser {
    let browser = hub.browser(name).await;
    let n = name.to_owned();
    hub.state
        .db
        .run(move |c| {
            let u = users::find_by_name(c, &n)?.unwrap();
            users::set_admin(c, u.id, true)
        })
        .await
        .unwrap();
    hub.state.identities.invalidate();
    browser
}

/// `GET /hub/api/<path>` as the admin page's script sends it: cookie, `_xsrf`, the pagination
/// media type.
async fn paged(hub: &TestHub, who: &common::Browser, path: &str) -> (StatusCode, Value) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let resp = hub
        .client
        .get(hub.api_url(&format!("/{path}{sep}_xsrf={}", who.xsrf)))
        .header("Cookie", &who.cookie)
        .header("Accept", PAGINATED)
        .header("Sec-Fetch-Mode", "cors")
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn names(reply: &Value) -> Vec<String> {
    reply["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect()
}

hub_test!(admin_page_needs_admin_ui, |hub| async move {
    let anon = hub.get_page("/hub/admin", None).await;
    assert_eq!(anon.status, StatusCode::FOUND);
    assert_eq!(anon.location(), Some("/hub/login?next=%2Fhub%2Fadmin"));
    let bob = hub.browser("bob").await;
    let page = hub.get_page("/hub/admin", Some(&bob.cookie)).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("admin-ui"));
    let home = hub.get_page("/hub/home", Some(&bob.cookie)).await;
    assert!(!home.body.contains("href=\"/hub/admin\""));

    let root = make_admin(hub, "root").await;
    let page = hub.get_page("/hub/admin", Some(&root.cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains("<div id=\"admin\" data-page-limit=\"50\" data-me=\"root\"")
    );
    assert!(page.body.contains("<script src=\"/hub/static/admin.js?v="));
    assert!(page.body.contains("<template id=\"user-row-template\">"));
    assert!(
        page.body
            .contains("<label for=\"user-filter\">Search by name</label>")
    );
    assert!(
        page.body
            .contains("<option value=\"50\" selected>50</option>")
    );
    assert!(page.body.contains("<option value=\"200\">200</option>"));
    assert!(
        page.body
            .contains("href=\"/hub/admin\" aria-current=\"page\"")
    );
    let script = hub.get_page("/hub/static/admin.js", None).await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(
        script
            .body
            .contains("application/jupyterhub-pagination+json")
    );
});

hub_test!(
    admin_page_page_sizes_follow_the_limits,
    config = "[hub]\napi_page_default_limit = 30\napi_page_max_limit = 60\n",
    |hub| async move {
        let root = make_admin(hub, "root").await;
        let page = hub.get_page("/hub/admin", Some(&root.cookie)).await;
        assert!(page.body.contains("data-page-limit=\"30\""));
        assert!(
            page.body
                .contains("<option value=\"30\" selected>30</option>")
        );
        assert!(page.body.contains("<option value=\"50\">50</option>"));
        assert!(!page.body.contains("<option value=\"100\">"));
    }
);

hub_test!(what_the_admin_script_calls, |hub| async move {
    let root = make_admin(hub, "root").await;
    // Add users (the "Add users" form).
    let (status, body) = root
        .with_xsrf(
            Method::POST,
            "/users",
            Some(json!({"usernames": ["ann", "ben", "cat", "dan"], "admin": false})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Search, sort, page.
    let (status, reply) = paged(
        hub,
        &root,
        "users?include_stopped_servers=1&offset=0&limit=2&sort=-name",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(names(&reply), ["root", "dan"]);
    assert_eq!(reply["_pagination"]["total"], 5);
    assert_eq!(reply["_pagination"]["next"]["offset"], 2);
    let (_, reply) = paged(hub, &root, "users?name_filter=A&sort=name").await;
    assert_eq!(names(&reply), ["ann", "cat", "dan"]);
    let (_, reply) = paged(hub, &root, "users?state=active").await;
    assert_eq!(names(&reply), Vec::<String>::new());
    // The admin flag.
    let (status, body) = root
        .with_xsrf(Method::PATCH, "/users/ann", Some(json!({"admin": true})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["admin"], true);
    // Bulk: start, add to a group, stop, delete.
    for name in ["ben", "cat"] {
        let (status, _) = root
            .with_xsrf(Method::POST, &format!("/users/{name}/server"), None)
            .await;
        assert!(status.is_success(), "{status}");
    }
    let (_, reply) = paged(hub, &root, "users?state=ready&include_stopped_servers=1").await;
    assert_eq!(names(&reply), ["ben", "cat"]);
    assert_eq!(reply["items"][0]["servers"][""]["ready"], true);
    let (status, body) = root
        .with_xsrf(Method::POST, "/groups/physics", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = root
        .with_xsrf(
            Method::POST,
            "/groups/physics/users",
            Some(json!({"users": ["ben", "cat"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = root
        .with_xsrf(
            Method::PUT,
            "/groups/physics/properties",
            Some(json!({"course": "PHY-101"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for name in ["ben", "cat"] {
        let (status, _) = root
            .with_xsrf(Method::DELETE, &format!("/users/{name}/server"), None)
            .await;
        assert!(status.is_success());
    }
    let (status, _) = root.with_xsrf(Method::DELETE, "/users/dan", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Groups: search (an addition to JupyterHub's API), members, properties.
    for group in ["chemistry", "philosophy"] {
        let (status, _) = root
            .with_xsrf(Method::POST, &format!("/groups/{group}"), Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, reply) = paged(hub, &root, "groups?offset=0&limit=50&name_filter=PHY").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&reply), ["physics", "philosophy"]);
    assert_eq!(reply["items"][0]["users"], json!(["ben", "cat"]));
    assert_eq!(
        reply["items"][0]["properties"],
        json!({"course": "PHY-101"})
    );
    let (_, reply) = paged(hub, &root, "groups?name_filter=%25").await;
    assert_eq!(reply["_pagination"]["total"], 0);
    let (_, reply) = paged(hub, &root, "groups?limit=1").await;
    assert_eq!(reply["_pagination"]["total"], 3);
    assert_eq!(reply["_pagination"]["next"]["offset"], 1);
    // Without the cookie's _xsrf, nothing changes.
    let (status, _) = root.without_xsrf(Method::DELETE, "/users/ann", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
});

/// Adds `n` users named `user00000`… in one transaction; every third has some activity.
async fn many_users(hub: &TestHub, n: usize) {
    hub.state
        .db
        .run(move |conn| {
            let names: Vec<String> = (0..n).map(|i| format!("user{i:05}")).collect();
            let cookies: Vec<String> = (0..n).map(|_| tokens::new_session_id()).collect();
            let new: Vec<users::NewUser<'_>> = names
                .iter()
                .zip(&cookies)
                .map(|(name, cookie_id)| users::NewUser {
                    name,
                    admin: false,
                    cookie_id,
                })
                .collect();
            users::insert_many(conn, &new)?;
            diesel::sql_query("UPDATE users SET last_activity = created WHERE id % 3 = 0")
                .execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
}

async fn ten_thousand_users(backend: Backend) {
    let hub = TestHub::start(backend, "").await;
    let root = make_admin(&hub, "root").await;
    many_users(&hub, 10_000).await;
    let started = Instant::now();
    let page = hub.get_page("/hub/admin", Some(&root.cookie)).await;
    let page_time = started.elapsed();
    assert_eq!(page.status, StatusCode::OK);
    // What the page asks for on load, on paging, sorting and searching.
    let calls = [
        "users?include_stopped_servers=1&offset=0&limit=50&sort=id",
        "users?include_stopped_servers=1&offset=9950&limit=50&sort=id",
        "users?include_stopped_servers=1&offset=0&limit=200&sort=-last_activity",
        "users?include_stopped_servers=1&offset=5000&limit=50&sort=name",
        "users?include_stopped_servers=1&offset=0&limit=50&sort=name&name_filter=99",
        "users?include_stopped_servers=1&offset=0&limit=50&state=inactive",
        "groups?offset=0&limit=50",
    ];
    let mut slowest = Duration::ZERO;
    for call in calls {
        let started = Instant::now();
        let (status, reply) = paged(&hub, &root, call).await;
        let took = started.elapsed();
        slowest = slowest.max(took);
        assert_eq!(status, StatusCode::OK, "{call}: {reply}");
        println!("{backend:?} {call}: {took:?}");
    }
    let (_, reply) = paged(&hub, &root, calls[1]).await;
    assert_eq!(reply["_pagination"]["total"], 10_001);
    assert_eq!(reply["items"].as_array().unwrap().len(), 50);
    let (_, reply) = paged(&hub, &root, calls[4]).await;
    // user00099, user00199, …, user09999, user00990…: every name holding "99".
    assert_eq!(reply["_pagination"]["total"], 280);
    let (_, reply) = paged(&hub, &root, calls[2]).await;
    assert!(reply["items"][0]["last_activity"].is_string());
    println!("{backend:?} admin page: {page_time:?}; slowest API page: {slowest:?}");
    // Generous bounds for an unoptimised build on a busy machine; typical times are a few ms.
    assert!(page_time < Duration::from_secs(1), "{page_time:?}");
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_users_sqlite() {
    ten_thousand_users(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_users_postgres() {
    ten_thousand_users(Backend::Postgres).await;
}

// === what operators change without rebuilding ===

async fn operator_files(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let statics = dir.path().join("static");
    std::fs::create_dir_all(statics.join("img")).unwrap();
    std::fs::write(statics.join("custom.css"), "body { background: #fff; }\n").unwrap();
    std::fs::write(statics.join("img/banner.png"), b"\x89PNG fake").unwrap();
    std::fs::write(statics.join(".secret"), "no").unwrap();
    std::fs::write(dir.path().join("outside.txt"), "no").unwrap();
    let config = format!(
        "[hub]\nstatic_paths = [\"{}\"]\nannouncement = \"Maintenance <b>tonight</b> at 20:00\"\n",
        statics.display()
    );
    let hub = TestHub::start(backend, &config).await;
    let alice = hub.browser("alice").await;
    let home = hub.get_page("/hub/home", Some(&alice.cookie)).await;
    assert!(
        home.body.contains(
            "<div class=\"announcement\" role=\"status\" id=\"announcement\"><p>Maintenance &lt;b&gt;tonight&lt;/b&gt; at 20:00</p></div>"
        ),
        "{}",
        home.body
    );
    let login = hub.get_page("/hub/login", None).await;
    assert!(login.body.contains("id=\"announcement\""));
    assert!(
        home.body
            .contains("<link rel=\"stylesheet\" href=\"/hub/static/custom.css?v=")
    );
    // Operator files are served, and revalidated.
    let css = hub.get_page("/hub/static/custom.css", None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.body, "body { background: #fff; }\n");
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
    assert_eq!(css.headers["cache-control"], "no-cache");
    let etag = css.headers["etag"].to_str().unwrap().to_owned();
    let again = hub
        .page(
            Method::GET,
            "/hub/static/custom.css",
            None,
            None,
            &[("If-None-Match", etag.as_str())],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    // A change is seen at once.
    std::fs::write(statics.join("custom.css"), "body { color: #000; }\n").unwrap();
    let css = hub.get_page("/hub/static/custom.css", None).await;
    assert_eq!(css.body, "body { color: #000; }\n");
    let png = hub.get_page("/hub/static/img/banner.png", None).await;
    assert_eq!(png.status, StatusCode::OK);
    assert_eq!(png.headers["content-type"], "image/png");
    // Built-in files still come from the binary.
    let style = hub.get_page("/hub/static/style.css", None).await;
    assert!(style.body.contains("--accent"));
    assert_eq!(style.headers["cache-control"], "public, max-age=86400");
    // Nothing outside the directory, and no hidden files.
    for bad in [
        "/hub/static/../outside.txt",
        "/hub/static/%2e%2e/outside.txt",
        "/hub/static/img/..%2f..%2foutside.txt",
        "/hub/static/.secret",
        "/hub/static//etc/passwd",
        "/hub/static/img",
    ] {
        let resp = hub.get_page(bad, None).await;
        assert!(
            resp.status == StatusCode::NOT_FOUND || resp.status.is_redirection(),
            "{bad}: {}",
            resp.status
        );
        assert_ne!(resp.body, "no", "{bad}");
    }
    // An operator's style.css replaces the built-in one.
    std::fs::write(statics.join("style.css"), "/* mine */").unwrap();
    let style = hub.get_page("/hub/static/style.css", None).await;
    assert_eq!(style.body, "/* mine */");
    hub.stop().await;

    // The logo from `hub.logo_file`.
    std::fs::write(dir.path().join("logo.png"), b"our logo").unwrap();
    let config = format!(
        "[hub]\nlogo_file = \"{}\"\n",
        dir.path().join("logo.png").display()
    );
    let hub = TestHub::start(backend, &config).await;
    let login = hub.get_page("/hub/login", None).await;
    assert!(
        login
            .body
            .contains("<img src=\"/hub/logo\" alt=\"JupyterHub home\"")
    );
    let logo = hub.get_page("/hub/logo", None).await;
    assert_eq!(logo.headers["content-type"], "image/png");
    assert_eq!(logo.body.as_bytes(), b"our logo");
    hub.stop().await;

    // `template_vars.announcement` takes the place of `hub.announcement`.
    let config = "[hub]\nannouncement = \"from the key\"\ntemplate_vars = { announcement = \"from the vars\" }\n";
    let hub = TestHub::start(backend, config).await;
    let login = hub.get_page("/hub/login", None).await;
    assert!(
        login.body.contains("<p>from the vars</p>"),
        "{}",
        login.body
    );
    assert!(!login.body.contains("custom.css"));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_files_sqlite() {
    operator_files(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_files_postgres() {
    operator_files(Backend::Postgres).await;
}
