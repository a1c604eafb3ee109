//! Connections: how many, from whom, speaking for how many clients, where
//! a reply goes, and when a silent one is closed.

use super::*;

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
