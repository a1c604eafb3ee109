//! Calls in flight across a live migration of a VM node running `ebb node`.
//!
//! The node keeps its address (the target QEMU takes over the host port),
//! and its server keeps its incarnation and reply table (they are guest
//! memory, which is what moves). So one `TcpClient` loses its connection
//! when the source QEMU quits, reconnects to the same address, re-sends what
//! was pending, and the server answers duplicates from its table: every
//! `Demo.incr` runs exactly once and no call ends `OutcomeUnknown`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ebb::rpc::semantics::ClientConfig;
use ebb::rpc::service::CallOptions;
use ebb::rpc::transport::{TcpClient, TcpClientConfig};
use ebb_core::{Nanos, NodeId};
use ebb_demo::DemoClient;
use ebb_node::provider::{NodeEvent, NodeProvider};
use ebb_node::vm::VmProvider;
use ebb_node::vm::provider::VmConfig;
use tokio::sync::Notify;

const TEST: &str = "vm_migration_keeps_the_address_and_calls_in_flight_run_exactly_once";
const NODE: NodeId = NodeId(1);
const INCR_CALLERS: usize = 3;
const GET_CALLERS: usize = 1;
const COUNTER_KEY: &str = "k";
const VALUE_KEY: &str = "g";
const VALUE: &str = "stored before the migration";
/// Calls that succeed before the migration starts, so sessions, saved
/// replies and a steady stream of calls exist when the guest moves.
const OK_BEFORE_MIGRATION: u64 = 20;
/// Calls that succeed after the migration returned before callers stop.
const OK_AFTER_MIGRATION: u64 = 40;
/// A caller that reaches this many calls fails the test instead of looping.
const MAX_CALLS_PER_CALLER: usize = 50_000;
/// TCG guests are slow, the more so while being migrated.
const CALL_TIMEOUT_MS: u64 = 30_000;
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const FIRST_CALLS_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(20);
/// Guest console lines shown when calls failed and the guest did not crash.
const CONSOLE_TAIL_LINES: usize = 40;
/// Console lines that start a guest kernel crash report.
const CRASH_MARKERS: [&str; 4] = ["BUG:", "Oops", "general protection fault", "Kernel panic"];
/// A crash report is shown whole from its first line (an oops with its
/// call trace and the panic after it is 60-100 lines), up to this many.
const CRASH_REPORT_LINES: usize = 200;

/// The default session timers, except the failure detector: a TCG guest on
/// a loaded machine may stay silent for seconds, and the migration's break
/// is a closed connection (the source quits), not silence.
fn client_config() -> TcpClientConfig {
    let d = TcpClientConfig::default();
    TcpClientConfig {
        session: ClientConfig {
            heartbeat_silence: Nanos::from_millis(CALL_TIMEOUT_MS),
            ..d.session
        },
        ..d
    }
}

/// What the callers share: progress, and when to start and stop.
struct Progress {
    ok: AtomicU64,
    /// `ok` when the migration returned; `u64::MAX` before.
    ok_when_migrated: AtomicU64,
    enough_before: Notify,
}

impl Progress {
    fn succeeded(&self) {
        if self.ok.fetch_add(1, Ordering::SeqCst) + 1 == OK_BEFORE_MIGRATION {
            self.enough_before.notify_one();
        }
    }

    fn done(&self) -> bool {
        let at = self.ok_when_migrated.load(Ordering::SeqCst);
        at != u64::MAX && self.ok.load(Ordering::SeqCst) >= at + OK_AFTER_MIGRATION
    }
}

#[derive(Default)]
struct Tally {
    incr_values: Vec<u64>,
    gets: usize,
    /// The failed call that stopped this caller, described; none is expected.
    errors: Vec<String>,
    /// (start, end) of every call, to count those that overlapped the move.
    spans: Vec<(Instant, Instant)>,
    hit_the_bound: bool,
}

