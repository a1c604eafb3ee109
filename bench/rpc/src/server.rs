//! Every server runs alone on its own OS thread with a current-thread tokio
//! runtime, so that thread's CPU time is exactly the server's cost.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::mpsc;

use anyhow::Context;

use crate::cpu::current_tid;

/// A server running on its own thread until the process exits.
#[derive(Clone, Copy, Debug)]
pub struct ServerHandle {
    pub addr: SocketAddr,
    pub tid: i32,
}

/// Handed to a server so it can say where it listens once bound.
pub struct Ready {
    tx: mpsc::Sender<ServerHandle>,
    tid: i32,
}

impl Ready {
    pub fn listening(self, addr: SocketAddr) {
        let _ = self.tx.send(ServerHandle {
            addr,
            tid: self.tid,
        });
    }
}

/// Starts `serve` on a new thread. `serve` binds 127.0.0.1:0, calls
/// [`Ready::listening`], then serves forever.
pub fn spawn<F, Fut>(name: &str, serve: F) -> anyhow::Result<ServerHandle>
where
    F: FnOnce(Ready) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let (tx, rx) = mpsc::channel();
    let label = name.to_owned();
    std::thread::Builder::new()
        .name(format!("{name}-server"))
        .spawn(move || {
            let ready = Ready {
                tx,
                tid: current_tid(),
            };
            let run = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("server runtime")
                .and_then(|rt| rt.block_on(serve(ready)));
            if let Err(e) = run {
                eprintln!("{label} server stopped: {e:#}");
            }
        })
        .context("spawning a server thread")?;
    rx.recv()
        .with_context(|| format!("{name} server failed to start"))
}
