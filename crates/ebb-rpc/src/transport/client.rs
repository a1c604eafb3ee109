//! The TCP client runtime: drives one [`ClientSession`] (the sans-IO call
//! semantics) over a TCP connection, reconnecting when it breaks.
//!
//! Callers hand calls to one driver task over a bounded channel; the driver
//! owns the session, the connection's read side and the table of waiting
//! callers, so nothing is locked. It feeds the session frames, connection
//! events and timer expiries (`poll_timeout` becomes `sleep_until`), and
//! ships whatever the session wants sent through the coalescing writer.
//! What to resend after a reconnect, when a call has failed and how, and
//! when the server is presumed dead are the session's decisions, not ours.

use crate::fast_map::FastMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ebb_core::{Clock, Nanos};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::clock::RuntimeClock;
use super::frames;
use super::outbuf::OutBuf;
use super::readbuf::{self, READ_CHUNK_BYTES};
use super::stream::{self, ReadSide};
use super::tls::ClientTls;
use super::unacked::SocketQueue;
use crate::CallError;
use crate::semantics::{CallSpec, ClientConfig, ClientSession};
use crate::service::{BoxFuture, CallOptions, MethodInfo, ServiceDescription, Transport};
use crate::wire::{Describe, FrameCodec, MAX_PAYLOAD_BYTES, Message, decode_payload};

/// Calls waiting to be handed to the driver; callers wait for room beyond it.
pub const MAX_QUEUED_CALLS: usize = 4096;
/// Describe requests one client may have outstanding; more wait for room.
pub const MAX_PENDING_DESCRIBES: usize = 16;
/// How long one connection attempt may take before it counts as failed,
/// unless configured otherwise (`TcpClientConfig::connect_timeout_ms`).
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// First pause between reconnection attempts; doubles with every attempt
/// up to the maximum, and starts over only once a connection proves
/// useful (the server answers with a pong, a reply or a description). A
/// connection that opens and is dropped at once (a TLS server refusing a
/// client certificate after the handshake, a full server) counts as a
/// failed attempt, so a cycling link is retried at most once per maximum
/// pause instead of in a tight loop.
pub const RECONNECT_BACKOFF_MS: u64 = 10;
pub const MAX_RECONNECT_BACKOFF_MS: u64 = 1_000;
/// `reported_load`'s cell before any report: a load no server reports.
const NO_LOAD_REPORTED: u64 = u64::MAX;

type Reply = Result<Bytes, CallError>;

/// Configuration of a [`TcpClient`]: the session's timers and bounds, and
/// how long one connection attempt may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpClientConfig {
    pub session: ClientConfig,
    /// Bound on one connection attempt (TCP connect, and the TLS handshake
    /// after it); default [`CONNECT_TIMEOUT_MS`]. Raise it for a server
    /// that is slow to answer on purpose (one run under a profiler).
    pub connect_timeout_ms: u64,
}

impl Default for TcpClientConfig {
    /// The session defaults, except that resends on a live connection start
    /// later: TCP already delivers or breaks, so an early resend on the same
    /// connection would only run a slow idempotent call twice. Resends after
    /// a reconnect are unaffected.
    fn default() -> TcpClientConfig {
        TcpClientConfig {
            session: ClientConfig {
                retransmit_after: Nanos::from_secs(1),
                max_retransmit_interval: Nanos::from_secs(4),
                ..ClientConfig::default()
            },
            connect_timeout_ms: CONNECT_TIMEOUT_MS,
        }
    }
}

/// What a client presents to a server besides its (proven) client id:
/// TLS, with a client certificate for a mutual-TLS server, and a bearer
/// token for a server that requires one.
#[derive(Clone, Default)]
pub struct Credentials {
    pub tls: Option<ClientTls>,
    /// Carried by every handshake; at most `wire::MAX_TOKEN_BYTES`.
    pub token: Option<Bytes>,
}

impl std::fmt::Debug for Credentials {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tls", &self.tls.is_some())
            .field("token", &self.token.is_some())
            .finish()
    }
}

