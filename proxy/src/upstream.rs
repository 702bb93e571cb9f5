//! Connections to targets: HTTP/1.1 over TCP (plain or TLS) and unix sockets.
//!
//! Requests to plain-HTTP TCP targets, by far the common case, go over connections that each
//! route keeps itself ([`IdleConns`]): no pool lookup by key, and no task between the request
//! and its connection beyond the connection's own. Everything else (TLS and unix-socket
//! targets, websocket upgrades, error pages) goes through hyper's pooled clients.
//!
//! Either way idle connections are reused (up to 256 per target), so a busy server does not
//! cost one ephemeral port per request, and they are closed after 30 s idle, so servers that
//! went away do not pin sockets either.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use daemon_support::batched::{BatchedStream, Batcher};
use http::uri::Authority;
use http::{Request, Response, Uri};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::activity::RequestActivity;
use crate::routes::{Route, Transport};

/// Body of a request sent upstream: the client's (reporting activity) or none.
pub type UpstreamBody = Either<http_forward::body::Tapped<Incoming, RequestActivity>, Empty<Bytes>>;

/// Errors of a request to a target: connecting, or HTTP.
pub type SendError = Box<dyn std::error::Error + Send + Sync>;

/// The clients toward targets.
#[derive(Debug, Clone)]
pub struct Upstream {
    tcp: Client<HttpsConnector<TcpConnector>, UpstreamBody>,
    unix: Client<UnixConnector, UpstreamBody>,
    /// Opens the connections that routes keep in their [`IdleConns`].
    direct: TcpConnector,
}

/// Idle connections to one route's plain-HTTP TCP target, most recently used last.
///
/// Kept in the [`Route`] itself, so that a request finds them without a lookup of its own, and
/// so that replacing or deleting the route lets go of them.
#[derive(Default)]
pub struct IdleConns(parking_lot::Mutex<Vec<Idle>>);

struct Idle {
    sender: http1::SendRequest<UpstreamBody>,
    clock: Arc<IdleClock>,
}

impl std::fmt::Debug for IdleConns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("IdleConns")
            .field(&self.0.lock().len())
            .finish()
    }
}

impl IdleConns {
    /// The most recently used connection that can take a request now. Closed ones are dropped;
    /// ones not ready yet stay for later.
    fn take(&self) -> Option<Idle> {
        let mut idle = self.0.lock();
        let mut not_ready = Vec::new();
        let mut found = None;
        while let Some(conn) = idle.pop() {
            if conn.sender.is_ready() {
                found = Some(conn);
                break;
            }
            if !conn.sender.is_closed() {
                not_ready.push(conn);
            }
        }
        idle.extend(not_ready);
        found
    }

    fn put(&self, conn: Idle) {
        let mut idle = self.0.lock();
        if idle.len() < MAX_IDLE_PER_TARGET && !conn.sender.is_closed() {
            conn.clock.idle_since(Instant::now());
            idle.push(conn);
        }
    }
}

/// When a pooled connection last went idle; its task closes it after [`IDLE_TIMEOUT`].
#[derive(Debug)]
struct IdleClock {
    started: Instant,
    /// Milliseconds from `started` to when the connection last went idle; `u64::MAX` while
    /// it carries a request.
    idle_since_ms: AtomicU64,
}

impl IdleClock {
    fn busy(&self) {
        self.idle_since_ms.store(u64::MAX, Ordering::Relaxed);
    }

    fn idle_since(&self, at: Instant) {
        let ms = u64::try_from(at.duration_since(self.started).as_millis()).unwrap_or(u64::MAX - 1);
        self.idle_since_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the connection has been idle; `None` while busy.
    fn idle_for(&self, now: Instant) -> Option<Duration> {
        let since = self.idle_since_ms.load(Ordering::Relaxed);
        (since != u64::MAX).then(|| {
            now.duration_since(self.started)
                .saturating_sub(Duration::from_millis(since))
        })
    }
}

/// A pooled connection carrying one response; it goes back to its route's pool when the
/// response body has been read to the end, and is closed otherwise.
#[derive(Debug)]
pub struct Lease {
    route: Arc<Route>,
    conn: Option<Idle>,
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idle")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// The response ended: the connection can carry the next request.
    pub fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.route.idle.put(conn);
        }
    }
}

/// Idle connections kept per route, as the pooled clients keep per target.
const MAX_IDLE_PER_TARGET: usize = 256;

