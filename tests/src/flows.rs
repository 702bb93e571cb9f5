//! Browser flows through the hub's pages: the login form, and following a start through
//! `/hub/spawn` and the spawn-pending page to the server.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use reqwest::StatusCode;

use crate::browser::{Browser, Response, describe, form_field};
use crate::encode_component;
use crate::hubproc::Deadline;

/// Opens the login page (with `next`), takes `_xsrf` from the form, and posts the form.
/// Returns the response to the POST (not followed).
///
/// # Errors
/// When the login page is not a form with `_xsrf`, or on connection errors.
pub async fn submit_login(
    browser: &mut Browser,
    user: &str,
    password: &str,
    next: Option<&str>,
) -> anyhow::Result<Response> {
    let target = match next {
        Some(next) => format!("/hub/login?next={}", encode_component(next)),
        None => "/hub/login".to_owned(),
    };
    let page = browser.get(&target).await?;
    ensure!(
        page.status == StatusCode::OK,
        "{page}: the login page should be 200\n{:.500}",
        page.body
    );
    let xsrf = form_field(&page.body, "_xsrf")
        .with_context(|| format!("{page}: the login form has no _xsrf field"))?;
    browser
        .post_form(
            &target,
            &[
                ("_xsrf", xsrf.as_str()),
                ("username", user),
                ("password", password),
            ],
        )
        .await
}

/// Logs in through the form and checks that the hub accepted it: a redirect with the hub's
/// login cookie. Returns the response to the POST (not followed).
///
/// # Errors
/// When the login is refused.
pub async fn log_in(
    browser: &mut Browser,
    user: &str,
    password: &str,
    next: Option<&str>,
) -> anyhow::Result<Response> {
    let post = submit_login(browser, user, password, next).await?;
    ensure!(
        post.is_redirect() && browser.cookie("jupyterhub-hub-login", "/hub/").is_some(),
        "{post}: {user}'s login should redirect with the hub's login cookie (Set-Cookie: {:?})\n\
         {:.500}",
        post.set_cookies(),
        post.body
    );
    Ok(post)
}

/// Follows `first` like a browser, waiting on the spawn-pending page of `user`'s default
/// server (reloading it, as its script would navigate once the server is up) until it sends
/// the browser on, for up to `within`. Returns every hop, with repeated progress pages left
/// out.
///
/// # Errors
/// On request errors, or when the page does not move on in time.
pub async fn follow_through_spawn(
    browser: &mut Browser,
    user: &str,
    first: Response,
    within: Duration,
) -> anyhow::Result<Vec<Response>> {
    let pending = format!("/hub/spawn-pending/{user}");
    let mut hops = browser.follow(first, 20).await?;
    let deadline = Deadline::new(format!("{user}'s spawn-pending page to move on"), within);
    loop {
        let last = hops.last().context("no hops")?;
        if !(last.status == StatusCode::OK && last.url.path() == pending) {
            return Ok(hops);
        }
        if let Err(e) = deadline.tick().await {
            anyhow::bail!("{e}; hops so far:\n{}", describe(&hops));
        }
        let target = last.target();
        let again = browser.get(&target).await?;
        let more = browser.follow(again, 20).await?;
        if more.len() == 1 && more[0].status == StatusCode::OK && more[0].url.path() == pending {
            continue;
        }
        hops.extend(more);
    }
}
