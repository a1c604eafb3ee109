//! Sending over ebb RPC: `connections` multiplexed `TcpClient`s, each call
//! with the method's own semantics and the run's deadline.
//!
//! A service this build has a codec for is called typed (arguments encoded
//! once for the run); any other through the node's own JSON adapter, by
//! the method id the node gave when asked to describe itself (arguments
//! serialized once for the run). Either way calls are started in place by
//! the engine's batches ([`Batches`]): the calls of one batch go to one
//! connection, held and written together, the next batch to the next
//! connection; each reply is handed to the engine by the client's reader,
//! with no task per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ebb_core::Nanos;
use ebb_rpc::CallError;
use ebb_rpc::service::{BoxFuture, CallOptions, CallSink, MethodInfo, ServiceCodec, Transport};
use ebb_rpc::transport::{TcpClient, TcpClientConfig};
use ebb_rpc::wire::MAX_PAYLOAD_BYTES;
use serde_json::Value;

use crate::{Ends, LoadError, Outcome, Starter, Target};

pub struct RpcTarget {
    clients: Vec<TcpClient>,
    next: AtomicUsize,
    call: Call,
    options: CallOptions,
}

enum Call {
    /// The arguments, encoded once for the whole run.
    Typed {
        method: &'static MethodInfo,
        args: Bytes,
    },
    /// JSON arguments the node's adapter decodes, by the described id:
    /// the object, and its serialization, made once for the run.
    Json {
        id: u16,
        idempotent: bool,
        args: Value,
        encoded: Bytes,
    },
}

/// How long one connection attempt may take, in ms: past Linux's first
/// SYN retransmission (1 s after the SYN) and its second (3 s). A target
/// that takes its connections late (a busy gateway, or a stopped one)
/// overflows its accept queue (128 by default) as hundreds of them open,
/// and the kernel drops the SYNs past it; with the RPC client's default of
/// 1 s a single dropped SYN failed the whole run before it started.
const CONNECT_TIMEOUT_MS: u64 = 3_500;

async fn open(addr: &str, connections: usize) -> Result<Vec<TcpClient>, LoadError> {
    let config = TcpClientConfig {
        connect_timeout_ms: CONNECT_TIMEOUT_MS,
        ..TcpClientConfig::default()
    };
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        let client = TcpClient::connect_with(addr, config)
            .await
            .map_err(|e| LoadError::RpcConnect(e.to_string()))?;
        clients.push(client);
    }
    Ok(clients)
}

impl RpcTarget {
    /// Encodes the arguments (so bad ones fail before the run) and opens
    /// `connections` connections to `addr`.
    pub async fn connect(
        addr: &str,
        connections: usize,
        codec: &'static dyn ServiceCodec,
        method: &str,
        args: Value,
        deadline: Nanos,
    ) -> Result<RpcTarget, LoadError> {
        let info = codec
            .method(method)
            .map_err(|e| LoadError::Method(e.to_string()))?;
        let args = codec
            .encode_json_args(info, args)
            .map_err(|e| LoadError::Arguments(e.to_string()))?;
        Ok(RpcTarget {
            clients: open(addr, connections).await?,
            next: AtomicUsize::new(0),
            call: Call::Typed { method: info, args },
            options: CallOptions::default().with_timeout(deadline),
        })
    }

    /// For a service this build does not know: opens the connections and
    /// asks the node (or gateway) which methods it serves; the arguments
    /// are checked by the node on each call.
    pub async fn connect_described(
        addr: &str,
        connections: usize,
        service: &str,
        method: &str,
        args: Value,
        deadline: Nanos,
    ) -> Result<RpcTarget, LoadError> {
        let clients = open(addr, connections).await?;
        let described = clients[0]
            .describe(deadline)
            .await
            .map_err(|e| LoadError::RpcConnect(format!("asking {addr} to describe itself: {e}")))?;
        if described.service != service {
            return Err(LoadError::Method(format!(
                "unknown service {service:?}: {addr} serves {} (methods: {})",
                described.service,
                described.method_names()
            )));
        }
        let Some(m) = described.method(method) else {
            return Err(LoadError::Method(format!(
                "unknown method {service}.{method} (methods of {service}: {})",
                described.method_names()
            )));
        };
        let encoded = serde_json::to_vec(&args)
            .map_err(|e| LoadError::Arguments(format!("--args cannot be serialized: {e}")))?;
        if encoded.len() > MAX_PAYLOAD_BYTES {
            return Err(LoadError::Arguments(format!(
                "--args of {} bytes exceed the {MAX_PAYLOAD_BYTES}-byte frame payload limit",
                encoded.len()
            )));
        }
        Ok(RpcTarget {
            call: Call::Json {
                id: m.id,
                idempotent: m.idempotent,
                args,
                encoded: Bytes::from(encoded),
            },
            clients,
            next: AtomicUsize::new(0),
            options: CallOptions::default().with_timeout(deadline),
        })
    }
}

