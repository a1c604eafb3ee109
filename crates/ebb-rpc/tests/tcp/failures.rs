//! Connections that fail: refused, reset, black-holed, or given up on by
//! the caller, each call ending with an error that says what happened and
//! whether it may have run.

use super::*;

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
