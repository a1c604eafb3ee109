//! Caching nodes in front of one origin over loopback TCP (not a test; the
//! commands and figures are in docs/benchmarks.md and docs/leases.md).
//!
//! Each node is a `LeaseCache` with its own connection and invalidation
//! poller; its reads and writes arrive as Poisson processes (seeded), its
//! reads through its cache, its writes through the origin (durable). The
//! origin is an `OriginService` in the same process on a loopback socket.
//!
//! - `--mode pool`: 1, 4 and 16 nodes, a read-heavy mix (per node 200
//!   reads/s and 10 writes/s over 64 shared keys), at terms 0, 1 s, 10 s and
//!   ∞: origin requests per second (reads that reach it, puts, polls) and
//!   write latency.
//! - `--mode curves`: Gray and Cheriton's experiment at scaled rates: S
//!   sharers of one key, each reading at R = 0.864/s and writing at W =
//!   0.039/s times `SCALE`, terms and ε divided by `SCALE`; the consistency
//!   load relative to term 0.
//!
//! `--reps N` repeats every point N times (points interleaved) and prints
//! medians.

use std::time::{Duration, Instant};

use ebb_core::{Nanos, Rng};
use ebb_lease::api::{OriginClient, OriginServer};
use ebb_lease::cache::{CacheSettings, LeaseCache};
use ebb_lease::origin::{OriginService, OriginSettings};
use ebb_policy::lease::LeaseTerm;
use ebb_rpc::transport::{Server, TcpClient};
use hdrhistogram::Histogram;
use std::sync::atomic::Ordering;

const VALUE_BYTES: usize = 100;
/// Pool mode.
const POOL_NODES: [usize; 3] = [1, 4, 16];
const POOL_TERMS_MS: [Option<u64>; 4] = [Some(0), Some(1_000), Some(10_000), None];
const POOL_READS_PER_S: f64 = 200.0;
const POOL_WRITES_PER_S: f64 = 10.0;
const POOL_KEYS: u64 = 64;
const POOL_SECS: f64 = 3.0;
const POOL_EPSILON_MS: u64 = 100;
/// Curves mode: the paper's V-system rates, sped up by `SCALE`.
const SCALE: f64 = 50.0;
const PAPER_READ_PER_S: f64 = 0.864;
const PAPER_WRITE_PER_S: f64 = 0.039;
const PAPER_EPSILON_S: f64 = 0.1;
const CURVE_SHARERS: [usize; 4] = [1, 10, 20, 40];
/// Paper-scale terms, seconds (`None`: callbacks).
const CURVE_TERMS_S: [Option<f64>; 10] = [
    Some(0.0),
    Some(0.5),
    Some(1.0),
    Some(2.0),
    Some(5.0),
    Some(10.0),
    Some(15.0),
    Some(20.0),
    Some(30.0),
    None,
];
/// Reads per curve point across all sharers (duration = this / (S·R)),
/// within these bounds in seconds.
const CURVE_READS: f64 = 1_500.0;
const CURVE_MIN_SECS: f64 = 2.0;
const CURVE_MAX_SECS: f64 = 8.0;

#[derive(Clone, Copy, Debug)]
struct Load {
    nodes: usize,
    term: LeaseTerm,
    epsilon: Nanos,
    keys: u64,
    reads_per_s: f64,
    writes_per_s: f64,
    secs: f64,
    seed: u64,
}

#[derive(Debug)]
struct Outcome {
    secs: f64,
    reads: u64,
    writes: u64,
    /// Reads that reached the origin (fetches and validations).
    origin_gets: u64,
    polls: u64,
    invalidations: u64,
    write_us: Histogram<u64>,
    read_us: Histogram<u64>,
}

impl Outcome {
    fn origin_requests_per_s(&self) -> f64 {
        (self.origin_gets + self.writes + self.polls) as f64 / self.secs
    }
    /// Messages of the lease protocol, counted as a real node exchanges
    /// them: a read that reaches the origin is a request and a reply; an
    /// invalidation is a poll reply and an acknowledgement on the next poll.
    fn consistency_messages(&self) -> f64 {
        2.0 * (self.origin_gets + self.invalidations) as f64
    }
}

fn term_of(ms: Option<u64>) -> LeaseTerm {
    ms.map_or(LeaseTerm::CALLBACK, LeaseTerm::from_millis)
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds are valid")
}

