//! Who may act for a client: its own secret, not a forger's handshake or
//! an unproven connection; bearer tokens; and each caller's own bound.

use super::*;

#[test]
fn a_client_lying_about_its_own_floor_cannot_make_a_completion_panic() {
    // C's session is forgotten (expired) while its call 1 runs; C's own
    // handshake with a floor below that call reopens it and a copy of call
    // 1 runs again. A correct client's floor is above every seq it sent,
    // and no other peer can send C's handshake; the server must not panic
    // all the same, and keeps the first record.
    let (mut s, first) = expiring_with_call_1_running();
    assert_eq!(s.expire_idle(t(Nanos::from_secs(2))), 1);
    pong_of(&mut s, ping(1), t(Nanos::from_secs(2)));
    let again = executes(
        s.admit(CONN, req(1, 1, INC, false), t(Nanos::from_secs(2))),
        "the reopened session has no record of call 1",
    );
    let later = t(Nanos::from_secs(3));
    s.complete(again.key, Outcome::Ok, Bytes::from_static(b"2nd"), later);
    s.complete(first.key, Outcome::Ok, Bytes::from_static(b"1st"), later);
    let Action::Reply(Message::Reply(saved)) = s.admit(CONN, req(1, 1, INC, false), later) else {
        panic!("a duplicate gets the saved reply")
    };
    assert_eq!(&saved.payload[..], b"2nd", "the first record stands");
    s.check().unwrap();
}

/// C's handshake as a peer that knows C's id but not its secret sends it.
fn forged_ping(floor: u64) -> Ping {
    Ping {
        secret: ClientSecret(666),
        ..ping(floor)
    }
}

#[test]
fn a_forged_handshake_is_refused_and_cannot_reopen_a_forgotten_session() {
    // The sequence the session fuzzer once found, now by a forger: C's
    // session expires while its call 1 runs; a peer that learned C's id
    // sends C's handshake with the old floor, then a copy of call 1.
    let (mut s, first) = expiring_with_call_1_running();
    let forger = s.open_connection(PEER, Instant::EPOCH).unwrap();
    // While the session lives: the forged resume is refused, typed, and
    // the session is untouched (same floor, same last activity).
    let before = s
        .table()
        .get(id(C_SECRET))
        .map(|c| (c.floor, c.last_active));
    let Action::Reply(Message::Pong(pong)) = s.admit(forger, forged_ping(1), t(Nanos(5))) else {
        panic!("a handshake is answered")
    };
    assert_eq!(pong.refused, Some(Refusal::Unauthenticated));
    let after = s
        .table()
        .get(id(C_SECRET))
        .map(|c| (c.floor, c.last_active));
    assert_eq!(before, after, "a forged handshake touches nothing");
    assert_eq!(s.route_of(id(C_SECRET)), Some(CONN), "nor steals the route");
    // After expiry: it cannot reopen the session, and its copy of call 1
    // does not run.
    assert_eq!(s.expire_idle(t(Nanos::from_secs(2))), 1);
    let pong = pong_of_conn(&mut s, forger, forged_ping(1), t(Nanos::from_secs(2)));
    assert_eq!(pong.refused, Some(Refusal::Unauthenticated));
    assert!(s.table().get(id(C_SECRET)).is_none(), "no session reopened");
    assert_eq!(
        status_of(s.admit(forger, req(1, 1, INC, false), t(Nanos::from_secs(2)))),
        Outcome::Refused(Refusal::Unauthenticated)
    );
    assert_eq!(s.stats().refused_forged_handshakes, 2);
    assert_eq!(s.stats().refused_unproven_requests, 1);
    assert_eq!(s.stats().executed, 1, "call 1 ran once");
    // C itself, resending on its own connection, learns the call may have
    // run (its session is gone); its completion records nothing and does
    // not panic.
    assert_eq!(
        status_of(s.admit(CONN, req(1, 1, INC, false), t(Nanos::from_secs(2)))),
        Outcome::OutcomeUnknown
    );
    s.complete(first.key, Outcome::Ok, Bytes::new(), t(Nanos::from_secs(3)));
    s.check().unwrap();
}

#[test]
fn a_request_on_a_connection_that_never_proved_its_id_cannot_act_on_the_session() {
    let mut s = handshaken();
    let inc = executes(s.admit(CONN, req(1, 1, INC, false), t(Nanos(1))), "it runs");
    let (saved, _) = s.complete(
        inc.key,
        Outcome::Ok,
        Bytes::from_static(b"mine"),
        t(Nanos(2)),
    );
    let forger = s.open_connection(PEER, Instant::EPOCH).unwrap();
    // A duplicate of call 1 would read C's saved reply; a new seq would
    // run in C's session: both refused, nothing recorded.
    for seq in [1, 2] {
        let Action::Reply(Message::Reply(r)) =
            s.admit(forger, req(seq, 1, INC, false), t(Nanos(3)))
        else {
            panic!("answered")
        };
        assert_eq!(r.outcome, Outcome::Refused(Refusal::Unauthenticated));
        assert_ne!(r.payload, saved.payload, "no saved reply leaks");
    }
    assert_eq!(s.stats().refused_unproven_requests, 2);
    // An idempotent request runs (it keeps no state), but does not
    // acknowledge anything in C's session and its reply goes back only to
    // the connection it came on.
    let idem = executes(
        s.admit(forger, req(3, 2, INC, true), t(Nanos(4))),
        "idempotent calls run",
    );
    assert_eq!(s.route_of(id(C_SECRET)), Some(CONN), "C's route stays");
    let (_, route) = s.complete(idem.key, Outcome::Ok, Bytes::new(), t(Nanos(5)));
    assert_eq!(route, Some(forger));
    assert_eq!(
        s.admit(CONN, req(1, 1, INC, false), t(Nanos(6))),
        Action::Reply(Message::Reply(Reply { load: 0, ..saved })),
        "C's saved reply is still there for C"
    );
    s.check().unwrap();
}

