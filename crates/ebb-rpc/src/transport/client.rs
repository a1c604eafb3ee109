//! The TCP client runtime: many concurrent calls multiplexed over one
//! connection, replies matched by call id in any order, reconnection.
//!
//! Callers hand calls to one driver task over a bounded channel; the driver
//! owns the connection's read side and the table of outstanding calls, so
//! the table needs no lock. Frames go out through a coalescing writer task.
//!
//! On connection loss an idempotent call is re-sent on the next connection
//! (at-least-once); an at-most-once call ends with `ConnectionLost`, because
//! it may or may not have run and re-sending could run it twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ebb_core::{ClientId, Nanos, Rng};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::frames;
use super::outbuf::OutBuf;
use crate::CallError;
use crate::service::{BoxFuture, CallOptions, MethodInfo, Transport};
use crate::wire::{FrameCodec, FrameKind};

/// Calls waiting to be handed to the driver; callers wait for room beyond it.
pub const MAX_QUEUED_CALLS: usize = 4096;
/// Connection attempts after a loss before outstanding calls are failed.
pub const RECONNECT_ATTEMPTS: u32 = 4;
/// First pause between reconnection attempts; doubles after each.
pub const RECONNECT_BACKOFF_MS: u64 = 10;
/// How often the driver forgets calls whose caller has given up and checks
/// the connection's liveness.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// With calls outstanding and nothing heard for this long, ping the server.
pub const PING_AFTER_SILENCE_MS: u64 = 300;
/// With calls outstanding and nothing heard for this long (pings included),
/// the server is presumed dead or partitioned and the connection replaced.
pub const DEAD_AFTER_SILENCE_MS: u64 = 2_000;
const READ_CHUNK_BYTES: usize = 64 * 1024;

type Reply = Result<Bytes, CallError>;

struct Call {
    method: &'static MethodInfo,
    args: Bytes,
    deadline: Instant,
    /// When it was last written to a connection.
    sent_at: Instant,
    reply: oneshot::Sender<Reply>,
}

/// A connection to one server. Cheap to share (`Arc<TcpClient>`); every
/// call is independent.
pub struct TcpClient {
    calls: mpsc::Sender<Call>,
    addr: String,
}

