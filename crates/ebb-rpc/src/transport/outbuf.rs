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
//! This module is the buffer, its producers' side and the writer task's
//! entry points; how bytes reach a socket lives beside it, one way per
//! module: plain TCP in place (`tcp.rs`), TLS in place (`in_place.rs`:
//! rustls takes the plaintext into its own buffer and writes the records
//! the socket takes, polled without a waker), and TLS written by the
//! writer task alone with two swapped buffers (`swapping.rs`, through
//! [`OutBuf::drain_into`]). Large payloads stay in their own buffers
//! ([`FrameBuf`]) and go out with the headers in one vectored write.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use super::framebuf::FrameBuf;
use super::stream::{TlsWriteHalf, WriteSide};

mod close;
mod in_place;
mod swapping;
mod tcp;

pub use close::CLOSE_FLUSH_TIMEOUT_MS;

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
    /// of it reached the socket (see [`tcp::write_now`]).
    fn write_now(
        &mut self,
        buf: &mut FrameBuf,
        written: &mut usize,
        sent: &Sent,
        recycle: bool,
    ) -> io::Result<bool> {
        match self {
            Direct::Tcp(sock) => tcp::write_now(sock, buf, written, sent, recycle),
            Direct::Tls(sock) => in_place::write_now(sock, buf, written, sent, recycle),
        }
    }
}

/// What has gone to the socket so far, counted as each write returns, by
/// whoever wrote it: a producer in place or the writer task.
#[derive(Debug, Default)]
struct Sent {
    /// Bytes: how a client tells a large request still leaving from a
    /// lost one.
    bytes: AtomicU64,
    /// Write calls that took bytes: how batching is counted. On plain TCP
    /// each is one `write` or `writev` system call (one that would block
    /// took nothing and is not counted); over TLS each hands plaintext to
    /// rustls, which writes its records with system calls of its own.
    writes: AtomicU64,
}

impl Sent {
    /// Counts one write call that took `n` bytes.
    fn wrote(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.writes.fetch_add(1, Ordering::Relaxed);
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
    sent: Sent,
    /// Payloads written from their own buffers go back to the thread's
    /// reply buffers once written, when nothing else holds them (see
    /// [`OutBuf::for_replies`]).
    recycle: bool,
    /// Set when the writer gave up on a closed connection's last writes
    /// (see [`OutBuf::flush_abandoned`]).
    abandoned: AtomicBool,
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
            sent: Sent::default(),
            recycle: false,
            abandoned: AtomicBool::new(false),
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
                        .write_now(buf, written, &self.sent, self.recycle)
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

    /// Stops the writer after it has flushed what is pending, or
    /// [`CLOSE_FLUSH_TIMEOUT_MS`] from now if the peer does not take it.
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
        self.sent.bytes.load(Ordering::Relaxed)
    }

    /// Write calls that took bytes so far, by producers in place and by
    /// the writer task alike: on plain TCP every `write` or `writev`
    /// system call the connection made that the kernel took bytes from;
    /// over TLS every hand-over of plaintext to rustls (whose own system
    /// calls are not seen here).
    pub fn writes(&self) -> u64 {
        self.sent.writes.load(Ordering::Relaxed)
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
    /// fails, or until [`CLOSE_FLUSH_TIMEOUT_MS`] after the close (`close.rs`).
    /// Marks the buffer closed on exit so producers stop at once, and shuts
    /// the socket's write side. Over TLS this task writes everything (see
    /// [`OutBuf::drain_in_place`] for the alternative).
    pub async fn drain_into(&self, sock: WriteSide) -> io::Result<()> {
        let result = match sock {
            WriteSide::Tcp(sock) => {
                self.bounded_by_close(self.drain_direct(Arc::new(sock)))
                    .await
            }
            tls @ WriteSide::Tls(_) => self.bounded_by_close(self.drain_swapping(tls)).await,
        };
        self.finish_draining();
        result
    }

    /// [`OutBuf::drain_into`], except that over TLS too producers write in
    /// place and this task only finishes what the socket would not take:
    /// a caller's request reaches the socket without waking another task.
    pub async fn drain_in_place(&self, sock: WriteSide) -> io::Result<()> {
        let result = match sock {
            WriteSide::Tcp(sock) => {
                self.bounded_by_close(self.drain_direct(Arc::new(sock)))
                    .await
            }
            WriteSide::Tls(sock) => {
                self.bounded_by_close(self.drain_tls_in_place(Box::new(sock)))
                    .await
            }
        };
        self.finish_draining();
        result
    }

    fn finish_draining(&self) {
        self.closed.store(true, Ordering::Release);
        self.drained.notify_waiters();
        self.closing.notify_waiters();
    }
}

#[cfg(test)]
mod tests;
