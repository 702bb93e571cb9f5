//! A Jupyter kernel client that behaves like JupyterLab in a browser: it starts a kernel
//! through the server's REST API with the page's cookies and the XSRF token from the `_xsrf`
//! cookie (`X-XSRFToken`), then talks to the kernel over `api/kernels/<id>/channels` with
//! the same cookies and an `Origin`, in the JSON form of the messaging protocol (v5.3: one
//! text frame per message, with a `channel` field; no subprotocol).

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::accounts::random_suffix;
use crate::browser::{Browser, Response};
use crate::ws::WsClient;

/// How long one kernel exchange (a reply and its output) may take.
pub const KERNEL_WITHIN: Duration = Duration::from_secs(60);

/// The value of the `_xsrf` cookie the browser sends to `prefix` (the longest matching path).
///
/// # Errors
/// When there is none.
pub fn xsrf_token(browser: &Browser, prefix: &str) -> anyhow::Result<String> {
    browser
        .cookies()
        .iter()
        .filter(|c| c.name == "_xsrf" && prefix.starts_with(&c.path))
        .max_by_key(|c| c.path.len())
        .map(|c| c.value.clone())
        .with_context(|| {
            format!(
                "{}: no _xsrf cookie for {prefix} (cookies: {:?})",
                browser.who,
                browser.cookies()
            )
        })
}

/// A script's request from a page of the server at `prefix` (`/user/alice/`): same origin,
/// `fetch` metadata, the XSRF header when `xsrf` is given, a JSON body when `body` is given.
///
/// # Errors
/// On connection errors.
pub async fn api_call(
    browser: &mut Browser,
    method: Method,
    target: &str,
    xsrf: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<Response> {
    let origin = browser.origin();
    let mut headers = vec![
        ("Origin", origin.as_str()),
        ("Sec-Fetch-Mode", "cors"),
        ("Sec-Fetch-Site", "same-origin"),
        ("Sec-Fetch-Dest", "empty"),
    ];
    if let Some(token) = xsrf {
        headers.push(("X-XSRFToken", token));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    browser
        .request(method, target, &headers, body.map(Value::to_string))
        .await
}

/// Starts a `python3` kernel on the server at `prefix` as JupyterLab does
/// (`POST <prefix>api/kernels` with `X-XSRFToken`); returns its id.
///
/// # Errors
/// When the server does not answer 201 with a kernel model.
pub async fn start_kernel(browser: &mut Browser, prefix: &str) -> anyhow::Result<String> {
    let xsrf = xsrf_token(browser, prefix)?;
    let created = api_call(
        browser,
        Method::POST,
        &format!("{prefix}api/kernels"),
        Some(&xsrf),
        Some(&json!({"name": "python3"})),
    )
    .await?;
    ensure!(
        created.status == StatusCode::CREATED,
        "{created}: starting a kernel should answer 201\n{:.500}",
        created.body
    );
    let model = created.json()?;
    model["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{created}: no kernel id in {model}"))
}

/// An open kernel websocket.
pub struct KernelSocket {
    ws: WsClient,
    session: String,
    /// Messages on any channel, in arrival order, for failure messages (the last ones).
    seen: Vec<String>,
}

impl std::fmt::Debug for KernelSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelSocket")
            .field("session", &self.session)
            .field("seen", &self.seen.len())
            .finish_non_exhaustive()
    }
}

/// What [`KernelSocket::execute`] got back.
#[derive(Debug, Clone)]
pub struct Executed {
    /// `text/plain` of the `execute_result`, if there was one.
    pub result: Option<String>,
    /// Everything written to `stdout` by `stream` messages.
    pub stdout: String,
    /// `content.status` of the `execute_reply` (`ok`, `error`).
    pub status: String,
    /// `execution_count` of the reply.
    pub execution_count: Option<u64>,
}

/// Opens `ws://<origin><prefix>api/kernels/<id>/channels?session_id=...` with the browser's
/// cookies and the headers a browser sends on a same-origin websocket (`Origin`,
/// `Sec-Fetch-Mode: websocket`).
///
/// # Errors
/// When the handshake fails; a refused handshake names the HTTP status it got.
pub async fn connect(
    browser: &Browser,
    prefix: &str,
    kernel_id: &str,
) -> anyhow::Result<KernelSocket> {
    let session = format!("{}{}", random_suffix(), random_suffix());
    let origin = browser.origin();
    let target = format!("{prefix}api/kernels/{kernel_id}/channels?session_id={session}");
    let url = browser.url(&target)?;
    let addr = url
        .socket_addrs(|| None)?
        .into_iter()
        .next()
        .context("the origin has no address")?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let ws_url = format!("ws://{addr}{target}");
    let cookies = browser.cookie_header_for(url.path()).unwrap_or_default();
    let mut headers = vec![
        ("Origin", origin.as_str()),
        ("Sec-Fetch-Mode", "websocket"),
        ("Sec-Fetch-Site", "same-origin"),
        ("Sec-Fetch-Dest", "empty"),
    ];
    if !cookies.is_empty() {
        headers.push(("Cookie", cookies.as_str()));
    }
    let (ws, response) = match crate::ws::handshake(Box::new(tcp), &ws_url, &headers).await {
        Ok(done) => done,
        Err(e) => {
            // tungstenite reports a refused handshake with the HTTP response.
            let refused = e.chain().find_map(|cause| {
                match cause.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
                    Some(tokio_tungstenite::tungstenite::Error::Http(r)) => Some(r.status()),
                    _ => None,
                }
            });
            match refused {
                Some(status) => bail!("the kernel websocket {target} was refused: {status}"),
                None => return Err(e.context(format!("the kernel websocket {target}"))),
            }
        }
    };
    ensure!(
        response.status() == StatusCode::SWITCHING_PROTOCOLS,
        "the kernel websocket {target}: {}",
        response.status()
    );
    Ok(KernelSocket {
        ws,
        session,
        seen: Vec::new(),
    })
}

