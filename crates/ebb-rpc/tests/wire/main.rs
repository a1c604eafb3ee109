//! The frame codec: round trips, totality on arbitrary input and split
//! reads ([`round_trips`], over the frames [`strategies`] draws), one test
//! per decode error ([`decode_errors`]), and what single message kinds
//! carry ([`messages`]).
#![allow(clippy::unwrap_used)]

mod decode_errors;
mod messages;
mod round_trips;
mod strategies;

use bytes::{BufMut, Bytes, BytesMut};
use ebb_core::{ClientId, Nanos};
use ebb_rpc::wire::{
    CLIENT_SECRET_BYTES, ClientSecret, ConnError, ConnErrorKind, Describe, Description, FrameCodec,
    HEADER_BYTES, Incarnation, LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES, MAX_TOKEN_BYTES, Message,
    Outcome, Ping, Pong, Refusal, Reply, Request, Resize, Resized, Seq, WIRE_VERSION, WireError,
    decode_message as decode_frame, encode_message as encode_frame,
};
use proptest::prelude::*;

type Frame = Message;

/// A request with every field set, for the layout and error tests.
fn sample() -> Frame {
    Message::Request(Request {
        client: ClientId(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
        seq: Seq(7),
        ack_below: Seq(5),
        incarnation: Incarnation::new(42),
        deadline: Nanos::from_millis(250),
        method: 3,
        idempotent: true,
        json: false,
        payload: Bytes::from_static(b"hello"),
    })
}

/// `f` encoded into a fresh buffer.
fn encoded(f: &Frame) -> BytesMut {
    let mut b = BytesMut::new();
    encode_frame(f, &mut b).unwrap();
    b
}

/// A ping carrying `token`, for the ping layout and error tests.
fn sample_ping(token: &[u8]) -> Ping {
    Ping {
        client: ClientId(1),
        floor: Seq(1),
        ack_below: Seq(1),
        incarnation: None,
        secret: ClientSecret(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
        token: Bytes::copy_from_slice(token),
    }
}
