//! Connections to targets: pooled HTTP/1.1 clients over TCP (plain or TLS) and unix sockets.
//!
//! Idle upstream connections are kept and reused (up to 256 per target), so a busy server does
//! not cost one ephemeral port per request; they are closed after 30 s idle, so servers that
//! went away do not pin sockets either.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use daemon_support::batched::{BatchedStream, Batcher};
use http::{Request, Response, Uri};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::activity::RequestActivity;
use crate::routes::Transport;

/// Body of a request sent upstream: the client's (reporting activity) or none.
pub type UpstreamBody = Either<http_forward::body::Tapped<Incoming, RequestActivity>, Empty<Bytes>>;

/// The clients toward targets.
#[derive(Debug, Clone)]
pub struct Upstream {
    tcp: Client<HttpsConnector<TcpConnector>, UpstreamBody>,
    unix: Client<UnixConnector, UpstreamBody>,
}

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
            .wrap_connector(TcpConnector { http, batcher });
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
        }
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
