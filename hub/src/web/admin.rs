//! `/hub/admin`: the administration page (scope `admin-ui`). The page itself is a frame; its
//! script (`admin.js`) works through the REST API, as JupyterHub's admin page does
//! (hub-protocol §9.1): users listed a page at a time with the pagination media type, searched
//! (`name_filter`), filtered by server state and sorted on the server; bulk start, stop,
//! delete and add-to-group; adding users and changing the admin flag; each user's servers with
//! start and stop; groups searched and paged, with members and properties.
//!
//! What the caller may do is what the API lets them do: the page shows the API's refusals.

use axum::extract::State;
use http::StatusCode;
use minijinja::context;

use crate::state::AppState;
use crate::web::{Browser, ErrorPage, PageResult, render};

/// Page sizes the user list offers (each capped at `hub.api_page_max_limit`).
const PAGE_SIZES: [u32; 4] = [25, 50, 100, 200];

/// `GET /hub/admin`.
pub async fn admin_page(State(state): State<AppState>, browser: Browser) -> PageResult {
    let identity = browser.require_user(&state)?;
    if !identity.scopes.holds("admin-ui") {
        return Err(ErrorPage::new(StatusCode::FORBIDDEN)
            .message("The admin page needs the admin-ui permission.")
            .halt(&state, Some(&browser)));
    }
    let hub = &state.config.hub;
    let max = hub.api_page_max_limit.get();
    let default = hub.api_page_default_limit.get().min(max);
    let mut sizes: Vec<u32> = PAGE_SIZES.iter().copied().filter(|n| *n <= max).collect();
    if !sizes.contains(&default) {
        sizes.push(default);
        sizes.sort_unstable();
    }
    Ok(render(
        &state,
        Some(&browser),
        StatusCode::OK,
        "admin.html",
        context! {
            page_limit => default,
            page_sizes => sizes,
            allow_named_servers => hub.allow_named_servers,
            me => identity.principal.name(),
        },
    ))
}
