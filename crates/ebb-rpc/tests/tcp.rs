//! The TCP runtimes end to end on loopback, with a hand-written dispatcher so
//! the transport is tested without the macro.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ebb_rpc::CallError;
use ebb_rpc::semantics::ServerConfig;
use ebb_rpc::service::{
    BoxFuture, CallOptions, DispatchError, MethodInfo, ServiceDispatch, Transport,
};
use ebb_rpc::transport::{Server, TcpClient};
use ebb_rpc::wire::{
    self, ConnErrorKind, MAX_FRAME_BYTES, Message, Outcome, Refusal, Request, Seq,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

const fn method(id: u16, name: &'static str, idempotent: bool) -> MethodInfo {
    MethodInfo {
        service: "Test",
        id,
        name,
        idempotent,
        blocking: false,
        params: &[],
        returns: "Vec<u8>",
    }
}

static METHODS: [MethodInfo; 3] = [
    method(0, "echo", true),
    method(1, "gather", false),
    method(2, "boom", false),
];

/// `echo` returns its arguments; `gather` waits until `GATHER` calls are
/// running at once, so its replies can only come back if the client really
/// multiplexes, and in whatever order the tasks finish.
struct TestService {
    gather: Barrier,
    runs: AtomicUsize,
}

const GATHER: usize = 64;

impl ServiceDispatch for TestService {
    fn name(&self) -> &'static str {
        "Test"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &METHODS
    }
    fn dispatch(&self, id: u16, args: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async move {
            self.runs.fetch_add(1, Ordering::Relaxed);
            match id {
                0 => Ok(args),
                1 => {
                    self.gather.wait().await;
                    Ok(args)
                }
                2 => panic!("boom: a method that panics"),
                _ => Err(DispatchError::UnknownMethod(format!("Test method #{id}"))),
            }
        })
    }
}

async fn start() -> (String, Arc<TestService>) {
    let svc = Arc::new(TestService {
        gather: Barrier::new(GATHER),
        runs: AtomicUsize::new(0),
    });
    let server = Server::bind("127.0.0.1:0", Arc::clone(&svc)).await.unwrap();
    let addr = server.local_addr().unwrap().to_string();
    tokio::spawn(server.run());
    (addr, svc)
}

#[tokio::test]
async fn concurrent_calls_share_one_connection_and_match_their_replies() {
    let (addr, svc) = start().await;
    let client = Arc::new(TcpClient::connect(&addr).await.unwrap());
    let calls: Vec<_> = (0..GATHER as u32)
        .map(|i| {
            let c = Arc::clone(&client);
            tokio::spawn(async move {
                let arg = Bytes::from(i.to_le_bytes().to_vec());
                let reply = c
                    .call(&METHODS[1], arg.clone(), CallOptions::default())
                    .await;
                (arg, reply)
            })
        })
        .collect();
    for call in calls {
        let (arg, reply) = call.await.unwrap();
        assert_eq!(reply.unwrap(), arg);
    }
    assert_eq!(svc.runs.load(Ordering::Relaxed), GATHER);
}

/// Sizes around the point where a payload stops being copied into the
/// output buffer and is written from its own buffer instead, up to one
/// larger than a socket takes in one write.
const SIZES: [usize; 8] = [0, 1, 2047, 2048, 2049, 16 * 1024, 64 * 1024 + 7, 400_000];

/// A payload no other call of the test has: a reply sent for the wrong
/// call, or bytes of two frames interleaved, would not match.
fn pattern(i: usize) -> Bytes {
    let len = SIZES[i % SIZES.len()];
    Bytes::from(
        (0..len)
            .map(|k| (k * 31 + i * 7) as u8)
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test]
async fn payloads_small_and_large_arrive_intact_when_written_from_their_own_buffers() {
    let (addr, svc) = start().await;
    let client = Arc::new(TcpClient::connect(&addr).await.unwrap());
    // `gather` finishes all its calls at once: their replies, large and
    // small, leave in the same batches, and the large ones are also saved
    // in the reply table (at-most-once) while being written.
    let calls: Vec<_> = (0..GATHER)
        .map(|i| {
            let c = Arc::clone(&client);
            tokio::spawn(async move {
                let reply = c
                    .call(&METHODS[1], pattern(i), CallOptions::default())
                    .await;
                (i, reply)
            })
        })
        .collect();
    for call in calls {
        let (i, reply) = call.await.unwrap();
        let reply = reply.unwrap();
        assert_eq!(reply.len(), SIZES[i % SIZES.len()], "call {i}");
        assert!(
            reply == pattern(i),
            "call {i}: the reply is not its payload"
        );
    }
    assert_eq!(svc.runs.load(Ordering::Relaxed), GATHER);
}

#[tokio::test]
async fn unknown_method_is_a_typed_error() {
    let (addr, _) = start().await;
    let client = TcpClient::connect(&addr).await.unwrap();
    static MISSING: MethodInfo = method(9, "missing", true);
    let err = client
        .call(&MISSING, Bytes::new(), CallOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::UnknownMethod { .. }), "{err:?}");
}

