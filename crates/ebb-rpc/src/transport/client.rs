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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ebb_core::{ClientId, Nanos, Rng};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::frames;
use super::outbuf::OutBuf;
use super::stream::{self, ReadSide};
use super::tls::ClientTls;
use crate::CallError;
use crate::semantics::{ClientConfig, ClientSession};
use crate::service::{BoxFuture, CallOptions, MethodInfo, Transport};
use crate::wire::{FrameCodec, MAX_PAYLOAD_BYTES};

/// Calls waiting to be handed to the driver; callers wait for room beyond it.
pub const MAX_QUEUED_CALLS: usize = 4096;
/// How long one connection attempt may take before it counts as failed.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// First pause between reconnection attempts; doubles up to the maximum.
pub const RECONNECT_BACKOFF_MS: u64 = 10;
pub const MAX_RECONNECT_BACKOFF_MS: u64 = 1_000;
const READ_CHUNK_BYTES: usize = 64 * 1024;

type Reply = Result<Bytes, CallError>;

/// Configuration of a [`TcpClient`]: the session's timers and bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpClientConfig {
    pub session: ClientConfig,
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
        }
    }
}

struct Call {
    method: &'static MethodInfo,
    args: Bytes,
    timeout: Nanos,
    reply: oneshot::Sender<Reply>,
}

/// A client of one server. Cheap to share (`Arc<TcpClient>`); calls from
/// any number of tasks are multiplexed over one connection.
pub struct TcpClient {
    calls: mpsc::Sender<Call>,
    addr: String,
}

impl TcpClient {
    /// Connects to `addr` now, so that a wrong address is reported here
    /// rather than on the first call. Must run inside a tokio runtime, which
    /// then hosts the client's driver task.
    pub async fn connect(addr: &str) -> Result<TcpClient, CallError> {
        TcpClient::connect_with(addr, TcpClientConfig::default()).await
    }

    pub async fn connect_with(addr: &str, cfg: TcpClientConfig) -> Result<TcpClient, CallError> {
        TcpClient::connect_inner(addr, cfg, None).await
    }

    /// Connects over TLS: the server's certificate must be issued by a CA
    /// `tls` trusts and name the host of `addr`. Reconnects are TLS too.
    pub async fn connect_tls(
        addr: &str,
        tls: ClientTls,
        cfg: TcpClientConfig,
    ) -> Result<TcpClient, CallError> {
        TcpClient::connect_inner(addr, cfg, Some(tls)).await
    }

    async fn connect_inner(
        addr: &str,
        cfg: TcpClientConfig,
        tls: Option<ClientTls>,
    ) -> Result<TcpClient, CallError> {
        let conn = Conn::open(addr, tls.as_ref()).await?;
        let epoch = Instant::now();
        let id = ClientId::random(&mut Rng::seeded(frames::os_random_u64()));
        let mut session = ClientSession::new(id, cfg.session, ebb_core::Instant::EPOCH);
        session.handle_connected(ebb_core::Instant::EPOCH);
        let (tx, rx) = mpsc::channel(MAX_QUEUED_CALLS);
        let driver = Driver {
            addr: addr.to_owned(),
            epoch,
            session,
            conn: Some(conn),
            waiters: HashMap::new(),
            codec: FrameCodec::default(),
            reconnect_at: None,
            backoff: Duration::from_millis(RECONNECT_BACKOFF_MS),
            tls,
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
            if args.len() > MAX_PAYLOAD_BYTES {
                return Err(CallError::BadRequest(format!(
                    "{}.{}: arguments of {} bytes exceed the {MAX_PAYLOAD_BYTES}-byte frame payload limit; nothing was sent",
                    method.service,
                    method.name,
                    args.len()
                )));
            }
            let (tx, rx) = oneshot::channel();
            let call = Call {
                method,
                args,
                timeout: options.timeout,
                reply: tx,
            };
            let gone = || CallError::ConnectionLost(format!("client for {} shut down", self.addr));
            // The session ends every call by its deadline; only the hand-over
            // to a driver that is overwhelmed needs its own bound (and a
            // timer, which the common case does without).
            match self.calls.try_send(call) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(gone()),
                Err(mpsc::error::TrySendError::Full(call)) => {
                    let wait = Duration::from(options.timeout);
                    match tokio::time::timeout(wait, self.calls.send(call)).await {
                        Err(_) => return Err(CallError::DeadlineExceeded(options.timeout)),
                        Ok(Err(_)) => return Err(gone()),
                        Ok(Ok(())) => {}
                    }
                }
            }
            rx.await.unwrap_or_else(|_| Err(gone()))
        })
    }
}

struct Conn {
    read: ReadSide,
    buf: BytesMut,
    out: Arc<OutBuf>,
}

