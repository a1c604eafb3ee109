//! Framing: append messages to an output buffer, take messages off an input
//! buffer as bytes arrive.
//!
//! The encoder appends, so a transport can coalesce many messages into one
//! write. The decoder splits each frame off the read buffer and hands the
//! payload out as a `Bytes` view into it: no copy and no allocation per frame
//! beyond what the buffer already holds.
//!
//! Every kind shares one 54-byte header; this module alone knows which header
//! field carries what for each kind, and that 0 means "none" (an unknown
//! incarnation, no refusal). A field a kind does not use must be zero, so a
//! decoded message re-encodes to exactly the bytes it came from.

mod decode;
mod encode;
mod header;

use bytes::{Buf, Bytes, BytesMut};

use self::decode::to_message;
use self::encode::{lay_out, lay_out_reply};
use self::header::{Header, parse_header, put_header};
use super::message::{Message, Reply};
use super::secret::{CLIENT_SECRET_BYTES, ClientSecret};
use super::{HEADER_BYTES, LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES, WireError};

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

    /// Appends `message` to `out`. Refuses (and leaves `out` untouched) a
    /// message whose payload would exceed the limit.
    pub fn encode(&self, message: &Message, out: &mut BytesMut) -> Result<(), WireError> {
        let (h, secret, payload) = lay_out(message);
        self.put(&h, secret, payload, out)
    }

    /// [`FrameCodec::encode`] for a reply the caller only borrows.
    pub fn encode_reply(&self, reply: &Reply, out: &mut BytesMut) -> Result<(), WireError> {
        let (h, payload) = lay_out_reply(reply);
        self.put(&h, None, payload, out)
    }

    /// Appends `message`'s length prefix and header (and a ping's secret)
    /// to `out` and returns its payload, which the caller must write right
    /// after them (from where it is, so a large payload need not be
    /// copied). Refuses (and leaves `out` untouched) a message whose
    /// payload would exceed the limit.
    pub fn encode_header<'m>(
        &self,
        message: &'m Message,
        out: &mut BytesMut,
    ) -> Result<&'m Bytes, WireError> {
        let (h, secret, payload) = lay_out(message);
        let len = self.frame_len(secret, payload.len())?;
        out.reserve(LENGTH_PREFIX_BYTES + HEADER_BYTES + CLIENT_SECRET_BYTES);
        put_header(&h, secret, len, out);
        Ok(payload)
    }

    /// [`FrameCodec::encode_header`] for a reply the caller only borrows.
    pub fn encode_reply_header<'m>(
        &self,
        reply: &'m Reply,
        out: &mut BytesMut,
    ) -> Result<&'m Bytes, WireError> {
        let (h, payload) = lay_out_reply(reply);
        let len = self.frame_len(None, payload.len())?;
        out.reserve(LENGTH_PREFIX_BYTES + HEADER_BYTES);
        put_header(&h, None, len, out);
        Ok(payload)
    }

    fn put(
        &self,
        h: &Header,
        secret: Option<ClientSecret>,
        payload: &Bytes,
        out: &mut BytesMut,
    ) -> Result<(), WireError> {
        let len = self.frame_len(secret, payload.len())?;
        out.reserve(LENGTH_PREFIX_BYTES + len);
        put_header(h, secret, len, out);
        out.extend_from_slice(payload);
        Ok(())
    }

    /// The length-prefix value (header, secret and payload) of a frame,
    /// if within the limit.
    fn frame_len(
        &self,
        secret: Option<ClientSecret>,
        payload_len: usize,
    ) -> Result<usize, WireError> {
        let secret_len = secret.map_or(0, |_| CLIENT_SECRET_BYTES);
        let len = HEADER_BYTES + secret_len + payload_len;
        if len > self.max_frame_bytes {
            return Err(WireError::FrameTooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        Ok(len)
    }

    /// Takes one complete message off the front of `buf`, or `Ok(None)` if
    /// more bytes are needed (then `buf` is untouched, apart from reserving
    /// room for the rest of the frame).
    ///
    /// On an error about the length prefix (too large, too short) nothing is
    /// consumed: the stream has lost its framing and must be closed. On an
    /// error inside a complete frame (version, kind, status, flags, fields)
    /// that frame is consumed, so a caller may answer and go on.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
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
        to_message(header, frame_bytes.freeze()).map(Some)
    }
}

/// Appends `message` to `out` under [`MAX_FRAME_BYTES`].
pub fn encode_message(message: &Message, out: &mut BytesMut) -> Result<(), WireError> {
    FrameCodec::default().encode(message, out)
}

/// Takes one message off `buf` under [`MAX_FRAME_BYTES`]; see [`FrameCodec::decode`].
pub fn decode_message(buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
    FrameCodec::default().decode(buf)
}
