//! Frames keep their order across writes in place and by the writer task,
//! on plain TCP and over TLS.

#![allow(clippy::unwrap_used)]
use super::*;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::rustls;

/// Socket buffers this small fill after a few frames, so the writer's
/// path runs without megabytes of test data.
const SMALL_SOCKET_BUFFER_BYTES: u32 = 4096;
const FRAME_BYTES: usize = 1000;
const FRAMES: usize = 2000;

async fn small_buffered_pair() -> (TcpStream, TcpStream) {
    let listening = TcpSocket::new_v4().unwrap();
    listening
        .set_recv_buffer_size(SMALL_SOCKET_BUFFER_BYTES)
        .unwrap();
    listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listening.local_addr().unwrap();
    let listener = listening.listen(1).unwrap();
    let sending = TcpSocket::new_v4().unwrap();
    sending
        .set_send_buffer_size(SMALL_SOCKET_BUFFER_BYTES)
        .unwrap();
    let sender = sending.connect(addr).await.unwrap();
    let (receiver, _) = listener.accept().await.unwrap();
    (sender, receiver)
}

fn frame(i: usize) -> Vec<u8> {
    vec![u8::try_from(i % 251).unwrap(); FRAME_BYTES]
}

/// Frames written in place, then by the writer while the socket is
/// full, then in place again, reach the peer whole and in order.
#[tokio::test]
async fn frames_keep_their_order_across_writes_in_place_and_by_the_writer() {
    let (sender, receiver) = small_buffered_pair().await;
    let (_read, write) = crate::transport::stream::tcp(sender);
    keep_order(write, Box::new(receiver)).await;
}

/// The same over TLS, written in place through rustls: the producers'
/// writes and the writer task's finishing of them keep the order, and
/// the peer decrypts every byte.
#[tokio::test]
async fn tls_frames_keep_their_order_across_writes_in_place_and_by_the_writer() {
    let (sender, receiver) = small_buffered_pair().await;
    let (server, client) = tls_configs();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let (sent, received) = tokio::join!(connector.connect(name, sender), acceptor.accept(receiver));
    let (_read, write) = crate::transport::stream::tls(sent.unwrap());
    keep_order(write, Box::new(received.unwrap())).await;
}

/// Frames appended while the writer task holds a full socket: far more
/// bytes than one write can put into a socket with these buffers (at most
/// its send buffer, one 64 KiB segment over it, and the peer's window).
const HELD_FRAMES: usize = 256;

/// Every write call that takes bytes is counted, the writer task's as
/// well as the producers' in place: once the socket is full producers
/// only append, and what they appended leaves by the writer's writes
/// when the peer reads: several of them, each counted.
#[tokio::test]
async fn the_writer_tasks_writes_are_counted_with_the_producers() {
    let (sender, mut receiver) = small_buffered_pair().await;
    let (_read, write) = crate::transport::stream::tcp(sender);
    let out = Arc::new(OutBuf::default());
    let writer = {
        let out = Arc::clone(&out);
        tokio::spawn(async move { out.drain_in_place(write).await })
    };
    let blocked = |out: &OutBuf| {
        let p = out.pending.lock().unwrap();
        (p.direct.is_some(), p.blocked)
    };
    while blocked(&out) != (true, false) {
        tokio::task::yield_now().await;
    }
    let mut want = Vec::new();
    let push = |out: &OutBuf, want: &mut Vec<u8>| {
        let f = frame(want.len() / FRAME_BYTES);
        out.push_with(|b| b.head_mut().extend_from_slice(&f))
            .unwrap();
        want.extend_from_slice(&f);
    };
    // Nobody reads: producers write in place until the socket is full.
    while !blocked(&out).1 {
        push(&out, &mut want);
        assert!(want.len() < FRAMES * FRAME_BYTES, "the socket never filled");
    }
    let in_place = out.writes();
    assert!(in_place >= 1, "writes in place were not counted");
    // Appended only: the writer holds the socket and it has no room.
    for _ in 0..HELD_FRAMES {
        push(&out, &mut want);
    }
    assert_eq!(out.writes(), in_place, "a write while the socket was full");
    let left = want.len() as u64 - out.written();
    assert!(left >= (HELD_FRAMES * FRAME_BYTES) as u64);
    // The peer reads, the writer task writes the rest; then it closes.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        receiver.read_to_end(&mut got).await.unwrap();
        got
    });
    out.close();
    writer.await.unwrap().unwrap();
    let got = reader.await.unwrap();
    assert!(got == want, "bytes reordered or corrupted");
    assert_eq!(out.written(), want.len() as u64);
    let by_writer = out.writes() - in_place;
    println!("{in_place} writes in place, then {by_writer} by the writer for {left} bytes");
    assert!(
        by_writer >= 2,
        "the writer's writes of the last {left} bytes counted as {by_writer}"
    );
}

/// A server and a client configuration that trusts it, for
/// `localhost`, made for the test.
fn tls_configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    use tokio_rustls::rustls;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = made.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

async fn keep_order(write: WriteSide, mut receiver: Box<dyn AsyncRead + Unpin + Send>) {
    let out = Arc::new(OutBuf::default());
    let writer = {
        let out = Arc::clone(&out);
        tokio::spawn(async move { out.drain_in_place(write).await })
    };
    let state = |out: &OutBuf| {
        let p = out.pending.lock().unwrap();
        (p.direct.is_some(), p.blocked)
    };
    // Until the writer has started, producers only queue.
    while state(&out) != (true, false) {
        tokio::task::yield_now().await;
    }
    let mut want = Vec::with_capacity(FRAMES * FRAME_BYTES);
    let mut i = 0;
    let mut push = |out: &OutBuf, i: &mut usize| {
        let f = frame(*i);
        out.push_with(|b| b.head_mut().extend_from_slice(&f))
            .unwrap();
        want.extend_from_slice(&f);
        *i += 1;
    };
    // Nobody reads yet: the socket fills and the writer takes over.
    while !state(&out).1 {
        push(&out, &mut i);
        assert!(i < FRAMES, "the socket never filled");
    }
    let blocked_at = i;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        receiver.read_to_end(&mut got).await.unwrap();
        got
    });
    // While the peer reads, the writer catches up and producers write
    // in place again.
    let mut in_place_again = false;
    while i < FRAMES {
        push(&out, &mut i);
        in_place_again |= !state(&out).1;
        tokio::task::yield_now().await;
    }
    assert!(in_place_again, "producers never wrote in place again");
    assert!(blocked_at > 1, "nothing was written in place first");
    out.close();
    writer.await.unwrap().unwrap();
    let got = reader.await.unwrap();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "bytes reordered or corrupted");
    assert_eq!(out.written(), want.len() as u64);
}
