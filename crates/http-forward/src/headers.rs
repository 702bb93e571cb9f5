//! Header handling for forwarded requests and responses.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request};

/// Headers that describe one connection, not the message, and must not be forwarded
/// (RFC 9110 §7.6.1), besides those the `Connection` header names.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Whether the request asks for a websocket upgrade (`GET` with `Connection: upgrade` and
/// `Upgrade: websocket`).
pub fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.method() == Method::GET
        && has_token(req.headers(), &header::CONNECTION, "upgrade")
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
            })
}

/// Whether the request asks for any protocol upgrade at all.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && has_token(headers, &header::CONNECTION, "upgrade")
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers. With `keep_upgrade`, `Connection: upgrade` and `Upgrade` are
/// kept so that a websocket handshake can pass through.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none of them: one pass over the few names present is cheaper than a
    // hashed removal for each hop-by-hop name.
    if headers
        .keys()
        .any(|n| n == header::UPGRADE || HOP_BY_HOP.contains(n))
    {
        remove_present_hop_by_hop(headers, keep_upgrade);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn remove_present_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Headers named by Connection are hop-by-hop too.
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(keep_upgrade && n == header::UPGRADE))
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if !keep_upgrade {
        headers.remove(header::UPGRADE);
    }
}

/// What the proxy adds as `X-Forwarded-*`.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    /// The client's address, when known (not on unix sockets).
    pub client_ip: Option<std::net::IpAddr>,
    /// `http`, `https`, `ws` or `wss`.
    pub proto: &'a str,
    /// Whether the client connection is TLS (decides the default port).
    pub tls: bool,
    /// Whether to set `X-Forwarded-Host` (not done for websockets, as configurable-http-proxy).
    pub set_host: bool,
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

impl Forwarded<'_> {
    /// Appends `,value` to `X-Forwarded-For`, `-Port` and `-Proto` (no space, as
    /// configurable-http-proxy does), and sets `X-Forwarded-Host` from `Host` only if absent.
    /// The port is the one in the `Host` header, else 443 or 80.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let host = headers.get(header::HOST).cloned();
        let port = host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .and_then(host_port)
            .unwrap_or(if self.tls { "443" } else { "80" })
            .to_owned();
        if let Some(ip) = self.client_ip {
            append(headers, &X_FORWARDED_FOR, &ip.to_string());
        }
        append(headers, &X_FORWARDED_PORT, &port);
        append(headers, &X_FORWARDED_PROTO, self.proto);
        if let Some(host) =
            host.filter(|_| self.set_host && !headers.contains_key(&X_FORWARDED_HOST))
        {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
    }
}

fn append(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if !headers.contains_key(name) {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name.clone(), v);
        }
        return;
    }
    let existing: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let joined = if existing.is_empty() {
        value.to_owned()
    } else {
        format!("{},{value}", existing.join(","))
    };
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name.clone(), v);
    }
}

/// The port part of a `Host` header value, if any (`[::1]:8000` → `8000`).
pub fn host_port(host: &str) -> Option<&str> {
    let after_bracket = match host.rfind(']') {
        Some(i) => &host[i + 1..],
        None => host,
    };
    after_bracket
        .rsplit_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The host part of a `Host` header value, without port and trailing dot, lowercased:
/// `ALICE.Example.com.:8000` → `alice.example.com`, `[::1]:8000` → `[::1]`.
pub fn host_name(host: &str) -> String {
    let name = if host.starts_with('[') {
        host.find(']').map_or(host, |i| &host[..=i])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed() {
        for name in HOP_BY_HOP.iter().chain([&header::UPGRADE]) {
            let mut h = HeaderMap::new();
            h.insert("x-kept", HeaderValue::from_static("1"));
            h.insert(name.clone(), HeaderValue::from_static("x"));
            remove_hop_by_hop(&mut h, false);
            assert_eq!(h.len(), 1, "{name} kept");
            assert!(h.contains_key("x-kept"));
        }
    }

    #[test]
    fn messages_without_hop_by_hop_headers_are_unchanged() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        let before = h.clone();
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
        // A websocket request still gets its `Connection: upgrade`.
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn upgrade_kept_for_websockets() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
    }

    #[test]
    fn forwarded_headers_append() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("hub.example:8443"));
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        Forwarded {
            client_ip: Some([127, 0, 0, 1].into()),
            proto: "http",
            tls: false,
            set_host: true,
        }
        .apply(&mut h);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4,127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https,http");
        assert_eq!(h["x-forwarded-port"], "8443");
        assert_eq!(h["x-forwarded-host"], "hub.example:8443");
    }

    #[test]
    fn host_parts() {
        assert_eq!(host_port("a:80"), Some("80"));
        assert_eq!(host_port("[::1]:8000"), Some("8000"));
        assert_eq!(host_port("[::1]"), None);
        assert_eq!(host_port("a"), None);
        assert_eq!(host_name("ALICE.Example.com.:8000"), "alice.example.com");
        assert_eq!(host_name("[::1]:8000"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
    }
}