async fn caller(client: Arc<TcpClient>, progress: Arc<Progress>, incr: bool) -> Tally {
    let opts = CallOptions::default().with_timeout(Nanos::from_millis(CALL_TIMEOUT_MS));
    let demo = DemoClient::new(client).with_options(opts);
    let mut t = Tally::default();
    for _ in 0..MAX_CALLS_PER_CALLER {
        if progress.done() {
            return t;
        }
        let start = Instant::now();
        let ok = if incr {
            match demo.incr(COUNTER_KEY.to_owned()).await {
                Ok(Ok(v)) => {
                    t.incr_values.push(v);
                    true
                }
                Ok(Err(e)) => {
                    t.errors.push(format!("incr refused: {e}"));
                    false
                }
                Err(e) => {
                    t.errors.push(format!("incr: {e:?}"));
                    false
                }
            }
        } else {
            match demo.get(VALUE_KEY.to_owned()).await {
                Ok(Ok(Some(v))) if v == VALUE => {
                    t.gets += 1;
                    true
                }
                Ok(other) => {
                    t.errors.push(format!("get returned {other:?}"));
                    false
                }
                Err(e) => {
                    t.errors.push(format!("get: {e:?}"));
                    false
                }
            }
        };
        t.spans.push((start, Instant::now()));
        if !ok {
            // The test fails on any error; stop rather than wait out the
            // deadline of every later call to a node that may be gone.
            return t;
        }
        progress.succeeded();
    }
    t.hit_the_bound = true;
    t
}

/// What the guest and its QEMU said, for a failure message: whether QEMU
/// still runs, and the console from the first line of a kernel crash report
/// if there is one (the target's console starts at the migration, so all
/// of it is the migrated guest's), else its last lines.
fn guest_report(p: &mut VmProvider) -> String {
    let Some(m) = p.machine(NODE) else {
        return "the provider has no machine for the node".into();
    };
    let qemu = match m.try_wait() {
        Ok(None) => format!("QEMU pid {} still runs", m.pid()),
        Ok(Some(status)) => format!("QEMU pid {} exited: {status}", m.pid()),
        Err(e) => format!("QEMU pid {}: cannot tell whether it runs: {e}", m.pid()),
    };
    let console = m.console();
    let lines: Vec<&str> = console.lines().collect();
    let crash = lines
        .iter()
        .position(|l| CRASH_MARKERS.iter().any(|k| l.contains(k)));
    let (what, shown) = match crash {
        Some(first) => (
            "the guest kernel crashed; its console from the crash report",
            &lines[first..lines.len().min(first + CRASH_REPORT_LINES)],
        ),
        None => (
            "no crash report on the guest console; its last lines",
            &lines[lines.len().saturating_sub(CONSOLE_TAIL_LINES)..],
        ),
    };
    format!(
        "{qemu}, accelerator {}; {what}:\n{}",
        p.accel().as_str(),
        shown.join("\n")
    )
}

fn qemu_version() -> String {
    std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_else(|e| format!("qemu-system-x86_64 --version failed: {e}"))
}

fn wait_ready(p: &mut VmProvider) {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        for ev in p.poll_events() {
            match ev {
                NodeEvent::Ready(n) if n == NODE => return,
                NodeEvent::Gone(n, why) if n == NODE => panic!("{TEST}: node gone: {why}"),
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "{TEST}: node not ready in {BOOT_TIMEOUT:?}"
        );
        std::thread::sleep(POLL);
    }
}

