//! TLS and mutual TLS end to end on loopback, with certificates generated
//! here (rcgen): a call over TLS works, a server requiring client
//! certificates refuses a client without one and a client whose
//! certificate another CA issued, and bad files give errors naming them.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ebb_core::Nanos;
use ebb_rpc::service::{
    BoxFuture, CallOptions, DispatchError, MethodInfo, ServiceDispatch, Transport,
};
use ebb_rpc::transport::{ClientTls, Server, ServerTls, TcpClient, TcpClientConfig, TlsError};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

static ECHO: MethodInfo = MethodInfo {
    service: "Echo",
    id: 0,
    name: "echo",
    idempotent: false,
    blocking: false,
    params: &[],
    returns: "Vec<u8>",
};

/// Echoes its arguments and counts its runs.
#[derive(Default)]
struct Echo {
    runs: AtomicUsize,
}

impl ServiceDispatch for Echo {
    fn name(&self) -> &'static str {
        "Echo"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        std::slice::from_ref(&ECHO)
    }
    fn dispatch(&self, _id: u16, args: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(args) })
    }
    fn dispatch_json(
        &self,
        m: &str,
        _a: serde_json::Value,
    ) -> BoxFuture<'_, Result<serde_json::Value, DispatchError>> {
        let m = m.to_owned();
        Box::pin(async move { Err(DispatchError::UnknownMethod(m)) })
    }
}

/// A CA, and leaf certificates it signs, written as PEM files.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
    name: &'static str,
}

