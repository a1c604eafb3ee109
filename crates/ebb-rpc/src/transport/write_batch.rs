//! Frames appended to several connections' outputs and written together:
//! one write per connection for however many frames it got.
//!
//! Whoever produces frames for other connections than its own, several in
//! a row, passes one [`WriteBatch`] to all of them and flushes it once.
//! Two such producers in a forwarding server: a node client's reader that
//! decoded the replies of one socket read ends the deferred calls they
//! answer (their replies go to the callers' connections), and an ingress
//! connection's task that read several calls starts them on their nodes
//! (their requests go to the node connections). Written one by one, N
//! frames to one connection cost N system calls and as many wake-ups of
//! its peer. What a frame means is settled when it is appended (a reply
//! is recorded in the server session, a request is sent in the client
//! session's account); only the write waits, and never past the batch's
//! end: a batch dropped unflushed flushes.

use std::sync::Arc;

use super::framebuf::FrameBuf;
use super::outbuf::OutBuf;

/// Connections one [`WriteBatch`] holds unwritten frames for at most; one
/// more flushes the batch first, so a batch stays a short list to scan.
pub const MAX_OUTPUTS_PER_WRITE_BATCH: usize = 64;
/// Appends one [`WriteBatch`] holds unwritten at most; the next flushes
/// it first. A read of a whole buffer of small frames (hundreds) does not
/// hold the first of them back until the last is handled.
pub const MAX_APPENDS_PER_WRITE_BATCH: usize = 64;

/// Outputs holding appended frames not yet written; see the module.
#[derive(Default)]
pub struct WriteBatch {
    /// The outputs holding appended frames, each once.
    outs: Vec<Arc<OutBuf>>,
    /// Appends since the last flush.
    appended: usize,
}

impl WriteBatch {
    /// Appends whole frames to `out` with `encode` without writing them;
    /// they leave with the batch's flush. Not appended, like a failed
    /// write, if `out` is closed or full (`encode` does not run).
    pub(crate) fn append(&mut self, out: &Arc<OutBuf>, encode: impl FnOnce(&mut FrameBuf)) {
        if self.appended >= MAX_APPENDS_PER_WRITE_BATCH
            || self.outs.len() >= MAX_OUTPUTS_PER_WRITE_BATCH
        {
            self.flush();
        }
        if out.append_with(encode).is_err() {
            return;
        }
        self.appended += 1;
        if !self.outs.iter().any(|o| Arc::ptr_eq(o, out)) {
            self.outs.push(Arc::clone(out));
        }
        debug_assert!(self.outs.len() <= MAX_OUTPUTS_PER_WRITE_BATCH);
    }

    /// Connections with frames waiting for the flush.
    pub fn pending_outputs(&self) -> usize {
        self.outs.len()
    }

    /// Writes every appended frame: one write per connection (or a hand-
    /// over to its writer when its socket is full). Keeps the list's
    /// memory for the next batch.
    pub fn flush(&mut self) {
        self.appended = 0;
        for out in self.outs.drain(..) {
            // A closed output dropped its frames, as a failed push does.
            let _ = out.flush();
        }
    }
}

impl Drop for WriteBatch {
    /// Nothing appended is left unwritten, however the batch ends.
    fn drop(&mut self) {
        self.flush();
    }
}

impl std::fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatch")
            .field("outputs", &self.outs.len())
            .finish()
    }
}
