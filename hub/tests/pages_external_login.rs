//! Logins at an identity provider elsewhere: `/hub/login` offers (or with `auto_login` goes
//! straight to) `/hub/oauth_login`, which sends the browser to the provider with a `state`
//! bound to the browser by a signed cookie; `/hub/oauth_callback` accepts only that state, runs
//! the hub's login rules and logs the user in.

#![allow(clippy::unwrap_used, reason = "test helpers panic with a line number")]

mod common;

use std::sync::Arc;

use common::{Backend, CookieJar, PageResponse, TestHub};
use hub_plugin::test_util::ExternalAuthenticator;
use reqwest::StatusCode;

const PROVIDER: &str = "https://idp.example.org/authorize";

/// A hub whose authenticator logs people in at [`PROVIDER`]; `config` defaults to the
/// `dummy` class, whose rules let everyone in.
async fn hub_with(backend: Backend, config: &str) -> TestHub {
    let config = if config.is_empty() {
        "[authenticator]\nclass = \"dummy\"\n"
    } else {
        config
    };
    TestHub::start_with_authenticator(
        backend,
        config,
        None,
        Arc::new(ExternalAuthenticator {
            provider_url: PROVIDER.to_owned(),
        }),
    )
    .await
}

/// The query parameter `name` of `url`.
fn param(url: &str, name: &str) -> Option<String> {
    let parsed = url::Url::parse(url).unwrap();
    parsed
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Starts a login with `next`; the jar keeps the state cookie. Returns the provider URL.
async fn start(hub: &TestHub, jar: &mut CookieJar, next: &str) -> String {
    let resp = hub
        .get_page(
            &format!("/hub/oauth_login?next={next}"),
            Some(&jar.header()),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.body);
    jar.update(&resp);
    let cookie = resp.set_cookie("jupyterhub-oauth-state").unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("Max-Age=600"), "{cookie}");
    let location = resp.location().unwrap().to_owned();
    assert!(location.starts_with(PROVIDER), "{location}");
    location
}

async fn callback(hub: &TestHub, jar: &CookieJar, state: &str, code: &str) -> PageResponse {
    hub.get_page(
        &format!("/hub/oauth_callback?code={code}&state={state}"),
        Some(&jar.header()),
    )
    .await
}

async fn check_flow(backend: Backend) {
    let hub = hub_with(backend, "").await;
    // The login page offers the provider instead of a password form.
    let page = hub.get_page("/hub/login?next=%2Fhub%2Ftoken", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("href=\"/hub/oauth_login?next=%2Fhub%2Ftoken\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("name=\"password\""));

    let mut jar = CookieJar::default();
    let provider = start(&hub, &mut jar, "%2Fhub%2Ftoken").await;
    let state = param(&provider, "state").unwrap();
    assert_eq!(state.len(), 30);
    let redirect_uri = param(&provider, "redirect_uri").unwrap();
    assert_eq!(redirect_uri, format!("{}/hub/oauth_callback", hub.origin));

    let done = callback(&hub, &jar, &state, "ok:Alice").await;
    assert_eq!(done.status, StatusCode::FOUND, "{}", done.body);
    assert_eq!(done.location(), Some("/hub/token"));
    assert!(done.set_cookie("jupyterhub-hub-login").is_some());
    assert!(
        done.set_cookie("jupyterhub-oauth-state")
            .unwrap()
            .contains("Max-Age=0")
    );
    jar.update(&done);
    // Logged in as the normalised name.
    let home = hub.get_page("/hub/home", Some(&jar.header())).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("alice"), "{}", home.body);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_login_flow_sqlite() {
    check_flow(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_login_flow_postgres() {
    check_flow(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_not_started_by_this_browser_are_refused() {
    let hub = hub_with(Backend::Sqlite, "").await;
    let mut jar = CookieJar::default();
    let provider = start(&hub, &mut jar, "%2F").await;
    let state = param(&provider, "state").unwrap();

    // Login CSRF: a callback link made by someone else, in a browser without the cookie.
    let stranger = callback(&hub, &CookieJar::default(), &state, "ok:mallory").await;
    assert_eq!(stranger.status, StatusCode::FORBIDDEN);
    assert!(stranger.set_cookie("jupyterhub-hub-login").is_none());
    // A state that is not this login's.
    let wrong = callback(&hub, &jar, "x".repeat(30).as_str(), "ok:mallory").await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(wrong.set_cookie("jupyterhub-hub-login").is_none());
    // A forged state cookie.
    let forged = hub
        .get_page(
            &format!("/hub/oauth_callback?code=ok:mallory&state={state}"),
            Some("jupyterhub-oauth-state=\"2|1:0|10:1|22:jupyterhub-oauth-state|8:eHgKLw==|00\""),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    // The provider's refusal, and its failure.
    let refused = callback(&hub, &jar, &state, "nope").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.set_cookie("jupyterhub-hub-login").is_none());
    let failed = callback(&hub, &jar, &state, "fail").await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    assert!(
        !failed.body.contains("could not be reached\n"),
        "no internals"
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_rules_apply_and_next_is_checked() {
    let hub = hub_with(
        Backend::Sqlite,
        "[authenticator]\nclass = \"dummy\"\nblocked_users = [\"eve\"]\n",
    )
    .await;
    let mut jar = CookieJar::default();
    // A blocked user is refused even though the provider vouched for them.
    let provider = start(&hub, &mut jar, "%2F").await;
    let state = param(&provider, "state").unwrap();
    let blocked = callback(&hub, &jar, &state, "ok:eve").await;
    assert_eq!(blocked.status, StatusCode::FORBIDDEN);
    assert!(blocked.set_cookie("jupyterhub-hub-login").is_none());

    // An off-site `next` never survives the round trip.
    let mut jar = CookieJar::default();
    let provider = start(&hub, &mut jar, "https%3A%2F%2Fevil.example.org%2F").await;
    let state = param(&provider, "state").unwrap();
    let done = callback(&hub, &jar, &state, "ok:bob").await;
    assert_eq!(done.status, StatusCode::FOUND);
    assert_eq!(done.location(), Some("/hub/spawn"));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_login_goes_straight_to_the_provider() {
    let hub = hub_with(
        Backend::Sqlite,
        "[authenticator]\nclass = \"dummy\"\nauto_login = true\n",
    )
    .await;
    let page = hub.get_page("/hub/login?next=%2Fhub%2Fhome", None).await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert_eq!(page.location(), Some("/hub/oauth_login?next=%2Fhub%2Fhome"));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_external_authenticator_there_is_no_oauth_login() {
    let hub = TestHub::start(Backend::Sqlite, "").await;
    let page = hub.get_page("/hub/oauth_login", None).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let login = hub.get_page("/hub/login", None).await;
    assert!(login.body.contains("name=\"password\""));
    hub.stop().await;
}
