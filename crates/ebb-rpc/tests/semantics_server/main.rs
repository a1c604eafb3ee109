//! The server rules, one test each, with time as plain integers: which
//! calls run and which are answered from the table ([`calls`]), the bounds
//! on work and saved replies ([`bounds`]), connections and where replies go
//! ([`connections`]), and who may act for a client ([`auth`]). The helpers
//! below build the sessions and messages every module speaks with.
#![allow(clippy::unwrap_used)]

mod auth;
mod bounds;
mod calls;
mod connections;

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
