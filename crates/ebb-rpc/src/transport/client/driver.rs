//! The link's driver task: it owns the socket's read side, feeds the
//! session the frames that arrive and its timer expiries (`poll_timeout`
//! becomes `sleep_until`), delivers the outcomes to the callers waiting
//! for them, and reconnects. Callers wake it only when it must act sooner
//! than it planned to.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ebb_core::Clock;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::answer::Handed;
use super::conn::{ConnIn, Dial, open};
use super::link::{Link, hand_over};
use super::state::State;
use super::{MAX_RECONNECT_BACKOFF_MS, RECONNECT_BACKOFF_MS};
use crate::CallError;
use crate::service::WriteBatch;
use crate::wire::Message;

/// Callers one batch of replies must wake before the requests they start
/// are held and written together.
const COALESCE_MIN_CALLERS: usize = 2;
/// The callers of a read's replies are woken a share at a time, 1/N of
/// them (at least `MIN_SHARE_CALLERS`), while the server holds fewer calls
/// than are left to hand over (see [`first_share`]).
const SHARE_DIVISOR: usize = 4;
const MIN_SHARE_CALLERS: usize = 2;

/// How many of the `ended` calls' callers to wake before the requests
/// they start are written: all of them while the server holds at least as
/// many calls (`outstanding`) as there are to hand over, else a quarter,
/// whose requests the server runs while the next share's callers run.
/// Handed over whole, the 16 replies of a window of 16 made the two ends
/// take turns, each idle (on a quiet machine, asleep) while the other ran
/// its 16 calls: at 16 outstanding on a multi-thread runtime that lost to
/// a peer that writes each reply apart.
fn first_share(ended: usize, outstanding: usize) -> usize {
    if ended < 2 * MIN_SHARE_CALLERS || outstanding >= ended {
        return usize::MAX;
    }
    (ended / SHARE_DIVISOR).max(MIN_SHARE_CALLERS)
}

pub(super) struct Driver {
    pub(super) link: Arc<Link>,
    pub(super) conn: Option<ConnIn>,
    /// When to try connecting again, while disconnected with calls waiting.
    pub(super) reconnect_at: Option<Instant>,
    pub(super) backoff: Duration,
    /// The current connection has been answered by the server: the next
    /// break starts the backoff over.
    pub(super) proven: bool,
    pub(super) dial: Dial,
}

enum Event {
    Wake,
    Read(std::io::Result<usize>),
    Timer,
    Reconnect,
}

impl Drop for Driver {
    /// However the driver ends (the client dropped, the runtime shut down),
    /// its callers learn it now rather than wait forever.
    fn drop(&mut self) {
        let mut st = self.link.lock();
        // Outcomes already known reach their callers.
        st.deliver(&self.link.addr, usize::MAX);
        let handed = std::mem::take(&mut st.waiters.handed);
        st.ended = true;
        st.conn = None;
        let sinks = st.waiters.release_all();
        st.describes.clear();
        st.resizes.clear();
        drop(st);
        for (sink, token, outcome) in handed {
            sink.deliver(token, outcome);
        }
        for (sink, token) in sinks {
            sink.deliver(token, Err(self.link.shut_down(true)));
        }
    }
}

