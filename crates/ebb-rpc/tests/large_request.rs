//! A 10 MB idempotent call over a link that trickles bytes both ways, far
//! slower than the client's resend interval and silence limit: the call
//! succeeds, its request crosses once, and it runs once. Bytes of our own
//! request reaching the server count as liveness, and a copy still
//! crossing (or a reply arriving) is not resent.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{COUNTING_METHODS, Counting};
use ebb_core::Nanos;
use ebb_rpc::semantics::ClientConfig;
use ebb_rpc::service::{CallOptions, MethodInfo, Transport};
use ebb_rpc::transport::{Server, TcpClient, TcpClientConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The idempotent `echo`: a resend may run it again, so only the count
/// shows it crossed once.
static ECHO: &MethodInfo = &COUNTING_METHODS[0];

const PAYLOAD_BYTES: usize = 10 * 1024 * 1024;
/// The link: this many bytes, then a pause, each way.
const CHUNK_BYTES: usize = 64 * 1024;
const PAUSE_MS: u64 = 25;
/// The proxy's receive buffer, kept small so that the link, not the
/// kernel, holds the bytes in transit.
const PROXY_RECV_BUFFER_BYTES: u32 = 64 * 1024;

/// What crossed the link.
#[derive(Default)]
struct Link {
    to_server: AtomicU64,
    to_client: AtomicU64,
    pauses: AtomicU64,
}

/// Copies `from` to `to` a chunk at a time with a pause after each.
async fn trickle(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counted: Arc<Link>,
    up: bool,
) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let total = if up {
            &counted.to_server
        } else {
            &counted.to_client
        };
        total.fetch_add(n as u64, Ordering::Relaxed);
        counted.pauses.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(PAUSE_MS)).await;
    }
    let _ = to.shutdown().await;
}

/// A proxy to `server` that trickles both ways; returns its address.
async fn slow_link(server: String, link: Arc<Link>) -> String {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .set_recv_buffer_size(PROXY_RECV_BUFFER_BYTES)
        .unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(8).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        // One client connection is all the test makes; a reconnect would
        // show as a second accept, which the test checks did not happen.
        while let Ok((client, _)) = listener.accept().await {
            let upstream = TcpStream::connect(&server).await.unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = upstream.into_split();
            tokio::spawn(trickle(cr, sw, Arc::clone(&link), true));
            tokio::spawn(trickle(sr, cw, Arc::clone(&link), false));
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_call_over_a_trickling_link_succeeds_without_a_resend() {
    let svc = Arc::new(Counting::default());
    let server = Server::bind("127.0.0.1:0", Arc::clone(&svc)).await.unwrap();
    let server_addr = server.local_addr().unwrap().to_string();
    tokio::spawn(server.run());
    let link = Arc::new(Link::default());
    let addr = slow_link(server_addr, Arc::clone(&link)).await;

    // Timers far shorter than the crossing: a resend every second, and a
    // server declared dead after 2 s without a byte from it.
    let session = ClientConfig {
        retransmit_after: Nanos::from_secs(1),
        max_retransmit_interval: Nanos::from_secs(1),
        heartbeat_interval: Nanos::from_millis(250),
        heartbeat_silence: Nanos::from_secs(2),
        ..TcpClientConfig::default().session
    };
    let cfg = TcpClientConfig {
        session,
        ..TcpClientConfig::default()
    };
    let client = TcpClient::connect_with(&addr, cfg).await.unwrap();
    let payload = Bytes::from(vec![0x5a; PAYLOAD_BYTES]);
    let opts = CallOptions::default().with_timeout(Nanos::from_secs(120));
    let reply = client.call(ECHO, payload.clone(), opts).await.unwrap();
    assert!(reply == payload, "the echo came back whole");

    // A small call behind it: anything queued before it (a resend of the
    // large one) has crossed and run by the time it is answered.
    let small = client
        .call(ECHO, Bytes::from_static(b"x"), opts)
        .await
        .unwrap();
    assert_eq!(small, Bytes::from_static(b"x"));
    assert_eq!(svc.runs(), 2, "the large call ran once");
    let up = link.to_server.load(Ordering::Relaxed);
    assert!(
        up < 2 * PAYLOAD_BYTES as u64,
        "{up} bytes crossed to the server: the request crossed twice"
    );
    assert_eq!(
        client.reconnect_attempts(),
        0,
        "never declared the server silent"
    );
    // The rare path: each way took hundreds of pauses, many times the
    // resend interval and the silence limit.
    let pauses = link.pauses.load(Ordering::Relaxed);
    let min_pauses = 2 * (PAYLOAD_BYTES / CHUNK_BYTES) as u64;
    assert!(pauses >= min_pauses, "{pauses} pauses of {PAUSE_MS} ms");
    let crossing_ms = pauses * PAUSE_MS;
    assert!(
        crossing_ms >= 4 * 2_000,
        "the link paused {crossing_ms} ms in all, under four silence limits"
    );
}
