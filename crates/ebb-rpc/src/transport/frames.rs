//! The few frames the runtimes make themselves (the sessions make the rest),
//! and appending frames to an output buffer. The layout is `crate::wire`'s.

use bytes::{Bytes, BytesMut};
use ebb_core::{ClientId, Nanos};

use crate::service::DispatchError;
use crate::wire::{Frame, FrameCodec, FrameKind, Status};

pub use crate::wire::NO_CALL;

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

/// A connection-level error, naming no call: `BadRequest` when the framing
/// broke, `Rejected` when the connection was refused at accept (nothing it
/// sent was read).
pub fn connection_error(incarnation: u64, status: Status, message: String) -> Frame {
    Frame {
        kind: FrameKind::Reply,
        flags: 0,
        status,
        client: ClientId(0),
        seq: NO_CALL,
        ack_below: 0,
        incarnation,
        deadline: Nanos::ZERO,
        method: 0,
        payload: Bytes::from(message),
    }
}

/// The status and payload that report a dispatch outcome to the client.
pub fn status_of(outcome: Result<Bytes, DispatchError>) -> (Status, Bytes) {
    match outcome {
        Ok(body) => (Status::Ok, body),
        Err(DispatchError::UnknownMethod(m)) => (Status::UnknownMethod, Bytes::from(m)),
        Err(DispatchError::BadArgs(m)) => (Status::BadRequest, Bytes::from(m)),
        Err(DispatchError::EncodeReply(m) | DispatchError::BadReply(m)) => {
            (Status::AppError, Bytes::from(m))
        }
        Err(DispatchError::Rejected(m)) => (Status::Rejected, Bytes::from(m)),
        Err(DispatchError::OutcomeUnknown(m)) => (Status::OutcomeUnknown, Bytes::from(m)),
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