fn tokens(text: &str) -> ebb_rpc::auth::Tokens {
    ebb_rpc::auth::Tokens::parse(text, std::path::Path::new("tokens.txt")).unwrap()
}

fn ping_with_token(token: &'static [u8]) -> Ping {
    Ping {
        token: Bytes::from_static(token),
        ..ping(1)
    }
}

#[test]
fn a_server_requiring_a_token_refuses_handshakes_and_calls_without_one() {
    let mut s = server();
    s.set_tokens(Some(tokens("alpha\nbeta\n")));
    // No token, a wrong one, a prefix: refused, typed, no session opened.
    for bad in [&b""[..], b"gamma", b"alph"] {
        let p = Ping {
            token: Bytes::copy_from_slice(bad),
            ..ping(1)
        };
        assert_eq!(
            pong_of(&mut s, p, Instant::EPOCH).refused,
            Some(Refusal::Unauthorized)
        );
    }
    assert!(s.table().is_empty(), "no session for an unauthorized peer");
    // Calls on the unauthorized connection do not run, of either kind, and
    // are not recorded.
    for idempotent in [false, true] {
        assert_eq!(
            status_of(s.admit(CONN, req(1, 1, INC, idempotent), t(Nanos(1)))),
            Outcome::Refused(Refusal::Unauthorized)
        );
    }
    let st = s.stats();
    assert_eq!(
        (
            st.refused_unauthorized_handshakes,
            st.refused_unauthorized_requests,
            st.executed
        ),
        (3, 2, 0)
    );
    // The right token opens the session; calls run.
    assert_eq!(
        pong_of(&mut s, ping_with_token(b"beta"), t(Nanos(2))).refused,
        None
    );
    assert!(matches!(
        s.admit(CONN, req(1, 1, INC, false), t(Nanos(3))),
        Action::Execute(_)
    ));
    s.check().unwrap();
}

#[test]
fn calls_beyond_a_callers_bound_are_refused_while_another_caller_is_served() {
    let cfg = ServerConfig {
        max_in_flight_per_caller: Some(1),
        ..ServerConfig::default()
    };
    let mut s = server_with(cfg);
    s.set_tokens(Some(tokens("alice\nbob\n")));
    // Alice on two connections (CONN, and a second one), bob on a third:
    // the bound is per caller, over all its connections.
    pong_of(&mut s, ping_with_token(b"alice"), Instant::EPOCH);
    let first = executes(
        s.admit(CONN, req(1, 1, INC, false), t(Nanos(1))),
        "alice's first call runs",
    );
    let second = s.open_connection(PEER, Instant::EPOCH).unwrap();
    let alice_again = Ping {
        token: Bytes::from_static(b"alice"),
        ..ping_from(7, 1)
    };
    assert_eq!(
        pong_of_conn(&mut s, second, alice_again, t(Nanos(2))).refused,
        None
    );
    let mut other = req(1, 1, INC, false);
    other.client = id(7);
    let refused = status_of(s.admit(second, other.clone(), t(Nanos(3))));
    assert_eq!(refused, Outcome::Refused(Refusal::CallerInFlight));
    // Recorded like any refusal: a late copy gets it again, never runs.
    assert_eq!(
        status_of(s.admit(second, other.clone(), t(Nanos(4)))),
        Outcome::Refused(Refusal::CallerInFlight)
    );
    let third = s.open_connection(PEER, Instant::EPOCH).unwrap();
    let bob = Ping {
        token: Bytes::from_static(b"bob"),
        ..ping_from(8, 1)
    };
    assert_eq!(pong_of_conn(&mut s, third, bob, t(Nanos(5))).refused, None);
    let mut bobs = req(1, 1, INC, false);
    bobs.client = id(8);
    assert!(
        matches!(s.admit(third, bobs, t(Nanos(6))), Action::Execute(_)),
        "bob is served while alice is at her bound"
    );
    assert_eq!(s.stats().refused_caller_in_flight, 1);
    assert_eq!(s.in_flight_of(ebb_rpc::semantics::Caller::Token(0)), 1);
    s.check().unwrap();
    // Alice's slot comes back when her call ends.
    s.complete(first.key, Outcome::Ok, Bytes::new(), t(Nanos(7)));
    let mut next = req(2, 1, INC, false);
    next.client = id(7);
    assert!(matches!(
        s.admit(second, next, t(Nanos(8))),
        Action::Execute(_)
    ));
    s.check().unwrap();
}

