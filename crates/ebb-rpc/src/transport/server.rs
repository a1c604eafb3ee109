//! The TCP server runtime: accept loop, one task per connection that reads
//! requests, runs calls and writes their replies itself (its writer task
//! takes over only when the socket would block, or for TLS), and one
//! [`ServerSession`] (the sans-IO call semantics) shared by all
//! connections, since a client that reconnects must find its saved
//! replies on the new connection.
//!
//! The session decides everything: whether to accept a connection, and per
//! frame whether to run, answer from memory, wait for the running copy,
//! refuse or drop; it names the connection each reply goes to. This file
//! only moves bytes: it asks, obeys, and catches a panicking method so the
//! session can record it. A bad frame hurts only its own connection: it
//! gets a `ConnError` (`BadFrame`) naming the problem and that connection
//! is closed.

use crate::fast_map::FastMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use ebb_core::{Clock, Rng};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::TransportError;
use super::clock::RuntimeClock;
use super::framebuf::FrameBuf;
use super::frames;
use super::outbuf::{MAX_PENDING_WRITE_BYTES, OutBuf};
use super::stream::{self, ReadSide, WriteSide};
use super::tls::{ServerTls, TLS_HANDSHAKE_TIMEOUT_MS};
use super::workers::{self, Workers};
use crate::semantics::server::CallKey;
use crate::semantics::server::random_incarnation;
use crate::semantics::{Action, ConnId, ConnRefusal, Incoming, ServerConfig, ServerSession};
use crate::service::{
    BoxFuture, CallContext, DeferredReply, DispatchError, ReplySink, ServiceDispatch,
};
use crate::wire::{ConnErrorKind, FrameCodec, Incarnation, Message, Outcome, encode_payload};

mod json;
mod refuse;

pub use refuse::MAX_TLS_REFUSALS_IN_FLIGHT;

pub use crate::semantics::{MAX_CLIENTS_PER_CONN, MAX_CONNECTIONS, MAX_IN_FLIGHT_PER_CONN};

/// Reply bytes one read may gather before they are shipped mid-batch.
/// 6400 B (about 64 small replies) keeps both ends busy while writing a
/// quarter as often as 1600 B did: same throughput, less server CPU.
const REPLY_CHUNK_BYTES: usize = 6400;
/// Read buffer growth step per connection.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Shortest interval between sweeps of expired sessions.
const MIN_SWEEP_INTERVAL_MS: u64 = 10;
/// JSON arguments larger than this are converted (parsed, turned into the
/// method's arguments, the reply turned back into JSON text) on a worker
/// thread, as a `#[blocking]` method runs. Converting megabytes of JSON
/// keeps a core busy for seconds on a loaded machine; on the I/O loop that
/// would hold up every frame of the connection behind it, pongs included,
/// and the client would declare the server unresponsive. Smaller ones stay
/// inline, where a call that finishes at once needs no hand-over at all.
pub const MAX_INLINE_JSON_BYTES: usize = 64 * 1024;

/// What all connections share: the semantics, and each open connection's
/// output, which the session's routes name.
struct Shared {
    session: ServerSession,
    outs: FastMap<ConnId, Arc<OutBuf>>,
}

struct Core<D> {
    dispatch: D,
    shared: Mutex<Shared>,
    clock: RuntimeClock,
    incarnation: Incarnation,
    codec: FrameCodec,
    /// Where methods marked `#[blocking]` run, off the I/O loop.
    workers: Workers,
    /// Set: every connection is TLS (see [`Server::with_tls`]).
    tls: Option<ServerTls>,
    /// TLS connections being refused with an answer (bounded).
    tls_refusals: refuse::TlsRefusals,
}

impl<D> Core<D> {
    fn now(&self) -> ebb_core::Instant {
        self.clock.now()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // Every critical section leaves `Shared` consistent, so a panic
        // elsewhere does not make it unusable.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the connections the session finds silent: each is told why,
    /// and its writer flushes that and shuts the socket, which also stops
    /// its reader.
    fn close_silent(&self) {
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
    fn complete(
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
            // No route means the client will ask again on its next
            // connection and get the saved reply; nothing to do here.
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
        });
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
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server<D> {
    listener: TcpListener,
    core: Arc<Core<D>>,
}

impl<D: ServiceDispatch> Server<D> {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: &str, dispatch: D) -> Result<Server<D>, TransportError> {
        Server::bind_with(addr, dispatch, ServerConfig::default()).await
    }

    pub async fn bind_with(
        addr: &str,
        dispatch: D,
        config: ServerConfig,
    ) -> Result<Server<D>, TransportError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TransportError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        Ok(Server::from_listener(listener, dispatch, config))
    }