impl Credentials {
    pub fn with_token(mut self, token: Bytes) -> Credentials {
        self.token = Some(token);
        self
    }

    pub fn with_tls(mut self, tls: ClientTls) -> Credentials {
        self.tls = Some(tls);
        self
    }
}

struct Call {
    spec: CallSpec,
    args: Bytes,
    timeout: Nanos,
    reply: oneshot::Sender<Reply>,
}

/// What callers hand the driver.
enum Op {
    Call(Call),
    /// Ask the server for its service description.
    Describe(oneshot::Sender<Reply>),
    /// End every call now: the server is known to be gone.
    Abandon(String),
}

/// A client of one server. Cheap to share (`Arc<TcpClient>`); calls from
/// any number of tasks are multiplexed over one connection.
pub struct TcpClient {
    ops: mpsc::Sender<Op>,
    addr: String,
    /// The server's load as last reported, or `NO_LOAD_REPORTED`.
    load: Arc<AtomicU64>,
    /// The server's own service time as last reported, in nanoseconds;
    /// 0 before any report.
    service_time: Arc<AtomicU64>,
    reconnects: Arc<AtomicU64>,
}

impl TcpClient {
    /// Connects to `addr` now, so that a wrong address is reported here
    /// rather than on the first call. Must run inside a tokio runtime, which
    /// then hosts the client's driver task.
    pub async fn connect(addr: &str) -> Result<TcpClient, CallError> {
        TcpClient::connect_with(addr, TcpClientConfig::default()).await
    }

    pub async fn connect_with(addr: &str, cfg: TcpClientConfig) -> Result<TcpClient, CallError> {
        TcpClient::connect_as(addr, cfg, Credentials::default()).await
    }

    /// Connects over TLS: the server's certificate must be issued by a CA
    /// `tls` trusts and name the host of `addr`. Reconnects are TLS too.
    pub async fn connect_tls(
        addr: &str,
        tls: ClientTls,
        cfg: TcpClientConfig,
    ) -> Result<TcpClient, CallError> {
        TcpClient::connect_as(addr, cfg, Credentials::default().with_tls(tls)).await
    }

