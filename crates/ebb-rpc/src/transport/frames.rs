//! Building the frames the runtimes send, and appending them to an output
//! buffer. The layout itself is `crate::wire`'s.

use bytes::{Bytes, BytesMut};
use ebb_core::{ClientId, Nanos};

use crate::CallError;
use crate::service::DispatchError;
use crate::wire::{FLAG_IDEMPOTENT, Frame, FrameCodec, FrameKind, Status};

/// Sequence number of an error frame that answers no particular call (the
/// connection's framing broke). Clients never use it for a call.
pub const NO_CALL: u64 = u64::MAX;

/// Appends `frame`; a frame over the size limit becomes a `BadRequest`
/// reply with the same identity, so the peer learns why instead of waiting.
pub fn append(codec: &FrameCodec, frame: &Frame, out: &mut BytesMut) {
    if let Err(e) = codec.encode(frame, out) {
        let mut refusal = frame.clone();
        refusal.kind = FrameKind::Reply;
        refusal.status = Status::BadRequest;
        refusal.payload = Bytes::from(e.to_string());
        // The message is far below any limit.
        let _ = codec.encode(&refusal, out);
    }
}

/// A connection-level error: the framing broke, so no call can be named.
pub fn connection_error(incarnation: u64, message: String) -> Frame {
    Frame {
        kind: FrameKind::Reply,
        flags: 0,
        status: Status::BadRequest,
        client: ClientId(0),
        seq: NO_CALL,
        ack_below: 0,
        incarnation,
        deadline: Nanos::ZERO,
        method: 0,
        payload: Bytes::from(message),
    }
}

/// The reply frame for a dispatch outcome.
pub fn reply(request: &Frame, incarnation: u64, outcome: Result<Bytes, DispatchError>) -> Frame {
    match outcome {
        Ok(body) => Frame::reply_to(request, incarnation, Status::Ok, body),
        Err(e) => {
            let status = match e {
                DispatchError::UnknownMethod(_) => Status::UnknownMethod,
                DispatchError::BadArgs(_) => Status::BadRequest,
                DispatchError::EncodeReply(_) | DispatchError::BadReply(_) => Status::AppError,
            };
            let msg = match e {
                DispatchError::UnknownMethod(m)
                | DispatchError::BadArgs(m)
                | DispatchError::EncodeReply(m)
                | DispatchError::BadReply(m) => m,
            };
            Frame::reply_to(request, incarnation, status, Bytes::from(msg))
        }
    }
}

/// An error reply with a message.
pub fn refuse(request: &Frame, incarnation: u64, status: Status, message: String) -> Frame {
    Frame::reply_to(request, incarnation, status, Bytes::from(message))
}

/// A request frame.
#[allow(clippy::too_many_arguments)]
pub fn request(
    client: ClientId,
    seq: u64,
    ack_below: u64,
    incarnation: u64,
    deadline: Nanos,
    method: u16,
    idempotent: bool,
    args: Bytes,
) -> Frame {
    Frame {
        kind: FrameKind::Request,
        flags: if idempotent { FLAG_IDEMPOTENT } else { 0 },
        status: Status::Ok,
        client,
        seq,
        ack_below,
        incarnation,
        deadline,
        method,
        payload: args,
    }
}

/// A liveness probe; `floor` is the client's lowest never-sent sequence
/// number.
pub fn ping(client: ClientId, floor: u64, incarnation: u64) -> Frame {
    Frame {
        kind: FrameKind::Ping,
        flags: 0,
        status: Status::Ok,
        client,
        seq: floor,
        ack_below: 0,
        incarnation,
        deadline: Nanos::ZERO,
        method: 0,
        payload: Bytes::new(),
    }
}

/// A pong answering `ping`.
pub fn pong(ping: &Frame, incarnation: u64) -> Frame {
    Frame {
        kind: FrameKind::Pong,
        flags: 0,
        status: Status::Ok,
        client: ping.client,
        seq: ping.seq,
        ack_below: 0,
        incarnation,
        deadline: Nanos::ZERO,
        method: 0,
        payload: Bytes::new(),
    }
}

/// What a client makes of a reply's status.
pub fn outcome(reply: Frame, known_incarnation: u64) -> Result<Bytes, CallError> {
    let msg = || reply.message();
    match reply.status {
        Status::Ok => Ok(reply.payload),
        Status::UnknownMethod => Err(CallError::UnknownMethod(msg())),
        Status::BadRequest => Err(CallError::BadRequest(msg())),
        Status::OutcomeUnknown => Err(CallError::OutcomeUnknown {
            old: known_incarnation,
            new: reply.incarnation,
        }),
        Status::Rejected => Err(CallError::Rejected(msg())),
        Status::AppError => Err(CallError::Remote(msg())),
    }
}

/// A fresh random `u64` without a seed to hand: std's hasher keys are drawn
/// from the OS. Used for client ids and server incarnations, which must
/// differ between processes rather than replay.
pub fn os_random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}
