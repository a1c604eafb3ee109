//! TLS written by the writer task alone: it swaps out whatever has
//! accumulated and writes it with one `write`, many frames per syscall
//! under load; two buffers are swapped back and forth, so steady state
//! allocates nothing. Producers only append and wake it.

use std::io::{self, IoSlice};

use tokio::io::AsyncWriteExt;

use super::super::framebuf::{FrameBuf, MAX_SLICES_PER_WRITE};
use super::super::stream::WriteSide;
use super::{INITIAL_BUF_BYTES, OutBuf, Sent};

impl OutBuf {
    /// TLS: this task writes everything, swapping the pending buffer out.
    pub(super) async fn drain_swapping(&self, mut sock: WriteSide) -> io::Result<()> {
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
            if let Err(e) = write_frames(&mut sock, &spare, &self.sent).await {
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

/// Writes all of `frames`, counting each write call in `sent`: plain
/// writes when they are contiguous, else vectored writes of the headers
/// and the shared payloads in place (a stream without vectored writes,
/// such as TLS, takes one slice per call, which is still correct).
async fn write_frames(sock: &mut WriteSide, frames: &FrameBuf, sent: &Sent) -> io::Result<()> {
    let total = frames.len();
    let mut written = 0;
    while written < total {
        let wrote = match frames.contiguous() {
            Some(bytes) => sock.write(&bytes[written..]).await?,
            None => {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES_PER_WRITE];
                let n = frames.slices_from(written, &mut slices);
                sock.write_vectored(&slices[..n]).await?
            }
        };
        if wrote == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written += wrote;
        sent.wrote(wrote);
    }
    Ok(())
}