    /// Connects presenting `credentials`: over TLS if they hold it, with
    /// their bearer token in every handshake. A server that requires a
    /// token and gets none it accepts refuses every call `Unauthorized`
    /// (did not run).
    pub async fn connect_as(
        addr: &str,
        cfg: TcpClientConfig,
        credentials: Credentials,
    ) -> Result<TcpClient, CallError> {
        let Credentials { tls, token } = credentials;
        let conn = Conn::open(addr, tls.as_ref(), cfg.connect_timeout_ms).await?;
        let clock = RuntimeClock::new();
        let secret = frames::os_random_secret().ok_or_else(|| CallError::ConnectionLost {
            sent: false,
            cause: "the operating system gave no randomness for the client secret".into(),
        })?;
        let now = clock.now();
        let mut session = ClientSession::new(secret, cfg.session, now);
        if let Some(token) = token {
            session.set_token(token);
        }
        session.handle_connected(now);
        let (tx, rx) = mpsc::channel(MAX_QUEUED_CALLS);
        let load = Arc::new(AtomicU64::new(NO_LOAD_REPORTED));
        let service_time = Arc::new(AtomicU64::new(0));
        let reconnects = Arc::new(AtomicU64::new(0));
        let driver = Driver {
            addr: addr.to_owned(),
            clock,
            session,
            conn: Some(conn),
            waiters: FastMap::default(),
            describes: FastMap::default(),
            next_describe: 0,
            load: Arc::clone(&load),
            service_time: Arc::clone(&service_time),
            codec: FrameCodec::default(),
            reconnect_at: None,
            backoff: Duration::from_millis(RECONNECT_BACKOFF_MS),
            proven: false,
            reconnects: Arc::clone(&reconnects),
            tls,
            connect_timeout_ms: cfg.connect_timeout_ms,
        };
        tokio::spawn(driver.run(rx));
        Ok(TcpClient {
            ops: tx,
            addr: addr.to_owned(),
            load,
            service_time,
            reconnects,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Connection attempts made after the first, successful or not: how
    /// often the link broke and was retried.
    pub fn reconnect_attempts(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// The load (calls executing) the server reported in its last reply or
    /// pong on this client's connection; `None` before the first. Pongs
    /// come at least every heartbeat interval, so it is at most that stale
    /// while the connection is up.
    pub fn reported_load(&self) -> Option<u32> {
        u32::try_from(self.load.load(Ordering::Relaxed)).ok()
    }

    /// The service time the server measured itself (busy time per call
    /// completed, averaged), as its last reply carrying one said; `None`
    /// before the first.
    pub fn reported_service_time(&self) -> Option<Nanos> {
        match self.service_time.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Nanos(n)),
        }
    }

    /// Asks the server what it serves: its service name, methods with ids,
    /// which are idempotent, and parameter names and types. Lets a caller
    /// that was not built with the service call it with JSON
    /// ([`TcpClient::call_json`]).
    pub async fn describe(&self, timeout: Nanos) -> Result<ServiceDescription, CallError> {
        let (tx, rx) = oneshot::channel();
        // A describe ends by its timeout even while the link cycles (a TLS
        // peer that accepts the handshake, then drops an unwanted client,
        // looks connected at every attempt and never answers).
        let waited = tokio::time::timeout(
            Duration::from(timeout),
            self.hand_over(Op::Describe(tx), timeout, rx),
        );
        let bytes = waited.await.map_err(|_| CallError::DeadlineExceeded {
            elapsed: timeout,
            sent: false,
        })??;
        decode_payload(&bytes).map_err(|e| {
            CallError::decoding(format!("the service description from {}: {e}", self.addr))
        })
    }

    /// Calls method `method` (an id from [`TcpClient::describe`]) with
    /// arguments as a JSON object keyed by parameter name; the server's JSON
    /// adapter decodes them and the reply comes back as JSON. Same call
    /// semantics as a typed call: `idempotent` must be what the service
    /// declares (the description says).
    pub async fn call_json(
        &self,
        method: u16,
        idempotent: bool,
        args: &serde_json::Value,
        options: CallOptions,
    ) -> Result<serde_json::Value, CallError> {
        let bytes = serde_json::to_vec(args).map_err(CallError::encoding)?;
        let spec = CallSpec {
            method,
            idempotent,
            json: true,
        };
        let reply = self.call_spec(spec, Bytes::from(bytes), options).await?;
        serde_json::from_slice(&reply)
            .map_err(|e| CallError::decoding(format!("the JSON reply of method #{method}: {e}")))
    }

    async fn call_spec(
        &self,
        spec: CallSpec,
        args: Bytes,
        options: CallOptions,
    ) -> Result<Bytes, CallError> {
        if args.len() > MAX_PAYLOAD_BYTES {
            return Err(CallError::BadRequest {
                message: format!(
                    "arguments of {} bytes exceed the {MAX_PAYLOAD_BYTES}-byte frame payload limit; nothing was sent",
                    args.len()
                ),
            });
        }
        let (tx, rx) = oneshot::channel();
        let call = Call {
            spec,
            args,
            timeout: options.timeout,
            reply: tx,
        };
        self.hand_over(Op::Call(call), options.timeout, rx).await
    }

    /// Hands `op` to the driver and waits for its answer on `rx`.
    async fn hand_over(
        &self,
        op: Op,
        timeout: Nanos,
        rx: oneshot::Receiver<Reply>,
    ) -> Result<Bytes, CallError> {
        let gone = |sent| CallError::ConnectionLost {
            sent,
            cause: format!("the client for {} shut down", self.addr),
        };
        // The session ends every call by its deadline; only the hand-over
        // to a driver that is overwhelmed needs its own bound (and a
        // timer, which the common case does without).
        match self.ops.try_send(op) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(gone(false)),
            Err(mpsc::error::TrySendError::Full(op)) => {
                match tokio::time::timeout(Duration::from(timeout), self.ops.send(op)).await {
                    Err(_) => {
                        return Err(CallError::DeadlineExceeded {
                            elapsed: timeout,
                            sent: false,
                        });
                    }
                    Ok(Err(_)) => return Err(gone(false)),
                    Ok(Ok(())) => {}
                }
            }
        }
        rx.await.unwrap_or_else(|_| Err(gone(true)))
    }
}

impl Transport for TcpClient {
    fn call(
        &self,
        method: &'static MethodInfo,
        args: Bytes,
        options: CallOptions,
    ) -> BoxFuture<'_, Result<Bytes, CallError>> {
        let spec = CallSpec {
            method: method.id,
            idempotent: method.idempotent,
            json: false,
        };
        Box::pin(async move {
            self.call_spec(spec, args, options)
                .await
                .map_err(|e| match e {
                    CallError::BadRequest { message } if message.contains("nothing was sent") => {
                        CallError::BadRequest {
                            message: format!("{}.{}: {message}", method.service, method.name),
                        }
                    }
                    other => other,
                })
        })
    }

