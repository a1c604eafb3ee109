//! TLS written in place: the producer hands its frames to rustls itself.
//!
//! rustls encrypts the plaintext into its own buffer and writes the
//! records to the socket as far as the socket takes them, so the write
//! needs no other task. It is polled with a waker that does nothing: a
//! producer that meets a full socket (`Pending`) marks the buffer blocked
//! and wakes the writer task, which polls again with its own waker and so
//! is the one the socket wakes when it has room; until the writer has
//! written everything, producers only append (one writer at a time). What
//! rustls holds is bounded by its buffer limit (it takes no more plaintext
//! past it), what waits here by `MAX_PENDING_WRITE_BYTES`.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::super::framebuf::{FrameBuf, MAX_SLICES_PER_WRITE};
use super::super::stream::TlsWriteHalf;
use super::{Direct, OutBuf, Pending, Sent};

/// Hands what `buf` holds past `written` to rustls and writes its records
/// as far as the socket takes them, without waiting; true if everything
/// reached the socket. `buf` is cleared once rustls holds all of it (a
/// shared payload is then no longer needed), even while records wait.
pub(super) fn write_now(
    sock: &mut TlsWriteHalf,
    buf: &mut FrameBuf,
    written: &mut usize,
    sent: &Sent,
    recycle: bool,
) -> io::Result<bool> {
    poll_write(
        sock,
        buf,
        written,
        sent,
        recycle,
        &mut Context::from_waker(Waker::noop()),
    )
    .map(|()| true)
    .or_else(|e| {
        if e.kind() == io::ErrorKind::WouldBlock {
            Ok(false)
        } else {
            Err(e)
        }
    })
}

/// [`write_now`] with the caller's context: `WouldBlock` when the socket
/// would block, after registering `cx` for its room.
fn poll_write(
    sock: &mut TlsWriteHalf,
    buf: &mut FrameBuf,
    written: &mut usize,
    sent: &Sent,
    recycle: bool,
    cx: &mut Context<'_>,
) -> io::Result<()> {
    let would_block = || io::Error::from(io::ErrorKind::WouldBlock);
    while *written < buf.len() {
        let polled = match buf.contiguous() {
            Some(bytes) => Pin::new(&mut *sock).poll_write(cx, &bytes[*written..]),
            None => {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES_PER_WRITE];
                let n = buf.slices_from(*written, &mut slices);
                Pin::new(&mut *sock).poll_write_vectored(cx, &slices[..n])
            }
        };
        match polled {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                *written += n;
                sent.wrote(n);
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Err(would_block()),
        }
    }
    if !buf.is_empty() {
        if recycle {
            buf.clear_recycling();
        } else {
            buf.clear();
        }
        *written = 0;
    }
    // The records rustls still holds.
    match Pin::new(sock).poll_flush(cx) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(would_block()),
    }
}

impl OutBuf {
    /// The TLS writer task: producers write in place; this task writes
    /// only what the socket would not take at once, then closes the stream
    /// (TLS's close_notify) when the buffer is closed.
    pub(super) async fn drain_tls_in_place(&self, sock: Box<TlsWriteHalf>) -> io::Result<()> {
        if let Ok(mut pending) = self.lock() {
            pending.direct = Some(Direct::Tls(sock));
            // What was pushed before this task ran is flushed below
            // before producers write again.
            pending.blocked = true;
        }
        let result = loop {
            if let Err(e) = poll_fn(|cx| self.poll_finish(cx)).await {
                break Err(e);
            }
            if self.is_closed() {
                break Ok(());
            }
            self.wake.notified().await;
        };
        let taken = self.lock().ok().and_then(|mut p| p.direct.take());
        if let Some(Direct::Tls(mut sock)) = taken {
            let _ = sock.shutdown().await;
        }
        result
    }

    /// Writes everything pending, registering for room as needed, then
    /// lets producers write in place again.
    fn poll_finish(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Ok(mut pending) = self.lock() else {
            return Poll::Ready(Ok(()));
        };
        let Pending {
            buf,
            written,
            direct,
            blocked,
        } = &mut *pending;
        let Some(Direct::Tls(sock)) = direct else {
            return Poll::Ready(Ok(()));
        };
        match poll_write(sock, buf, written, &self.sent, self.recycle, cx) {
            Ok(()) => {
                *blocked = false;
                drop(pending);
                self.drained.notify_waiters();
                Poll::Ready(Ok(()))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *blocked = true;
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}
