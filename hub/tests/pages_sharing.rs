//! Sharing on the pages: the home page's sharing panels (who has access, share links) and its
//! "shared with you" list, and the accept-share page (what a code shares, accepting it with
//! `_xsrf`, `next`, refusals, escaping); each on SQLite and PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::large_futures,
    missing_docs
)]

mod common;

use std::time::Duration;

use common::TestHub;
use hub::db::models::spawners::{self, ServerPhase};
use hub::db::models::users;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Users may share their servers and see who they share with (as JupyterHub's docs advise).
const SHARING: &str = "[hub]\nextra_user_scopes = [\"shares!user\", \"read:users:name\", \"read:groups:name\"]\n\n[groups.course]\nusers = [\"carol\"]\n";

async fn wait_running(hub: &TestHub, user: &str) {
    for _ in 0..200 {
        let name = user.to_owned();
        let phase = hub
            .state
            .db
            .run(move |c| {
                let u = users::find_by_name(c, &name)?.unwrap();
                spawners::find(c, u.id, "")
            })
            .await
            .unwrap()
            .map(|r| r.phase);
        if phase == Some(ServerPhase::Running) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{user}'s server never ran");
}

/// A share code for alice's default server, made through the API; returns the code.
async fn share_code(alice: &common::Browser) -> String {
    let (status, body) = alice
        .with_xsrf(
            Method::POST,
            "/share-codes/alice/",
            Some(json!({"expires_in": 3600})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let url = body["accept_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/hub/accept-share?code="), "{url}");
    body["code"].as_str().unwrap().to_owned()
}

hub_test!(
    home_lists_shares_and_links,
    config = SHARING,
    |hub| async move {
        let alice = hub.browser("alice").await;
        hub.browser("bob").await;
        hub.browser("carol").await;
        let home = hub.get_page("/hub/home", Some(&alice.cookie)).await;
        assert_eq!(home.status, StatusCode::OK);
        // Every user has a default server to share, even before its first start.
        assert!(home.body.contains("id=\"share-default\""), "{}", home.body);
        assert!(
            home.body.contains(
                "data-shares-api=\"shares/alice/\" data-codes-api=\"share-codes/alice/\""
            )
        );
        assert!(home.body.contains("Nobody else has access."));
        assert!(home.body.contains("No share links."));
        assert!(!home.body.contains("id=\"shared-with-me\""));

        // The panel's forms call these.
        let (status, body) = alice
            .with_xsrf(Method::POST, "/shares/alice/", Some(json!({"user": "bob"})))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = alice
            .with_xsrf(
                Method::POST,
                "/shares/alice/",
                Some(json!({"group": "course"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        share_code(&alice).await;
        let home = hub.get_page("/hub/home", Some(&alice.cookie)).await;
        assert!(
            home.body
                .contains("<tr data-kind=\"user\" data-name=\"bob\">")
        );
        assert!(
            home.body
                .contains("<tr data-kind=\"group\" data-name=\"course\">")
        );
        assert!(
            home.body
                .contains("aria-label=\"Stop sharing with group course\"")
        );
        assert!(
            home.body
                .contains("data-share-action=\"revoke-code\" data-code-id=\"sc_")
        );
        assert!(home.body.contains("(2 with access, 1 links)"));
        assert!(home.body.contains("Stop sharing your default server"));

        // Bob and carol (through her group) see it under "Shared with you", not running yet.
        let bob = hub.browser("bob").await;
        let home = hub.get_page("/hub/home", Some(&bob.cookie)).await;
        assert!(home.body.contains("id=\"shared-with-me\""), "{}", home.body);
        assert!(
            home.body
                .contains("<tr data-owner=\"alice\" data-server=\"\">")
        );
        assert!(home.body.contains("Not running"));
        assert!(home.body.contains("data-api=\"users/bob/shared/alice/\""));
        let carol = hub.browser("carol").await;
        let home = hub.get_page("/hub/home", Some(&carol.cookie)).await;
        assert!(
            home.body.contains("(through the group course)"),
            "{}",
            home.body
        );
        assert!(!home.body.contains("data-share-action=\"leave\""));

        // Once it runs, they get a link to open it.
        let (status, _) = alice
            .with_xsrf(Method::POST, "/users/alice/server", None)
            .await;
        assert!(status.is_success());
        wait_running(hub, "alice").await;
        let home = hub.get_page("/hub/home", Some(&bob.cookie)).await;
        assert!(
        home.body
            .contains("<a class=\"button primary\" href=\"/user/alice/\" aria-label=\"Open alice\">Open</a>"),
        "{}",
        home.body
    );
        // Giving up access, as the button does.
        let (status, _) = bob
            .with_xsrf(Method::DELETE, "/users/bob/shared/alice/", None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let home = hub.get_page("/hub/home", Some(&bob.cookie)).await;
        assert!(!home.body.contains("id=\"shared-with-me\""));
        // Revoking a share, as the panel's button does.
        let (status, body) = alice
            .with_xsrf(
                Method::PATCH,
                "/shares/alice/",
                Some(json!({"group": "course"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let home = hub.get_page("/hub/home", Some(&carol.cookie)).await;
        assert!(!home.body.contains("id=\"shared-with-me\""));
    }
);

hub_test!(no_sharing_panel_without_the_scope, |hub| async move {
    let alice = hub.browser("alice").await;
    let home = hub.get_page("/hub/home", Some(&alice.cookie)).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(!home.body.contains("id=\"sharing\""), "{}", home.body);
});

hub_test!(accept_share_page, config = SHARING, |hub| async move {
    let alice = hub.browser("alice").await;
    let code = share_code(&alice).await;
    let bob = hub.browser("bob").await;
    let path = format!("/hub/accept-share?code={code}");

    // Logged out: to the login page, and back here afterwards.
    let resp = hub.get_page(&path, None).await;
    assert_eq!(resp.status, StatusCode::FOUND);
    let (login, query) = resp.location().unwrap().split_once('?').unwrap();
    assert_eq!(login, "/hub/login");
    let next: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(next, [("next".to_owned(), path.clone())]);

    let page = hub.get_page(&path, Some(&bob.cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains("<strong>alice</strong> shares their server with you.")
    );
    assert!(page.body.contains("It is not running now"));
    assert!(
        page.body
            .contains("<code>access:servers!server=alice/</code>")
    );
    assert!(page.body.contains("This link works until <time datetime="));
    assert!(
        page.body
            .contains(&format!("name=\"code\" value=\"{code}\""))
    );
    assert!(
        page.body
            .contains("<form method=\"post\" action=\"/hub/accept-share\"")
    );
    // Looking does not accept.
    let (_, shared) = bob.with_xsrf(Method::GET, "/users/bob/shared", None).await;
    assert_eq!(shared["items"], json!([]));

    // Accepting needs the form's _xsrf.
    let resp = hub
        .page(
            Method::POST,
            "/hub/accept-share",
            Some(&bob.cookie),
            Some(&[("code", code.as_str())]),
            &[],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    let xsrf = page.xsrf_field().unwrap();
    let resp = hub
        .page(
            Method::POST,
            "/hub/accept-share",
            Some(&bob.cookie),
            Some(&[("_xsrf", xsrf.as_str()), ("code", code.as_str())]),
            &[],
        )
        .await;
    // The server is not running: home, where it is listed.
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.body);
    assert_eq!(resp.location(), Some("/hub/home"));
    let (_, shared) = bob.with_xsrf(Method::GET, "/users/bob/shared", None).await;
    assert_eq!(shared["items"][0]["server"]["user"]["name"], "alice");
    assert_eq!(
        shared["items"][0]["scopes"],
        json!(["access:servers!server=alice/"])
    );

    // Running: straight to it, or to a valid `next`.
    let (status, _) = alice
        .with_xsrf(Method::POST, "/users/alice/server", None)
        .await;
    assert!(status.is_success());
    wait_running(hub, "alice").await;
    let carol = hub.browser("carol").await;
    let page = hub.get_page(&path, Some(&carol.cookie)).await;
    assert!(page.body.contains("It is running now."));
    let xsrf = page.xsrf_field().unwrap();
    let resp = hub
        .page(
            Method::POST,
            "/hub/accept-share",
            Some(&carol.cookie),
            Some(&[("_xsrf", xsrf.as_str()), ("code", code.as_str())]),
            &[],
        )
        .await;
    assert_eq!(resp.location(), Some("/user/alice/"));
    let resp = hub
        .page(
            Method::POST,
            "/hub/accept-share?next=%2Fuser%2Falice%2Flab",
            Some(&carol.cookie),
            Some(&[("_xsrf", xsrf.as_str()), ("code", code.as_str())]),
            &[],
        )
        .await;
    assert_eq!(resp.location(), Some("/user/alice/lab"));
    let resp = hub
        .page(
            Method::POST,
            "/hub/accept-share?next=https%3A%2F%2Fevil.example%2F",
            Some(&carol.cookie),
            Some(&[("_xsrf", xsrf.as_str()), ("code", code.as_str())]),
            &[],
        )
        .await;
    assert_eq!(resp.location(), Some("/user/alice/"));
    // Every acceptance counts.
    let (_, codes) = alice
        .with_xsrf(Method::GET, "/share-codes/alice/", None)
        .await;
    assert_eq!(codes["items"][0]["exchange_count"], 4);
});

hub_test!(
    accept_share_refusals_and_escaping,
    config = SHARING,
    |hub| async move {
        let alice = hub.browser("alice").await;
        let code = share_code(&alice).await;
        let bob = hub.browser("bob").await;

        let page = hub.get_page("/hub/accept-share", Some(&bob.cookie)).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(page.body.contains("needs the code of a share link"));
        for bad in ["nope", "%00%ff", &"x".repeat(5000)] {
            let page = hub
                .get_page(&format!("/hub/accept-share?code={bad}"), Some(&bob.cookie))
                .await;
            assert_eq!(page.status, StatusCode::NOT_FOUND, "{bad}");
            assert!(page.body.contains("Share not found or expired"));
        }
        // The owner's own link.
        let page = hub
            .get_page(
                &format!("/hub/accept-share?code={code}"),
                Some(&alice.cookie),
            )
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(page.body.contains("You can&#x27;t share with yourself!"));
        let resp = hub
            .page(
                Method::POST,
                "/hub/accept-share",
                Some(&alice.cookie),
                Some(&[("_xsrf", alice.xsrf.as_str()), ("code", code.as_str())]),
                &[],
            )
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.body);

        // GHSA-c4gm-pwx9-9w8j: `next` is escaped wherever the page shows it.
        let evil = "/hub/home?x='\"><img/src=x/onerror=alert(1)>";
        let page = hub
            .get_page(
                &format!(
                    "/hub/accept-share?code={code}&next={}",
                    form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
                ),
                Some(&bob.cookie),
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(!page.body.contains("<img/src"), "{}", page.body);
        assert!(page.body.contains("<code id=\"share-next\">/hub/home?x=&#x27;&quot;&gt;&lt;img/src=x/onerror=alert(1)&gt;</code>"), "{}", page.body);
        assert!(
        page.body.contains(
            "action=\"/hub/accept-share?next=%2Fhub%2Fhome%3Fx%3D%27%22%3E%3Cimg%2Fsrc%3Dx%2Fonerror%3Dalert%281%29%3E\""
        ),
        "{}",
        page.body
    );
        // An expired or revoked code stops working.
        let (status, _) = alice
            .with_xsrf(Method::DELETE, "/share-codes/alice/", None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let page = hub
            .get_page(&format!("/hub/accept-share?code={code}"), Some(&bob.cookie))
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
    }
);
