//! Websocket client helpers.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::raw::Stream;

/// A websocket client over any stream.
pub type WsClient = WebSocketStream<Box<dyn Stream>>;

/// Performs the client handshake for `url` (`ws://host[:port]/path`) over `stream`, adding
/// `headers`.
pub async fn handshake(
    stream: Box<dyn Stream>,
    url: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(WsClient, Response)> {
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(value)?,
        );
    }
    let (ws, resp) = crate::within(
        &format!("websocket handshake for {url}"),
        tokio_tungstenite::client_async(request, stream),
    )
    .await?
    .with_context(|| format!("websocket handshake for {url}"))?;
    Ok((ws, resp))
}

/// Connects to `ws://127.0.0.1:<port><path>`.
pub async fn connect(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(WsClient, Response)> {
    let tcp = tokio::net::TcpStream::connect(crate::loopback(port)).await?;
    handshake(
        Box::new(tcp),
        &format!("ws://127.0.0.1:{port}{path}"),
        headers,
    )
    .await
}

/// Connects over a unix socket (`Host: localhost`).
pub async fn connect_unix(
    socket: &Path,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(WsClient, Response)> {
    let unix = tokio::net::UnixStream::connect(socket).await?;
    handshake(Box::new(unix), &format!("ws://localhost{path}"), headers).await
}

/// Connects with TLS (`wss://`), trusting `certs`' CA.
pub async fn connect_tls(
    certs: &crate::tls::TestCerts,
    port: u16,
    path: &str,
) -> anyhow::Result<(WsClient, Response)> {
    let tls = certs.connect(port, false, &[b"http/1.1"]).await?;
    handshake(Box::new(tls), &format!("ws://localhost:{port}{path}"), &[]).await
}

/// The next text message, skipping control frames; fails after [`crate::IO_TIMEOUT`].
pub async fn next_text(ws: &mut WsClient) -> anyhow::Result<String> {
    next_text_within(ws, crate::IO_TIMEOUT).await
}

/// The next text message within `wait`.
pub async fn next_text_within(ws: &mut WsClient, wait: Duration) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("no websocket message within {wait:?}"))?;
        match msg {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Binary(data))) => {
                return Ok(String::from_utf8_lossy(&data).into_owned());
            }
            Some(Ok(Message::Close(frame))) => bail!("websocket closed: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("websocket error: {e}"),
            None => bail!("websocket stream ended"),
        }
    }
}

/// Sends a text message.
pub async fn send_text(ws: &mut WsClient, text: &str) -> anyhow::Result<()> {
    crate::within("websocket send", ws.send(Message::text(text))).await??;
    Ok(())
}

/// Sends `text` and returns the echoed reply.
pub async fn roundtrip(ws: &mut WsClient, text: &str) -> anyhow::Result<String> {
    send_text(ws, text).await?;
    next_text(ws).await
}

/// Asks the echo server for the handshake it received (the `handshake` message), as JSON.
pub async fn upstream_handshake(ws: &mut WsClient) -> anyhow::Result<serde_json::Value> {
    let reply = roundtrip(ws, "handshake").await?;
    serde_json::from_str(&reply).with_context(|| format!("handshake reply {reply:?}"))
}
