//! The wire format: one fixed little-endian header per frame, then payload.
//!
//! The header is written by hand rather than through serde because it is on
//! every frame and its layout is the protocol; payloads (method arguments and
//! results) are postcard-encoded by the layers above through
//! [`encode_payload`] / [`decode_payload`]. The exact byte layout is in
//! `docs/wire.md`.

mod codec;
mod payload;

pub use codec::{FrameCodec, decode_frame, encode_frame};
pub use payload::{decode_payload, encode_payload};

use bytes::Bytes;
use ebb_core::{ClientId, Nanos};

/// The protocol version this build speaks; a frame with any other version is
/// refused, since a different header layout would be misread silently.
pub const WIRE_VERSION: u8 = 1;

/// Bytes of the length prefix that precedes every frame.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Bytes of the fixed header that follows the length prefix.
pub const HEADER_BYTES: usize = 54;

/// Upper bound on the length-prefix value (header + payload), so a peer
/// cannot make us buffer without limit. A [`FrameCodec`] can be set lower.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Largest payload a frame can carry under [`MAX_FRAME_BYTES`].
pub const MAX_PAYLOAD_BYTES: usize = MAX_FRAME_BYTES - HEADER_BYTES;

/// Sequence number of a reply that answers no particular call but the
/// connection (its framing broke, or it was refused at accept). Sessions
/// start at 1 and never reach it.
pub const NO_CALL: u64 = u64::MAX;

/// Header flag: the request's method is idempotent, so the server keeps no
/// at-most-once state for it and may run it again on a resend.
pub const FLAG_IDEMPOTENT: u8 = 0b0000_0001;

const KNOWN_FLAGS: u8 = FLAG_IDEMPOTENT;

/// What a frame is. Zero is not a kind, so a zeroed buffer never parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Client to server: run a method.
    Request = 1,
    /// Server to client: the outcome of a request, with a [`Status`].
    Reply = 2,
    /// Client to server: liveness probe and session handshake.
    Ping = 3,
    /// Server to client: answer to a ping, carrying the server's incarnation.
    Pong = 4,
}

impl FrameKind {
    pub fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            1 => FrameKind::Request,
            2 => FrameKind::Reply,
            3 => FrameKind::Ping,
            4 => FrameKind::Pong,
            _ => return None,
        })
    }
}

/// How a reply (or pong) ended. Error statuses carry a UTF-8 message as payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// The method ran; the payload is its postcard-encoded result.
    Ok = 0,
    /// The server has no method with this id; nothing ran.
    UnknownMethod = 1,
    /// The request could not be decoded or broke a protocol rule; nothing ran.
    BadRequest = 2,
    /// The server cannot tell whether the call ran (it restarted, or forgot
    /// the client's session); it will not run it now.
    OutcomeUnknown = 3,
    /// The server refused without running (over a bound, or deadline passed).
    Rejected = 4,
    /// The method ran and failed.
    AppError = 5,
    /// The method started and panicked: it may have had part of its effect.
    Panicked = 6,
}

impl Status {
    pub fn from_u8(b: u8) -> Option<Status> {
        Some(match b {
            0 => Status::Ok,
            1 => Status::UnknownMethod,
            2 => Status::BadRequest,
            3 => Status::OutcomeUnknown,
            4 => Status::Rejected,
            5 => Status::AppError,
            6 => Status::Panicked,
            _ => return None,
        })
    }
}

/// One decoded frame. Every kind uses the same header; fields a kind does not
/// need are zero (see `docs/wire.md` for which fields each kind uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    /// Header flags ([`FLAG_IDEMPOTENT`]); unknown bits are refused on decode.
    pub flags: u8,
    /// [`Status::Ok`] for requests and pings.
    pub status: Status,
    pub client: ClientId,
    /// Request/reply: the call's sequence number. Ping/pong: the client's
    /// lowest never-sent sequence number (the session floor, see semantics).
    pub seq: u64,
    /// The lowest sequence number the client still waits for; the server may
    /// forget everything below it.
    pub ack_below: u64,
    /// Requests: the server incarnation the client believes it talks to
    /// (0 = unknown). Replies and pongs: the server's current incarnation.
    pub incarnation: u64,
    /// Time the call has left, relative, as the sender saw it when sending.
    pub deadline: Nanos,
    pub method: u16,
    pub payload: Bytes,
}

impl Frame {
    pub fn is_idempotent(&self) -> bool {
        self.flags & FLAG_IDEMPOTENT != 0
    }

    /// Total bytes this frame takes on the wire, length prefix included.
    pub fn encoded_len(&self) -> usize {
        LENGTH_PREFIX_BYTES + HEADER_BYTES + self.payload.len()
    }

    /// The reply to `request` from a server at `incarnation`. Copies the
    /// identity fields so the client can match it to exactly one call.
    pub fn reply_to(request: &Frame, incarnation: u64, status: Status, payload: Bytes) -> Frame {
        Frame {
            kind: FrameKind::Reply,
            flags: request.flags,
            status,
            client: request.client,
            seq: request.seq,
            ack_below: 0,
            incarnation,
            deadline: Nanos::ZERO,
            method: request.method,
            payload,
        }
    }

    /// The error message an error-status frame carries (lossy UTF-8).
    pub fn message(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Why bytes did not decode to a frame or a payload. Decoding never panics.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("frame of {len} bytes is shorter than the {min}-byte header")]
    FrameTooShort { len: usize, min: usize },
    #[error("unknown wire version {0} (this build speaks version {WIRE_VERSION})")]
    UnknownVersion(u8),
    #[error("unknown frame kind {0} (known: 1 request, 2 reply, 3 ping, 4 pong)")]
    UnknownKind(u8),
    #[error("unknown reply status {0} (known: 0..=6)")]
    UnknownStatus(u8),
    #[error("unknown header flags {0:#010b} (known: {KNOWN_FLAGS:#010b})")]
    UnknownFlags(u8),
    #[error("payload codec: {0}")]
    Payload(#[from] postcard::Error),
    #[error("payload has {0} trailing bytes after the value")]
    TrailingBytes(usize),
}

impl From<WireError> for crate::CallError {
    fn from(e: WireError) -> crate::CallError {
        crate::CallError::Codec(e.to_string())
    }
}
