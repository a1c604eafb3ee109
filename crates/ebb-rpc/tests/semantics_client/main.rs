//! The client rules, one test each, with time as plain integers: a call
//! from start to end ([`calls`]), resends and deadlines ([`resends`]),
//! telling a dead server from a slow one ([`liveness`]), the handshake
//! ([`handshake`]), connections that end ([`connections`]), and request
//! payloads ([`payloads`]). The helpers below build the session and the
//! server's side of the conversation every module speaks with.
#![allow(clippy::unwrap_used)]

mod calls;
mod connections;
mod handshake;
mod liveness;
mod payloads;
mod resends;

use bytes::Bytes;
use ebb_core::{ClientId, Instant, Nanos};
use ebb_rpc::CallError;
use ebb_rpc::semantics::{CallId, ClientConfig, ClientSession, LinkState, MAX_REPLIES_PER_CLIENT};
use ebb_rpc::wire::{
    ClientSecret, ConnErrorKind, Incarnation, Message, Outcome, Pong, Refusal, Reply, Seq,
};

/// The instant `n` after the epoch.
fn t(n: Nanos) -> Instant {
    Instant::EPOCH + n
}

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
