//! Throughput of the codec and of one call through both state machines,
//! without I/O: the ceiling the transport can reach per core.
//!
//! Run: `cargo bench -p ebb-rpc --bench wire_semantics`; with an argument
//! `pings N`, only N heartbeat pings (for callgrind, which counts the
//! instructions; see docs/benchmarks.md).

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ebb_core::{ClientId, Nanos};
use ebb_rpc::semantics::{Action, ClientConfig, ClientSession, ServerConfig, ServerSession};
use ebb_rpc::wire::{ClientSecret, FrameCodec, Incarnation, Message, Outcome, Ping, Request, Seq};

const FRAMES: usize = 2_000_000;
const CALLS: u64 = 1_000_000;
const PINGS: u64 = 1_000_000;

fn codec(payload_bytes: usize) {
    let codec = FrameCodec::default();
    let frame = Message::Request(Request {
        client: ClientId(1),
        seq: Seq(1),
        ack_below: Seq(1),
        incarnation: Incarnation::new(9),
        deadline: Nanos::from_millis(100),
        method: 3,
        idempotent: true,
        json: false,
        payload: Bytes::from(vec![7u8; payload_bytes]),
    });
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let t = Instant::now();
    let mut decoded = 0usize;
    // Batches of 64 frames per "write", as a coalescing transport would.
    for _ in 0..FRAMES / 64 {
        for _ in 0..64 {
            codec.encode(&frame, &mut buf).expect("fits");
        }
        while let Some(f) = codec.decode(&mut buf).expect("valid") {
            decoded += black_box(f).payload_len();
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(decoded, FRAMES / 64 * 64 * payload_bytes);
    println!(
        "codec encode+decode, {payload_bytes} B payload: {:.1} M frames/s ({:.0} ns/frame)",
        FRAMES as f64 / secs / 1e6,
        secs * 1e9 / FRAMES as f64
    );
}

fn state_machines(idempotent: bool) {
    let now = ebb_core::Instant::EPOCH + Nanos::from_secs(1);
    let mut client = ClientSession::new(ClientSecret(5), ClientConfig::default(), now);
    let mut server = ServerSession::new(Incarnation::at_least_one(77), ServerConfig::default());
    let conn = server
        .open_connection(std::net::Ipv4Addr::LOCALHOST.into(), now)
        .expect("the first connection fits");
    client.handle_connected(now);
    while let Some(f) = client.poll_transmit() {
        if let Action::Reply(r) = server.admit(conn, f, now) {
            client.handle_message(r, now);
        }
    }
    let payload = Bytes::from_static(b"0123456789abcdef");
    let t = Instant::now();
    for _ in 0..CALLS {
        client
            .start_call(
                3,
                idempotent,
                payload.clone(),
                now + Nanos::from_secs(5),
                now,
            )
            .expect("below the bound");
        let req = client.poll_transmit().expect("sent at once");
        let Action::Execute(inc) = server.admit(conn, req, now) else {
            panic!("a new call executes")
        };
        let (reply, _) = server.complete(inc.key, Outcome::Ok, inc.payload, now);
        client.handle_message(Message::Reply(reply), now);
        let (_, outcome) = client.poll_event().expect("the reply ends the call");
        black_box(outcome.expect("the call succeeds"));
    }
    let secs = t.elapsed().as_secs_f64();
    let kind = if idempotent {
        "idempotent"
    } else {
        "at-most-once"
    };
    println!(
        "client+server state machines, {kind}: {:.2} M calls/s ({:.0} ns/call)",
        CALLS as f64 / secs / 1e6,
        secs * 1e9 / CALLS as f64
    );
}

/// A server answering `n` heartbeat pings of one client (whose session
/// is open), against `n` derivations of the client id alone: what proving
/// the id in every ping (SHA-256 of its secret) costs, and the rest.
fn pings(n: u64) {
    let now = ebb_core::Instant::EPOCH + Nanos::from_secs(1);
    let mut server = ServerSession::new(Incarnation::at_least_one(77), ServerConfig::default());
    let conn = server
        .open_connection(std::net::Ipv4Addr::LOCALHOST.into(), now)
        .expect("the first connection fits");
    let secret = ClientSecret(0x5eed_5eed_5eed_5eed_5eed_5eed_5eed_5eed);
    let ping = Ping {
        client: secret.client_id(),
        floor: Seq(1),
        ack_below: Seq(1),
        incarnation: Some(server.incarnation()),
        secret,
        token: Bytes::new(),
    };
    let t = Instant::now();
    for _ in 0..n {
        let Action::Reply(Message::Pong(pong)) = server.admit(conn, ping.clone(), now) else {
            panic!("a ping is answered with a pong")
        };
        assert!(black_box(pong).refused.is_none());
    }
    let per_ping = t.elapsed().as_secs_f64() * 1e9 / n.max(1) as f64;
    let t = Instant::now();
    for i in 0..n {
        black_box(ClientSecret(black_box(u128::from(i))).client_id());
    }
    let per_hash = t.elapsed().as_secs_f64() * 1e9 / n.max(1) as f64;
    println!(
        "server ping (handshake check + session touch + pong): {per_ping:.0} ns/ping; \
         client id from secret (SHA-256) alone: {per_hash:.0} ns"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `pings N` runs the pings alone.
    if let Some(i) = args.iter().position(|a| a == "pings") {
        let n = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(PINGS);
        pings(n);
        return;
    }
    codec(16);
    codec(1024);
    state_machines(true);
    state_machines(false);
    pings(PINGS);
}
