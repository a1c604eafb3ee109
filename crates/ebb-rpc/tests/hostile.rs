//! Clients that open connections and never speak: they must not keep a
//! well-behaved client out. It is served, or told at once that the server
//! (or its peer's share) is full; it never waits for its deadline.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ebb_core::Nanos;
use ebb_rpc::CallError;
use ebb_rpc::semantics::{MAX_CONNECTIONS_PER_PEER, ServerConfig};
use ebb_rpc::service::{
    BoxFuture, CallOptions, DispatchError, MethodInfo, ServiceDispatch, Transport,
};
use ebb_rpc::transport::{Server, TcpClient};
use ebb_rpc::wire::{self, ConnErrorKind, Message, Refusal};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const IDLE_SOCKETS: usize = 2000;
/// Descriptors the test needs: the idle sockets, the server's side of the
/// ones it holds, and headroom.
const FDS_NEEDED: u64 = 4096;
/// Attempts of the well-behaved client after the silent ones are closed.
const MAX_ATTEMPTS: u32 = 100;
/// A guard far above anything the test waits for: reaching it means a hang.
const HANG_GUARD: Duration = Duration::from_secs(60);

static ECHO: [MethodInfo; 1] = [MethodInfo {
    service: "Echo",
    id: 0,
    name: "echo",
    idempotent: false,
    params: &[],
    returns: "Vec<u8>",
    blocking: false,
}];

struct Echo;

impl ServiceDispatch for Echo {
    fn name(&self) -> &'static str {
        "Echo"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &ECHO
    }
    fn dispatch(&self, _id: u16, args: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async move { Ok(args) })
    }
}

/// Raises the open-files limit to what the test needs, or says why not.
fn enough_descriptors() -> Result<(), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err("getrlimit(RLIMIT_NOFILE) failed".into());
    }
    if lim.rlim_max < FDS_NEEDED {
        return Err(format!(
            "the hard open-files limit is {} (needs {FDS_NEEDED})",
            lim.rlim_max
        ));
    }
    lim.rlim_cur = lim.rlim_cur.max(FDS_NEEDED);
    // SAFETY: setrlimit reads the struct we own; raising the soft limit up
    // to the hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err("setrlimit(RLIMIT_NOFILE) failed".into());
    }
    Ok(())
}

/// The connection error a server sent a socket before closing it.
async fn last_words(mut s: TcpStream) -> Option<ConnErrorKind> {
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes).await;
    let mut buf = bytes::BytesMut::from(&bytes[..]);
    match wire::decode_message(&mut buf) {
        Ok(Some(Message::ConnError(e))) => Some(e.kind),
        _ => None,
    }
}

#[tokio::test]
async fn two_thousand_silent_sockets_do_not_keep_a_client_waiting() {
    if let Err(why) = enough_descriptors() {
        assert!(
            std::env::var("CI").is_err(),
            "two_thousand_silent_sockets_do_not_keep_a_client_waiting cannot run: {why}"
        );
        eprintln!("SKIPPED two_thousand_silent_sockets_do_not_keep_a_client_waiting: {why}");
        return;
    }
    let config = ServerConfig {
        handshake_timeout: Nanos::from_millis(300),
        ..ServerConfig::default()
    };
    let server = Server::bind_with("127.0.0.1:0", Echo, config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap().to_string();
    tokio::spawn(server.run());

    let mut silent = Vec::with_capacity(IDLE_SOCKETS);
    for _ in 0..IDLE_SOCKETS {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    // While the silent ones hold this peer's share, a client is turned away
    // at once, told it did not run, long before its hour-long deadline.
    let patient = CallOptions::default().with_timeout(Nanos::from_secs(3600));
    let client = TcpClient::connect(&addr).await.unwrap();
    let first = tokio::time::timeout(
        HANG_GUARD,
        client.call(&ECHO[0], Bytes::from_static(b"x"), patient),
    )
    .await
    .expect("the call hung instead of being served or refused");
    match &first {
        Ok(reply) => assert_eq!(reply, &Bytes::from_static(b"x")),
        Err(e @ CallError::Refused { reason, .. }) => {
            assert!(
                matches!(reason, Refusal::PeerFull | Refusal::ServerFull),
                "{e}"
            );
            assert!(!e.may_have_run());
        }
        Err(e) => panic!("expected a reply or an immediate refusal, got {e}"),
    }

    // The server closes the silent sockets: the ones it held after the
    // handshake timeout, the rest at once as over the peer's share.
    let words: Vec<_> = {
        let reads = silent.into_iter().map(|s| tokio::spawn(last_words(s)));
        let mut out = Vec::new();
        for r in reads {
            out.push(tokio::time::timeout(HANG_GUARD, r).await.unwrap().unwrap());
        }
        out
    };
    let timed_out = words
        .iter()
        .filter(|k| **k == Some(ConnErrorKind::Timeout))
        .count();
    let turned_away = words
        .iter()
        .filter(|k| **k == Some(ConnErrorKind::PeerFull))
        .count();
    // Slots freed by the timeout while sockets were still being opened go
    // to later sockets, so at least the peer's share times out.
    assert!(
        timed_out >= MAX_CONNECTIONS_PER_PEER,
        "{timed_out} timed out, {turned_away} turned away"
    );
    assert_eq!(
        timed_out + turned_away,
        IDLE_SOCKETS,
        "every silent socket is closed with a reason"
    );

    // With the silent ones gone, a client is served.
    let client = Arc::new(client);
    let mut served = false;
    for _ in 0..MAX_ATTEMPTS {
        match client
            .call(&ECHO[0], Bytes::from_static(b"y"), patient)
            .await
        {
            Ok(reply) => {
                assert_eq!(reply, Bytes::from_static(b"y"));
                served = true;
                break;
            }
            Err(CallError::Refused { .. }) => {
                // The first client's refused connection may still be
                // closing; a new connection is made on the next call.
            }
            Err(e) => panic!("expected to be served, got {e}"),
        }
    }
    assert!(served, "never served in {MAX_ATTEMPTS} attempts");
}
