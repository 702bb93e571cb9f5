//! Listeners (TCP or unix socket, optionally TLS) and the accept loop the daemons serve with.
//!
//! One loop for every daemon: accept, hand the socket to a task, finish the TLS handshake
//! there (never in the accept loop), then serve HTTP/1.1 with upgrades, or HTTP/2 when TLS
//! negotiated `h2`. On shutdown the loop stops accepting and lets open requests finish.
//! (hyper-util's `auto` builder would also answer HTTP/2 prior-knowledge prefaces on plain
//! connections; configurable-http-proxy never does, so neither do we.)

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    /// A TCP socket.
    Tcp(TcpListener),
    /// A unix socket, removed again when the listener is dropped.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds a TCP socket.
    ///
    /// # Errors
    /// When the address is taken or not permitted.
    pub async fn bind_tcp(addr: SocketAddr) -> std::io::Result<Self> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        Ok(Self::Tcp(socket.listen(LISTEN_BACKLOG)?))
    }

    /// A TCP listener bound elsewhere, with its accept queue raised to [`LISTEN_BACKLOG`].
    ///
    /// # Errors
    /// When the socket cannot be listened on again.
    pub fn from_tcp(listener: TcpListener) -> std::io::Result<Self> {
        Ok(Self::Tcp(with_backlog(listener, LISTEN_BACKLOG)?))
    }

    /// Binds a unix socket, replacing a stale socket file left by a previous run.
    ///
    /// # Errors
    /// When the path cannot be bound.
    pub fn bind_unix(path: &Path) -> std::io::Result<Self> {
        if std::fs::symlink_metadata(path)
            .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            .unwrap_or(false)
        {
            std::fs::remove_file(path)?;
        }
        Ok(Self::Unix(UnixListener::bind(path)?, path.to_path_buf()))
    }

    /// The local address, for logs: `127.0.0.1:8000` or the socket path.
    pub fn describe(&self) -> String {
        match self {
            Self::Tcp(l) => l
                .local_addr()
                .map_or_else(|e| format!("<{e}>"), |a| a.to_string()),
            Self::Unix(_, path) => path.display().to_string(),
        }
    }

    /// The bound TCP address, if this is a TCP listener.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix(..) => None,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Connections the kernel queues for a listener until it accepts them. The Rust and tokio
/// default (128) overflows when a burst of clients connects faster than the accept loop
/// takes them; they then wait for a SYN retransmission (1 s and more).
pub const LISTEN_BACKLOG: u32 = 1024;

/// `listener` with an accept queue of `backlog` connections (`listen(2)` again on the same
/// socket, which Linux and the BSDs allow; the queued connections stay).
///
/// # Errors
/// When the socket cannot be listened on again.
pub fn with_backlog(listener: TcpListener, backlog: u32) -> std::io::Result<TcpListener> {
    // A listening socket as a stream only to reach `TcpSocket::listen`; nothing else is
    // done with it.
    let fd = std::os::fd::OwnedFd::from(listener.into_std()?);
    TcpSocket::from_std_stream(std::net::TcpStream::from(fd)).listen(backlog)
}

/// What a service knows about the connection it serves.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client's address; `None` on a unix socket.
    pub peer: Option<SocketAddr>,
    /// The address the client connected to; `None` on a unix socket.
    pub local: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// HTTP settings of a listener.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// How long an idle keep-alive connection (or a new one) may take to send request headers
    /// before it is closed.
    pub header_timeout: Duration,
    /// Largest request head accepted; larger ones get 431.
    pub max_header_size: usize,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// How long open requests may run on after shutdown begins.
    pub drain_timeout: Duration,
    /// Sends the writes of TCP connections in batches, once per round of the scheduler
    /// (see [`crate::batched`]); `None` writes each one as it comes.
    pub batcher: Option<crate::batched::Batcher>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(5),
            max_header_size: 16 * 1024,
            tls_handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            batcher: None,
        }
    }
}

/// Resolves once `stopping` turns true (or its sender is gone).
async fn stopped(mut stopping: watch::Receiver<bool>) {
    loop {
        let stopped = *stopping.borrow_and_update();
        if stopped || stopping.changed().await.is_err() {
            return;
        }
    }
}

/// Runs a hyper connection to its end; once `stopping` turns true, asks it to finish its
/// current requests and close. (A macro: the two connection types share no trait.)
macro_rules! drive {
    ($conn:expr, $stopping:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            () = stopped($stopping) => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }};
}

/// Serves connections from `listener` until `shutdown` resolves, then drains open requests.
///
/// `make_service` is called once per connection. Plain connections speak HTTP/1.1 only (with
/// upgrades, for websockets); HTTP/2 is spoken only when TLS negotiated `h2` through ALPN.
pub async fn serve<M, S, B>(
    listener: Listener,
    tls: Option<Arc<rustls::ServerConfig>>,
    options: HttpOptions,
    make_service: M,
    shutdown: impl Future<Output = ()>,
) where
    M: Fn(ConnInfo) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = tls.map(TlsAcceptor::from);
    let options = Arc::new(options);
    // Connections watch `stopping`; each holds a clone of `drain` until it has finished.
    let (stopping_tx, stopping) = watch::channel(false);
    let (drain, mut drained) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, options.batcher.as_ref()) => accepted,
        };
        let (stream, peer, local) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Running out of file descriptors must not turn into a busy loop.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let info = ConnInfo {
            peer,
            local,
            tls: acceptor.is_some(),
        };
        let service = make_service(info);
        let options = options.clone();
        let acceptor = acceptor.clone();
        let stopping = stopping.clone();
        let guard = drain.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let Some(acceptor) = acceptor else {
                let conn = http1_builder(&options)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                drive!(conn, stopping);
                return;
            };
            let tls =
                tokio::time::timeout(options.tls_handshake_timeout, acceptor.accept(stream)).await;
            let stream = match tls {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service);
                drive!(conn, stopping);
            } else {
                let conn = http1_builder(&options)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                drive!(conn, stopping);
            }
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    drop(drain);
    if tokio::time::timeout(options.drain_timeout, drained.recv())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open when the drain timeout ran out");
    }
}

fn http1_builder(options: &HttpOptions) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        // The read buffer may take in more than its limit in one read, so a head a little
        // over the limit could still parse; the head's own limit is exact.
        .max_header_size(options.max_header_size)
        .max_buf_size(options.max_header_size.max(8192))
        .keep_alive(true);
    builder
}

/// A boxed stream: TCP or unix.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

async fn accept(
    listener: &Listener,
    batcher: Option<&crate::batched::Batcher>,
) -> std::io::Result<(Box<dyn Stream>, Option<SocketAddr>, Option<SocketAddr>)> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, peer) = l.accept().await?;
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().ok();
            let stream: Box<dyn Stream> = match batcher {
                Some(b) => Box::new(b.tcp(stream)?),
                None => Box::new(stream),
            };
            Ok((stream, Some(peer), local))
        }
        Listener::Unix(l, _) => {
            let (stream, _) = l.accept().await?;
            Ok((Box::new(stream), None, None))
        }
    }
}