#[tokio::test]
async fn refused_connection_names_the_address() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let err = TcpClient::connect(&addr).await.err().unwrap();
    assert!(
        matches!(err, CallError::ConnectionLost { sent: false, .. }),
        "{err:?}"
    );
    assert!(!err.may_have_run());
    assert!(err.to_string().contains(&addr), "{err}");
}

/// Reads until EOF and decodes what the server said before closing.
async fn server_last_words(mut s: TcpStream) -> Vec<Message> {
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes).await;
    let mut buf = bytes::BytesMut::from(&bytes[..]);
    let mut frames = Vec::new();
    while let Ok(Some(f)) = wire::decode_message(&mut buf) {
        frames.push(f);
    }
    frames
}

/// The one connection error (bad frame) a server sends before closing.
fn refusal(said: &[Message]) -> String {
    match said {
        [Message::ConnError(e)] if e.kind == ConnErrorKind::BadFrame => e.message(),
        other => panic!("expected one bad-frame connection error, got {other:?}"),
    }
}

/// An idempotent request of `client` with a long deadline.
fn request(client: u128, seq: u64, payload: Bytes) -> Message {
    Message::Request(Request {
        client: ebb_core::ClientId(client),
        seq: Seq(seq),
        ack_below: Seq(1),
        incarnation: None,
        deadline: ebb_core::Nanos::from_secs(60),
        method: 0,
        idempotent: true,
        json: false,
        payload,
    })
}

#[tokio::test]
async fn garbage_closes_only_its_own_connection() {
    let (addr, _) = start().await;
    let client = TcpClient::connect(&addr).await.unwrap();
    let echo =
        |s: &'static [u8]| client.call(&METHODS[0], Bytes::from_static(s), CallOptions::default());
    assert_eq!(echo(b"before").await.unwrap(), &b"before"[..]);

    let mut bad = TcpStream::connect(&addr).await.unwrap();
    bad.write_all(&[9, 0, 0, 0, 0xee, 1, 2, 3, 4, 5, 6, 7, 8])
        .await
        .unwrap();
    let said = server_last_words(bad).await;
    let m = refusal(&said);
    assert!(m.contains("shorter"), "{m}");

    let mut huge = TcpStream::connect(&addr).await.unwrap();
    let len = (MAX_FRAME_BYTES as u32) + 1;
    huge.write_all(&len.to_le_bytes()).await.unwrap();
    let said = server_last_words(huge).await;
    let m = refusal(&said);
    assert!(m.contains("exceeds"), "{m}");

    assert_eq!(echo(b"after").await.unwrap(), &b"after"[..]);
}

#[tokio::test]
async fn idempotent_calls_survive_connection_resets() {
    let (addr, svc) = start().await;
    let cfg = ebb_chaos::ChaosConfig {
        reset_p: 0.2,
        ..ebb_chaos::ChaosConfig::TRANSPARENT
    };
    let seed = 5;
    let proxy = ebb_chaos::Proxy::bind("127.0.0.1:0", &addr, cfg, seed)
        .await
        .unwrap();
    let via = proxy.local_addr().unwrap().to_string();
    let resets = proxy.stats();
    tokio::spawn(proxy.run());
    let client = TcpClient::connect(&via).await.unwrap();
    for i in 0..50u32 {
        let arg = Bytes::from(i.to_le_bytes().to_vec());
        let reply = client
            .call(&METHODS[0], arg.clone(), CallOptions::default())
            .await;
        assert_eq!(reply.unwrap(), arg, "seed {seed}, call {i}");
    }
    let resets = resets.resets.load(Ordering::Relaxed);
    assert!(
        resets > 0,
        "seed {seed}: the proxy never reset, the test proved nothing"
    );
    // At-least-once: every call ran, some more than once.
    assert!(svc.runs.load(Ordering::Relaxed) >= 50);
}