async fn run(load: Load) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = OriginSettings {
        max_term: load.term,
        epsilon: load.epsilon,
        ..OriginSettings::default()
    };
    let (origin, _) = OriginService::open(dir.path(), settings).expect("open origin");
    let server = Server::bind("127.0.0.1:0", OriginServer::new(origin))
        .await
        .expect("bind");
    let addr = server.local_addr().expect("addr").to_string();
    let server_task = tokio::spawn(server.run());
    let mut caches = Vec::new();
    let mut pollers = Vec::new();
    for n in 0..load.nodes {
        let client = OriginClient::new(TcpClient::connect(&addr).await.expect("connect"));
        let cache = LeaseCache::new(
            client,
            1 + n as u64,
            CacheSettings {
                term: load.term,
                epsilon: load.epsilon,
                ..CacheSettings::default()
            },
        );
        pollers.push(tokio::spawn(cache.clone().run_poller()));
        caches.push(cache);
    }
    // Every key exists before the clock starts.
    for k in 0..load.keys {
        caches[0]
            .put(&format!("k{k}"), vec![0; VALUE_BYTES])
            .await
            .expect("seed put");
    }
    let stats_before: Vec<(u64, u64, u64)> = caches.iter().map(counters).collect();
    let mut rng = Rng::seeded(load.seed);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(load.secs);
    let mut tasks = Vec::new();
    for cache in &caches {
        for writer in [false, true] {
            let cache = cache.clone();
            let mut rng = rng.fork();
            let rate = if writer {
                load.writes_per_s
            } else {
                load.reads_per_s
            };
            let keys = load.keys;
            tasks.push(tokio::spawn(async move {
                let mut h = hist();
                let mut n = 0u64;
                let mut at = Instant::now();
                if rate <= 0.0 {
                    return (writer, n, h);
                }
                loop {
                    at += Duration::from_secs_f64(rng.exp(1.0 / rate));
                    if at >= end {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                    let key = format!("k{}", rng.below(keys));
                    let t = Instant::now();
                    if writer {
                        cache.put(&key, vec![1; VALUE_BYTES]).await.expect("put");
                    } else {
                        cache.get(&key).await.expect("get");
                    }
                    let _ = h.record((t.elapsed().as_micros() as u64).max(1));
                    n += 1;
                }
                (writer, n, h)
            }));
        }
    }
    let mut out = Outcome {
        secs: 0.0,
        reads: 0,
        writes: 0,
        origin_gets: 0,
        polls: 0,
        invalidations: 0,
        write_us: hist(),
        read_us: hist(),
    };
    for t in tasks {
        let (writer, n, h) = t.await.expect("load task");
        if writer {
            out.writes += n;
            out.write_us.add(h).expect("same bounds");
        } else {
            out.reads += n;
            out.read_us.add(h).expect("same bounds");
        }
    }
    out.secs = start.elapsed().as_secs_f64();
    for (c, before) in caches.iter().zip(stats_before) {
        let now = counters(c);
        out.origin_gets += now.0 - before.0;
        out.polls += now.1 - before.1;
        out.invalidations += now.2 - before.2;
    }
    for p in pollers {
        p.abort();
    }
    server_task.abort();
    out
}

