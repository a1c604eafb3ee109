//! The frame codec: round trips, totality on arbitrary input, split reads,
//! and one test per decode error.
#![allow(clippy::unwrap_used)]

use bytes::{BufMut, Bytes, BytesMut};
use ebb_core::{ClientId, Nanos};
use ebb_rpc::wire::{
    CLIENT_SECRET_BYTES, ClientSecret, ConnError, ConnErrorKind, Describe, Description, FrameCodec,
    HEADER_BYTES, Incarnation, LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES, MAX_TOKEN_BYTES, Message,
    Outcome, Ping, Pong, Refusal, Reply, Request, Seq, WIRE_VERSION, WireError,
    decode_message as decode_frame, encode_message as encode_frame,
};
use proptest::prelude::*;

type Frame = Message;

fn refusal() -> impl Strategy<Value = Refusal> {
    (1u8..=12).prop_map(|b| Refusal::from_u8(b).unwrap())
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Ok),
        Just(Outcome::UnknownMethod),
        Just(Outcome::BadRequest),
        Just(Outcome::OutcomeUnknown),
        refusal().prop_map(Outcome::Refused),
        any::<u64>().prop_map(|n| Outcome::Overloaded {
            retry_after: Nanos(n)
        }),
        Just(Outcome::AppError),
        Just(Outcome::Panicked),
    ]
}

fn incarnation() -> impl Strategy<Value = Incarnation> {
    (1u64..).prop_map(|n| Incarnation::new(n).unwrap())
}

fn payload() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

fn frame() -> impl Strategy<Value = Message> {
    let client = any::<u128>().prop_map(ClientId);
    let seq = any::<u64>().prop_map(Seq);
    prop_oneof![
        (
            client.clone(),
            seq.clone(),
            seq.clone(),
            proptest::option::of(incarnation()),
            any::<u64>(),
            any::<u16>(),
            any::<(bool, bool)>(),
            payload()
        )
            .prop_map(
                |(
                    client,
                    seq,
                    ack_below,
                    incarnation,
                    deadline,
                    method,
                    (idempotent, json),
                    payload,
                )| {
                    Message::Request(Request {
                        client,
                        seq,
                        ack_below,
                        incarnation,
                        deadline: Nanos(deadline),
                        method,
                        idempotent,
                        json,
                        payload,
                    })
                }
            ),
        (
            client.clone(),
            seq.clone(),
            incarnation(),
            any::<u16>(),
            any::<(bool, bool)>(),
            outcome(),
            (any::<u32>(), any::<u64>()),
            payload()
        )
            .prop_map(
                |(
                    client,
                    seq,
                    incarnation,
                    method,
                    (idempotent, json),
                    outcome,
                    (load, service),
                    payload,
                )| {
                    // A refusal's header field carries its reason or its
                    // retry-after instead: no service time.
                    let service_time = match outcome {
                        Outcome::Refused(_) | Outcome::Overloaded { .. } => Nanos::ZERO,
                        _ => Nanos(service),
                    };
                    Message::Reply(Reply {
                        client,
                        seq,
                        incarnation,
                        method,
                        idempotent,
                        json,
                        outcome,
                        load,
                        service_time,
                        payload,
                    })
                }
            ),
        (
            client.clone(),
            seq.clone(),
            seq.clone(),
            proptest::option::of(incarnation()),
            any::<u128>(),
            proptest::collection::vec(any::<u8>(), 0..=64),
        )
            .prop_map(|(client, floor, ack_below, incarnation, secret, token)| {
                Message::Ping(Ping {
                    client,
                    floor,
                    ack_below,
                    incarnation,
                    secret: ClientSecret(secret),
                    token: Bytes::from(token),
                })
            }),
        (
            client,
            seq,
            incarnation(),
            proptest::option::of(refusal()),
            any::<u32>(),
            payload()
        )
            .prop_map(|(client, floor, incarnation, refused, load, message)| {
                Message::Pong(Pong {
                    client,
                    floor,
                    incarnation,
                    refused,
                    load,
                    message,
                })
            }),
        (incarnation(), 1u8..=4, payload()).prop_map(|(incarnation, k, message)| {
            Message::ConnError(ConnError {
                incarnation,
                kind: ConnErrorKind::from_u8(k).unwrap(),
                message,
            })
        }),
        any::<u64>().prop_map(|id| Message::Describe(Describe { id })),
        (any::<u64>(), incarnation(), payload()).prop_map(|(id, incarnation, payload)| {
            Message::Description(Description {
                id,
                incarnation,
                payload,
            })
        }),
    ]
}

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

