//! Plain TCP: producers write their frames to the socket themselves with
//! a non-blocking write; the connection's writer task writes only what the
//! socket would not take at once, and until it has, producers only append,
//! so frames keep their order.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::tcp::OwnedWriteHalf;

use super::{OutBuf, Pending};
use crate::transport::framebuf::{FrameBuf, MAX_SLICES_PER_WRITE};

impl OutBuf {
    /// Plain TCP: producers write in place; this task writes only what the
    /// socket would not take at once.
    pub(super) async fn drain_direct(&self, sock: Arc<OwnedWriteHalf>) -> io::Result<()> {
        if let Ok(mut pending) = self.lock() {
            pending.direct = Some(Arc::clone(&sock));
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
}

/// Writes as much of `buf` (past its first `written` bytes) as the socket
/// takes without blocking, adding what it wrote to `counted`. Returns
/// whether all of it went (then `buf` is cleared, keeping its capacity).
pub(super) fn write_now(
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::testing::{FRAME_BYTES, FRAMES, frame, small_buffered_pair};
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Frames written in place, then by the writer while the socket is
    /// full, then in place again, reach the peer whole and in order.
    #[tokio::test]
    async fn frames_keep_their_order_across_writes_in_place_and_by_the_writer() {
        let (sender, mut receiver) = small_buffered_pair().await;
        let (_read, write) = crate::transport::stream::tcp(sender);
        let out = Arc::new(OutBuf::default());
        let writer = {
            let out = Arc::clone(&out);
            tokio::spawn(async move { out.drain_into(write).await })
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
