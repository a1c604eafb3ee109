//! Which calls run, which get the saved reply, and which are refused:
//! at-most-once and idempotent calls, sequence numbers against the floor
//! and the window, incarnations, deadlines, and pruning.

use super::*;

#[test]
fn new_at_most_once_call_executes_once_and_duplicates_get_the_saved_reply() {
    let mut s = handshaken();
    let inc = executes(
        s.admit(CONN, req(1, 1, INC, false), t(Nanos(1))),
        "first copy must execute",
    );
    assert_eq!(inc.payload, Bytes::from_static(b"args"));
    assert_eq!(
        s.admit(CONN, req(1, 1, INC, false), t(Nanos(2))),
        Action::Wait
    );
    let (reply, _) = s.complete(inc.key, Outcome::Ok, Bytes::from_static(b"r1"), t(Nanos(3)));
    assert_eq!((reply.seq, reply.incarnation), (Seq(1), incarnation(INC)));
    assert_eq!(
        s.admit(CONN, req(1, 1, INC, false), t(Nanos(4))),
        Action::Reply(Message::Reply(reply))
    );
    // Each duplicate counted by what became of it.
    let st = s.stats();
    assert_eq!((st.executed, st.waits, st.saved_replies), (1, 1, 1));
}

#[test]
fn idempotent_calls_keep_no_state_and_run_every_time() {
    let mut s = handshaken();
    for _ in 0..3 {
        let a = s.admit(CONN, req(1, 1, 0, true), t(Nanos(1)));
        assert!(matches!(a, Action::Execute(_)));
    }
    assert_eq!(s.table().entries(), 0);
    // Idempotent calls need no session at all.
    let mut fresh = server();
    assert!(matches!(
        fresh.admit(CONN, req(1, 1, 0, true), t(Nanos(1))),
        Action::Execute(_)
    ));
}

#[test]
fn request_naming_another_incarnation_is_refused_outcome_unknown() {
    let mut s = handshaken();
    let a = s.admit(CONN, req(1, 1, INC + 1, false), t(Nanos(1)));
    assert_eq!(status_of(a), Outcome::OutcomeUnknown);
    assert_eq!(s.table().entries(), 0, "an orphan leaves no state behind");
}

#[test]
fn at_most_once_call_without_a_session_is_refused_outcome_unknown() {
    // The connection proved the id, but the session has expired since.
    let mut s = expiring();
    pong_of(&mut s, ping(1), Instant::EPOCH);
    assert_eq!(s.expire_idle(t(Nanos::from_secs(2))), 1);
    assert_eq!(
        status_of(s.admit(CONN, req(1, 1, INC, false), t(Nanos::from_secs(2)))),
        Outcome::OutcomeUnknown
    );
}

#[test]
fn seq_below_acknowledged_below_is_dropped_and_its_reply_forgotten() {
    let mut s = handshaken();
    let inc = executes(s.admit(CONN, req(1, 1, INC, false), t(Nanos(1))), "it runs");
    s.complete(inc.key, Outcome::Ok, Bytes::new(), t(Nanos(2)));
    assert_eq!(s.table().entries(), 1);
    assert!(matches!(
        s.admit(CONN, req(2, 2, INC, false), t(Nanos(3))),
        Action::Execute(_)
    ));
    assert_eq!(s.table().entries(), 1, "reply 1 pruned, marker 2 kept");
    assert_eq!(
        s.admit(CONN, req(1, 1, INC, false), t(Nanos(4))),
        Action::Drop
    );
}

#[test]
fn seq_below_the_session_floor_is_refused_outcome_unknown() {
    let mut s = server();
    pong_of(&mut s, ping(10), Instant::EPOCH);
    assert_eq!(
        status_of(s.admit(CONN, req(9, 1, INC, false), t(Nanos(1)))),
        Outcome::OutcomeUnknown
    );
    assert_eq!(s.stats().too_old, 1, "counted as a duplicate too old");
    assert!(matches!(
        s.admit(CONN, req(10, 1, INC, false), t(Nanos(1))),
        Action::Execute(_)
    ));
}

#[test]
fn seq_outside_the_window_is_a_bad_request_and_records_nothing() {
    let mut s = handshaken();
    let a = s.admit(
        CONN,
        req(1 + MAX_REPLIES_PER_CLIENT, 1, INC, false),
        t(Nanos(1)),
    );
    assert_eq!(status_of(a), Outcome::BadRequest);
    assert_eq!(s.table().entries(), 0);
}

#[test]
fn expired_deadline_is_rejected_and_the_rejection_is_remembered() {
    let mut s = handshaken();
    let mut r = req(1, 1, INC, false);
    r.deadline = Nanos::ZERO;
    assert_eq!(
        status_of(s.admit(CONN, r, t(Nanos(1)))),
        Outcome::Refused(Refusal::DeadlinePassed)
    );
    // A slower copy with time left must not run it after the rejection.
    assert_eq!(
        status_of(s.admit(CONN, req(1, 1, INC, false), t(Nanos(2)))),
        Outcome::Refused(Refusal::DeadlinePassed)
    );
}

