//! Pagination as JupyterHub does it (hub-protocol §1.1).
//!
//! The envelope is used only when the client sends
//! `Accept: application/jupyterhub-pagination+json`; otherwise lists are bare and cut at the
//! maximum page size.

use axum::response::IntoResponse;
use http::HeaderMap;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};

/// The media type that asks for the pagination envelope.
pub const PAGINATION_MEDIA_TYPE: &str = "application/jupyterhub-pagination+json";

/// A page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Items to skip.
    pub offset: usize,
    /// Items to return.
    pub limit: usize,
    /// Whether to wrap the items in the envelope.
    pub envelope: bool,
}

/// Whether the `Accept` header asks for the envelope: its comma-separated parts are compared
/// exactly, ignoring case.
pub fn wants_envelope(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| part.trim().eq_ignore_ascii_case(PAGINATION_MEDIA_TYPE))
}

impl Page {
    /// Reads `offset` and `limit` from the query. Without the envelope the limit defaults to
    /// the maximum.
    ///
    /// # Errors
    /// 400 when `offset` or `limit` is not an integer.
    pub fn parse(
        headers: &HeaderMap,
        query: Option<&str>,
        default_limit: usize,
        max_limit: usize,
    ) -> ApiResult<Self> {
        let envelope = wants_envelope(headers);
        let mut offset: i64 = 0;
        let mut limit: Option<i64> = None;
        let bad =
            || ApiError::bad_request("Invalid argument type, offset and limit must be integers");
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*k {
                "offset" => offset = v.trim().parse().map_err(|_| bad())?,
                "limit" => limit = Some(v.trim().parse().map_err(|_| bad())?),
                _ => {}
            }
        }
        let max = i64::try_from(max_limit).unwrap_or(i64::MAX);
        let default = if envelope {
            i64::try_from(default_limit).unwrap_or(max)
        } else {
            max
        };
        let limit = limit.unwrap_or(default).clamp(1, max);
        Ok(Self {
            offset: usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX),
            limit: usize::try_from(limit).unwrap_or(1),
            envelope,
        })
    }

    /// The reply: a bare list, or the envelope with `total` and the `next` page.
    pub fn reply(&self, items: Vec<Value>, total: usize, request_url: &url::Url) -> Value {
        let items = Value::Array(items);
        if !self.envelope {
            return items;
        }
        self.wrap(items, total, request_url)
    }

    /// The same reply as [`Page::reply`], serialised straight from `items` (which need not
    /// become `Value`s first): a JSON response.
    pub fn reply_json<T: Serialize>(
        &self,
        items: &[T],
        total: usize,
        request_url: &url::Url,
    ) -> axum::response::Response {
        #[derive(Serialize)]
        struct Envelope<'a, T> {
            items: &'a [T],
            _pagination: Value,
        }
        let body = if self.envelope {
            serde_json::to_vec(&Envelope {
                items,
                _pagination: self.pagination(total, request_url),
            })
        } else {
            serde_json::to_vec(items)
        };
        match body {
            Ok(bytes) => (
                [(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                )],
                bytes,
            )
                .into_response(),
            Err(e) => ApiError::internal(e).into_response(),
        }
    }

    /// The envelope around already-serialised `items` (a list, or a dict for `/proxy`).
    pub fn wrap(&self, items: Value, total: usize, request_url: &url::Url) -> Value {
        json!({
            "items": items,
            "_pagination": self.pagination(total, request_url),
        })
    }

    /// The `_pagination` object: this page, `total`, and the `next` page (or `null`).
    fn pagination(&self, total: usize, request_url: &url::Url) -> Value {
        let next_offset = self.offset.saturating_add(self.limit);
        let next = if next_offset < total {
            let mut url = request_url.clone();
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != "offset" && k != "limit")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            {
                let mut q = url.query_pairs_mut();
                q.clear();
                for (k, v) in &kept {
                    q.append_pair(k, v);
                }
                q.append_pair("limit", &self.limit.to_string());
                q.append_pair("offset", &next_offset.to_string());
            }
            json!({"offset": next_offset, "limit": self.limit, "url": url.as_str()})
        } else {
            Value::Null
        };
        json!({"offset": self.offset, "limit": self.limit, "total": total, "next": next})
    }
}

/// The URL the client asked for (the base of `next.url`), as the hub saw it.
pub fn request_url(headers: &HeaderMap, uri: &http::Uri) -> url::Url {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = header("x-forwarded-proto")
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| matches!(*v, "http" | "https"))
        .unwrap_or("http");
    let host = header("host").unwrap_or("127.0.0.1");
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    url::Url::parse(&format!("{scheme}://{host}{path}"))
        .or_else(|_| url::Url::parse(&format!("http://127.0.0.1{path}")))
        .unwrap_or_else(|_| url::Url::parse("http://127.0.0.1/").expect("a constant URL parses"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(envelope: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        if envelope {
            h.insert(
                http::header::ACCEPT,
                HeaderValue::from_static(
                    "application/json, Application/JupyterHub-Pagination+JSON",
                ),
            );
        }
        h
    }

    #[test]
    fn limits() {
        let p = Page::parse(&headers(false), None, 50, 200).unwrap();
        assert_eq!((p.offset, p.limit, p.envelope), (0, 200, false));
        let p = Page::parse(&headers(true), None, 50, 200).unwrap();
        assert_eq!((p.limit, p.envelope), (50, true));
        let p = Page::parse(&headers(true), Some("limit=1000&offset=-5"), 50, 200).unwrap();
        assert_eq!((p.offset, p.limit), (5, 200));
        let p = Page::parse(&headers(true), Some("limit=0"), 50, 200).unwrap();
        assert_eq!(p.limit, 1);
        let e = Page::parse(&headers(true), Some("limit=abc"), 50, 200).unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn envelope_next_url() {
        let p = Page::parse(&headers(true), Some("limit=2&state=ready"), 50, 200).unwrap();
        let url =
            url::Url::parse("http://127.0.0.1:8000/hub/api/users?limit=2&state=ready").unwrap();
        let v = p.reply(vec![json!(1), json!(2)], 4, &url);
        assert_eq!(v["_pagination"]["total"], 4);
        assert_eq!(v["_pagination"]["next"]["offset"], 2);
        assert_eq!(
            v["_pagination"]["next"]["url"],
            "http://127.0.0.1:8000/hub/api/users?state=ready&limit=2&offset=2"
        );
        let last = Page {
            offset: 2,
            limit: 2,
            envelope: true,
        }
        .reply(vec![json!(3), json!(4)], 4, &url);
        assert!(last["_pagination"]["next"].is_null());
    }
}
