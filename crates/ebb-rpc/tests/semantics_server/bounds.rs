//! The bounds on a session's work: calls in flight per connection, and
//! saved reply bytes per client and in total, each refusal or degradation
//! typed and never a rerun.

use super::*;

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
            Action::Wait | Action::Drop | Action::Resize(_) => {}
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
