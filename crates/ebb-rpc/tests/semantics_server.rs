//! The server rules, one test each, with time as plain integers.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use ebb_core::{ClientId, Instant, Nanos};

/// The instant `n` after the epoch.
fn t(n: Nanos) -> Instant {
    Instant::EPOCH + n
}
use ebb_rpc::semantics::{Action, MAX_REPLIES_PER_CLIENT, ServerConfig, ServerSession};
use ebb_rpc::wire::{FLAG_IDEMPOTENT, Frame, FrameKind, Status};

const INC: u64 = 77;
const C: ClientId = ClientId(5);

fn server() -> ServerSession {
    ServerSession::new(INC, ServerConfig::default())
}

fn ping(floor: u64) -> Frame {
    Frame {
        kind: FrameKind::Ping,
        flags: 0,
        status: Status::Ok,
        client: C,
        seq: floor,
        ack_below: 1,
        incarnation: 0,
        deadline: Nanos::ZERO,
        method: 0,
        payload: Bytes::new(),
    }
}

fn req(seq: u64, ack_below: u64, incarnation: u64, idempotent: bool) -> Frame {
    Frame {
        kind: FrameKind::Request,
        flags: if idempotent { FLAG_IDEMPOTENT } else { 0 },
        status: Status::Ok,
        client: C,
        seq,
        ack_below,
        incarnation,
        deadline: Nanos::from_secs(1),
        method: 9,
        payload: Bytes::from_static(b"args"),
    }
}

/// A server with `C`'s session open (floor 1).
fn handshaken() -> ServerSession {
    let mut s = server();
    let pong = s.handle_ping(&ping(1), Instant::EPOCH);
    assert_eq!(
        (pong.kind, pong.status, pong.incarnation),
        (FrameKind::Pong, Status::Ok, INC)
    );
    s
}

