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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::frame::{self, Frame};
use super::outbuf::OutBuf;
use crate::CallError;
use crate::service::{BoxFuture, CallOptions, MethodInfo, Transport};

/// Calls waiting to be handed to the driver; callers wait for room beyond it.
pub const MAX_QUEUED_CALLS: usize = 4096;
/// Connection attempts after a loss before outstanding calls are failed.
pub const RECONNECT_ATTEMPTS: u32 = 4;
/// First pause between reconnection attempts; doubles after each.
pub const RECONNECT_BACKOFF_MS: u64 = 10;
/// How often the driver forgets calls whose caller has given up.
const SWEEP_INTERVAL: Duration = Duration::from_millis(200);
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
            pending: HashMap::new(),
            next_call: 0,
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
    pending: HashMap<u64, Call>,
    next_call: u64,
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
                Event::Read(_) => self.on_lost("the server closed the connection").await,
                Event::Sweep => {
                    if self.sweep() {
                        self.on_lost(
                            "nothing heard from the server since an expired call was sent",
                        )
                        .await;
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
        if send(conn, id, &call).is_err() {
            let _ = call
                .reply
                .send(Err(CallError::Rejected("client output buffer full".into())));
            return;
        }
        self.pending.insert(id, call);
    }

    fn on_bytes(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        conn.last_rx = Instant::now();
        loop {
            match frame::decode(&mut conn.buf) {
                Ok(None) => return,
                Ok(Some(Frame::Reply { call, body })) => {
                    if let Some(c) = self.pending.remove(&call) {
                        let _ = c.reply.send(Ok(body));
                    }
                }
                Ok(Some(Frame::Error { call, error })) => match self.pending.remove(&call) {
                    Some(c) => {
                        let _ = c.reply.send(Err(error));
                    }
                    // An error for no particular call is about the connection.
                    None => {
                        self.fail_all(&error);
                        self.conn = None;
                        return;
                    }
                },
                Ok(Some(Frame::Request { .. })) | Err(_) => {
                    let e = CallError::Remote(format!("{} sent a malformed frame", self.addr));
                    self.fail_all(&e);
                    self.conn = None;
                    return;
                }
            }
        }
    }

    /// After a loss: at-most-once calls end with `ConnectionLost`; idempotent
    /// ones are re-sent on a new connection if one can be made in time.
    async fn on_lost(&mut self, why: &str) {
        self.conn = None;
        let lost = CallError::ConnectionLost(format!("{}: {why}", self.addr));
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            if let Some(c) = self.pending.remove(&id) {
                if c.method.idempotent {
                    self.pending.insert(id, c);
                } else {
                    let _ = c.reply.send(Err(lost.clone()));
                }
            }
        }
        if self.pending.is_empty() {
            return;
        }
        self.reconnect().await;
        match self.conn.as_ref() {
            Some(conn) => {
                let now = Instant::now();
                for (id, c) in &mut self.pending {
                    c.sent_at = now;
                    let _ = send(conn, *id, c);
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
        for (_, c) in self.pending.drain() {
            let _ = c.reply.send(Err(e.clone()));
        }
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

fn send(conn: &Conn, id: u64, call: &Call) -> Result<(), super::outbuf::PushError> {
    let left = call.deadline.saturating_duration_since(Instant::now());
    let deadline_ms = u32::try_from(left.as_millis()).unwrap_or(u32::MAX);
    conn.out.push_with(|b| {
        frame::encode_request(b, id, call.method.id, deadline_ms, &call.args);
    })
}
