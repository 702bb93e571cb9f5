//! In-process upstream servers for the proxy to forward to.
//!
//! [`UpstreamMode::Echo`] answers every HTTP request with a JSON description of what it
//! received:
//!
//! ```json
//! {"name": "<server name>", "method": "GET", "url": "/path?query",
//!  "headers": {"host": "...", ...}, "body": "..."}
//! ```
//!
//! Header names are lower-cased; repeated headers are joined with `", "`. Request headers steer
//! the reply, so a test can script one request without a new server:
//!
//! | header | effect |
//! |---|---|
//! | `x-echo-status: N` | reply with status N (the JSON body is kept unless N forbids a body) |
//! | `x-echo-location: URL` | add `Location: URL` |
//! | `x-echo-delay-ms: N` | wait N ms before answering |
//! | `x-echo-chunks: N`, `x-echo-chunk-ms: M` | stream N chunks `chunk <i>\n`, M ms apart, instead of JSON |
//! | `x-echo-content-type: T` | use content type T |
//!
//! A websocket upgrade is accepted (unless `x-echo-status` asks for a plain HTTP reply). The
//! server first sends `connected`, then echoes every text or binary message. The text message
//! `handshake` is answered with the JSON description of the upgrade request instead. With
//! `?push_ms=N` in the URL the server also sends `push` every N ms on its own.
//!
//! [`UpstreamMode::ErrorPages`] plays the `--error-target` server: `GET /<prefix>/<code>?url=<u>`
//! is answered 200 `text/plain` with body `<u>` (decoded).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What an upstream server does with requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamMode {
    /// HTTP and websocket echo, see the module docs.
    Echo,
    /// Error-page server for `--error-target`.
    ErrorPages,
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Request method.
    pub method: String,
    /// Request target as received (path and query).
    pub url: String,
    /// Header lines, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Request body (empty for websockets).
    pub body: Vec<u8>,
    /// Whether this was a websocket upgrade.
    pub websocket: bool,
}

impl Recorded {
    /// The value of header `name`, repeated headers joined with `", "`.
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
    /// The path part of [`Recorded::url`].
    pub fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or_default()
    }
    /// The query part of [`Recorded::url`], if any.
    pub fn query(&self) -> Option<&str> {
        self.url.split_once('?').map(|(_, q)| q)
    }
}

#[derive(Debug)]
struct State {
    name: String,
    mode: UpstreamMode,
    log: Mutex<Vec<Recorded>>,
    open_ws: AtomicUsize,
    accepted: AtomicUsize,
}