#[test]
fn vm_migration_keeps_the_address_and_calls_in_flight_run_exactly_once() {
    let ebb = PathBuf::from(env!("CARGO_BIN_EXE_ebb"));
    let mut p = match VmProvider::new(VmConfig::ebb_node(ebb)) {
        Ok(p) => p,
        Err(e) if common::vm_unavailable(&e) => {
            ebb_testkit::skip_or_fail(TEST, &e.to_string());
            return;
        }
        Err(e) => panic!("{TEST}: preparing the VM provider failed: {e}"),
    };
    eprintln!(
        "{TEST}: accelerator {}, {}",
        p.accel().as_str(),
        qemu_version()
    );
    let started = p.start(NODE).unwrap();
    wait_ready(&mut p);
    let addr = started.addr.to_string();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = Arc::new(
            TcpClient::connect_with(&addr, client_config())
                .await
                .unwrap(),
        );
        let opts = CallOptions::default().with_timeout(Nanos::from_millis(CALL_TIMEOUT_MS));
        let demo = DemoClient::new(Arc::clone(&client)).with_options(opts);
        demo.put(VALUE_KEY.to_owned(), VALUE.to_owned())
            .await
            .unwrap()
            .unwrap();

        let progress = Arc::new(Progress {
            ok: AtomicU64::new(0),
            ok_when_migrated: AtomicU64::new(u64::MAX),
            enough_before: Notify::new(),
        });
        let tasks: Vec<_> = (0..INCR_CALLERS + GET_CALLERS)
            .map(|i| {
                let incr = i < INCR_CALLERS;
                tokio::spawn(caller(Arc::clone(&client), Arc::clone(&progress), incr))
            })
            .collect();

        tokio::time::timeout(FIRST_CALLS_TIMEOUT, progress.enough_before.notified())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{TEST}: {OK_BEFORE_MIGRATION} calls did not succeed in {FIRST_CALLS_TIMEOUT:?}"
                )
            });
        let migration_began = Instant::now();
        let ok_before = progress.ok.load(Ordering::SeqCst);
        // The provider is blocking code; the callers keep running meanwhile.
        let (mut p, report) = tokio::task::spawn_blocking(move || {
            let r = p.migrate(NODE);
            (p, r)
        })
        .await
        .unwrap();
        let report = match report {
            Ok(r) => r,
            Err(e) => panic!("{TEST}: migration failed: {e}\n{}", guest_report(&mut p)),
        };
        let migration_ended = Instant::now();
        progress
            .ok_when_migrated
            .store(progress.ok.load(Ordering::SeqCst), Ordering::SeqCst);

        let mut values = Vec::new();
        let mut gets = 0;
        let mut errors = Vec::new();
        let mut spans = Vec::new();
        for t in tasks {
            let t = t.await.unwrap();
            assert!(
                !t.hit_the_bound,
                "{TEST}: a caller made {MAX_CALLS_PER_CALLER} calls without finishing"
            );
            values.extend(t.incr_values);
            gets += t.gets;
            errors.extend(t.errors);
            spans.extend(t.spans);
        }

        if !errors.is_empty() {
            // The guest's own words say whether it crashed or stalled.
            panic!(
                "{TEST}: calls failed: {errors:?}; {} incr and {gets} get ok before; {report:?}\n{}",
                values.len(),
                guest_report(&mut p)
            );
        }
        // One more increment returns the number of executions so far plus one.
        let executions = demo.incr(COUNTER_KEY.to_owned()).await.unwrap().unwrap() - 1;
        let ok_incr = values.len() as u64;
        let distinct: BTreeSet<u64> = values.iter().copied().collect();
        let overlapping = spans
            .iter()
            .filter(|(s, e)| *s < migration_ended && *e > migration_began)
            .count();
        // The source quits just before `migrate` returns: these calls were
        // most likely cut off with it and re-sent.
        let in_flight_at_end = spans
            .iter()
            .filter(|(s, e)| *s < migration_ended && *e > migration_ended)
            .count();
        let mut latencies: Vec<Duration> = spans.iter().map(|(s, e)| *e - *s).collect();
        latencies.sort();
        let median = latencies.get(latencies.len() / 2).copied().unwrap_or_default();
        let longest = latencies.last().copied().unwrap_or_default();
        let ctx = format!(
            "{ok_incr} incr ok, {gets} get ok, {executions} executions; \
             {ok_before} ok before the migration, {overlapping} calls overlapped it, \
             {in_flight_at_end} in flight as it returned, median call {median:?}, longest {longest:?}; {report:?}"
        );
        eprintln!("{TEST}: {ctx}");
        assert_eq!(
            distinct.len(),
            values.len(),
            "a value was returned twice; {ctx}"
        );
        assert_eq!(
            executions, ok_incr,
            "every incr must have run exactly once; {ctx}"
        );
        assert_eq!(
            distinct,
            (1..=executions).collect::<BTreeSet<u64>>(),
            "{ctx}"
        );
        assert!(gets > 0, "{ctx}");
        assert!(
            overlapping > 0,
            "no call was in flight across the migration, so it tested nothing; {ctx}"
        );

        // The node is where it was: same address as `start` returned.
        let now_at = p.machine(NODE).unwrap().host_addr();
        assert_eq!(now_at, Some(started.addr), "{ctx}");
        assert_eq!(client.addr(), started.addr.to_string());
        p.stop(NODE).unwrap();
    });
}
