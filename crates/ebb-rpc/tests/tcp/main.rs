//! The TCP runtimes end to end on loopback, with a hand-written dispatcher so
//! the transport is tested without the macro: calls ([`calls`]), failing
//! connections ([`failures`]), misbehaving or excess peers ([`peers`]),
//! calls answered later or handed to a sink ([`deferred`]), the read
//! instant each call's context carries ([`received`]), and calls whose
//! callers stopped waiting ([`overdue`]).
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod calls;
mod deferred;
mod failures;
mod overdue;
mod peers;
mod received;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ebb_rpc::CallError;
use ebb_rpc::semantics::ServerConfig;
use ebb_rpc::service::{
    BoxFuture, CallOptions, DispatchError, MethodInfo, ServiceDispatch, Transport,
};
use ebb_rpc::transport::{Server, TcpClient};
use ebb_rpc::wire::{
    self, ConnErrorKind, MAX_FRAME_BYTES, Message, Outcome, Refusal, Request, Seq,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

const fn method(id: u16, name: &'static str, idempotent: bool) -> MethodInfo {
    MethodInfo {
        service: "Test",
        id,
        name,
        idempotent,
        blocking: false,
        params: &[],
        returns: "Vec<u8>",
    }
}

static METHODS: [MethodInfo; 3] = [
    method(0, "echo", true),
    method(1, "gather", false),
    method(2, "boom", false),
];

/// `echo` returns its arguments; `gather` waits until `GATHER` calls are
/// running at once, so its replies can only come back if the client really
/// multiplexes, and in whatever order the tasks finish.
struct TestService {
    gather: Barrier,
    runs: AtomicUsize,
}

const GATHER: usize = 64;

impl ServiceDispatch for TestService {
    fn name(&self) -> &'static str {
        "Test"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &METHODS
    }
    fn dispatch(&self, id: u16, args: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async move {
            self.runs.fetch_add(1, Ordering::Relaxed);
            match id {
                0 => Ok(args),
                1 => {
                    self.gather.wait().await;
                    Ok(args)
                }
                2 => panic!("boom: a method that panics"),
                _ => Err(DispatchError::UnknownMethod(format!("Test method #{id}"))),
            }
        })
    }
}

async fn start() -> (String, Arc<TestService>) {
    let svc = Arc::new(TestService {
        gather: Barrier::new(GATHER),
        runs: AtomicUsize::new(0),
    });
    let server = Server::bind("127.0.0.1:0", Arc::clone(&svc)).await.unwrap();
    let addr = server.local_addr().unwrap().to_string();
    tokio::spawn(server.run());
    (addr, svc)
}