    /// Ends every call of this client now with `ConnectionLost`, saying
    /// whether each was ever sent (the session's account). For a caller
    /// that learned the server is gone; a full queue of hand-overs leaves
    /// the calls to end by their deadlines, as they would anyway.
    fn abandon_calls(&self, cause: &str) {
        let _ = self.ops.try_send(Op::Abandon(cause.to_owned()));
    }

    fn call_json_text(
        &self,
        method: &'static MethodInfo,
        args: Bytes,
        options: CallOptions,
    ) -> BoxFuture<'_, Result<Bytes, CallError>> {
        let spec = CallSpec {
            method: method.id,
            idempotent: method.idempotent,
            json: true,
        };
        Box::pin(self.call_spec(spec, args, options))
    }

    fn reported_load(&self) -> Option<u32> {
        TcpClient::reported_load(self)
    }

    fn reported_service_time(&self) -> Option<Nanos> {
        TcpClient::reported_service_time(self)
    }
}

struct Conn {
    read: ReadSide,
    buf: BytesMut,
    out: Arc<OutBuf>,
    /// Bytes of frames pushed beside the session's (Describe requests),
    /// left out of what the session is told was written.
    own_bytes: u64,
    /// The socket's queue of bytes the server has not acknowledged.
    queue: SocketQueue,
}

impl Conn {
    /// Bytes of the session's messages the server has received: written,
    /// less what the socket still holds unacknowledged and what was not
    /// the session's.
    fn delivered(&self) -> u64 {
        self.out
            .written()
            .saturating_sub(self.queue.unacknowledged())
            .saturating_sub(self.own_bytes)
    }
}

impl Conn {
    async fn open(addr: &str, tls: Option<&ClientTls>, timeout_ms: u64) -> Result<Conn, CallError> {
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
        Ok(Conn {
            read,
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            out,
            own_bytes: 0,
            queue,
        })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.out.close();
    }
}

struct Driver {
    addr: String,
    clock: RuntimeClock,
    session: ClientSession,
    conn: Option<Conn>,
    /// Callers waiting, by the session's call id.
    waiters: FastMap<u64, oneshot::Sender<Reply>>,
    /// Describe requests waiting for their answer, by id; resent after a
    /// reconnect (asking again is harmless).
    describes: FastMap<u64, oneshot::Sender<Reply>>,
    next_describe: u64,
    load: Arc<AtomicU64>,
    service_time: Arc<AtomicU64>,
    codec: FrameCodec,
    /// When to try connecting again, while disconnected with calls waiting.
    reconnect_at: Option<Instant>,
    backoff: Duration,
    /// The current connection has been answered by the server: the next
    /// break starts the backoff over.
    proven: bool,
    /// Connection attempts after the first, successful or not.
    reconnects: Arc<AtomicU64>,
    /// Set: every connection, reconnects included, is TLS.
    tls: Option<ClientTls>,
    connect_timeout_ms: u64,
}

enum Event {
    Op(Option<Op>),
    Read(std::io::Result<usize>),
    Timer,
    Reconnect,
}

impl Driver {
    fn now(&self) -> ebb_core::Instant {
        self.clock.now()
    }

