//! `POST /users/{name}/activity` (hub-protocol §8.1): single-user servers (and other clients with
//! `users:activity`) report when a user or one of their servers was last active.
//!
//! Body: `{"last_activity": ts?, "servers": {name: {"last_activity": ts}}?}`, at least one of
//! the two. Timestamps may carry any UTC offset and are stored as naive UTC; a timestamp without
//! an offset is UTC. Stored values only move forward. The reply is 200 with an empty body.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use http::StatusCode;
use serde_json::Value;

use crate::api::extract::{Caller, db_error, require};
use crate::api::models::{UserFacts, iso, load_user_facts};
use crate::api::python::{py_repr, py_str_repr, truthy};
use crate::api::users::{JsonBody, NameParam, empty_json_ok};
use crate::db::models::{spawners, users};
use crate::error::{ApiError, ApiResult};
use crate::rbac::{Target, UserGroups};
use crate::state::AppState;

/// Routes under `/hub/api`.
pub fn router() -> Router<AppState> {
    Router::new().route("/users/{name}/activity", post(post_activity))
}

/// Activity further ahead than this is refused (clock skew is tolerated up to it).
const MAX_FUTURE: TimeDelta = TimeDelta::minutes(59);

const SERVERS_SHAPE: &str =
    "servers must be a dict of the form {server_name: {last_activity: timestamp}}";

