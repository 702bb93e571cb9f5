//! The JSON models of the API (hub-protocol §1.2), built from database rows and filtered by
//! the caller's scopes.

use chrono::NaiveDateTime;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

use crate::access::Identity;
use crate::api::extract::db_error;
use crate::api::model_views::{ServerView, UserView};
use crate::db::DbConnection;
use crate::db::models::spawners::Spawner;
use crate::db::models::{groups, roles, services, spawners, users};
use crate::error::ApiResult;
use crate::rbac::fields::{retain_keys, service_model_keys};
use crate::rbac::{ExpandContext, ScopeSet};
use crate::state::AppState;

/// Characters Python's `quote(name, safe='@~')` leaves alone besides ASCII letters and digits.
const NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b'@');

/// A name as it appears in URLs (`/user/<name>/`).
pub fn url_name(name: &str) -> String {
    utf8_percent_encode(name, NAME).to_string()
}

/// A timestamp as JupyterHub writes it: ISO 8601, UTC, `Z`, microseconds only when non-zero.
pub fn iso(ts: Option<NaiveDateTime>) -> Value {
    match ts {
        None => Value::Null,
        Some(t) => Value::String(iso_text(t)),
    }
}

/// `2026-01-02T03:04:05Z`, or with `.ffffff` microseconds when there are any. Written by hand:
/// list endpoints format thousands of these per request, and `strftime` parsing dominated.
pub fn iso_text(t: NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    /// Appends `value` as exactly `width` decimal digits (callers pass values that fit).
    fn digits(out: &mut String, value: u32, width: u32) {
        for place in (0..width).rev() {
            let digit = value / 10u32.pow(place) % 10;
            out.push(char::from(b'0' + digit as u8));
        }
    }
    let mut out = String::with_capacity(27);
    let year = t.year();
    // Years outside 0..=9999 cannot be stored by the hub; keep them readable anyway.
    match u32::try_from(year) {
        Ok(y) if y <= 9999 => digits(&mut out, y, 4),
        _ => out.push_str(&format!("{year:+}")),
    }
    for (sep, value) in [
        ('-', t.month()),
        ('-', t.day()),
        ('T', t.hour()),
        (':', t.minute()),
        (':', t.second()),
    ] {
        out.push(sep);
        digits(&mut out, value, 2);
    }
    // A leap second's fraction runs past one second; JupyterHub never writes those.
    let micros = t.and_utc().timestamp_subsec_micros().min(999_999);
    if micros != 0 {
        out.push('.');
        digits(&mut out, micros, 6);
    }
    out.push('Z');
    out
}

/// Query flags such as `include_stopped_servers`: present means on, unless `0` or `false`.
pub fn flag(value: Option<&str>) -> bool {
    value.is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "0" | "false"))
}

/// The user's URL prefix, `<base_url>user/<name>/`.
pub fn user_url(state: &AppState, user: &str) -> String {
    format!("{}user/{}/", state.config.hub.base_url, url_name(user))
}

/// A server's URL prefix: the user's URL, plus `<server>/` for a named server.
pub fn server_url(state: &AppState, user: &str, server: &str) -> String {
    if server.is_empty() {
        user_url(state, user)
    } else {
        format!("{}{}/", user_url(state, user), url_name(server))
    }
}

/// The server model (all keys; `state` only when `with_state`).
pub fn server_model(
    state: &AppState,
    user: &str,
    spawner: &Spawner,
    with_state: bool,
) -> Map<String, Value> {
    match serde_json::to_value(ServerView::new(state, user, spawner, with_state)) {
        Ok(Value::Object(model)) => model,
        _ => Map::new(),
    }
}

/// Everything known about a user, for building models.
#[derive(Debug, Clone)]
pub struct UserFacts {
    pub user: users::User,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    pub spawners: Vec<Spawner>,
}

/// Loads the facts for several users in a fixed number of queries.
pub fn load_user_facts(
    conn: &mut DbConnection,
    list: Vec<users::User>,
) -> diesel::QueryResult<Vec<UserFacts>> {
    let ids: Vec<i32> = list.iter().map(|u| u.id).collect();
    let mut group_names = groups::names_by_user(conn, &ids)?;
    let mut role_names = roles::names_by_user(conn, &ids)?;
    let mut by_user: std::collections::HashMap<i32, Vec<Spawner>> =
        std::collections::HashMap::new();
    for s in spawners::list_for_users(conn, &ids)? {
        by_user.entry(s.user_id).or_default().push(s);
    }
    Ok(list
        .into_iter()
        .map(|user| UserFacts {
            groups: group_names.remove(&user.id).unwrap_or_default(),
            roles: role_names.remove(&user.id).unwrap_or_default(),
            spawners: by_user.remove(&user.id).unwrap_or_default(),
            user,
        })
        .collect())
}

