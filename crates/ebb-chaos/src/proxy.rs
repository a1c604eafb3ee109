//! The proxy's I/O edge: accept, connect upstream, pump bytes both ways and
//! apply each chunk's [`ChunkAction`].
//!
//! One task per connection drives both directions with `select!`, so a reset
//! decided on either direction can close both sockets at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ebb_core::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::ChaosError;
use crate::decide::{ChaosConfig, ChunkAction, ConnDecider};

/// Connections proxied at once by default; further clients are closed on
/// accept. [`Proxy::with_max_connections`] lowers it.
pub const MAX_CONNECTIONS: usize = 256;
/// Largest chunk read from a socket in one go; the unit of every decision.
pub const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks held back (delayed) per direction before the proxy stops reading
/// that direction, pushing back on the sender as a slow link would.
pub const MAX_QUEUED_CHUNKS: usize = 64;

/// What the proxy has done so far; shared with whoever started it.
#[derive(Debug, Default)]
pub struct ChaosStats {
    pub accepted: AtomicU64,
    /// Clients closed at once because `MAX_CONNECTIONS` were open.
    pub refused: AtomicU64,
    /// Clients closed because the upstream could not be reached.
    pub upstream_failures: AtomicU64,
    pub resets: AtomicU64,
    pub blackholes: AtomicU64,
    pub bytes_forwarded: AtomicU64,
}

/// A bound proxy, ready to [`run`](Proxy::run).
pub struct Proxy {
    listener: TcpListener,
    upstream: String,
    cfg: ChaosConfig,
    rng: Rng,
    stats: Arc<ChaosStats>,
    max_connections: usize,
}

/// Connections the kernel completes and queues before the accept loop takes
/// them: `TcpListener::bind` gives 128, fewer than a load generator opens
/// at once through the proxy (SYNs past the queue are dropped and wait a
/// retransmission), and fewer than [`MAX_CONNECTIONS`].
const LISTEN_BACKLOG_CONNECTIONS: u32 = 1024;

/// Binds `listen` as `TcpListener::bind` does (each resolved address in
/// turn, the address reused) with [`LISTEN_BACKLOG_CONNECTIONS`].
async fn listen_on(listen: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(listen).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG_CONNECTIONS))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolved to no address",
        )
    }))
}

impl Proxy {
    /// Binds `listen` (port 0 picks a free port). The upstream is resolved
    /// per connection, so it need not be up yet.
    pub async fn bind(
        listen: &str,
        upstream: &str,
        cfg: ChaosConfig,
        seed: u64,
    ) -> Result<Proxy, ChaosError> {
        cfg.validate()?;
        let listener = listen_on(listen).await.map_err(|source| ChaosError::Bind {
            addr: listen.to_owned(),
            source,
        })?;
        Ok(Proxy {
            listener,
            upstream: upstream.to_owned(),
            cfg,
            rng: Rng::seeded(seed),
            stats: Arc::default(),
            max_connections: MAX_CONNECTIONS,
        })
    }

    /// Proxies at most `n` connections at once (at most [`MAX_CONNECTIONS`]).
    pub fn with_max_connections(mut self, n: usize) -> Proxy {
        self.max_connections = n.min(MAX_CONNECTIONS);
        self
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    pub fn stats(&self) -> Arc<ChaosStats> {
        Arc::clone(&self.stats)
    }

    /// Accepts and proxies until accepting fails. Each connection gets its
    /// own generator forked in accept order, so a seed replays the same
    /// per-connection decision streams.
    pub async fn run(mut self) -> Result<(), ChaosError> {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        loop {
            let (client, _) = self.listener.accept().await.map_err(ChaosError::Accept)?;
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                drop(client);
                continue;
            };
            let decider = ConnDecider::new(self.cfg, self.rng.fork());
            let upstream = self.upstream.clone();
            let stats = Arc::clone(&self.stats);
            tokio::spawn(async move {
                proxy_connection(client, &upstream, decider, &stats).await;
                drop(permit);
            });
        }
    }
}

