//! What crosses the wire, one type per kind of message. Each struct holds
//! exactly the fields its kind uses, with their own types; how they share
//! one fixed header (and which sentinels stand for "none") is the codec's
//! business alone.

use std::num::{NonZeroU32, NonZeroU64};

use bytes::Bytes;
use ebb_core::{ClientId, Nanos};

use super::secret::ClientSecret;

/// A call's sequence number within one client session. Sessions start at
/// [`Seq::FIRST`] and count up; order is meaningful (windows, floors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq(pub u64);

impl Seq {
    pub const FIRST: Seq = Seq(1);

    /// The next sequence number. A session would need 2^64 calls to wrap.
    pub fn next(self) -> Seq {
        Seq(self.0.saturating_add(1))
    }

    /// `self + n`, saturating: the end of a window starting here.
    pub fn plus(self, n: u64) -> Seq {
        Seq(self.0.saturating_add(n))
    }
}

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One life of a server process: a restarted server has a new one and has
/// lost every at-most-once record of the old one. Never zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Incarnation(NonZeroU64);

impl Incarnation {
    /// `None` for 0, which is not an incarnation.
    pub fn new(n: u64) -> Option<Incarnation> {
        NonZeroU64::new(n).map(Incarnation)
    }

    /// `n`, or 1 if `n` is 0.
    pub fn at_least_one(n: u64) -> Incarnation {
        Incarnation(NonZeroU64::new(n).unwrap_or(NonZeroU64::MIN))
    }

    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl std::fmt::Display for Incarnation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Client to server: run a method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub client: ClientId,
    pub seq: Seq,
    /// The lowest seq the client still waits for; the server may forget
    /// everything below it.
    pub ack_below: Seq,
    /// The incarnation the client believes it talks to (`None`: not known
    /// yet, allowed for idempotent calls only in practice).
    pub incarnation: Option<Incarnation>,
    /// Time the call has left, relative, as the client saw it when sending.
    pub deadline: Nanos,
    pub method: u16,
    /// Safe to run more than once: the server keeps no state for it.
    pub idempotent: bool,
    /// The arguments are a JSON object keyed by parameter name (not the
    /// postcard tuple), and the reply is to be JSON too.
    pub json: bool,
    pub payload: Bytes,
}

/// How a call ended on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The method ran; the payload is its result.
    Ok,
    /// No method with this id; nothing ran.
    UnknownMethod,
    /// The request could not be decoded or broke a protocol rule; nothing ran.
    BadRequest,
    /// The server cannot tell whether the call ran (it restarted, or forgot
    /// the client's session); it will not run it now.
    OutcomeUnknown,
    /// Refused without running, for the reason given.
    Refused(Refusal),
    /// Refused without running because the service (a forwarding gateway)
    /// cannot meet the call's deadline with the work ahead of it; a try
    /// after `retry_after` has a chance.
    Overloaded { retry_after: Nanos },
    /// The method ran and failed.
    AppError,
    /// The method started and panicked.
    Panicked,
}

/// Why a server refused a call or a handshake without running anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[repr(u8)]
pub enum Refusal {
    #[error("the deadline passed before the call arrived")]
    DeadlinePassed = 1,
    #[error("the connection is at its bound of calls executing")]
    InFlight = 2,
    #[error("the connection speaks for its bound of client ids")]
    ClientsPerConnection = 3,
    #[error("the server is at its bound of client sessions")]
    Sessions = 4,
    #[error("this peer is at its bound of client sessions")]
    PeerSessions = 5,
    #[error("the server is at its bound of saved reply bytes")]
    ReplyMemory = 6,
    /// Never in a reply: a connection refused at accept ends its calls so.
    #[error("the server is at its bound of connections")]
    ServerFull = 7,
    /// Never in a reply: a connection refused at accept ends its calls so.
    #[error("this peer is at its bound of connections")]
    PeerFull = 8,
    /// The service (e.g. a forwarding gateway) refused the call over its
    /// own bounds; it did not run.
    #[error("the service is over its bounds")]
    Overloaded = 9,
    /// A handshake's secret does not prove its client id, or a request
    /// names a client id its connection has not proven: a peer acting for
    /// another client. Nothing ran and no session was touched.
    #[error("the connection has not proven this client id")]
    Unauthenticated = 10,
    /// The server requires a bearer token and the handshake carried none,
    /// or one it does not accept. Nothing ran.
    #[error("missing or wrong bearer token")]
    Unauthorized = 11,
    /// The caller (its bearer token, or its address without tokens) is at
    /// its bound of calls executing; other callers are served.
    #[error("this caller is at its bound of calls executing")]
    CallerInFlight = 12,
}

impl Refusal {
    pub fn from_u8(b: u8) -> Option<Refusal> {
        Some(match b {
            1 => Refusal::DeadlinePassed,
            2 => Refusal::InFlight,
            3 => Refusal::ClientsPerConnection,
            4 => Refusal::Sessions,
            5 => Refusal::PeerSessions,
            6 => Refusal::ReplyMemory,
            7 => Refusal::ServerFull,
            8 => Refusal::PeerFull,
            9 => Refusal::Overloaded,
            10 => Refusal::Unauthenticated,
            11 => Refusal::Unauthorized,
            12 => Refusal::CallerInFlight,
            _ => return None,
        })
    }
}

/// Server to client: the outcome of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub client: ClientId,
    pub seq: Seq,
    /// The server's current incarnation.
    pub incarnation: Incarnation,
    /// Copied from the request, so the client can match it to one call.
    pub method: u16,
    pub idempotent: bool,
    pub json: bool,
    pub outcome: Outcome,
    /// Calls executing on the server when it sent this (its load).
    pub load: u32,
    /// The server's own measure of its service time (busy time per call
    /// completed, averaged): what a gateway's admission judges the node's
    /// capacity by, free of the gateway's own queueing. Zero: not measured
    /// (and always zero with a refusal or `Overloaded`, whose header field
    /// it shares).
    pub service_time: Nanos,
    /// The result for `Ok`; a UTF-8 message otherwise.
    pub payload: Bytes,
}

