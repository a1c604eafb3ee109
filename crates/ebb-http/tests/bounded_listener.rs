//! The HTTP listeners' connection bound: past it, a connection waits in the
//! kernel's backlog and is taken only when an open one closes.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use axum::serve::Listener;
use ebb_http::BoundedListener;
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn a_connection_past_the_bound_is_taken_only_when_one_closes() {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    let mut bounded = BoundedListener::new(listener, 1);

    let _first_client = TcpStream::connect(addr).await.expect("connect first");
    let (first, _) = bounded.accept().await;
    // The kernel completes this handshake itself; it waits in the backlog.
    let _second_client = TcpStream::connect(addr).await.expect("connect second");

    {
        let mut second = pin!(bounded.accept());
        let mut cx = Context::from_waker(Waker::noop());
        // With a slot free this first poll takes the connection at once: the
        // listener is known readable from the first accept and loopback's
        // handshake is complete when `connect` returns. Only the bound can
        // keep it pending.
        assert!(
            matches!(second.as_mut().poll(&mut cx), Poll::Pending),
            "a second connection was taken while the only slot was in use"
        );
        drop(first);
        let (_second, peer) = second.await;
        assert!(peer.ip().is_loopback(), "accepted {peer}");
    }
}