impl Driver {
    pub(super) async fn run(mut self) {
        let link = Arc::clone(&self.link);
        // One timer for the session's deadlines, moved when they move: a
        // new `Sleep` per turn of the loop registers and deregisters a
        // timer entry for every event, while moving an armed one to a
        // later instant (the usual case) is a single atomic store.
        let session_timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(session_timer);
        let mut armed: Option<Instant> = None;
        // Registered once and again only after it fired.
        let wake = link.wake.notified();
        tokio::pin!(wake);
        // The last turn read what had arrived before acting on a due timer.
        let mut looked = false;
        // Swapped with the waiters', so handing outcomes over allocates once.
        let mut spare: Handed = Vec::new();
        // The replies sinks send on for the outcomes of one read, written
        // together once all are handed over (kept, so it allocates once).
        let mut replies = WriteBatch::default();
        let one_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        loop {
            if link.closing.load(Ordering::Acquire) {
                return;
            }
            let (timer, waited_on, woken, more) = {
                let mut st = link.lock();
                let woken = self.pump(&mut st);
                st.armed = st.session.poll_timeout();
                let planned = (st.armed, st.waited_on(), woken, st.sharing);
                hand_over(st, &mut spare, &mut replies);
                planned
            };
            self.coalesce(woken, one_thread).await;
            if more {
                // The next share of the callers, before anything else.
                continue;
            }
            if self.conn.is_none() && self.reconnect_at.is_none() && waited_on {
                self.reconnect_at = Some(Instant::now());
            }
            let timer = timer.map(|t| link.clock.to_tokio(t));
            if let Some(at) = timer
                && armed != timer
            {
                session_timer.as_mut().reset(at);
                armed = timer;
            }
            let reconnect = self.reconnect_at;
            let event = match self.conn.as_mut() {
                Some(conn) => {
                    if !conn.buf.try_make_room() {
                        // Every read buffer still holds replies whose
                        // callers have not run yet: they run first and let
                        // go, rather than the next read taking new memory.
                        tokio::task::yield_now().await;
                        conn.buf.make_room();
                    }
                    tokio::select! {
                        () = &mut wake => Event::Wake,
                        r = conn.read.read_buf(conn.buf.bytes()) => Event::Read(r),
                        () = &mut session_timer, if timer.is_some() => Event::Timer,
                    }
                }
                None => tokio::select! {
                    () = &mut wake => Event::Wake,
                    () = &mut session_timer, if timer.is_some() => Event::Timer,
                    _ = sleep_until(reconnect), if reconnect.is_some() => Event::Reconnect,
                },
            };
            match event {
                Event::Wake => wake.set(link.wake.notified()),
                Event::Read(Ok(n)) if n > 0 => self.on_bytes(&mut link.lock()),
                Event::Read(_) => self.disconnect(&mut link.lock()),
                Event::Timer => {
                    // A fired timer is re-armed even for the same instant.
                    armed = None;
                    // Bytes that arrived by now count before the timers: a
                    // driver that wakes late on a loaded machine must see
                    // the reply (or part of it) before it resends the call
                    // or declares the server silent. Once per timer, so a
                    // steady stream cannot hold the timers off.
                    if !std::mem::take(&mut looked) && self.read_ready() {
                        looked = true;
                        continue;
                    }
                    let mut st = link.lock();
                    let now = link.clock.now();
                    if let (Some(conn_in), Some(conn_out)) = (self.conn.as_ref(), st.conn.as_ref())
                    {
                        let delivered = conn_out
                            .out
                            .written()
                            .saturating_sub(conn_in.queue.unacknowledged())
                            .saturating_sub(conn_out.own_bytes);
                        st.session.handle_written(delivered, now);
                    }
                    st.session.handle_timeout(now);
                }
                Event::Reconnect => self.reconnect().await,
            }
        }
    }

    /// Reads what has already arrived, without waiting; true if anything
    /// was read (or the connection broke), so the caller looks again
    /// before acting on a timer.
    fn read_ready(&mut self) -> bool {
        use futures_util::FutureExt;
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        conn.buf.make_room();
        let read = conn.read.read_buf(conn.buf.bytes()).now_or_never();
        let link = Arc::clone(&self.link);
        match read {
            None => false,
            Some(Ok(n)) if n > 0 => {
                self.on_bytes(&mut link.lock());
                true
            }
            Some(_) => {
                self.disconnect(&mut link.lock());
                true
            }
        }
    }

    fn on_bytes(&mut self, st: &mut State) {
        let now = self.link.clock.now();
        let codec = self.link.codec;
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        loop {
            if conn.buf.incomplete_frame().is_some() {
                // Part of a large frame: the server is sending. The next
                // read completes it in place.
                st.session.handle_progress(now);
                return;
            }
            match codec.decode(conn.buf.bytes()) {
                Ok(None) => {
                    if !conn.buf.bytes().is_empty() {
                        st.session.handle_progress(now);
                    }
                    return;
                }
                Ok(Some(Message::Description(d))) => {
                    self.proven = true;
                    if let Some(waiter) = st.describes.remove(&d.id) {
                        let _ = waiter.send(Ok(d.payload));
                    }
                }
                Ok(Some(Message::Resized(r))) => {
                    self.proven = true;
                    if let Some((_, waiter)) = st.resizes.remove(&r.id) {
                        let _ = waiter.send(Ok(r.capacity));
                    }
                }
                Ok(Some(mut message)) => {
                    if !matches!(message, Message::ConnError(_)) {
                        self.proven = true;
                    }
                    if let Message::Reply(reply) = &mut message {
                        reply.payload = conn.buf.keep(std::mem::take(&mut reply.payload));
                    }
                    st.session.handle_message(message, now);
                }
                Err(_) => {
                    // The stream cannot be trusted past a bad frame.
                    self.disconnect(st);
                    return;
                }
            }
        }
    }

