//! A byte-exact HTTP/1.1 client.
//!
//! URL libraries normalise request targets (`/a/../b` becomes `/b`, `%2e` becomes `.`, `//x`
//! loses its meaning), which would hide exactly the cases the proxy must handle. This client
//! writes the request line as given and reads the response by hand, so a test can also see
//! whether the server closed the connection.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A request written byte for byte.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// Method token.
    pub method: String,
    /// Request target, sent unchanged.
    pub target: String,
    /// Header lines in order. A `Host` here replaces the default one.
    pub headers: Vec<(String, String)>,
    /// Body; a `Content-Length` is added when it is non-empty and none was given.
    pub body: Vec<u8>,
    /// Send no `Host` header at all.
    pub omit_host: bool,
    /// Do not add `Connection: close`.
    pub keep_alive: bool,
}

impl RawRequest {
    /// `METHOD target HTTP/1.1`.
    pub fn new(method: &str, target: &str) -> Self {
        RawRequest {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            omit_host: false,
            keep_alive: false,
        }
    }
    /// `GET target HTTP/1.1`.
    pub fn get(target: &str) -> Self {
        Self::new("GET", target)
    }
    /// Adds a header line.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    /// Sends no `Host` header.
    pub fn without_host(mut self) -> Self {
        self.omit_host = true;
        self
    }
    /// Leaves the connection open after the response (no `Connection: close`).
    pub fn keep_alive(mut self) -> Self {
        self.keep_alive = true;
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The bytes on the wire; `default_host` is used when no `Host` header was given.
    pub fn to_bytes(&self, default_host: &str) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        if !self.omit_host && !self.has_header("host") {
            out.push_str(&format!("Host: {default_host}\r\n"));
        }
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.keep_alive && !self.has_header("connection") {
            out.push_str("Connection: close\r\n");
        }
        if !self.body.is_empty()
            && !self.has_header("content-length")
            && !self.has_header("transfer-encoding")
        {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// Sends the request on a new TCP connection to `127.0.0.1:port` and reads the response.
    pub async fn send(&self, port: u16) -> anyhow::Result<RawResponse> {
        let mut conn = Conn::tcp(port).await?;
        conn.exchange(self).await
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// Status code.
    pub status: u16,
    /// Reason phrase (possibly empty).
    pub reason: String,
    /// Header lines in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body with any chunked framing removed.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Every value of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body parsed as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response body is not JSON: {:?}", self.text()))
    }
    /// The `Content-Type` without parameters, lower-cased.
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    }
}

/// Object-safe alias for the streams [`Conn`] can drive.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A client connection that keeps unread bytes between responses.
pub struct Conn {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    host: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("host", &self.host)
            .field("buffered", &self.buf.len())
            .finish()
    }
}

/// Outcome of waiting on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The peer closed (EOF or reset).
    Closed,
    /// Nothing happened within the wait.
    Open,
    /// The peer sent more bytes.
    Data,
}

impl Conn {
    /// Wraps any stream; `host` is the default `Host` header value.
    pub fn new(stream: impl Stream + 'static, host: &str) -> Self {
        Conn {
            stream: Box::new(stream),
            buf: Vec::new(),
            host: host.to_owned(),
        }
    }

    /// Connects to `127.0.0.1:port`.
    pub async fn tcp(port: u16) -> anyhow::Result<Self> {
        let stream = crate::within(
            "TCP connect",
            tokio::net::TcpStream::connect(crate::loopback(port)),
        )
        .await?
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
        Ok(Conn::new(stream, &format!("127.0.0.1:{port}")))
    }

    /// Connects to a unix socket.
    pub async fn unix(path: &std::path::Path) -> anyhow::Result<Self> {
        let stream = crate::within("unix connect", tokio::net::UnixStream::connect(path))
            .await?
            .with_context(|| format!("connecting to {}", path.display()))?;
        Ok(Conn::new(stream, "localhost"))
    }

