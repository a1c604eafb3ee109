//! A client's connection as its callers use it, shared with its driver
//! task (`driver.rs`) behind one lock (`state.rs`).
//!
//! A caller starts its call itself: under the link's lock it hands the call
//! to the session and writes the request to the socket in place (through
//! the connection's `OutBuf`), so a call costs no hand-over to another task
//! and no wake-up of one. The driver reads the replies, runs the session's
//! timers and reconnects. A caller wakes the driver only when it must act
//! sooner than it planned to: a timer earlier than the one it sleeps on, a
//! connection wanted while there is none, the client dropped.
//!
//! What to resend after a reconnect, when a call has failed and how, and
//! when the server is presumed dead are the session's decisions, not ours.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use ebb_core::{Clock, Nanos};
use tokio::sync::{Notify, oneshot};

use super::super::clock::RuntimeClock;
use super::RECONNECT_BACKOFF_MS;
use super::answer::{Answer, Handed, Waiters};
use super::conn::{Dial, open};
use super::driver::Driver;
use super::state::State;
use super::{MAX_PENDING_DESCRIBES, MAX_PENDING_RESIZES};
use crate::CallError;
use crate::fast_map::FastMap;
use crate::semantics::{CallSpec, ClientSession};
use crate::service::{CallSink, WriteBatch};
use crate::wire::FrameCodec;

/// `load`'s cell before any report: a load no server reports.
const NO_LOAD_REPORTED: u64 = u64::MAX;

pub(super) type Reply = Result<Bytes, CallError>;

/// The answer to a `Resize`: the capacity applied, `None` if the server
/// does not resize.
pub(super) type ResizeReply = Result<Option<std::num::NonZeroU32>, CallError>;

/// The connection state and what the client reads of it without the lock.
pub(super) struct Link {
    pub(super) state: Mutex<State>,
    /// Wakes the driver before its own events would.
    pub(super) wake: Notify,
    /// Set when the client is dropped: the driver ends.
    pub(super) closing: AtomicBool,
    pub(super) addr: String,
    pub(super) clock: RuntimeClock,
    pub(super) codec: FrameCodec,
    /// The server's load as last reported, or `NO_LOAD_REPORTED`.
    pub(super) load: AtomicU64,
    /// The server's own service time as last reported, in nanoseconds;
    /// 0 before any report.
    pub(super) service_time: AtomicU64,
    /// Connection attempts after the first, successful or not.
    pub(super) reconnects: AtomicU64,
}

