//! What the transport tests share: a service that returns its arguments
//! and counts its runs, a server whose I/O loop is one thread, a gate that
//! holds a worker thread until the test opens it, and the echo that shows
//! the I/O loop still answers meanwhile.
//!
//! A test file uses it with `mod common;`; each uses only part of it, so
//! the parts another file needs are not dead code.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ebb_rpc::service::{
    BoxFuture, CallOptions, DispatchError, MethodInfo, ServiceDispatch, Transport,
};
use ebb_rpc::transport::{Server, TcpClient};

/// [`Counting`]'s methods: `echo` (idempotent) and `bump` (at-most-once),
/// both returning their arguments.
pub static COUNTING_METHODS: [MethodInfo; 2] = [
    MethodInfo {
        service: "Test",
        id: 0,
        name: "echo",
        idempotent: true,
        blocking: false,
        params: &[],
        returns: "Vec<u8>",
    },
    MethodInfo {
        service: "Test",
        id: 1,
        name: "bump",
        idempotent: false,
        blocking: false,
        params: &[],
        returns: "Vec<u8>",
    },
];

/// Returns its arguments and counts the calls it ran, so a test can show
/// a refused call did not run and a resent one ran once.
#[derive(Default)]
pub struct Counting(AtomicUsize);

impl Counting {
    /// Calls run so far.
    pub fn runs(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl ServiceDispatch for Counting {
    fn name(&self) -> &'static str {
        "Test"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &COUNTING_METHODS
    }
    fn dispatch(&self, _id: u16, args: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move { Ok(args) })
    }
}

/// How long a held thread waits for its gate, and a test for a held call
/// to start, before giving up: a broken test ends instead of hanging.
pub const HOLD_LIMIT: Duration = Duration::from_secs(60);

/// Holds the threads that wait on it (as CPU work would hold them) until
/// the test opens it; a closed gate past [`HOLD_LIMIT`] fails the test.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    /// Shuts the gate again, for the calls that come next.
    pub fn close(&self) {
        *self.open.lock().unwrap() = false;
    }

    /// Blocks the calling thread until [`Gate::open`].
    pub fn wait(&self) {
        let open = self.open.lock().unwrap();
        let (_open, waited) = self
            .opened
            .wait_timeout_while(open, HOLD_LIMIT, |open| !*open)
            .unwrap();
        assert!(!waited.timed_out(), "the gate never opened");
    }
}

/// Serves `dispatch` on a single-threaded runtime of its own thread and
/// returns its address: whatever runs inline on that server's I/O loop
/// stops it dead, which is what these tests look for. `configure` shapes
/// the bound server before it runs (its worker threads, say).
pub fn serve_on_one_thread<D>(
    dispatch: D,
    configure: impl FnOnce(Server<D>) -> Server<D> + Send + 'static,
) -> String
where
    D: ServiceDispatch + Send + 'static,
{
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = configure(Server::bind("127.0.0.1:0", dispatch).await.unwrap());
            addr_tx
                .send(server.local_addr().unwrap().to_string())
                .unwrap();
            let _ = server.run().await;
        });
    });
    addr_rx.recv().unwrap()
}

/// Calls `echo` (a method that returns its arguments) and checks the reply:
/// the server's I/O loop answered.
pub async fn assert_echo_answers(client: &TcpClient, echo: &'static MethodInfo) {
    let reply = client
        .call(echo, Bytes::from_static(b"hi"), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(&reply[..], b"hi");
}

/// Socket buffers this small fill after a few replies, so a server's
/// writer is left holding most of them (the close-flush tests).
pub const SMALL_SOCKET_BUFFER_BYTES: u32 = 4096;

/// A server config whose handshake, idle and session timers never fire
/// during a test, so only the bound under test can end a connection.
pub fn quiet_server_config() -> ebb_rpc::semantics::ServerConfig {
    let quiet = ebb_core::Nanos::from_secs(24 * 3600);
    ebb_rpc::semantics::ServerConfig {
        handshake_timeout: quiet,
        idle_timeout: quiet,
        session_expiry: quiet,
        ..Default::default()
    }
}

/// A loopback listener whose accepted sockets take a
/// [`SMALL_SOCKET_BUFFER_BYTES`] send buffer (accepted sockets inherit the
/// listener's size), and its address.
pub fn small_send_buffer_listener() -> (std::net::SocketAddr, std::net::TcpListener) {
    let listening = tokio::net::TcpSocket::new_v4().unwrap();
    listening
        .set_send_buffer_size(SMALL_SOCKET_BUFFER_BYTES)
        .unwrap();
    listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listening.local_addr().unwrap();
    (addr, listening.listen(8).unwrap().into_std().unwrap())
}

/// A peer socket connected to `addr` with a [`SMALL_SOCKET_BUFFER_BYTES`]
/// receive buffer, so replies it does not read back up into the server.
pub async fn small_recv_buffer_peer(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let peer = tokio::net::TcpSocket::new_v4().unwrap();
    peer.set_recv_buffer_size(SMALL_SOCKET_BUFFER_BYTES)
        .unwrap();
    peer.connect(addr).await.unwrap()
}
