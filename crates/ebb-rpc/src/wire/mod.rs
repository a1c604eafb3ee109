//! The wire format: one fixed little-endian header per frame, then payload;
//! a closed set of message kinds on top of it.
//!
//! Everything above this module speaks [`Message`]: one struct per kind,
//! with only the fields that kind uses, in their own types ([`Seq`],
//! [`Incarnation`], `Option` where a value may be absent). How the kinds
//! share the header, and which sentinels (0, unused fields) stand for
//! "none", is [`codec`]'s business alone. Payloads (method arguments and
//! results) are postcard-encoded by the layers above through
//! [`encode_payload`] / [`decode_payload`]. The exact byte layout is in
//! `docs/wire.md`.
//!
//! A leaf: it depends on nothing else in this crate.

mod codec;
mod message;
mod payload;
mod secret;

pub use codec::{FrameCodec, decode_message, encode_message};
pub use message::{
    ConnError, ConnErrorKind, Describe, Description, Incarnation, Message, Outcome, Ping, Pong,
    Refusal, Reply, Request, Resize, Resized, Seq,
};
pub use payload::{decode_payload, encode_payload};
pub use secret::{CLIENT_SECRET_BYTES, ClientSecret};

/// The protocol version this build speaks; a frame with any other version is
/// refused, since a different header layout would be misread silently.
/// Version 2: typed refusals, connection errors and service descriptions as
/// their own kinds, JSON arguments, load in replies and pongs. Version 3:
/// a ping carries the client's secret (which proves its id) and an optional
/// bearer token. Version 4: replies that are not refusals carry the
/// server's measured service time in the deadline field (version 3
/// required it zero). `Resize` and `Resized` (kinds 8 and 9) were added
/// within version 4: a peer that predates them refuses the frame as an
/// unknown kind and closes the connection, so a client sends one only
/// before it sends calls, or to a peer that answered one.
pub const WIRE_VERSION: u8 = 4;

/// The longest bearer token a ping may carry, in bytes.
pub const MAX_TOKEN_BYTES: usize = 512;

/// Bytes of the length prefix that precedes every frame.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Bytes of the fixed header that follows the length prefix.
pub const HEADER_BYTES: usize = 54;

/// Upper bound on the length-prefix value (header + payload), so a peer
/// cannot make us buffer without limit. A [`FrameCodec`] can be set lower.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Largest payload a frame can carry under [`MAX_FRAME_BYTES`].
pub const MAX_PAYLOAD_BYTES: usize = MAX_FRAME_BYTES - HEADER_BYTES;

/// Why bytes did not decode to a message or a payload. Decoding never panics.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("frame of {len} bytes is shorter than the {min}-byte header")]
    FrameTooShort { len: usize, min: usize },
    #[error("unknown wire version {0} (this build speaks version {WIRE_VERSION})")]
    UnknownVersion(u8),
    #[error(
        "unknown frame kind {0} (known: 1 request, 2 reply, 3 ping, 4 pong, 5 connection error, 6 describe, 7 description, 8 resize, 9 resized)"
    )]
    UnknownKind(u8),
    #[error("unknown status {status} for a {kind} frame")]
    UnknownStatus { kind: &'static str, status: u8 },
    #[error("unknown refusal reason {0} (known: 1..=12)")]
    UnknownRefusal(u8),
    #[error("unknown header flags {flags:#010b} for a {kind} frame")]
    UnknownFlags { kind: &'static str, flags: u8 },
    #[error("a {kind} frame must have `{field}` zero")]
    NonZeroField {
        kind: &'static str,
        field: &'static str,
    },
    #[error("a {kind} frame's `{field}` is out of range")]
    FieldOutOfRange {
        kind: &'static str,
        field: &'static str,
    },
    #[error("payload codec: {0}")]
    Payload(#[from] postcard::Error),
    #[error("payload has {0} trailing bytes after the value")]
    TrailingBytes(usize),
}