/// Idle connections close after this long, so servers that went away do not pin sockets.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl Upstream {
    /// Clients using `tls` toward `https://` targets.
    pub fn new(tls: rustls::ClientConfig, batcher: Option<Batcher>) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        http.set_connect_timeout(Some(Duration::from_secs(20)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(TcpConnector {
                http: http.clone(),
                batcher: batcher.clone(),
            });
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(256)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .set_host(false);
            b
        };
        Self {
            tcp: builder().build(https),
            unix: builder().build(UnixConnector),
            direct: TcpConnector { http, batcher },
        }
    }

    /// Sends a request to `route`'s target; its URI carries the target's scheme and authority.
    ///
    /// With `pooled`, a request to a plain-HTTP TCP target goes over one of the route's own
    /// idle connections, and the [`Lease`] returned with the response gives it back.
    pub async fn send_to(
        &self,
        route: &Arc<Route>,
        req: Request<UpstreamBody>,
        pooled: bool,
    ) -> Result<(Response<Incoming>, Option<Lease>), SendError> {
        let target = &route.target;
        if pooled
            && matches!(target.transport, Transport::Tcp)
            && target.scheme == http::uri::Scheme::HTTP
        {
            let (resp, conn) = self.send_pooled(route, req).await?;
            let lease = Lease {
                route: route.clone(),
                conn: Some(conn),
            };
            return Ok((resp, Some(lease)));
        }
        Ok((self.send(&target.transport, req).await?, None))
    }

    async fn send_pooled(
        &self,
        route: &Route,
        mut req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Idle), SendError> {
        // A connection of our own takes the origin form; the Host header is already set.
        if let Some(pq) = req.uri().path_and_query().cloned() {
            *req.uri_mut() = Uri::from(pq);
        }
        let authority = &route.target.authority;
        let (mut conn, reused) = match route.idle.take() {
            Some(conn) => (conn, true),
            // Boxed: connecting is rare, and its state would otherwise enlarge every request's.
            None => (Box::pin(self.connect(authority)).await?, false),
        };
        conn.clock.busy();
        let resp = match conn.sender.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => match e.take_message() {
                // The idle connection closed before the request went out (targets close idle
                // connections too): once more on a new one.
                Some(req) if reused => {
                    conn = Box::pin(self.connect(authority)).await?;
                    conn.clock.busy();
                    conn.sender.send_request(req).await?
                }
                _ => return Err(e.into_error().into()),
            },
        };
        Ok((resp, conn))
    }

    async fn connect(&self, authority: &Authority) -> Result<Idle, SendError> {
        let uri = Uri::builder()
            .scheme(http::uri::Scheme::HTTP)
            .authority(authority.clone())
            .path_and_query("/")
            .build()?;
        let io = tower_service::Service::call(&mut self.direct.clone(), uri).await?;
        let (sender, conn) = http1::Builder::new().handshake(io).await?;
        let clock = Arc::new(IdleClock {
            started: Instant::now(),
            idle_since_ms: AtomicU64::new(u64::MAX),
        });
        let watched = clock.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "connection to a target ended with an error");
                        }
                        return;
                    }
                    () = tokio::time::sleep(IDLE_TIMEOUT) => {
                        // Dropping the connection closes it; its sender then reports closed.
                        if watched.idle_for(Instant::now()).is_some_and(|d| d >= IDLE_TIMEOUT) {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Idle { sender, clock })
    }

    /// Sends a request; its URI carries the target's scheme and authority.
    pub fn send(
        &self,
        transport: &Transport,
        req: Request<UpstreamBody>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        match transport {
            Transport::Tcp => self.tcp.request(req),
            Transport::Unix(_) => self.unix.request(req),
        }
    }

    /// Convenience for a body-less GET (error pages).
    pub async fn get(
        &self,
        transport: &Transport,
        uri: Uri,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        let mut req = Request::new(Either::Right(Empty::new()));
        *req.uri_mut() = uri;
        if let Some(host) = req.uri().authority().map(|a| a.as_str().to_owned())
            && let Ok(v) = http::HeaderValue::from_str(&host)
        {
            req.headers_mut().insert(http::header::HOST, v);
        }
        self.send(transport, req).await
    }
}

/// Connects over TCP like [`HttpConnector`], with writes sent through a [`Batcher`] if given.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    http: HttpConnector,
    batcher: Option<Batcher>,
}

impl tower_service::Service<Uri> for TcpConnector {
    type Response = TcpIo;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<TcpIo, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.http.call(uri);
        let batcher = self.batcher.clone();
        Box::pin(async move {
            let tcp = connecting.await?;
            Ok(match batcher {
                Some(b) => TcpIo::Batched(TokioIo::new(b.tcp(tcp.into_inner())?)),
                None => TcpIo::Direct(tcp),
            })
        })
    }
}

/// A TCP connection to a target.
#[derive(Debug)]
pub enum TcpIo {
    /// Writes go out as they come.
    Direct(TokioIo<tokio::net::TcpStream>),
    /// Writes go out once per round (see [`daemon_support::batched`]).
    Batched(TokioIo<BatchedStream>),
}

impl Connection for TcpIo {
    fn connected(&self) -> Connected {
        match self {
            Self::Direct(io) => io.connected(),
            Self::Batched(_) => Connected::new(),
        }
    }
}

/// Calls `$method` on whichever connection `$io` (a pinned `TcpIo`) holds.
macro_rules! either_io {
    ($io:expr, $method:ident ( $($arg:expr),* )) => {
        match $io.get_mut() {
            TcpIo::Direct(io) => Pin::new(io).$method($($arg),*),
            TcpIo::Batched(io) => Pin::new(io).$method($($arg),*),
        }
    };
}

impl hyper::rt::Read for TcpIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        either_io!(self, poll_read(cx, buf))
    }
}

impl hyper::rt::Write for TcpIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        either_io!(self, poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        either_io!(self, poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        either_io!(self, poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        either_io!(self, poll_shutdown(cx))
    }
}

/// Connects to the unix socket named (hex-encoded) in the URI's host: see
/// [`crate::routes::Target::parse`].
#[derive(Debug, Clone, Copy)]
pub struct UnixConnector;

fn socket_path(uri: &Uri) -> std::io::Result<PathBuf> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a unix-socket target");
    let hex = uri
        .host()
        .and_then(|h| h.strip_suffix(".unix"))
        .ok_or_else(bad)?;
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    let os: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(bytes);
    Ok(PathBuf::from(os))
}

impl tower_service::Service<Uri> for UnixConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let path = socket_path(&uri)?;
            Ok(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Target;

    #[test]
    fn socket_path_round_trips_through_the_authority() {
        let t = Target::parse("http+unix://%2Ftmp%2Fa%20b.sock").unwrap();
        let uri: Uri = format!("http://{}/x", t.authority).parse().unwrap();
        assert_eq!(socket_path(&uri).unwrap(), PathBuf::from("/tmp/a b.sock"));
    }
}