    /// Serves on a socket that is already bound and listening: one handed
    /// over by a parent process (socket activation) or bound by a provider
    /// that must know the node's address before the node runs. Must be
    /// called inside a tokio runtime.
    pub fn from_std(
        listener: std::net::TcpListener,
        dispatch: D,
        config: ServerConfig,
    ) -> Result<Server<D>, TransportError> {
        let addr = listener
            .local_addr()
            .map_or_else(|_| "an inherited socket".to_owned(), |a| a.to_string());
        let adopt = |source| TransportError::Bind { addr, source };
        let listener = match listener.set_nonblocking(true) {
            Ok(()) => TcpListener::from_std(listener).map_err(adopt)?,
            Err(e) => return Err(adopt(e)),
        };
        Ok(Server::from_listener(listener, dispatch, config))
    }

    fn from_listener(listener: TcpListener, dispatch: D, config: ServerConfig) -> Server<D> {
        // Random per process, so a restarted server never reuses one.
        let incarnation = random_incarnation(&mut Rng::seeded(frames::os_random_u64()));
        let mut session = ServerSession::new(incarnation, config);
        // A description that does not encode leaves `Describe` answered
        // empty, which a caller reports as undecodable; nothing else breaks.
        if let Ok(description) = encode_payload(&dispatch.description()) {
            session.set_description(description);
        }
        Server {
            listener,
            core: Arc::new(Core {
                dispatch,
                incarnation: session.incarnation(),
                shared: Mutex::new(Shared {
                    session,
                    outs: FastMap::default(),
                }),
                clock: RuntimeClock::new(),
                codec: FrameCodec::default(),
                workers: Workers::new(workers::default_threads()),
                tls: None,
                tls_refusals: refuse::TlsRefusals::default(),
            }),
        }
    }

    /// Runs methods marked `#[blocking]` on `threads` worker threads
    /// (default: one per available core), so at most that many run at once
    /// and none of them holds up the I/O loop. The node's CPU capacity.
    pub fn with_threads(mut self, threads: std::num::NonZeroUsize) -> Server<D> {
        let core = Arc::get_mut(&mut self.core)
            .expect("the core is shared only once the server runs, which consumes it");
        core.workers = Workers::new(threads);
        self
    }

    /// Serves every connection over TLS (mutual TLS if `tls` requires
    /// client certificates). A peer that does not complete the handshake
    /// within `TLS_HANDSHAKE_TIMEOUT_MS` is dropped.
    pub fn with_tls(mut self, tls: ServerTls) -> Server<D> {
        let core = Arc::get_mut(&mut self.core)
            .expect("the core is shared only once the server runs, which consumes it");
        core.tls = Some(tls);
        self
    }

    /// Requires every connection to present one of `tokens` in its
    /// handshake: calls on a connection without one are refused
    /// `Unauthorized` and do not run.
    pub fn with_tokens(self, tokens: crate::auth::Tokens) -> Server<D> {
        self.core.lock().session.set_tokens(Some(tokens));
        self
    }

    /// The worker threads for blocking methods (see [`Server::with_threads`]).
    pub fn threads(&self) -> std::num::NonZeroUsize {
        self.core.workers.threads()
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// This server process's incarnation: replies carry it so clients can
    /// tell a restarted server (which lost its state) from the same one.
    pub fn incarnation(&self) -> u64 {
        self.core.incarnation.get()
    }

    /// Calls executing now (the load replies report).
    pub fn load(&self) -> usize {
        self.core.lock().session.executing()
    }

    /// Reads the session's decision counts (refusals by cause among them)
    /// while the server runs, after [`Server::run`] has taken it: what a
    /// gateway exports as metrics of its RPC ingress.
    pub fn stats_reader(
        &self,
    ) -> impl Fn() -> crate::semantics::ServerStats + Send + Sync + 'static {
        let core = Arc::clone(&self.core);
        move || core.lock().session.stats()
    }

