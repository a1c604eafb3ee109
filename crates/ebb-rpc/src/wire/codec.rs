//! Framing: append messages to an output buffer, take messages off an input
//! buffer as bytes arrive.
//!
//! The encoder appends, so a transport can coalesce many messages into one
//! write. The decoder splits each frame off the read buffer and hands the
//! payload out as a `Bytes` view into it: no copy and no allocation per frame
//! beyond what the buffer already holds.
//!
//! Every kind shares one 54-byte header; this file alone knows which header
//! field carries what for each kind, and that 0 means "none" (an unknown
//! incarnation, no refusal). A field a kind does not use must be zero, so a
//! decoded message re-encodes to exactly the bytes it came from.

use bytes::{Buf, Bytes, BytesMut};
use ebb_core::{ClientId, Nanos};

use super::message::{
    ConnError, ConnErrorKind, Describe, Description, Incarnation, Message, Outcome, Ping, Pong,
    Refusal, Reply, Request, Seq,
};
use super::secret::{CLIENT_SECRET_BYTES, ClientSecret};
use super::{
    HEADER_BYTES, LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES, MAX_TOKEN_BYTES, WIRE_VERSION, WireError,
};

const KIND_REQUEST: u8 = 1;
const KIND_REPLY: u8 = 2;
const KIND_PING: u8 = 3;
const KIND_PONG: u8 = 4;
const KIND_CONN_ERROR: u8 = 5;
const KIND_DESCRIBE: u8 = 6;
const KIND_DESCRIPTION: u8 = 7;

/// Header flag of requests and replies: the method is idempotent.
const FLAG_IDEMPOTENT: u8 = 0b0000_0001;
/// Header flag of requests and replies: the payload is JSON.
const FLAG_JSON: u8 = 0b0000_0010;

const STATUS_OK: u8 = 0;
const STATUS_UNKNOWN_METHOD: u8 = 1;
const STATUS_BAD_REQUEST: u8 = 2;
const STATUS_OUTCOME_UNKNOWN: u8 = 3;
const STATUS_REFUSED: u8 = 4;
const STATUS_APP_ERROR: u8 = 5;
const STATUS_PANICKED: u8 = 6;
/// The header's deadline field carries the retry-after, in nanoseconds.
const STATUS_OVERLOADED: u8 = 7;

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

/// The header fields as they sit on the wire.
#[derive(Default)]
struct Header {
    kind: u8,
    flags: u8,
    status: u8,
    client: u128,
    seq: u64,
    ack_below: u64,
    incarnation: u64,
    deadline: u64,
    method: u16,
}

fn flags(idempotent: bool, json: bool) -> u8 {
    (if idempotent { FLAG_IDEMPOTENT } else { 0 }) | (if json { FLAG_JSON } else { 0 })
}

fn incarnation(i: Option<Incarnation>) -> u64 {
    i.map_or(0, Incarnation::get)
}

fn refusal_status(r: Option<Refusal>) -> (u8, u64) {
    r.map_or((STATUS_OK, 0), |r| (STATUS_REFUSED, r as u64))
}

/// The header, the secret a ping carries ahead of its payload, and the
/// payload of `m`.
fn lay_out(m: &Message) -> (Header, Option<ClientSecret>, &Bytes) {
    let (h, payload) = match m {
        Message::Request(r) => (
            Header {
                kind: KIND_REQUEST,
                flags: flags(r.idempotent, r.json),
                client: r.client.0,
                seq: r.seq.0,
                ack_below: r.ack_below.0,
                incarnation: incarnation(r.incarnation),
                deadline: r.deadline.as_nanos(),
                method: r.method,
                ..Header::default()
            },
            &r.payload,
        ),
        Message::Reply(r) => lay_out_reply(r),
        Message::Ping(p) => {
            let h = Header {
                kind: KIND_PING,
                client: p.client.0,
                seq: p.floor.0,
                ack_below: p.ack_below.0,
                incarnation: incarnation(p.incarnation),
                ..Header::default()
            };
            return (h, Some(p.secret), &p.token);
        }
        Message::Pong(p) => {
            let (status, reason) = refusal_status(p.refused);
            (
                Header {
                    kind: KIND_PONG,
                    status,
                    client: p.client.0,
                    seq: p.floor.0,
                    ack_below: u64::from(p.load),
                    incarnation: p.incarnation.get(),
                    deadline: reason,
                    ..Header::default()
                },
                &p.message,
            )
        }
        Message::ConnError(e) => (
            Header {
                kind: KIND_CONN_ERROR,
                status: e.kind as u8,
                incarnation: e.incarnation.get(),
                ..Header::default()
            },
            &e.message,
        ),
        Message::Describe(d) => (
            Header {
                kind: KIND_DESCRIBE,
                seq: d.id,
                ..Header::default()
            },
            &EMPTY,
        ),
        Message::Description(d) => (
            Header {
                kind: KIND_DESCRIPTION,
                seq: d.id,
                incarnation: d.incarnation.get(),
                ..Header::default()
            },
            &d.payload,
        ),
    };
    (h, None, payload)
}

