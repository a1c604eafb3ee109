//! The server rules, one test each, with time as plain integers.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use ebb_core::{ClientId, Instant, Nanos};

use ebb_rpc::semantics::{
    Action, ConnId, ConnRefusal, Incoming, MAX_REPLIES_PER_CLIENT, ServerConfig, ServerSession,
};
use ebb_rpc::wire::{
    ClientSecret, Incarnation, Message, Outcome, Ping, Pong, Refusal, Reply, Request, Seq,
};

/// The instant `n` after the epoch.
fn t(n: Nanos) -> Instant {
    Instant::EPOCH + n
}

const INC: u64 = 77;
/// The secret of the client most tests speak for.
const C_SECRET: u128 = 5;

/// The client id secret `n` proves.
fn id(n: u128) -> ClientId {
    ClientSecret(n).client_id()
}

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The first connection a session opens.
const CONN: ConnId = ConnId(1);

fn incarnation(n: u64) -> Incarnation {
    Incarnation::new(n).unwrap()
}

/// `s` with connection `CONN` open.
fn open(mut s: ServerSession) -> ServerSession {
    assert_eq!(s.open_connection(PEER, Instant::EPOCH), Ok(CONN));
    s
}

fn server() -> ServerSession {
    server_with(ServerConfig::default())
}

/// A session of incarnation `INC` under `cfg`, with connection `CONN` open.
fn server_with(cfg: ServerConfig) -> ServerSession {
    open(ServerSession::new(incarnation(INC), cfg))
}

/// The pong `s` answers `p` with on `CONN`.
fn pong_of(s: &mut ServerSession, p: Ping, now: Instant) -> Pong {
    pong_of_conn(s, CONN, p, now)
}

/// The pong `s` answers `p` with on `conn`.
fn pong_of_conn(s: &mut ServerSession, conn: ConnId, p: Ping, now: Instant) -> Pong {
    match s.admit(conn, p, now) {
        Action::Reply(Message::Pong(p)) => p,
        other => panic!("a ping must be answered, got {other:?}"),
    }
}

/// The call `action` runs; `why` says why it must.
fn executes(action: Action, why: &str) -> Incoming {
    match action {
        Action::Execute(incoming) => incoming,
        other => panic!("{why}: got {other:?}"),
    }
}

fn ping(floor: u64) -> Ping {
    ping_from(C_SECRET, floor)
}

/// The handshake of the client holding secret `n`.
fn ping_from(n: u128, floor: u64) -> Ping {
    Ping {
        client: id(n),
        floor: Seq(floor),
        ack_below: Seq(1),
        incarnation: None,
        secret: ClientSecret(n),
        token: Bytes::new(),
    }
}

fn req(seq: u64, ack_below: u64, incarnation: u64, idempotent: bool) -> Request {
    Request {
        client: id(C_SECRET),
        seq: Seq(seq),
        ack_below: Seq(ack_below),
        incarnation: Incarnation::new(incarnation),
        deadline: Nanos::from_secs(1),
        method: 9,
        idempotent,
        json: false,
        payload: Bytes::from_static(b"args"),
    }
}

/// A server with `C`'s session open (floor 1).
fn handshaken() -> ServerSession {
    let mut s = server();
    let pong = pong_of(&mut s, ping(1), Instant::EPOCH);
    assert_eq!((pong.refused, pong.incarnation), (None, incarnation(INC)));
    s
}

fn status_of(a: Action) -> Outcome {
    match a {
        Action::Reply(Message::Reply(r)) => r.outcome,
        other => panic!("expected a reply, got {other:?}"),
    }
}

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

/// A server whose connections may run `in_flight` calls at once.
fn bounded(in_flight: usize) -> ServerSession {
    let cfg = ServerConfig {
        max_in_flight_per_conn: in_flight,
        ..ServerConfig::default()
    };
    let mut s = server_with(cfg);
    pong_of(&mut s, ping(1), Instant::EPOCH);
    s
}

