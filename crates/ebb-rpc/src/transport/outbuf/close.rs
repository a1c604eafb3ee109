//! The bound on a closed connection's last writes. Closing a buffer lets
//! its writer finish what is pending; a peer that never reads would make
//! that wait forever, holding the connection's task, its socket and up to
//! `MAX_PENDING_WRITE_BYTES` of replies. So the writer gets
//! [`CLOSE_FLUSH_TIMEOUT_MS`] from the close; after that what is left is
//! dropped and the socket closed with a reset (plain TCP and TLS alike),
//! so the kernel drops its copy too. Nothing is lost that the peer could
//! have relied on: a reply dropped here is still recorded, and a client
//! that asks again on another connection gets it.

use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Direct, OutBuf};

/// How long a closed connection's writer may go on writing what was
/// pending when it was closed. 5 s lets a peer that reads at 1.6 MB/s or
/// faster take a full `MAX_PENDING_WRITE_BYTES` of replies.
pub const CLOSE_FLUSH_TIMEOUT_MS: u64 = 5_000;

impl OutBuf {
    /// Runs `writing` (a writer task's loop) to its end, or until
    /// [`CLOSE_FLUSH_TIMEOUT_MS`] after the buffer was closed, whichever
    /// comes first; then the rest is abandoned.
    pub(super) async fn bounded_by_close(
        &self,
        writing: impl Future<Output = io::Result<()>>,
    ) -> io::Result<()> {
        let closed_long_enough = async {
            self.wait_closed().await;
            tokio::time::sleep(Duration::from_millis(CLOSE_FLUSH_TIMEOUT_MS)).await;
        };
        let finished = tokio::select! {
            biased;
            result = writing => Some(result),
            () = closed_long_enough => None,
        };
        // The writer's future is gone here, with its hold on the socket.
        finished.unwrap_or_else(|| {
            self.abandon();
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("peer took no more within {CLOSE_FLUSH_TIMEOUT_MS} ms of the close"),
            ))
        })
    }

    /// Drops what is pending and the socket producers wrote to.
    fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
        let Ok(mut pending) = self.lock() else {
            return;
        };
        // Closed with a reset: the kernel drops the bytes it still holds
        // for the peer instead of retrying them for minutes, and a peer
        // that does not read learns that the connection ended.
        match &pending.direct {
            Some(Direct::Tcp(sock)) => {
                let stream: &tokio::net::TcpStream = (**sock).as_ref();
                let _ = stream.set_zero_linger();
            }
            Some(Direct::Tls(sock)) => {
                let _ = sock.reset_on_close();
            }
            None => {}
        }
        pending.direct = None;
        if self.recycle {
            pending.buf.clear_recycling();
        } else {
            pending.buf.clear();
        }
        pending.written = 0;
    }

    /// Whether the writer gave up on the peer: the buffer was closed with
    /// bytes pending that the peer did not take within
    /// [`CLOSE_FLUSH_TIMEOUT_MS`].
    pub fn flush_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }
}