#[test]
fn a_server_requiring_a_token_describes_itself_only_to_an_authorized_connection() {
    let mut s = server();
    s.set_description(Bytes::from_static(b"the methods"));
    s.set_tokens(Some(tokens("alpha\n")));
    let describe = |s: &mut ServerSession, id: u64, now: Instant| {
        s.admit(CONN, ebb_rpc::wire::Describe { id }, now)
    };
    // Before any handshake, and after a refused one: no answer.
    assert!(matches!(describe(&mut s, 1, t(Nanos(1))), Action::Drop));
    let p = Ping {
        token: Bytes::from_static(b"beta"),
        ..ping(1)
    };
    assert_eq!(
        pong_of(&mut s, p, t(Nanos(2))).refused,
        Some(Refusal::Unauthorized)
    );
    assert!(matches!(describe(&mut s, 2, t(Nanos(3))), Action::Drop));
    assert_eq!(s.stats().refused_unauthorized_describes, 2);
    // After an accepted token: the description.
    assert_eq!(
        pong_of(&mut s, ping_with_token(b"alpha"), t(Nanos(4))).refused,
        None
    );
    match describe(&mut s, 3, t(Nanos(5))) {
        Action::Reply(Message::Description(d)) => {
            assert_eq!((d.id, &d.payload[..]), (3, &b"the methods"[..]));
        }
        other => panic!("an authorized connection is described to, got {other:?}"),
    }
    assert_eq!(s.stats().refused_unauthorized_describes, 2);
    // A server without tokens describes itself to anyone.
    let mut open_server = server();
    assert!(matches!(
        describe(&mut open_server, 4, t(Nanos(6))),
        Action::Reply(Message::Description(_))
    ));
    s.check().unwrap();
}

fn resize(s: &mut ServerSession, id: u64, capacity: u32, now: Instant) -> Action {
    let capacity = std::num::NonZeroU32::new(capacity).unwrap();
    s.admit(CONN, ebb_rpc::wire::Resize { id, capacity }, now)
}

#[test]
fn a_resize_is_answered_only_on_a_connection_whose_credentials_were_accepted() {
    let mut s = server();
    s.set_tokens(Some(tokens("alpha\n")));
    s.set_resize_up_to(std::num::NonZeroU32::new(8));
    // Before any handshake, and after one with a wrong token: no answer.
    assert_eq!(resize(&mut s, 1, 2, t(Nanos(1))), Action::Drop);
    let p = Ping {
        token: Bytes::from_static(b"beta"),
        ..ping(1)
    };
    assert_eq!(
        pong_of(&mut s, p, t(Nanos(2))).refused,
        Some(Refusal::Unauthorized)
    );
    assert_eq!(resize(&mut s, 2, 2, t(Nanos(3))), Action::Drop);
    assert_eq!(s.stats().refused_unauthorized_resizes, 2);
    assert_eq!(s.stats().resizes, 0);
    // After an accepted token: the resize to apply, cut to the bound.
    assert_eq!(
        pong_of(&mut s, ping_with_token(b"alpha"), t(Nanos(4))).refused,
        None
    );
    match resize(&mut s, 3, 50, t(Nanos(5))) {
        Action::Resize(r) => {
            assert_eq!((r.id, r.capacity.map(|c| c.get())), (3, Some(8)));
        }
        other => panic!("an authorized connection may resize, got {other:?}"),
    }
    assert_eq!(s.stats().resizes, 1);
    // Nothing ran and no session was touched beyond the handshake's.
    assert_eq!(s.stats().executed, 0);
    s.check().unwrap();
}

#[test]
fn without_tokens_a_resize_needs_a_proven_client_id() {
    let mut s = server();
    s.set_resize_up_to(std::num::NonZeroU32::new(8));
    assert_eq!(resize(&mut s, 1, 2, t(Nanos(1))), Action::Drop);
    let forged = forged_ping(1);
    assert!(pong_of(&mut s, forged, t(Nanos(2))).refused.is_some());
    assert_eq!(resize(&mut s, 2, 2, t(Nanos(3))), Action::Drop);
    assert_eq!(s.stats().refused_unauthorized_resizes, 2);
    assert_eq!(pong_of(&mut s, ping(1), t(Nanos(4))).refused, None);
    assert!(matches!(
        resize(&mut s, 3, 2, t(Nanos(5))),
        Action::Resize(_)
    ));
    s.check().unwrap();
}

#[test]
fn a_server_that_does_not_resize_answers_so_without_changing_anything() {
    let mut s = server();
    assert_eq!(pong_of(&mut s, ping(1), t(Nanos(1))).refused, None);
    match resize(&mut s, 7, 4, t(Nanos(2))) {
        Action::Reply(Message::Resized(r)) => assert_eq!((r.id, r.capacity), (7, None)),
        other => panic!("a server that does not resize says so, got {other:?}"),
    }
    s.check().unwrap();
}
