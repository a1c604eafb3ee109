//! The client rules, one test each, with time as plain integers.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use ebb_core::{ClientId, Instant, Nanos};

/// The instant `n` after the epoch.
fn t(n: Nanos) -> Instant {
    Instant::EPOCH + n
}
use ebb_rpc::CallError;
use ebb_rpc::semantics::{CallId, ClientConfig, ClientSession, LinkState, MAX_REPLIES_PER_CLIENT};
use ebb_rpc::wire::{
    ClientSecret, ConnErrorKind, Incarnation, Message, Outcome, Pong, Refusal, Reply, Seq,
};

const MY_SECRET: ClientSecret = ClientSecret(42);

/// This session's id, which its secret proves.
fn me() -> ClientId {
    MY_SECRET.client_id()
}
const INC: u64 = 1000;
const SEC: Nanos = Nanos::from_secs(1);

fn cfg() -> ClientConfig {
    ClientConfig {
        max_outstanding_calls: 4096,
        ..ClientConfig::default()
    }
}

fn drain(s: &mut ClientSession) -> Vec<Message> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn inc(n: u64) -> Incarnation {
    Incarnation::new(n).unwrap()
}

fn pong(n: u64, refused: Option<Refusal>) -> Message {
    Message::Pong(Pong {
        client: me(),
        floor: Seq(1),
        incarnation: inc(n),
        refused,
        load: 0,
        message: Bytes::new(),
    })
}

fn reply(to: &Message, n: u64, outcome: Outcome, payload: &'static [u8]) -> Message {
    let Message::Request(r) = to else {
        panic!("a reply answers a request, not {to:?}")
    };
    Message::Reply(Reply::to(r, inc(n), outcome, Bytes::from_static(payload)))
}

/// "ping" or "request" (what a client sends).
fn kind(m: &Message) -> &'static str {
    match m {
        Message::Ping(_) => "ping",
        Message::Request(_) => "request",
        other => panic!("a client does not send {other:?}"),
    }
}

/// A request's seq, or a ping's floor.
fn seq(m: &Message) -> u64 {
    match m {
        Message::Ping(p) => p.floor.0,
        Message::Request(r) => r.seq.0,
        other => panic!("a client does not send {other:?}"),
    }
}

/// The incarnation a request or ping names (0: none).
fn named(m: &Message) -> u64 {
    match m {
        Message::Ping(p) => p.incarnation.map_or(0, Incarnation::get),
        Message::Request(r) => r.incarnation.map_or(0, Incarnation::get),
        other => panic!("a client does not send {other:?}"),
    }
}

fn ack(m: &Message) -> u64 {
    match m {
        Message::Ping(p) => p.ack_below.0,
        Message::Request(r) => r.ack_below.0,
        other => panic!("a client does not send {other:?}"),
    }
}

/// Connected and handshaken with incarnation `INC` at time 0.
fn ready() -> ClientSession {
    let mut s = ClientSession::new(MY_SECRET, cfg(), Instant::EPOCH);
    s.handle_connected(Instant::EPOCH);
    let f = drain(&mut s);
    assert_eq!(f.len(), 1);
    assert_eq!(kind(&f[0]), "ping");
    s.handle_message(pong(INC, None), Instant::EPOCH);
    assert_eq!(s.link(), LinkState::Ready);
    s
}

