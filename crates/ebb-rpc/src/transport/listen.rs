//! Listening sockets with an accept queue as deep as the connection bounds
//! the listeners enforce.
//!
//! `std`'s and tokio's `TcpListener::bind` listen with a backlog of 128.
//! The gateway takes up to `MAX_CONNECTIONS_PER_PEER` (256) connections
//! from one peer and a node up to [`super::server::MAX_CONNECTIONS`]; a
//! burst of connects larger than 128 (`ebb load --connections 512`) filled
//! the queue before the accept loop ran, and the kernel dropped the rest of
//! the SYNs (`TcpExtListenOverflows`): those clients waited a SYN
//! retransmission, a second or more, for a connection the server would
//! have taken. Every ebb listener binds here instead, with
//! [`LISTEN_BACKLOG`]; the address is reused as `bind` does, and port 0
//! still picks a free port.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

/// Connections the kernel completes and queues for a listener before its
/// accept loop takes them. Linux caps it at `net.core.somaxconn` (4096 by
/// default since 5.4; 128 before).
pub const LISTEN_BACKLOG_CONNECTIONS: i32 = 1024;

/// Binds `addr` (`host:port`; port 0 picks a free port) and listens with
/// [`LISTEN_BACKLOG_CONNECTIONS`], trying each address the name resolves
/// to, as `TcpListener::bind` does. Resolving may block on a name lookup;
/// inside a tokio runtime use [`bind`].
pub fn bind_std(addr: &str) -> io::Result<std::net::TcpListener> {
    first_that_binds(addr.to_socket_addrs()?)
}

/// [`bind_std`] for a tokio runtime: the name lookup does not block the
/// runtime, and the listener is registered with it.
pub async fn bind(addr: &str) -> io::Result<tokio::net::TcpListener> {
    let listener = first_that_binds(tokio::net::lookup_host(addr).await?)?;
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// One listening socket on `addr` with [`LISTEN_BACKLOG_CONNECTIONS`].
pub fn bind_addr(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As `TcpListener::bind` on Unix: a restarted server rebinds its port
    // while the previous run's connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG_CONNECTIONS)?;
    Ok(socket.into())
}

/// The first of `addrs` that binds, else the last error.
fn first_that_binds(addrs: impl Iterator<Item = SocketAddr>) -> io::Result<std::net::TcpListener> {
    let mut last = None;
    for addr in addrs {
        match bind_addr(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to no address",
        )
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    /// More connections than the default backlog of 128, none accepted.
    const PENDING_CONNECTIONS: usize = 300;
    /// A bound on each connect, not a speed claim: a connect the queue has
    /// no room for waits for SYN retransmissions (1 s, then 3 s, ...) and
    /// ends here instead of hanging the test.
    const CONNECT_BOUND: Duration = Duration::from_secs(20);

    /// Every connect of the burst completes its handshake in the kernel
    /// while nothing accepts: the queue holds more than the 128 that
    /// `TcpListener::bind` gives.
    #[test]
    fn the_accept_queue_holds_more_than_128_pending_connections() {
        let listener = bind_std("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0, "port 0 picks a free port");
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok();
        eprintln!("net.core.somaxconn {somaxconn:?}");
        let mut clients = Vec::with_capacity(PENDING_CONNECTIONS);
        for i in 0..PENDING_CONNECTIONS {
            match std::net::TcpStream::connect_timeout(&addr, CONNECT_BOUND) {
                Ok(c) => clients.push(c),
                Err(e) => panic!("connect {i} of {PENDING_CONNECTIONS} not accepted: {e}"),
            }
        }
        assert_eq!(clients.len(), PENDING_CONNECTIONS);
        // They were queued, not refused: the listener hands the first over.
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_ok(), "a queued connection to accept");
    }

    /// A second listener binds the port as soon as the first is gone,
    /// though one of its connections is still open: the address is reused.
    #[test]
    fn a_port_is_reused_while_a_connection_from_before_stays() {
        let first = bind_std("127.0.0.1:0").unwrap();
        let addr = first.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (accepted, _) = first.accept().unwrap();
        drop(accepted);
        drop(first);
        bind_addr(addr).unwrap();
    }

    #[tokio::test]
    async fn the_tokio_listener_accepts() {
        let listener = bind("localhost:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        client.unwrap();
        accepted.unwrap();
    }

    #[test]
    fn an_address_without_a_port_is_an_error() {
        assert!(bind_std("127.0.0.1:port").is_err());
    }
}
