//! The 54-byte header every kind shares, as it sits on the wire: the
//! kind, flag and status numbers, and the one place its bytes are laid out
//! and read back. Which field means what for each kind is decided in
//! `encode.rs` and checked in `decode.rs`.

use bytes::{Buf, BytesMut};

use crate::wire::secret::ClientSecret;
use crate::wire::{HEADER_BYTES, LENGTH_PREFIX_BYTES, WIRE_VERSION, WireError};

pub(super) const KIND_REQUEST: u8 = 1;
pub(super) const KIND_REPLY: u8 = 2;
pub(super) const KIND_PING: u8 = 3;
pub(super) const KIND_PONG: u8 = 4;
pub(super) const KIND_CONN_ERROR: u8 = 5;
pub(super) const KIND_DESCRIBE: u8 = 6;
pub(super) const KIND_DESCRIPTION: u8 = 7;
pub(super) const KIND_RESIZE: u8 = 8;
pub(super) const KIND_RESIZED: u8 = 9;

/// Header flag of requests and replies: the method is idempotent.
pub(super) const FLAG_IDEMPOTENT: u8 = 0b0000_0001;
/// Header flag of requests and replies: the payload is JSON.
pub(super) const FLAG_JSON: u8 = 0b0000_0010;

pub(super) const STATUS_OK: u8 = 0;
pub(super) const STATUS_UNKNOWN_METHOD: u8 = 1;
pub(super) const STATUS_BAD_REQUEST: u8 = 2;
pub(super) const STATUS_OUTCOME_UNKNOWN: u8 = 3;
pub(super) const STATUS_REFUSED: u8 = 4;
pub(super) const STATUS_APP_ERROR: u8 = 5;
pub(super) const STATUS_PANICKED: u8 = 6;
/// The header's deadline field carries the retry-after, in nanoseconds.
pub(super) const STATUS_OVERLOADED: u8 = 7;

/// The header fields as they sit on the wire.
#[derive(Default)]
pub(super) struct Header {
    pub(super) kind: u8,
    pub(super) flags: u8,
    pub(super) status: u8,
    pub(super) client: u128,
    pub(super) seq: u64,
    pub(super) ack_below: u64,
    pub(super) incarnation: u64,
    pub(super) deadline: u64,
    pub(super) method: u16,
}

/// Appends the length prefix `len` (at most `MAX_FRAME_BYTES`), the
/// header, and a ping's secret. The fixed part is laid out on the stack and
/// appended with one copy: a dozen `put_*` calls, each checking the
/// buffer's room, cost three times as much on every frame.
pub(super) fn put_header(h: &Header, secret: Option<ClientSecret>, len: usize, out: &mut BytesMut) {
    let mut b = [0u8; LENGTH_PREFIX_BYTES + HEADER_BYTES];
    // `len <= MAX_FRAME_BYTES < u32::MAX`, so the cast is exact.
    b[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    b[4] = WIRE_VERSION;
    b[5] = h.kind;
    b[6] = h.flags;
    b[7] = h.status;
    b[8..24].copy_from_slice(&h.client.to_le_bytes());
    b[24..32].copy_from_slice(&h.seq.to_le_bytes());
    b[32..40].copy_from_slice(&h.ack_below.to_le_bytes());
    b[40..48].copy_from_slice(&h.incarnation.to_le_bytes());
    b[48..56].copy_from_slice(&h.deadline.to_le_bytes());
    b[56..58].copy_from_slice(&h.method.to_le_bytes());
    out.extend_from_slice(&b);
    if let Some(secret) = secret {
        out.extend_from_slice(&secret.0.to_le_bytes());
    }
}

/// Parses exactly `HEADER_BYTES` bytes (the caller guarantees the length).
pub(super) fn parse_header(mut h: &[u8]) -> Result<Header, WireError> {
    debug_assert_eq!(h.len(), HEADER_BYTES);
    let version = h.get_u8();
    if version != WIRE_VERSION {
        return Err(WireError::UnknownVersion(version));
    }
    Ok(Header {
        kind: h.get_u8(),
        flags: h.get_u8(),
        status: h.get_u8(),
        client: h.get_u128_le(),
        seq: h.get_u64_le(),
        ack_below: h.get_u64_le(),
        incarnation: h.get_u64_le(),
        deadline: h.get_u64_le(),
        method: h.get_u16_le(),
    })
}