fn call(s: &mut ClientSession, idempotent: bool, now: Instant) -> CallId {
    s.start_call(
        7,
        idempotent,
        Bytes::from_static(b"a"),
        now + Nanos::from_secs(10),
        now,
    )
    .unwrap()
}

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
fn unanswered_calls_are_resent_with_backoff_up_to_the_bound() {
    let c = cfg();
    let mut s = ready();
    let deadline = t(Nanos::from_secs(60));
    let id = s
        .start_call(7, false, Bytes::new(), deadline, Instant::EPOCH)
        .unwrap();
    drain(&mut s);
    let mut sends = Vec::new();
    let mut now = Instant::EPOCH;
    for _ in 0..100 {
        let Some(t) = s.poll_timeout() else { break };
        if t >= deadline {
            break;
        }
        now = t;
        s.handle_timeout(now);
        for f in drain(&mut s) {
            match kind(&f) {
                "request" => {
                    assert_eq!(seq(&f), id.0, "a resend keeps its seq");
                    sends.push(now);
                }
                // Keep the failure detector quiet.
                _ => s.handle_message(pong(INC, None), now),
            }
        }
    }
    assert_eq!(sends.len(), c.max_retransmits as usize);
    assert_eq!(sends[0], t(c.backoff(0)));
    assert_eq!(sends[1].saturating_since(sends[0]), c.backoff(1));
    assert!(now < deadline, "resends stopped before the deadline");
}

#[test]
fn every_call_ends_by_its_deadline() {
    let mut s = ready();
    let id = s
        .start_call(
            1,
            false,
            Bytes::new(),
            t(Nanos::from_millis(50)),
            Instant::EPOCH,
        )
        .unwrap();
    drain(&mut s);
    assert!(s.poll_timeout().unwrap() <= t(Nanos::from_millis(50)));
    s.handle_timeout(t(Nanos::from_millis(50)));
    assert_eq!(
        s.poll_event(),
        Some((
            id,
            Err(CallError::DeadlineExceeded {
                elapsed: Nanos::from_millis(50),
                sent: true
            })
        ))
    );
}

#[test]
fn a_call_still_disconnected_at_its_deadline_ends_connection_lost() {
    let mut s = ready();
    let id = call(&mut s, true, Instant::EPOCH);
    s.handle_disconnect(t(Nanos(5)));
    s.handle_timeout(t(Nanos::from_secs(10)));
    assert!(matches!(
        s.poll_event(),
        Some((got, Err(CallError::ConnectionLost { sent: true, .. }))) if got == id
    ));
}

#[test]
fn calls_are_resent_with_the_same_seq_after_a_reconnect() {
    let mut s = ready();
    let id = call(&mut s, false, Instant::EPOCH);
    drain(&mut s);
    s.handle_disconnect(t(Nanos(1)));
    s.handle_connected(t(Nanos(2)));
    let f = drain(&mut s);
    assert_eq!(f.len(), 1, "at-most-once resends wait for the handshake");
    assert_eq!(
        seq(&f[0]),
        2,
        "the handshake ping carries the floor above seq 1"
    );
    s.handle_message(pong(INC, None), t(Nanos(3)));
    let f = drain(&mut s);
    assert_eq!((seq(&f[0]), named(&f[0])), (id.0, INC));
}

#[test]
fn new_incarnation_ends_sent_at_most_once_calls_and_resends_idempotent_ones() {
    let mut s = ready();
    let amo = call(&mut s, false, Instant::EPOCH);
    let idem = call(&mut s, true, Instant::EPOCH);
    drain(&mut s);
    s.handle_disconnect(t(Nanos(1)));
    s.handle_connected(t(Nanos(2)));
    let f = drain(&mut s);
    assert_eq!(f.iter().filter(|f| kind(f) == "request").count(), 1);
    s.handle_message(pong(INC + 1, None), t(Nanos(3)));
    assert_eq!(
        s.poll_event(),
        Some((
            amo,
            Err(CallError::OutcomeUnknown {
                old: INC,
                new: INC + 1
            })
        ))
    );
    assert_eq!(s.outstanding(), 1);
    let f = drain(&mut s);
    assert!(
        f.iter().any(|f| kind(f) == "request" && seq(f) == idem.0),
        "idempotent call resent at once"
    );
    // A new at-most-once call names the new incarnation.
    call(&mut s, false, t(Nanos(4)));
    let f = drain(&mut s);
    assert_eq!(named(f.last().unwrap()), INC + 1);
}

