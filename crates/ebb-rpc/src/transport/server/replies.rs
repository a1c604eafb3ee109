//! Who writes one connection's replies to its socket. Plain TCP: whoever
//! produced them, in place, with a writer task only for what a full socket
//! would not take (`OutBuf`'s `tcp`). TLS: the connection's own task, the
//! one that read the requests: the read's replies go to rustls when the
//! batch is done (no task switch per batch), and what other threads push
//! (a worker's or a deferred reply) or a full socket left wakes it to
//! write the rest. Either way one writer at a time, and the output stays
//! bounded by `MAX_PENDING_WRITE_BYTES`.

use std::io;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::transport::framebuf::FrameBuf;
use crate::transport::outbuf::OutBuf;
use crate::transport::stream::WriteSide;

pub(super) struct Replies {
    out: Arc<OutBuf>,
    writer: Writer,
}

enum Writer {
    /// Plain TCP: the task that writes only what the socket would not
    /// take at once.
    Task(JoinHandle<io::Result<()>>),
    /// TLS: written by the connection's task through this.
    Here(WriteSide),
}

impl Replies {
    /// Starts writing `out` to `write`: a writer task on plain TCP, none on
    /// TLS.
    pub(super) fn open(out: &Arc<OutBuf>, write: WriteSide) -> Replies {
        let writer = match write {
            tcp @ WriteSide::Tcp(_) => {
                let out = Arc::clone(out);
                Writer::Task(tokio::spawn(async move { out.drain_into(tcp).await }))
            }
            tls @ WriteSide::Tls(_) => Writer::Here(tls),
        };
        Replies {
            out: Arc::clone(out),
            writer,
        }
    }

    /// Hands over `batch` (whole frames, left empty) and writes as much of
    /// it as the socket takes now; the rest leaves when it has room. A
    /// closed or full output drops the batch: its calls are recorded, and
    /// the client asks again on another connection.
    pub(super) async fn ship(&mut self, batch: &mut FrameBuf) {
        match &mut self.writer {
            Writer::Task(_) => {
                let _ = self.out.push_batch(batch);
            }
            Writer::Here(sock) => {
                if self.out.append_batch(batch).is_ok() {
                    // A failure shows again in `owed`, which ends the
                    // connection.
                    let _ = self.out.try_write_here(sock).await;
                }
            }
        }
    }

    /// Writes what this task owes the socket: on TLS, once something is
    /// pending (pushed by another thread, or left by a full socket), all of
    /// it; on plain TCP never ready (producers and the writer task write).
    /// An error means the connection is broken.
    pub(super) async fn owed(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Writer::Task(_) => std::future::pending().await,
            Writer::Here(sock) => self.out.write_here(sock).await,
        }
    }

    /// Writes what is left, then shuts the socket's write side.
    pub(super) async fn close(self) {
        match self.writer {
            Writer::Task(task) => {
                self.out.close();
                let _ = task.await;
            }
            Writer::Here(sock) => {
                let _ = self.out.close_here(sock).await;
            }
        }
    }
}