    /// Serves until accepting fails for good. Transient accept errors (a
    /// client that reset before we accepted, running out of descriptors)
    /// are skipped, not fatal. Idle client sessions are expired as it goes,
    /// every quarter of the configured session expiry, and silent
    /// connections are closed every quarter of the shorter of the
    /// handshake and idle timeouts.
    pub async fn run(self) -> Result<(), TransportError> {
        let config = *self.core.lock().session.config();
        let quarter = |n: ebb_core::Nanos| {
            (Duration::from(n) / 4).max(Duration::from_millis(MIN_SWEEP_INTERVAL_MS))
        };
        let mut sweeps = tokio::time::interval(quarter(config.session_expiry));
        let mut conn_sweeps =
            tokio::time::interval(quarter(config.handshake_timeout.min(config.idle_timeout)));
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = sweeps.tick() => {
                    let now = self.core.now();
                    self.core.lock().session.expire_idle(now);
                    continue;
                }
                _ = conn_sweeps.tick() => {
                    self.core.close_silent();
                    continue;
                }
            };
            let (stream, peer) = match accepted {
                Ok(s) => s,
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(TransportError::Accept(e)),
            };
            let now = self.core.now();
            let opened = self.core.lock().session.open_connection(peer.ip(), now);
            match opened {
                Ok(conn) => {
                    let core = Arc::clone(&self.core);
                    tokio::spawn(open_connection(stream, peer, core, conn));
                }
                Err(refusal) => {
                    let kind = match refusal {
                        ConnRefusal::ServerFull { .. } => ConnErrorKind::ServerFull,
                        ConnRefusal::PeerFull { .. } => ConnErrorKind::PeerFull,
                    };
                    refuse::refuse(stream, &self.core, kind, &refusal.to_string());
                }
            }
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || e.raw_os_error().is_some_and(|c| c == 23 || c == 24) // ENFILE, EMFILE
}

/// Runs the TLS handshake if the server has TLS, then serves. A failed
/// or slow handshake closes the connection: nothing was read from it.
async fn open_connection<D: ServiceDispatch>(
    stream: TcpStream,
    _peer: SocketAddr,
    core: Arc<Core<D>>,
    conn: ConnId,
) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = core.tls.clone() else {
        let (read, write) = stream::tcp(stream);
        return serve_connection(read, write, core, conn).await;
    };
    let limit = Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS);
    match tokio::time::timeout(limit, tls.acceptor().accept(stream)).await {
        Ok(Ok(tls_stream)) => {
            let (read, write) = stream::tls(tls_stream);
            serve_connection(read, write, core, conn).await;
        }
        Ok(Err(_)) | Err(_) => core.lock().session.close_connection(conn),
    }
}

/// What woke a connection's task.
enum Wake {
    Read(std::io::Result<usize>),
    Done(Finished),
    Closed,
}

