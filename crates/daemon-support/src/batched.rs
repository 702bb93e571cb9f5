//! Sockets whose writes leave together, once per round of the scheduler, through io_uring.
//!
//! A [`BatchedStream`] copies what it is given into a queue of its own and returns at once. At
//! the end of the current round of tasks, a flusher task hands the queues of every socket
//! written to in that round to the kernel in a single `io_uring_enter`. (Each [`Batcher`] shard
//! has its own ring and flusher, so that several runtime workers can send at once.)
//!
//! Why: a proxy that shares a core with its backend (the hub, chp-proxy and the users' servers
//! on one machine) wakes the backend with each write, and the scheduler usually runs the woken
//! backend at once, before the proxy returns from `write`. With one write per request, the
//! backend answers one request per wake-up and the core switches tasks twice for each request.
//! When a round's writes enter the kernel in one call, the backend is woken once for all of
//! them and answers them in one go; the proxy also makes one system call instead of many.
//!
//! What the owner of a stream sees:
//! - `poll_write` queues the bytes and reports them written, up to [`QUEUE_LIMIT`] queued
//!   bytes; with a full queue it waits. The bytes reach the socket at the end of the round, in order.
//! - When the socket's buffer is full, the flusher waits for it to drain and writes the rest
//!   itself; meanwhile `poll_flush` waits.
//! - `poll_shutdown` waits until every queued byte is sent, then shuts the write side down.
//! - An error of a send is reported by the next write, flush or shutdown.
//! - Dropping the stream sends what is queued if the socket takes it at once (as closing a
//!   socket would) and gives up on the rest.
//!
//! Reads go straight to the socket, driven by tokio's reactor.

use std::future::poll_fn;
use std::io::{self, IoSlice, Write as _};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::sync::Notify;

/// Bytes a stream may have queued before `poll_write` waits for them to be sent.
pub const QUEUE_LIMIT: usize = 64 * 1024;

/// Buffer capacity an idle stream keeps; more is given back once its bytes are sent, so that
/// idle connections do not hold the memory of a large response they once carried.
const KEPT_CAPACITY: usize = 16 * 1024;

/// Submission queue entries of the ring: a round with more sockets takes several calls.
const RING_ENTRIES: u32 = 256;

/// Shuts down the write side of `socket`; a peer that already closed needs no telling.
fn shutdown_write(socket: &TcpStream) -> io::Result<()> {
    match socket.shutdown(std::net::Shutdown::Write) {
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        r => r,
    }
}

/// Gathers the writes of many [`BatchedStream`]s and sends them once per round.
///
/// It has one ring and one flusher task per CPU the process may run on (shards), and deals
/// new streams out to them in turn, so that sending is spread over the runtime's workers.
///
/// Cheap to clone. Its flusher tasks end once every clone and every stream is gone.
#[derive(Debug, Clone)]
pub struct Batcher {
    shards: Arc<[Arc<Shared>]>,
    next: Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Debug)]
struct Shared {
    /// Streams with bytes to send this round.
    scheduled: Mutex<Vec<Arc<Conn>>>,
    /// Rounds flushed so far.
    rounds: std::sync::atomic::AtomicU64,
    /// Wakes the flusher; shared with it so that it can wait without keeping `Shared` alive.
    wake: Arc<Notify>,
    ring: Mutex<Ring>,
}

struct Ring {
    uring: io_uring::IoUring,
    /// The streams whose sends are in the submission queue, indexed by `user_data`.
    sending: Vec<Arc<Conn>>,
    /// Streams whose socket buffer was full; the flusher writes to them once writable.
    blocked: Vec<Arc<Conn>>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("sending", &self.sending.len())
            .field("blocked", &self.blocked.len())
            .finish_non_exhaustive()
    }
}