#[tokio::test]
async fn a_black_holed_server_is_reported_unresponsive() {
    let (addr, svc) = start().await;
    let cfg = ebb_chaos::ChaosConfig {
        drop_p: 1.0,
        ..ebb_chaos::ChaosConfig::TRANSPARENT
    };
    let proxy = ebb_chaos::Proxy::bind("127.0.0.1:0", &addr, cfg, 1)
        .await
        .unwrap();
    let via = proxy.local_addr().unwrap().to_string();
    tokio::spawn(proxy.run());
    let mut config = ebb_rpc::transport::TcpClientConfig::default();
    config.session.heartbeat_interval = ebb_core::Nanos::from_millis(50);
    config.session.heartbeat_silence = ebb_core::Nanos::from_millis(200);
    let client = TcpClient::connect_with(&via, config).await.unwrap();
    let opts = CallOptions::default().with_timeout(ebb_core::Nanos::from_secs(10));
    // Idempotent, so it is sent before the handshake completes: the silence
    // then ends a call that is on the wire, which is what the detector
    // reports (an unsent call waits for a reconnect instead).
    let err = client
        .call(&METHODS[0], Bytes::from_static(b"x"), opts)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::ServerUnresponsive { .. }),
        "{err:?}"
    );
    assert_eq!(svc.runs.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_peer_that_never_reads_does_not_stall_others() {
    let (addr, _) = start().await;
    // Flood idempotent echoes of 64 KiB and never read a reply: the server
    // must stop reading from this peer rather than buffer without bound.
    let mut flood = TcpStream::connect(&addr).await.unwrap();
    let mut bytes = bytes::BytesMut::new();
    for seq in 1..=64u64 {
        let frame = request(7, seq, Bytes::from(vec![1u8; 64 * 1024]));
        wire::encode_message(&frame, &mut bytes).unwrap();
    }
    let flooder = tokio::spawn(async move {
        for _ in 0..8 {
            if flood.write_all(&bytes).await.is_err() {
                break;
            }
        }
        flood
    });
    let client = TcpClient::connect(&addr).await.unwrap();
    for _ in 0..10 {
        let r = client
            .call(
                &METHODS[0],
                Bytes::from_static(b"still here"),
                CallOptions::default(),
            )
            .await;
        assert_eq!(r.unwrap(), &b"still here"[..]);
    }
    flooder.abort();
}

#[tokio::test]
async fn a_panicking_method_fails_its_call_and_the_server_goes_on() {
    let (addr, _) = start().await;
    let client = TcpClient::connect(&addr).await.unwrap();
    let err = client
        .call(&METHODS[2], Bytes::new(), CallOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(&err, CallError::Panicked { .. }), "{err:?}");
    assert!(err.may_have_run());
    let ok = client
        .call(
            &METHODS[0],
            Bytes::from_static(b"alive"),
            CallOptions::default(),
        )
        .await;
    assert_eq!(ok.unwrap(), &b"alive"[..]);
}

#[tokio::test]
async fn oversized_arguments_are_refused_before_sending() {
    let (addr, svc) = start().await;
    let client = TcpClient::connect(&addr).await.unwrap();
    let huge = Bytes::from(vec![0u8; wire::MAX_PAYLOAD_BYTES + 1]);
    let err = client
        .call(&METHODS[0], huge, CallOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::BadRequest { message } if message.contains("nothing was sent")),
        "{err:?}"
    );
    let ok = client
        .call(
            &METHODS[0],
            Bytes::from_static(b"fine"),
            CallOptions::default(),
        )
        .await;
    assert_eq!(ok.unwrap(), &b"fine"[..]);
    assert_eq!(svc.runs.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_connection_speaking_for_too_many_clients_is_refused_beyond_the_bound() {
    use ebb_rpc::transport::server::MAX_CLIENTS_PER_CONN;
    let (addr, svc) = start().await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let mut out = bytes::BytesMut::new();
    let n = MAX_CLIENTS_PER_CONN as u128 + 1;
    for id in 1..=n {
        let frame = request(id, 1, Bytes::from_static(b"e"));
        wire::encode_message(&frame, &mut out).unwrap();
    }
    s.write_all(&out).await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let mut replies = Vec::new();
    while replies.len() < n as usize {
        assert!(
            s.read_buf(&mut buf).await.unwrap() > 0,
            "server closed early"
        );
        while let Some(f) = wire::decode_message(&mut buf).unwrap() {
            let Message::Reply(r) = f else {
                panic!("expected replies, got {f:?}")
            };
            replies.push(r);
        }
    }
    let refused: Vec<_> = replies
        .iter()
        .filter(|r| r.outcome == Outcome::Refused(Refusal::ClientsPerConnection))
        .collect();
    assert_eq!(refused.len(), 1, "{replies:?}");
    assert_eq!(refused[0].client, ebb_core::ClientId(n));
    assert_eq!(svc.runs.load(Ordering::Relaxed), MAX_CLIENTS_PER_CONN);
}

#[tokio::test]
async fn a_full_server_turns_a_new_connection_away_at_once_and_its_call_did_not_run() {
    let svc = Arc::new(TestService {
        gather: Barrier::new(GATHER),
        runs: AtomicUsize::new(0),
    });
    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    };
    let server = Server::bind_with("127.0.0.1:0", Arc::clone(&svc), config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap().to_string();
    tokio::spawn(server.run());
    let first = TcpClient::connect(&addr).await.unwrap();
    let echo = Bytes::from_static(b"first");
    assert_eq!(
        first
            .call(&METHODS[0], echo.clone(), CallOptions::default())
            .await
            .unwrap(),
        echo
    );
    let second = TcpClient::connect(&addr).await.unwrap();
    // A long deadline: the answer must come from the refusal, not a timer.
    let options = CallOptions::default().with_timeout(ebb_core::Nanos::from_secs(3600));
    let err = second
        .call(&METHODS[1], Bytes::new(), options)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CallError::Refused {
                reason: Refusal::ServerFull,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.may_have_run());
    assert_eq!(
        svc.runs.load(Ordering::Relaxed),
        1,
        "only the first call ran"
    );
}

/// A client told its server is gone ends every call at once, each saying
/// whether it left: the server here accepts but never answers the
/// handshake, so the at-most-once call waits unsent while the idempotent
/// one goes out.
#[tokio::test]
async fn abandoned_calls_say_whether_they_were_sent() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = Arc::new(TcpClient::connect(&addr).await.unwrap());
    let (mut conn, _) = listener.accept().await.unwrap();
    let opts = CallOptions::default().with_timeout(ebb_core::Nanos::from_secs(60));
    let c = Arc::clone(&client);
    let amo = tokio::spawn(async move { c.call(&METHODS[1], Bytes::new(), opts).await });
    let c = Arc::clone(&client);
    let idem = tokio::spawn(async move { c.call(&METHODS[0], Bytes::new(), opts).await });
    // Wait for the idempotent request: both calls are in the session then.
    let mut buf = bytes::BytesMut::new();
    let mut seen_request = false;
    while !seen_request {
        assert!(conn.read_buf(&mut buf).await.unwrap() > 0, "client closed");
        while let Some(m) = wire::decode_message(&mut buf).unwrap() {
            if let Message::Request(r) = m {
                assert!(
                    r.idempotent,
                    "an at-most-once call left before the handshake"
                );
                seen_request = true;
            }
        }
    }
    client.abandon_calls("the server is gone");
    let lost = |r: Result<Bytes, CallError>| match r {
        Err(CallError::ConnectionLost { sent, cause }) => {
            assert!(cause.contains("the server is gone"), "{cause}");
            sent
        }
        other => panic!("expected ConnectionLost, got {other:?}"),
    };
    assert!(
        !lost(amo.await.unwrap()),
        "the at-most-once call never left"
    );
    assert!(lost(idem.await.unwrap()), "the idempotent call left");
}
