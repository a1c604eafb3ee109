//! The frames the TCP runtimes exchange, as the transport sees them: a
//! request carrying a call id and a method id, and a reply or a typed error
//! for a call id.
//!
//! Layout (little-endian): `len: u32` (bytes after this field) `kind: u8`
//! `call: u64` then, for a request, `method: u16` `deadline_ms: u32` `args`;
//! for a reply, the reply bytes; for an error, `code: u8` and a UTF-8
//! message. The length is checked against [`MAX_FRAME_BYTES`] before any
//! buffering, so a hostile peer cannot make us allocate.

use bytes::{Buf, Bytes, BytesMut};

use crate::CallError;

/// The largest frame either side accepts, header included.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

const LEN_BYTES: usize = 4;
const KIND_REQUEST: u8 = 1;
const KIND_REPLY: u8 = 2;
const KIND_ERROR: u8 = 3;
/// Call id used for an error about a frame whose call id is unknown.
pub const NO_CALL: u64 = u64::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Request {
        call: u64,
        method: u16,
        deadline_ms: u32,
        args: Bytes,
    },
    Reply {
        call: u64,
        body: Bytes,
    },
    Error {
        call: u64,
        error: CallError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_BYTES}")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

pub fn encode_request(out: &mut Vec<u8>, call: u64, method: u16, deadline_ms: u32, args: &[u8]) {
    let len = 1 + 8 + 2 + 4 + args.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.push(KIND_REQUEST);
    out.extend_from_slice(&call.to_le_bytes());
    out.extend_from_slice(&method.to_le_bytes());
    out.extend_from_slice(&deadline_ms.to_le_bytes());
    out.extend_from_slice(args);
}

pub fn encode_reply(out: &mut Vec<u8>, call: u64, body: &[u8]) {
    let len = 1 + 8 + body.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.push(KIND_REPLY);
    out.extend_from_slice(&call.to_le_bytes());
    out.extend_from_slice(body);
}

pub fn encode_error(out: &mut Vec<u8>, call: u64, error: &CallError) {
    let (code, msg) = error_parts(error);
    let msg = &msg.as_bytes()[..msg.len().min(MAX_FRAME_BYTES / 2)];
    let len = 1 + 8 + 1 + msg.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.push(KIND_ERROR);
    out.extend_from_slice(&call.to_le_bytes());
    out.push(code);
    out.extend_from_slice(msg);
}

fn error_parts(e: &CallError) -> (u8, String) {
    match e {
        CallError::UnknownMethod(m) => (1, m.clone()),
        CallError::BadRequest(m) => (2, m.clone()),
        CallError::Rejected(m) => (3, m.clone()),
        CallError::Remote(m) => (4, m.clone()),
        other => (4, other.to_string()),
    }
}

fn error_from(code: u8, msg: String) -> CallError {
    match code {
        1 => CallError::UnknownMethod(msg),
        2 => CallError::BadRequest(msg),
        3 => CallError::Rejected(msg),
        _ => CallError::Remote(msg),
    }
}

/// Takes one whole frame off the front of `buf`, if one is there.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    if buf.len() < LEN_BYTES {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len + LEN_BYTES > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len + LEN_BYTES));
    }
    if len < 9 {
        return Err(FrameError::Malformed("shorter than its header"));
    }
    if buf.len() < LEN_BYTES + len {
        buf.reserve(LEN_BYTES + len - buf.len());
        return Ok(None);
    }
    buf.advance(LEN_BYTES);
    let mut body = buf.split_to(len).freeze();
    let kind = body.get_u8();
    let call = body.get_u64_le();
    match kind {
        KIND_REQUEST => {
            if body.len() < 6 {
                return Err(FrameError::Malformed("request shorter than its header"));
            }
            let method = body.get_u16_le();
            let deadline_ms = body.get_u32_le();
            Ok(Some(Frame::Request {
                call,
                method,
                deadline_ms,
                args: body,
            }))
        }
        KIND_REPLY => Ok(Some(Frame::Reply { call, body })),
        KIND_ERROR => {
            if body.is_empty() {
                return Err(FrameError::Malformed("error frame without a code"));
            }
            let code = body.get_u8();
            let msg = String::from_utf8_lossy(&body).into_owned();
            Ok(Some(Frame::Error {
                call,
                error: error_from(code, msg),
            }))
        }
        _ => Err(FrameError::Malformed("unknown frame kind")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_even_when_split_at_every_byte() {
        let mut wire = Vec::new();
        encode_request(&mut wire, 7, 3, 100, b"args");
        encode_reply(&mut wire, 7, b"reply");
        encode_error(&mut wire, 8, &CallError::Rejected("busy".into()));
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire {
            buf.extend_from_slice(&[b]);
            while let Some(f) = decode(&mut buf).expect("well-formed") {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                Frame::Request {
                    call: 7,
                    method: 3,
                    deadline_ms: 100,
                    args: Bytes::from_static(b"args")
                },
                Frame::Reply {
                    call: 7,
                    body: Bytes::from_static(b"reply")
                },
                Frame::Error {
                    call: 8,
                    error: CallError::Rejected("busy".into())
                },
            ]
        );
    }

    #[test]
    fn oversized_and_garbage_frames_are_errors_not_panics() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0][..]);
        assert!(matches!(decode(&mut buf), Err(FrameError::TooLarge(_))));
        let mut buf = BytesMut::from(&[2, 0, 0, 0, 1, 2][..]);
        assert!(matches!(decode(&mut buf), Err(FrameError::Malformed(_))));
        let mut buf = BytesMut::from(&[9, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0, 0][..]);
        assert!(matches!(decode(&mut buf), Err(FrameError::Malformed(_))));
    }
}