#[test]
fn a_call_over_the_in_flight_bound_is_refused_and_every_later_copy_gets_the_refusal() {
    let mut s = bounded(1);
    let first = executes(
        s.admit(CONN, req(1, 1, INC, false), t(Nanos(1))),
        "the first call fits the bound",
    );
    assert_eq!(
        status_of(s.admit(CONN, req(2, 1, INC, false), t(Nanos(2)))),
        Outcome::Refused(Refusal::InFlight)
    );
    s.complete(first.key, Outcome::Ok, Bytes::new(), t(Nanos(3)));
    assert_eq!(s.in_flight(CONN), 0);
    // Room again, but the late copy of the refused call must not run: the
    // client was told it did not.
    assert_eq!(
        status_of(s.admit(CONN, req(2, 1, INC, false), t(Nanos(4)))),
        Outcome::Refused(Refusal::InFlight)
    );
    assert_eq!(s.stats().refused_in_flight, 1);
    assert_eq!(s.stats().saved_replies, 1);
    // A new call runs.
    assert!(matches!(
        s.admit(CONN, req(3, 1, INC, false), t(Nanos(5))),
        Action::Execute(_)
    ));
}

#[test]
fn an_idempotent_call_over_the_in_flight_bound_is_refused_and_nothing_is_recorded() {
    let mut s = bounded(1);
    let first = executes(
        s.admit(CONN, req(1, 1, 0, true), t(Nanos(1))),
        "the first call fits the bound",
    );
    assert_eq!(
        status_of(s.admit(CONN, req(2, 1, 0, true), t(Nanos(2)))),
        Outcome::Refused(Refusal::InFlight)
    );
    s.complete(first.key, Outcome::Ok, Bytes::new(), t(Nanos(3)));
    assert!(matches!(
        s.admit(CONN, req(2, 1, 0, true), t(Nanos(4))),
        Action::Execute(_)
    ));
    assert_eq!(s.table().entries(), 0);
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

#[test]
fn a_connection_speaking_for_too_many_clients_is_refused_for_the_extra_one() {
    let cfg = ServerConfig {
        max_clients_per_conn: 1,
        ..ServerConfig::default()
    };
    let mut s = server_with(cfg);
    assert_eq!(pong_of(&mut s, ping(1), Instant::EPOCH).refused, None);
    let other = ping_from(6, 1);
    assert_eq!(
        pong_of(&mut s, other, t(Nanos(1))).refused,
        Some(Refusal::ClientsPerConnection)
    );
    let mut r = req(1, 1, 0, true);
    r.client = id(6);
    assert_eq!(
        status_of(s.admit(CONN, r, t(Nanos(2)))),
        Outcome::Refused(Refusal::ClientsPerConnection)
    );
    assert_eq!(s.route_of(id(6)), None, "no route for the extra id");
    assert_eq!(s.stats().refused_clients_per_conn, 1);
}

#[test]
fn connections_are_bounded_in_total_and_per_peer() {
    let cfg = ServerConfig {
        max_connections: 3,
        max_connections_per_peer: 2,
        ..ServerConfig::default()
    };
    let mut s = ServerSession::new(incarnation(INC), cfg);
    let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let third = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
    let a = s.open_connection(PEER, Instant::EPOCH).unwrap();
    s.open_connection(PEER, Instant::EPOCH).unwrap();
    assert_eq!(
        s.open_connection(PEER, Instant::EPOCH),
        Err(ConnRefusal::PeerFull { max: 2 })
    );
    s.open_connection(other, Instant::EPOCH).unwrap();
    assert_eq!(
        s.open_connection(third, Instant::EPOCH),
        Err(ConnRefusal::ServerFull { max: 3 })
    );
    s.close_connection(a);
    assert_eq!(s.connections_from(PEER), 1);
    s.open_connection(third, Instant::EPOCH).unwrap();
    assert_eq!(s.stats().refused_connections, 2);
    s.check().unwrap();
}

#[test]
fn a_reply_goes_to_the_connection_its_client_was_last_heard_on() {
    let mut s = handshaken();
    let inc = executes(s.admit(CONN, req(1, 1, INC, false), t(Nanos(1))), "it runs");
    // The client reconnects: a handshake, then the resend.
    let second = s.open_connection(PEER, Instant::EPOCH).unwrap();
    assert!(matches!(
        s.admit(second, ping(2), t(Nanos(2))),
        Action::Reply(Message::Pong(Pong { refused: None, .. }))
    ));
    assert_eq!(
        s.admit(second, req(1, 1, INC, false), t(Nanos(2))),
        Action::Wait
    );
    let (_, route) = s.complete(inc.key, Outcome::Ok, Bytes::new(), t(Nanos(3)));
    assert_eq!(route, Some(second));
    s.close_connection(second);
    assert_eq!(s.route_of(id(C_SECRET)), None);
    assert_eq!(s.admit(second, ping(1), t(Nanos(4))), Action::Drop);
    s.check().unwrap();
}

#[test]
fn silent_connections_are_closed_after_the_handshake_or_idle_timeout() {
    let cfg = ServerConfig {
        handshake_timeout: Nanos::from_secs(5),
        idle_timeout: Nanos::from_secs(30),
        ..ServerConfig::default()
    };
    let mut s = ServerSession::new(incarnation(INC), cfg);
    let mute = s.open_connection(PEER, Instant::EPOCH).unwrap();
    let talker = s.open_connection(PEER, Instant::EPOCH).unwrap();
    pong_of_on(&mut s, talker, t(Nanos::from_secs(1)));
    assert!(s.close_silent(t(Nanos::from_secs(4))).is_empty());
    assert_eq!(s.close_silent(t(Nanos::from_secs(5))), vec![mute]);
    assert_eq!(s.admit(mute, ping(1), t(Nanos::from_secs(6))), Action::Drop);
    // Heard at 1 s: idle from 31 s.
    assert!(s.close_silent(t(Nanos::from_secs(30))).is_empty());
    assert_eq!(s.close_silent(t(Nanos::from_secs(31))), vec![talker]);
    assert_eq!(s.connections(), 0);
    assert_eq!(s.stats().closed_silent, 2);
    s.check().unwrap();
}

fn pong_of_on(s: &mut ServerSession, conn: ConnId, now: Instant) {
    assert!(matches!(
        s.admit(conn, ping(1), now),
        Action::Reply(Message::Pong(_))
    ));
}

#[test]
fn a_reply_over_the_saved_bytes_bound_is_sent_but_saved_as_outcome_unknown() {
    let cfg = ServerConfig {
        max_saved_reply_bytes_per_client: 4,
        ..ServerConfig::default()
    };
    let mut s = server_with(cfg);
    pong_of(&mut s, ping(1), Instant::EPOCH);
    let small = executes(s.admit(CONN, req(1, 1, INC, false), t(Nanos(1))), "it runs");
    let big = executes(s.admit(CONN, req(2, 1, INC, false), t(Nanos(1))), "it runs");
    s.complete(
        small.key,
        Outcome::Ok,
        Bytes::from_static(b"abc"),
        t(Nanos(2)),
    );
    let (live, _) = s.complete(
        big.key,
        Outcome::Ok,
        Bytes::from_static(b"defgh"),
        t(Nanos(2)),
    );
    assert_eq!(
        (live.outcome, &live.payload[..]),
        (Outcome::Ok, &b"defgh"[..])
    );
    assert_eq!(
        status_of(s.admit(CONN, req(1, 1, INC, false), t(Nanos(3)))),
        Outcome::Ok
    );
    assert_eq!(
        status_of(s.admit(CONN, req(2, 1, INC, false), t(Nanos(3)))),
        Outcome::OutcomeUnknown,
        "it ran; its reply was not kept, and it will not run again"
    );
    s.check().unwrap();
}

/// Carries everything `client` wants sent to `server` on `conn` and every
/// answer back; returns the calls the server decided to run.
fn exchange(
    client: &mut ebb_rpc::semantics::ClientSession,
    server: &mut ServerSession,
    conn: ConnId,
    now: Instant,
) -> Vec<ebb_rpc::semantics::Incoming> {
    let mut run = Vec::new();
    while let Some(m) = client.poll_transmit() {
        match server.admit(conn, m, now) {
            Action::Reply(answer) => client.handle_message(answer, now),
            Action::Execute(incoming) => run.push(incoming),
            Action::Wait | Action::Drop => {}
        }
    }
    run
}

#[test]
fn at_the_total_saved_bytes_a_lost_reply_is_answered_outcome_unknown_and_never_rerun() {
    use ebb_rpc::CallError;
    use ebb_rpc::semantics::{ClientConfig, ClientSession};
    // Each session may save 8 bytes, all sessions together 10.
    let cfg = ServerConfig {
        max_saved_reply_bytes_per_client: 8,
        max_saved_reply_bytes_total: 10,
        ..ServerConfig::default()
    };
    let mut s = ServerSession::new(incarnation(INC), cfg);
    let now = t(Nanos(1));
    let deadline = t(Nanos::from_secs(10));
    let mut clients = Vec::new();
    for id in [1, 2] {
        let conn = s.open_connection(PEER, now).unwrap();
        let mut c = ClientSession::new(ClientSecret(id), ClientConfig::default(), now);
        c.handle_connected(now);
        exchange(&mut c, &mut s, conn, now);
        let call = c
            .start_call(3, false, Bytes::from_static(b"x"), deadline, now)
            .unwrap();
        let run = exchange(&mut c, &mut s, conn, now);
        assert_eq!(run.len(), 1);
        clients.push((c, conn, call, run[0].key));
    }
    // Client 1's 6-byte reply is saved; client 2's 6 bytes would take the
    // table to 12: it is sent as it is, but saved as OutcomeUnknown.
    let (reply_1, _) = s.complete(
        clients[0].3,
        Outcome::Ok,
        Bytes::from_static(b"111111"),
        now,
    );
    let (live, _) = s.complete(
        clients[1].3,
        Outcome::Ok,
        Bytes::from_static(b"222222"),
        now,
    );
    assert_eq!(
        (live.outcome, &live.payload[..]),
        (Outcome::Ok, &b"222222"[..])
    );
    assert_eq!(s.stats().replies_not_kept, 1, "the bound was hit once");
    assert!(s.table().saved_bytes() <= 10);
    clients[0].0.handle_message(Message::Reply(reply_1), now);
    assert_eq!(
        clients[0].0.poll_event().map(|(_, r)| r.unwrap()),
        Some(Bytes::from_static(b"111111"))
    );
    // Client 2's live reply is lost with its connection; it reconnects and
    // resends: the saved answer says the call ran and will not run again.
    let (c2, old_conn, call, _) = &mut clients[1];
    s.close_connection(*old_conn);
    let later = t(Nanos::from_millis(5));
    c2.handle_disconnect(later);
    let conn = s.open_connection(PEER, later).unwrap();
    c2.handle_connected(later);
    let executed = s.stats().executed;
    let rerun = exchange(c2, &mut s, conn, later);
    assert!(rerun.is_empty(), "nothing runs twice");
    assert_eq!(s.stats().executed, executed);
    assert!(s.stats().saved_replies >= 1, "answered from the table");
    let (id, outcome) = c2.poll_event().unwrap();
    assert_eq!(id, *call);
    let err = outcome.unwrap_err();
    assert!(
        matches!(err, CallError::OutcomeUnknown { old, new } if old == new && new == INC),
        "{err:?}"
    );
    assert!(err.may_have_run());
    s.check().unwrap();
}

/// A session that forgets a client idle for a second.
fn expiring() -> ServerSession {
    server_with(ServerConfig {
        session_expiry: Nanos::from_secs(1),
        ..ServerConfig::default()
    })
}

/// [`expiring`], with C's session open and its at-most-once call 1
/// running since 1 ns: the session expires at 2 s with the call unfinished.
fn expiring_with_call_1_running() -> (ServerSession, Incoming) {
    let mut s = expiring();
    pong_of(&mut s, ping(1), Instant::EPOCH);
    let first = executes(s.admit(CONN, req(1, 1, INC, false), t(Nanos(1))), "it runs");
    (s, first)
}

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

#[test]
fn a_request_still_arriving_keeps_its_connection_open_past_the_idle_timeout() {
    let cfg = ServerConfig {
        idle_timeout: Nanos::from_secs(30),
        ..ServerConfig::default()
    };
    let mut s = ServerSession::new(incarnation(INC), cfg);
    let slow = s.open_connection(PEER, Instant::EPOCH).unwrap();
    pong_of_on(&mut s, slow, Instant::EPOCH);
    // Parts of one large frame every 10 s for a minute: never idle.
    for k in 1..=6 {
        let now = t(Nanos::from_secs(10 * k));
        s.handle_progress(slow, now);
        assert!(s.close_silent(now).is_empty(), "closed at {now}");
    }
    // Its bytes stop: idle a timeout after the last of them.
    assert!(s.close_silent(t(Nanos::from_secs(89))).is_empty());
    assert_eq!(s.close_silent(t(Nanos::from_secs(90))), vec![slow]);
    // Progress on a closed connection reopens nothing.
    s.handle_progress(slow, t(Nanos::from_secs(91)));
    assert_eq!(s.connections(), 0);
    s.check().unwrap();
}