async fn serve_connection<D: ServiceDispatch>(
    mut read: ReadSide,
    write: WriteSide,
    core: Arc<Core<D>>,
    conn: ConnId,
) {
    let out = Arc::new(OutBuf::for_replies());
    core.lock().outs.insert(conn, Arc::clone(&out));
    let writer = {
        let out = Arc::clone(&out);
        tokio::spawn(async move { out.drain_into(write).await })
    };
    let codec = core.codec;
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    // This wake-up's replies, written (or queued) whole; reused.
    let mut batch = FrameBuf::default();
    // Calls that did not finish at their first poll, driven by this task.
    let mut running: Running<'_> = FuturesUnordered::new();
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
            Some(done) = running.next(), if !running.is_empty() => Wake::Done(done),
            r = more => r.map_or(Wake::Closed, Wake::Read),
            () = &mut closed => Wake::Closed,
        };
        match wake {
            Wake::Closed | Wake::Read(Ok(0) | Err(_)) => break,
            Wake::Done(done) => {
                // Every call that finished by now answers in this batch.
                let mut next = Some(done);
                while let Some(done) = next {
                    finish_call(&core, &out, &mut batch, done);
                    next = ready_now(&mut running).await;
                }
            }
            Wake::Read(Ok(_)) => {
                // One clock read per batch of frames: they arrived together.
                let now = core.now();
                let mut whole = false;
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
                            let _ = out.push_batch(&mut batch);
                            break 'conn;
                        }
                    };
                    whole = true;
                    let Some(incoming) = admit(&core, &mut batch, conn, frame, now) else {
                        continue;
                    };
                    run_call(&core, &out, &mut batch, &mut running, incoming, now);
                    // Ship a part of a large read, so the client works on
                    // the first replies while the rest run: sending the
                    // whole window at once makes the two ends take turns.
                    // Plain TCP writes it here and now; a TLS writer is a
                    // task of its own, which must be let run.
                    if batch.len() >= REPLY_CHUNK_BYTES {
                        let _ = out.push_batch(&mut batch);
                        if core.tls.is_some() {
                            tokio::task::yield_now().await;
                        }
                    }
                }
            }
        }
        if !batch.is_empty() {
            let _ = out.push_batch(&mut batch);
        }
    }
    out.close();
    {
        let mut shared = core.lock();
        shared.session.close_connection(conn);
        shared.outs.remove(&conn);
    }
    // Admitted calls still run to their end: their outcomes are saved for
    // the client's retry on another connection, and duplicates waiting for
    // them are answered.
    while let Some(Finished { key, outcome }) = running.next().await {
        let (status, payload) = outcome;
        let now = core.now();
        core.complete(key, status, payload, now, None);
    }
    let _ = writer.await;
}

/// A finished call whose future [`ready_now`] or the connection loop took
/// from the running set.
struct Finished {
    key: CallKey,
    outcome: (Outcome, bytes::Bytes),
}

/// The calls of one connection still running after their first poll, polled
/// by that connection's task: no task (and no allocation for one) per call,
/// and the replies of the calls one wake-up finishes leave in one write.
type Running<'a> = FuturesUnordered<Pending<'a>>;

/// One started call that did not finish at its first poll.
struct Pending<'a> {
    key: CallKey,
    run: Run<'a>,
}

impl Future for Pending<'_> {
    type Output = Finished;

    /// A panic in any poll still ends the call, as the method's outcome.
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Finished> {
        let run = &mut self.run;
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(cx)));
        let outcome = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(result)) => frames::outcome_of(result),
            Err(_) => panicked(),
        };
        Poll::Ready(Finished {
            key: self.key,
            outcome,
        })
    }
}

/// A call of `running` that has finished by now, if any, without waiting.
async fn ready_now(running: &mut Running<'_>) -> Option<Finished> {
    std::future::poll_fn(|cx| match running.poll_next_unpin(cx) {
        Poll::Ready(done) => Poll::Ready(done),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Records a finished call; its reply joins `batch` if it goes to this
/// connection.
fn finish_call<D>(core: &Core<D>, out: &Arc<OutBuf>, batch: &mut FrameBuf, done: Finished) {
    let Finished { key, outcome } = done;
    let (status, payload) = outcome;
    let now = core.now();
    core.complete(key, status, payload, now, Some((out, batch)));
}

/// Hands one frame to the session; answers what needs no run and returns
/// the call to run, if any. Answers go to `batch`, this read's replies.
fn admit<D>(
    core: &Core<D>,
    batch: &mut FrameBuf,
    conn: ConnId,
    message: Message,
    now: ebb_core::Instant,
) -> Option<Incoming> {
    let action = core.lock().session.admit(conn, message, now);
    match action {
        Action::Execute(incoming) => Some(incoming),
        Action::Reply(reply) => {
            frames::append(&core.codec, &reply, batch);
            None
        }
        Action::Wait | Action::Drop => None,
    }
}

/// Runs one call through the dispatcher. Most calls finish without waiting:
/// those are polled once here and answered inline, which lets their replies
/// share one write. A pending call joins `running`, the connection's set of
/// running calls, which its task polls with a real waker.
///
/// A panicking method must still complete its call, or its duplicates would
/// wait for it forever; the run is over either way, so unwind safety is not
/// at stake.
fn run_call<'a, D: ServiceDispatch>(
    core: &'a Arc<Core<D>>,
    out: &Arc<OutBuf>,
    batch: &mut FrameBuf,
    running: &mut Running<'a>,
    incoming: Incoming,
    started: ebb_core::Instant,
) {
    let key = incoming.key;
    if !key.json && core.dispatch.defers(key.method) {
        return run_deferred(core, incoming);
    }
    let heavy_json = key.json && incoming.payload.len() > MAX_INLINE_JSON_BYTES;
    if heavy_json || core.dispatch.method(key.method).is_some_and(|m| m.blocking) {
        return run_blocking(core, incoming);
    }
    let Ok(mut run) =
        std::panic::catch_unwind(AssertUnwindSafe(|| start_run(core, incoming, true)))
    else {
        let (status, payload) = panicked();
        return core.complete(key, status, payload, started, Some((out, batch)));
    };
    let mut cx = Context::from_waker(Waker::noop());
    match std::panic::catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(&mut cx))) {
        Ok(Poll::Pending) => running.push(Pending { key, run }),
        // A call that finished at once finished at the batch's time.
        Ok(Poll::Ready(result)) => {
            let (status, payload) = frames::outcome_of(result);
            core.complete(key, status, payload, started, Some((out, batch)));
        }
        Err(_) => {
            let (status, payload) = panicked();
            core.complete(key, status, payload, started, Some((out, batch)));
        }
    }
}

