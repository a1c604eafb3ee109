//! The history checker catches each planted bug on the real system, and
//! the correct build passes the very same run.
//!
//! Every run: an `ebb origin`, node A (`ebb node --origin`) reaching it
//! through an `ebb chaos` proxy, node B reaching it directly. B writes v1, A
//! reads it (taking a lease), then the scenario's disruption (A cut off by
//! killing its proxy; the origin killed with SIGKILL and restarted), then B
//! writes v2 and A reads again. Every operation is recorded with invocation
//! and completion on one clock and handed to `ebb_sim::lease::check`, the
//! checker of the simulation and of `lease_history`.
//!
//! The bugs are switched on in the child processes through
//! `EBB_PLANTED_BUG` (and the drift through `EBB_PLANTED_CLOCK_SLOW_PPM`),
//! which the `ebb` binary reads only because these tests build it with
//! ebb-lease's `planted-bugs` feature (see crates/ebb-lease/src/planted.rs).

mod common;

use std::time::Instant;

use ebb::rpc::service::CallOptions;
use ebb::rpc::transport::TcpClient;
use ebb_core::Nanos;
use ebb_demo::DemoClient;
use ebb_sim::lease::check::{Op, OpKind, check};

const KEY: u64 = 0;
const KEY_NAME: &str = "k0";
/// Reads of A after the second write: enough to land in any stale window
/// (each served from A's cache takes well under a millisecond), bounded.
const READS_AFTER: usize = 40;
/// A read of A that must reach the cut-off origin gives up after this.
const READ_TIMEOUT_MS: u64 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disruption {
    /// Nothing: A stays connected and acknowledges invalidations.
    None,
    /// A's proxy is killed: A can serve only from its leases.
    CutOffA,
    /// A is cut off, then the origin is killed and restarted.
    CutOffAAndRestartOrigin,
}

