//! The few messages the runtimes make themselves (the sessions make the
//! rest), and appending messages to a [`FrameBuf`]. The layout is
//! `crate::wire`'s.

use bytes::Bytes;

use super::framebuf::FrameBuf;

use crate::service::DispatchError;
use crate::wire::{
    ClientSecret, ConnError, ConnErrorKind, FrameCodec, Incarnation, Message, Outcome, Refusal,
    Reply,
};

/// Appends `message`; a reply over the size limit becomes a `BadRequest`
/// reply with the same identity, so the peer learns why instead of waiting.
/// Other messages over the limit cannot occur (the runtime makes them small)
/// and are dropped. A large payload is shared, not copied (see
/// [`FrameBuf`]).
pub fn append(codec: &FrameCodec, message: &Message, out: &mut FrameBuf) {
    match message {
        Message::Reply(reply) => append_reply(codec, reply, out),
        other => {
            let _ = if FrameBuf::shares(payload_len(other)) {
                codec
                    .encode_header(other, out.head_mut())
                    .map(|payload| out.put_shared(payload))
            } else {
                codec.encode(other, out.head_mut())
            };
        }
    }
}

/// [`append`] for a reply the caller only borrows.
pub fn append_reply(codec: &FrameCodec, reply: &Reply, out: &mut FrameBuf) {
    let appended = if FrameBuf::shares(reply.payload.len()) {
        codec
            .encode_reply_header(reply, out.head_mut())
            .map(|payload| out.put_shared(payload))
    } else {
        codec.encode_reply(reply, out.head_mut())
    };
    if let Err(e) = appended {
        let refusal = Reply {
            outcome: Outcome::BadRequest,
            payload: Bytes::from(e.to_string()),
            ..reply.clone()
        };
        // The message is far below any limit.
        let _ = codec.encode_reply(&refusal, out.head_mut());
    }
}

/// The payload bytes of the kinds that carry one in full (requests,
/// descriptions); others are small.
fn payload_len(message: &Message) -> usize {
    match message {
        Message::Request(r) => r.payload.len(),
        Message::Description(d) => d.payload.len(),
        _ => 0,
    }
}

/// A connection-level error: the connection ends for `kind`'s reason.
pub fn connection_error(incarnation: Incarnation, kind: ConnErrorKind, message: String) -> Message {
    Message::ConnError(ConnError {
        incarnation,
        kind,
        message: Bytes::from(message),
    })
}

/// The outcome and payload that report a dispatch result to the client.
pub fn outcome_of(result: Result<Bytes, DispatchError>) -> (Outcome, Bytes) {
    match result {
        Ok(body) => (Outcome::Ok, body),
        Err(DispatchError::UnknownMethod(m)) => (Outcome::UnknownMethod, Bytes::from(m)),
        Err(DispatchError::BadArgs(m)) => (Outcome::BadRequest, Bytes::from(m)),
        Err(DispatchError::EncodeReply(m) | DispatchError::BadReply(m)) => {
            (Outcome::AppError, Bytes::from(m))
        }
        Err(DispatchError::Rejected(m)) => (Outcome::Refused(Refusal::Overloaded), Bytes::from(m)),
        Err(DispatchError::Overloaded {
            message,
            retry_after,
        }) => (Outcome::Overloaded { retry_after }, Bytes::from(message)),
        Err(DispatchError::OutcomeUnknown(m)) => (Outcome::OutcomeUnknown, Bytes::from(m)),
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

/// A fresh client secret from the operating system's cryptographic
/// randomness: the secret is what proves a client id, so it must not be
/// predictable from anything another peer can see. `None` if the OS
/// has no randomness to give.
pub fn os_random_secret() -> Option<ClientSecret> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; crate::wire::CLIENT_SECRET_BYTES];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(ClientSecret(u128::from_le_bytes(bytes)))
}
