//! The websocket side: an echo server (the backend) and a load client that
//! keeps N connections each doing one round trip after another.
//!
//! Both speak the wire format directly (one pre-encoded frame written, one
//! frame read back), so that as little CPU as possible goes into the
//! endpoints: the backend shares its core with the proxy, and the client must
//! not be what limits the round-trip rate. A separate check does one round trip
//! with tungstenite, so the framing is also validated by a full implementation.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use bytes::{Buf as _, Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Size of each echoed message.
const PAYLOAD_LEN: usize = 32;
/// FIN bit plus the binary opcode.
const FIN_BINARY: u8 = 0x82;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
/// Largest frame the echo server accepts.
const MAX_FRAME: u64 = 16 << 20;
/// Largest request or response head read during a handshake.
const MAX_HEAD: usize = 64 << 10;

/// Accepts websocket upgrades on any path and echoes every frame. Runs until
/// killed.
pub async fn serve(addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    loop {
        let (stream, _) = listener.accept().await.context("accepting")?;
        tokio::spawn(async move {
            // A client that goes away mid-stream is not an error worth reporting.
            let _ = echo(stream).await;
        });
    }
}

/// Reads from `stream` into `buf` until it holds a full HTTP head; returns
/// the head's length.
async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<usize> {
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(pos + 4);
        }
        ensure!(buf.len() < MAX_HEAD, "HTTP head too large");
        if stream.read_buf(buf).await.context("reading the head")? == 0 {
            bail!("connection closed during the handshake");
        }
    }
}

async fn echo(mut stream: TcpStream) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(16 << 10);
    let head_len = read_head(&mut stream, &mut buf).await?;
    let head = std::str::from_utf8(&buf[..head_len]).context("request head is not UTF-8")?;
    let key = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .context("no Sec-WebSocket-Key")?;
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    stream.write_all(response.as_bytes()).await?;
    buf.advance(head_len);

    let mut out = Vec::with_capacity(16 << 10);
    loop {
        // Answer every complete frame received so far with one write.
        while let Some(frame) = parse_frame(&buf)? {
            let end = frame.header_len + frame.payload_len;
            let mut payload = buf[frame.header_len..end].to_vec();
            if let Some(mask) = frame.mask {
                apply_mask(&mut payload, mask);
            }
            buf.advance(end);
            match frame.first & 0x0F {
                OP_CLOSE => {
                    encode_frame(&mut out, frame.first, &payload, None);
                    stream.write_all(&out).await?;
                    return Ok(());
                }
                OP_PING => encode_frame(&mut out, 0x80 | OP_PONG, &payload, None),
                OP_PONG => {}
                _ => encode_frame(&mut out, frame.first, &payload, None),
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// The header of a complete frame at the start of a buffer.
#[derive(Debug, PartialEq)]
struct Frame {
    /// FIN, RSV and opcode bits.
    first: u8,
    header_len: usize,
    payload_len: usize,
    mask: Option<[u8; 4]>,
}

/// Parses the frame at the start of `buf`; `None` until it is complete.
fn parse_frame(buf: &[u8]) -> Result<Option<Frame>> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    let mut pos = 2;
    let mut len = u64::from(second & 0x7F);
    if len == 126 {
        let Some(bytes) = buf.get(2..4) else {
            return Ok(None);
        };
        len = u64::from(u16::from_be_bytes([bytes[0], bytes[1]]));
        pos = 4;
    } else if len == 127 {
        let Some(bytes) = buf.get(2..10) else {
            return Ok(None);
        };
        let mut eight = [0; 8];
        eight.copy_from_slice(bytes);
        len = u64::from_be_bytes(eight);
        pos = 10;
    }
    ensure!(len <= MAX_FRAME, "frame of {len} bytes is too large");
    let mask = if second & 0x80 != 0 {
        let Some(bytes) = buf.get(pos..pos + 4) else {
            return Ok(None);
        };
        pos += 4;
        Some([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        None
    };
    let payload_len = usize::try_from(len).context("frame length")?;
    if buf.len() < pos + payload_len {
        return Ok(None);
    }
    Ok(Some(Frame {
        first,
        header_len: pos,
        payload_len,
        mask,
    }))
}

fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// Appends one frame; client frames must be masked, server frames must not.
fn encode_frame(out: &mut Vec<u8>, first: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    out.push(first);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            let start = out.len();
            out.extend_from_slice(payload);
            apply_mask(&mut out[start..], mask);
        }
        None => out.extend_from_slice(payload),
    }
}

/// One round trip with tungstenite on a new connection: proves that the
/// route works and that the echo is well-formed.
pub async fn check(addr: SocketAddr, path: &str) -> Result<()> {
    let url = format!("ws://{addr}{path}");
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .with_context(|| format!("websocket handshake with {url}"))?;
    let payload = Bytes::from(vec![b'x'; PAYLOAD_LEN]);
    let round_trip = async {
        ws.send(Message::Binary(payload.clone()))
            .await
            .context("sending")?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(echoed))) => {
                    ensure!(echoed == payload, "the echo differs from the message");
                    return Ok(());
                }
                Some(Ok(Message::Close(frame))) => bail!("closed by the server: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("receiving"),
                None => bail!("connection ended"),
            }
        }
    };
    let result = tokio::time::timeout(Duration::from_secs(5), round_trip)
        .await
        .with_context(|| format!("no echo from {url} within 5 s"))?;
    let _ = ws.close(None).await;
    result
}