struct Setup {
    term_ms: u64,
    epsilon_ms: u64,
    disruption: Disruption,
    /// Environment of node A and of the origin.
    node_env: Vec<(&'static str, String)>,
    origin_env: Vec<(&'static str, String)>,
}

#[derive(Debug)]
struct Outcome {
    history: Vec<Op>,
    /// Reads A answered while cut off from the origin, before the write.
    served_cut_off: usize,
    /// When B's second write completed, since the start (ns).
    v2_completed: u64,
    /// When A's first read (its lease) was invoked.
    leased_at: u64,
    /// When the origin was killed (its successor opened after that).
    killed_at: Option<u64>,
}

fn ebb_env(args: &[&str], env: &[(&'static str, String)]) -> common::Proc {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    common::Proc::start_with_env(env!("CARGO_BIN_EXE_ebb"), args, &env, 1)
}

fn start_origin(s: &Setup, data: &str, listen: &str) -> common::Proc {
    ebb_env(
        &[
            "origin",
            "--listen",
            listen,
            "--data",
            data,
            "--max-term-ms",
            &s.term_ms.to_string(),
            "--epsilon-ms",
            &s.epsilon_ms.to_string(),
        ],
        &s.origin_env,
    )
}

fn start_node(s: &Setup, origin: &str, env: &[(&'static str, String)]) -> common::Proc {
    ebb_env(
        &[
            "node",
            "--listen",
            "127.0.0.1:0",
            "--origin",
            origin,
            "--lease-term-ms",
            &s.term_ms.to_string(),
            "--epsilon-ms",
            &s.epsilon_ms.to_string(),
        ],
        env,
    )
}

fn since(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

fn run(s: &Setup) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path").to_owned();
    let mut origin = start_origin(s, &data, "127.0.0.1:0");
    let origin_addr = origin.addr.clone();
    let mut proxy = common::ebb(&[
        "chaos",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &origin_addr,
    ]);
    let node_a = start_node(s, &proxy.addr, &s.node_env);
    let node_b = start_node(s, &origin_addr, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let opts = CallOptions::default().with_timeout(Nanos::from_millis(READ_TIMEOUT_MS));
    let connect = |addr: &str| {
        let client = rt
            .block_on(TcpClient::connect(addr))
            .expect("the node accepts");
        DemoClient::new(client).with_options(opts)
    };
    let (a, b) = (connect(&node_a.addr), connect(&node_b.addr));
    // B's writes may wait out a term (or a restarted origin's gate).
    let b = b.with_options(
        CallOptions::default()
            .with_timeout(Nanos::from_millis(3 * (s.term_ms + s.epsilon_ms) + 10_000)),
    );
    let start = Instant::now();
    let mut history = Vec::new();
    let write = |history: &mut Vec<Op>, value: &str| -> u64 {
        let invoke = since(start);
        let v = rt
            .block_on(b.write(KEY_NAME.into(), value.into()))
            .expect("B's write call completes")
            .expect("B's write is applied");
        let complete = since(start);
        history.push(Op {
            key: KEY,
            kind: OpKind::Write,
            invoke,
            complete: Some(complete),
            version: Some(v),
            client: 2,
        });
        complete
    };
    // A read of A, recorded when it completed; the value it saw.
    let read = |history: &mut Vec<Op>| -> Option<String> {
        let invoke = since(start);
        let r = rt.block_on(a.read(KEY_NAME.into()));
        let complete = since(start);
        match r {
            Ok(Ok(v)) => {
                history.push(Op {
                    key: KEY,
                    kind: OpKind::Read,
                    invoke,
                    complete: Some(complete),
                    version: Some(v.version),
                    client: 1,
                });
                v.value
            }
            _ => None,
        }
    };
    write(&mut history, "v1");
    let leased_at = since(start);
    assert_eq!(read(&mut history).as_deref(), Some("v1"), "A reads v1");
    let mut served_cut_off = 0;
    if s.disruption != Disruption::None {
        proxy.kill();
        // Within its lease A still answers, from its cache alone.
        if read(&mut history).as_deref() == Some("v1") {
            served_cut_off += 1;
        }
    }
    let mut killed_at = None;
    if s.disruption == Disruption::CutOffAAndRestartOrigin {
        killed_at = Some(since(start));
        origin.kill();
        origin = start_origin(s, &data, &origin_addr);
    }
    let v2_completed = write(&mut history, "v2");
    for _ in 0..READS_AFTER {
        // A cut-off A whose lease ended can only fail; stop at the first.
        if read(&mut history).is_none() {
            break;
        }
    }
    drop((node_a, node_b, proxy, origin));
    Outcome {
        history,
        served_cut_off,
        v2_completed,
        leased_at,
        killed_at,
    }
}

/// Runs `setup` correct and with `bug`: the correct run must pass the
/// checker, the buggy one must fail it.
fn caught(bug: &str, setup: impl Fn(Option<&str>) -> Setup) {
    let good = run(&setup(None));
    if let Err(v) = check(&good.history) {
        panic!(
            "the correct build fails the checker: {v}\nhistory: {:?}",
            good.history
        );
    }
    let bad = run(&setup(Some(bug)));
    match check(&bad.history) {
        Ok(()) => panic!(
            "planted bug {bug} was not caught; history: {:?}",
            bad.history
        ),
        Err(v) => eprintln!("planted bug {bug} caught: {v}"),
    }
    let s = setup(None);
    let term_ns = Nanos::from_millis(s.term_ms).as_nanos();
    match s.disruption {
        // Correct, A obeyed the invalidation and read v2 afresh.
        Disruption::None => assert!(
            good.history
                .iter()
                .any(|o| o.kind == OpKind::Read && o.invoke > good.v2_completed),
            "A read nothing after the write: {:?}",
            good.history
        ),
        // Correct, the origin waited out A's lease (granted after A's read
        // was invoked) ...
        Disruption::CutOffA => assert!(
            good.v2_completed >= good.leased_at + term_ns,
            "the write did not wait out the cut-off holder's term: {good:?}"
        ),
        // ... or, restarted, the persisted bound from the restart.
        Disruption::CutOffAAndRestartOrigin => {
            let killed = good.killed_at.expect("restarted");
            assert!(
                good.v2_completed >= killed + term_ns,
                "the restarted origin did not wait out its term bound: {good:?}"
            );
        }
    }
    if s.disruption != Disruption::None {
        for o in [&good, &bad] {
            assert_eq!(
                o.served_cut_off, 1,
                "A did not serve from its lease while cut off: {o:?}"
            );
        }
    }
}

fn env(bug: Option<&str>) -> Vec<(&'static str, String)> {
    bug.map(|b| vec![("EBB_PLANTED_BUG", b.to_owned())])
        .unwrap_or_default()
}

#[test]
fn a_write_that_does_not_wait_for_holders_is_caught() {
    caught("write-skips-holders", |bug| Setup {
        term_ms: 30_000,
        epsilon_ms: 100,
        disruption: Disruption::None,
        node_env: Vec::new(),
        origin_env: env(bug),
    });
}

#[test]
fn a_read_served_past_expiry_is_caught() {
    caught("serve-past-expiry", |bug| Setup {
        term_ms: 1_000,
        epsilon_ms: 100,
        disruption: Disruption::CutOffA,
        node_env: env(bug),
        origin_env: Vec::new(),
    });
}

#[test]
fn a_cache_that_ignores_epsilon_is_caught_under_drift_within_epsilon() {
    // A's clock runs 25 % slow: over the 3 s term it loses 750 ms, within ε
    // = 900 ms. Correct, A stops serving at (3000 − 900) / 0.75 = 2 800 ms
    // real, before the origin's 3 000 ms; ignoring ε it serves until
    // 3000 / 0.75 = 4 000 ms, a second past the write that the origin let
    // through at 3 000 ms (plus its fsync).
    caught("ignore-epsilon", |bug| {
        let mut node_env = env(bug);
        node_env.push(("EBB_PLANTED_CLOCK_SLOW_PPM", "250000".to_owned()));
        Setup {
            term_ms: 3_000,
            epsilon_ms: 900,
            disruption: Disruption::CutOffA,
            node_env,
            origin_env: Vec::new(),
        }
    });
}

#[test]
fn an_origin_that_forgets_its_term_bound_after_a_restart_is_caught() {
    // A holds a 5 s lease and is cut off; the origin restarts at once.
    // Correct, B's write waits out 5 s + ε from the restart; forgetting the
    // bound, it lands while A still serves v1.
    caught("forget-term-bound", |bug| Setup {
        term_ms: 5_000,
        epsilon_ms: 100,
        disruption: Disruption::CutOffAAndRestartOrigin,
        node_env: Vec::new(),
        origin_env: env(bug),
    });
}

#[test]
fn an_unknown_bug_name_plants_nothing() {
    let out = run(&Setup {
        term_ms: 30_000,
        epsilon_ms: 100,
        disruption: Disruption::None,
        node_env: Vec::new(),
        origin_env: env(Some("no-such-bug")),
    });
    check(&out.history).expect("nothing planted, nothing caught");
}
