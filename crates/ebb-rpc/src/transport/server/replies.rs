//! Who writes one connection's replies to its socket: whoever produced
//! them, in place, over plain TCP and TLS alike (`OutBuf::drain_in_place`):
//! the read's replies leave when its batch is done, without waking another
//! task; the connection's writer task only finishes what a full socket
//! would not take, and until it has, producers only append (one writer at
//! a time). Over TLS rustls turns the plaintext into records at once and
//! holds at most its buffer limit of them, so the output stays bounded by
//! `MAX_PENDING_WRITE_BYTES` plus that limit.
//!
//! Deferred calls' replies come from another task (a forwarder's node
//! client reader), one call at a time; when that task ends several calls
//! in a row it appends their replies to a [`WriteBatch`] and flushes it
//! once, so the replies one of its reads completes leave in one write per
//! connection rather than one each.

use std::io;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::fast_map::FastMap;
use crate::semantics::ConnId;
use crate::service::WriteBatch;
use crate::transport::framebuf::FrameBuf;
use crate::transport::frames;
use crate::transport::outbuf::OutBuf;
use crate::transport::stream::WriteSide;
use crate::wire::{FrameCodec, Reply};

pub(super) struct Replies {
    out: Arc<OutBuf>,
    writer: JoinHandle<io::Result<()>>,
}

impl Replies {
    /// Starts writing `out` to `write`.
    pub(super) fn open(out: &Arc<OutBuf>, write: WriteSide) -> Replies {
        let writer = {
            let out = Arc::clone(out);
            tokio::spawn(async move { out.drain_in_place(write).await })
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
    pub(super) fn ship(&mut self, batch: &mut FrameBuf) {
        let _ = self.out.push_batch(batch);
    }

    /// Writes what is left, then shuts the socket's write side.
    pub(super) async fn close(self) {
        self.out.close();
        let _ = self.writer.await;
    }
}

/// Appends a recorded deferred `reply` to its route's output in `batch`,
/// to be written with the batch's flush. No route (or a closed one): the
/// client asks again on its next connection and gets the saved reply.
pub(super) fn append_to_batch(
    codec: &FrameCodec,
    outs: &FastMap<ConnId, Arc<OutBuf>>,
    reply: &Reply,
    route: Option<ConnId>,
    batch: &mut WriteBatch,
) {
    if let Some(out) = route.and_then(|c| outs.get(&c)) {
        batch.append(out, |b| frames::append_reply(codec, reply, b));
    }
}

#[cfg(test)]
mod tests;