/// The header and the payload of a reply.
fn lay_out_reply(r: &Reply) -> (Header, &Bytes) {
    let (status, reason) = match r.outcome {
        Outcome::Ok => (STATUS_OK, r.service_time.as_nanos()),
        Outcome::UnknownMethod => (STATUS_UNKNOWN_METHOD, r.service_time.as_nanos()),
        Outcome::BadRequest => (STATUS_BAD_REQUEST, r.service_time.as_nanos()),
        Outcome::OutcomeUnknown => (STATUS_OUTCOME_UNKNOWN, r.service_time.as_nanos()),
        // The field carries the reason or the retry-after: no service time.
        Outcome::Refused(why) => (STATUS_REFUSED, why as u64),
        Outcome::Overloaded { retry_after } => (STATUS_OVERLOADED, retry_after.as_nanos()),
        Outcome::AppError => (STATUS_APP_ERROR, r.service_time.as_nanos()),
        Outcome::Panicked => (STATUS_PANICKED, r.service_time.as_nanos()),
    };
    (
        Header {
            kind: KIND_REPLY,
            flags: flags(r.idempotent, r.json),
            status,
            client: r.client.0,
            seq: r.seq.0,
            ack_below: u64::from(r.load),
            incarnation: r.incarnation.get(),
            deadline: reason,
            method: r.method,
        },
        &r.payload,
    )
}

static EMPTY: Bytes = Bytes::new();

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