impl KernelSocket {
    /// Sends a request on `channel`; returns its `msg_id`.
    async fn send(
        &mut self,
        channel: &str,
        msg_type: &str,
        content: Value,
    ) -> anyhow::Result<String> {
        let msg_id = format!("{}-{}{}", msg_type, random_suffix(), random_suffix());
        let message = json!({
            "header": {
                "msg_id": msg_id,
                "msg_type": msg_type,
                "username": "",
                "session": self.session,
                "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": channel,
            "buffers": [],
        });
        crate::within(
            "sending a kernel message",
            self.ws.send(Message::text(message.to_string())),
        )
        .await??;
        Ok(msg_id)
    }

    /// The next JSON message from the kernel (text frames; others are skipped).
    async fn next(&mut self, deadline: tokio::time::Instant) -> anyhow::Result<Value> {
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "no answer from the kernel in time; last messages:\n{}",
                        self.recent()
                    )
                })?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    self.seen.push(text.as_str().chars().take(300).collect());
                    return serde_json::from_str(text.as_str())
                        .with_context(|| format!("a kernel message that is not JSON: {text}"));
                }
                Some(Ok(Message::Close(close))) => {
                    bail!("the kernel websocket closed: {close:?}\n{}", self.recent())
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("the kernel websocket failed: {e}\n{}", self.recent()),
                None => bail!("the kernel websocket ended\n{}", self.recent()),
            }
        }
    }

    fn recent(&self) -> String {
        let from = self.seen.len().saturating_sub(12);
        self.seen[from..].join("\n")
    }

    /// `kernel_info_request` on the shell channel, waiting for its reply (the kernel is then
    /// ready for code); returns the reply's content.
    ///
    /// # Errors
    /// When no reply comes within [`KERNEL_WITHIN`].
    pub async fn kernel_info(&mut self) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + KERNEL_WITHIN;
        let id = self.send("shell", "kernel_info_request", json!({})).await?;
        loop {
            let message = self.next(deadline).await?;
            if message["parent_header"]["msg_id"] == json!(id)
                && message["header"]["msg_type"] == json!("kernel_info_reply")
            {
                return Ok(message["content"].clone());
            }
        }
    }

    /// Runs `code` (`execute_request` on the shell channel) and collects what the kernel sends
    /// back for it: the `execute_result`, `stream` output, and the `execute_reply`, until the
    /// kernel is idle again. Every message must carry the `channel` it came on.
    ///
    /// # Errors
    /// When the kernel does not finish within [`KERNEL_WITHIN`], or a message of this
    /// request has no `channel`.
    pub async fn execute(&mut self, code: &str) -> anyhow::Result<Executed> {
        let deadline = tokio::time::Instant::now() + KERNEL_WITHIN;
        let id = self
            .send(
                "shell",
                "execute_request",
                json!({
                    "code": code,
                    "silent": false,
                    "store_history": true,
                    "user_expressions": {},
                    "allow_stdin": false,
                    "stop_on_error": true,
                }),
            )
            .await?;
        let mut result = None;
        let mut stdout = String::new();
        let mut reply: Option<Value> = None;
        let mut idle = false;
        while reply.is_none() || !idle {
            let message = self.next(deadline).await?;
            if message["parent_header"]["msg_id"] != json!(id) {
                continue;
            }
            let channel = message["channel"].as_str().unwrap_or_default().to_owned();
            let content = &message["content"];
            match (channel.as_str(), message["header"]["msg_type"].as_str()) {
                ("iopub", Some("execute_result")) => {
                    result = content["data"]["text/plain"].as_str().map(str::to_owned);
                }
                ("iopub", Some("stream")) if content["name"] == json!("stdout") => {
                    stdout.push_str(content["text"].as_str().unwrap_or_default());
                }
                ("iopub", Some("error")) => bail!(
                    "the kernel raised {}: {}",
                    content["ename"],
                    content["evalue"]
                ),
                ("iopub", Some("status")) => {
                    idle = content["execution_state"] == json!("idle");
                }
                ("shell", Some("execute_reply")) => reply = Some(content.clone()),
                ("", _) => bail!("a kernel message without its channel: {message}"),
                _ => {}
            }
        }
        let reply = reply.unwrap_or_default();
        Ok(Executed {
            result,
            stdout,
            status: reply["status"].as_str().unwrap_or_default().to_owned(),
            execution_count: reply["execution_count"].as_u64(),
        })
    }

    /// Closes the websocket.
    pub async fn close(mut self) {
        let _ = crate::within("closing the kernel websocket", self.ws.close(None)).await;
    }
}
