//! Write coalescing, with the writing done in place when the socket takes
//! it.
//!
//! Producers append encoded frames to one shared buffer. On plain TCP the
//! producer then writes them itself, at once, with a non-blocking write: a
//! reply or a request reaches the kernel without waking another task, which
//! cost a task switch (and, across threads, a futex call) per batch. Only
//! when the socket would block (the peer reads slower than we write) is the
//! rest left to the connection's writer task, which waits until the socket
//! takes more; meanwhile producers only append, so frames keep their order,
//! and everything appended leaves with the writer's next write.
//!
//! A TLS stream is written through `&mut` and an async context. With
//! [`OutBuf::drain_into`] the writer task ships everything there: it swaps
//! out whatever has accumulated and writes it with one `write`, many frames
//! per syscall under load; two buffers are swapped back and forth, so
//! steady state allocates nothing. With [`OutBuf::drain_in_place`] a TLS
//! producer writes in place as on plain TCP (`in_place.rs`): rustls takes
//! the plaintext into its own buffer and writes the records the socket
//! takes, polled without a waker; the writer task only waits for room when
//! the socket is full. Large payloads stay in their own buffers
//! ([`FrameBuf`]) and go out with the headers in one vectored write.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use super::framebuf::{FrameBuf, MAX_SLICES_PER_WRITE};
use super::stream::{TlsWriteHalf, WriteSide};

mod in_place;

/// Bytes that may wait in one connection's output buffer; a producer that
/// would exceed it is told the connection is overloaded instead of growing
/// memory without bound.
pub const MAX_PENDING_WRITE_BYTES: usize = 8 * 1024 * 1024;

/// Capacity each of the two buffers starts with.
const INITIAL_BUF_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("connection closed")]
    Closed,
    #[error("output buffer over {MAX_PENDING_WRITE_BYTES} bytes")]
    Full,
}

/// What the lock guards: the bytes not yet written and who writes them.
#[derive(Debug)]
struct Pending {
    buf: FrameBuf,
    /// Bytes at the front of `buf` already written (after a partial
    /// write in place).
    written: usize,
    /// The socket, once a writer that lets producers write in place runs:
    /// producers write to it themselves.
    direct: Option<Direct>,
    /// The socket did not take everything: the writer waits for room and
    /// writes the rest; until it has, producers only append.
    blocked: bool,
}

/// A socket producers write to in place.
#[derive(Debug)]
enum Direct {
    Tcp(Arc<OwnedWriteHalf>),
    /// Written under the pending lock; rustls buffers what the socket does
    /// not take yet.
    Tls(Box<TlsWriteHalf>),
}

impl Direct {
    /// Writes what `buf` holds past `written` without waiting; true if all
    /// of it reached the socket (see [`write_now`]).
    fn write_now(
        &mut self,
        buf: &mut FrameBuf,
        written: &mut usize,
        counted: &AtomicU64,
        recycle: bool,
    ) -> io::Result<bool> {
        match self {
            Direct::Tcp(sock) => write_now(sock, buf, written, counted, recycle),
            Direct::Tls(sock) => in_place::write_now(sock, buf, written, counted, recycle),
        }
    }
}

impl Pending {
    fn unwritten(&self) -> usize {
        self.buf.len() - self.written
    }
}

#[derive(Debug)]
pub struct OutBuf {
    pending: Mutex<Pending>,
    wake: Notify,
    /// Signalled after the writer task writes, for readers that pause
    /// while full. (A producer writing in place never leaves a buffer
    /// that anyone waits on: it writes only while not blocked, when
    /// nothing else is pending.)
    drained: Notify,
    /// Signalled once, when closed: a reader waiting for that is not woken
    /// by every write.
    closing: Notify,
    closed: AtomicBool,
    /// Bytes written to the socket so far, counted as each write returns:
    /// how a client tells a large request still leaving from a lost one.
    written: AtomicU64,
    /// Payloads written from their own buffers go back to the thread's
    /// reply buffers once written, when nothing else holds them (see
    /// [`OutBuf::for_replies`]).
    recycle: bool,
}

impl Default for OutBuf {
    fn default() -> Self {
        OutBuf {
            pending: Mutex::new(Pending {
                buf: FrameBuf::with_capacity(INITIAL_BUF_BYTES),
                written: 0,
                direct: None,
                blocked: false,
            }),
            wake: Notify::new(),
            drained: Notify::new(),
            closing: Notify::new(),
            closed: AtomicBool::new(false),
            written: AtomicU64::new(0),
            recycle: false,
        }
    }
}

