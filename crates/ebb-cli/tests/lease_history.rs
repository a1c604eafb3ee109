//! Lease-protected reads and writes, checked for per-key linearizability:
//! six clients on three `ebb node --origin` processes, each node reaching
//! the origin through its own `ebb chaos` proxy (delays and resets), while
//! the origin is killed with SIGKILL and restarted twice. Every operation is
//! recorded with its invocation and completion on one clock; the checker is
//! `ebb_sim::lease::check`, the one the simulation's planted bugs are caught
//! by.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ebb::rpc::transport::TcpClient;
use ebb_demo::DemoClient;
use ebb_sim::lease::check::{Op, OpKind, check};

const KEYS: u64 = 3;
const CLIENTS_PER_NODE: u64 = 2;
const OPS_PER_CLIENT: u64 = 400;
/// A bound on a read-only client's loop, far above what a run reaches.
const MAX_PACED_READS: u64 = 100_000;
const READ_PACE_MS: u64 = 5;
const TERM_MS: &str = "1000";
/// A key written once, then only read: its leases outlive origin outages.
const READ_ONLY_KEY: u64 = KEYS;
/// Completed reads and writes each phase with the origin up waits for
/// before it ends: the run is as long as the traffic takes, not a fixed
/// time a loaded machine may fill with too little of it.
const READS_PER_PHASE: u64 = 80;
const WRITES_PER_PHASE: u64 = 40;
/// How long an outage lasts at least, and at most while no read has been
/// served from a lease in it: a lease term, past which none can be.
const OUTAGE_MIN_MS: u64 = 200;
const OUTAGE_MAX_MS: u64 = 1_000;
/// Bound on a phase with the origin up: far past what a run takes, only
/// to turn a run that makes no progress into a failure.
const PHASE_CAP: Duration = Duration::from_secs(120);
const PHASE_POLL: Duration = Duration::from_millis(10);

/// What the clients have done so far, for the schedule to wait on.
#[derive(Default)]
struct Progress {
    reads: AtomicU64,
    writes: AtomicU64,
    /// Reads invoked at or after `down_since` (a crash, ns since the
    /// start; 0 while the origin is up) and answered.
    outage_reads: AtomicU64,
    down_since: AtomicU64,
}

impl Progress {
    /// Waits until `reads` and `writes` more have completed than at the
    /// call, at most [`PHASE_CAP`].
    fn wait_for_traffic(&self, reads: u64, writes: u64) {
        let (r0, w0) = (self.reads(), self.writes());
        let capped = Instant::now() + PHASE_CAP;
        while self.reads() < r0 + reads || self.writes() < w0 + writes {
            assert!(
                Instant::now() < capped,
                "no progress: {} reads, {} writes in {PHASE_CAP:?}",
                self.reads() - r0,
                self.writes() - w0
            );
            std::thread::sleep(PHASE_POLL);
        }
    }

    fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Recorded {
    op: Op,
    /// The value written, to learn an unanswered write's version from the
    /// reads that saw it.
    wrote: Option<String>,
    read_value: Option<String>,
}

fn start_origin(data: &str, listen: &str) -> common::Proc {
    common::ebb(&[
        "origin",
        "--listen",
        listen,
        "--data",
        data,
        "--max-term-ms",
        TERM_MS,
        "--epsilon-ms",
        "50",
    ])
}

async fn client_loop(
    node: String,
    client_id: u64,
    start: Instant,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    read_only: bool,
) -> Vec<Recorded> {
    let demo = DemoClient::new(TcpClient::connect(&node).await.expect("the node accepts"));
    let mut out = Vec::new();
    let mut rng = ebb_core::Rng::seeded(client_id);
    // Read-only clients pace themselves and run until told to stop, so
    // they are reading while the origin is down.
    let ops = if read_only {
        MAX_PACED_READS
    } else {
        OPS_PER_CLIENT
    };
    for i in 0..ops {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if read_only {
            tokio::time::sleep(Duration::from_millis(READ_PACE_MS)).await;
        }
        let key = if read_only {
            READ_ONLY_KEY
        } else {
            rng.below(KEYS)
        };
        let invoke = start.elapsed().as_nanos() as u64;
        if !read_only && rng.chance(0.3) {
            let value = format!("c{client_id}-{i}");
            let r = demo.write(format!("k{key}"), value.clone()).await;
            let done = start.elapsed().as_nanos() as u64;
            let (complete, version) = match r {
                Ok(Ok(v)) => {
                    progress.writes.fetch_add(1, Ordering::Relaxed);
                    (Some(done), Some(v))
                }
                _ => (None, None), // outcome unknown: may or may not have applied
            };
            out.push(Recorded {
                op: Op {
                    key,
                    kind: OpKind::Write,
                    invoke,
                    complete,
                    version,
                    client: client_id,
                },
                wrote: Some(value),
                read_value: None,
            });
        } else {
            let r = demo.read(format!("k{key}")).await;
            let done = start.elapsed().as_nanos() as u64;
            if let Ok(Ok(v)) = r {
                progress.reads.fetch_add(1, Ordering::Relaxed);
                let down = progress.down_since.load(Ordering::Relaxed);
                if down != 0 && invoke >= down {
                    progress.outage_reads.fetch_add(1, Ordering::Relaxed);
                }
                out.push(Recorded {
                    op: Op {
                        key,
                        kind: OpKind::Read,
                        invoke,
                        complete: Some(done),
                        version: Some(v.version),
                        client: client_id,
                    },
                    wrote: None,
                    read_value: v.value,
                });
            }
        }
    }
    out
}

#[test]
fn lease_protected_reads_and_writes_are_linearizable_through_chaos_and_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path").to_owned();
    let mut origin = start_origin(&data, "127.0.0.1:0");
    let origin_addr = origin.addr.clone();
    let chaos: Vec<common::Proc> = (0..3)
        .map(|i| {
            common::ebb(&[
                "chaos",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                &origin_addr,
                "--delay-ms",
                "2",
                "--reset",
                "0.002",
                "--seed",
                &format!("{}", 11 + i),
            ])
        })
        .collect();
    let nodes: Vec<common::Proc> = chaos
        .iter()
        .map(|c| {
            common::ebb(&[
                "node",
                "--listen",
                "127.0.0.1:0",
                "--origin",
                &c.addr,
                "--lease-term-ms",
                TERM_MS,
                "--epsilon-ms",
                "50",
            ])
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let start = Instant::now();
    let first = rt.block_on(async {
        let demo = DemoClient::new(TcpClient::connect(&nodes[0].addr).await.expect("node"));
        let invoke = start.elapsed().as_nanos() as u64;
        let v = demo
            .write(format!("k{READ_ONLY_KEY}"), "fixed".into())
            .await
            .expect("call")
            .expect("write");
        Recorded {
            op: Op {
                key: READ_ONLY_KEY,
                kind: OpKind::Write,
                invoke,
                complete: Some(start.elapsed().as_nanos() as u64),
                version: Some(v),
                client: 99,
            },
            wrote: Some("fixed".into()),
            read_value: None,
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::default());
    let tasks: Vec<_> = nodes
        .iter()
        .enumerate()
        .flat_map(|(n, node)| {
            (0..CLIENTS_PER_NODE).map(move |c| (node.addr.clone(), n as u64 * CLIENTS_PER_NODE + c))
        })
        .map(|(addr, id)| {
            rt.spawn(client_loop(
                addr,
                id,
                start,
                stop.clone(),
                progress.clone(),
                false,
            ))
        })
        .chain(nodes.iter().enumerate().map(|(n, node)| {
            rt.spawn(client_loop(
                node.addr.clone(),
                100 + n as u64,
                start,
                stop.clone(),
                progress.clone(),
                true,
            ))
        }))
        .collect();
    // Two origin crashes while the clients run, each after a phase of
    // traffic; each down window recorded. An outage lasts until a read was
    // served from a lease in it (or a lease term, after which none can
    // be), and at least OUTAGE_MIN_MS.
    let mut down = Vec::new();
    for _ in 0..2 {
        progress.wait_for_traffic(READS_PER_PHASE, WRITES_PER_PHASE);
        let from = start.elapsed().as_nanos() as u64;
        let outage_reads = progress.outage_reads.load(Ordering::Relaxed);
        progress.down_since.store(from, Ordering::Relaxed);
        drop(origin); // SIGKILL
        let killed = Instant::now();
        std::thread::sleep(Duration::from_millis(OUTAGE_MIN_MS));
        while progress.outage_reads.load(Ordering::Relaxed) == outage_reads
            && killed.elapsed() < Duration::from_millis(OUTAGE_MAX_MS)
        {
            std::thread::sleep(PHASE_POLL);
        }
        origin = start_origin(&data, &origin_addr);
        down.push((from, start.elapsed().as_nanos() as u64));
        progress.down_since.store(0, Ordering::Relaxed);
    }
    progress.wait_for_traffic(READS_PER_PHASE, WRITES_PER_PHASE);
    stop.store(true, Ordering::Relaxed);
    let recorded: Vec<Recorded> = rt.block_on(async {
        let mut all = vec![first];
        for t in tasks {
            all.extend(t.await.expect("client task"));
        }
        all
    });
    // An unanswered write's version, where some read saw its value.
    let seen: BTreeMap<(u64, String), u64> = recorded
        .iter()
        .filter_map(|r| {
            r.read_value
                .as_ref()
                .map(|v| ((r.op.key, v.clone()), r.op.version.unwrap_or(0)))
        })
        .collect();
    let history: Vec<Op> = recorded
        .iter()
        .map(|r| {
            let mut op = r.op.clone();
            if op.kind == OpKind::Write && op.version.is_none() {
                op.version = r
                    .wrote
                    .as_ref()
                    .and_then(|w| seen.get(&(op.key, w.clone())).copied());
            }
            op
        })
        .collect();
    let reads = history.iter().filter(|o| o.kind == OpKind::Read).count();
    let writes = history
        .iter()
        .filter(|o| o.kind == OpKind::Write && o.complete.is_some())
        .count();
    assert!(
        reads > 100 && writes > 50,
        "too little traffic: {reads} reads, {writes} writes"
    );
    if let Err(v) = check(&history) {
        panic!("not linearizable ({} operations): {v}", history.len());
    }
    // Reads completed entirely inside an outage were served from leases:
    // the cache path, not only the origin path, was checked.
    let in_outage = history
        .iter()
        .filter(|o| o.kind == OpKind::Read)
        .filter(|o| {
            let c = o.complete.unwrap_or(u64::MAX);
            down.iter().any(|(a, b)| o.invoke >= *a && c <= *b)
        })
        .count();
    assert!(
        in_outage > 0,
        "no read was served from a lease during an outage"
    );
    // Writes resumed after the last restart (liveness after the gate).
    let last_up = down.last().map_or(0, |d| d.1);
    assert!(
        history
            .iter()
            .any(|o| o.kind == OpKind::Write && o.complete.is_some_and(|c| c > last_up)),
        "no write completed after the last restart"
    );
    eprintln!(
        "{reads} reads ({in_outage} during outages), {writes} writes, {} unanswered writes",
        history
            .iter()
            .filter(|o| o.kind == OpKind::Write && o.complete.is_none())
            .count()
    );
    drop(nodes);
    drop(chaos);
}