fn counters<T: ebb_rpc::service::Transport>(c: &LeaseCache<T>) -> (u64, u64, u64) {
    let s = c.stats();
    (
        s.fetched.load(Ordering::Relaxed) + s.validated_unchanged.load(Ordering::Relaxed),
        s.polls.load(Ordering::Relaxed),
        s.invalidations.load(Ordering::Relaxed),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn term_label(ms: Option<u64>) -> String {
    match ms {
        None => "inf".into(),
        Some(0) => "0".into(),
        Some(ms) => format!("{} s", ms as f64 / 1e3),
    }
}

async fn pool(reps: usize) {
    // [nodes][term] → per-rep (origin req/s, origin gets/s, write p50 ms,
    // write p99 ms, read p50 us, reads/s).
    let mut rows = vec![vec![Vec::new(); POOL_TERMS_MS.len()]; POOL_NODES.len()];
    for rep in 0..reps {
        for (ni, &nodes) in POOL_NODES.iter().enumerate() {
            for (ti, &term) in POOL_TERMS_MS.iter().enumerate() {
                let o = run(Load {
                    nodes,
                    term: term_of(term),
                    epsilon: Nanos::from_millis(POOL_EPSILON_MS),
                    keys: POOL_KEYS,
                    reads_per_s: POOL_READS_PER_S,
                    writes_per_s: POOL_WRITES_PER_S,
                    secs: POOL_SECS,
                    seed: 1 + rep as u64,
                })
                .await;
                rows[ni][ti].push([
                    o.origin_requests_per_s(),
                    o.origin_gets as f64 / o.secs,
                    o.write_us.value_at_quantile(0.5) as f64 / 1e3,
                    o.write_us.value_at_quantile(0.99) as f64 / 1e3,
                    o.read_us.value_at_quantile(0.5) as f64,
                    o.reads as f64 / o.secs,
                ]);
            }
        }
        eprintln!("pool rep {rep} done");
    }
    println!(
        "pool: per node {POOL_READS_PER_S} reads/s + {POOL_WRITES_PER_S} writes/s over {POOL_KEYS} keys, {POOL_SECS} s per point, epsilon {POOL_EPSILON_MS} ms (median of {reps})"
    );
    println!(
        "| nodes | term | origin req/s | vs term 0 | reads reaching origin/s | write p50 ms | write p99 ms | read p50 us | reads/s |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for (ni, &nodes) in POOL_NODES.iter().enumerate() {
        // Ratios within each rep, then the median of the ratios.
        let base: Vec<f64> = rows[ni][0].iter().map(|r| r[0]).collect();
        for (ti, &term) in POOL_TERMS_MS.iter().enumerate() {
            let col = |i: usize| median(rows[ni][ti].iter().map(|r| r[i]).collect());
            let rel = median(
                rows[ni][ti]
                    .iter()
                    .zip(&base)
                    .map(|(r, b)| r[0] / b)
                    .collect(),
            );
            println!(
                "| {nodes} | {} | {:.0} | {rel:.2} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} |",
                term_label(term),
                col(0),
                col(1),
                col(2),
                col(3),
                col(4),
                col(5)
            );
        }
    }
}

async fn curves(reps: usize) {
    let r = PAPER_READ_PER_S * SCALE;
    let w = PAPER_WRITE_PER_S * SCALE;
    let eps = Nanos::from_secs_f64(PAPER_EPSILON_S / SCALE);
    // [sharers][term] → per-rep consistency messages per read.
    let mut rows = vec![vec![Vec::new(); CURVE_TERMS_S.len()]; CURVE_SHARERS.len()];
    for rep in 0..reps {
        for (si, &s) in CURVE_SHARERS.iter().enumerate() {
            let secs = (CURVE_READS / (s as f64 * r)).clamp(CURVE_MIN_SECS, CURVE_MAX_SECS);
            for (ti, &t) in CURVE_TERMS_S.iter().enumerate() {
                let term = t.map_or(LeaseTerm::CALLBACK, |t| {
                    LeaseTerm::new(Nanos::from_secs_f64(t / SCALE))
                });
                let o = run(Load {
                    nodes: s,
                    term,
                    epsilon: eps,
                    keys: 1,
                    reads_per_s: r,
                    writes_per_s: w,
                    secs,
                    seed: 100 + rep as u64,
                })
                .await;
                // Per read, so points with different achieved rates compare.
                rows[si][ti].push(o.consistency_messages() / o.reads.max(1) as f64);
            }
            eprintln!("curves rep {rep}: S = {s} done");
        }
    }
    println!(
        "curves: rates x{SCALE} (R = {r:.1}/s, W = {w:.2}/s per sharer), terms and epsilon / {SCALE} (median of {reps}); relative consistency load"
    );
    let header: Vec<String> = CURVE_SHARERS.iter().map(|s| format!("S={s}")).collect();
    println!("| term (s, paper scale) | {} |", header.join(" | "));
    println!("|---:|{}", "---:|".repeat(CURVE_SHARERS.len()));
    for (ti, &t) in CURVE_TERMS_S.iter().enumerate() {
        let cells: Vec<String> = CURVE_SHARERS
            .iter()
            .enumerate()
            .map(|(si, _)| {
                let rel: Vec<f64> = rows[si][ti]
                    .iter()
                    .zip(&rows[si][0])
                    .map(|(x, base)| x / base)
                    .collect();
                format!("{:.3}", median(rel))
            })
            .collect();
        let label = t.map_or("inf".to_owned(), |t| format!("{t}"));
        println!("| {label} | {} |", cells.join(" | "));
    }
}

fn main() {
    let arg = |name: &str| std::env::args().skip_while(|a| a != name).nth(1);
    let reps: usize = arg("--reps").map_or(3, |r| r.parse().expect("--reps N"));
    let mode = arg("--mode").unwrap_or_else(|| "pool".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        match mode.as_str() {
            "pool" => pool(reps).await,
            "curves" => curves(reps).await,
            other => panic!("--mode {other}: expected pool or curves"),
        }
    });
}