    async fn run(mut self, mut ops: mpsc::Receiver<Op>) {
        // One timer for the session's deadlines, moved when they move: a
        // new `Sleep` per turn of the loop registers and deregisters a
        // timer entry for every event, while moving an armed one to a
        // later instant (the usual case) is a single atomic store.
        let session_timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(session_timer);
        let mut armed: Option<Instant> = None;
        // The last turn read what had arrived before acting on a due timer.
        let mut looked = false;
        loop {
            self.pump();
            let timer = self.session.poll_timeout().map(|t| self.clock.to_tokio(t));
            if let Some(at) = timer
                && armed != timer
            {
                session_timer.as_mut().reset(at);
                armed = timer;
            }
            let reconnect = self.reconnect_at;
            let event = match self.conn.as_mut() {
                Some(conn) => {
                    let len = conn.buf.len();
                    if conn.buf.capacity() - len < READ_CHUNK_BYTES / 4 {
                        // Asking for no more than the chunk in all lets
                        // a buffer nothing points into any more be reused
                        // (the partial frame moves to its front).
                        conn.buf.reserve(
                            (READ_CHUNK_BYTES.saturating_sub(len)).max(READ_CHUNK_BYTES / 4),
                        );
                    }
                    tokio::select! {
                        c = ops.recv() => Event::Op(c),
                        r = conn.read.read_buf(&mut conn.buf) => Event::Read(r),
                        () = &mut session_timer, if timer.is_some() => Event::Timer,
                    }
                }
                None => tokio::select! {
                    c = ops.recv() => Event::Op(c),
                    () = &mut session_timer, if timer.is_some() => Event::Timer,
                    _ = sleep_until(reconnect), if reconnect.is_some() => Event::Reconnect,
                },
            };
            match event {
                Event::Op(None) => return,
                Event::Op(Some(op)) => {
                    // One clock read for the batch: the calls arrived together.
                    let now = self.now();
                    self.start(op, now);
                    // Take everything already queued so it leaves in one write.
                    while let Ok(op) = ops.try_recv() {
                        self.start(op, now);
                    }
                }
                Event::Read(Ok(n)) if n > 0 => self.on_bytes(),
                Event::Read(_) => self.disconnect(),
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
                    let now = self.now();
                    if let Some(conn) = self.conn.as_ref() {
                        self.session.handle_written(conn.delivered(), now);
                    }
                    self.session.handle_timeout(now);
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
        readbuf::make_room(&mut conn.buf);
        match conn.read.read_buf(&mut conn.buf).now_or_never() {
            None => false,
            Some(Ok(n)) if n > 0 => {
                self.on_bytes();
                true
            }
            Some(_) => {
                self.disconnect();
                true
            }
        }
    }

    fn start(&mut self, op: Op, now: ebb_core::Instant) {
        match op {
            Op::Call(call) => {
                let deadline = now + call.timeout;
                match self.session.start(call.spec, call.args, deadline, now) {
                    Ok(id) => {
                        self.waiters.insert(id.0, call.reply);
                    }
                    Err(e) => {
                        let _ = call.reply.send(Err(e));
                        return;
                    }
                }
            }
            Op::Abandon(cause) => {
                self.session.abandon_all(&cause);
                return;
            }
            Op::Describe(reply) => {
                if self.describes.len() >= MAX_PENDING_DESCRIBES {
                    let _ = reply.send(Err(CallError::TooManyOutstanding {
                        limit: MAX_PENDING_DESCRIBES,
                    }));
                    return;
                }
                self.next_describe += 1;
                let id = self.next_describe;
                self.describes.insert(id, reply);
                self.send_describe(id);
            }
        }
        if self.conn.is_none() && self.reconnect_at.is_none() {
            self.reconnect_at = Some(Instant::now());
        }
    }

    fn send_describe(&mut self, id: u64) {
        if let Some(conn) = self.conn.as_mut() {
            let codec = &self.codec;
            let describe = Message::Describe(Describe { id });
            let _ = conn.out.push_with(|b| frames::append(codec, &describe, b));
            conn.own_bytes += describe.encoded_len() as u64;
        }
    }

    fn on_bytes(&mut self) {
        let now = self.now();
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        loop {
            match self.codec.decode(&mut conn.buf) {
                Ok(None) => {
                    if !conn.buf.is_empty() {
                        // Part of a large frame: the server is sending.
                        self.session.handle_progress(now);
                    }
                    return;
                }
                Ok(Some(Message::Description(d))) => {
                    self.proven = true;
                    if let Some(waiter) = self.describes.remove(&d.id) {
                        let _ = waiter.send(Ok(d.payload));
                    }
                }
                Ok(Some(mut message)) => {
                    readbuf::detach(&mut message);
                    if !matches!(message, Message::ConnError(_)) {
                        self.proven = true;
                    }
                    self.session.handle_message(message, now);
                }
                Err(_) => {
                    // The stream cannot be trusted past a bad frame.
                    self.disconnect();
                    return;
                }
            }
        }
    }

    /// Moves the session's output to the socket and its outcomes to the
    /// callers, and acts on a request to drop the connection.
    fn pump(&mut self) {
        self.transmit();
        if !self.describes.is_empty()
            && let Some(why) = self.session.refused_credentials()
        {
            // The server answers no Describe without accepted credentials;
            // its refusal of the handshake is the answer.
            let refused = CallError::Refused {
                reason: crate::wire::Refusal::Unauthorized,
                message: why.to_owned(),
            };
            for (_, waiter) in self.describes.drain() {
                let _ = waiter.send(Err(refused.clone()));
            }
        }
        if let Some(load) = self.session.reported_load() {
            self.load.store(u64::from(load), Ordering::Relaxed);
        }
        if let Some(s) = self.session.reported_service_time() {
            self.service_time.store(s.as_nanos(), Ordering::Relaxed);
        }
        while let Some((id, outcome)) = self.session.poll_event() {
            if let Some(waiter) = self.waiters.remove(&id.0) {
                let outcome = outcome.map_err(|e| match e {
                    CallError::ConnectionLost { sent, cause } => CallError::ConnectionLost {
                        sent,
                        cause: format!("{}: {cause}", self.addr),
                    },
                    other => other,
                });
                let _ = waiter.send(outcome);
            }
        }
        if self.session.poll_close() {
            self.conn = None;
            self.schedule_reconnect();
        }
    }

    /// Moves the session's messages to the connection's writer.
    fn transmit(&mut self) {
        match self.conn.as_ref() {
            Some(conn) => {
                let session = &mut self.session;
                let codec = &self.codec;
                // A closed writer means the reader sees the failure next;
                // the session resends what it must after the reconnect.
                let _ = conn.out.push_with(|b| {
                    session.drain_transmit(|message| frames::append(codec, message, b));
                });
            }
            None => self.session.drain_transmit(|_| {}),
        }
    }

    fn disconnect(&mut self) {
        let now = self.now();
        self.session.handle_disconnect(now);
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
        if self.session.outstanding() == 0 && self.describes.is_empty() {
            // Nobody waits: connect lazily, when the next call starts.
            return;
        }
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        // Doubled whether or not the attempt connects: only an answer from
        // the server (`proven`) starts the backoff over.
        self.backoff = (self.backoff * 2).min(Duration::from_millis(MAX_RECONNECT_BACKOFF_MS));
        match Conn::open(&self.addr, self.tls.as_ref(), self.connect_timeout_ms).await {
            Ok(conn) => {
                self.conn = Some(conn);
                let now = self.now();
                self.session.handle_connected(now);
                // The handshake first: a server that requires credentials
                // answers a Describe only after they were accepted.
                self.transmit();
                let ids: Vec<u64> = self.describes.keys().copied().collect();
                for id in ids {
                    self.send_describe(id);
                }
            }
            Err(e) => {
                // Describes have no deadline of their own (their callers
                // time out), but must not wait for a server that is gone.
                for (_, waiter) in self.describes.drain() {
                    let _ = waiter.send(Err(e.clone()));
                }
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
