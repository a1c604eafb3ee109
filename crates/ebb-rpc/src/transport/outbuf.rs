//! Write coalescing: producers append encoded frames to one shared buffer and
//! a single writer task ships whatever has accumulated with one `write`.
//!
//! Under load many replies (or requests) are appended while the previous
//! write is in flight, so they leave in one syscall; when idle, a lone frame
//! goes out at once. Two buffers are swapped back and forth, so steady state
//! allocates nothing. Large payloads stay in their own buffers
//! ([`FrameBuf`]) and go out with the headers in one vectored write.

use std::io::IoSlice;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use super::framebuf::{FrameBuf, MAX_SLICES_PER_WRITE};
use super::stream::WriteSide;

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

#[derive(Debug)]
pub struct OutBuf {
    pending: Mutex<FrameBuf>,
    wake: Notify,
    /// Signalled after each write, for readers that pause while full.
    drained: Notify,
    /// Signalled once, when closed: a reader waiting for that is not woken
    /// by every write.
    closing: Notify,
    closed: AtomicBool,
    /// Bytes written to the socket so far, counted as each write returns:
    /// how a client tells a large request still leaving from a lost one.
    written: AtomicU64,
}

impl Default for OutBuf {
    fn default() -> Self {
        OutBuf {
            pending: Mutex::new(FrameBuf::with_capacity(INITIAL_BUF_BYTES)),
            wake: Notify::new(),
            drained: Notify::new(),
            closing: Notify::new(),
            closed: AtomicBool::new(false),
            written: AtomicU64::new(0),
        }
    }
}

impl OutBuf {
    /// Appends bytes with `encode` (which must append whole frames) and
    /// wakes the writer.
    pub fn push_with(&self, encode: impl FnOnce(&mut FrameBuf)) -> Result<(), PushError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        {
            let mut buf = self.pending.lock().map_err(|_| PushError::Closed)?;
            if buf.len() > MAX_PENDING_WRITE_BYTES {
                return Err(PushError::Full);
            }
            encode(&mut buf);
        }
        // notify_one stores a permit if the writer is busy, so no wake-up is lost.
        self.wake.notify_one();
        Ok(())
    }

    /// Hands over `batch` (whole frames) and wakes the writer; leaves
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
        self.pending.lock().map_or(0, |b| b.len())
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
    /// fails. Marks the buffer closed on exit so producers stop at once.
    pub async fn drain_into(&self, mut sock: WriteSide) -> std::io::Result<()> {
        let mut spare = FrameBuf::with_capacity(INITIAL_BUF_BYTES);
        let result = loop {
            {
                let Ok(mut buf) = self.pending.lock() else {
                    break Ok(());
                };
                std::mem::swap(&mut *buf, &mut spare);
            }
            if spare.is_empty() {
                if self.is_closed() {
                    break Ok(());
                }
                self.wake.notified().await;
                continue;
            }
            // Flushing plain TCP does nothing; TLS may hold back records
            // until flushed.
            if let Err(e) = write_frames(&mut sock, &spare, &self.written).await {
                break Err(e);
            }
            if let Err(e) = sock.flush().await {
                break Err(e);
            }
            spare.clear();
            self.drained.notify_waiters();
        };
        self.closed.store(true, Ordering::Release);
        self.drained.notify_waiters();
        self.closing.notify_waiters();
        let _ = sock.shutdown().await;
        result
    }
}

/// Writes all of `frames`: with one `write` when they are contiguous, else
/// with vectored writes of the headers and the shared payloads in place
/// (a stream without vectored writes, such as TLS, takes one slice per
/// call, which is still correct).
async fn write_frames(
    sock: &mut WriteSide,
    frames: &FrameBuf,
    counted: &AtomicU64,
) -> std::io::Result<()> {
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
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            k => {
                written += k;
                counted.fetch_add(k as u64, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}
