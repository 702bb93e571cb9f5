//! The route table: what the REST API edits and every proxied request reads.
//!
//! A route is a key (a decoded path prefix such as `/user/alice`, or `/<host>/...` with host
//! routing), a parsed target, the JSON data the client posted, and `last_activity`. Lookups
//! take a read lock for the duration of one trie walk and return an `Arc<Route>`: no lock is
//! ever held across I/O, and `last_activity` is an atomic updated without any lock.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use http::uri::{Authority, Scheme};
use parking_lot::RwLock;

use crate::time;
use crate::trie::Trie;

/// The segments of a normalised route key (`/` has none).
pub fn key_segments(key: &str) -> impl Iterator<Item = &str> {
    let rest = key.trim_start_matches('/');
    rest.split('/').filter(move |_| !rest.is_empty())
}

/// Normalises a decoded API path into a route key as configurable-http-proxy 5.3 does: a
/// leading `/` is added if missing, and a trailing `/` is removed twice over (its API handler
/// and its store each remove one: `/b//` becomes `/b`, `/c///` becomes `/c/`), never from `/`
/// itself. A run of
/// leading slashes becomes one, as the trie reads it (configurable-http-proxy keeps `//x` and
/// `/x` as two keys sharing one trie node).
pub fn normalize_key(decoded: &str) -> String {
    let mut key = format!("/{}", decoded.trim_start_matches('/'));
    for _ in 0..2 {
        if key.len() > 1 && key.ends_with('/') {
            key.pop();
        }
    }
    key
}

/// How the proxy reaches a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// TCP, plain or TLS.
    Tcp,
    /// A unix socket at this path (`http+unix://%2Fpath%2Fto%2Fsock`).
    Unix(PathBuf),
}

/// A parsed route target.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http` or `https` (unix targets speak plain HTTP).
    pub scheme: Scheme,
    /// `host:port` for TCP targets; a name unique to the socket for unix targets.
    pub authority: Authority,
    /// The target's path, forwarded in front of the request path (may be empty).
    pub path: Box<str>,
    /// The target's query, merged in front of the request's.
    pub query: Option<Box<str>>,
    /// TCP or unix socket.
    pub transport: Transport,
}

/// Why a target was refused.
#[derive(Debug, thiserror::Error)]
#[error("Must specify 'target' as a valid URL")]
pub struct BadTarget;

impl Target {
    /// Parses `http://`, `https://`, `http+unix://` and `unix+http://` URLs.
    ///
    /// # Errors
    /// For any other scheme, a missing host, or a URL that does not parse.
    pub fn parse(raw: &str) -> Result<Self, BadTarget> {
        let url = url::Url::parse(raw).map_err(|_| BadTarget)?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or(BadTarget)?;
        let (scheme, transport, authority) = match url.scheme() {
            "http" | "https" => {
                let port = url.port_or_known_default().ok_or(BadTarget)?;
                let scheme = if url.scheme() == "https" {
                    Scheme::HTTPS
                } else {
                    Scheme::HTTP
                };
                let authority = format!("{host}:{port}").parse().map_err(|_| BadTarget)?;
                (scheme, Transport::Tcp, authority)
            }
            "http+unix" | "unix+http" => {
                let socket = percent_encoding::percent_decode_str(host)
                    .decode_utf8()
                    .map_err(|_| BadTarget)?;
                // The authority only keys the connection pool: one per socket path.
                let name: String = socket.bytes().map(|b| format!("{b:02x}")).collect();
                let authority = format!("{name}.unix").parse().map_err(|_| BadTarget)?;
                (
                    Scheme::HTTP,
                    Transport::Unix(PathBuf::from(socket.as_ref())),
                    authority,
                )
            }
            _ => return Err(BadTarget),
        };
        let path = url.path();
        Ok(Self {
            scheme,
            authority,
            path: if path == "/" { "".into() } else { path.into() },
            query: url.query().map(Into::into),
            transport,
        })
    }
}

/// One route.
#[derive(Debug)]
pub struct Route {
    /// The normalised, decoded key, e.g. `/user/alice`.
    pub key: Box<str>,
    /// Where requests go.
    pub target: Target,
    /// The posted JSON object (plus `host` with host routing), without `last_activity`.
    data: Box<str>,
    last_activity: AtomicI64,
    /// Idle connections to `target`, for the next requests.
    pub idle: crate::upstream::IdleConns,
}

impl Route {
    /// A route whose data is `data` (a JSON object, serialised), active now.
    pub fn new(key: Box<str>, target: Target, data: Box<str>) -> Self {
        Self {
            key,
            target,
            data,
            last_activity: AtomicI64::new(time::now_ms()),
            idle: crate::upstream::IdleConns::default(),
        }
    }