#[derive(Debug)]
enum Addr {
    Tcp(SocketAddr),
    Unix {
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
}

/// A running upstream server. Stops accepting when dropped.
#[derive(Debug)]
pub struct Upstream {
    addr: Addr,
    tls: bool,
    state: Arc<State>,
    accept_task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl Upstream {
    fn state(name: &str, mode: UpstreamMode) -> Arc<State> {
        Arc::new(State {
            name: name.to_owned(),
            mode,
            log: Mutex::new(Vec::new()),
            open_ws: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
        })
    }

    /// A plain-HTTP server on `127.0.0.1:<free port>`.
    pub async fn start(name: &str, mode: UpstreamMode) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(crate::loopback(0)).await?;
        let addr = listener.local_addr()?;
        let state = Self::state(name, mode);
        let st = state.clone();
        let accept_task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                st.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, st.clone()));
            }
        });
        Ok(Upstream {
            addr: Addr::Tcp(addr),
            tls: false,
            state,
            accept_task,
        })
    }

    /// An echo server (the most common case).
    pub async fn echo(name: &str) -> anyhow::Result<Self> {
        Self::start(name, UpstreamMode::Echo).await
    }

    /// An HTTPS server on `127.0.0.1:<free port>` using `config` (HTTP/1.1 only).
    pub async fn start_tls(
        name: &str,
        mode: UpstreamMode,
        config: Arc<rustls::ServerConfig>,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(crate::loopback(0)).await?;
        let addr = listener.local_addr()?;
        let state = Self::state(name, mode);
        let st = state.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let accept_task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                st.accepted.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        serve(tls, st).await;
                    }
                });
            }
        });
        Ok(Upstream {
            addr: Addr::Tcp(addr),
            tls: true,
            state,
            accept_task,
        })
    }

    /// A plain-HTTP server on a unix socket in a fresh temporary directory.
    pub async fn start_unix(name: &str, mode: UpstreamMode) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(format!("{name}.sock"));
        let listener = tokio::net::UnixListener::bind(&path)?;
        let state = Self::state(name, mode);
        let st = state.clone();
        let accept_task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                st.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, st.clone()));
            }
        });
        Ok(Upstream {
            addr: Addr::Unix { path, _dir: dir },
            tls: false,
            state,
            accept_task,
        })
    }

    /// The server's name (echoed as `name`).
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The TCP port.
    ///
    /// # Panics
    /// For a unix-socket server.
    pub fn port(&self) -> u16 {
        match &self.addr {
            Addr::Tcp(addr) => addr.port(),
            Addr::Unix { path, .. } => panic!("upstream on {} has no port", path.display()),
        }
    }

    /// The unix socket path, if this server listens on one.
    pub fn socket_path(&self) -> Option<&Path> {
        match &self.addr {
            Addr::Tcp(_) => None,
            Addr::Unix { path, .. } => Some(path),
        }
    }

    /// The base URL to use as a route target: `http://127.0.0.1:P`, `https://127.0.0.1:P`, or
    /// `http+unix://<percent-encoded socket path>`.
    pub fn url(&self) -> String {
        match &self.addr {
            Addr::Tcp(addr) => {
                let scheme = if self.tls { "https" } else { "http" };
                format!("{scheme}://{addr}")
            }
            Addr::Unix { path, .. } => {
                format!(
                    "http+unix://{}",
                    crate::encode_component(&path.to_string_lossy())
                )
            }
        }
    }

    /// [`Upstream::url`] followed by `path`.
    pub fn url_with(&self, path: &str) -> String {
        format!("{}{path}", self.url())
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .log
            .lock()
            .map(|log| log.clone())
            .unwrap_or_default()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<Recorded> {
        self.requests().pop()
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        if let Ok(mut log) = self.state.log.lock() {
            log.clear();
        }
    }

    /// Websocket connections currently open on the server side.
    pub fn open_websockets(&self) -> usize {
        self.state.open_ws.load(Ordering::SeqCst)
    }

    /// TCP (or unix) connections accepted so far.
    pub fn accepted_connections(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }
}

async fn serve<S>(io: S, state: Arc<State>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(state.clone(), req));
    // Connection errors (client went away) are not interesting here.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed_unsync()
}