impl Ca {
    fn new(dir: &Path, name: &'static str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let ca = Ca {
            cert,
            key,
            dir: dir.to_owned(),
            name,
        };
        std::fs::write(ca.cert_path(), ca.cert.pem()).unwrap();
        ca
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A certificate for `names` (DNS names or IP addresses); returns the
    /// paths of its certificate and key files.
    fn issue(&self, who: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, who);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let cert_path = self.dir.join(format!("{}-{who}.pem", self.name));
        let key_path = self.dir.join(format!("{}-{who}.key", self.name));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

async fn start(tls: ServerTls) -> (String, Arc<Echo>) {
    let svc = Arc::new(Echo::default());
    let server = Server::bind("127.0.0.1:0", Arc::clone(&svc))
        .await
        .unwrap()
        .with_tls(tls);
    let addr = server.local_addr().unwrap().to_string();
    tokio::spawn(server.run());
    (addr, svc)
}

/// Short enough that a refused client's call ends quickly; a refused
/// handshake is retried until then.
fn quick() -> CallOptions {
    CallOptions::default().with_timeout(Nanos::from_millis(1_500))
}

async fn call(client: &TcpClient, what: &'static [u8]) -> Result<Bytes, ebb_rpc::CallError> {
    client.call(&ECHO, Bytes::from_static(what), quick()).await
}

#[tokio::test]
async fn a_call_over_tls_works_and_a_large_reply_spans_many_records() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let (cert, key) = ca.issue("node", &["127.0.0.1", "localhost"]);
    let (addr, svc) = start(ServerTls::from_pem_files(&cert, &key, None).unwrap()).await;
    let tls = ClientTls::from_pem_files(&ca.cert_path(), None).unwrap();
    let client = TcpClient::connect_tls(&addr, tls, TcpClientConfig::default())
        .await
        .unwrap();
    assert_eq!(&call(&client, b"over tls").await.unwrap()[..], b"over tls");
    let big = vec![7u8; 200_000];
    let reply = client
        .call(&ECHO, Bytes::from(big.clone()), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(reply.len(), big.len(), "a reply of many TLS records");
    assert_eq!(svc.runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_plain_client_is_not_served_by_a_tls_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let (cert, key) = ca.issue("node", &["127.0.0.1"]);
    let (addr, svc) = start(ServerTls::from_pem_files(&cert, &key, None).unwrap()).await;
    let plain = TcpClient::connect(&addr).await.unwrap();
    assert!(call(&plain, b"plain").await.is_err());
    assert_eq!(svc.runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_servers_ca_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let other = Ca::new(dir.path(), "other");
    let (cert, key) = ca.issue("node", &["127.0.0.1"]);
    let (addr, svc) = start(ServerTls::from_pem_files(&cert, &key, None).unwrap()).await;
    let tls = ClientTls::from_pem_files(&other.cert_path(), None).unwrap();
    let err = TcpClient::connect_tls(&addr, tls, TcpClientConfig::default())
        .await
        .err()
        .expect("the handshake fails");
    assert!(err.to_string().contains("TLS handshake failed"), "{err}");
    assert_eq!(svc.runs.load(Ordering::SeqCst), 0);
}

/// A certificate naming no address, only a DNS name: dialled by IP, it is
/// refused unless the client checks it against that name instead, as a
/// gateway does for nodes at addresses chosen as they start.
#[tokio::test]
async fn a_configured_server_name_replaces_the_dialled_host() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let (cert, key) = ca.issue("node", &["node.ebb.test"]);
    let (addr, svc) = start(ServerTls::from_pem_files(&cert, &key, None).unwrap()).await;
    let by_ip = ClientTls::from_pem_files(&ca.cert_path(), None).unwrap();
    let err = TcpClient::connect_tls(&addr, by_ip.clone(), TcpClientConfig::default())
        .await
        .err()
        .expect("127.0.0.1 is not the certificate's name");
    assert!(err.to_string().contains("TLS handshake failed"), "{err}");
    let named = by_ip.clone().with_server_name("node.ebb.test").unwrap();
    let client = TcpClient::connect_tls(&addr, named, TcpClientConfig::default())
        .await
        .unwrap();
    assert_eq!(&call(&client, b"named").await.unwrap()[..], b"named");
    let wrong = by_ip.clone().with_server_name("other.ebb.test").unwrap();
    assert!(
        TcpClient::connect_tls(&addr, wrong, TcpClientConfig::default())
            .await
            .is_err(),
        "a name the certificate does not carry"
    );
    let bad = by_ip.with_server_name("bad name").expect_err("not a name");
    assert!(matches!(bad, TlsError::ServerName { .. }), "{bad}");
    assert_eq!(svc.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn mutual_tls_serves_only_clients_with_a_certificate_from_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let other = Ca::new(dir.path(), "other");
    let (cert, key) = ca.issue("node", &["127.0.0.1"]);
    let server_tls = ServerTls::from_pem_files(&cert, &key, Some(&ca.cert_path())).unwrap();
    let (addr, svc) = start(server_tls).await;

    // A certificate from the CA: served.
    let (good_cert, good_key) = ca.issue("client", &["client.test"]);
    let tls = ClientTls::from_pem_files(&ca.cert_path(), Some((&good_cert, &good_key))).unwrap();
    let good = TcpClient::connect_tls(&addr, tls, TcpClientConfig::default())
        .await
        .unwrap();
    assert_eq!(&call(&good, b"mtls").await.unwrap()[..], b"mtls");
    assert_eq!(svc.runs.load(Ordering::SeqCst), 1);

    // No certificate, or one from another CA: the server ends the
    // handshake (TLS 1.3 tells the client after its side finished, so the
    // refusal may surface at connect or at the call); nothing runs.
    let (stray_cert, stray_key) = other.issue("client", &["client.test"]);
    let clients = [
        (
            "no certificate",
            ClientTls::from_pem_files(&ca.cert_path(), None).unwrap(),
        ),
        (
            "another CA's certificate",
            ClientTls::from_pem_files(&ca.cert_path(), Some((&stray_cert, &stray_key))).unwrap(),
        ),
    ];
    for (who, tls) in clients {
        let refused = match TcpClient::connect_tls(&addr, tls, TcpClientConfig::default()).await {
            Err(_) => true,
            Ok(client) => call(&client, b"refused").await.is_err(),
        };
        assert!(refused, "a client with {who} was served");
    }
    assert_eq!(
        svc.runs.load(Ordering::SeqCst),
        1,
        "only the good client's call ran"
    );
}

#[tokio::test]
async fn a_full_tls_server_answers_server_full_at_once_and_the_call_did_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let (cert, key) = ca.issue("node", &["127.0.0.1"]);
    let svc = Arc::new(Echo::default());
    let config = ebb_rpc::semantics::ServerConfig {
        max_connections: 1,
        ..Default::default()
    };
    let server = Server::bind_with("127.0.0.1:0", Arc::clone(&svc), config)
        .await
        .unwrap()
        .with_tls(ServerTls::from_pem_files(&cert, &key, None).unwrap());
    let addr = server.local_addr().unwrap().to_string();
    tokio::spawn(server.run());
    let tls = ClientTls::from_pem_files(&ca.cert_path(), None).unwrap();
    let first = TcpClient::connect_tls(&addr, tls.clone(), TcpClientConfig::default())
        .await
        .unwrap();
    assert_eq!(&call(&first, b"first").await.unwrap()[..], b"first");
    // The server is at its one connection: the second client's handshake
    // completes only so that it can be told why, inside TLS.
    let second = TcpClient::connect_tls(&addr, tls, TcpClientConfig::default())
        .await
        .expect("a refused TLS client still completes its handshake");
    // A long deadline: the answer must come from the refusal, not a timer
    // (the outer bound only keeps a broken build from hanging).
    let options = CallOptions::default().with_timeout(Nanos::from_secs(3600));
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        second.call(&ECHO, Bytes::from_static(b"second"), options),
    );
    let err = answer
        .await
        .expect("answered, not left to wait")
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ebb_rpc::CallError::Refused {
                reason: ebb_rpc::wire::Refusal::ServerFull,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.may_have_run());
    assert_eq!(
        svc.runs.load(Ordering::SeqCst),
        1,
        "only the first call ran"
    );
}

/// Relays connections to `upstream` and counts them.
async fn counting_relay(upstream: String) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut up = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            tokio::spawn(async move {
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            });
        }
    });
    (addr, count)
}