/// What the websocket load measured.
#[derive(Debug, Clone, Default)]
pub struct WsResult {
    pub round_trips_per_sec: f64,
    pub p99_ms: f64,
    pub round_trips: u64,
    /// CPU time of the process under test during the measured window,
    /// divided by the round trips counted in it (filled in by the caller).
    pub cpu_us_per_round_trip: Option<f64>,
}

/// Opens a websocket with a minimal handshake and returns the raw stream.
async fn raw_connect(addr: SocketAddr, path: &str) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: cHJveHktYmVuY2gta2V5MQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(1024);
    let head_len = read_head(&mut stream, &mut buf).await?;
    let status_line = buf[..head_len]
        .split(|&b| b == b'\r')
        .next()
        .unwrap_or_default();
    ensure!(
        status_line.starts_with(b"HTTP/1.1 101"),
        "websocket upgrade refused: {}",
        String::from_utf8_lossy(status_line)
    );
    ensure!(
        buf.len() == head_len,
        "data arrived before the first message"
    );
    Ok(stream)
}

/// Opens `connections` websockets to `path`, then has each do sequential echo
/// round trips for `warmup + duration`; round trips started during
/// `duration` are counted. `sample` is called at the start and at the end of
/// `duration`, and both samples are returned with the result.
pub async fn load<T>(
    addr: SocketAddr,
    path: &str,
    connections: u32,
    warmup: Duration,
    duration: Duration,
    sample: impl Fn() -> T,
) -> Result<(WsResult, T, T)> {
    let mut sockets = Vec::new();
    for _ in 0..connections {
        sockets.push(raw_connect(addr, path).await?);
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let deadline = measure_from + duration;
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|stream| tokio::spawn(drive(stream, measure_from, deadline)))
        .collect();
    tokio::time::sleep_until(measure_from.into()).await;
    let before = sample();
    tokio::time::sleep_until(deadline.into()).await;
    let after = sample();
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await.context("websocket task panicked")??);
    }
    ensure!(
        !latencies_us.is_empty(),
        "no websocket round trip completed"
    );
    latencies_us.sort_unstable();
    let round_trips = latencies_us.len() as u64;
    let p99_index = (latencies_us.len() * 99).div_ceil(100).saturating_sub(1);
    let result = WsResult {
        round_trips_per_sec: round_trips as f64 / duration.as_secs_f64(),
        p99_ms: latencies_us[p99_index] as f64 / 1000.0,
        round_trips,
        cpu_us_per_round_trip: None,
    };
    Ok((result, before, after))
}

async fn drive(
    mut stream: TcpStream,
    measure_from: Instant,
    deadline: Instant,
) -> Result<Vec<u64>> {
    let payload = [b'x'; PAYLOAD_LEN];
    let mut request = Vec::new();
    encode_frame(
        &mut request,
        FIN_BINARY,
        &payload,
        Some([0x5A, 0x17, 0xC3, 0x08]),
    );
    let mut expected = Vec::new();
    encode_frame(&mut expected, FIN_BINARY, &payload, None);
    let mut answer = vec![0; expected.len()];
    let mut latencies_us = Vec::new();
    loop {
        let t0 = Instant::now();
        if t0 >= deadline {
            break;
        }
        stream.write_all(&request).await.context("sending")?;
        stream.read_exact(&mut answer).await.context("receiving")?;
        ensure!(answer == expected, "unexpected echo {answer:?}");
        if t0 >= measure_from {
            latencies_us.push(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
    }
    // A close frame with no payload; the answer does not matter.
    let mut close = Vec::new();
    encode_frame(&mut close, 0x80 | OP_CLOSE, &[], Some([1, 2, 3, 4]));
    let _ = stream.write_all(&close).await;
    Ok(latencies_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_frames_round_trip_through_the_parser() {
        for len in [0, 5, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            encode_frame(&mut out, FIN_BINARY, &payload, Some([9, 8, 7, 6]));
            let frame = parse_frame(&out).unwrap().unwrap();
            assert_eq!(frame.first, FIN_BINARY);
            assert_eq!(frame.payload_len, len);
            assert_eq!(frame.header_len + len, out.len());
            let mut body = out[frame.header_len..].to_vec();
            apply_mask(&mut body, frame.mask.unwrap());
            assert_eq!(body, payload);
            // Any strict prefix is incomplete.
            assert_eq!(parse_frame(&out[..out.len() - 1]).unwrap(), None);
        }
    }

    #[test]
    fn server_frames_are_unmasked() {
        let mut out = Vec::new();
        encode_frame(&mut out, FIN_BINARY, b"hi", None);
        assert_eq!(out, [FIN_BINARY, 2, b'h', b'i']);
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut header = vec![FIN_BINARY, 127];
        header.extend_from_slice(&(MAX_FRAME + 1).to_be_bytes());
        assert!(parse_frame(&header).is_err());
    }
}
