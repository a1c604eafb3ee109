//! Calls over one connection: many at once matched to their replies,
//! payloads of every size intact, and typed errors for an unknown method,
//! a panicking one and arguments too large to send.

use super::*;

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