async fn post_activity(
    State(state): State<AppState>,
    caller: Caller,
    NameParam(name): NameParam,
    body: JsonBody,
) -> ApiResult<Response> {
    let lookup = name.clone();
    let facts: Option<UserFacts> = state
        .db
        .run(move |conn| match users::find_by_name(conn, &lookup)? {
            Some(user) => Ok(load_user_facts(conn, vec![user])?.pop()),
            None => Ok(None),
        })
        .await
        .map_err(db_error)?;
    let no_groups: Vec<String> = Vec::new();
    let membership = UserGroups {
        user: &name,
        groups: facts.as_ref().map_or(&no_groups, |f| &f.groups),
    };
    require(
        &caller,
        &["users:activity"],
        &Target::User(&name),
        &membership,
    )?;
    let Some(facts) = facts else {
        return Err(ApiError::not_found(format!(
            "No such user: {}",
            py_str_repr(&name)
        )));
    };
    let Some(Value::Object(body)) = body.into_value()? else {
        return Err(ApiError::bad_request("body must be a json dict"));
    };
    let last_activity = body.get("last_activity").filter(|v| truthy(v));
    let servers = body.get("servers").filter(|v| truthy(v));
    if last_activity.is_none() && servers.is_none() {
        return Err(ApiError::bad_request(
            "body must contain at least one of `last_activity` or `servers`",
        ));
    }
    let now = Utc::now().naive_utc();
    let mut server_activity: Vec<(String, NaiveDateTime)> = Vec::new();
    if let Some(servers) = servers {
        let Value::Object(servers) = servers else {
            return Err(ApiError::bad_request(SERVERS_SHAPE));
        };
        for (server, info) in servers {
            // Every user has a default server (JupyterHub creates its record on first use).
            if !server.is_empty() && !facts.spawners.iter().any(|s| &s.name == server) {
                return Err(ApiError::bad_request(format!(
                    "No such server '{server}' for user {}",
                    facts.user.name
                )));
            }
            let Some(ts) = info.as_object().and_then(|o| o.get("last_activity")) else {
                return Err(ApiError::bad_request(SERVERS_SHAPE));
            };
            server_activity.push((server.clone(), parse_timestamp(ts, now)?));
        }
    }
    let user_activity = match last_activity {
        Some(ts) => Some(parse_timestamp(ts, now)?),
        None => None,
    };
    let user_id = facts.user.id;
    state
        .db
        .transaction(move |conn| {
            if let Some(ts) = user_activity {
                users::touch_last_activity(conn, user_id, ts)?;
            }
            for (server, ts) in &server_activity {
                let spawner = spawners::find_or_insert(conn, user_id, server)?;
                spawners::touch_last_activity(conn, spawner.id, *ts)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| match e {
            // The user was deleted meanwhile.
            crate::db::DbError::NotFound | crate::db::DbError::ForeignKeyViolation(_) => {
                ApiError::bare(StatusCode::NOT_FOUND)
            }
            other => db_error(other),
        })?;
    Ok(empty_json_ok())
}

/// A timestamp from the body as naive UTC: 400 `Not a valid timestamp: …` when it does not
/// parse, 400 when it is more than 59 minutes ahead of `now`.
///
/// # Errors
/// The refusal.
pub fn parse_timestamp(value: &Value, now: NaiveDateTime) -> ApiResult<NaiveDateTime> {
    let parsed = value.as_str().and_then(parse_timestamp_text);
    let Some(ts) = parsed else {
        return Err(ApiError::bad_request(format!(
            "Not a valid timestamp: {}",
            py_repr(value)
        )));
    };
    if ts - now > MAX_FUTURE {
        let shown = match iso(Some(ts)) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        return Err(ApiError::bad_request(format!(
            "Rejecting activity from more than an hour in the future: {shown}"
        )));
    }
    Ok(ts)
}

/// Parses the timestamp forms clients send: ISO 8601 (`2024-01-02T03:04:05.678Z`, with `T` or a
/// space, optional seconds and fraction, `Z`/`UTC`/`GMT`/`±HH[:MM]` or no zone, or the compact
/// `20240102T030405`), a bare date, or RFC 2822. Returns naive UTC, truncated to microseconds;
/// a value without a zone is taken as UTC.
pub fn parse_timestamp_text(text: &str) -> Option<NaiveDateTime> {
    let s = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc2822(s) {
        return Some(dt.naive_utc());
    }
    let mut cur = Cursor::new(s);
    let year = cur.digits(4)?;
    let dashed = cur.eat(b'-');
    let month = cur.digits(2)?;
    if dashed && !cur.eat(b'-') {
        return None;
    }
    let day = cur.digits(2)?;
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    if cur.done() {
        return date.and_hms_opt(0, 0, 0);
    }
    if !(cur.eat(b'T') || cur.eat(b't') || cur.eat(b' ')) {
        return None;
    }
    let hour = cur.digits(2)?;
    let colons = cur.eat(b':');
    let mut minute = 0;
    let mut second = 0;
    let mut micros = 0;
    if let Some(m) = cur.digits(2) {
        minute = m;
        let has_seconds = if colons { cur.eat(b':') } else { true };
        if has_seconds && let Some(sec) = cur.digits(2) {
            second = sec;
            if cur.eat(b'.') || cur.eat(b',') {
                micros = cur.fraction_micros()?;
            }
        } else if has_seconds && colons {
            return None;
        }
    } else if colons {
        return None;
    }
    let time = NaiveTime::from_hms_micro_opt(hour, minute, second, micros)?;
    let naive = date.and_time(time);
    cur.skip_spaces();
    let offset_seconds = cur.zone()?;
    if !cur.done() {
        return None;
    }
    naive.checked_sub_signed(TimeDelta::seconds(i64::from(offset_seconds)))
}

/// A byte cursor over ASCII text.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let slice = self.bytes.get(self.pos..self.pos + n)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.pos += n;
        Some(
            slice
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')),
        )
    }

    /// One or more fraction digits, as microseconds (extra digits are dropped).
    fn fraction_micros(&mut self) -> Option<u32> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = self.bytes.get(start..self.pos)?;
        if digits.is_empty() {
            return None;
        }
        let mut micros = 0u32;
        for i in 0..6 {
            micros = micros * 10 + digits.get(i).map_or(0, |d| u32::from(d - b'0'));
        }
        Some(micros)
    }

    /// A zone: nothing (UTC), `Z`, `UTC`, `GMT`, or `±HH`, `±HHMM`, `±HH:MM`. Seconds east.
    fn zone(&mut self) -> Option<i32> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Some(0);
        }
        if rest.eq_ignore_ascii_case(b"z")
            || rest.eq_ignore_ascii_case(b"utc")
            || rest.eq_ignore_ascii_case(b"gmt")
        {
            self.pos = self.bytes.len();
            return Some(0);
        }
        let sign = match self.peek()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        self.pos += 1;
        let hours = self.digits(2)?;
        let colon = self.eat(b':');
        let minutes = match self.digits(2) {
            Some(m) => m,
            None if colon => return None,
            None => 0,
        };
        if hours > 23 || minutes > 59 {
            return None;
        }
        Some(sign * i32::try_from(hours * 3600 + minutes * 60).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> String {
        parse_timestamp_text(text)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
            .unwrap_or_else(|| "invalid".into())
    }

    #[test]
    fn timestamp_forms() {
        assert_eq!(at("2024-01-02T03:04:05Z"), "2024-01-02T03:04:05.000000");
        assert_eq!(
            at("2024-01-02T03:04:05.123456789Z"),
            "2024-01-02T03:04:05.123456"
        );
        assert_eq!(at("2024-01-02T03:04:05.5"), "2024-01-02T03:04:05.500000");
        assert_eq!(
            at("2024-01-02T05:04:05+02:00"),
            "2024-01-02T03:04:05.000000"
        );
        assert_eq!(at("2024-01-02 00:04:05-0300"), "2024-01-02T03:04:05.000000");
        assert_eq!(at("2024-01-02T03:04"), "2024-01-02T03:04:00.000000");
        assert_eq!(at("20240102T030405"), "2024-01-02T03:04:05.000000");
        assert_eq!(at("2024-01-02"), "2024-01-02T00:00:00.000000");
        assert_eq!(
            at("Tue, 02 Jan 2024 03:04:05 +0000"),
            "2024-01-02T03:04:05.000000"
        );
        for bad in [
            "x",
            "",
            "2024-13-01",
            "2024-01-02T25:00",
            "2024-01-02T03:04:05 nonsense",
            "2024-01-02T03:04:05+24:00",
            "2024-01-02T03:",
            "１２３",
        ] {
            assert_eq!(at(bad), "invalid", "{bad:?}");
        }
    }

    #[test]
    fn future_and_messages() {
        let now = parse_timestamp_text("2024-01-02T00:00:00Z").unwrap();
        let e = parse_timestamp(&json!("2024-01-02T01:00:00Z"), now).unwrap_err();
        assert_eq!(
            e.message.as_deref(),
            Some("Rejecting activity from more than an hour in the future: 2024-01-02T01:00:00Z")
        );
        assert!(parse_timestamp(&json!("2024-01-02T00:58:00Z"), now).is_ok());
        let e = parse_timestamp(&json!(5), now).unwrap_err();
        assert_eq!(e.message.as_deref(), Some("Not a valid timestamp: 5"));
        let e = parse_timestamp(&json!("x"), now).unwrap_err();
        assert_eq!(e.message.as_deref(), Some("Not a valid timestamp: 'x'"));
    }
}