    /// Writes raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Sends `req` and reads one response (failing after [`crate::IO_TIMEOUT`]).
    pub async fn exchange(&mut self, req: &RawRequest) -> anyhow::Result<RawResponse> {
        let bytes = req.to_bytes(&self.host);
        // A server may answer (e.g. 413) and close before the whole body is written; the
        // response is still what counts.
        let written = self.write(&bytes).await;
        let head_request = req.method.eq_ignore_ascii_case("HEAD");
        let read = crate::within(
            &format!("response to {} {}", req.method, req.target),
            self.read_response(head_request),
        )
        .await;
        match (read, written) {
            (Ok(Ok(resp)), _) => Ok(resp),
            (Ok(Err(e)), Err(w)) | (Err(e), Err(w)) => {
                Err(e.context(format!("writing the request failed too: {w}")))
            }
            (Ok(Err(e)), Ok(())) | (Err(e), Ok(())) => Err(e),
        }
    }

    async fn fill(&mut self) -> anyhow::Result<usize> {
        self.buf.reserve(16 * 1024);
        Ok(self.stream.read_buf(&mut self.buf).await?)
    }

    async fn take(&mut self, n: usize) -> anyhow::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill().await? == 0 {
                bail!(
                    "connection closed after {} of {n} expected bytes",
                    self.buf.len()
                );
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn line(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            if self.fill().await? == 0 {
                bail!("connection closed in the middle of a line");
            }
        }
    }

    /// Reads the status line and headers only (the body stays in the stream).
    pub async fn read_head(&mut self) -> anyhow::Result<RawResponse> {
        while self.buf.is_empty() {
            if self.fill().await? == 0 {
                bail!("connection closed without a response");
            }
        }
        let status_line = self.line().await?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let status = parts
            .next()
            .unwrap_or_default()
            .parse::<u16>()
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let reason = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .with_context(|| format!("bad header line {line:?}"))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(RawResponse {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
        })
    }

    /// Reads one full response. `head_request` means the response has no body.
    pub async fn read_response(&mut self, head_request: bool) -> anyhow::Result<RawResponse> {
        let mut resp = self.read_head().await?;
        if (100..200).contains(&resp.status) && resp.status != 101 {
            // Interim response: the real one follows.
            return Box::pin(self.read_response(head_request)).await;
        }
        if head_request || resp.status == 204 || resp.status == 304 || resp.status == 101 {
            return Ok(resp);
        }
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            let mut body = Vec::new();
            loop {
                let size_line = self.line().await?;
                let size_hex = size_line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size_hex, 16)
                    .with_context(|| format!("bad chunk size line {size_line:?}"))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    while !self.line().await?.is_empty() {}
                    break;
                }
                body.extend(self.take(size).await?);
                self.take(2).await?;
            }
            resp.body = body;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().context("bad content-length")?;
            resp.body = self.take(len).await?;
        } else {
            while self.fill().await? > 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    /// Reads the next chunk of a chunked body, or `None` at its end.
    pub async fn read_chunk(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        let size_line = self.line().await?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size line {size_line:?}"))?;
        if size == 0 {
            while !self.line().await?.is_empty() {}
            return Ok(None);
        }
        let data = self.take(size).await?;
        self.take(2).await?;
        Ok(Some(data))
    }

    /// Waits up to `wait` to see whether the peer closes the connection.
    pub async fn liveness(&mut self, wait: Duration) -> Liveness {
        if !self.buf.is_empty() {
            return Liveness::Data;
        }
        match tokio::time::timeout(wait, self.fill()).await {
            Err(_) => Liveness::Open,
            Ok(Ok(0)) | Ok(Err(_)) => Liveness::Closed,
            Ok(Ok(_)) => Liveness::Data,
        }
    }

    /// Reads whatever arrives within `wait` until the peer closes or goes quiet for 300 ms;
    /// returns the bytes (empty if the peer closed without sending anything).
    pub async fn read_available(&mut self, wait: Duration) -> anyhow::Result<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let quiet = if self.buf.is_empty() {
                deadline
            } else {
                (tokio::time::Instant::now() + Duration::from_millis(300)).min(deadline)
            };
            match tokio::time::timeout_at(quiet, self.fill()).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(_)) => {}
            }
        }
        Ok(std::mem::take(&mut self.buf))
    }

    /// Gives back the stream and any bytes already read from it.
    pub fn into_parts(self) -> (Box<dyn Stream>, Vec<u8>) {
        (self.stream, self.buf)
    }
}

/// A websocket handshake request for `target` (key is a fixed valid nonce).
pub fn ws_upgrade(target: &str) -> RawRequest {
    RawRequest::get(target)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .keep_alive()
}
