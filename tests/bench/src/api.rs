//! A minimal keep-alive HTTP/1.1 client: one connection, one request at a
//! time, reconnecting when the server has closed it. Used for the proxy's REST
//! API (so that each add is timed without pool or connect overhead) and for
//! the sanity checks through the public port.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The answer to one request, with the time from sending the request to
/// having read the whole response body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub elapsed: Duration,
}

#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    authorization: Option<String>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// A client for `addr`; with a token, every request carries
    /// `Authorization: token <token>`.
    pub fn new(addr: SocketAddr, token: Option<&str>) -> Self {
        Self {
            addr,
            authorization: token.map(|t| format!("token {t}")),
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

    /// The open connection if it can take a request, else a new one.
    async fn ready_sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>> {
        let reusable = match self.sender.as_mut() {
            Some(sender) => !sender.is_closed() && sender.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            self.sender = Some(self.connect().await?);
        }
        self.sender.as_mut().context("no connection")
    }

    fn build(
        &self,
        method: &Method,
        path: &str,
        body: &Option<Bytes>,
    ) -> Result<Request<Full<Bytes>>> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, self.addr.to_string());
        if let Some(auth) = &self.authorization {
            builder = builder.header(AUTHORIZATION, auth);
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        builder
            .body(Full::new(body.clone().unwrap_or_default()))
            .context("building a request")
    }

    /// Sends one request and reads the whole answer. A request that fails
    /// because the server closed an idle connection is retried once on a new
    /// connection (every request this benchmark sends is idempotent).
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer> {
        match self.send_once(&method, path, &body).await {
            Ok(answer) => Ok(answer),
            Err(_) => {
                self.sender = None;
                self.send_once(&method, path, &body)
                    .await
                    .with_context(|| format!("{method} {path} on {}", self.addr))
            }
        }
    }

    async fn send_once(
        &mut self,
        method: &Method,
        path: &str,
        body: &Option<Bytes>,
    ) -> Result<Answer> {
        let request = self.build(method, path, body)?;
        let sender = self.ready_sender().await?;
        let start = Instant::now();
        let response = sender.send_request(request).await.context("sending")?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .context("reading the body")?
            .to_bytes();
        Ok(Answer {
            status,
            body,
            elapsed: start.elapsed(),
        })
    }
}
