//! Framing: append frames to an output buffer, take frames off an input
//! buffer as bytes arrive.
//!
//! The encoder appends, so a transport can coalesce many frames into one
//! write. The decoder splits each frame off the read buffer and hands the
//! payload out as a `Bytes` view into it: no copy and no allocation per frame
//! beyond what the buffer already holds.

use bytes::{Buf, BufMut, BytesMut};
use ebb_core::{ClientId, Nanos};

use super::{
    Frame, FrameKind, HEADER_BYTES, KNOWN_FLAGS, LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES, Status,
    WIRE_VERSION, WireError,
};

/// Encoder and decoder with a frame-size limit, which may be set below
/// [`MAX_FRAME_BYTES`] (never above: the constant is the protocol's bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameCodec {
    max_frame_bytes: usize,
}

impl Default for FrameCodec {
    fn default() -> FrameCodec {
        FrameCodec {
            max_frame_bytes: MAX_FRAME_BYTES,
        }
    }
}

impl FrameCodec {
    /// A codec refusing frames longer than `max_frame_bytes` (header plus
    /// payload), clamped to `HEADER_BYTES..=MAX_FRAME_BYTES`.
    pub fn with_max_frame_bytes(max_frame_bytes: usize) -> FrameCodec {
        FrameCodec {
            max_frame_bytes: max_frame_bytes.clamp(HEADER_BYTES, MAX_FRAME_BYTES),
        }
    }

    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Appends `frame` to `out`. Refuses (and leaves `out` untouched) a
    /// frame whose payload would exceed the limit.
    pub fn encode(&self, frame: &Frame, out: &mut BytesMut) -> Result<(), WireError> {
        let len = HEADER_BYTES + frame.payload.len();
        if len > self.max_frame_bytes {
            return Err(WireError::FrameTooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        out.reserve(LENGTH_PREFIX_BYTES + len);
        // `len <= MAX_FRAME_BYTES < u32::MAX`, so the cast is exact.
        out.put_u32_le(len as u32);
        out.put_u8(WIRE_VERSION);
        out.put_u8(frame.kind as u8);
        out.put_u8(frame.flags);
        out.put_u8(frame.status as u8);
        out.put_u128_le(frame.client.0);
        out.put_u64_le(frame.seq);
        out.put_u64_le(frame.ack_below);
        out.put_u64_le(frame.incarnation);
        out.put_u64_le(frame.deadline.as_nanos());
        out.put_u16_le(frame.method);
        out.extend_from_slice(&frame.payload);
        Ok(())
    }

    /// Takes one complete frame off the front of `buf`, or `Ok(None)` if
    /// more bytes are needed (then `buf` is untouched, apart from reserving
    /// room for the rest of the frame).
    ///
    /// On an error about the length prefix (too large, too short) nothing is
    /// consumed: the stream has lost its framing and must be closed. On an
    /// error inside a complete frame (version, kind, status, flags) that
    /// frame is consumed, so a caller may answer and go on.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        let Some(prefix) = buf.get(..LENGTH_PREFIX_BYTES) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > self.max_frame_bytes {
            return Err(WireError::FrameTooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        if len < HEADER_BYTES {
            return Err(WireError::FrameTooShort {
                len,
                min: HEADER_BYTES,
            });
        }
        let total = LENGTH_PREFIX_BYTES + len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let parsed = parse_header(&buf[LENGTH_PREFIX_BYTES..LENGTH_PREFIX_BYTES + HEADER_BYTES]);
        let mut frame_bytes = buf.split_to(total);
        let header = parsed?;
        frame_bytes.advance(LENGTH_PREFIX_BYTES + HEADER_BYTES);
        Ok(Some(header.with_payload(frame_bytes.freeze())))
    }
}

/// Appends `frame` to `out` under [`MAX_FRAME_BYTES`].
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) -> Result<(), WireError> {
    FrameCodec::default().encode(frame, out)
}

/// Takes one frame off `buf` under [`MAX_FRAME_BYTES`]; see [`FrameCodec::decode`].
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
    FrameCodec::default().decode(buf)
}

/// Every header field but the payload.
struct Header {
    kind: FrameKind,
    flags: u8,
    status: Status,
    client: u128,
    seq: u64,
    ack_below: u64,
    incarnation: u64,
    deadline: u64,
    method: u16,
}

impl Header {
    fn with_payload(self, payload: bytes::Bytes) -> Frame {
        Frame {
            kind: self.kind,
            flags: self.flags,
            status: self.status,
            client: ClientId(self.client),
            seq: self.seq,
            ack_below: self.ack_below,
            incarnation: self.incarnation,
            deadline: Nanos(self.deadline),
            method: self.method,
            payload,
        }
    }
}

/// Parses exactly `HEADER_BYTES` bytes (the caller guarantees the length).
fn parse_header(mut h: &[u8]) -> Result<Header, WireError> {
    debug_assert_eq!(h.len(), HEADER_BYTES);
    let version = h.get_u8();
    if version != WIRE_VERSION {
        return Err(WireError::UnknownVersion(version));
    }
    let kind_byte = h.get_u8();
    let kind = FrameKind::from_u8(kind_byte).ok_or(WireError::UnknownKind(kind_byte))?;
    let flags = h.get_u8();
    if flags & !KNOWN_FLAGS != 0 {
        return Err(WireError::UnknownFlags(flags));
    }
    let status_byte = h.get_u8();
    let status = Status::from_u8(status_byte).ok_or(WireError::UnknownStatus(status_byte))?;
    Ok(Header {
        kind,
        flags,
        status,
        client: h.get_u128_le(),
        seq: h.get_u64_le(),
        ack_below: h.get_u64_le(),
        incarnation: h.get_u64_le(),
        deadline: h.get_u64_le(),
        method: h.get_u16_le(),
    })
}