impl Batcher {
    /// A batcher whose flusher runs on the current tokio runtime.
    ///
    /// # Errors
    /// When the kernel offers no io_uring (older than 5.6, `kernel.io_uring_disabled`, or a
    /// seccomp profile such as Docker's default one); write to the sockets directly then.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new() -> io::Result<Self> {
        Self::with_shards(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// A batcher with `shards` rings and flusher tasks (at least one).
    ///
    /// # Errors
    /// As [`Batcher::new`].
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn with_shards(shards: usize) -> io::Result<Self> {
        let shards = (0..shards.max(1))
            .map(|_| {
                let uring = io_uring::IoUring::new(RING_ENTRIES)?;
                let shared = Arc::new(Shared {
                    scheduled: Mutex::new(Vec::new()),
                    rounds: std::sync::atomic::AtomicU64::new(0),
                    wake: Arc::new(Notify::new()),
                    ring: Mutex::new(Ring {
                        uring,
                        sending: Vec::new(),
                        blocked: Vec::new(),
                    }),
                });
                tokio::spawn(flusher(Arc::downgrade(&shared), shared.wake.clone()));
                Ok(shared)
            })
            .collect::<io::Result<Arc<[_]>>>()?;
        Ok(Self {
            shards,
            next: Arc::default(),
        })
    }

    /// How many rounds of writes have been flushed, over all shards (each round one
    /// `io_uring_enter` per 256 sockets).
    pub fn rounds(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.rounds.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// Wraps a connected tokio TCP stream.
    ///
    /// # Errors
    /// When the socket cannot be moved to the new registration.
    pub fn tcp(&self, stream: tokio::net::TcpStream) -> io::Result<BatchedStream> {
        let socket = stream.into_std()?;
        #[allow(unsafe_code, reason = "registering an owned socket with the reactor")]
        // SAFETY: the `TcpStream` owns its descriptor, keeps it open for as long as it lives
        // and always returns the same one from `as_raw_fd`.
        let io = unsafe {
            AsyncFd::register_with_interest(socket, Interest::READABLE | Interest::WRITABLE)
        }
        .map_err(io::Error::from)?;
        let turn = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(BatchedStream {
            conn: Arc::new(Conn {
                io,
                state: Mutex::new(State::default()),
                batcher: self.shards[turn % self.shards.len()].clone(),
            }),
        })
    }
}

/// Flushes at the end of each round in which something was written, and writes to the blocked
/// streams as their sockets drain. Returns once the batcher and all its streams are gone.
async fn flusher(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        let proceed = poll_fn(|cx| {
            let Some(strong) = shared.upgrade() else {
                return Poll::Ready(false);
            };
            let nothing_scheduled = lock(&strong.scheduled).is_empty();
            lock(&strong.ring).drive_blocked(cx);
            drop(strong);
            if !nothing_scheduled {
                return Poll::Ready(true);
            }
            // `notify_one` stores a permit when nobody waits, so a stream scheduled after the
            // check above is not missed; `Shared` going away notifies too.
            notified.as_mut().poll(cx).map(|()| true)
        })
        .await;
        if !proceed {
            return;
        }
        // Let the other tasks of this round queue their writes first.
        tokio::task::yield_now().await;
        if let Some(strong) = shared.upgrade() {
            strong.flush();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

impl Shared {
    fn schedule(&self, conn: Arc<Conn>) {
        let first = {
            let mut list = lock(&self.scheduled);
            list.push(conn);
            list.len() == 1
        };
        if first {
            self.wake.notify_one();
        }
    }

    fn flush(&self) {
        let conns = std::mem::take(&mut *lock(&self.scheduled));
        if conns.is_empty() {
            return;
        }
        self.rounds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut ring = lock(&self.ring);
        ring.send(conns);
        if !ring.blocked.is_empty() {
            // Have the flusher look at the newly blocked sockets.
            self.wake.notify_one();
        }
    }
}

impl Ring {
    fn send(&mut self, conns: Vec<Arc<Conn>>) {
        for conn in conns {
            // A full submission queue goes out first; `user_data` below counts from there.
            if self.uring.submission().is_full() {
                self.complete();
            }
            let entry = {
                let mut state = lock(&conn.state);
                let state = &mut *state;
                state.scheduled = false;
                if state.blocked || state.error.is_some() || state.queued.is_empty() {
                    continue;
                }
                debug_assert!(state.sending.is_empty());
                std::mem::swap(&mut state.sending, &mut state.queued);
                state.in_ring = true;
                let len = u32::try_from(state.sending.len()).unwrap_or(u32::MAX);
                io_uring::opcode::Send::new(
                    io_uring::types::Fd(conn.io.as_raw_fd()),
                    state.sending.as_ptr(),
                    len,
                )
                // Never wait inside the kernel: a full socket buffer comes back as EAGAIN, and
                // the socket joins the blocked ones.
                .flags(libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
                .build()
                .user_data(self.sending.len() as u64)
            };
            #[allow(
                unsafe_code,
                reason = "the kernel reads `sending` until the completion is reaped"
            )]
            // SAFETY: `state.sending` is neither changed nor dropped while `in_ring` is set, and
            // `conn`, which owns it and the socket, stays in `self.sending` until `complete` has
            // reaped this entry's completion.
            let pushed = unsafe { self.uring.submission().push(&entry) };
            if pushed.is_err() {
                // Not reached: the queue was emptied just above.
                conn.fail(&io::Error::other("io_uring submission queue full"));
                continue;
            }
            self.sending.push(conn);
        }
        self.complete();
    }

    /// Submits the queued sends and reaps every completion. Sends never wait in the kernel
    /// (`MSG_DONTWAIT`), so their completions are posted before `io_uring_enter` returns.
    fn complete(&mut self) {
        let want = self.sending.len();
        let mut reaped = 0;
        while reaped < want {
            if let Err(e) = self.uring.submit_and_wait(want - reaped) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The ring is unusable (not seen in practice): fail the sends still out.
                tracing::error!(error = %e, "io_uring_enter failed");
                for conn in self.sending.drain(..) {
                    conn.fail(&e);
                }
                return;
            }
            for cqe in self.uring.completion() {
                reaped += 1;
                let Some(conn) = usize::try_from(cqe.user_data())
                    .ok()
                    .and_then(|i| self.sending.get(i))
                else {
                    continue;
                };
                if conn.sent(cqe.result()) {
                    self.blocked.push(conn.clone());
                }
            }
        }
        self.sending.clear();
    }

    /// Writes what it can to the blocked sockets, and registers `cx` for the others.
    fn drive_blocked(&mut self, cx: &mut Context<'_>) {
        self.blocked
            .retain(|conn| conn.poll_unblock(cx).is_pending());
    }
}

#[derive(Debug)]
struct Conn {
    io: AsyncFd<TcpStream>,
    state: Mutex<State>,
    batcher: Arc<Shared>,
}

#[derive(Debug, Default)]
struct State {
    /// Written by the owner, not yet handed to the kernel.
    queued: Vec<u8>,
    /// Handed to the kernel; untouched until the completion is reaped.
    sending: Vec<u8>,
    in_ring: bool,
    /// In the batcher's list for this round.
    scheduled: bool,
    /// The socket's buffer was full; the flusher writes `queued` once the socket is writable.
    blocked: bool,
    /// The owner dropped the stream.
    dropped: bool,
    /// The first error of a send, reported to the owner.
    error: Option<(io::ErrorKind, String)>,
    /// The owner's task, woken when its queue shrinks or an error happens.
    waker: Option<Waker>,
}

impl State {
    fn error(&self) -> Option<io::Error> {
        self.error
            .as_ref()
            .map(|(kind, msg)| io::Error::new(*kind, msg.clone()))
    }

    fn set_error(&mut self, e: &io::Error) {
        self.queued = Vec::new();
        self.error = Some((e.kind(), e.to_string()));
    }

    fn set_waker(&mut self, cx: &Context<'_>) {
        match &self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Whether every byte written so far has reached the kernel.
    fn sent_all(&self) -> bool {
        self.queued.is_empty() && !self.in_ring
    }
}

impl Conn {
    /// Records the result of a batched send; `true` when the socket is now blocked.
    fn sent(self: &Arc<Self>, result: i32) -> bool {
        let mut state = lock(&self.state);
        let state = &mut *state;
        state.in_ring = false;
        let sent = match usize::try_from(result) {
            Ok(n) => n,
            Err(_) if result == -libc::EAGAIN => 0,
            Err(_) => {
                state.sending.clear();
                state.set_error(&io::Error::from_raw_os_error(-result));
                state.wake();
                return false;
            }
        };
        if sent == state.sending.len() {
            state.sending.clear();
            state.sending.shrink_to(KEPT_CAPACITY);
            // Bytes written while this send was out go in the next round.
            if !state.queued.is_empty() && !state.scheduled {
                state.scheduled = true;
                self.batcher.schedule(self.clone());
            }
            if state.queued.len() < QUEUE_LIMIT {
                state.wake();
            }
            return false;
        }
        // The rest goes back in front of the queue, for the flusher to write when it can.
        state.sending.drain(..sent);
        state.sending.append(&mut state.queued);
        std::mem::swap(&mut state.sending, &mut state.queued);
        state.blocked = true;
        true
    }

    fn fail(&self, e: &io::Error) {
        let mut state = lock(&self.state);
        state.in_ring = false;
        state.sending.clear();
        state.set_error(e);
        state.wake();
    }

    /// Writes the queue of a blocked socket as the socket takes it. `Ready` once the socket is
    /// no longer blocked (or failed, or was dropped by its owner).
    fn poll_unblock(&self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            {
                let mut state = lock(&self.state);
                if !state.blocked {
                    return Poll::Ready(());
                }
                if state.queued.is_empty() || state.error.is_some() || state.dropped {
                    state.blocked = false;
                    state.wake();
                    return Poll::Ready(());
                }
            }
            let mut guard = match self.io.poll_write_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(guard)) => guard,
                Poll::Ready(Err(e)) => {
                    let mut state = lock(&self.state);
                    state.set_error(&e);
                    continue;
                }
            };
            let mut state = lock(&self.state);
            // `try_io` clears the readiness on `WouldBlock`, so the loop then waits for it.
            match guard.try_io(|io| io.get_ref().write(&state.queued)) {
                Ok(Ok(n)) => {
                    state.queued.drain(..n);
                    if state.queued.is_empty() {
                        state.queued.shrink_to(KEPT_CAPACITY);
                    }
                }
                Ok(Err(e)) => state.set_error(&e),
                Err(_would_block) => {}
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A socket whose writes are sent in batches: see the [module docs](self).
#[derive(Debug)]
pub struct BatchedStream {
    conn: Arc<Conn>,
}

impl Drop for BatchedStream {
    fn drop(&mut self) {
        // A scheduled queue still goes out with the round; a blocked one is given up.
        lock(&self.conn.state).dropped = true;
    }
}

impl AsyncRead for BatchedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.conn.io.poll_read_ready(cx))?;
            #[allow(unsafe_code, reason = "reading into the caller's uninitialized buffer")]
            // SAFETY: `read(2)` only writes into the `len` bytes it is given, and `assume_init`
            // covers exactly the `n` bytes it reports written.
            let result = guard.try_io(|io| unsafe {
                let unfilled = buf.unfilled_mut();
                let len = unfilled.len();
                let n = libc::read(io.as_raw_fd(), unfilled.as_mut_ptr().cast(), len);
                let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
                buf.assume_init(n);
                buf.advance(n);
                Ok((n, len))
            });
            match result {
                Ok(Ok((n, len))) => {
                    // A short read emptied the socket: skip the read that would say so.
                    if n > 0 && n < len {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for BatchedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut state = lock(&self.conn.state);
        if let Some(e) = state.error() {
            return Poll::Ready(Err(e));
        }
        if state.queued.len() >= QUEUE_LIMIT {
            state.set_waker(cx);
            return Poll::Pending;
        }
        // Take what fits, so that the queue never holds much more than the limit.
        let room = QUEUE_LIMIT - state.queued.len();
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(room - n);
            state.queued.extend_from_slice(&b[..take]);
            n += take;
            if n == room {
                break;
            }
        }
        if n > 0 && !state.blocked && !state.scheduled && !state.in_ring {
            state.scheduled = true;
            drop(state);
            self.conn.batcher.schedule(self.conn.clone());
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = lock(&self.conn.state);
        if let Some(e) = state.error() {
            return Poll::Ready(Err(e));
        }
        if state.blocked {
            state.set_waker(cx);
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = lock(&self.conn.state);
        if let Some(e) = state.error() {
            return Poll::Ready(Err(e));
        }
        if !state.sent_all() {
            state.set_waker(cx);
            return Poll::Pending;
        }
        drop(state);
        Poll::Ready(shutdown_write(self.conn.io.get_ref()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A batched stream and the plain socket at its other end.
    async fn pair(batcher: &Batcher) -> (BatchedStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (batcher.tcp(ours.unwrap()).unwrap(), theirs.unwrap().0)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    #[tokio::test]
    async fn many_small_writes_arrive_in_order() {
        let batcher = Batcher::new().unwrap();
        let (mut ours, mut theirs) = pair(&batcher).await;
        let mut expected = Vec::new();
        for i in 0..2000u32 {
            let chunk = i.to_string().into_bytes();
            ours.write_all(&chunk).await.unwrap();
            expected.extend_from_slice(&chunk);
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        ours.shutdown().await.unwrap();
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn a_round_of_writes_to_many_sockets_is_one_flush() {
        let batcher = Batcher::with_shards(1).unwrap();
        let mut pairs = Vec::new();
        for _ in 0..20 {
            pairs.push(pair(&batcher).await);
        }
        // Everything written so far is out; count from here.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = batcher.rounds();
        for (i, (ours, _)) in pairs.iter_mut().enumerate() {
            ours.write_all(format!("hello {i}").as_bytes())
                .await
                .unwrap();
        }
        for (i, (_, theirs)) in pairs.iter_mut().enumerate() {
            let expected = format!("hello {i}");
            let mut got = vec![0; expected.len()];
            theirs.read_exact(&mut got).await.unwrap();
            assert_eq!(got, expected.as_bytes());
        }
        assert_eq!(
            batcher.rounds() - before,
            1,
            "twenty writes of one round, one flush"
        );
    }

    #[tokio::test]
    async fn a_round_with_more_sockets_than_ring_entries() {
        let batcher = Batcher::new().unwrap();
        let n = RING_ENTRIES as usize * 2 + 3;
        let mut pairs = Vec::new();
        for _ in 0..n {
            pairs.push(pair(&batcher).await);
        }
        for (i, (ours, _)) in pairs.iter_mut().enumerate() {
            ours.write_all(format!("socket {i}").as_bytes())
                .await
                .unwrap();
        }
        let all = async {
            for (i, (_, theirs)) in pairs.iter_mut().enumerate() {
                let expected = format!("socket {i}");
                let mut got = vec![0; expected.len()];
                theirs.read_exact(&mut got).await.unwrap();
                assert_eq!(got, expected.as_bytes());
            }
        };
        tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .expect("every socket got its bytes");
    }

    #[tokio::test]
    async fn a_slow_reader_gets_every_byte_of_a_large_write() {
        let batcher = Batcher::new().unwrap();
        let (mut ours, mut theirs) = pair(&batcher).await;
        // Far more than the socket buffers and the queue limit hold.
        let data = pattern(8 * 1024 * 1024 + 17, 3);
        let writer = async {
            ours.write_all(&data).await.unwrap();
            ours.shutdown().await.unwrap();
        };
        let reader = async {
            let mut got = Vec::new();
            let mut buf = vec![0; 64 * 1024];
            loop {
                let n = theirs.read(&mut buf).await.unwrap();
                if n == 0 {
                    break got;
                }
                got.extend_from_slice(&buf[..n]);
                if got.len() < 1024 * 1024 {
                    // Slow at first, so that the socket fills up and the flusher must wait.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        };
        let ((), got) = tokio::join!(writer, reader);
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes differ");
    }

    #[tokio::test]
    async fn writes_wait_while_the_queue_is_full() {
        let batcher = Batcher::new().unwrap();
        let (mut ours, _theirs) = pair(&batcher).await;
        // Nobody reads: the kernel buffers fill, then the queue.
        let data = pattern(QUEUE_LIMIT, 1);
        let stalled = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                ours.write_all(&data).await.unwrap();
            }
        })
        .await;
        assert!(stalled.is_err(), "writes must wait once the queue is full");
        let queued = lock(&ours.conn.state).queued.len();
        assert!(queued <= QUEUE_LIMIT, "queue grew to {queued} bytes");
    }

    #[tokio::test]
    async fn a_peer_that_went_away_is_an_error() {
        let batcher = Batcher::new().unwrap();
        let (mut ours, theirs) = pair(&batcher).await;
        drop(theirs);
        let data = pattern(4096, 9);
        let failed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Err(e) = ours.write_all(&data).await {
                    break e;
                }
                if let Err(e) = ours.flush().await {
                    break e;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("writing to a closed peer must fail, not hang");
        assert!(
            matches!(
                failed.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{failed:?}"
        );
    }

    #[tokio::test]
    async fn bytes_queued_before_a_drop_still_go_out() {
        let batcher = Batcher::new().unwrap();
        let (mut ours, mut theirs) = pair(&batcher).await;
        ours.write_all(b"last words").await.unwrap();
        drop(ours);
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), theirs.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"last words");
    }

    #[tokio::test]
    async fn reads_see_what_the_peer_wrote() {
        let batcher = Batcher::new().unwrap();
        let (mut ours, mut theirs) = pair(&batcher).await;
        let data = pattern(300_000, 5);
        let writer = async {
            theirs.write_all(&data).await.unwrap();
            theirs.shutdown().await.unwrap();
        };
        let mut got = Vec::new();
        let ((), read) = tokio::join!(writer, ours.read_to_end(&mut got));
        read.unwrap();
        assert!(got == data, "bytes differ");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_echoes_on_a_threaded_runtime() {
        let batcher = Batcher::with_shards(3).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for seed in 0..32u8 {
            let (ours, theirs) = pair(&batcher).await;
            tasks.spawn(async move {
                // The far end echoes everything back.
                let echo = tokio::spawn(async move {
                    let (mut r, mut w) = theirs.into_split();
                    tokio::io::copy(&mut r, &mut w).await.unwrap();
                    w.shutdown().await.unwrap();
                });
                let (mut r, mut w) = tokio::io::split(ours);
                let data = pattern(200_000 + usize::from(seed) * 997, seed);
                let sent = data.clone();
                let writer = tokio::spawn(async move {
                    for chunk in sent.chunks(1 + usize::from(seed) * 131) {
                        w.write_all(chunk).await.unwrap();
                    }
                    w.shutdown().await.unwrap();
                });
                let mut got = Vec::new();
                r.read_to_end(&mut got).await.unwrap();
                writer.await.unwrap();
                echo.await.unwrap();
                assert!(got == data, "stream {seed}: bytes differ");
            });
        }
        let all = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
        });
        all.await.expect("echoes finished");
    }
}
