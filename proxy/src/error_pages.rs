//! Error responses for requests the proxy cannot deliver: no route (404), a refused path (400),
//! an unreachable target (503), or a failure inside the proxy (500).
//!
//! With `--error-target`, the page is fetched from `GET <target>/<code>?url=<path>` (none of the
//! client's headers are sent) and streamed with the proxy's status code; with `--error-path`,
//! `<code>.html` or `error.html` is read from the directory; otherwise a built-in page is used.
//! Websocket requests never fetch a page: they get a bare status and the connection is closed,
//! so that reconnecting browser tabs cannot pile up connections.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode, Uri};

use crate::body::ProxyBody;
use crate::routes::Target;
use crate::upstream::Upstream;

/// Where error pages come from.
#[derive(Debug, Clone, Default)]
pub struct ErrorPages {
    /// `--error-target`, with a trailing slash.
    pub target: Option<Target>,
    /// `--error-path`.
    pub dir: Option<PathBuf>,
}

const ERROR_TARGET_TIMEOUT: Duration = Duration::from_secs(10);

impl ErrorPages {
    /// The response for `code` on a request for `path_and_query`.
    pub async fn respond(
        &self,
        upstream: &Upstream,
        code: StatusCode,
        path_and_query: &str,
        websocket: bool,
    ) -> Response<ProxyBody> {
        if websocket {
            return bare(code, true);
        }
        if let Some(target) = &self.target {
            return match self.fetch(upstream, target, code, path_and_query).await {
                Some(resp) => resp,
                None => plain_reason(code),
            };
        }
        if let Some(dir) = &self.dir {
            for name in [format!("{}.html", code.as_u16()), "error.html".to_owned()] {
                if let Ok(bytes) = tokio::fs::read(dir.join(name)).await {
                    return html(code, Bytes::from(bytes));
                }
            }
            return plain_reason(code);
        }
        html(code, Bytes::from(builtin_page(code)))
    }

    async fn fetch(
        &self,
        upstream: &Upstream,
        target: &Target,
        code: StatusCode,
        path_and_query: &str,
    ) -> Option<Response<ProxyBody>> {
        let url: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("url", path_and_query)
            .finish();
        let path = format!(
            "{}{}?{url}",
            target.path.trim_end_matches('/'),
            format_args!("/{}", code.as_u16())
        );
        let uri = Uri::builder()
            .scheme(target.scheme.clone())
            .authority(target.authority.clone())
            .path_and_query(path)
            .build()
            .ok()?;
        let fetched =
            tokio::time::timeout(ERROR_TARGET_TIMEOUT, upstream.get(&target.transport, uri)).await;
        let resp = match fetched {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "error target unreachable");
                return None;
            }
            Err(_) => {
                tracing::error!("error target timed out");
                return None;
            }
        };
        let (parts, body) = resp.into_parts();
        let mut out = Response::new(ProxyBody::Stream { body });
        *out.status_mut() = code;
        for name in [CONTENT_TYPE, CONTENT_ENCODING] {
            if let Some(v) = parts.headers.get(&name) {
                out.headers_mut().insert(name, v.clone());
            }
        }
        if let Some(len) = parts.headers.get(CONTENT_LENGTH) {
            out.headers_mut().insert(CONTENT_LENGTH, len.clone());
        }
        Some(out)
    }
}

/// A response with no body; `close` ends the connection after it.
pub fn bare(code: StatusCode, close: bool) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    if close {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn plain_reason(code: StatusCode) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(code.canonical_reason().unwrap_or("Error")));
    *resp.status_mut() = code;
    resp
}

fn html(code: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp
}

fn builtin_page(code: StatusCode) -> String {
    let (title, text) = match code.as_u16() {
        404 => (
            "404: Not Found",
            "No route matches this address. It may belong to a server that is not running.",
        ),
        503 => (
            "503: Proxy Target Missing",
            "The server this address belongs to is not answering. It may have stopped, or be starting.",
        ),
        400 => (
            "400: Bad Request",
            "The address cannot be routed: it contains dot segments, encoded slashes or malformed escapes.",
        ),
        _ => ("Proxy Error", "The proxy could not handle this request."),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n<style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}}h1{{font-size:1.6em}}</style>\n</head>\n<body>\n<h1>{title}</h1>\n<p>{text}</p>\n</body>\n</html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_pages_carry_the_code() {
        assert!(builtin_page(StatusCode::NOT_FOUND).contains("404:"));
        assert!(builtin_page(StatusCode::SERVICE_UNAVAILABLE).contains("503:"));
        assert!(builtin_page(StatusCode::INTERNAL_SERVER_ERROR).contains("Proxy Error"));
    }

    #[test]
    fn bare_responses_close() {
        let r = bare(StatusCode::NOT_FOUND, true);
        assert_eq!(r.headers()[CONNECTION], "close");
        assert_eq!(r.headers()[CONTENT_LENGTH], "0");
    }
}