/// Appends the length prefix `len` (at most `MAX_FRAME_BYTES`), the
/// header, and a ping's secret. The fixed part is laid out on the stack and
/// appended with one copy: a dozen `put_*` calls, each checking the
/// buffer's room, cost three times as much on every frame.
fn put_header(h: &Header, secret: Option<ClientSecret>, len: usize, out: &mut BytesMut) {
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

/// Appends `message` to `out` under [`MAX_FRAME_BYTES`].
pub fn encode_message(message: &Message, out: &mut BytesMut) -> Result<(), WireError> {
    FrameCodec::default().encode(message, out)
}

/// Takes one message off `buf` under [`MAX_FRAME_BYTES`]; see [`FrameCodec::decode`].
pub fn decode_message(buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
    FrameCodec::default().decode(buf)
}

/// Parses exactly `HEADER_BYTES` bytes (the caller guarantees the length).
fn parse_header(mut h: &[u8]) -> Result<Header, WireError> {
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

/// Checks one kind's use of the header and builds its message.
struct Check {
    kind: &'static str,
    h: Header,
}

impl Check {
    fn zero(&self, field: &'static str, value: u128) -> Result<(), WireError> {
        if value == 0 {
            Ok(())
        } else {
            Err(WireError::NonZeroField {
                kind: self.kind,
                field,
            })
        }
    }

    fn flags(&self, known: u8) -> Result<(bool, bool), WireError> {
        if self.h.flags & !known != 0 {
            return Err(WireError::UnknownFlags {
                kind: self.kind,
                flags: self.h.flags,
            });
        }
        Ok((
            self.h.flags & FLAG_IDEMPOTENT != 0,
            self.h.flags & FLAG_JSON != 0,
        ))
    }

    fn incarnation(&self) -> Result<Incarnation, WireError> {
        Incarnation::new(self.h.incarnation).ok_or(WireError::FieldOutOfRange {
            kind: self.kind,
            field: "incarnation",
        })
    }

    fn load(&self) -> Result<u32, WireError> {
        u32::try_from(self.h.ack_below).map_err(|_| WireError::FieldOutOfRange {
            kind: self.kind,
            field: "load",
        })
    }

    fn refusal(&self) -> Result<Refusal, WireError> {
        u8::try_from(self.h.deadline)
            .ok()
            .and_then(Refusal::from_u8)
            .ok_or(WireError::UnknownRefusal(
                u8::try_from(self.h.deadline).unwrap_or(u8::MAX),
            ))
    }

    fn unknown_status(&self) -> WireError {
        WireError::UnknownStatus {
            kind: self.kind,
            status: self.h.status,
        }
    }
}

fn to_message(h: Header, payload: Bytes) -> Result<Message, WireError> {
    let kind = match h.kind {
        KIND_REQUEST => "request",
        KIND_REPLY => "reply",
        KIND_PING => "ping",
        KIND_PONG => "pong",
        KIND_CONN_ERROR => "connection error",
        KIND_DESCRIBE => "describe",
        KIND_DESCRIPTION => "description",
        other => return Err(WireError::UnknownKind(other)),
    };
    let c = Check { kind, h };
    let h = &c.h;
    Ok(match h.kind {
        KIND_REQUEST => {
            let (idempotent, json) = c.flags(FLAG_IDEMPOTENT | FLAG_JSON)?;
            if h.status != STATUS_OK {
                return Err(c.unknown_status());
            }
            Message::Request(Request {
                client: ClientId(h.client),
                seq: Seq(h.seq),
                ack_below: Seq(h.ack_below),
                incarnation: Incarnation::new(h.incarnation),
                deadline: Nanos(h.deadline),
                method: h.method,
                idempotent,
                json,
                payload,
            })
        }
        KIND_REPLY => {
            let (idempotent, json) = c.flags(FLAG_IDEMPOTENT | FLAG_JSON)?;
            let outcome = match h.status {
                STATUS_OK => Outcome::Ok,
                STATUS_UNKNOWN_METHOD => Outcome::UnknownMethod,
                STATUS_BAD_REQUEST => Outcome::BadRequest,
                STATUS_OUTCOME_UNKNOWN => Outcome::OutcomeUnknown,
                STATUS_REFUSED => Outcome::Refused(c.refusal()?),
                STATUS_OVERLOADED => Outcome::Overloaded {
                    retry_after: Nanos(h.deadline),
                },
                STATUS_APP_ERROR => Outcome::AppError,
                STATUS_PANICKED => Outcome::Panicked,
                _ => return Err(c.unknown_status()),
            };
            let service_time = match outcome {
                Outcome::Refused(_) | Outcome::Overloaded { .. } => Nanos::ZERO,
                _ => Nanos(h.deadline),
            };
            Message::Reply(Reply {
                client: ClientId(h.client),
                seq: Seq(h.seq),
                incarnation: c.incarnation()?,
                method: h.method,
                idempotent,
                json,
                outcome,
                load: c.load()?,
                service_time,
                payload,
            })
        }
        KIND_PING => {
            c.flags(0)?;
            c.zero("status", h.status.into())?;
            c.zero("deadline", h.deadline.into())?;
            c.zero("method", h.method.into())?;
            let token_len = payload.len().checked_sub(CLIENT_SECRET_BYTES);
            let Some(token_len @ 0..=MAX_TOKEN_BYTES) = token_len else {
                return Err(WireError::FieldOutOfRange {
                    kind: c.kind,
                    field: "payload",
                });
            };
            debug_assert_eq!(token_len + CLIENT_SECRET_BYTES, payload.len());
            let mut secret = [0u8; CLIENT_SECRET_BYTES];
            secret.copy_from_slice(&payload[..CLIENT_SECRET_BYTES]);
            Message::Ping(Ping {
                client: ClientId(h.client),
                floor: Seq(h.seq),
                ack_below: Seq(h.ack_below),
                incarnation: Incarnation::new(h.incarnation),
                secret: ClientSecret(u128::from_le_bytes(secret)),
                token: payload.slice(CLIENT_SECRET_BYTES..),
            })
        }
        KIND_PONG => {
            c.flags(0)?;
            c.zero("method", h.method.into())?;
            let refused = match h.status {
                STATUS_OK => {
                    c.zero("deadline", h.deadline.into())?;
                    None
                }
                STATUS_REFUSED => Some(c.refusal()?),
                _ => return Err(c.unknown_status()),
            };
            Message::Pong(Pong {
                client: ClientId(h.client),
                floor: Seq(h.seq),
                incarnation: c.incarnation()?,
                refused,
                load: c.load()?,
                message: payload,
            })
        }
        KIND_CONN_ERROR => {
            c.flags(0)?;
            c.zero("client", h.client)?;
            c.zero("seq", h.seq.into())?;
            c.zero("ack_below", h.ack_below.into())?;
            c.zero("deadline", h.deadline.into())?;
            c.zero("method", h.method.into())?;
            let kind = ConnErrorKind::from_u8(h.status).ok_or_else(|| c.unknown_status())?;
            Message::ConnError(ConnError {
                incarnation: c.incarnation()?,
                kind,
                message: payload,
            })
        }
        KIND_DESCRIBE => {
            c.flags(0)?;
            c.zero("status", h.status.into())?;
            c.zero("client", h.client)?;
            c.zero("ack_below", h.ack_below.into())?;
            c.zero("incarnation", h.incarnation.into())?;
            c.zero("deadline", h.deadline.into())?;
            c.zero("method", h.method.into())?;
            c.zero("payload", payload.len() as u128)?;
            Message::Describe(Describe { id: h.seq })
        }
        _ => {
            c.flags(0)?;
            c.zero("status", h.status.into())?;
            c.zero("client", h.client)?;
            c.zero("ack_below", h.ack_below.into())?;
            c.zero("deadline", h.deadline.into())?;
            c.zero("method", h.method.into())?;
            Message::Description(Description {
                id: h.seq,
                incarnation: c.incarnation()?,
                payload,
            })
        }
    })
}
