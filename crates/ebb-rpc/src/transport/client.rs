//! The TCP client runtime: drives one [`ClientSession`] (the sans-IO call
//! semantics) over a TCP connection, reconnecting when it breaks.
//!
//! A caller starts its call and writes the request itself, under the
//! connection's lock; one driver task per client reads the replies, runs
//! the session's timers and reconnects (`link.rs`). What to resend after a
//! reconnect, when a call has failed and how, and when the server is
//! presumed dead are the session's decisions, not ours.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use ebb_core::{Clock, Nanos};
use tokio::sync::oneshot;

use super::clock::RuntimeClock;
use super::frames;
use super::tls::ClientTls;
use crate::CallError;
use crate::semantics::{CallSpec, ClientConfig, ClientSession};
use crate::service::{
    BoxFuture, CallOptions, CallSink, MethodInfo, ServiceDescription, Transport, WriteBatch,
};
use crate::wire::{MAX_PAYLOAD_BYTES, decode_payload};

mod answer;
mod conn;
mod driver;
mod link;
mod readbuf;
mod state;

use conn::Dial;
use link::{Link, Reply};

/// Describe requests one client may have outstanding; more end at once
/// with `TooManyOutstanding`.
pub const MAX_PENDING_DESCRIBES: usize = 16;
/// Resize requests one client may have outstanding; more end at once with
/// `TooManyOutstanding`. A caller resizes one server now and then; one
/// whose caller gave up waiting (its timeout) no longer counts.
pub const MAX_PENDING_RESIZES: usize = 4;
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

/// A client of one server. Cheap to share (`Arc<TcpClient>`); calls from
/// any number of tasks are multiplexed over one connection.
pub struct TcpClient {
    link: Arc<Link>,
}