/// The most connection attempts that fit in `window` when the pause
/// before attempt `i` is `RECONNECT_BACKOFF_MS * 2^i`, capped: the bound a
/// backing-off client stays under, whatever the machine's speed.
fn most_attempts_within(window: Nanos) -> u64 {
    use ebb_rpc::transport::client::{MAX_RECONNECT_BACKOFF_MS, RECONNECT_BACKOFF_MS};
    let (mut waited, mut pause, mut n) = (0, RECONNECT_BACKOFF_MS, 0);
    while waited + pause <= window.as_millis() {
        waited += pause;
        pause = (pause * 2).min(MAX_RECONNECT_BACKOFF_MS);
        n += 1;
    }
    n
}

#[tokio::test]
async fn a_client_a_tls_server_keeps_dropping_backs_off_instead_of_spinning() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let (cert, key) = ca.issue("node", &["127.0.0.1"]);
    let server_tls = ServerTls::from_pem_files(&cert, &key, Some(&ca.cert_path())).unwrap();
    let (addr, svc) = start(server_tls).await;
    let (via, opened) = counting_relay(addr).await;
    // No client certificate: TLS 1.3 finishes the client's side of the
    // handshake, then the server drops the connection. Every reconnect
    // looks successful and is dropped again.
    let tls = ClientTls::from_pem_files(&ca.cert_path(), None).unwrap();
    let began = std::time::Instant::now();
    let client = TcpClient::connect_tls(&via, tls, TcpClientConfig::default())
        .await
        .expect("the client's side of a TLS 1.3 handshake completes");
    let window = Nanos::from_secs(3);
    let options = CallOptions::default().with_timeout(window);
    let err = client
        .call(&ECHO, Bytes::from_static(b"x"), options)
        .await
        .unwrap_err();
    assert!(!err.may_have_run(), "never sent: {err:?}");
    let attempts = client.reconnect_attempts();
    // Every attempt came after the connection made at `began`, each after
    // its pause, so however slow the machine, no more than this fit (plus
    // one: a call that finds the client idle and disconnected dials at once).
    let elapsed = Nanos::from(began.elapsed());
    let bound = most_attempts_within(elapsed) + 1;
    println!("{attempts} reconnection attempts in {elapsed} (at most {bound})");
    // Spinning (the pause reset by every connection that opened) made
    // about one attempt per 10 ms plus a handshake: hundreds here.
    assert!(
        (2..=bound).contains(&attempts),
        "{attempts} reconnection attempts in {elapsed}; backing off allows at most {bound}"
    );
    assert_eq!(
        opened.load(Ordering::SeqCst) as u64,
        attempts + 1,
        "the relay saw the first connection and every reconnect"
    );
    assert_eq!(svc.runs.load(Ordering::SeqCst), 0);
}

#[test]
fn bad_or_missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let (cert, key) = ca.issue("node", &["127.0.0.1"]);
    let (_, other_key) = ca.issue("other", &["127.0.0.1"]);
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();

    let err = ServerTls::from_pem_files(&missing, &key, None).unwrap_err();
    assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
    assert!(
        err.to_string().contains("missing.pem") && err.to_string().contains("certificate"),
        "{err}"
    );

    let err = ServerTls::from_pem_files(&garbage, &key, None).unwrap_err();
    assert!(matches!(err, TlsError::Bad { .. }), "{err:?}");
    assert!(
        err.to_string().contains("garbage.pem") && err.to_string().contains("BEGIN CERTIFICATE"),
        "{err}"
    );

    let err = ServerTls::from_pem_files(&cert, &garbage, None).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::Bad {
                what: "private key",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("garbage.pem"), "{err}");

    let err = ServerTls::from_pem_files(&cert, &other_key, None).unwrap_err();
    assert!(matches!(err, TlsError::Mismatch { .. }), "{err:?}");
    assert!(
        err.to_string().contains("main-node.pem") && err.to_string().contains("main-other.key"),
        "{err}"
    );

    let err = ServerTls::from_pem_files(&cert, &key, Some(&missing)).unwrap_err();
    assert!(
        err.to_string().contains("client CA") && err.to_string().contains("missing.pem"),
        "{err}"
    );

    let err = ClientTls::from_pem_files(&garbage, None).unwrap_err();
    assert!(
        err.to_string().contains("CA file") && err.to_string().contains("garbage.pem"),
        "{err}"
    );
}

