//! The closed-loop load driver shared by every system: keeps exactly
//! `concurrency` calls outstanding (spread round-robin over the system's
//! connections) from one task, records each call's latency, and samples
//! both processes' CPU time and allocations over the measured window only
//! (warm-up excluded).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;

use crate::alloc::allocations;
use crate::child::{Counters, ServerProcess};
use crate::cpu::process_cpu;

/// Highest latency the histogram can hold, in nanoseconds (60 s).
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// One run's parameters.
#[derive(Clone, Copy, Debug)]
pub struct RunCfg {
    pub payload_bytes: usize,
    /// Calls kept outstanding in total, over all connections.
    pub concurrency: usize,
    /// Connections (one client each) the calls are spread over.
    pub conns: usize,
    /// Bound on one connection attempt, for the systems that have one
    /// (ebb); a server under callgrind needs far longer than the default.
    pub connect_timeout_ms: u64,
}

/// How long to drive, and what to measure.
#[derive(Clone)]
pub enum Mode {
    /// Warm up, then measure a window, sampling the server's counters at
    /// both ends of it.
    Timed {
        warmup: Duration,
        measure: Duration,
        server: Arc<Mutex<ServerProcess>>,
    },
    /// Exactly this many calls, nothing measured (the server's own counters
    /// are read by the caller).
    Count(u64),
}

/// What one timed run measured.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub calls_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// The server process's CPU per call (all its threads).
    pub server_cpu_us_per_call: f64,
    /// The client process's CPU per call: tells whether the client side, not
    /// the server, bounded a system's throughput.
    pub client_cpu_us_per_call: f64,
    pub server_allocs_per_call: f64,
    pub client_allocs_per_call: f64,
}

pub enum Outcome {
    Timed(Sample),
    Counted,
}

fn counters_of(server: &Mutex<ServerProcess>) -> anyhow::Result<Counters> {
    server
        .lock()
        .map_err(|_| anyhow::anyhow!("server handle poisoned"))?
        .counters()
}

fn client_counters() -> Counters {
    Counters {
        cpu: process_cpu(),
        allocations: allocations(),
    }
}

/// Drives `call` (one echo round trip per invocation) in `mode` and checks
/// every reply echoes the payload length.
pub async fn drive<F, Fut>(cfg: RunCfg, mode: Mode, mut call: F) -> anyhow::Result<Outcome>
where
    F: FnMut(Bytes) -> Fut,
    Fut: Future<Output = anyhow::Result<Bytes>>,
{
    let payload = Bytes::from(vec![0xa5u8; cfg.payload_bytes]);
    let timed = |fut: Fut| async move {
        let t = Instant::now();
        let r = fut.await;
        (t, r)
    };
    let check = |reply: anyhow::Result<Bytes>| -> anyhow::Result<()> {
        let reply = reply?;
        if reply.len() != cfg.payload_bytes {
            bail!(
                "reply of {} bytes to a {}-byte echo",
                reply.len(),
                cfg.payload_bytes
            );
        }
        Ok(())
    };
    let (warmup, measure, server) = match mode {
        Mode::Count(n) => {
            let mut inflight = FuturesUnordered::new();
            let mut sent = 0;
            while sent < n.min(cfg.concurrency as u64) {
                inflight.push(call(payload.clone()));
                sent += 1;
            }
            while let Some(reply) = inflight.next().await {
                check(reply)?;
                if sent < n {
                    inflight.push(call(payload.clone()));
                    sent += 1;
                }
            }
            return Ok(Outcome::Counted);
        }
        Mode::Timed {
            warmup,
            measure,
            server,
        } => (warmup, measure, server),
    };
    let mut hist = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_NS, 3)
        .context("latency histogram bounds")?;
    let mut inflight = FuturesUnordered::new();
    for _ in 0..cfg.concurrency {
        inflight.push(timed(call(payload.clone())));
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let measure_to = measure_from + measure;
    let mut measuring = false;
    let mut server0 = Counters::default();
    let mut client0 = Counters::default();
    let mut t0 = measure_from;
    let mut done: u64 = 0;
    while let Some((sent, reply)) = inflight.next().await {
        let now = Instant::now();
        check(reply)?;
        if !measuring && now >= measure_from {
            measuring = true;
            server0 = counters_of(&server)?;
            client0 = client_counters();
            t0 = Instant::now();
        }
        if measuring {
            if now >= measure_to {
                let client1 = client_counters();
                let server1 = counters_of(&server)?;
                let secs = now.duration_since(t0).as_secs_f64();
                // Let the calls still in flight finish before the next run.
                while let Some((_, r)) = inflight.next().await {
                    check(r)?;
                }
                let per_call = |d: f64| d / done.max(1) as f64;
                return Ok(Outcome::Timed(Sample {
                    calls_per_sec: done as f64 / secs,
                    p50_us: hist.value_at_quantile(0.50) as f64 / 1e3,
                    p99_us: hist.value_at_quantile(0.99) as f64 / 1e3,
                    server_cpu_us_per_call: per_call(
                        (server1.cpu - server0.cpu).as_secs_f64() * 1e6,
                    ),
                    client_cpu_us_per_call: per_call(
                        (client1.cpu - client0.cpu).as_secs_f64() * 1e6,
                    ),
                    server_allocs_per_call: per_call(
                        (server1.allocations - server0.allocations) as f64,
                    ),
                    client_allocs_per_call: per_call(
                        (client1.allocations - client0.allocations) as f64,
                    ),
                }));
            }
            let ns = now.duration_since(sent).as_nanos() as u64;
            hist.saturating_record(ns.max(1));
            done += 1;
        }
        inflight.push(timed(call(payload.clone())));
    }
    bail!("no calls in flight")
}