/// A call its dispatcher answers later through a [`DeferredReply`]: no
/// future, no place in the connection's running set. A panic while it
/// starts drops the reply, which answers the call as panicked.
fn run_deferred<D: ServiceDispatch>(core: &Arc<Core<D>>, incoming: Incoming) {
    let Incoming {
        key,
        deadline,
        payload,
    } = incoming;
    let sink: Arc<dyn ReplySink> = Arc::clone(core) as Arc<dyn ReplySink>;
    let reply = DeferredReply::new(sink, key);
    let cx = CallContext::new(deadline);
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
        core.dispatch
            .dispatch_deferred(key.method, payload, cx, reply);
    }));
}

/// A method marked `#[blocking]`, or a call with large JSON arguments, runs
/// on a worker thread, off the I/O loop.
fn run_blocking<D: ServiceDispatch>(core: &Arc<Core<D>>, incoming: Incoming) {
    let key = incoming.key;
    let task_core = Arc::clone(core);
    let job = Box::pin(async move {
        let started =
            std::panic::catch_unwind(AssertUnwindSafe(|| start_run(&task_core, incoming, false)));
        let (status, payload) = match started {
            Ok(mut run) => finish(&mut run).await,
            Err(_) => panicked(),
        };
        let now = task_core.now();
        task_core.complete(key, status, payload, now, None);
    });
    // No worker thread could start: run it here rather than lose it.
    if let Err(job) = core.workers.run(&tokio::runtime::Handle::current(), job) {
        tokio::spawn(job);
    }
}

type Run<'a> = BoxFuture<'a, Result<bytes::Bytes, DispatchError>>;

/// Hands the call to the service (binary or JSON); nothing has run yet.
/// `on_io_loop`: the run is polled by the I/O loop, which a large JSON
/// reply's conversion must not hold up.
fn start_run<D: ServiceDispatch>(core: &Core<D>, incoming: Incoming, on_io_loop: bool) -> Run<'_> {
    let method = incoming.key.method;
    let cx = CallContext::new(incoming.deadline);
    if incoming.key.json {
        let workers = on_io_loop.then_some(&core.workers);
        json::dispatch_json(&core.dispatch, workers, method, incoming.payload, cx)
    } else {
        core.dispatch.dispatch_with(method, incoming.payload, cx)
    }
}

/// Polls a started call to its end, catching a panic in any poll.
async fn finish(run: &mut Run<'_>) -> (Outcome, bytes::Bytes) {
    let outcome = std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(cx))) {
            Ok(p) => p.map(Some),
            Err(_) => Poll::Ready(None),
        }
    })
    .await;
    outcome.map_or_else(panicked, frames::outcome_of)
}

fn panicked() -> (Outcome, bytes::Bytes) {
    (
        Outcome::Panicked,
        bytes::Bytes::from_static(b"the method panicked"),
    )
}