#[test]
fn server_outcome_unknown_reply_names_both_incarnations() {
    let mut s = ready();
    let id = call(&mut s, false, Instant::EPOCH);
    let f = drain(&mut s);
    s.handle_message(
        reply(&f[0], INC, Outcome::OutcomeUnknown, b"floor"),
        t(Nanos(1)),
    );
    assert_eq!(
        s.poll_event(),
        Some((id, Err(CallError::OutcomeUnknown { old: INC, new: INC })))
    );
}

#[test]
fn idle_connection_pings_and_silence_ends_calls_server_unresponsive() {
    let c = cfg();
    let mut s = ready();
    assert_eq!(s.poll_timeout(), Some(t(c.heartbeat_interval)));
    s.handle_timeout(t(c.heartbeat_interval));
    assert_eq!(kind(&drain(&mut s)[0]), "ping");
    let id = call(&mut s, false, t(c.heartbeat_interval));
    s.handle_timeout(t(c.heartbeat_silence));
    let (got, r) = s.poll_event().unwrap();
    assert_eq!(got, id);
    assert_eq!(
        r,
        Err(CallError::ServerUnresponsive {
            silent: c.heartbeat_silence
        })
    );
    assert!(s.poll_close());
    assert_eq!(s.link(), LinkState::Disconnected);
}

/// A call whose reply is still crossing at `until`: bytes of it arrive
/// every second, and no whole message does meanwhile. Returns the call and
/// the request that went out for it.
fn call_with_a_slow_reply(s: &mut ClientSession, until: Instant) -> (CallId, Message) {
    let deadline = until + Nanos::from_secs(60);
    let id = s
        .start_call(7, true, Bytes::from_static(b"a"), deadline, Instant::EPOCH)
        .unwrap();
    let request = drain(s).remove(0);
    assert_eq!(seq(&request), id.0);
    let mut now = Instant::EPOCH;
    while now < until {
        now += SEC;
        s.handle_progress(now);
        s.handle_timeout(now);
        drain(s);
    }
    (id, request)
}

#[test]
fn a_reply_still_arriving_keeps_the_server_alive_past_the_silence_limit() {
    let c = cfg();
    let mut s = ready();
    let silence = c.heartbeat_silence;
    let until = t(silence + silence + silence);
    let (id, request) = call_with_a_slow_reply(&mut s, until);
    // No whole message for three silence limits, yet nothing ended.
    assert_eq!(s.poll_event(), None);
    assert!(!s.poll_close());
    assert_eq!(s.link(), LinkState::Ready);
    assert_eq!(s.outstanding(), 1);
    // Its last bytes complete the reply.
    s.handle_message(reply(&request, INC, Outcome::Ok, b"big"), until);
    assert_eq!(s.poll_event(), Some((id, Ok(Bytes::from_static(b"big")))));
}

#[test]
fn a_server_that_stops_mid_reply_is_unresponsive_a_silence_limit_later() {
    let c = cfg();
    let mut s = ready();
    let silence = c.heartbeat_silence;
    let last_bytes = t(silence + silence);
    let (id, _) = call_with_a_slow_reply(&mut s, last_bytes);
    assert_eq!(s.poll_event(), None);
    s.handle_timeout(last_bytes + silence.saturating_sub(Nanos::from_micros(1)));
    assert_eq!(s.poll_event(), None, "not yet silent for the limit");
    s.handle_timeout(last_bytes + silence);
    assert_eq!(
        s.poll_event(),
        Some((id, Err(CallError::ServerUnresponsive { silent: silence })))
    );
    assert!(s.poll_close());
    // Bytes of a broken connection's frame revive nothing.
    s.handle_progress(last_bytes + silence);
    assert_eq!(s.link(), LinkState::Disconnected);
}