impl Link {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a panic
        // elsewhere does not make it unusable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn shut_down(&self, sent: bool) -> CallError {
        CallError::ConnectionLost {
            sent,
            cause: format!("the client for {} shut down", self.addr),
        }
    }

    /// Starts a call now; the caller awaits its outcome.
    pub(super) fn call(&self, spec: CallSpec, args: Bytes, timeout: Nanos) -> Answer<'_> {
        let now = self.clock.now();
        let mut st = self.lock();
        if st.ended {
            return Answer::now(self, Err(self.shut_down(false)));
        }
        let id = match st.session.start(spec, args, now + timeout, now) {
            Ok(id) => id,
            Err(e) => return Answer::now(self, Err(e)),
        };
        st.waiters.expect(id.0);
        st.transmit(&self.codec);
        self.after_start(st);
        Answer::waiting(self, id.0)
    }

    /// Starts a call now; its outcome goes to `sink` with `token`, handed
    /// over by whoever learns it, outside the lock. With `writes` the
    /// request is appended there, written when its owner flushes it.
    pub(super) fn start_with_sink(
        &self,
        spec: CallSpec,
        args: Bytes,
        timeout: Nanos,
        sink: Arc<dyn CallSink>,
        token: u64,
        writes: Option<&mut WriteBatch>,
    ) {
        let now = self.clock.now();
        let mut st = self.lock();
        let started = if st.ended {
            Err(self.shut_down(false))
        } else {
            st.session.start(spec, args, now + timeout, now)
        };
        let id = match started {
            Ok(id) => id,
            Err(e) => {
                drop(st);
                return sink.deliver(token, Err(e));
            }
        };
        st.waiters.expect_sink(id.0, sink, token);
        match writes {
            Some(writes) if !st.corked => st.transmit_into(&self.codec, writes),
            _ => st.transmit(&self.codec),
        }
        self.after_start(st);
    }

    /// What follows a call's start and its request's transmission,
    /// whoever awaits it: an outcome it already has is handed over, and the
    /// driver is woken when the call's timer is due before the one it has
    /// armed or there is no connection to send on.
    fn after_start(&self, mut st: MutexGuard<'_, State>) {
        // A call can end as it starts (no time left, credentials refused).
        // While the driver holds a second share of ended calls, it hands
        // this one over with them, at its next turn.
        if !st.sharing {
            st.deliver(&self.addr, usize::MAX);
        }
        let sooner = match (st.session.poll_timeout(), st.armed) {
            (Some(due), Some(armed)) => due < armed,
            (due, None) => due.is_some(),
            (None, Some(_)) => false,
        };
        if sooner || st.conn.is_none() {
            self.wake.notify_one();
        }
        hand_over(st, &mut Vec::new(), &mut WriteBatch::default());
    }

    pub(super) fn with_waiters<T>(&self, f: impl FnOnce(&mut Waiters) -> T) -> T {
        f(&mut self.lock().waiters)
    }

    /// Asks the server for its service description; the answer comes on
    /// `reply`.
    pub(super) fn describe(&self, reply: oneshot::Sender<Reply>) {
        let mut st = self.lock();
        if st.ended {
            let _ = reply.send(Err(self.shut_down(false)));
            return;
        }
        if st.describes.len() >= MAX_PENDING_DESCRIBES {
            let _ = reply.send(Err(CallError::TooManyOutstanding {
                limit: MAX_PENDING_DESCRIBES,
            }));
            return;
        }
        st.next_describe += 1;
        let id = st.next_describe;
        st.describes.insert(id, reply);
        // Whatever the session has to send goes first, the handshake
        // among it: a server that requires credentials answers a Describe
        // only after they were accepted.
        st.transmit(&self.codec);
        st.send_describe(&self.codec, id);
        if st.conn.is_none() {
            self.wake.notify_one();
        }
    }

    /// Asks the server to resize to `capacity`; the answer comes on `reply`.
    /// Sent now if connected, else with the next connection's handshake.
    pub(super) fn resize(
        &self,
        capacity: std::num::NonZeroU32,
        reply: oneshot::Sender<ResizeReply>,
    ) {
        let mut st = self.lock();
        if st.ended {
            let _ = reply.send(Err(self.shut_down(false)));
            return;
        }
        // A resize whose caller stopped waiting (its timeout passed) holds
        // no place: a server that left some unanswered is asked again.
        st.resizes.retain(|_, (_, waiter)| !waiter.is_closed());
        if st.resizes.len() >= MAX_PENDING_RESIZES {
            let _ = reply.send(Err(CallError::TooManyOutstanding {
                limit: MAX_PENDING_RESIZES,
            }));
            return;
        }
        st.next_describe += 1;
        let id = st.next_describe;
        st.resizes.insert(id, (capacity, reply));
        // The handshake first: the server answers a resize only on a
        // connection whose credentials it accepted.
        st.transmit(&self.codec);
        st.send_resize(&self.codec, id, capacity);
        if st.conn.is_none() {
            self.wake.notify_one();
        }
    }

    /// Ends every call now: the server is known to be gone.
    pub(super) fn abandon(&self, cause: &str) {
        let mut st = self.lock();
        st.session.abandon_all(cause);
        st.deliver(&self.addr, usize::MAX);
        hand_over(st, &mut Vec::new(), &mut WriteBatch::default());
    }

    pub(super) fn reported_load(&self) -> Option<u32> {
        u32::try_from(self.load.load(Ordering::Relaxed)).ok()
    }

    pub(super) fn reported_service_time(&self) -> Option<Nanos> {
        match self.service_time.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Nanos(n)),
        }
    }

    /// Holds the requests of calls started from now on (`hold`), or writes
    /// what was held and stops holding (`!hold`).
    pub(super) fn hold_writes(&self, hold: bool) {
        let mut st = self.lock();
        st.corked = hold;
        if !hold && let Some(conn) = st.conn.as_ref() {
            let _ = conn.out.flush();
        }
    }

    /// The client is dropped: its driver ends.
    pub(super) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// Lets go of the lock, then hands the sinks their outcomes; `spare` is an
/// empty vector to swap in, so a caller that keeps one allocates none.
/// The replies the sinks send on through `replies` (a forwarder answering
/// its own callers) are written once all are handed over: the outcomes of
/// one read of the server leave in one write per connection they go to. A
/// lone outcome is delivered plainly: batching it would only cost.
pub(super) fn hand_over(
    mut st: MutexGuard<'_, State>,
    spare: &mut Handed,
    replies: &mut WriteBatch,
) {
    if st.waiters.handed.is_empty() {
        return;
    }
    std::mem::swap(&mut st.waiters.handed, spare);
    drop(st);
    if spare.len() == 1 {
        // Alone: nothing to write together with, so no batch to keep.
        if let Some((sink, token, outcome)) = spare.pop() {
            sink.deliver(token, outcome);
        }
        return;
    }
    for (sink, token, outcome) in spare.drain(..) {
        sink.deliver_in(token, outcome, replies);
    }
    replies.flush();
}

/// Connects to `addr` and spawns the driver of the new link; must run
/// inside a tokio runtime, which then hosts the driver.
pub(super) async fn connect(
    addr: &str,
    mut session: ClientSession,
    clock: RuntimeClock,
    dial: Dial,
) -> Result<Arc<Link>, CallError> {
    let (conn_in, conn_out) = open(addr, dial.tls.as_ref(), dial.connect_timeout_ms).await?;
    session.handle_connected(clock.now());
    let link = Arc::new(Link {
        state: Mutex::new(State {
            session,
            conn: Some(conn_out),
            waiters: Waiters::default(),
            describes: FastMap::default(),
            next_describe: 0,
            resizes: FastMap::default(),
            armed: None,
            ended: false,
            corked: false,
            sharing: false,
        }),
        wake: Notify::new(),
        closing: AtomicBool::new(false),
        addr: addr.to_owned(),
        clock,
        codec: FrameCodec::default(),
        load: AtomicU64::new(NO_LOAD_REPORTED),
        service_time: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
    });
    // The handshake leaves now, before any call or Describe.
    link.lock().transmit(&link.codec);
    let driver = Driver {
        link: Arc::clone(&link),
        conn: Some(conn_in),
        reconnect_at: None,
        backoff: Duration::from_millis(RECONNECT_BACKOFF_MS),
        proven: false,
        dial,
    };
    tokio::spawn(driver.run());
    Ok(link)
}