    /// Moves the session's output to the socket and its outcomes to the
    /// callers (the first share of them, see [`first_share`]), and acts on
    /// a request to drop the connection; returns how many callers were
    /// woken.
    fn pump(&mut self, st: &mut State) -> usize {
        let link = &*self.link;
        st.transmit(&link.codec);
        if !st.describes.is_empty()
            && let Some(why) = st.session.refused_credentials()
        {
            // The server answers no Describe without accepted credentials;
            // its refusal of the handshake is the answer.
            let refused = CallError::Refused {
                reason: crate::wire::Refusal::Unauthorized,
                message: why.to_owned(),
            };
            for (_, waiter) in st.describes.drain() {
                let _ = waiter.send(Err(refused.clone()));
            }
        }
        if !st.resizes.is_empty()
            && let Some(why) = st.session.refused_credentials()
        {
            st.fail_resizes(&CallError::Refused {
                reason: crate::wire::Refusal::Unauthorized,
                message: why.to_owned(),
            });
        }
        if let Some(load) = st.session.reported_load() {
            link.load.store(u64::from(load), Ordering::Relaxed);
        }
        if let Some(s) = st.session.reported_service_time() {
            link.service_time.store(s.as_nanos(), Ordering::Relaxed);
        }
        let share = first_share(st.session.ended(), st.session.outstanding());
        let woken = st.deliver(&link.addr, share);
        st.sharing = st.session.ended() > 0;
        if st.session.poll_close() {
            lose_resizes(&link.addr, st);
            st.conn = None;
            self.conn = None;
            self.schedule_reconnect();
        }
        woken
    }

    /// Lets the callers one batch of replies woke run before the driver
    /// goes on, holding the requests they start meanwhile, then writes
    /// them all at once. Written in place each, a batch of 16 requests
    /// cost 16 system calls and woke the server up to 16 times (it then
    /// answered them one by one, each answer a write of its own); against
    /// a peer that batches, that lost several times over on a loaded
    /// machine. Only for batches of [`COALESCE_MIN_CALLERS`]: a lone
    /// caller's request leaves at once. The driver always resumes after
    /// its yield, so nothing is held longer than that.
    ///
    /// On a current-thread runtime (`one_thread`) the driver yields by
    /// queueing itself behind the callers it woke, which run first in the
    /// order woken. `yield_now` would also do, but it defers the driver
    /// past the runtime's next look at its sockets: once the callers have
    /// run, that look is an `epoll_wait` of its own (a system call per
    /// batch of replies: 0.3 per call of the gateway's HTTP ingress at
    /// 10k/s), right before the runtime parks in another. A
    /// work-stealing runtime would run a task that wakes itself next
    /// (its LIFO slot), ahead of the callers: there `yield_now` it is.
    async fn coalesce(&mut self, woken: usize, one_thread: bool) {
        if woken < COALESCE_MIN_CALLERS || self.conn.is_none() {
            return;
        }
        self.link.lock().corked = true;
        if one_thread {
            behind_the_queue().await;
        } else {
            tokio::task::yield_now().await;
        }
        let mut st = self.link.lock();
        st.corked = false;
        if let Some(conn) = st.conn.as_ref() {
            let _ = conn.out.flush();
        }
    }

    fn disconnect(&mut self, st: &mut State) {
        let now = self.link.clock.now();
        st.session.handle_disconnect(now);
        lose_resizes(&self.link.addr, st);
        st.conn = None;
        self.conn = None;
        self.schedule_reconnect();
    }

    fn schedule_reconnect(&mut self) {
        if std::mem::take(&mut self.proven) {
            self.backoff = Duration::from_millis(RECONNECT_BACKOFF_MS);
        }
        if self.reconnect_at.is_none() {
            self.reconnect_at = Some(Instant::now() + self.backoff);
        }
    }

    async fn reconnect(&mut self) {
        self.reconnect_at = None;
        if !self.link.lock().waited_on() {
            // Nobody waits: connect lazily, when the next call starts.
            return;
        }
        let link = Arc::clone(&self.link);
        link.reconnects.fetch_add(1, Ordering::Relaxed);
        // Doubled whether or not the attempt connects: only an answer from
        // the server (`proven`) starts the backoff over.
        self.backoff = (self.backoff * 2).min(Duration::from_millis(MAX_RECONNECT_BACKOFF_MS));
        let opened = open(
            &link.addr,
            self.dial.tls.as_ref(),
            self.dial.connect_timeout_ms,
        )
        .await;
        let mut st = link.lock();
        match opened {
            Ok((conn_in, conn_out)) => {
                self.conn = Some(conn_in);
                st.conn = Some(conn_out);
                let now = link.clock.now();
                st.session.handle_connected(now);
                // The handshake first: a server that requires credentials
                // answers a Describe only after they were accepted.
                st.transmit(&link.codec);
                let ids: Vec<u64> = st.describes.keys().copied().collect();
                for id in ids {
                    st.send_describe(&link.codec, id);
                }
                let asked: Vec<_> = st.resizes.iter().map(|(id, (c, _))| (*id, *c)).collect();
                for (id, capacity) in asked {
                    st.send_resize(&link.codec, id, capacity);
                }
            }
            Err(e) => {
                // Describes have no deadline of their own (their callers
                // time out), but must not wait for a server that is gone.
                for (_, waiter) in st.describes.drain() {
                    let _ = waiter.send(Err(e.clone()));
                }
                st.fail_resizes(&e);
                drop(st);
                self.schedule_reconnect();
            }
        }
    }
}