fn status_of(a: Action) -> Status {
    match a {
        Action::Reply(f) => f.status,
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn new_at_most_once_call_executes_once_and_duplicates_get_the_saved_reply() {
    let mut s = handshaken();
    let Action::Execute(inc) = s.handle_request(req(1, 1, INC, false), t(Nanos(1))) else {
        panic!("first copy must execute");
    };
    assert_eq!(inc.payload, Bytes::from_static(b"args"));
    assert_eq!(
        s.handle_request(req(1, 1, INC, false), t(Nanos(2))),
        Action::Wait
    );
    let reply = s.complete(inc.key, Status::Ok, Bytes::from_static(b"r1"), t(Nanos(3)));
    assert_eq!((reply.seq, reply.incarnation), (1, INC));
    assert_eq!(
        s.handle_request(req(1, 1, INC, false), t(Nanos(4))),
        Action::Reply(reply)
    );
}

#[test]
fn idempotent_calls_keep_no_state_and_run_every_time() {
    let mut s = handshaken();
    for _ in 0..3 {
        let a = s.handle_request(req(1, 1, 0, true), t(Nanos(1)));
        assert!(matches!(a, Action::Execute(_)));
    }
    assert_eq!(s.table().entries(), 0);
    // Idempotent calls need no session at all.
    let mut fresh = server();
    assert!(matches!(
        fresh.handle_request(req(1, 1, 0, true), t(Nanos(1))),
        Action::Execute(_)
    ));
}

#[test]
fn request_naming_another_incarnation_is_refused_outcome_unknown() {
    let mut s = handshaken();
    let a = s.handle_request(req(1, 1, INC + 1, false), t(Nanos(1)));
    assert_eq!(status_of(a), Status::OutcomeUnknown);
    assert_eq!(s.table().entries(), 0, "an orphan leaves no state behind");
}

#[test]
fn at_most_once_call_without_a_session_is_refused_outcome_unknown() {
    let mut s = server();
    assert_eq!(
        status_of(s.handle_request(req(1, 1, INC, false), t(Nanos(1)))),
        Status::OutcomeUnknown
    );
}

#[test]
fn seq_below_acknowledged_below_is_dropped_and_its_reply_forgotten() {
    let mut s = handshaken();
    let Action::Execute(inc) = s.handle_request(req(1, 1, INC, false), t(Nanos(1))) else {
        panic!()
    };
    s.complete(inc.key, Status::Ok, Bytes::new(), t(Nanos(2)));
    assert_eq!(s.table().entries(), 1);
    assert!(matches!(
        s.handle_request(req(2, 2, INC, false), t(Nanos(3))),
        Action::Execute(_)
    ));
    assert_eq!(s.table().entries(), 1, "reply 1 pruned, marker 2 kept");
    assert_eq!(
        s.handle_request(req(1, 1, INC, false), t(Nanos(4))),
        Action::Drop
    );
}

#[test]
fn seq_below_the_session_floor_is_refused_outcome_unknown() {
    let mut s = server();
    s.handle_ping(&ping(10), Instant::EPOCH);
    assert_eq!(
        status_of(s.handle_request(req(9, 1, INC, false), t(Nanos(1)))),
        Status::OutcomeUnknown
    );
    assert!(matches!(
        s.handle_request(req(10, 1, INC, false), t(Nanos(1))),
        Action::Execute(_)
    ));
}

#[test]
fn seq_outside_the_window_is_a_bad_request_and_records_nothing() {
    let mut s = handshaken();
    let a = s.handle_request(req(1 + MAX_REPLIES_PER_CLIENT, 1, INC, false), t(Nanos(1)));
    assert_eq!(status_of(a), Status::BadRequest);
    assert_eq!(s.table().entries(), 0);
}

#[test]
fn expired_deadline_is_rejected_and_the_rejection_is_remembered() {
    let mut s = handshaken();
    let mut r = req(1, 1, INC, false);
    r.deadline = Nanos::ZERO;
    assert_eq!(
        status_of(s.handle_request(r, t(Nanos(1)))),
        Status::Rejected
    );
    // A slower copy with time left must not run it after the rejection.
    assert_eq!(
        status_of(s.handle_request(req(1, 1, INC, false), t(Nanos(2)))),
        Status::Rejected
    );
}

#[test]
fn full_client_table_rejects_the_handshake_until_a_session_expires() {
    let cfg = ServerConfig {
        max_clients: 1,
        session_expiry: Nanos::from_secs(10),
    };
    let mut s = ServerSession::new(INC, cfg);
    s.handle_ping(&ping(1), Instant::EPOCH);
    let mut other = ping(1);
    other.client = ClientId(6);
    assert_eq!(
        s.handle_ping(&other, t(Nanos::from_secs(5))).status,
        Status::Rejected
    );
    assert_eq!(
        s.handle_ping(&other, t(Nanos::from_secs(10))).status,
        Status::Ok
    );
    // The evicted client's old calls are now refused, never re-run.
    assert_eq!(
        status_of(s.handle_request(req(1, 1, INC, false), t(Nanos::from_secs(11)))),
        Status::OutcomeUnknown
    );
}

#[test]
fn a_restarted_server_never_runs_a_call_of_the_previous_incarnation() {
    let mut s = handshaken();
    assert!(matches!(
        s.handle_request(req(1, 1, INC, false), t(Nanos(1))),
        Action::Execute(_)
    ));
    // Crash: all state lost, new incarnation. The client re-handshakes with
    // its floor (2: seq 1 was sent) and resends seq 1 naming the old one.
    let mut s2 = ServerSession::new(INC + 1, ServerConfig::default());
    s2.handle_ping(&ping(2), t(Nanos(2)));
    assert_eq!(
        status_of(s2.handle_request(req(1, 1, INC, false), t(Nanos(3)))),
        Status::OutcomeUnknown
    );
    // Even a copy naming the new incarnation (or none) is below the floor.
    assert_eq!(
        status_of(s2.handle_request(req(1, 1, INC + 1, false), t(Nanos(3)))),
        Status::OutcomeUnknown
    );
}

#[test]
fn reply_and_pong_frames_sent_to_a_server_are_dropped() {
    let mut s = handshaken();
    let mut f = req(1, 1, INC, false);
    f.kind = FrameKind::Reply;
    assert_eq!(s.handle_frame(f, t(Nanos(1))), Action::Drop);
}

#[test]
fn completing_a_call_whose_session_was_evicted_still_replies_but_records_nothing() {
    let cfg = ServerConfig {
        max_clients: 1,
        session_expiry: Nanos::from_secs(1),
    };
    let mut s = ServerSession::new(INC, cfg);
    s.handle_ping(&ping(1), Instant::EPOCH);
    let Action::Execute(inc) = s.handle_request(req(1, 1, INC, false), t(Nanos(1))) else {
        panic!()
    };
    let mut other = ping(1);
    other.client = ClientId(6);
    assert_eq!(
        s.handle_ping(&other, t(Nanos::from_secs(2))).status,
        Status::Ok
    );
    let reply = s.complete(
        inc.key,
        Status::Ok,
        Bytes::from_static(b"r"),
        t(Nanos::from_secs(3)),
    );
    assert_eq!((reply.seq, reply.status), (1, Status::Ok));
    assert_eq!(s.table().entries(), 0);
}

#[test]
fn a_ping_raises_acknowledged_below_and_prunes() {
    let mut s = handshaken();
    let Action::Execute(inc) = s.handle_request(req(1, 1, INC, false), t(Nanos(1))) else {
        panic!()
    };
    s.complete(inc.key, Status::Ok, Bytes::new(), t(Nanos(2)));
    let mut p = ping(2);
    p.ack_below = 2;
    s.handle_ping(&p, t(Nanos(3)));
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
        twin.handle_request(req(1, 1, INC, false), t(Nanos(1))),
        Action::Execute(_)
    ));
    // The client reconnects, reaches the clone, and opens its session with
    // the floor one above the highest at-most-once seq it sent.
    let pong = clone.handle_ping(&ping(2), t(Nanos(2)));
    assert_eq!(pong.incarnation, INC, "the clone cannot tell itself apart");
    assert_eq!(
        status_of(clone.handle_request(req(1, 1, INC, false), t(Nanos(3)))),
        Status::OutcomeUnknown
    );
    assert!(matches!(
        clone.handle_request(req(2, 1, INC, false), t(Nanos(4))),
        Action::Execute(_)
    ));
}