impl Conn {
    async fn open(addr: &str, tls: Option<&ClientTls>) -> Result<Conn, CallError> {
        let cannot = |e: &dyn std::fmt::Display| {
            CallError::ConnectionLost(format!("cannot connect to {addr}: {e}"))
        };
        let connect = TcpStream::connect(addr);
        let stream = tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connect)
            .await
            .map_err(|_| cannot(&format!("no answer within {CONNECT_TIMEOUT_MS} ms")))?
            .map_err(|e| cannot(&e))?;
        let _ = stream.set_nodelay(true);
        let (read, write) = match tls {
            None => stream::tcp(stream),
            Some(tls) => {
                let handshake = tls.connect(addr, stream);
                let limit = Duration::from_millis(CONNECT_TIMEOUT_MS);
                let tls_stream = tokio::time::timeout(limit, handshake)
                    .await
                    .map_err(|_| {
                        cannot(&format!("no TLS handshake within {CONNECT_TIMEOUT_MS} ms"))
                    })?
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
    /// The session's time zero.
    epoch: Instant,
    session: ClientSession,
    conn: Option<Conn>,
    /// Callers waiting, by the session's call id.
    waiters: HashMap<u64, oneshot::Sender<Reply>>,
    codec: FrameCodec,
    /// When to try connecting again, while disconnected with calls waiting.
    reconnect_at: Option<Instant>,
    backoff: Duration,
    /// Set: every connection, reconnects included, is TLS.
    tls: Option<ClientTls>,
}

enum Event {
    Call(Option<Call>),
    Read(std::io::Result<usize>),
    Timer,
    Reconnect,
}

impl Driver {
    fn now(&self) -> ebb_core::Instant {
        ebb_core::Instant::from_epoch(Nanos::from(self.epoch.elapsed()))
    }

    async fn run(mut self, mut calls: mpsc::Receiver<Call>) {
        loop {
            self.pump();
            let timer = self
                .session
                .poll_timeout()
                .map(|t| self.epoch + Duration::from(t.since_epoch()));
            let reconnect = self.reconnect_at;
            let event = match self.conn.as_mut() {
                Some(conn) => {
                    if conn.buf.capacity() - conn.buf.len() < READ_CHUNK_BYTES / 4 {
                        conn.buf.reserve(READ_CHUNK_BYTES);
                    }
                    tokio::select! {
                        c = calls.recv() => Event::Call(c),
                        r = conn.read.read_buf(&mut conn.buf) => Event::Read(r),
                        _ = sleep_until(timer), if timer.is_some() => Event::Timer,
                    }
                }
                None => tokio::select! {
                    c = calls.recv() => Event::Call(c),
                    _ = sleep_until(timer), if timer.is_some() => Event::Timer,
                    _ = sleep_until(reconnect), if reconnect.is_some() => Event::Reconnect,
                },
            };
            match event {
                Event::Call(None) => return,
                Event::Call(Some(call)) => {
                    // One clock read for the batch: the calls arrived together.
                    let now = self.now();
                    self.start(call, now);
                    // Take everything already queued so it leaves in one write.
                    while let Ok(call) = calls.try_recv() {
                        self.start(call, now);
                    }
                }
                Event::Read(Ok(n)) if n > 0 => self.on_bytes(),
                Event::Read(_) => self.disconnect(),
                Event::Timer => {
                    let now = self.now();
                    self.session.handle_timeout(now);
                }
                Event::Reconnect => self.reconnect().await,
            }
        }
    }

    fn start(&mut self, call: Call, now: ebb_core::Instant) {
        let deadline = now + call.timeout;
        match self.session.start_call(
            call.method.id,
            call.method.idempotent,
            call.args,
            deadline,
            now,
        ) {
            Ok(id) => {
                self.waiters.insert(id.0, call.reply);
                if self.conn.is_none() && self.reconnect_at.is_none() {
                    self.reconnect_at = Some(Instant::now());
                }
            }
            Err(e) => {
                let _ = call.reply.send(Err(e));
            }
        }
    }

    fn on_bytes(&mut self) {
        let now = self.now();
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        loop {
            match self.codec.decode(&mut conn.buf) {
                Ok(None) => return,
                Ok(Some(frame)) => self.session.handle_frame(frame, now),
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
        match self.conn.as_ref() {
            Some(conn) => {
                let session = &mut self.session;
                let codec = &self.codec;
                // A closed writer means the reader sees the failure next;
                // the session resends what it must after the reconnect.
                let _ = conn.out.push_with(|b| {
                    while let Some(frame) = session.poll_transmit() {
                        frames::append(codec, &frame, b);
                    }
                });
            }
            None => while self.session.poll_transmit().is_some() {},
        }
        while let Some((id, outcome)) = self.session.poll_event() {
            if let Some(waiter) = self.waiters.remove(&id.0) {
                let outcome = outcome.map_err(|e| match e {
                    CallError::ConnectionLost(m) => {
                        CallError::ConnectionLost(format!("{}: {m}", self.addr))
                    }
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

    fn disconnect(&mut self) {
        let now = self.now();
        self.session.handle_disconnect(now);
        self.conn = None;
        self.schedule_reconnect();
    }

    fn schedule_reconnect(&mut self) {
        if self.reconnect_at.is_none() {
            self.reconnect_at = Some(Instant::now() + self.backoff);
        }
    }

    async fn reconnect(&mut self) {
        self.reconnect_at = None;
        if self.session.outstanding() == 0 {
            // Nobody waits: connect lazily, when the next call starts.
            return;
        }
        match Conn::open(&self.addr, self.tls.as_ref()).await {
            Ok(conn) => {
                self.conn = Some(conn);
                self.backoff = Duration::from_millis(RECONNECT_BACKOFF_MS);
                let now = self.now();
                self.session.handle_connected(now);
            }
            Err(_) => {
                self.backoff =
                    (self.backoff * 2).min(Duration::from_millis(MAX_RECONNECT_BACKOFF_MS));
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