fn header_list(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn header_json(headers: &[(String, String)]) -> Value {
    let mut map: Map<String, Value> = Map::new();
    for (name, value) in headers {
        let joined = match map.get(name).and_then(Value::as_str) {
            Some(prev) => format!("{prev}, {value}"),
            None => value.clone(),
        };
        map.insert(name.clone(), Value::String(joined));
    }
    Value::Object(map)
}

fn control<T: std::str::FromStr>(req: &Request<Incoming>, name: &str) -> Option<T> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn record(state: &State, rec: Recorded) {
    if let Ok(mut log) = state.log.lock() {
        log.push(rec);
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let resp = match state.mode {
        UpstreamMode::Echo if is_websocket(&req) => websocket(state, req).await,
        UpstreamMode::Echo => echo(state, req).await,
        UpstreamMode::ErrorPages => error_page(state, req).await,
    };
    Ok(resp)
}

fn status_or(code: Option<u16>, default: StatusCode) -> StatusCode {
    code.and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(default)
}

async fn echo(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let status = status_or(control(&req, "x-echo-status"), StatusCode::OK);
    let location: Option<String> = control(&req, "x-echo-location");
    let delay_ms: Option<u64> = control(&req, "x-echo-delay-ms");
    let chunks: Option<usize> = control(&req, "x-echo-chunks");
    let chunk_ms: u64 = control(&req, "x-echo-chunk-ms").unwrap_or(0);
    let content_type: Option<String> = control(&req, "x-echo-content-type");
    let method = req.method().as_str().to_owned();
    let url = req.uri().to_string();
    let headers = header_list(&req);
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let description = json!({
        "name": state.name,
        "method": method,
        "url": url,
        "headers": header_json(&headers),
        "body": String::from_utf8_lossy(&body),
    });
    record(
        &state,
        Recorded {
            method,
            url,
            headers,
            body,
            websocket: false,
        },
    );
    if let Some(ms) = delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut builder = Response::builder().status(status);
    if let Some(location) = location {
        builder = builder.header(hyper::header::LOCATION, location);
    }
    let resp = if let Some(n) = chunks {
        let stream = futures_util::stream::unfold(0usize, move |i| async move {
            if i >= n {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(chunk_ms)).await;
            }
            let frame = Frame::data(Bytes::from(format!("chunk {i}\n")));
            Some((Ok::<_, Infallible>(frame), i + 1))
        });
        builder
            .header(
                hyper::header::CONTENT_TYPE,
                content_type.unwrap_or_else(|| "text/plain".to_owned()),
            )
            .body(http_body_util::StreamBody::new(stream).boxed_unsync())
    } else {
        builder
            .header(
                hyper::header::CONTENT_TYPE,
                content_type.unwrap_or_else(|| "application/json".to_owned()),
            )
            .body(full(description.to_string()))
    };
    resp.unwrap_or_else(|_| Response::new(full("bad response")))
}

async fn error_page(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().as_str().to_owned();
    let url = req.uri().to_string();
    let headers = header_list(&req);
    let shown = req
        .uri()
        .query()
        .and_then(|q| crate::query_param(q, "url"))
        .unwrap_or_default();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    record(
        &state,
        Recorded {
            method,
            url,
            headers,
            body,
            websocket: false,
        },
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, "text/plain")
        .body(full(shown))
        .unwrap_or_else(|_| Response::new(full("bad response")))
}

async fn websocket(state: Arc<State>, mut req: Request<Incoming>) -> Response<Body> {
    let url = req.uri().to_string();
    let headers = header_list(&req);
    let handshake = json!({
        "name": state.name,
        "method": req.method().as_str(),
        "url": url,
        "headers": header_json(&headers),
    });
    record(
        &state,
        Recorded {
            method: req.method().as_str().to_owned(),
            url: url.clone(),
            headers,
            body: Vec::new(),
            websocket: true,
        },
    );
    if let Some(code) = control::<u16>(&req, "x-echo-status") {
        return Response::builder()
            .status(status_or(Some(code), StatusCode::BAD_REQUEST))
            .header(hyper::header::CONTENT_TYPE, "text/plain")
            .body(full("upgrade refused by upstream"))
            .unwrap_or_else(|_| Response::new(full("bad response")));
    }
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(full("missing sec-websocket-key"))
            .unwrap_or_else(|_| Response::new(full("bad response")));
    };
    let push_ms: Option<u64> = req
        .uri()
        .query()
        .and_then(|q| crate::query_param(q, "push_ms"))
        .and_then(|v| v.parse().ok());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        state.open_ws.fetch_add(1, Ordering::SeqCst);
        run_websocket(ws, push_ms, handshake).await;
        state.open_ws.fetch_sub(1, Ordering::SeqCst);
    });
    let accept = derive_accept_key(key.as_bytes());
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::UPGRADE, "websocket")
        .header(
            "sec-websocket-accept",
            HeaderValue::from_str(&accept).unwrap_or(HeaderValue::from_static("invalid")),
        )
        .body(full(Bytes::new()))
        .unwrap_or_else(|_| Response::new(full("bad response")))
}

async fn run_websocket<S>(ws: WebSocketStream<S>, push_ms: Option<u64>, handshake: Value)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    if sink.send(Message::text("connected")).await.is_err() {
        return;
    }
    let mut ticker = push_ms.map(|ms| tokio::time::interval(Duration::from_millis(ms.max(1))));
    loop {
        let tick = async {
            match ticker.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            msg = stream.next() => {
                let reply = match msg {
                    Some(Ok(Message::Text(text))) if text.as_str() == "handshake" => {
                        Message::text(handshake.to_string())
                    }
                    Some(Ok(Message::Text(text))) => Message::Text(text),
                    Some(Ok(Message::Binary(data))) => Message::Binary(data),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                if sink.send(reply).await.is_err() {
                    break;
                }
            }
            () = tick => {
                if sink.send(Message::text("push")).await.is_err() {
                    break;
                }
            }
        }
    }
    // Flush a close reply if the protocol still allows it.
    let _ = sink.close().await;
}