/// One direction's state: chunks waiting out their delay, and whether the
/// reading side has finished.
#[derive(Default)]
struct Lane {
    queue: VecDeque<(Instant, Vec<u8>)>,
    eof: bool,
    shut: bool,
}

impl Lane {
    fn can_read(&self) -> bool {
        !self.eof && self.queue.len() < MAX_QUEUED_CHUNKS
    }

    fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _)| *at)
    }

    fn done(&self) -> bool {
        self.eof && self.queue.is_empty()
    }
}

enum Step {
    Read(usize, std::io::Result<usize>),
    Due(usize),
}

async fn proxy_connection(
    mut client: TcpStream,
    upstream: &str,
    mut decider: ConnDecider,
    stats: &ChaosStats,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        stats.upstream_failures.fetch_add(1, Ordering::Relaxed);
        return;
    };
    // Latency added by Nagle's algorithm would blur the configured delay.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let reset = pump(&mut client, &mut server, &mut decider, stats).await;
    if reset {
        stats.resets.fetch_add(1, Ordering::Relaxed);
        // Closing with a zero linger sends RST instead of FIN.
        #[allow(deprecated)] // set_zero_linger needs a newer tokio than the MSRV guarantees
        {
            let _ = client.set_linger(Some(Duration::ZERO));
            let _ = server.set_linger(Some(Duration::ZERO));
        }
    }
}

/// Moves bytes until both directions are finished or one fails. Returns
/// whether the connection is to be reset.
async fn pump(
    client: &mut TcpStream,
    server: &mut TcpStream,
    decider: &mut ConnDecider,
    stats: &ChaosStats,
) -> bool {
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    // Lane 0 carries client -> server, lane 1 server -> client.
    let mut lanes = [Lane::default(), Lane::default()];
    let mut bufs = [vec![0u8; CHUNK_BYTES], vec![0u8; CHUNK_BYTES]];
    let mut blackholed = false;
    loop {
        if lanes[0].done() && lanes[1].done() {
            return false;
        }
        let far = Instant::now() + Duration::from_secs(3600);
        let due0 = lanes[0].next_due();
        let due1 = lanes[1].next_due();
        let (b0, b1) = bufs.split_at_mut(1);
        let step = tokio::select! {
            r = cr.read(&mut b0[0]), if lanes[0].can_read() => Step::Read(0, r),
            r = sr.read(&mut b1[0]), if lanes[1].can_read() => Step::Read(1, r),
            _ = tokio::time::sleep_until(due0.unwrap_or(far)), if due0.is_some() => Step::Due(0),
            _ = tokio::time::sleep_until(due1.unwrap_or(far)), if due1.is_some() => Step::Due(1),
            else => return false,
        };
        match step {
            Step::Read(_, Err(_)) => return false,
            Step::Read(lane, Ok(0)) => lanes[lane].eof = true,
            Step::Read(lane, Ok(n)) => match decider.on_chunk() {
                ChunkAction::Reset => return true,
                ChunkAction::Blackhole => {
                    if !blackholed {
                        blackholed = true;
                        stats.blackholes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                ChunkAction::Forward { delay } => {
                    let at = Instant::now() + Duration::from(delay);
                    lanes[lane].queue.push_back((at, bufs[lane][..n].to_vec()));
                }
            },
            Step::Due(lane) => {
                let Some((_, chunk)) = lanes[lane].queue.pop_front() else {
                    continue;
                };
                let out = if lane == 0 { &mut sw } else { &mut cw };
                if out.write_all(&chunk).await.is_err() {
                    return false;
                }
                stats
                    .bytes_forwarded
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
        // Pass a finished direction's FIN on once its delayed bytes are out.
        for (i, lane) in lanes.iter_mut().enumerate() {
            if lane.done() && !lane.shut {
                lane.shut = true;
                let out = if i == 0 { &mut sw } else { &mut cw };
                let _ = out.shutdown().await;
            }
        }
    }
}
