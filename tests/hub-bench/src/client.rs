//! The one HTTP client every measurement uses, for both hubs: a single HTTP/1.1 keep-alive
//! connection (hyper's low-level client), reopened when the server closes it.

use std::net::SocketAddr;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// The `Accept` value that asks the hub for the paginated envelope.
pub const PAGINATION: &str = "application/jupyterhub-pagination+json";

/// One request to send: method, path (with query) and optional token, body and pagination.
#[derive(Debug, Clone)]
pub struct Req {
    method: Method,
    path: String,
    authorization: Option<HeaderValue>,
    body: Option<Bytes>,
    paginated: bool,
}

impl Req {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            authorization: None,
            body: None,
            paginated: false,
        }
    }

    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    /// `POST path` with a JSON body.
    pub fn post(path: impl Into<String>, body: &Value) -> Self {
        let mut req = Self::new(Method::POST, path);
        req.body = Some(Bytes::from(body.to_string()));
        req
    }

    /// `DELETE path`.
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::DELETE, path)
    }

    /// Sends `Authorization: token <token>`.
    pub fn token(mut self, token: &str) -> Self {
        self.authorization = HeaderValue::from_str(&format!("token {token}")).ok();
        self
    }

    /// Asks for the paginated envelope.
    pub fn paginated(mut self) -> Self {
        self.paginated = true;
        self
    }

    /// What the request is, for error messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn build(&self, host: &HeaderValue) -> Result<Request<Full<Bytes>>> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .header(HOST, host.clone());
        if let Some(auth) = &self.authorization {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        if self.paginated {
            builder = builder.header(ACCEPT, HeaderValue::from_static(PAGINATION));
        }
        let body = match &self.body {
            Some(body) => {
                builder =
                    builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                body.clone()
            }
            None => Bytes::new(),
        };
        builder
            .body(Full::new(body))
            .context("building the request")
    }
}

/// A reply: status and whole body.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Fails unless the status is `want`, quoting the request and the body.
    pub fn expect(self, want: StatusCode, what: &str) -> Result<Self> {
        if self.status != want {
            anyhow::bail!(
                "{what}: expected {want}, got {} {}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
            );
        }
        Ok(self)
    }
}

/// One keep-alive connection to a hub.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// A client for the server at `addr` (connects on first use).
    pub fn new(addr: SocketAddr) -> Self {
        let host = HeaderValue::from_str(&addr.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("127.0.0.1"));
        Self {
            addr,
            host,
            sender: None,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            // Ends when the server closes the connection or the client drops.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends `req` and reads the whole reply. A connection the server has closed while idle is
    /// reopened first; a failure after the request went out is an error (never retried, as
    /// the requests are not all idempotent).
    pub async fn send(&mut self, req: &Req) -> Result<Reply> {
        let reusable = match self.sender.as_mut() {
            Some(sender) => !sender.is_closed() && sender.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            self.sender = Some(self.connect().await?);
        }
        let sender = self.sender.as_mut().context("no connection")?;
        let request = req.build(&self.host)?;
        let result = async {
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>(Reply { status, body })
        }
        .await;
        match result {
            Ok(reply) => Ok(reply),
            Err(e) => {
                self.sender = None;
                Err(e).with_context(|| req.describe())
            }
        }
    }
}
