//! The kernel's buffers of a client connection's socket, set wide enough
//! for a window of large calls in flight.
//!
//! Left to autotuning, a connection starts with a 16 KiB send buffer and
//! a receive window of `tcp_rmem`'s default, and grows them as data flows.
//! With 128 calls of 16 KiB outstanding (2 MiB each way) a sender's data
//! then waits in its socket for window, and leaves when the peer's read
//! acknowledges what it took: on loopback that transmission, and the
//! wake-up it causes, run inside the *peer's* `recvfrom`. In a profile of
//! the client at 16 KiB, 128 outstanding, sending acknowledgements that
//! pushed out the server's waiting replies was 17 % of the client's CPU,
//! more than its copy of the replies out of the kernel. With buffers that
//! hold the whole window each side's writes go out when made, by the side
//! that makes them (measured in `docs/benchmarks.md`, RPC section).
//!
//! Set only where the system allows the size (`net.core.rmem_max` and
//! `wmem_max` at least [`SOCKET_BUFFER_BYTES`]): a size set explicitly
//! turns autotuning off, so one the kernel capped lower would pin the
//! buffer below what autotuning reaches on its own. The memory is the
//! kernel's and taken only for data in flight, which the sessions' windows
//! and [`super::outbuf::MAX_PENDING_WRITE_BYTES`] bound.
//!
//! A server's accepted sockets are left as their listener makes them
//! (they inherit its sizes): whoever creates the listener decides, and a
//! test that gives it a small send buffer to fill relies on that.

use std::sync::OnceLock;

use tokio::net::TcpStream;

/// Send and receive buffer asked for per connection socket (the kernel
/// doubles it for its bookkeeping): 128 calls of 16 KiB each way, twice.
pub const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Where Linux says how large a buffer an unprivileged socket may ask for.
const RMEM_MAX_PATH: &str = "/proc/sys/net/core/rmem_max";
const WMEM_MAX_PATH: &str = "/proc/sys/net/core/wmem_max";

/// Which buffers [`widen`] set on a socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Widened {
    pub send: bool,
    pub recv: bool,
}

/// Sets `stream`'s send and receive buffers to [`SOCKET_BUFFER_BYTES`]
/// where the system allows that size, leaving autotuning in charge where
/// it does not. Best effort, as `set_nodelay` is: a socket that refuses
/// keeps working with the kernel's defaults.
pub fn widen(stream: &TcpStream) -> Widened {
    let (send_max, recv_max) = *system_maxima();
    let sock = socket2::SockRef::from(stream);
    let mut widened = Widened::default();
    if let Some(bytes) = wanted(send_max) {
        widened.send = sock.set_send_buffer_size(bytes).is_ok();
    }
    if let Some(bytes) = wanted(recv_max) {
        widened.recv = sock.set_recv_buffer_size(bytes).is_ok();
    }
    widened
}

/// The size to set given the system's maximum for it: ours, if the
/// kernel would not cap it; else none (autotuning keeps the buffer).
pub fn wanted(system_max: Option<usize>) -> Option<usize> {
    system_max
        .filter(|&max| max >= SOCKET_BUFFER_BYTES)
        .map(|_| SOCKET_BUFFER_BYTES)
}

/// `(wmem_max, rmem_max)`, read once per process; `None` where unknown.
fn system_maxima() -> &'static (Option<usize>, Option<usize>) {
    static MAXIMA: OnceLock<(Option<usize>, Option<usize>)> = OnceLock::new();
    MAXIMA.get_or_init(|| (read_number(WMEM_MAX_PATH), read_number(RMEM_MAX_PATH)))
}

fn read_number(path: &str) -> Option<usize> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn set_only_where_the_kernel_would_not_cap_it() {
        assert_eq!(wanted(None), None, "unknown maximum: autotuning stays");
        assert_eq!(wanted(Some(212_992)), None, "a common default maximum");
        assert_eq!(wanted(Some(SOCKET_BUFFER_BYTES - 1)), None);
        assert_eq!(wanted(Some(SOCKET_BUFFER_BYTES)), Some(SOCKET_BUFFER_BYTES));
        assert_eq!(wanted(Some(usize::MAX)), Some(SOCKET_BUFFER_BYTES));
    }

    /// On this machine's limits: a buffer the system allows is set (the
    /// kernel reports at least the size asked for), one it would cap is
    /// left as autotuning had it.
    #[tokio::test]
    async fn a_connection_gets_the_buffers_the_system_allows() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let sock = socket2::SockRef::from(&stream);
        let before = (
            sock.send_buffer_size().unwrap(),
            sock.recv_buffer_size().unwrap(),
        );
        let (send_max, recv_max) = *system_maxima();
        let widened = widen(&stream);
        eprintln!("wmem_max {send_max:?}, rmem_max {recv_max:?}: {widened:?}");
        assert_eq!(widened.send, wanted(send_max).is_some());
        assert_eq!(widened.recv, wanted(recv_max).is_some());
        let after = (
            sock.send_buffer_size().unwrap(),
            sock.recv_buffer_size().unwrap(),
        );
        if widened.send {
            assert!(after.0 >= SOCKET_BUFFER_BYTES, "send buffer {}", after.0);
        } else {
            assert_eq!(after.0, before.0);
        }
        if widened.recv {
            assert!(after.1 >= SOCKET_BUFFER_BYTES, "receive buffer {}", after.1);
        } else {
            assert_eq!(after.1, before.1);
        }
    }
}
