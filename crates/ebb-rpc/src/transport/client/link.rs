//! A client's connection, shared by its callers and its driver task.
//!
//! A caller starts its call itself: under the link's lock it hands the call
//! to the session and writes the request to the socket in place (through
//! the connection's `OutBuf`), so a call costs no hand-over to another task
//! and no wake-up of one. The driver task owns the socket's read side: it
//! feeds the session the frames that arrive and its timer expiries
//! (`poll_timeout` becomes `sleep_until`), delivers the outcomes to the
//! callers waiting for them, and reconnects. A caller wakes the driver only
//! when it must act sooner than it planned to: a timer earlier than the one
//! it sleeps on, a connection wanted while there is none, the client
//! dropped.
//!
//! What to resend after a reconnect, when a call has failed and how, and
//! when the server is presumed dead are the session's decisions, not ours.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use ebb_core::{Clock, Nanos};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::super::clock::RuntimeClock;
use super::super::framebuf::FrameBuf;
use super::super::frames;
use super::super::outbuf::OutBuf;
use super::super::stream::{self, ReadSide};
use super::super::tls::ClientTls;
use super::super::unacked::SocketQueue;
use super::answer::{Answer, Handed, Waiters};
use super::readbuf::ReadBuf;
use super::{MAX_PENDING_DESCRIBES, MAX_RECONNECT_BACKOFF_MS, RECONNECT_BACKOFF_MS};
use crate::CallError;
use crate::fast_map::FastMap;
use crate::semantics::{CallSpec, ClientSession};
use crate::service::CallSink;
use crate::wire::{Describe, FrameCodec, Message};

/// `load`'s cell before any report: a load no server reports.
const NO_LOAD_REPORTED: u64 = u64::MAX;
/// Callers one batch of replies must wake before the requests they start
/// are held and written together.
const COALESCE_MIN_CALLERS: usize = 2;

pub(super) type Reply = Result<Bytes, CallError>;

/// The output side of the current connection, where callers write.
struct ConnOut {
    out: Arc<OutBuf>,
    /// Bytes of frames pushed beside the session's (Describe requests),
    /// left out of what the session is told was written.
    own_bytes: u64,
}

impl Drop for ConnOut {
    fn drop(&mut self) {
        self.out.close();
    }
}

/// The input side of the current connection, the driver's alone.
struct ConnIn {
    read: ReadSide,
    buf: ReadBuf,
    /// The socket's queue of bytes the server has not acknowledged (valid
    /// while `read` holds the socket open).
    queue: SocketQueue,
}

/// What callers and the driver share, behind the link's lock.
struct State {
    session: ClientSession,
    /// Set while connected; the driver holds the matching [`ConnIn`] and
    /// is the only one to set or clear both.
    conn: Option<ConnOut>,
    /// Callers waiting, by the session's call id.
    waiters: Waiters,
    /// Describe requests waiting for their answer, by id; resent after a
    /// reconnect (asking again is harmless).
    describes: FastMap<u64, oneshot::Sender<Reply>>,
    next_describe: u64,
    /// The session instant the driver's timer is set for: a caller whose
    /// call needs the driver sooner wakes it.
    armed: Option<ebb_core::Instant>,
    /// The driver has ended (the client was dropped, or its runtime shut
    /// down): nothing would read the replies, so calls are refused.
    ended: bool,
    /// Callers woken by one batch of replies are running: the requests
    /// they start are appended and leave together when the driver runs
    /// next, with one write (see `Driver::coalesce`).
    corked: bool,
}

