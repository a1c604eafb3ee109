//! Plain TCP written in place: the producer writes its frames to the
//! socket itself with a non-blocking write, and the connection's writer
//! task only finishes what the socket would not take at once, waiting for
//! room. Until the writer has written everything held back, producers only
//! append (see [`super::Pending::blocked`]), so frames keep their order.

use std::io::{self, IoSlice};
use std::sync::Arc;

use tokio::net::tcp::OwnedWriteHalf;

use super::super::framebuf::{FrameBuf, MAX_SLICES_PER_WRITE};
use super::{Direct, OutBuf, Pending, Sent};

impl OutBuf {
    /// Plain TCP: producers write in place; this task writes only what the
    /// socket would not take at once.
    pub(super) async fn drain_direct(&self, sock: Arc<OwnedWriteHalf>) -> io::Result<()> {
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
                let all = write_now(sock, buf, written, &self.sent, self.recycle)?;
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
}

/// Writes as much of `buf` (past its first `written` bytes) as the socket
/// takes without blocking, counting each write in `sent`. Returns
/// whether all of it went (then `buf` is cleared, keeping its capacity).
pub(super) fn write_now(
    sock: &OwnedWriteHalf,
    buf: &mut FrameBuf,
    written: &mut usize,
    sent: &Sent,
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
                sent.wrote(n);
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