fn encoded(f: &Frame) -> BytesMut {
    let mut b = BytesMut::new();
    encode_frame(f, &mut b).unwrap();
    b
}

proptest! {
    #[test]
    fn any_frame_round_trips(f in frame()) {
        let mut buf = encoded(&f);
        prop_assert_eq!(buf.len(), f.encoded_len());
        let got = decode_frame(&mut buf).unwrap().unwrap();
        prop_assert_eq!(got, f);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn coalesced_frames_decode_in_order(fs in proptest::collection::vec(frame(), 0..8)) {
        let mut buf = BytesMut::new();
        for f in &fs {
            encode_frame(f, &mut buf).unwrap();
        }
        for f in &fs {
            prop_assert_eq!(&decode_frame(&mut buf).unwrap().unwrap(), f);
        }
        prop_assert_eq!(decode_frame(&mut buf).unwrap(), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = BytesMut::from(&bytes[..]);
        // Bounded: every successful decode consumes at least one header.
        for _ in 0..bytes.len() + 1 {
            match decode_frame(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn a_corrupted_frame_decodes_to_a_frame_or_a_typed_error(
        f in frame(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut buf = encoded(&f);
        let at = at.index(buf.len());
        buf[at] = byte;
        // Either outcome is fine; a panic or an endless loop is not.
        for _ in 0..2 {
            if !matches!(decode_frame(&mut buf), Ok(Some(_))) {
                break;
            }
        }
    }

    #[test]
    fn a_frame_split_anywhere_decodes_identically(f in frame(), cut in any::<prop::sample::Index>()) {
        let whole = encoded(&f);
        let cut = cut.index(whole.len() + 1);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&whole[..cut]);
        if cut < whole.len() {
            prop_assert_eq!(decode_frame(&mut buf).unwrap(), None);
            prop_assert_eq!(buf.len(), cut, "an incomplete frame must not be consumed");
        }
        buf.extend_from_slice(&whole[cut..]);
        prop_assert_eq!(decode_frame(&mut buf).unwrap().unwrap(), f);
    }
}

#[test]
fn header_layout_matches_the_documented_offsets() {
    let b = encoded(&sample());
    assert_eq!(&b[0..4], &((HEADER_BYTES + 5) as u32).to_le_bytes());
    assert_eq!(b[4], WIRE_VERSION);
    assert_eq!(b[5], 1, "kind request");
    assert_eq!(b[6], 0b01, "flag idempotent");
    assert_eq!(b[7], 0, "status ok");
    assert_eq!(
        &b[8..24],
        &0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10u128.to_le_bytes()
    );
    assert_eq!(&b[24..32], &7u64.to_le_bytes());
    assert_eq!(&b[32..40], &5u64.to_le_bytes());
    assert_eq!(&b[40..48], &42u64.to_le_bytes());
    assert_eq!(&b[48..56], &250_000_000u64.to_le_bytes());
    assert_eq!(&b[56..58], &3u16.to_le_bytes());
    assert_eq!(&b[58..], b"hello");
}

#[test]
fn empty_and_short_buffers_need_more() {
    for n in 0..LENGTH_PREFIX_BYTES + HEADER_BYTES + 5 {
        let whole = encoded(&sample());
        let mut buf = BytesMut::from(&whole[..n]);
        assert_eq!(decode_frame(&mut buf), Ok(None), "prefix of {n} bytes");
    }
}

#[test]
fn oversized_length_is_refused_before_buffering() {
    let mut buf = BytesMut::new();
    buf.put_u32_le((MAX_FRAME_BYTES + 1) as u32);
    assert_eq!(
        decode_frame(&mut buf),
        Err(WireError::FrameTooLarge {
            len: MAX_FRAME_BYTES + 1,
            max: MAX_FRAME_BYTES
        })
    );
}

#[test]
fn a_lower_configured_limit_applies_to_both_directions() {
    let codec = FrameCodec::with_max_frame_bytes(HEADER_BYTES + 4);
    let mut out = BytesMut::new();
    assert_eq!(
        codec.encode(&sample(), &mut out),
        Err(WireError::FrameTooLarge {
            len: HEADER_BYTES + 5,
            max: HEADER_BYTES + 4
        })
    );
    assert!(
        out.is_empty(),
        "a refused frame leaves the buffer untouched"
    );
    let mut buf = encoded(&sample());
    assert!(matches!(
        codec.decode(&mut buf),
        Err(WireError::FrameTooLarge { .. })
    ));
    assert_eq!(
        FrameCodec::with_max_frame_bytes(usize::MAX).max_frame_bytes(),
        MAX_FRAME_BYTES
    );
}

#[test]
fn length_shorter_than_the_header_is_refused() {
    let mut buf = BytesMut::new();
    buf.put_u32_le(3);
    buf.put_slice(&[1, 1, 0]);
    assert_eq!(
        decode_frame(&mut buf),
        Err(WireError::FrameTooShort {
            len: 3,
            min: HEADER_BYTES
        })
    );
}

/// Corrupts one header byte of an encoded sample and decodes it.
fn corrupt(offset: usize, value: u8) -> (Result<Option<Frame>, WireError>, BytesMut) {
    let mut buf = encoded(&sample());
    buf[offset] = value;
    buf.extend_from_slice(&encoded(&sample()));
    let r = decode_frame(&mut buf);
    (r, buf)
}

#[test]
fn unknown_version_is_refused_and_the_frame_skipped() {
    let (r, mut rest) = corrupt(4, 9);
    assert_eq!(r, Err(WireError::UnknownVersion(9)));
    assert_eq!(decode_frame(&mut rest).unwrap().unwrap(), sample());
}

#[test]
fn unknown_kind_is_refused() {
    assert_eq!(corrupt(5, 0).0, Err(WireError::UnknownKind(0)));
    assert_eq!(corrupt(5, 200).0, Err(WireError::UnknownKind(200)));
}

#[test]
fn unknown_flags_are_refused() {
    assert_eq!(
        corrupt(6, 0b100).0,
        Err(WireError::UnknownFlags {
            kind: "request",
            flags: 0b100
        })
    );
}

#[test]
fn unknown_status_is_refused() {
    assert_eq!(
        corrupt(7, 7).0,
        Err(WireError::UnknownStatus {
            kind: "request",
            status: 7
        })
    );
}

#[test]
fn a_field_a_kind_does_not_use_must_be_zero() {
    let ping = Message::Ping(sample_ping(b""));
    let mut buf = encoded(&ping);
    buf[56] = 1; // method
    assert_eq!(
        decode_frame(&mut buf),
        Err(WireError::NonZeroField {
            kind: "ping",
            field: "method"
        })
    );
}

#[test]
fn a_reply_without_an_incarnation_or_with_an_unknown_refusal_is_refused() {
    let reply = Message::Reply(Reply {
        client: ClientId(1),
        seq: Seq(1),
        incarnation: Incarnation::new(3).unwrap(),
        method: 0,
        idempotent: false,
        json: false,
        outcome: Outcome::Refused(Refusal::InFlight),
        load: 4,
        service_time: Nanos::ZERO,
        payload: Bytes::new(),
    });
    let mut buf = encoded(&reply);
    buf[40..48].copy_from_slice(&0u64.to_le_bytes());
    assert!(matches!(
        decode_frame(&mut buf),
        Err(WireError::FieldOutOfRange {
            field: "incarnation",
            ..
        })
    ));
    let mut buf = encoded(&reply);
    buf[48] = 99; // the refusal code rides in the deadline field
    assert_eq!(decode_frame(&mut buf), Err(WireError::UnknownRefusal(99)));
}

#[test]
fn payload_is_a_view_not_a_copy_of_the_read_buffer() {
    let mut buf = encoded(&sample());
    let start = buf.as_ptr() as usize;
    let Message::Request(f) = decode_frame(&mut buf).unwrap().unwrap() else {
        panic!("the sample is a request")
    };
    assert_eq!(
        f.payload.as_ptr() as usize,
        start + LENGTH_PREFIX_BYTES + HEADER_BYTES
    );
}

#[test]
fn a_reply_carries_the_servers_service_time_unless_it_is_a_refusal() {
    let reply = |outcome, service_time| Reply {
        client: ClientId(1),
        seq: Seq(1),
        incarnation: Incarnation::new(3).unwrap(),
        method: 0,
        idempotent: false,
        json: false,
        outcome,
        load: 2,
        service_time,
        payload: Bytes::new(),
    };
    let ok = Message::Reply(reply(Outcome::Ok, Nanos::from_micros(1_250)));
    let mut buf = encoded(&ok);
    assert_eq!(
        buf[48..56],
        1_250_000u64.to_le_bytes(),
        "in the deadline field"
    );
    assert_eq!(decode_frame(&mut buf).unwrap(), Some(ok));
    // A refusal's field is its reason: a service time set on it is not sent.
    let refused = Message::Reply(reply(
        Outcome::Refused(Refusal::InFlight),
        Nanos::from_micros(1_250),
    ));
    let mut buf = encoded(&refused);
    let Some(Message::Reply(back)) = decode_frame(&mut buf).unwrap() else {
        panic!("a reply decodes as a reply");
    };
    assert_eq!(
        (back.outcome, back.service_time),
        (Outcome::Refused(Refusal::InFlight), Nanos::ZERO)
    );
}

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

#[test]
fn a_ping_carries_its_secret_then_its_token_after_the_header() {
    let buf = encoded(&Message::Ping(sample_ping(b"tok")));
    let body = LENGTH_PREFIX_BYTES + HEADER_BYTES;
    assert_eq!(buf.len(), body + CLIENT_SECRET_BYTES + 3);
    assert_eq!(
        &buf[body..body + CLIENT_SECRET_BYTES],
        &0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10u128.to_le_bytes()
    );
    assert_eq!(&buf[body + CLIENT_SECRET_BYTES..], b"tok");
}

#[test]
fn a_ping_without_a_whole_secret_or_with_a_token_too_long_is_refused() {
    // Cut the secret short: rewrite the length prefix to end inside it.
    let mut buf = encoded(&Message::Ping(sample_ping(b"")));
    let short = HEADER_BYTES + CLIENT_SECRET_BYTES - 1;
    buf.truncate(LENGTH_PREFIX_BYTES + short);
    buf[..4].copy_from_slice(&(short as u32).to_le_bytes());
    assert_eq!(
        decode_frame(&mut buf),
        Err(WireError::FieldOutOfRange {
            kind: "ping",
            field: "payload"
        })
    );
    let mut buf = encoded(&Message::Ping(sample_ping(&[b'x'; MAX_TOKEN_BYTES + 1])));
    assert_eq!(
        decode_frame(&mut buf),
        Err(WireError::FieldOutOfRange {
            kind: "ping",
            field: "payload"
        })
    );
    let mut buf = encoded(&Message::Ping(sample_ping(&[b'x'; MAX_TOKEN_BYTES])));
    assert!(
        decode_frame(&mut buf).unwrap().is_some(),
        "the bound itself decodes"
    );
}

#[test]
fn a_secret_proves_only_its_own_id() {
    let a = ClientSecret(1);
    let b = ClientSecret(2);
    assert!(a.proves(a.client_id()));
    assert!(!b.proves(a.client_id()));
    assert_ne!(a.client_id(), b.client_id());
    assert_eq!(
        a.client_id(),
        ClientSecret(1).client_id(),
        "derived, not drawn"
    );
    assert!(
        !format!("{a:?}").contains("0x1"),
        "Debug shows the id, not the secret"
    );
}