#[test]
fn silence_spares_calls_that_were_never_sent() {
    let c = cfg();
    let mut s = ClientSession::new(MY_SECRET, c, Instant::EPOCH);
    s.handle_connected(Instant::EPOCH);
    drain(&mut s);
    // Held: at-most-once calls wait for the pong that never comes.
    let id = call(&mut s, false, Instant::EPOCH);
    s.handle_timeout(t(c.heartbeat_silence));
    assert_eq!(s.poll_event(), None);
    assert!(s.poll_close());
    assert_eq!(s.outstanding(), 1);
    s.handle_connected(t(c.heartbeat_silence));
    s.handle_message(pong(INC, None), t(c.heartbeat_silence));
    let f = drain(&mut s);
    assert_eq!(seq(f.last().unwrap()), id.0, "sent on the next connection");
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
fn only_idempotent_calls_can_move_to_another_server() {
    let mut s = ready();
    let amo = call(&mut s, false, Instant::EPOCH);
    let idem = call(&mut s, true, Instant::EPOCH);
    assert!(s.take_idempotent(amo).is_none());
    let moved = s.take_idempotent(idem).unwrap();
    assert_eq!(moved.method, 7);
    assert_eq!(s.outstanding(), 1);
    assert_eq!(s.poll_event(), None, "a moved call has no outcome here");
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

/// A reply naming the connection, not a call.
fn connection_error(kind: ConnErrorKind, why: &'static str) -> Message {
    ebb_rpc::transport::frames::connection_error(inc(INC), kind, why.into())
}

#[test]
fn a_connection_turned_away_unread_ends_the_calls_sent_only_on_it() {
    let mut s = ready();
    let earlier = call(&mut s, false, Instant::EPOCH);
    assert_eq!(drain(&mut s).len(), 1, "sent on the first connection");
    s.handle_disconnect(t(SEC));
    s.handle_connected(t(SEC));
    let fresh = call(&mut s, true, t(SEC));
    assert!(!drain(&mut s).is_empty());
    s.handle_message(
        connection_error(ConnErrorKind::ServerFull, "server full"),
        t(SEC),
    );
    assert!(
        matches!(s.poll_event(), Some((id, Err(CallError::Refused { reason: Refusal::ServerFull, message }))) if id == fresh && message == "server full")
    );
    assert!(
        s.poll_event().is_none(),
        "the earlier call may have run: it waits"
    );
    assert!(
        s.poll_close(),
        "the transport must drop the refused connection"
    );
    assert_eq!(s.link(), LinkState::Disconnected);
    assert_eq!(s.outstanding(), 1);
    let _ = earlier;
}

#[test]
fn a_connection_whose_framing_the_server_refused_ends_every_call() {
    let mut s = ready();
    call(&mut s, false, Instant::EPOCH);
    call(&mut s, true, Instant::EPOCH);
    s.handle_message(
        connection_error(ConnErrorKind::BadFrame, "frame too large"),
        t(SEC),
    );
    let ended: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(ended.len(), 2);
    assert!(
        ended
            .iter()
            .all(|(_, r)| matches!(r, Err(CallError::Protocol { sent: true, .. })))
    );
    assert!(s.poll_close());
}

/// A caller that learns the server is gone ends every call at once, and
/// each says whether it ever went out: one sent before the connection
/// broke may have run, one started after it certainly did not.
#[test]
fn abandoned_calls_end_at_once_saying_whether_they_were_sent() {
    let mut s = ready();
    let sent = call(&mut s, false, Instant::EPOCH);
    assert_eq!(drain(&mut s).len(), 1, "the first call went out");
    s.handle_disconnect(t(Nanos(1)));
    let unsent = call(&mut s, false, t(Nanos(2)));
    let unsent_idem = call(&mut s, true, t(Nanos(2)));
    assert!(
        drain(&mut s).is_empty(),
        "nothing goes out while disconnected"
    );
    s.abandon_all("node 3 is gone");
    let mut ended: Vec<(CallId, Result<Bytes, CallError>)> =
        std::iter::from_fn(|| s.poll_event()).collect();
    ended.sort_by_key(|(id, _)| id.0);
    let lost = |sent| {
        Err(CallError::ConnectionLost {
            sent,
            cause: "node 3 is gone".into(),
        })
    };
    assert_eq!(
        ended,
        vec![
            (sent, lost(true)),
            (unsent, lost(false)),
            (unsent_idem, lost(false))
        ]
    );
    s.handle_timeout(t(Nanos::from_secs(11)));
    assert!(
        s.poll_event().is_none(),
        "an abandoned call never ends twice"
    );
    s.check().unwrap();
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

#[test]
fn a_refused_resend_of_an_idempotent_call_does_not_end_it_as_not_run() {
    // The first copy runs (slowly); the resend meets a bound and is
    // refused. The call must not end "did not run": the first copy's reply
    // ends it.
    let mut s = ready();
    let id = call(&mut s, true, t(Nanos(1)));
    let first = drain(&mut s).pop().unwrap();
    s.handle_timeout(t(Nanos::from_millis(300)));
    let resend = drain(&mut s)
        .into_iter()
        .find(|m| kind(m) == "request")
        .expect("resent on its timer");
    s.handle_message(
        reply(
            &resend,
            INC,
            Outcome::Refused(Refusal::CallerInFlight),
            b"busy",
        ),
        t(Nanos::from_millis(300)),
    );
    assert!(s.poll_event().is_none(), "a refused resend ends nothing");
    s.handle_message(
        reply(&first, INC, Outcome::Ok, b"done"),
        t(Nanos::from_secs(6)),
    );
    assert_eq!(s.poll_event(), Some((id, Ok(Bytes::from_static(b"done")))));
}

fn payload_of(m: &Message) -> Bytes {
    match m {
        Message::Request(r) => r.payload.clone(),
        other => panic!("not a request: {other:?}"),
    }
}

#[test]
fn a_lent_payload_returns_to_its_call_and_goes_out_again_on_a_resend() {
    let mut s = ready();
    s.start_call(
        7,
        true,
        Bytes::from_static(b"lent"),
        t(Nanos::from_secs(10)),
        Instant::EPOCH,
    )
    .unwrap();
    let mut written = Vec::new();
    s.drain_transmit(|m| written.push(payload_of(m)));
    assert_eq!(written, [Bytes::from_static(b"lent")]);
    // The retransmission timer sends it again: the payload is back in the call.
    s.handle_timeout(t(Nanos::from_millis(300)));
    let again = drain(&mut s);
    assert_eq!(again.len(), 1, "one resend");
    assert_eq!(payload_of(&again[0]), Bytes::from_static(b"lent"));
    s.check().unwrap();
}

#[test]
fn a_call_that_ends_before_its_request_is_written_still_sends_its_payload() {
    let mut s = ready();
    s.start_call(
        7,
        false,
        Bytes::from_static(b"queued"),
        t(Nanos::from_secs(10)),
        Instant::EPOCH,
    )
    .unwrap();
    // The call ends (abandoned) while its request waits in the queue: the
    // request goes out as it was sent, with its payload.
    s.abandon_all("gone");
    assert_eq!(s.outstanding(), 0);
    s.check().unwrap();
    let mut written = Vec::new();
    s.drain_transmit(|m| written.push(payload_of(m)));
    assert_eq!(written, [Bytes::from_static(b"queued")]);
    s.check().unwrap();
}

/// Starts an idempotent call with a large payload on a ready session and
/// returns its id, its request, and the bytes handed to the transport so
/// far (handshake included).
fn large_call(s: &mut ClientSession, deadline: Instant) -> (CallId, Message, u64) {
    let payload = Bytes::from(vec![7u8; 1 << 20]);
    let id = s
        .start_call(7, true, payload, deadline, Instant::EPOCH)
        .unwrap();
    let request = drain(s).remove(0);
    assert_eq!(seq(&request), id.0);
    // The handshake ping went first (`ready`).
    let handed = handshake_bytes() + request.encoded_len() as u64;
    (id, request, handed)
}

fn handshake_bytes() -> u64 {
    let mut s = ClientSession::new(MY_SECRET, cfg(), Instant::EPOCH);
    s.handle_connected(Instant::EPOCH);
    drain(&mut s).iter().map(|m| m.encoded_len() as u64).sum()
}

#[test]
fn a_large_request_still_being_written_keeps_the_server_alive_and_is_not_resent() {
    let c = cfg();
    let mut s = ready();
    let until = t(c.heartbeat_silence + c.heartbeat_silence + c.heartbeat_silence);
    let (id, request, copy_end) = large_call(&mut s, until + Nanos::from_secs(60));
    // The link takes a few bytes at a time: never the whole copy before
    // `until`, three silence limits and many resend intervals later.
    let step = Nanos::from_millis(100);
    let mut now = Instant::EPOCH;
    let mut written = 0;
    while now < until {
        now += step;
        written = (written + 1000).min(copy_end - 1);
        s.handle_written(written, now);
        s.handle_timeout(now);
        let sent = drain(&mut s);
        assert!(
            sent.iter().all(|m| kind(m) == "ping"),
            "at {now}: resent while the copy was still leaving: {sent:?}"
        );
    }
    assert_eq!(s.poll_event(), None, "not declared silent");
    assert!(!s.poll_close());
    assert_eq!(s.link(), LinkState::Ready);
    let postponed = s.postponed_retransmits();
    assert!(
        postponed >= 3,
        "the resend timer fired and waited: {postponed}"
    );
    // Once the copy has left, a silent server gets the resend again (at
    // least once, as before).
    s.handle_written(copy_end, now);
    let later = now + c.max_retransmit_interval;
    s.handle_timeout(later);
    let resent = drain(&mut s);
    assert!(
        resent
            .iter()
            .any(|m| kind(m) == "request" && seq(m) == id.0),
        "{resent:?}"
    );
    s.handle_message(reply(&request, INC, Outcome::Ok, b"done"), later);
    assert_eq!(s.poll_event(), Some((id, Ok(Bytes::from_static(b"done")))));
    s.check().unwrap();
}

#[test]
fn a_write_that_stalls_is_silent_a_silence_limit_after_its_last_progress() {
    let c = cfg();
    let mut s = ready();
    let (id, _, copy_end) = large_call(&mut s, t(Nanos::from_secs(600)));
    let last_progress = t(c.heartbeat_silence + c.heartbeat_silence);
    s.handle_written(copy_end / 2, last_progress);
    s.handle_timeout(last_progress);
    drain(&mut s);
    // The same count again is no progress.
    let almost = last_progress + c.heartbeat_silence.saturating_sub(Nanos::from_micros(1));
    s.handle_written(copy_end / 2, almost);
    s.handle_timeout(almost);
    assert_eq!(s.poll_event(), None);
    s.handle_written(copy_end / 2, last_progress + c.heartbeat_silence);
    s.handle_timeout(last_progress + c.heartbeat_silence);
    assert_eq!(
        s.poll_event(),
        Some((
            id,
            Err(CallError::ServerUnresponsive {
                silent: c.heartbeat_silence
            })
        ))
    );
    assert!(s.poll_close());
}

#[test]
fn a_transport_that_reports_no_writes_gets_the_resend_on_its_timer() {
    let c = cfg();
    let mut s = ready();
    let (id, _, _) = large_call(&mut s, t(Nanos::from_secs(600)));
    s.handle_timeout(t(c.retransmit_after));
    let resent = drain(&mut s);
    assert!(
        resent
            .iter()
            .any(|m| kind(m) == "request" && seq(m) == id.0),
        "{resent:?}"
    );
    assert_eq!(s.postponed_retransmits(), 0);
}