impl Drop for TcpClient {
    fn drop(&mut self) {
        self.link.close();
    }
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
        let clock = RuntimeClock::new();
        let secret = frames::os_random_secret().ok_or_else(|| CallError::ConnectionLost {
            sent: false,
            cause: "the operating system gave no randomness for the client secret".into(),
        })?;
        let mut session = ClientSession::new(secret, cfg.session, clock.now());
        if let Some(token) = token {
            session.set_token(token);
        }
        let dial = Dial {
            tls,
            connect_timeout_ms: cfg.connect_timeout_ms,
        };
        let link = link::connect(addr, session, clock, dial).await?;
        Ok(TcpClient { link })
    }

    pub fn addr(&self) -> &str {
        &self.link.addr
    }

    /// Connection attempts made after the first, successful or not: how
    /// often the link broke and was retried.
    pub fn reconnect_attempts(&self) -> u64 {
        self.link.reconnects.load(Ordering::Relaxed)
    }

    /// The load (calls executing) the server reported in its last reply or
    /// pong on this client's connection; `None` before the first. Pongs
    /// come at least every heartbeat interval, so it is at most that stale
    /// while the connection is up.
    pub fn reported_load(&self) -> Option<u32> {
        self.link.reported_load()
    }

    /// The service time the server measured itself (busy time per call
    /// completed, averaged), as its last reply carrying one said; `None`
    /// before the first.
    pub fn reported_service_time(&self) -> Option<Nanos> {
        self.link.reported_service_time()
    }

    /// Holds the requests of the calls started from now on in the
    /// connection's buffer, until [`TcpClient::release_writes`] writes
    /// them together: a caller that starts a batch of calls at one instant
    /// (a load generator's tick) pays one write for the batch instead of
    /// one per call. Meant to span no await of the caller's: the client's
    /// own reader may write held requests sooner, never later.
    pub fn hold_writes(&self) {
        self.link.hold_writes(true);
    }

    /// Writes to the current connection's socket so far (0 while there
    /// is none): what tests count batching by.
    #[cfg(test)]
    pub(crate) fn writes(&self) -> u64 {
        let st = self.link.lock();
        st.conn.as_ref().map_or(0, |c| c.out.writes())
    }

    /// Writes the requests held since [`TcpClient::hold_writes`] and
    /// writes each further request as its call starts again.
    pub fn release_writes(&self) {
        self.link.hold_writes(false);
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
        let waited = tokio::time::timeout(Duration::from(timeout), async {
            self.link.describe(tx);
            self.answer(rx).await
        });
        let bytes = waited.await.map_err(|_| CallError::DeadlineExceeded {
            elapsed: timeout,
            sent: false,
        })??;
        decode_payload(&bytes).map_err(|e| {
            CallError::decoding(format!(
                "the service description from {}: {e}",
                self.link.addr
            ))
        })
    }

    /// Asks the server to run at most `capacity` blocking calls at once
    /// from now on (scale up or down in place) and returns the capacity it
    /// applied, or `None` when the server does not resize. Sent only on a
    /// live connection and never resent: a connection lost before the
    /// answer ends it `ConnectionLost` (a server that predates `Resize`
    /// closes the connection on it), and a server that does not accept the
    /// connection's credentials leaves it unanswered, so it ends by
    /// `timeout`. Send it before calls, or to a server that answered one:
    /// a lost connection costs the calls on it.
    pub async fn resize(
        &self,
        capacity: std::num::NonZeroU32,
        timeout: Nanos,
    ) -> Result<Option<std::num::NonZeroU32>, CallError> {
        let (tx, rx) = oneshot::channel();
        let waited = tokio::time::timeout(Duration::from(timeout), async {
            self.link.resize(capacity, tx);
            rx.await.unwrap_or_else(|_| Err(self.link.shut_down(true)))
        });
        waited.await.map_err(|_| CallError::DeadlineExceeded {
            elapsed: timeout,
            sent: true,
        })?
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

    /// [`TcpClient::call_json`] started in place, with the arguments
    /// already serialized as a JSON object: the reply (JSON) is handed to
    /// `sink` with `token` by the client's reader, with no future and no
    /// task per call, as [`Transport::start_call`] does for a typed call.
    /// Gives the arguments back, sending nothing, when they exceed the
    /// frame's payload limit.
    pub fn start_call_json(
        &self,
        method: u16,
        idempotent: bool,
        args: Bytes,
        options: CallOptions,
        sink: &Arc<dyn CallSink>,
        token: u64,
    ) -> Result<(), Bytes> {
        let spec = CallSpec {
            method,
            idempotent,
            json: true,
        };
        self.start_spec(spec, args, options, sink, token, None)
    }

    /// Starts a call whose outcome goes to `sink`, its request appended to
    /// `writes` when given, else written at once; gives the arguments back
    /// unsent when they exceed the frame's payload limit.
    fn start_spec(
        &self,
        spec: CallSpec,
        args: Bytes,
        options: CallOptions,
        sink: &Arc<dyn CallSink>,
        token: u64,
        writes: Option<&mut WriteBatch>,
    ) -> Result<(), Bytes> {
        if args.len() > MAX_PAYLOAD_BYTES {
            return Err(args);
        }
        let sink = Arc::clone(sink);
        self.link
            .start_with_sink(spec, args, options.timeout, sink, token, writes);
        Ok(())
    }

    /// A typed (postcard) call of `method` started with [`Self::start_spec`].
    fn start_sunk(
        &self,
        method: &'static MethodInfo,
        args: Bytes,
        options: CallOptions,
        sink: &Arc<dyn CallSink>,
        token: u64,
        writes: Option<&mut WriteBatch>,
    ) -> Result<(), Bytes> {
        let spec = CallSpec {
            method: method.id,
            idempotent: method.idempotent,
            json: false,
        };
        self.start_spec(spec, args, options, sink, token, writes)
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
        self.link.call(spec, args, options.timeout).await
    }

    /// The answer the link gives on `rx`; none means the driver ended with
    /// the call outstanding.
    async fn answer(&self, rx: oneshot::Receiver<Reply>) -> Result<Bytes, CallError> {
        rx.await.unwrap_or_else(|_| Err(self.link.shut_down(true)))
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

    /// The reply is handed to `sink` by the client's reader: no future,
    /// no task woken for it.
    fn start_call(
        &self,
        method: &'static MethodInfo,
        args: Bytes,
        options: CallOptions,
        sink: &Arc<dyn CallSink>,
        token: u64,
    ) -> Result<(), Bytes> {
        self.start_sunk(method, args, options, sink, token, None)
    }

    /// [`Transport::start_call`], the request appended to the connection's
    /// output in `writes` rather than written at once.
    fn start_call_in(
        &self,
        method: &'static MethodInfo,
        args: Bytes,
        options: CallOptions,
        sink: &Arc<dyn CallSink>,
        token: u64,
        writes: &mut WriteBatch,
    ) -> Result<(), Bytes> {
        self.start_sunk(method, args, options, sink, token, Some(writes))
    }

    /// Ends every call of this client now with `ConnectionLost`, saying
    /// whether each was ever sent (the session's account). For a caller
    /// that learned the server is gone.
    fn abandon_calls(&self, cause: &str) {
        self.link.abandon(cause);
    }

    /// The session ends each call under the link's lock, and the outcome
    /// is on its way to the caller before the lock is let go.
    fn abandons_at_once(&self) -> bool {
        true
    }

    fn hold_writes(&self) {
        TcpClient::hold_writes(self);
    }

    fn release_writes(&self) {
        TcpClient::release_writes(self);
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
