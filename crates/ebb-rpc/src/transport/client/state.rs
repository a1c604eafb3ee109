//! What a link's callers and its driver share behind the link's lock: the
//! session, the current connection's output side, the callers waiting and
//! the describes asked; and the moves both make on it (the session's
//! messages to the socket, its outcomes to the callers).

use tokio::sync::oneshot;

use super::super::framebuf::FrameBuf;
use super::super::frames;
use super::super::write_batch::WriteBatch;
use super::answer::Waiters;
use super::conn::ConnOut;
use super::link::{Reply, ResizeReply};
use crate::CallError;
use crate::fast_map::FastMap;
use crate::semantics::ClientSession;
use crate::wire::{Describe, FrameCodec, Message, Resize};

/// What callers and the driver share, behind the link's lock.
pub(super) struct State {
    pub(super) session: ClientSession,
    /// Set while connected; the driver holds the matching [`ConnIn`] and
    /// is the only one to set or clear both.
    pub(super) conn: Option<ConnOut>,
    /// Callers waiting, by the session's call id.
    pub(super) waiters: Waiters,
    /// Describe requests waiting for their answer, by id; resent after a
    /// reconnect (asking again is harmless).
    pub(super) describes: FastMap<u64, oneshot::Sender<Reply>>,
    /// Ids of describes and resizes alike.
    pub(super) next_describe: u64,
    /// Resize requests waiting for their answer, by id, with the capacity
    /// asked: sent with the next connection if asked while there was none,
    /// never resent after one is lost (they end `ConnectionLost`).
    pub(super) resizes: FastMap<u64, (std::num::NonZeroU32, oneshot::Sender<ResizeReply>)>,
    /// The session instant the driver's timer is set for: a caller whose
    /// call needs the driver sooner wakes it.
    pub(super) armed: Option<ebb_core::Instant>,
    /// The driver has ended (the client was dropped, or its runtime shut
    /// down): nothing would read the replies, so calls are refused.
    pub(super) ended: bool,
    /// Callers woken by one batch of replies are running: the requests
    /// they start are appended and leave together when the driver runs
    /// next, with one write (see `Driver::coalesce`).
    pub(super) corked: bool,
    /// The driver handed over only the first share of the calls that
    /// ended and hands the rest over at its next turn (see
    /// `driver::first_share`); callers starting calls meanwhile leave
    /// them to it.
    pub(super) sharing: bool,
}

impl State {
    /// Moves the session's messages to the connection, written in place.
    pub(super) fn transmit(&mut self, codec: &FrameCodec) {
        let State { session, conn, .. } = self;
        match conn {
            // A closed writer means the reader sees the failure next; the
            // session resends what it must after the reconnect.
            Some(conn) => {
                let encode = |b: &mut FrameBuf| {
                    session.drain_transmit(|message| frames::append(codec, message, b));
                };
                let _ = if self.corked {
                    conn.out.append_with(encode)
                } else {
                    conn.out.push_with(encode)
                };
            }
            None => session.drain_transmit(|_| {}),
        }
    }

    /// [`State::transmit`], the messages appended to the connection's
    /// output in `writes`, which its owner flushes.
    pub(super) fn transmit_into(&mut self, codec: &FrameCodec, writes: &mut WriteBatch) {
        let State { session, conn, .. } = self;
        match conn {
            Some(conn) => writes.append(&conn.out, |b| {
                session.drain_transmit(|message| frames::append(codec, message, b));
            }),
            None => session.drain_transmit(|_| {}),
        }
    }

    /// Hands the calls that ended to their callers, until `limit` callers
    /// were woken (the rest wait in the session); returns how many were.
    pub(super) fn deliver(&mut self, addr: &str, limit: usize) -> usize {
        let mut woken = 0;
        while woken < limit
            && let Some((id, outcome)) = self.session.poll_event()
        {
            let outcome = outcome.map_err(|e| match e {
                CallError::ConnectionLost { sent, cause } => CallError::ConnectionLost {
                    sent,
                    cause: format!("{addr}: {cause}"),
                },
                other => other,
            });
            woken += usize::from(self.waiters.complete(id.0, outcome));
        }
        woken
    }

    pub(super) fn send_describe(&mut self, codec: &FrameCodec, id: u64) {
        if let Some(conn) = self.conn.as_mut() {
            let describe = Message::Describe(Describe { id });
            let _ = conn.out.push_with(|b| frames::append(codec, &describe, b));
            conn.own_bytes += describe.encoded_len() as u64;
        }
    }

    pub(super) fn send_resize(
        &mut self,
        codec: &FrameCodec,
        id: u64,
        capacity: std::num::NonZeroU32,
    ) {
        if let Some(conn) = self.conn.as_mut() {
            let resize = Message::Resize(Resize { id, capacity });
            let _ = conn.out.push_with(|b| frames::append(codec, &resize, b));
            conn.own_bytes += resize.encoded_len() as u64;
        }
    }

    /// Ends every resize waiting with `error`.
    pub(super) fn fail_resizes(&mut self, error: &CallError) {
        for (_, (_, waiter)) in self.resizes.drain() {
            let _ = waiter.send(Err(error.clone()));
        }
    }

    /// Someone waits for the server: a connection is wanted.
    pub(super) fn waited_on(&self) -> bool {
        self.session.outstanding() > 0 || !self.describes.is_empty() || !self.resizes.is_empty()
    }
}
