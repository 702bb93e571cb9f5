//! Copying bytes both ways between an upgraded client connection and an upstream one.
//!
//! Both directions run until each side has closed. When one side closes, the other is told
//! (its write half is shut down), and it gets `linger` to close in turn; after that the
//! connection is dropped. So a vanished upstream never leaves a client socket open forever, and
//! a client that stops reading cannot hold the upstream socket either.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Bytes moved in each direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    /// From the client to the upstream.
    pub client_to_upstream: u64,
    /// From the upstream to the client.
    pub upstream_to_client: u64,
}

/// Copies in both directions until both are done, calling `on_client_data` each time data
/// arrives from the client. Returns when both sides are closed, or `linger` after the first.
///
/// # Errors
/// The first I/O error of either direction; both connections are closed by then.
pub async fn splice<C, U, F>(
    client: C,
    upstream: U,
    on_client_data: F,
    linger: Duration,
) -> std::io::Result<Moved>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
    F: FnMut() + Unpin,
{
    let (client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let mut client_read = Tap {
        inner: client_read,
        on_data: on_client_data,
    };

    let up = async {
        let n = tokio::io::copy(&mut client_read, &mut upstream_write).await?;
        upstream_write.shutdown().await.ok();
        Ok::<_, std::io::Error>(n)
    };
    let down = async {
        let n = tokio::io::copy(&mut upstream_read, &mut client_write).await?;
        client_write.shutdown().await.ok();
        Ok::<_, std::io::Error>(n)
    };
    tokio::pin!(up, down);

    let mut moved = Moved::default();
    tokio::select! {
        r = &mut up => {
            moved.client_to_upstream = r?;
            if let Ok(r) = tokio::time::timeout(linger, &mut down).await {
                moved.upstream_to_client = r?;
            }
        }
        r = &mut down => {
            moved.upstream_to_client = r?;
            if let Ok(r) = tokio::time::timeout(linger, &mut up).await {
                moved.client_to_upstream = r?;
            }
        }
    }
    Ok(moved)
}

/// A reader that calls `on_data` whenever it yields bytes.
struct Tap<R, F> {
    inner: R,
    on_data: F,
}

impl<R: AsyncRead + Unpin, F: FnMut() + Unpin> AsyncRead for Tap<R, F> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            (this.on_data)();
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, duplex};

    #[tokio::test]
    async fn copies_both_ways_and_counts_client_data() {
        let (client_near, mut client_far) = duplex(64);
        let (upstream_near, mut upstream_far) = duplex(64);
        let mut calls = 0;
        let task = async {
            splice(
                client_near,
                upstream_near,
                || calls += 1,
                Duration::from_secs(1),
            )
            .await
            .unwrap()
        };
        let peers = async {
            client_far.write_all(b"ping").await.unwrap();
            let mut buf = [0; 4];
            upstream_far.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            upstream_far.write_all(b"pong!").await.unwrap();
            let mut buf = [0; 5];
            client_far.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"pong!");
            drop(client_far);
            drop(upstream_far);
        };
        let (moved, ()) = tokio::join!(task, peers);
        assert_eq!(
            moved,
            Moved {
                client_to_upstream: 4,
                upstream_to_client: 5
            }
        );
        assert_eq!(calls, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn upstream_gone_closes_client_after_linger() {
        let (client_near, mut client_far) = duplex(64);
        let (upstream_near, upstream_far) = duplex(64);
        drop(upstream_far);
        // The client never closes; splice must still return.
        let moved = splice(client_near, upstream_near, || {}, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(moved.upstream_to_client, 0);
        let mut buf = [0; 1];
        assert_eq!(
            client_far.read(&mut buf).await.unwrap(),
            0,
            "client sees EOF"
        );
    }
}