impl Reply {
    /// The reply to `request` from a server at `incarnation`, copying the
    /// identity fields so the client can match it to exactly one call.
    pub fn to(
        request: &Request,
        incarnation: Incarnation,
        outcome: Outcome,
        payload: Bytes,
    ) -> Reply {
        Reply {
            client: request.client,
            seq: request.seq,
            incarnation,
            method: request.method,
            idempotent: request.idempotent,
            json: request.json,
            outcome,
            load: 0,
            service_time: Nanos::ZERO,
            payload,
        }
    }

    /// The message an error outcome carries (lossy UTF-8).
    pub fn message(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Client to server: liveness probe and session handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ping {
    pub client: ClientId,
    /// One above the highest at-most-once seq the client ever sent: calls
    /// below it may have run in a session the server forgot.
    pub floor: Seq,
    pub ack_below: Seq,
    pub incarnation: Option<Incarnation>,
    /// Proves `client`: its id is derived from it. A ping whose secret
    /// does not prove its id is refused `Unauthenticated`.
    pub secret: ClientSecret,
    /// A bearer token for a server that requires one; empty for none. At
    /// most [`super::MAX_TOKEN_BYTES`].
    pub token: Bytes,
}

/// Server to client: the answer to a ping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pong {
    pub client: ClientId,
    /// Echoed from the ping.
    pub floor: Seq,
    pub incarnation: Incarnation,
    /// `Some`: no session was opened, for this reason.
    pub refused: Option<Refusal>,
    /// Calls executing on the server when it sent this.
    pub load: u32,
    /// Why, when refused (UTF-8); empty otherwise.
    pub message: Bytes,
}

/// Why a server speaks to a connection rather than to a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnErrorKind {
    /// Refused at accept: the server holds its bound of connections.
    /// Nothing sent on the connection was read.
    ServerFull = 1,
    /// Refused at accept: this peer holds its bound of connections.
    PeerFull = 2,
    /// A frame broke the framing or the header rules; the server closes
    /// the connection. Frames before it were handled.
    BadFrame = 3,
    /// Closed: no handshake within the handshake timeout, or nothing heard
    /// within the idle timeout.
    Timeout = 4,
}

impl ConnErrorKind {
    pub fn from_u8(b: u8) -> Option<ConnErrorKind> {
        Some(match b {
            1 => ConnErrorKind::ServerFull,
            2 => ConnErrorKind::PeerFull,
            3 => ConnErrorKind::BadFrame,
            4 => ConnErrorKind::Timeout,
            _ => return None,
        })
    }

    /// True when the server read nothing from the connection, so no call
    /// sent only on it can have run.
    pub fn unread(self) -> bool {
        matches!(self, ConnErrorKind::ServerFull | ConnErrorKind::PeerFull)
    }
}

/// Server to client: the connection ends, for this reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnError {
    pub incarnation: Incarnation,
    pub kind: ConnErrorKind,
    /// Human-readable detail, naming the bound (UTF-8).
    pub message: Bytes,
}

impl ConnError {
    pub fn message(&self) -> String {
        String::from_utf8_lossy(&self.message).into_owned()
    }
}

/// Client to server: send your service description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Describe {
    /// Echoed in the answer, to match it.
    pub id: u64,
}

/// Server to client: the service description, postcard-encoded
/// (`service::ServiceDescription`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    pub id: u64,
    pub incarnation: Incarnation,
    pub payload: Bytes,
}

/// Client to server: run at most `capacity` blocking calls at once from
/// now on (a node scaled up or down in place). A server answers it only on
/// a connection whose credentials it accepted; it never runs a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resize {
    /// Echoed in the answer, to match it.
    pub id: u64,
    pub capacity: NonZeroU32,
}

/// Server to client: the answer to a `Resize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resized {
    pub id: u64,
    pub incarnation: Incarnation,
    /// The capacity now in force (the server may cut what was asked to its
    /// bound); `None`: this server does not resize, its capacity is as it
    /// was.
    pub capacity: Option<NonZeroU32>,
}

/// Everything that crosses the wire. Closed: a kind not listed here does
/// not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Reply(Reply),
    Ping(Ping),
    Pong(Pong),
    ConnError(ConnError),
    Describe(Describe),
    Description(Description),
    Resize(Resize),
    Resized(Resized),
}

impl Message {
    /// Payload bytes carried (for size checks).
    pub fn payload_len(&self) -> usize {
        match self {
            Message::Request(m) => m.payload.len(),
            Message::Reply(m) => m.payload.len(),
            Message::Pong(m) => m.message.len(),
            Message::ConnError(m) => m.message.len(),
            Message::Description(m) => m.payload.len(),
            Message::Ping(p) => super::secret::CLIENT_SECRET_BYTES + p.token.len(),
            Message::Describe(_) | Message::Resize(_) | Message::Resized(_) => 0,
        }
    }

    /// Total bytes this message takes on the wire, length prefix included.
    pub fn encoded_len(&self) -> usize {
        super::LENGTH_PREFIX_BYTES + super::HEADER_BYTES + self.payload_len()
    }
}

macro_rules! message_from {
    ($($kind:ident),*) => {$(
        impl From<$kind> for Message {
            fn from(m: $kind) -> Message {
                Message::$kind(m)
            }
        }
    )*};
}

message_from!(
    Request,
    Reply,
    Ping,
    Pong,
    ConnError,
    Describe,
    Description,
    Resize,
    Resized
);
