//! Resends and deadlines: backoff up to the bound, the same seq after a
//! reconnect, what a new incarnation means for each kind of call, and
//! which calls may move to another server.

use super::*;

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

/// A driver woken late reads the server's cancellation of an overdue call
/// (`OutcomeUnknown`, sent a grace after the deadline) before it fires the
/// deadline's timer: the call still ends `DeadlineExceeded`, as it does
/// when the timer comes first. A restart's `OutcomeUnknown` before the
/// deadline keeps its own error.
#[test]
fn a_cancellation_read_before_the_deadline_timer_ends_the_call_past_its_deadline() {
    let mut s = ready();
    let deadline = t(Nanos::from_millis(50));
    let id = s
        .start_call(1, false, Bytes::new(), deadline, Instant::EPOCH)
        .unwrap();
    let f = drain(&mut s);
    assert!(s.poll_timeout().unwrap() <= deadline);
    // The cancellation arrives at the deadline plus the server's grace; no
    // `handle_timeout` has run since the deadline passed.
    let late = t(Nanos::from_millis(150));
    s.handle_message(
        reply(&f[0], INC, Outcome::OutcomeUnknown, b"cancelled"),
        late,
    );
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
    s.handle_timeout(late);
    assert_eq!(s.poll_event(), None, "the call ended once");
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
