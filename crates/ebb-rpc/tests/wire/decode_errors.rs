//! The header as documented, and one test per way a frame is refused:
//! too short, too long, an unknown version, kind, flag or status, a field
//! its kind does not use, a reply without an incarnation, a resize's
//! capacity out of its range.

use super::*;

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

/// `frame` encoded with its `ack_below` field (a resize's capacity, bytes
/// 32..40) set to `capacity`, then decoded.
fn with_capacity(frame: &Frame, capacity: u64) -> Result<Option<Frame>, WireError> {
    let mut buf = encoded(frame);
    buf[32..40].copy_from_slice(&capacity.to_le_bytes());
    decode_frame(&mut buf)
}

/// A resize asks for 1 ..= `u32::MAX`: 0 and anything wider are refused
/// as out of range. A resized answer may say 0 (the server does not
/// resize), not more than `u32`, and must carry the server's incarnation.
#[test]
fn a_resize_capacity_outside_its_range_is_refused() {
    let out_of_range = |kind| {
        Err(WireError::FieldOutOfRange {
            kind,
            field: "capacity",
        })
    };
    let resize = Message::Resize(Resize {
        id: 3,
        capacity: std::num::NonZeroU32::MIN,
    });
    assert_eq!(with_capacity(&resize, 0), out_of_range("resize"));
    assert_eq!(
        with_capacity(&resize, u64::from(u32::MAX) + 1),
        out_of_range("resize")
    );
    let widest = with_capacity(&resize, u64::from(u32::MAX)).unwrap();
    assert!(
        matches!(widest, Some(Message::Resize(r)) if r.capacity.get() == u32::MAX),
        "{widest:?}"
    );
    let resized = Message::Resized(Resized {
        id: 3,
        incarnation: Incarnation::new(5).unwrap(),
        capacity: std::num::NonZeroU32::new(2),
    });
    let none = with_capacity(&resized, 0).unwrap();
    assert!(
        matches!(none, Some(Message::Resized(r)) if r.capacity.is_none()),
        "{none:?}"
    );
    assert_eq!(
        with_capacity(&resized, u64::from(u32::MAX) + 1),
        out_of_range("resized")
    );
    let mut buf = encoded(&resized);
    buf[40..48].copy_from_slice(&0u64.to_le_bytes());
    assert_eq!(
        decode_frame(&mut buf),
        Err(WireError::FieldOutOfRange {
            kind: "resized",
            field: "incarnation"
        })
    );
    let mut buf = encoded(&resize);
    buf[40] = 1;
    assert_eq!(
        decode_frame(&mut buf),
        Err(WireError::NonZeroField {
            kind: "resize",
            field: "incarnation"
        })
    );
}
