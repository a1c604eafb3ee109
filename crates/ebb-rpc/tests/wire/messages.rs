//! What single message kinds carry: a payload that is a view of the read
//! buffer, a reply's service time, a ping's secret and token.

use super::*;

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
