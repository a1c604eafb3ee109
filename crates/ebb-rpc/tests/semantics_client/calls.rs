//! A call from start to its end: what waits for the handshake, what a
//! reply delivers, how error statuses map to typed errors, and the bounds
//! on calls outstanding and on the at-most-once window.

use super::*;

#[test]
fn at_most_once_calls_wait_for_the_handshake_idempotent_ones_do_not() {
    let mut s = ClientSession::new(MY_SECRET, cfg(), Instant::EPOCH);
    let amo = call(&mut s, false, Instant::EPOCH);
    let idem = call(&mut s, true, Instant::EPOCH);
    assert!(
        drain(&mut s).is_empty(),
        "nothing goes out while disconnected"
    );
    s.handle_connected(t(Nanos(1)));
    let f = drain(&mut s);
    assert_eq!(
        f.iter().map(|f| (kind(f), seq(f))).collect::<Vec<_>>(),
        vec![("ping", 1), ("request", idem.0)]
    );
    s.handle_message(pong(INC, None), t(Nanos(2)));
    let f = drain(&mut s);
    assert_eq!(f.len(), 1);
    assert_eq!((seq(&f[0]), named(&f[0]), ack(&f[0])), (amo.0, INC, 1));
}

#[test]
fn a_reply_ends_its_call_with_the_payload_and_advances_ack_below() {
    let mut s = ready();
    let a = call(&mut s, false, t(Nanos(1)));
    let b = call(&mut s, false, t(Nanos(1)));
    let f = drain(&mut s);
    s.handle_message(reply(&f[0], INC, Outcome::Ok, b"r"), t(Nanos(2)));
    assert_eq!(s.poll_event(), Some((a, Ok(Bytes::from_static(b"r")))));
    assert_eq!(s.ack_below(), Seq(b.0));
    // A duplicate reply is ignored.
    s.handle_message(reply(&f[0], INC, Outcome::Ok, b"r"), t(Nanos(3)));
    assert_eq!(s.poll_event(), None);
}

#[test]
fn a_reply_whose_method_differs_is_not_delivered() {
    let mut s = ready();
    call(&mut s, false, t(Nanos(1)));
    let Message::Reply(mut r) = reply(&drain(&mut s)[0], INC, Outcome::Ok, b"x") else {
        unreachable!()
    };
    r.method += 1;
    s.handle_message(Message::Reply(r), t(Nanos(2)));
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.outstanding(), 1);
}

#[test]
fn error_statuses_map_to_typed_errors() {
    let cases = [
        (Outcome::UnknownMethod, "UnknownMethod"),
        (Outcome::BadRequest, "BadRequest"),
        (Outcome::Refused(Refusal::InFlight), "Refused"),
        (Outcome::AppError, "Remote"),
        (Outcome::Panicked, "Panicked"),
    ];
    for (status, name) in cases {
        let mut s = ready();
        let id = call(&mut s, false, t(Nanos(1)));
        let f = drain(&mut s);
        s.handle_message(reply(&f[0], INC, status, b"why"), t(Nanos(2)));
        let status = format!("{status:?}");
        let (got, r) = s.poll_event().unwrap();
        assert_eq!(got, id);
        assert!(
            format!("{:?}", r.unwrap_err()).starts_with(name),
            "{status:?}"
        );
    }
}

#[test]
fn outstanding_calls_are_bounded() {
    let mut s = ClientSession::new(
        MY_SECRET,
        ClientConfig {
            max_outstanding_calls: 2,
            ..cfg()
        },
        Instant::EPOCH,
    );
    call(&mut s, true, Instant::EPOCH);
    call(&mut s, true, Instant::EPOCH);
    assert_eq!(
        s.start_call(1, true, Bytes::new(), t(SEC), Instant::EPOCH),
        Err(CallError::TooManyOutstanding { limit: 2 })
    );
}

#[test]
fn at_most_once_calls_beyond_the_window_wait_for_the_lowest_to_end() {
    let mut s = ready();
    let first = call(&mut s, false, Instant::EPOCH);
    for _ in 0..MAX_REPLIES_PER_CLIENT {
        call(&mut s, false, Instant::EPOCH);
    }
    let f = drain(&mut s);
    assert_eq!(f.len() as u64, MAX_REPLIES_PER_CLIENT);
    assert!(f.iter().all(|f| seq(f) < ack(f) + MAX_REPLIES_PER_CLIENT));
    s.handle_message(reply(&f[0], INC, Outcome::Ok, b""), t(Nanos(1)));
    assert_eq!(s.poll_event().unwrap().0, first);
    let f = drain(&mut s);
    assert_eq!(f.len(), 1);
    assert_eq!(seq(&f[0]), 1 + MAX_REPLIES_PER_CLIENT);
}