/// A TLS client configuration trusting `ca`, for a peer that speaks the
/// wire format itself.
fn raw_client_config(ca: &Ca) -> Arc<tokio_rustls::rustls::ClientConfig> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The TLS path of the bound on a closed connection's last writes (plain
/// TCP: `tests/tcp/peers.rs`). A TLS peer sends calls, ends its side
/// (close_notify, then its socket's write side) and never reads: the
/// server reads the end, closes the connection and has most of the
/// replies still to encrypt and write, to a peer that will never take
/// them. The writer gives up `CLOSE_FLUSH_TIMEOUT_MS` after the close,
/// counts it, and the socket is closed with a reset, which is what the
/// peer waits for here. On tokio's paused clock the bound passes as soon
/// as nothing else is left to do; without it the server waits forever
/// and the test's far timeout fails it.
#[tokio::test(start_paused = true)]
async fn a_closed_tls_connection_gives_up_its_last_replies_to_a_peer_that_never_reads() {
    use ebb_rpc::transport::outbuf::{CLOSE_FLUSH_TIMEOUT_MS, MAX_PENDING_WRITE_BYTES};
    use ebb_rpc::wire::{self, Message, Request, Seq};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
    const CALLS: u64 = 16;
    const PAYLOAD_BYTES: usize = 64 * 1024;
    // Far more than both socket buffers take, and under the half of the
    // output bound at which the server would stop reading (and so not
    // see the end).
    const _: () = assert!(CALLS as usize * PAYLOAD_BYTES < MAX_PENDING_WRITE_BYTES / 2);
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let (cert, key) = ca.issue("node", &["127.0.0.1", "localhost"]);
    let config = common::quiet_server_config();
    let (addr, listener) = common::small_send_buffer_listener();
    let svc = Arc::new(Echo::default());
    let server = Server::from_std(listener, Arc::clone(&svc), config)
        .unwrap()
        .with_tls(ServerTls::from_pem_files(&cert, &key, None).unwrap());
    let stats = server.stats_reader();
    tokio::spawn(server.run());

    let peer = common::small_recv_buffer_peer(addr).await;
    let connector = tokio_rustls::TlsConnector::from(raw_client_config(&ca));
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut peer = connector.connect(name, peer).await.unwrap();
    let mut calls = bytes::BytesMut::new();
    for seq in 1..=CALLS {
        let frame = Message::Request(Request {
            client: ebb_core::ClientId(7),
            seq: Seq(seq),
            ack_below: Seq(1),
            incarnation: None,
            deadline: Nanos::from_secs(60),
            method: ECHO.id,
            idempotent: true,
            json: false,
            payload: Bytes::from(vec![1u8; PAYLOAD_BYTES]),
        });
        wire::encode_message(&frame, &mut calls).unwrap();
    }
    peer.write_all(&calls).await.unwrap();
    peer.shutdown().await.unwrap();

    let far = std::time::Duration::from_secs(3600);
    assert!(far > std::time::Duration::from_millis(CLOSE_FLUSH_TIMEOUT_MS));
    let (mut socket, _) = peer.into_inner();
    let reset = tokio::time::timeout(far, socket.ready(Interest::ERROR)).await;
    let ready = reset
        .expect("the server never closed the connection")
        .unwrap();
    assert!(ready.is_error(), "{ready:?}");
    assert_eq!(svc.runs.load(Ordering::SeqCst), CALLS as usize);
    assert_eq!(stats().close_flushes_abandoned, 1, "{:?}", stats());
    // The replies never reached the peer whole: what it can still read is
    // what the small buffers held (encrypted), then the reset.
    let mut got = Vec::new();
    let end = socket.read_to_end(&mut got).await;
    assert!(end.is_err() || got.len() < calls.len(), "{end:?}");
}