impl State {
    /// Moves the session's messages to the connection, written in place.
    fn transmit(&mut self, codec: &FrameCodec) {
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

    /// Hands every call that ended to its caller; returns how many callers
    /// were woken.
    fn deliver(&mut self, addr: &str) -> usize {
        let mut woken = 0;
        while let Some((id, outcome)) = self.session.poll_event() {
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

    fn send_describe(&mut self, codec: &FrameCodec, id: u64) {
        if let Some(conn) = self.conn.as_mut() {
            let describe = Message::Describe(Describe { id });
            let _ = conn.out.push_with(|b| frames::append(codec, &describe, b));
            conn.own_bytes += describe.encoded_len() as u64;
        }
    }

    /// Someone waits for the server: a connection is wanted.
    fn waited_on(&self) -> bool {
        self.session.outstanding() > 0 || !self.describes.is_empty()
    }
}

/// The connection state and what the client reads of it without the lock.
pub(super) struct Link {
    state: Mutex<State>,
    /// Wakes the driver before its own events would.
    wake: Notify,
    /// Set when the client is dropped: the driver ends.
    closing: AtomicBool,
    pub(super) addr: String,
    clock: RuntimeClock,
    codec: FrameCodec,
    /// The server's load as last reported, or `NO_LOAD_REPORTED`.
    load: AtomicU64,
    /// The server's own service time as last reported, in nanoseconds;
    /// 0 before any report.
    service_time: AtomicU64,
    /// Connection attempts after the first, successful or not.
    pub(super) reconnects: AtomicU64,
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, State> {
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
        self.send_started(st);
        Answer::waiting(self, id.0)
    }

    /// Starts a call now; its outcome goes to `sink` with `token`, handed
    /// over by whoever learns it, outside the lock.
    pub(super) fn start_with_sink(
        &self,
        spec: CallSpec,
        args: Bytes,
        timeout: Nanos,
        sink: Arc<dyn CallSink>,
        token: u64,
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
        self.send_started(st);
    }

    /// What follows a call's start, whoever awaits it: its request goes
    /// out, an outcome it already has is handed over, and the driver is
    /// woken when the call's timer is due before the one it has armed or
    /// there is no connection to send on.
    fn send_started(&self, mut st: MutexGuard<'_, State>) {
        st.transmit(&self.codec);
        // A call can end as it starts (no time left, credentials refused).
        st.deliver(&self.addr);
        let sooner = match (st.session.poll_timeout(), st.armed) {
            (Some(due), Some(armed)) => due < armed,
            (due, None) => due.is_some(),
            (None, Some(_)) => false,
        };
        if sooner || st.conn.is_none() {
            self.wake.notify_one();
        }
        hand_over(st, &mut Vec::new());
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

    /// Ends every call now: the server is known to be gone.
    pub(super) fn abandon(&self, cause: &str) {
        let mut st = self.lock();
        st.session.abandon_all(cause);
        st.deliver(&self.addr);
        hand_over(st, &mut Vec::new());
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
fn hand_over(mut st: MutexGuard<'_, State>, spare: &mut Handed) {
    if st.waiters.handed.is_empty() {
        return;
    }
    std::mem::swap(&mut st.waiters.handed, spare);
    drop(st);
    for (sink, token, outcome) in spare.drain(..) {
        sink.deliver(token, outcome);
    }
}

/// Opens a connection to `addr`: TCP, then TLS if given.
async fn open(
    addr: &str,
    tls: Option<&ClientTls>,
    timeout_ms: u64,
) -> Result<(ConnIn, ConnOut), CallError> {
    let cannot = |e: &dyn std::fmt::Display| CallError::ConnectionLost {
        sent: false,
        cause: format!("cannot connect to {addr}: {e}"),
    };
    let limit = Duration::from_millis(timeout_ms);
    let stream = tokio::time::timeout(limit, TcpStream::connect(addr))
        .await
        .map_err(|_| cannot(&format!("no answer within {timeout_ms} ms")))?
        .map_err(|e| cannot(&e))?;
    let _ = stream.set_nodelay(true);
    let queue = SocketQueue::of(&stream);
    let (read, write) = match tls {
        None => stream::tcp(stream),
        Some(tls) => {
            let handshake = tls.connect(addr, stream);
            let tls_stream = tokio::time::timeout(limit, handshake)
                .await
                .map_err(|_| cannot(&format!("no TLS handshake within {timeout_ms} ms")))?
                .map_err(|e| cannot(&format!("TLS handshake failed: {e}")))?;
            stream::tls(tls_stream)
        }
    };
    let out = Arc::new(OutBuf::default());
    let writer = Arc::clone(&out);
    tokio::spawn(async move { writer.drain_into(write).await });
    let conn_in = ConnIn {
        read,
        buf: ReadBuf::default(),
        queue,
    };
    Ok((conn_in, ConnOut { out, own_bytes: 0 }))
}

/// What the driver needs besides the session to keep a connection.
pub(super) struct Dial {
    pub(super) tls: Option<ClientTls>,
    pub(super) connect_timeout_ms: u64,
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
            armed: None,
            ended: false,
            corked: false,
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

struct Driver {
    link: Arc<Link>,
    conn: Option<ConnIn>,
    /// When to try connecting again, while disconnected with calls waiting.
    reconnect_at: Option<Instant>,
    backoff: Duration,
    /// The current connection has been answered by the server: the next
    /// break starts the backoff over.
    proven: bool,
    dial: Dial,
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
        st.ended = true;
        st.conn = None;
        let sinks = st.waiters.release_all();
        st.describes.clear();
        drop(st);
        for (sink, token) in sinks {
            sink.deliver(token, Err(self.link.shut_down(true)));
        }
    }
}

impl Driver {
    async fn run(mut self) {
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
        loop {
            if link.closing.load(Ordering::Acquire) {
                return;
            }
            let (timer, waited_on, woken) = {
                let mut st = link.lock();
                let woken = self.pump(&mut st);
                st.armed = st.session.poll_timeout();
                let planned = (st.armed, st.waited_on(), woken);
                hand_over(st, &mut spare);
                planned
            };
            self.coalesce(woken).await;
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
                Ok(Some(message)) => {
                    if !matches!(message, Message::ConnError(_)) {
                        self.proven = true;
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
    /// callers, and acts on a request to drop the connection; returns how
    /// many callers were woken.
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
        if let Some(load) = st.session.reported_load() {
            link.load.store(u64::from(load), Ordering::Relaxed);
        }
        if let Some(s) = st.session.reported_service_time() {
            link.service_time.store(s.as_nanos(), Ordering::Relaxed);
        }
        let woken = st.deliver(&link.addr);
        if st.session.poll_close() {
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
    async fn coalesce(&mut self, woken: usize) {
        if woken < COALESCE_MIN_CALLERS || self.conn.is_none() {
            return;
        }
        self.link.lock().corked = true;
        tokio::task::yield_now().await;
        let mut st = self.link.lock();
        st.corked = false;
        if let Some(conn) = st.conn.as_ref() {
            let _ = conn.out.flush();
        }
    }

    fn disconnect(&mut self, st: &mut State) {
        let now = self.link.clock.now();
        st.session.handle_disconnect(now);
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
            }
            Err(e) => {
                // Describes have no deadline of their own (their callers
                // time out), but must not wait for a server that is gone.
                for (_, waiter) in st.describes.drain() {
                    let _ = waiter.send(Err(e.clone()));
                }
                drop(st);
                self.schedule_reconnect();
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