/// Pending once, woken at once: on a current-thread runtime the task runs
/// again after the tasks already queued, with no look at the sockets
/// between.
async fn behind_the_queue() {
    let mut queued = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut queued, true) {
            return std::task::Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A connection ended before its resizes were answered: they end
/// `ConnectionLost`, never resent, since a server that predates `Resize`
/// closes the connection on it, and would again.
fn lose_resizes(addr: &str, st: &mut State) {
    st.fail_resizes(&CallError::ConnectionLost {
        sent: true,
        cause: format!("{addr}: the connection closed before the resize was answered"),
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;

    use super::first_share;
    use crate::service::{CallOptions, Transport};
    use crate::transport::gather::{Gather, METHODS};
    use crate::transport::{Server, TcpClient};

    /// Callers whose calls the node answers together.
    const CALLERS: usize = 8;
    /// Turns of the runtime the callers get to start their first calls.
    const MAX_TURNS: usize = 64;

    /// On a current-thread runtime the driver queues itself behind the
    /// callers a read of replies woke: the calls they start as they wake
    /// leave together. Were it to flush before they ran, each of those
    /// calls would be a write of its own.
    #[tokio::test(flavor = "current_thread")]
    async fn calls_started_by_callers_woken_together_leave_together() {
        let node = Server::bind("127.0.0.1:0", Gather::new(CALLERS))
            .await
            .unwrap();
        let addr = node.local_addr().unwrap().to_string();
        tokio::spawn(node.run());
        let client = Arc::new(TcpClient::connect(&addr).await.unwrap());
        let started = Arc::new(AtomicUsize::new(0));
        // The first calls leave in one write, held until all started.
        client.hold_writes();
        let callers: Vec<_> = (0..CALLERS)
            .map(|i| {
                let (client, started) = (Arc::clone(&client), Arc::clone(&started));
                tokio::spawn(async move {
                    let i = u8::try_from(i).unwrap();
                    let first = Bytes::from(vec![i, 0]);
                    let mut call = client.call(&METHODS[0], first.clone(), CallOptions::default());
                    // One poll starts it.
                    let now = std::future::poll_fn(|cx| {
                        std::task::Poll::Ready(std::future::Future::poll(call.as_mut(), cx))
                    })
                    .await;
                    assert!(now.is_pending(), "the node gathers them all");
                    started.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(call.await.unwrap(), first, "caller {i}");
                    // Woken by the read that brought its reply, this
                    // caller starts its second call.
                    let second = Bytes::from(vec![i, 1]);
                    let reply = client.call(&METHODS[0], second.clone(), CallOptions::default());
                    assert_eq!(reply.await.unwrap(), second, "caller {i}");
                })
            })
            .collect();
        for _ in 0..MAX_TURNS {
            if started.load(Ordering::SeqCst) == CALLERS {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(started.load(Ordering::SeqCst), CALLERS);
        let before = client.writes();
        client.release_writes();
        for caller in callers {
            caller.await.unwrap();
        }
        // One write for the first calls; the second calls leave with
        // those of the other callers woken by the same read (a share of
        // them at a time, `first_share`: 3 writes when the node's replies
        // come in one read), not one by one (`CALLERS` writes).
        let writes = client.writes() - before;
        assert!(
            writes < 1 + CALLERS as u64,
            "{CALLERS} first calls in one write, then {CALLERS} started by woken callers: {writes} writes"
        );
    }

    #[test]
    fn callers_are_woken_a_share_at_a_time_only_while_the_server_runs_short() {
        // A whole window of 16 ended, nothing left at the server: a
        // quarter first, then shares until the server holds enough.
        assert_eq!(first_share(16, 0), 4);
        assert_eq!(first_share(12, 4), 3);
        assert_eq!(first_share(9, 7), 2);
        assert_eq!(first_share(7, 9), usize::MAX);
        // The server holds as many as there are to hand over: all at once.
        assert_eq!(first_share(64, 64), usize::MAX);
        assert_eq!(first_share(100, 28), 25);
        // Too few to split: all at once, as a lone caller's.
        assert_eq!(first_share(3, 0), usize::MAX);
        assert_eq!(first_share(1, 0), usize::MAX);
        // The smallest split.
        assert_eq!(first_share(4, 0), 2);
    }
}
