//! The proxy against a local echo server: faithful forwarding, delays keep
//! order, resets reach both sides, black holes swallow everything.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;

use ebb_chaos::{ChaosConfig, Proxy};
use ebb_core::Nanos;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// An echo server that reports, per connection, how many bytes it received
/// before the connection ended and whether it ended in an error.
async fn echo_server() -> (String, mpsc::UnboundedReceiver<(usize, bool)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut total = 0;
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) => break tx.send((total, false)).ok(),
                        Ok(n) => {
                            total += n;
                            if s.write_all(&buf[..n]).await.is_err() {
                                break tx.send((total, true)).ok();
                            }
                        }
                        Err(_) => break tx.send((total, true)).ok(),
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn start(
    cfg: ChaosConfig,
    upstream: &str,
) -> (String, std::sync::Arc<ebb_chaos::ChaosStats>) {
    let proxy = Proxy::bind("127.0.0.1:0", upstream, cfg, 7).await.unwrap();
    let addr = proxy.local_addr().unwrap().to_string();
    let stats = proxy.stats();
    tokio::spawn(proxy.run());
    (addr, stats)
}

#[tokio::test]
async fn delayed_proxy_echoes_every_byte_in_order() {
    let (echo, mut ends) = echo_server().await;
    let cfg = ChaosConfig {
        delay: Nanos::from_millis(2),
        ..ChaosConfig::TRANSPARENT
    };
    let (addr, _) = start(cfg, &echo).await;
    let mut c = TcpStream::connect(&addr).await.unwrap();
    let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = c.split();
    let write = async {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut got = Vec::new();
    let read = r.read_to_end(&mut got);
    let (_, n) = tokio::join!(write, read);
    n.unwrap();
    assert_eq!(got, sent);
    assert_eq!(ends.recv().await, Some((sent.len(), false)));
}

#[tokio::test]
async fn reset_reaches_both_sides() {
    let (echo, mut ends) = echo_server().await;
    let cfg = ChaosConfig {
        reset_p: 1.0,
        ..ChaosConfig::TRANSPARENT
    };
    let (addr, stats) = start(cfg, &echo).await;
    let mut c = TcpStream::connect(&addr).await.unwrap();
    c.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 16];
    let err = c
        .read(&mut buf)
        .await
        .expect_err("the proxy resets on the first chunk");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    // The upstream saw nothing forwarded and an abortive close.
    assert_eq!(ends.recv().await, Some((0, true)));
    assert_eq!(stats.resets.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn blackhole_swallows_bytes_but_keeps_the_connection_open() {
    let (echo, mut ends) = echo_server().await;
    let cfg = ChaosConfig {
        drop_p: 1.0,
        ..ChaosConfig::TRANSPARENT
    };
    let (addr, stats) = start(cfg, &echo).await;
    let mut c = TcpStream::connect(&addr).await.unwrap();
    c.write_all(b"into the void").await.unwrap();
    // Half-close: the proxy passes the FIN on, so the echo server ends
    // its connection cleanly having received none of the bytes.
    c.shutdown().await.unwrap();
    assert_eq!(ends.recv().await, Some((0, false)));
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    assert_eq!(stats.blackholes.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn unreachable_upstream_closes_the_client() {
    // Bind then drop to get a port nobody listens on.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let (addr, stats) = start(ChaosConfig::TRANSPARENT, &dead_addr).await;
    let mut c = TcpStream::connect(&addr).await.unwrap();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf).await;
    assert!(buf.is_empty());
    assert_eq!(stats.upstream_failures.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn bad_probability_is_refused_at_bind() {
    let cfg = ChaosConfig {
        reset_p: 2.0,
        ..ChaosConfig::TRANSPARENT
    };
    let err = Proxy::bind("127.0.0.1:0", "127.0.0.1:1", cfg, 1)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("--reset"), "{err}");
}

#[tokio::test]
async fn connections_beyond_the_bound_are_closed_on_accept() {
    const BOUND: usize = 4;
    let (echo, _ends) = echo_server().await;
    let proxy = Proxy::bind("127.0.0.1:0", &echo, ChaosConfig::TRANSPARENT, 1)
        .await
        .unwrap()
        .with_max_connections(BOUND);
    let addr = proxy.local_addr().unwrap().to_string();
    let stats = proxy.stats();
    tokio::spawn(proxy.run());
    let mut held = Vec::new();
    for _ in 0..BOUND {
        // A round trip proves the connection holds a slot.
        let mut c = TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        held.push(c);
    }
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let mut rest = Vec::new();
    let _ = extra.read_to_end(&mut rest).await;
    assert!(rest.is_empty());
    assert_eq!(stats.refused.load(Ordering::Relaxed), 1);

    // A freed slot is reusable.
    drop(held.pop());
    let mut c = TcpStream::connect(&addr).await.unwrap();
    let mut b = [0u8; 1];
    let mut tries = 0;
    // The slot is released when the proxy notices the close; until then a
    // new connection may still be refused. Bounded retries, no sleeps.
    loop {
        tries += 1;
        if c.write_all(b"y").await.is_ok() && c.read_exact(&mut b).await.is_ok() {
            break;
        }
        assert!(tries < 100, "slot never freed");
        tokio::task::yield_now().await;
        c = TcpStream::connect(&addr).await.unwrap();
    }
    assert_eq!(&b, b"y");
}

/// More connects than `TcpListener::bind`'s backlog of 128 while the proxy
/// accepts none: each completes in the kernel, queued, not dropped (a
/// dropped SYN would leave its client waiting a retransmission).
#[tokio::test]
async fn a_burst_of_connects_is_queued_before_the_proxy_accepts() {
    const PENDING: usize = 300;
    // A bound on each connect, not a speed claim: one the queue had no
    // room for would wait SYN retransmissions and end here.
    const CONNECT_BOUND: std::time::Duration = std::time::Duration::from_secs(20);
    let proxy = Proxy::bind("127.0.0.1:0", "127.0.0.1:9", ChaosConfig::TRANSPARENT, 1)
        .await
        .unwrap();
    let addr = proxy.local_addr().unwrap();
    let connected = tokio::task::spawn_blocking(move || {
        (0..PENDING)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&addr, CONNECT_BOUND)
                    .unwrap_or_else(|e| panic!("connect {i} of {PENDING} not queued: {e}"))
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(connected.len(), PENDING);
}