impl Target for RpcTarget {
    fn starter(self: Arc<Self>, ends: Arc<dyn Ends>) -> Option<Box<dyn Starter>> {
        let (method, args) = match &self.call {
            Call::Typed { method, args } => (Method::Typed(method), args.clone()),
            Call::Json {
                id,
                idempotent,
                encoded,
                ..
            } => (
                Method::Json {
                    id: *id,
                    idempotent: *idempotent,
                },
                encoded.clone(),
            ),
        };
        Some(Box::new(Batches {
            target: self,
            method,
            args,
            sink: Arc::new(ToEnds(ends)),
            conn: 0,
            held: 0,
        }))
    }

    fn reconnects(&self) -> u64 {
        self.clients.iter().map(TcpClient::reconnect_attempts).sum()
    }

    fn call(&self) -> BoxFuture<'_, Outcome> {
        let client = &self.clients[self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len()];
        Box::pin(async move {
            let outcome = match &self.call {
                Call::Typed { method, args } => client
                    .call(method, args.clone(), self.options)
                    .await
                    .map(drop),
                Call::Json {
                    id,
                    idempotent,
                    args,
                    ..
                } => client
                    .call_json(*id, *idempotent, args, self.options)
                    .await
                    .map(drop),
            };
            match outcome {
                Ok(()) => Outcome::Ok,
                Err(e) => Outcome::from_call_error(e),
            }
        })
    }
}

/// Hands the client's outcomes to the engine, classified.
struct ToEnds(Arc<dyn Ends>);

impl CallSink for ToEnds {
    fn deliver(&self, token: u64, outcome: Result<Bytes, CallError>) {
        let outcome = match outcome {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::from_call_error(e),
        };
        self.0.ended(token, outcome);
    }
}

/// The method a batch's calls go to, as the client starts it.
#[derive(Clone, Copy)]
enum Method {
    Typed(&'static MethodInfo),
    /// Through the target's JSON adapter.
    Json {
        id: u16,
        idempotent: bool,
    },
}

/// The engine's batches of calls: each batch on one connection, whose
/// requests are held until the batch is flushed.
struct Batches {
    target: Arc<RpcTarget>,
    method: Method,
    args: Bytes,
    sink: Arc<dyn CallSink>,
    /// The connection this batch goes to.
    conn: usize,
    /// Calls started on `conn` since the last flush.
    held: usize,
}

impl Starter for Batches {
    fn start(&mut self, token: u64) {
        let client = &self.target.clients[self.conn];
        if self.held == 0 {
            client.hold_writes();
        }
        self.held += 1;
        let (args, options) = (self.args.clone(), self.target.options);
        let started = match self.method {
            Method::Typed(method) => client.start_call(method, args, options, &self.sink, token),
            Method::Json { id, idempotent } => {
                client.start_call_json(id, idempotent, args, options, &self.sink, token)
            }
        };
        if started.is_err() {
            // Checked against the frame limit before the run; cannot
            // happen for arguments that were accepted, but ends the call
            // if so.
            self.sink.deliver(
                token,
                Err(CallError::BadRequest {
                    message: "arguments too large for a frame".into(),
                }),
            );
        }
    }

    fn flush(&mut self) {
        if self.held == 0 {
            return;
        }
        self.target.clients[self.conn].release_writes();
        self.held = 0;
        self.conn = (self.conn + 1) % self.target.clients.len();
    }
}

impl Drop for Batches {
    /// Nothing stays held if the engine stops between a start and a flush.
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::open;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// Most connections the test queues to fill a listener's accept queue
    /// (the kernel caps any backlog at `net.core.somaxconn`, 4096 here).
    const MAX_QUEUED: usize = 8192;
    /// Polls for the dropped attempt, 10 ms apart.
    const MAX_POLLS: usize = 500;

    /// Whether a socket of this machine is in SYN_SENT towards `port` on
    /// IPv4 loopback: a connection attempt whose SYN has had no answer.
    fn syn_sent_to(port: u16) -> bool {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp is readable");
        let remote = format!("0100007F:{port:04X}");
        table.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(2) == Some(&remote.as_str()) && f.get(3) == Some(&"02")
        })
    }

    #[tokio::test]
    async fn a_connection_whose_first_syn_was_dropped_opens_on_its_retransmission() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
        let addr = listener.local_addr().expect("its address");
        // Nobody accepts: the queue fills, and a SYN past it is dropped
        // (an attempt that times out shows the queue full).
        let mut queued = Vec::new();
        while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            queued.push(s);
            assert!(queued.len() < MAX_QUEUED, "the accept queue never filled");
        }
        let target = addr.to_string();
        let opening = tokio::spawn(async move { open(&target, 1).await });
        let mut polls = 0;
        while !syn_sent_to(addr.port()) {
            polls += 1;
            assert!(polls < MAX_POLLS, "no attempt waited on the full queue");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Room again before the retransmission, a second after the SYN.
        listener
            .set_nonblocking(true)
            .expect("a nonblocking listener");
        let mut taken = Vec::new();
        while let Ok((s, _)) = listener.accept() {
            taken.push(s);
        }
        assert!(
            taken.len() >= queued.len(),
            "the queued connections were taken"
        );
        let opened = opening.await.expect("the opening task ran");
        assert!(
            opened.is_ok(),
            "one dropped SYN failed the opening: {:?}",
            opened.err()
        );
    }
}
