//! The handshake and the heartbeat: refused, unanswered, or for the
//! wrong credentials, and frames that are not this session's.

use super::*;

#[test]
fn rejected_handshake_refuses_never_sent_at_most_once_calls() {
    let mut s = ClientSession::new(MY_SECRET, cfg(), Instant::EPOCH);
    let id = call(&mut s, false, Instant::EPOCH);
    s.handle_connected(t(Nanos(1)));
    s.handle_message(pong(INC, Some(Refusal::Sessions)), t(Nanos(2)));
    assert!(matches!(
        s.poll_event(),
        Some((got, Err(CallError::Refused { reason: Refusal::Sessions, .. }))) if got == id
    ));
    assert_eq!(s.link(), LinkState::Handshaking);
}

#[test]
fn an_unanswered_handshake_is_retried_on_the_retransmit_interval() {
    let c = cfg();
    let mut s = ClientSession::new(MY_SECRET, c, Instant::EPOCH);
    s.handle_connected(Instant::EPOCH);
    drain(&mut s);
    assert_eq!(s.poll_timeout(), Some(t(c.retransmit_after)));
    s.handle_timeout(t(c.retransmit_after));
    let f = drain(&mut s);
    assert_eq!(f.len(), 1);
    assert_eq!(kind(&f[0]), "ping");
}

#[test]
fn a_refused_heartbeat_sends_the_session_back_to_handshaking() {
    let mut s = ready();
    s.handle_message(pong(INC, Some(Refusal::Sessions)), t(Nanos(1)));
    assert_eq!(s.link(), LinkState::Handshaking);
    call(&mut s, false, t(Nanos(2)));
    assert!(
        drain(&mut s).is_empty(),
        "at-most-once calls wait for a session"
    );
    s.handle_message(pong(INC, None), t(Nanos(3)));
    assert_eq!(drain(&mut s).len(), 1);
}

#[test]
fn frames_for_another_client_or_while_disconnected_are_ignored() {
    let mut s = ready();
    call(&mut s, false, t(Nanos(1)));
    let req = drain(&mut s).pop().unwrap();
    let Message::Reply(mut foreign) = reply(&req, INC, Outcome::Ok, b"x") else {
        unreachable!()
    };
    foreign.client = ClientId(43);
    s.handle_message(Message::Reply(foreign), t(Nanos(2)));
    s.handle_disconnect(t(Nanos(3)));
    s.handle_message(reply(&req, INC, Outcome::Ok, b"x"), t(Nanos(4)));
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.outstanding(), 1);
}

#[test]
fn after_a_handshake_refused_for_its_credentials_at_most_once_calls_end_at_once() {
    let mut s = ClientSession::new(MY_SECRET, cfg(), Instant::EPOCH);
    s.set_token(Bytes::from_static(b"wrong"));
    s.handle_connected(Instant::EPOCH);
    let f = drain(&mut s);
    let Message::Ping(p) = &f[0] else {
        panic!("the handshake goes first")
    };
    assert_eq!(
        (&p.token[..], p.secret.proves(p.client)),
        (&b"wrong"[..], true),
        "the handshake carries the token and proves the id"
    );
    s.handle_message(pong(INC, Some(Refusal::Unauthorized)), t(Nanos(1)));
    // A new at-most-once call would wait for a handshake that carries the
    // same token: it ends now, and did not run.
    let id = call(&mut s, false, t(Nanos(2)));
    let (ended, r) = s.poll_event().unwrap();
    assert_eq!(ended, id);
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            CallError::Refused {
                reason: Refusal::Unauthorized,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.may_have_run());
    assert!(drain(&mut s).is_empty(), "nothing was sent");
    // An accepted handshake clears it.
    s.handle_message(pong(INC, None), t(Nanos(3)));
    call(&mut s, false, t(Nanos(4)));
    assert!(s.poll_event().is_none());
    assert_eq!(drain(&mut s).len(), 1, "the call goes out");
}