#[test]
fn full_client_table_rejects_the_handshake_until_a_session_expires() {
    let cfg = ServerConfig {
        max_clients: 1,
        session_expiry: Nanos::from_secs(10),
        ..ServerConfig::default()
    };
    let mut s = server_with(cfg);
    pong_of(&mut s, ping(1), Instant::EPOCH);
    let other = ping_from(6, 1);
    assert_eq!(
        pong_of(&mut s, other.clone(), t(Nanos::from_secs(5))).refused,
        Some(Refusal::Sessions)
    );
    assert_eq!(
        pong_of(&mut s, other, t(Nanos::from_secs(10))).refused,
        None
    );
    // The evicted client's old calls are now refused, never re-run.
    assert_eq!(
        status_of(s.admit(CONN, req(1, 1, INC, false), t(Nanos::from_secs(11)))),
        Outcome::OutcomeUnknown
    );
}

#[test]
fn a_restarted_server_never_runs_a_call_of_the_previous_incarnation() {
    let mut s = handshaken();
    assert!(matches!(
        s.admit(CONN, req(1, 1, INC, false), t(Nanos(1))),
        Action::Execute(_)
    ));
    // Crash: all state lost, new incarnation. The client re-handshakes with
    // its floor (2: seq 1 was sent) and resends seq 1 naming the old one.
    let mut s2 = open(ServerSession::new(
        incarnation(INC + 1),
        ServerConfig::default(),
    ));
    pong_of(&mut s2, ping(2), t(Nanos(2)));
    assert_eq!(
        status_of(s2.admit(CONN, req(1, 1, INC, false), t(Nanos(3)))),
        Outcome::OutcomeUnknown
    );
    // Even a copy naming the new incarnation (or none) is below the floor.
    assert_eq!(
        status_of(s2.admit(CONN, req(1, 1, INC + 1, false), t(Nanos(3)))),
        Outcome::OutcomeUnknown
    );
}

#[test]
fn reply_and_pong_frames_sent_to_a_server_are_dropped() {
    let mut s = handshaken();
    let r = req(1, 1, INC, false);
    let reply = Reply::to(&r, incarnation(INC), Outcome::Ok, Bytes::new());
    assert_eq!(s.admit(CONN, reply, t(Nanos(1))), Action::Drop);
}

#[test]
fn completing_a_call_whose_session_was_evicted_still_replies_but_records_nothing() {
    let cfg = ServerConfig {
        max_clients: 1,
        session_expiry: Nanos::from_secs(1),
        ..ServerConfig::default()
    };
    let mut s = server_with(cfg);
    pong_of(&mut s, ping(1), Instant::EPOCH);
    let inc = executes(s.admit(CONN, req(1, 1, INC, false), t(Nanos(1))), "it runs");
    let other = ping_from(6, 1);
    assert_eq!(pong_of(&mut s, other, t(Nanos::from_secs(2))).refused, None);
    let (reply, route) = s.complete(
        inc.key,
        Outcome::Ok,
        Bytes::from_static(b"r"),
        t(Nanos::from_secs(3)),
    );
    assert_eq!(
        route,
        Some(CONN),
        "the reply still goes to the open connection"
    );
    assert_eq!((reply.seq, reply.outcome), (Seq(1), Outcome::Ok));
    assert_eq!(s.table().entries(), 0);
}

#[test]
fn a_ping_raises_acknowledged_below_and_prunes() {
    let mut s = handshaken();
    let inc = executes(s.admit(CONN, req(1, 1, INC, false), t(Nanos(1))), "it runs");
    s.complete(inc.key, Outcome::Ok, Bytes::new(), t(Nanos(2)));
    let mut p = ping(2);
    p.ack_below = Seq(2);
    pong_of(&mut s, p, t(Nanos(3)));
    assert_eq!(s.table().entries(), 0);
}

/// Nodes restored from one VM snapshot are clones: same incarnation, same
/// (empty) session table. A client whose node died and whose address now
/// reaches a clone sees the same incarnation, so rule 1 cannot help; the
/// floor its ping carries makes the clone refuse the resent call instead of
/// running it a second time.
#[test]
fn a_clone_with_the_same_incarnation_refuses_a_call_sent_to_its_twin() {
    let mut twin = handshaken();
    let mut clone = server();
    assert!(matches!(
        twin.admit(CONN, req(1, 1, INC, false), t(Nanos(1))),
        Action::Execute(_)
    ));
    // The client reconnects, reaches the clone, and opens its session with
    // the floor one above the highest at-most-once seq it sent.
    let pong = pong_of(&mut clone, ping(2), t(Nanos(2)));
    assert_eq!(
        pong.incarnation,
        incarnation(INC),
        "the clone cannot tell itself apart"
    );
    assert_eq!(
        status_of(clone.admit(CONN, req(1, 1, INC, false), t(Nanos(3)))),
        Outcome::OutcomeUnknown
    );
    assert!(matches!(
        clone.admit(CONN, req(2, 1, INC, false), t(Nanos(4))),
        Action::Execute(_)
    ));
}

#[test]
fn a_panicked_call_is_recorded_and_its_duplicates_get_the_panic() {
    let mut s = handshaken();
    let inc = executes(s.admit(CONN, req(1, 1, INC, false), t(Nanos(1))), "it runs");
    let (reply, _) = s.complete(
        inc.key,
        Outcome::Panicked,
        Bytes::from_static(b"the method panicked"),
        t(Nanos(2)),
    );
    assert_eq!(reply.outcome, Outcome::Panicked);
    assert_eq!(
        status_of(s.admit(CONN, req(1, 1, INC, false), t(Nanos(3)))),
        Outcome::Panicked
    );
    assert_eq!(s.stats().panicked, 1);
    assert_eq!(s.stats().executed, 1);
}