    /// Records activity now.
    pub fn touch(&self) {
        self.last_activity.store(time::now_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the epoch of the last activity.
    pub fn last_activity_ms(&self) -> i64 {
        self.last_activity.load(Ordering::Relaxed)
    }

    /// Appends the data object with `last_activity` to `out`, as the API shows it.
    pub fn write_json(&self, out: &mut String) {
        let data = self.data.trim_end();
        let body = data.strip_suffix('}').unwrap_or(data);
        out.push_str(body);
        if body.trim_end() != "{" {
            out.push(',');
        }
        out.push_str("\"last_activity\":\"");
        time::write_iso_ms(out, self.last_activity_ms());
        out.push_str("\"}");
    }
}

/// All routes.
#[derive(Debug, Default)]
pub struct RouteTable {
    tables: RwLock<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    trie: Trie<Arc<Route>>,
    by_key: BTreeMap<Box<str>, Arc<Route>>,
}

impl RouteTable {
    /// Adds or replaces a route.
    pub fn insert(&self, route: Route) {
        let route = Arc::new(route);
        let mut tables = self.tables.write();
        tables.trie.insert(key_segments(&route.key), route.clone());
        tables.by_key.insert(route.key.clone(), route);
    }

    /// Removes a route; `false` when there was none under `key`.
    pub fn remove(&self, key: &str) -> bool {
        let mut tables = self.tables.write();
        tables.trie.remove(key_segments(key));
        tables.by_key.remove(key).is_some()
    }

    /// The route stored exactly under `key`.
    pub fn get(&self, key: &str) -> Option<Arc<Route>> {
        self.tables.read().by_key.get(key).cloned()
    }

    /// The route for a request: the longest prefix of `host` (with host routing) followed by
    /// the path segments. Returns the route and how many *path* segments its key covers.
    pub fn lookup<'a>(
        &self,
        host: Option<&'a str>,
        path: impl Iterator<Item = Cow<'a, str>>,
    ) -> Option<(Arc<Route>, usize)> {
        let tables = self.tables.read();
        let has_host = host.is_some();
        let host = host.map(Cow::Borrowed);
        let (route, depth) = tables.trie.longest_prefix(host.into_iter().chain(path))?;
        let path_depth = if has_host {
            depth.saturating_sub(1)
        } else {
            depth
        };
        Some((route.clone(), path_depth))
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.tables.read().by_key.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The listing as JSON (`{"<key>": {data..., "last_activity": "..."}}`), optionally only
    /// routes whose last activity is strictly earlier than `inactive_before` (ms).
    pub fn list_json(&self, inactive_before: Option<i64>) -> String {
        let tables = self.tables.read();
        let mut out = String::with_capacity(2 + tables.by_key.len() * 160);
        out.push('{');
        let mut first = true;
        for (key, route) in &tables.by_key {
            if inactive_before.is_some_and(|t| route.last_activity_ms() >= t) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            push_json_string(&mut out, key);
            out.push(':');
            route.write_json(&mut out);
        }
        out.push('}');
        out
    }
}

fn push_json_string(out: &mut String, s: &str) {
    // serde_json's escaping, written straight into the buffer.
    let escaped = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
    out.push_str(&escaped);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(key: &str, target: &str) -> Route {
        let data = format!(r#"{{"target":"{target}"}}"#);
        Route::new(key.into(), Target::parse(target).unwrap(), data.into())
    }

    #[test]
    fn keys() {
        assert_eq!(normalize_key("user/alice/"), "/user/alice");
        assert_eq!(normalize_key("/"), "/");
        assert_eq!(normalize_key(""), "/");
        assert_eq!(normalize_key("/a//"), "/a");
        assert_eq!(normalize_key("/c///"), "/c/");
        assert_eq!(key_segments("/").count(), 0);
        assert_eq!(key_segments("/a/b").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(key_segments("//x").collect::<Vec<_>>(), ["x"]);
        assert_eq!(normalize_key("//x/"), "/x");
    }

    #[test]
    fn targets() {
        let t = Target::parse("http://127.0.0.1:8888/foo?x=1").unwrap();
        assert_eq!(t.authority.as_str(), "127.0.0.1:8888");
        assert_eq!(&*t.path, "/foo");
        assert_eq!(t.query.as_deref(), Some("x=1"));
        let t = Target::parse("https://example.org").unwrap();
        assert_eq!(t.authority.as_str(), "example.org:443");
        assert_eq!(&*t.path, "");
        let t = Target::parse("http+unix://%2Ftmp%2Fs.sock/p").unwrap();
        assert_eq!(t.transport, Transport::Unix("/tmp/s.sock".into()));
        assert_eq!(&*t.path, "/p");
        let t = Target::parse("http://[::1]:9/").unwrap();
        assert_eq!(t.authority.as_str(), "[::1]:9");
        for bad in ["not a url", "ftp://x", "http://", "/relative", ""] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn table_lookup_listing_and_removal() {
        let table = RouteTable::default();
        table.insert(route("/", "http://127.0.0.1:1"));
        table.insert(route("/user/alice", "http://127.0.0.1:2"));
        let (r, depth) = table
            .lookup(
                None,
                ["user", "alice", "lab"].into_iter().map(Cow::Borrowed),
            )
            .unwrap();
        assert_eq!((&*r.key, depth), ("/user/alice", 2));
        let (r, _) = table
            .lookup(None, ["user", "alicefoo"].into_iter().map(Cow::Borrowed))
            .unwrap();
        assert_eq!(&*r.key, "/");
        let listing: serde_json::Value = serde_json::from_str(&table.list_json(None)).unwrap();
        assert_eq!(listing["/user/alice"]["target"], "http://127.0.0.1:2");
        assert!(
            listing["/"]["last_activity"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        assert_eq!(table.list_json(Some(0)), "{}");
        assert!(table.remove("/user/alice"));
        assert!(!table.remove("/user/alice"));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn host_lookup_depth_counts_path_only() {
        let table = RouteTable::default();
        table.insert(route("/alice.example.com", "http://127.0.0.1:2"));
        let (r, depth) = table
            .lookup(
                Some("alice.example.com"),
                ["some", "path"].into_iter().map(Cow::Borrowed),
            )
            .unwrap();
        assert_eq!((&*r.key, depth), ("/alice.example.com", 0));
        assert!(
            table
                .lookup(Some("bob.example.com"), std::iter::empty())
                .is_none()
        );
    }

    #[test]
    fn empty_data_object() {
        let r = Route::new(
            "/x".into(),
            Target::parse("http://a:1").unwrap(),
            "{}".into(),
        );
        let mut s = String::new();
        r.write_json(&mut s);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 1);
    }
}