impl TcpClient {
    /// Connects to `addr` now, so that a wrong address is reported here
    /// rather than on the first call. Must run inside a tokio runtime.
    pub async fn connect(addr: &str) -> Result<TcpClient, CallError> {
        let conn = Conn::open(addr).await?;
        let (tx, rx) = mpsc::channel(MAX_QUEUED_CALLS);
        let driver = Driver {
            addr: addr.to_owned(),
            conn: Some(conn),
            pending: BTreeMap::new(),
            next_call: 0,
            client: ClientId::random(&mut Rng::seeded(frames::os_random_u64())),
            incarnation: 0,
            codec: FrameCodec::default(),
        };
        tokio::spawn(driver.run(rx));
        Ok(TcpClient {
            calls: tx,
            addr: addr.to_owned(),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Transport for TcpClient {
    fn call(
        &self,
        method: &'static MethodInfo,
        args: Bytes,
        options: CallOptions,
    ) -> BoxFuture<'_, Result<Bytes, CallError>> {
        Box::pin(async move {
            let timeout = Duration::from(options.timeout);
            let deadline = Instant::now() + timeout;
            let (tx, rx) = oneshot::channel();
            let call = Call {
                method,
                args,
                deadline,
                sent_at: Instant::now(),
                reply: tx,
            };
            let lost = || CallError::ConnectionLost(format!("client for {} shut down", self.addr));
            match tokio::time::timeout_at(deadline, self.calls.send(call)).await {
                Err(_) => return Err(CallError::DeadlineExceeded(options.timeout)),
                Ok(Err(_)) => return Err(lost()),
                Ok(Ok(())) => {}
            }
            match tokio::time::timeout_at(deadline, rx).await {
                Err(_) => Err(CallError::DeadlineExceeded(options.timeout)),
                Ok(Err(_)) => Err(lost()),
                Ok(Ok(reply)) => reply,
            }
        })
    }
}

struct Conn {
    read: OwnedReadHalf,
    /// When bytes last arrived: a call that expires with nothing heard
    /// since it was sent suggests the connection is dead, not slow.
    last_rx: Instant,
    last_ping: Instant,
    buf: BytesMut,
    out: Arc<OutBuf>,
}

impl Conn {
    async fn open(addr: &str) -> Result<Conn, CallError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| CallError::ConnectionLost(format!("cannot connect to {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let out = Arc::new(OutBuf::default());
        let writer = Arc::clone(&out);
        tokio::spawn(async move { writer.drain_into(write).await });
        Ok(Conn {
            read,
            last_rx: Instant::now(),
            last_ping: Instant::now(),
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            out,
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
    conn: Option<Conn>,
    /// Outstanding calls by sequence number; ordered so the lowest one still
    /// awaited (the `ack_below` sent to the server) is the first key.
    pending: BTreeMap<u64, Call>,
    next_call: u64,
    client: ClientId,
    /// The server incarnation last heard from (0: none yet).
    incarnation: u64,
    codec: FrameCodec,
}

enum Event {
    Call(Option<Call>),
    Read(std::io::Result<usize>),
    Sweep,
}

impl Driver {
    async fn run(mut self, mut calls: mpsc::Receiver<Call>) {
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            let event = match self.conn.as_mut() {
                Some(conn) => {
                    if conn.buf.capacity() - conn.buf.len() < READ_CHUNK_BYTES / 4 {
                        conn.buf.reserve(READ_CHUNK_BYTES);
                    }
                    tokio::select! {
                        c = calls.recv() => Event::Call(c),
                        r = conn.read.read_buf(&mut conn.buf) => Event::Read(r),
                        _ = sweep.tick() => Event::Sweep,
                    }
                }
                None => tokio::select! {
                    c = calls.recv() => Event::Call(c),
                    _ = sweep.tick() => Event::Sweep,
                },
            };
            match event {
                Event::Call(None) => return,
                Event::Call(Some(call)) => {
                    self.start(call).await;
                    // Take everything already queued so it leaves in one write.
                    while let Ok(call) = calls.try_recv() {
                        self.start(call).await;
                    }
                }
                Event::Read(Ok(n)) if n > 0 => self.on_bytes(),
                Event::Read(_) => {
                    let e = CallError::ConnectionLost(format!(
                        "{}: the connection closed while the call was outstanding",
                        self.addr
                    ));
                    self.on_lost(e).await
                }
                Event::Sweep => {
                    let silent_expiry = self.sweep();
                    if let Some(silence) = self.heartbeat() {
                        self.on_lost(CallError::ServerUnresponsive(silence)).await;
                    } else if silent_expiry {
                        let e = CallError::ConnectionLost(format!(
                            "{}: nothing heard since an expired call was sent",
                            self.addr
                        ));
                        self.on_lost(e).await;
                    }
                }
            }
        }
    }

    async fn start(&mut self, mut call: Call) {
        if self.conn.is_none() {
            self.reconnect().await;
        }
        let id = self.next_call;
        self.next_call = self.next_call.wrapping_add(1);
        let Some(conn) = self.conn.as_ref() else {
            let _ = call.reply.send(Err(CallError::ConnectionLost(format!(
                "cannot reach {}",
                self.addr
            ))));
            return;
        };
        call.sent_at = Instant::now();
        self.pending.insert(id, call);
        let Some(call) = self.pending.get(&id) else {
            return;
        };
        if self.send(conn, id, call).is_err() {
            let Some(call) = self.pending.remove(&id) else {
                return;
            };
            let _ = call
                .reply
                .send(Err(CallError::Rejected("client output buffer full".into())));
        }
    }

    fn on_bytes(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        conn.last_rx = Instant::now();
        loop {
            let frame = match self.codec.decode(&mut conn.buf) {
                Ok(None) => return,
                Ok(Some(f)) => f,
                Err(e) => {
                    let e = CallError::Remote(format!("{} sent a malformed frame: {e}", self.addr));
                    self.fail_all(&e);
                    self.conn = None;
                    return;
                }
            };
            match frame.kind {
                FrameKind::Pong => self.incarnation = frame.incarnation,
                FrameKind::Reply if frame.seq == frames::NO_CALL => {
                    // The server closed the connection on a protocol error.
                    let e = CallError::BadRequest(frame.message());
                    self.fail_all(&e);
                    self.conn = None;
                    return;
                }
                FrameKind::Reply => {
                    let known = self.incarnation;
                    self.incarnation = frame.incarnation;
                    if let Some(c) = self.pending.remove(&frame.seq) {
                        let _ = c.reply.send(frames::outcome(frame, known));
                    }
                }
                FrameKind::Request | FrameKind::Ping => {
                    let e = CallError::Remote(format!("{} sent a client's frame", self.addr));
                    self.fail_all(&e);
                    self.conn = None;
                    return;
                }
            }
        }
    }

    /// After a loss: at-most-once calls end with `ConnectionLost`; idempotent
    /// ones are re-sent on a new connection if one can be made in time.
    async fn on_lost(&mut self, lost: CallError) {
        self.conn = None;
        let (keep, fail): (BTreeMap<u64, Call>, BTreeMap<u64, Call>) =
            std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|(_, c)| c.method.idempotent);
        self.pending = keep;
        for c in fail.into_values() {
            let _ = c.reply.send(Err(lost.clone()));
        }
        if self.pending.is_empty() {
            return;
        }
        self.reconnect().await;
        match self.conn.as_ref() {
            Some(conn) => {
                let now = Instant::now();
                for c in self.pending.values_mut() {
                    c.sent_at = now;
                }
                for (id, c) in &self.pending {
                    let _ = self.send(conn, *id, c);
                }
            }
            None => self.fail_all(&lost),
        }
    }

    async fn reconnect(&mut self) {
        let mut pause = Duration::from_millis(RECONNECT_BACKOFF_MS);
        for attempt in 0..RECONNECT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            if let Ok(conn) = Conn::open(&self.addr).await {
                self.conn = Some(conn);
                return;
            }
        }
    }

    fn fail_all(&mut self, e: &CallError) {
        for c in std::mem::take(&mut self.pending).into_values() {
            let _ = c.reply.send(Err(e.clone()));
        }
    }

    /// Pings a quiet server while calls are outstanding; returns the silence
    /// if it has lasted long enough to presume the server dead. Silence is
    /// counted from the later of the last bytes heard and the oldest
    /// outstanding send, so an idle period before a call does not count.
    fn heartbeat(&mut self) -> Option<Nanos> {
        let conn = self.conn.as_mut()?;
        let oldest_send = self.pending.values().map(|c| c.sent_at).min()?;
        let now = Instant::now();
        let silence = now.saturating_duration_since(conn.last_rx.max(oldest_send));
        if silence >= Duration::from_millis(DEAD_AFTER_SILENCE_MS) {
            return Some(Nanos::from(silence));
        }
        let since_ping = now.saturating_duration_since(conn.last_ping);
        let quiet = Duration::from_millis(PING_AFTER_SILENCE_MS);
        if silence >= quiet && since_ping >= quiet {
            conn.last_ping = now;
            let ping = frames::ping(self.client, self.next_call, self.incarnation);
            let _ = conn
                .out
                .push_with(|b| frames::append(&self.codec, &ping, b));
        }
        None
    }

    /// Forgets calls whose caller stopped waiting (deadline passed or the
    /// future was dropped), so the table stays bounded by live calls.
    /// Returns whether a call expired with the connection silent since the
    /// call was sent: then the connection is presumed dead (a black hole or
    /// a partition) and is replaced rather than left to swallow later calls.
    fn sweep(&mut self) -> bool {
        let now = Instant::now();
        let last_rx = self.conn.as_ref().map(|c| c.last_rx);
        let mut silent = false;
        self.pending.retain(|_, c| {
            let expired = c.deadline <= now;
            if expired && last_rx.is_some_and(|rx| rx <= c.sent_at) {
                silent = true;
            }
            !c.reply.is_closed() && !expired
        });
        silent
    }
}

impl Driver {
    fn send(&self, conn: &Conn, id: u64, call: &Call) -> Result<(), super::outbuf::PushError> {
        let left = call.deadline.saturating_duration_since(Instant::now());
        let ack_below = self.pending.keys().next().copied().unwrap_or(id);
        let frame = frames::request(
            self.client,
            id,
            ack_below,
            self.incarnation,
            Nanos::from(left),
            call.method.id,
            call.method.idempotent,
            call.args.clone(),
        );
        conn.out
            .push_with(|b| frames::append(&self.codec, &frame, b))
    }
}