impl OutBuf {
    /// A server connection's output: a reply whose client acknowledged it
    /// while it was still being written is no longer in the reply table
    /// when the write ends, so its buffer is given back here
    /// (`crate::reply_pool`) rather than freed.
    pub fn for_replies() -> OutBuf {
        OutBuf {
            recycle: true,
            ..OutBuf::default()
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Pending>, PushError> {
        self.pending.lock().map_err(|_| PushError::Closed)
    }

    /// Appends bytes with `encode` (which must append whole frames) and
    /// writes them now if the socket takes them, else leaves them to the
    /// writer.
    pub fn push_with(&self, encode: impl FnOnce(&mut FrameBuf)) -> Result<(), PushError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        let hand_over = {
            let mut pending = self.lock()?;
            if pending.unwritten() > MAX_PENDING_WRITE_BYTES {
                return Err(PushError::Full);
            }
            let Pending {
                buf,
                written,
                direct,
                blocked,
            } = &mut *pending;
            encode(buf);
            match direct {
                // The writer is waiting for room and takes these too.
                Some(_) if *blocked => false,
                Some(sock) => {
                    // A write error is the writer's to report: it meets
                    // the same error and closes the buffer.
                    let all = sock
                        .write_now(buf, written, &self.written, self.recycle)
                        .unwrap_or(false);
                    *blocked = !all;
                    *blocked
                }
                None => true,
            }
        };
        // notify_one stores a permit if the writer is busy, so no wake-up is lost.
        if hand_over {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Appends bytes with `encode` (which must append whole frames)
    /// without writing them: they leave with the next [`OutBuf::flush`] or
    /// [`OutBuf::push_with`]. For a producer that knows more frames follow
    /// at once, so all of them leave with one system call instead of one
    /// each (and wake the peer once).
    pub fn append_with(&self, encode: impl FnOnce(&mut FrameBuf)) -> Result<(), PushError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        let mut pending = self.lock()?;
        if pending.unwritten() > MAX_PENDING_WRITE_BYTES {
            return Err(PushError::Full);
        }
        encode(&mut pending.buf);
        Ok(())
    }

    /// Writes (or hands to the writer) whatever was appended and not yet
    /// written.
    pub fn flush(&self) -> Result<(), PushError> {
        self.push_with(|_| {})
    }

    /// Hands over `batch` (whole frames) and writes or queues it; leaves
    /// `batch` empty. When nothing is pending the two buffers are swapped
    /// instead of copied, so a batch of replies reaches the socket without
    /// a copy and `batch` gets back a buffer that already has capacity.
    pub fn push_batch(&self, batch: &mut FrameBuf) -> Result<(), PushError> {
        let pushed = self.push_with(|pending| pending.append(batch));
        batch.clear();
        pushed
    }

    /// Stops the writer after it has flushed what is pending.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
        self.closing.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Bytes written to the socket so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    fn pending_bytes(&self) -> usize {
        self.pending.lock().map_or(0, |p| p.unwritten())
    }

    /// Waits until fewer than `mark` bytes are pending (or the buffer is
    /// closed). A server calls this before reading more requests, so a peer
    /// that does not read its replies stops being served instead of making
    /// us buffer them.
    pub async fn wait_below(&self, mark: usize) {
        // The usual case, without registering for a wake-up (which costs
        // more than the check).
        if self.is_closed() || self.pending_bytes() < mark {
            return;
        }
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            // Registered before the check, so a write finishing in between
            // still wakes us.
            drained.as_mut().enable();
            if self.is_closed() || self.pending_bytes() < mark {
                return;
            }
            drained.await;
        }
    }

    /// Waits until the buffer is closed (by [`OutBuf::close`] or a failed
    /// write), so a reader can stop when its connection is closed for it.
    pub async fn wait_closed(&self) {
        let closing = self.closing.notified();
        tokio::pin!(closing);
        // Registered before the check, so a close in between still wakes us.
        closing.as_mut().enable();
        if self.is_closed() {
            return;
        }
        closing.await;
    }

    /// The writer task's body: ships pending bytes until closed or the socket
    /// fails. Marks the buffer closed on exit so producers stop at once,
    /// and shuts the socket's write side. Over TLS this task writes
    /// everything (see [`OutBuf::drain_in_place`] for the alternative).
    pub async fn drain_into(&self, sock: WriteSide) -> io::Result<()> {
        let result = match sock {
            WriteSide::Tcp(sock) => self.drain_direct(Arc::new(sock)).await,
            tls @ WriteSide::Tls(_) => self.drain_swapping(tls).await,
        };
        self.finish_draining();
        result
    }

    /// [`OutBuf::drain_into`], except that over TLS too producers write in
    /// place and this task only finishes what the socket would not take:
    /// a caller's request reaches the socket without waking another task.
    pub async fn drain_in_place(&self, sock: WriteSide) -> io::Result<()> {
        let result = match sock {
            WriteSide::Tcp(sock) => self.drain_direct(Arc::new(sock)).await,
            WriteSide::Tls(sock) => self.drain_tls_in_place(Box::new(sock)).await,
        };
        self.finish_draining();
        result
    }

    fn finish_draining(&self) {
        self.closed.store(true, Ordering::Release);
        self.drained.notify_waiters();
        self.closing.notify_waiters();
    }

    /// Plain TCP: producers write in place; this task writes only what the
    /// socket would not take at once.
    async fn drain_direct(&self, sock: Arc<OwnedWriteHalf>) -> io::Result<()> {
        if let Ok(mut pending) = self.lock() {
            pending.direct = Some(Direct::Tcp(Arc::clone(&sock)));
            // What was pushed before this task ran is flushed below
            // before producers write again.
            pending.blocked = true;
        }
        let result = loop {
            if let Err(e) = self.flush_direct(&sock).await {
                break Err(e);
            }
            if self.is_closed() {
                break Ok(());
            }
            self.wake.notified().await;
        };
        // The socket's last owner drops it, which shuts its write side.
        if let Ok(mut pending) = self.lock() {
            pending.direct = None;
        }
        result
    }

    /// Writes everything pending, waiting for room as needed, then lets
    /// producers write in place again.
    async fn flush_direct(&self, sock: &OwnedWriteHalf) -> io::Result<()> {
        loop {
            let all = {
                let Ok(mut pending) = self.lock() else {
                    return Ok(());
                };
                let Pending {
                    buf,
                    written,
                    blocked,
                    ..
                } = &mut *pending;
                let all = write_now(sock, buf, written, &self.written, self.recycle)?;
                *blocked = !all;
                all
            };
            if all {
                self.drained.notify_waiters();
                return Ok(());
            }
            sock.writable().await?;
        }
    }

    /// TLS: this task writes everything, swapping the pending buffer out.
    async fn drain_swapping(&self, mut sock: WriteSide) -> io::Result<()> {
        let mut spare = FrameBuf::with_capacity(INITIAL_BUF_BYTES);
        let result = loop {
            {
                let Ok(mut pending) = self.lock() else {
                    break Ok(());
                };
                std::mem::swap(&mut pending.buf, &mut spare);
            }
            if spare.is_empty() {
                if self.is_closed() {
                    break Ok(());
                }
                self.wake.notified().await;
                continue;
            }
            if let Err(e) = write_frames(&mut sock, &spare, &self.written).await {
                break Err(e);
            }
            // TLS may hold back records until flushed.
            if let Err(e) = sock.flush().await {
                break Err(e);
            }
            if self.recycle {
                spare.clear_recycling();
            } else {
                spare.clear();
            }
            self.drained.notify_waiters();
        };
        let _ = sock.shutdown().await;
        result
    }
}

/// Writes as much of `buf` (past its first `written` bytes) as the socket
/// takes without blocking, adding what it wrote to `counted`. Returns
/// whether all of it went (then `buf` is cleared, keeping its capacity).
fn write_now(
    sock: &OwnedWriteHalf,
    buf: &mut FrameBuf,
    written: &mut usize,
    counted: &AtomicU64,
    recycle: bool,
) -> io::Result<bool> {
    while *written < buf.len() {
        let wrote = match buf.contiguous() {
            Some(bytes) => sock.try_write(&bytes[*written..]),
            None => {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES_PER_WRITE];
                let n = buf.slices_from(*written, &mut slices);
                sock.try_write_vectored(&slices[..n])
            }
        };
        match wrote {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *written += n;
                counted.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    if recycle {
        buf.clear_recycling();
    } else {
        buf.clear();
    }
    *written = 0;
    Ok(true)
}

/// Writes all of `frames`: with one `write` when they are contiguous, else
/// with vectored writes of the headers and the shared payloads in place
/// (a stream without vectored writes, such as TLS, takes one slice per
/// call, which is still correct).
async fn write_frames(
    sock: &mut WriteSide,
    frames: &FrameBuf,
    counted: &AtomicU64,
) -> io::Result<()> {
    if let Some(bytes) = frames.contiguous() {
        sock.write_all(bytes).await?;
        counted.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        return Ok(());
    }
    let total = frames.len();
    let mut written = 0;
    while written < total {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES_PER_WRITE];
        let n = frames.slices_from(written, &mut slices);
        match sock.write_vectored(&slices[..n]).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            k => {
                written += k;
                counted.fetch_add(k as u64, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncRead, AsyncReadExt};
    use tokio::net::{TcpSocket, TcpStream};
    use tokio_rustls::rustls;

    /// Socket buffers this small fill after a few frames, so the writer's
    /// path runs without megabytes of test data.
    const SMALL_SOCKET_BUFFER_BYTES: u32 = 4096;
    const FRAME_BYTES: usize = 1000;
    const FRAMES: usize = 2000;

    async fn small_buffered_pair() -> (TcpStream, TcpStream) {
        let listening = TcpSocket::new_v4().unwrap();
        listening
            .set_recv_buffer_size(SMALL_SOCKET_BUFFER_BYTES)
            .unwrap();
        listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listening.local_addr().unwrap();
        let listener = listening.listen(1).unwrap();
        let sending = TcpSocket::new_v4().unwrap();
        sending
            .set_send_buffer_size(SMALL_SOCKET_BUFFER_BYTES)
            .unwrap();
        let sender = sending.connect(addr).await.unwrap();
        let (receiver, _) = listener.accept().await.unwrap();
        (sender, receiver)
    }

    fn frame(i: usize) -> Vec<u8> {
        vec![u8::try_from(i % 251).unwrap(); FRAME_BYTES]
    }

    /// Frames written in place, then by the writer while the socket is
    /// full, then in place again, reach the peer whole and in order.
    #[tokio::test]
    async fn frames_keep_their_order_across_writes_in_place_and_by_the_writer() {
        let (sender, receiver) = small_buffered_pair().await;
        let (_read, write) = crate::transport::stream::tcp(sender);
        keep_order(write, Box::new(receiver)).await;
    }

    /// The same over TLS, written in place through rustls: the producers'
    /// writes and the writer task's finishing of them keep the order, and
    /// the peer decrypts every byte.
    #[tokio::test]
    async fn tls_frames_keep_their_order_across_writes_in_place_and_by_the_writer() {
        let (sender, receiver) = small_buffered_pair().await;
        let (server, client) = tls_configs();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let connector = tokio_rustls::TlsConnector::from(client);
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let (sent, received) =
            tokio::join!(connector.connect(name, sender), acceptor.accept(receiver));
        let (_read, write) = crate::transport::stream::tls(sent.unwrap());
        keep_order(write, Box::new(received.unwrap())).await;
    }

    /// A server and a client configuration that trusts it, for
    /// `localhost`, made for the test.
    fn tls_configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        use tokio_rustls::rustls;
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = made.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.key_pair.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    async fn keep_order(write: WriteSide, mut receiver: Box<dyn AsyncRead + Unpin + Send>) {
        let out = Arc::new(OutBuf::default());
        let writer = {
            let out = Arc::clone(&out);
            tokio::spawn(async move { out.drain_in_place(write).await })
        };
        let state = |out: &OutBuf| {
            let p = out.pending.lock().unwrap();
            (p.direct.is_some(), p.blocked)
        };
        // Until the writer has started, producers only queue.
        while state(&out) != (true, false) {
            tokio::task::yield_now().await;
        }
        let mut want = Vec::with_capacity(FRAMES * FRAME_BYTES);
        let mut i = 0;
        let mut push = |out: &OutBuf, i: &mut usize| {
            let f = frame(*i);
            out.push_with(|b| b.head_mut().extend_from_slice(&f))
                .unwrap();
            want.extend_from_slice(&f);
            *i += 1;
        };
        // Nobody reads yet: the socket fills and the writer takes over.
        while !state(&out).1 {
            push(&out, &mut i);
            assert!(i < FRAMES, "the socket never filled");
        }
        let blocked_at = i;
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            receiver.read_to_end(&mut got).await.unwrap();
            got
        });
        // While the peer reads, the writer catches up and producers write
        // in place again.
        let mut in_place_again = false;
        while i < FRAMES {
            push(&out, &mut i);
            in_place_again |= !state(&out).1;
            tokio::task::yield_now().await;
        }
        assert!(in_place_again, "producers never wrote in place again");
        assert!(blocked_at > 1, "nothing was written in place first");
        out.close();
        writer.await.unwrap().unwrap();
        let got = reader.await.unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes reordered or corrupted");
        assert_eq!(out.written(), want.len() as u64);
    }
}