/// The user model as `scopes` may see it (hub-protocol §1.2): keys gated by scope, servers
/// filtered one by one, stopped servers only with `include_stopped`. An empty object when
/// `scopes` may see nothing of the user.
pub fn user_model(
    state: &AppState,
    scopes: &ScopeSet,
    facts: &UserFacts,
    include_stopped: bool,
) -> Value {
    UserView::new(state, scopes, facts, include_stopped)
        .and_then(|view| serde_json::to_value(view).ok())
        .unwrap_or_else(|| Value::Object(Map::new()))
}

/// `GET /user` for a user: the model with the owner's identify scopes added for filtering.
///
/// # Errors
/// Database failures.
pub async fn whoami_user_model(
    state: &AppState,
    caller: &Identity,
    user: &users::User,
    include_stopped: bool,
) -> ApiResult<Value> {
    let list = vec![user.clone()];
    let facts = state
        .db
        .run(move |conn| load_user_facts(conn, list))
        .await
        .map_err(db_error)?;
    let mut scopes = caller.scopes.clone();
    let identify = state
        .registry
        .expand(
            [
                format!("read:users:name!user={}", user.name),
                format!("read:users:groups!user={}", user.name),
            ],
            &ExpandContext::default(),
        )
        .unwrap_or_default();
    scopes.extend(&identify);
    Ok(facts.first().map_or(Value::Null, |f| {
        user_model(state, &scopes, f, include_stopped)
    }))
}

/// The service model as `scopes` may see it.
pub fn service_model(scopes: &ScopeSet, service: &services::Service, roles: &[String]) -> Value {
    let keys = service_model_keys(scopes, &service.name);
    let url = service.url.clone().unwrap_or_default();
    let prefix = if url.is_empty() {
        String::new()
    } else {
        format!("/services/{}/", url_name(&service.name))
    };
    let mut m = Map::new();
    m.insert("kind".into(), json!("service"));
    m.insert("name".into(), json!(service.name));
    m.insert("admin".into(), json!(service.admin));
    m.insert("roles".into(), json!(roles));
    m.insert("url".into(), json!(url));
    m.insert("prefix".into(), json!(prefix));
    m.insert("command".into(), Value::Null);
    m.insert("pid".into(), json!(0));
    m.insert("info".into(), Value::Object(service.info.clone()));
    m.insert("display".into(), json!(service.display));
    retain_keys(&mut m, &keys);
    Value::Object(m)
}

/// [`service_model`] with the `command` and `pid` of a service the hub runs.
pub fn managed_service_model(
    state: &AppState,
    scopes: &ScopeSet,
    service: &services::Service,
    roles: &[String],
) -> Value {
    let mut model = service_model(scopes, service, roles);
    if let (Value::Object(m), Some(command)) = (&mut model, state.services.command(&service.name)) {
        if m.contains_key("command") {
            m.insert("command".into(), json!(command));
        }
        if m.contains_key("pid") {
            m.insert("pid".into(), json!(state.services.pid(&service.name)));
        }
    }
    model
}

/// `GET /user` for a service.
///
/// # Errors
/// Database failures.
pub async fn whoami_service_model(
    state: &AppState,
    caller: &Identity,
    service: &services::Service,
) -> ApiResult<Value> {
    let id = service.id;
    let roles = state
        .db
        .run(move |conn| roles::names_by_service(conn, &[id]))
        .await
        .map_err(db_error)?
        .remove(&id)
        .unwrap_or_default();
    let mut scopes = caller.scopes.clone();
    let identify = state
        .registry
        .expand(
            [format!("read:services:name!service={}", service.name)],
            &ExpandContext::default(),
        )
        .unwrap_or_default();
    scopes.extend(&identify);
    Ok(managed_service_model(state, &scopes, service, &roles))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_the_strftime_forms() {
        let cases = [
            (2026, 1, 2, 3, 4, 5, 0),
            (1999, 12, 31, 23, 59, 59, 999_999),
            (2026, 6, 30, 0, 0, 0, 1),
            (1, 1, 1, 0, 0, 0, 120_000),
        ];
        for (y, mo, d, h, mi, s, us) in cases {
            let t = chrono::NaiveDate::from_ymd_opt(y, mo, d)
                .unwrap()
                .and_hms_micro_opt(h, mi, s, us)
                .unwrap();
            let expected = if us == 0 {
                t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
            } else {
                t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
            };
            assert_eq!(iso_text(t), expected);
        }
    }

    #[test]
    fn names_in_urls() {
        assert_eq!(url_name("alice"), "alice");
        assert_eq!(url_name("a@b~c.d_e-f"), "a@b~c.d_e-f");
        assert_eq!(url_name("has space/x"), "has%20space%2Fx");
        assert_eq!(url_name("üñ"), "%C3%BC%C3%B1");
    }

    #[test]
    fn timestamps() {
        let t = chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_micro_opt(10, 56, 24, 532_628)
            .unwrap();
        assert_eq!(iso(Some(t)), json!("2026-11-23T10:56:24.532628Z"));
        let t = t.with_nanosecond(0).unwrap();
        assert_eq!(iso(Some(t)), json!("2026-11-23T10:56:24Z"));
        assert_eq!(iso(None), Value::Null);
    }

    use chrono::Timelike;
}
