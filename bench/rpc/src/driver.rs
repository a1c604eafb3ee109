//! The closed-loop load driver shared by every system: keeps exactly
//! `concurrency` calls outstanding on one connection from one task, records
//! each call's latency, and samples the server thread's CPU over the measured
//! window only (warm-up excluded).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;

use crate::cpu::{current_tid, thread_cpu};

/// Highest latency the histogram can hold, in nanoseconds (60 s).
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// One run's parameters.
#[derive(Clone, Copy, Debug)]
pub struct RunCfg {
    pub payload_bytes: usize,
    pub concurrency: usize,
    pub warmup: Duration,
    pub measure: Duration,
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub calls_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub server_cpu_us_per_call: f64,
    /// The client thread's CPU per call: tells whether the client side, not
    /// the server, bounded a system's throughput.
    pub client_cpu_us_per_call: f64,
}

/// Drives `call` (one echo round trip per invocation) under `cfg` and checks
/// every reply echoes the payload length.
pub async fn drive<F, Fut>(cfg: RunCfg, server_tid: i32, mut call: F) -> anyhow::Result<Sample>
where
    F: FnMut(Bytes) -> Fut,
    Fut: Future<Output = anyhow::Result<Bytes>>,
{
    let payload = Bytes::from(vec![0xa5u8; cfg.payload_bytes]);
    let mut hist = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_NS, 3)
        .context("latency histogram bounds")?;
    let mut inflight = FuturesUnordered::new();
    let timed = |fut: Fut| async move {
        let t = Instant::now();
        let r = fut.await;
        (t, r)
    };
    for _ in 0..cfg.concurrency {
        inflight.push(timed(call(payload.clone())));
    }
    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let measure_to = measure_from + cfg.measure;
    let mut measuring = false;
    let client_tid = current_tid();
    let mut cpu0 = Duration::ZERO;
    let mut client_cpu0 = Duration::ZERO;
    let mut t0 = measure_from;
    let mut done: u64 = 0;
    while let Some((sent, reply)) = inflight.next().await {
        let now = Instant::now();
        let reply = reply?;
        if reply.len() != cfg.payload_bytes {
            bail!(
                "reply of {} bytes to a {}-byte echo",
                reply.len(),
                cfg.payload_bytes
            );
        }
        if !measuring && now >= measure_from {
            measuring = true;
            cpu0 = thread_cpu(server_tid);
            client_cpu0 = thread_cpu(client_tid);
            t0 = now;
        }
        if measuring {
            if now >= measure_to {
                let cpu = thread_cpu(server_tid) - cpu0;
                let client_cpu = thread_cpu(client_tid) - client_cpu0;
                let secs = now.duration_since(t0).as_secs_f64();
                // Let the calls still in flight finish before the next run.
                while let Some((_, r)) = inflight.next().await {
                    r?;
                }
                return Ok(Sample {
                    calls_per_sec: done as f64 / secs,
                    p50_us: hist.value_at_quantile(0.50) as f64 / 1e3,
                    p99_us: hist.value_at_quantile(0.99) as f64 / 1e3,
                    server_cpu_us_per_call: cpu.as_secs_f64() * 1e6 / done.max(1) as f64,
                    client_cpu_us_per_call: client_cpu.as_secs_f64() * 1e6 / done.max(1) as f64,
                });
            }
            let ns = now.duration_since(sent).as_nanos() as u64;
            hist.saturating_record(ns.max(1));
            done += 1;
        }
        inflight.push(timed(call(payload.clone())));
    }
    bail!("no calls in flight")
}
