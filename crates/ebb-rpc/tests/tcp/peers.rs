//! Peers the server must survive: one sending garbage, one that never
//! reads, one speaking for too many clients, and more connections than it
//! takes; each is dealt with alone and the others are served.

use super::*;

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

/// A peer sends calls, closes its sending side and never reads: the
/// server reads the close, closes the connection and has most of the
/// replies still to write, to a peer that will never take them. The writer
/// gives up `CLOSE_FLUSH_TIMEOUT_MS` after the close, counts it, and the
/// connection's task ends, closing the socket with a reset, which is what
/// the peer waits for here. On tokio's paused clock the bound passes as
/// soon as nothing else is left to do; before the bound a server waited
/// here forever and the test's far timeout failed it.
#[tokio::test(start_paused = true)]
async fn a_closed_connection_gives_up_its_last_replies_to_a_peer_that_never_reads() {
    use ebb_rpc::transport::outbuf::{CLOSE_FLUSH_TIMEOUT_MS, MAX_PENDING_WRITE_BYTES};
    use tokio::io::Interest;
    const CALLS: u64 = 16;
    const PAYLOAD_BYTES: usize = 64 * 1024;
    // Far more than both socket buffers take, and under the half of the
    // output bound at which the server would stop reading (and so not
    // see the close).
    const _: () = assert!(CALLS as usize * PAYLOAD_BYTES < MAX_PENDING_WRITE_BYTES / 2);
    let config = common::quiet_server_config();
    let (addr, listener) = common::small_send_buffer_listener();
    let svc = Arc::new(TestService {
        gather: Barrier::new(GATHER),
        runs: AtomicUsize::new(0),
    });
    let server = Server::from_std(listener, Arc::clone(&svc), config).unwrap();
    let stats = server.stats_reader();
    tokio::spawn(server.run());

    let mut peer = common::small_recv_buffer_peer(addr).await;
    let mut calls = bytes::BytesMut::new();
    for seq in 1..=CALLS {
        let frame = request(7, seq, Bytes::from(vec![1u8; PAYLOAD_BYTES]));
        wire::encode_message(&frame, &mut calls).unwrap();
    }
    peer.write_all(&calls).await.unwrap();
    peer.shutdown().await.unwrap();

    let far = std::time::Duration::from_secs(3600);
    assert!(far > std::time::Duration::from_millis(CLOSE_FLUSH_TIMEOUT_MS));
    let reset = tokio::time::timeout(far, peer.ready(Interest::ERROR)).await;
    let ready = reset
        .expect("the server never closed the connection")
        .unwrap();
    assert!(ready.is_error(), "{ready:?}");
    assert_eq!(svc.runs.load(Ordering::Relaxed), CALLS as usize);
    assert_eq!(stats().close_flushes_abandoned, 1, "{:?}", stats());
    // The replies never reached the peer whole: what it can still read is
    // what the small buffers held, then the reset.
    let mut got = Vec::new();
    let end = peer.read_to_end(&mut got).await;
    assert!(end.is_err() || got.len() < calls.len(), "{end:?}");
}

/// A `Resize` whose capacity field is 0, or past `u32`, is a malformed
/// frame (`docs/wire.md`): the server answers a bad-frame connection error
/// naming the field and closes that connection only, and its workers keep
/// their number. A well-formed resize on another connection still applies.
#[tokio::test]
async fn a_malformed_resize_closes_its_connection_and_leaves_the_workers() {
    let svc = Arc::new(TestService {
        gather: Barrier::new(GATHER),
        runs: AtomicUsize::new(0),
    });
    let two = std::num::NonZeroUsize::new(2).unwrap();
    let server = Server::bind("127.0.0.1:0", Arc::clone(&svc))
        .await
        .unwrap()
        .with_threads(two)
        .resizable();
    let workers = server.workers();
    let addr = server.local_addr().unwrap().to_string();
    tokio::spawn(server.run());
    let resize = Message::Resize(wire::Resize {
        id: 1,
        capacity: std::num::NonZeroU32::MIN,
    });
    for capacity in [0, u64::from(u32::MAX) + 1] {
        let mut frame = bytes::BytesMut::new();
        wire::encode_message(&resize, &mut frame).unwrap();
        // The capacity rides in the `ack_below` field, bytes 32..40.
        frame[32..40].copy_from_slice(&capacity.to_le_bytes());
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(&frame).await.unwrap();
        let said = server_last_words(s).await;
        let m = refusal(&said);
        assert!(m.contains("capacity"), "capacity {capacity}: {m}");
        assert_eq!(
            workers.threads(),
            two,
            "capacity {capacity} changed the workers"
        );
    }
    let client = TcpClient::connect(&addr).await.unwrap();
    let three = std::num::NonZeroU32::new(3).unwrap();
    let took = client
        .resize(three, ebb_core::Nanos::from_secs(30))
        .await
        .unwrap();
    assert_eq!(took, Some(three));
    assert_eq!(workers.threads().get(), 3);
    assert_eq!(svc.runs.load(Ordering::SeqCst), 0, "no resize ran a method");
}
