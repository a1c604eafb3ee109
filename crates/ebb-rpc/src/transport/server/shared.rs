//! What every connection of a server shares: the one [`ServerSession`]
//! (a client that reconnects finds its saved replies on the new
//! connection), each open connection's output, which the session's routes
//! name, and the service. Recording a finished call and routing its reply
//! happen here, under the session's lock.

use std::sync::{Arc, Mutex, PoisonError};

use ebb_core::Clock;

use crate::fast_map::FastMap;
use crate::semantics::ConnId;
use crate::semantics::ServerSession;
use crate::semantics::server::CallKey;
use crate::service::{ReplySink, ServiceDispatch, WriteBatch};
use crate::transport::clock::RuntimeClock;
use crate::transport::framebuf::FrameBuf;
use crate::transport::frames;
use crate::transport::outbuf::OutBuf;
use crate::transport::tls::ServerTls;
use crate::transport::workers::Workers;
use crate::wire::{ConnErrorKind, FrameCodec, Incarnation, Outcome};

use super::{refuse, replies};

/// What all connections share: the semantics, and each open connection's
/// output, which the session's routes name.
pub(super) struct Shared {
    pub(super) session: ServerSession,
    pub(super) outs: FastMap<ConnId, Arc<OutBuf>>,
}

/// The server's state behind every connection task, worker job and
/// deferred reply.
pub(super) struct Core<D> {
    pub(super) dispatch: D,
    pub(super) shared: Mutex<Shared>,
    pub(super) clock: RuntimeClock,
    pub(super) incarnation: Incarnation,
    pub(super) codec: FrameCodec,
    /// Where methods marked `#[blocking]` run, off the I/O loop.
    pub(super) workers: Workers,
    /// Set: every connection is TLS (see [`super::Server::with_tls`]).
    pub(super) tls: Option<ServerTls>,
    /// TLS connections being refused with an answer (bounded).
    pub(super) tls_refusals: refuse::TlsRefusals,
}

impl<D> Core<D> {
    pub(super) fn now(&self) -> ebb_core::Instant {
        self.clock.now()
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // Every critical section leaves `Shared` consistent, so a panic
        // elsewhere does not make it unusable.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the connections the session finds silent: each is told why,
    /// and its writer flushes that and shuts the socket, which also stops
    /// its reader.
    pub(super) fn close_silent(&self) {
        let now = self.now();
        let closing: Vec<Arc<OutBuf>> = {
            let mut shared = self.lock();
            let silent = shared.session.close_silent(now);
            silent
                .iter()
                .filter_map(|id| shared.outs.remove(id))
                .collect()
        };
        let notice = frames::connection_error(
            self.incarnation,
            ConnErrorKind::Timeout,
            "nothing heard within the handshake or idle timeout".to_owned(),
        );
        for out in closing {
            let _ = out.push_with(|b| frames::append(&self.codec, &notice, b));
            out.close();
        }
    }

    /// Records a finished call and sends its reply to its client's route.
    /// A reply for `local`'s connection is appended to its batch instead,
    /// so the replies of one read leave with one push and one write. The
    /// reply is encoded under the session's lock, straight from the reply
    /// table (the output buffers' locks are only ever taken inside it, never
    /// around it).
    pub(super) fn complete(
        &self,
        key: CallKey,
        outcome: Outcome,
        payload: bytes::Bytes,
        now: ebb_core::Instant,
        local: Option<(&Arc<OutBuf>, &mut FrameBuf)>,
    ) {
        let mut shared = self.lock();
        let Shared { session, outs } = &mut *shared;
        session.complete_with(key, outcome, payload, now, |reply, route| {
            self.send(outs, reply, route, local);
        });
    }

    /// Asks the session whether a call that waited for a worker may start
    /// now; if not, the session has recorded its refusal and its reply is
    /// sent here.
    pub(super) fn may_start(&self, key: CallKey, due: ebb_core::Instant) -> bool {
        let now = self.now();
        let mut shared = self.lock();
        let Shared { session, outs } = &mut *shared;
        let started = session.start_with(key, due, now, |reply, route| {
            self.send(outs, reply, route, None);
        });
        started.is_ok()
    }

    /// Records a call whose future this connection dropped at its
    /// `overdue_at`, and sends the recorded answer.
    pub(super) fn cancelled(
        &self,
        key: CallKey,
        now: ebb_core::Instant,
        local: Option<(&Arc<OutBuf>, &mut FrameBuf)>,
    ) {
        let mut shared = self.lock();
        let Shared { session, outs } = &mut *shared;
        session.cancel_with(key, now, |reply, route| {
            self.send(outs, reply, route, local);
        });
    }

    /// Sends `reply` on `route`: into `local`'s batch when that is the
    /// route's connection, else pushed to the route's output.
    fn send(
        &self,
        outs: &FastMap<ConnId, Arc<OutBuf>>,
        reply: &crate::wire::Reply,
        route: Option<ConnId>,
        local: Option<(&Arc<OutBuf>, &mut FrameBuf)>,
    ) {
        // No route means the client will ask again on its next connection
        // and get the saved reply; nothing to do here.
        let Some(out) = route.and_then(|c| outs.get(&c)) else {
            return;
        };
        match local {
            Some((here, batch)) if Arc::ptr_eq(here, out) => {
                frames::append_reply(&self.codec, reply, batch);
            }
            // A closed route is like no route.
            _ => {
                let _ = out.push_with(|b| frames::append_reply(&self.codec, reply, b));
            }
        }
    }
}

/// A deferred call's answer ([`crate::service::DeferredReply`]), recorded
/// and sent like any other: from whichever thread gives it, with no batch
/// of its own (its connection's task is not the one running).
impl<D: ServiceDispatch> ReplySink for Core<D> {
    fn send_reply(&self, key: CallKey, outcome: Outcome, payload: bytes::Bytes) {
        let now = self.now();
        self.complete(key, outcome, payload, now, None);
    }

    fn append_reply(
        &self,
        key: CallKey,
        outcome: Outcome,
        payload: bytes::Bytes,
        batch: &mut WriteBatch,
    ) {
        let now = self.now();
        let mut shared = self.lock();
        let Shared { session, outs } = &mut *shared;
        session.complete_with(key, outcome, payload, now, |reply, route| {
            replies::append_to_batch(&self.codec, outs, reply, route, batch);
        });
    }
}
