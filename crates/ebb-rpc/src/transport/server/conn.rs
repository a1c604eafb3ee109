//! One connection's task: reads requests, hands each frame to the session,
//! runs the calls it admits and writes their replies, a read's replies in
//! one batch. Reading pauses while the peer does not take its replies. A
//! bad frame gets a `ConnError` (`BadFrame`) naming the problem and closes
//! this connection only.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::calls;
use super::early::EarlyShip;
use super::replies::Replies;
use super::running::{Finished, RunningCalls};
use super::shared::Core;
use super::{READ_CHUNK_BYTES, REPLY_CHUNK_BYTES};
use crate::semantics::ConnId;
use crate::service::ServiceDispatch;
use crate::transport::framebuf::FrameBuf;
use crate::transport::frames;
use crate::transport::outbuf::{MAX_PENDING_WRITE_BYTES, OutBuf};
use crate::transport::stream::{ReadSide, WriteSide};
use crate::transport::write_batch::WriteBatch;
use crate::wire::ConnErrorKind;

/// What woke a connection's task.
enum Wake {
    Read(std::io::Result<usize>),
    Done(Finished),
    Closed,
}

pub(super) async fn serve_connection<D: ServiceDispatch>(
    mut read: ReadSide,
    write: WriteSide,
    core: Arc<Core<D>>,
    conn: ConnId,
) {
    let out = Arc::new(OutBuf::for_replies());
    core.lock().outs.insert(conn, Arc::clone(&out));
    let mut replies = Replies::open(&out, write);
    let codec = core.codec;
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    // This wake-up's replies, written (or queued) whole; reused.
    let mut batch = FrameBuf::default();
    // What deferred calls started by a read write elsewhere (a
    // forwarder's requests), flushed once the read's calls have started.
    let mut writes = WriteBatch::default();
    // Calls that did not finish at their first poll, driven by this task.
    let mut running = RunningCalls::new(core.clock);
    // Registered once: a wake-up per turn of the loop would cost more than
    // the rest of the turn.
    let closed = out.wait_closed();
    tokio::pin!(closed);
    'conn: loop {
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        // Reading pauses while the peer does not take its replies; calls
        // already running still finish meanwhile.
        let more = async {
            out.wait_below(MAX_PENDING_WRITE_BYTES / 2).await;
            if out.is_closed() {
                return None;
            }
            Some(read.read_buf(&mut buf).await)
        };
        let wake = tokio::select! {
            biased;
            done = running.next(), if !running.is_empty() => Wake::Done(done),
            r = more => r.map_or(Wake::Closed, Wake::Read),
            () = &mut closed => Wake::Closed,
        };
        match wake {
            Wake::Closed | Wake::Read(Ok(0) | Err(_)) => break,
            Wake::Done(done) => {
                // Every call that finished by now answers in this batch.
                let mut next = Some(done);
                while let Some(done) = next {
                    calls::finish_call(&core, Some((&out, &mut batch)), done);
                    next = running.ready_now().await;
                }
            }
            Wake::Read(Ok(_)) => {
                // One clock read per batch of frames: they arrived together.
                let now = core.now();
                let mut whole = false;
                let mut early = EarlyShip::new(buf.len());
                loop {
                    let frame = match codec.decode(&mut buf) {
                        Ok(None) => {
                            // Only part of a frame: the peer is still
                            // sending it, which keeps the connection alive.
                            if !whole && !buf.is_empty() {
                                core.lock().session.handle_progress(conn, now);
                            }
                            break;
                        }
                        Ok(Some(f)) => f,
                        Err(e) => {
                            // Past a bad length the stream cannot be
                            // resynchronised, and a bad header names no
                            // call: say why, then close this connection
                            // only.
                            let err = frames::connection_error(
                                core.incarnation,
                                ConnErrorKind::BadFrame,
                                e.to_string(),
                            );
                            frames::append(&codec, &err, &mut batch);
                            replies.ship(&mut batch);
                            break 'conn;
                        }
                    };
                    whole = true;
                    let Some(incoming) = calls::admit(&core, &mut batch, conn, frame, now) else {
                        continue;
                    };
                    // A frame alone in its read, with nothing gathered
                    // yet, has nothing to be written together with.
                    let together = !buf.is_empty() || writes.pending_outputs() > 0;
                    let here = (&out, &mut batch);
                    let writes = together.then_some(&mut writes);
                    calls::run_call(&core, here, writes, &mut running, incoming, now);
                    // Ship a part of a large read, and the first replies of
                    // a read of many, so the client works on them while
                    // the rest run: sending the whole window at once makes
                    // the two ends take turns.
                    let first_share = early.due(buf.len()) && !batch.is_empty();
                    if first_share || batch.len() >= REPLY_CHUNK_BYTES {
                        replies.ship(&mut batch);
                    }
                }
                writes.flush();
            }
        }
        if !batch.is_empty() {
            replies.ship(&mut batch);
        }
    }
    writes.flush();
    out.close();
    {
        let mut shared = core.lock();
        shared.session.close_connection(conn);
        shared.outs.remove(&conn);
    }
    // Admitted calls still run to their end: their outcomes are saved for
    // the client's retry on another connection, and duplicates waiting for
    // them are answered. Meanwhile what is left of the output is written.
    let calls_end = async {
        while !running.is_empty() {
            let done = running.next().await;
            calls::finish_call(&core, None, done);
        }
    };
    // The writes end at most `CLOSE_FLUSH_TIMEOUT_MS` after the close, so a
    // peer that never reads does not hold this task.
    tokio::join!(calls_end, replies.close());
    if out.flush_abandoned() {
        core.lock().session.count_close_flush_abandoned();
    }
}
