//! The autoscaling study behind `docs/autoscaling.md`: every built-in
//! trace, five seeds, each policy's main knob swept; Pareto fronts of
//! node-seconds against SLO misses; the scaling signals compared; nodes
//! needed against load; the hindsight-optimal schedule for one trace; and
//! what faster boot buys.
//!
//! ```sh
//! cargo run --release -p ebb-sim --example autoscale_study -- docs
//! cargo run --release -p ebb-sim --example autoscale_study -- docs boot   # one section
//! ```
//!
//! Writes `autoscaling-<trace>.svg` and `autoscaling-boot-<trace>.svg` into
//! the directory given (default `.`) and prints the doc's tables as
//! Markdown on stdout. Sections after the directory (`pareto`, `signals`,
//! `sublinear`, `hindsight`, `boot`) run only those. Runs in parallel on
//! every core; each run is single-threaded and a function of its seed.

use ebb_core::{Instant, Nanos, Rng};
use ebb_policy::scale::erlang::{halfin_whitt_beta, servers_for, sqrt_staffing};
use ebb_policy::scale::{Limits, parse};
use ebb_sim::builtin::{ALL_BUILTIN, BuiltinTrace};
use ebb_sim::plot::{Panel, Series, svg};
use ebb_sim::{
    Arrivals, Autoscaler, PoolSignals, Report, ScaleAction, ScaleHook, ScaleSetup, ServiceDist,
    SimConfig,
};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Mean arrival rate, per second.
const RATE: f64 = 300.0;
/// Mean service time, seconds: 300/s × 20 ms = 6 erlangs on average.
const SERVICE: f64 = 0.02;
/// The objective: 10 mean service times.
const OBJECTIVE: f64 = 0.2;
/// Boot time of the main study: a cold VM as measured (docs/isolation.md).
const BOOT: f64 = 5.0;
const TRACE_SECS: u32 = 1200;
const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];
const INITIAL_NODES: u32 = 8;
const MAX_NODES: u32 = 400;
const COST_PER_NODE_SEC: u64 = 100;
/// Misses below this are drawn at it on the log axis.
const PLOT_FLOOR: f64 = 1e-5;

#[derive(Clone, Debug)]
struct Job {
    trace: BuiltinTrace,
    seed: u64,
    /// `none:N` runs a fixed pool of N nodes.
    spec: String,
    boot: f64,
    max_capacity: u32,
    rate: f64,
    seconds: u32,
    timeline: bool,
}

#[derive(Clone, Debug)]
struct Outcome {
    report: Report,
    /// Arrivals per one-second tick, when asked for.
    arrivals: Vec<u64>,
}

fn config(job: &Job, nodes: u32) -> SimConfig {
    let mut cfg = SimConfig::new(nodes, 0.5, u64::MAX, job.seed);
    cfg.service = ServiceDist::Exp { mean: SERVICE };
    cfg.arrivals = Arrivals::Builtin {
        trace: job.trace,
        seconds: job.seconds,
    };
    cfg.rate_per_sec = Some(job.rate);
    cfg.warmup = 0.0;
    cfg.objective_secs = Some(OBJECTIVE);
    cfg.boot_secs = job.boot;
    cfg.costs_per_sec_micros = vec![COST_PER_NODE_SEC];
    cfg.tick_secs = 1.0;
    cfg
}

fn setup(boot: f64, max_capacity: u32) -> ScaleSetup {
    ScaleSetup {
        limits: Limits {
            min_nodes: 1,
            max_nodes: MAX_NODES,
            max_capacity_per_node: max_capacity,
        },
        boot_time: Nanos::from_secs_f64(boot),
        cost_per_node_sec_micros: COST_PER_NODE_SEC,
        objective: Some(Nanos::from_secs_f64(OBJECTIVE)),
    }
}

fn run(job: &Job) -> Outcome {
    let (nodes, spec) = match job.spec.strip_prefix("none:") {
        Some(n) => (
            n.parse().expect("fixed pool sizes are written as none:N"),
            "none",
        ),
        None => (INITIAL_NODES, job.spec.as_str()),
    };
    let policy = parse(spec).unwrap_or_else(|e| panic!("{e}"));
    let mut scaler = Autoscaler::new(policy, setup(job.boot, job.max_capacity));
    if job.timeline {
        scaler = scaler.with_timeline();
    }
    let report = ebb_sim::run_scaled(config(job, nodes), "jsq", &mut scaler, &mut |_| {})
        .unwrap_or_else(|e| panic!("{job:?}: {e}"));
    let arrivals = scaler.timeline().iter().map(|r| r.arrivals).collect();
    Outcome { report, arrivals }
}

/// Runs every job on every core; results in job order.
fn run_all(jobs: &[Job]) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; jobs.len()]);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let o = run(job);
                    if let Ok(mut v) = out.lock() {
                        v[i] = Some(o);
                    }
                }
            });
        }
    });
    out.into_inner()
        .expect("no worker panicked while holding the lock")
        .into_iter()
        .map(|o| o.expect("every job ran"))
        .collect()
}

fn job(trace: BuiltinTrace, seed: u64, spec: &str) -> Job {
    Job {
        trace,
        seed,
        spec: spec.to_string(),
        boot: BOOT,
        max_capacity: 1,
        rate: RATE,
        seconds: TRACE_SECS,
        timeline: false,
    }
}

/// (label, colour, specs of the knob sweep)
fn families() -> Vec<(&'static str, usize, Vec<String>)> {
    vec![
        (
            "hpa (utilisation target)",
            0,
            [0.5, 0.6, 0.7, 0.8, 0.9]
                .iter()
                .map(|t| format!("hpa:util={t}"))
                .collect(),
        ),
        (
            "kpa (concurrency target)",
            1,
            [0.5, 0.7, 1.0, 1.5, 2.0]
                .iter()
                .map(|t| format!("kpa:target={t}"))
                .collect(),
        ),
        (
            "queue (miss target)",
            2,
            [0.1, 0.03, 0.01, 0.003, 0.001]
                .iter()
                .map(|m| format!("queue:miss={m}"))
                .collect(),
        ),
        (
            "fixed pool (size)",
            6,
            [6, 8, 10, 14, 20, 30]
                .iter()
                .map(|n| format!("none:{n}"))
                .collect(),
        ),
    ]
}

/// Mean node-seconds and misses over the seeds.
fn mean_point(rs: &[&Report]) -> (f64, f64) {
    let n = rs.len() as f64;
    let ns = rs.iter().map(|r| r.node_seconds).sum::<f64>() / n;
    let miss = rs
        .iter()
        .map(|r| r.slo_miss_fraction.unwrap_or(1.0))
        .sum::<f64>()
        / n;
    (ns, miss)
}

fn pct(x: f64) -> String {
    format!("{:.3}%", 100.0 * x)
}

/// The study's sections, by the name that selects one.
const SECTIONS: [&str; 5] = ["pareto", "signals", "sublinear", "hindsight", "boot"];

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let only: Vec<String> = args.collect();
    for s in &only {
        if !SECTIONS.contains(&s.as_str()) {
            eprintln!("unknown section {s:?}; accepted: {}", SECTIONS.join(", "));
            std::process::exit(2);
        }
    }
    let wanted = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    let wall = std::time::Instant::now();
    if wanted("pareto") {
        pareto(&dir);
    }
    if wanted("signals") {
        signals();
    }
    if wanted("sublinear") {
        sub_linear();
    }
    if wanted("hindsight") {
        hindsight();
    }
    if wanted("boot") {
        boot_times(&dir);
    }
    eprintln!("study done in {:.0} s wall", wall.elapsed().as_secs_f64());
}

fn pareto(dir: &str) {
    let fams = families();
    let mut jobs = Vec::new();
    for t in ALL_BUILTIN {
        for (_, _, specs) in &fams {
            for spec in specs {
                for seed in SEEDS {
                    jobs.push(job(t, seed, spec));
                }
            }
        }
    }
    let out = run_all(&jobs);
    println!("## Pareto fronts ({} runs)\n", jobs.len());
    println!("| trace | policy | knob | node-seconds | SLO misses | p99 (s) | scale actions |");
    println!("|---|---|---|---|---|---|---|");
    let mut verdicts = Vec::new();
    for t in ALL_BUILTIN {
        let mut series = Vec::new();
        let mut points: Vec<(&str, Vec<(f64, f64)>)> = Vec::new();
        for (label, color, specs) in &fams {
            let mut pts = Vec::new();
            for spec in specs {
                let rs: Vec<&Report> = jobs
                    .iter()
                    .zip(&out)
                    .filter(|(j, _)| j.trace == t && &j.spec == spec)
                    .map(|(_, o)| &o.report)
                    .collect();
                let (ns, miss) = mean_point(&rs);
                let p99 = rs.iter().map(|r| r.p99).sum::<f64>() / rs.len() as f64;
                let acts =
                    rs.iter().map(|r| r.scale_actions.unwrap_or(0)).sum::<u64>() / rs.len() as u64;
                let knob = spec.split_once(':').map_or("", |(_, k)| k);
                println!(
                    "| {t} | {} | {knob} | {ns:.0} | {} | {p99:.3} | {acts} |",
                    label.split(' ').next().unwrap_or(label),
                    pct(miss)
                );
                pts.push((ns, miss));
            }
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            series.push(Series {
                label: label.to_string(),
                points: pts.iter().map(|(x, y)| (*x, y.max(PLOT_FLOOR))).collect(),
                color: *color,
                dashed: *color == 6,
            });
            points.push((label, pts));
        }
        let panel = Panel {
            title: format!("{t}: node-seconds vs SLO misses (mean of 5 seeds)"),
            x_label: "node-seconds".into(),
            y_label: "fraction over 200 ms or dropped".into(),
            log_y: true,
            series,
        };
        let path = format!("{dir}/autoscaling-{t}.svg");
        std::fs::write(&path, svg(&[panel])).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        eprintln!("wrote {path}");
        // Does the queue front dominate each HPA and KPA point?
        let queue = &points[2].1;
        for (label, pts) in &points[..2] {
            let dominated = pts
                .iter()
                .filter(|(ns, m)| queue.iter().any(|(qn, qm)| qn <= ns && qm <= m))
                .count();
            verdicts.push(format!(
                "| {t} | {} | {dominated} of {} |",
                label.split(' ').next().unwrap_or(label),
                pts.len()
            ));
        }
    }
    println!("\n### Points dominated by the queue policy's front\n");
    println!("| trace | policy | dominated (fewer or equal node-seconds and misses) |");
    println!("|---|---|---|");
    for v in verdicts {
        println!("{v}");
    }
}

fn signals() {
    let specs = [
        ("utilisation", "hpa:util=0.7"),
        ("in flight per node", "hpa:inflight=1"),
        ("queue length per node", "hpa:queue=0.5"),
        ("p99 latency", "hpa:p99=100ms"),
        ("concurrency (KPA)", "kpa:target=0.7"),
        ("arrival rate (queue model)", "queue:miss=0.01"),
    ];
    let mut jobs = Vec::new();
    for t in ALL_BUILTIN {
        for (_, spec) in specs {
            for seed in SEEDS {
                jobs.push(job(t, seed, spec));
            }
        }
    }
    let out = run_all(&jobs);
    println!("\n## Scaling signals ({} runs)\n", jobs.len());
    print!("| signal (policy) |");
    for t in ALL_BUILTIN {
        print!(" {t} |");
    }
    println!("\n|---|---|---|---|---|---|");
    for (name, spec) in specs {
        print!("| {name} (`{spec}`) |");
        for t in ALL_BUILTIN {
            let rs: Vec<&Report> = jobs
                .iter()
                .zip(&out)
                .filter(|(j, _)| j.trace == t && j.spec == spec)
                .map(|(_, o)| &o.report)
                .collect();
            let (ns, miss) = mean_point(&rs);
            print!(" {ns:.0} / {} |", pct(miss));
        }
        println!();
    }
}

fn sub_linear() {
    println!("\n## Nodes needed against load (objective 10 service times, 1% misses)\n");
    println!(
        "| offered load (erlangs) | Erlang C (exact) | a + β√a (β for 1% waiting) | linear rule a / 0.7 | spare capacity, Erlang C | simulated queue policy, mean nodes | simulated hpa util=0.7, mean nodes |"
    );
    println!("|---|---|---|---|---|---|---|");
    let beta = halfin_whitt_beta(0.01);
    let loads = [1.0, 4.0, 16.0, 64.0, 256.0];
    let mut jobs = Vec::new();
    for a in loads {
        for spec in ["queue:miss=0.01", "hpa:util=0.7"] {
            jobs.push(Job {
                rate: a / SERVICE,
                seconds: 300,
                boot: 0.0,
                ..job(BuiltinTrace::Steady, 1, spec)
            });
        }
    }
    let out = run_all(&jobs);
    for (i, a) in loads.iter().enumerate() {
        let exact = servers_for(*a, OBJECTIVE / SERVICE, 0.01, 1 << 20);
        let q = &out[2 * i].report;
        let h = &out[2 * i + 1].report;
        println!(
            "| {a} | {exact} | {} | {} | {:.0}% | {:.1} (misses {}) | {:.1} (misses {}) |",
            sqrt_staffing(*a, beta),
            (a / 0.7).ceil(),
            100.0 * (f64::from(exact) - a) / a,
            q.mean_nodes.unwrap_or(0.0),
            pct(q.slo_miss_fraction.unwrap_or(1.0)),
            h.mean_nodes.unwrap_or(0.0),
            pct(h.slo_miss_fraction.unwrap_or(1.0)),
        );
    }
    println!("\nβ = {beta:.3}; large pools need proportionally less spare capacity.");
}

/// The cheapest pool-size schedule that keeps every second's model miss
/// rate at most `miss`, knowing the arrivals in advance: n_t ≥ need_t, each
/// node added costs `boot` node-seconds of booting first. Dynamic
/// programming over pool sizes, O(T · N).
fn optimal_schedule(arrivals: &[u64], miss: f64, boot: u32) -> Vec<u32> {
    let need: Vec<u32> = arrivals
        .iter()
        .map(|c| servers_for(*c as f64 * SERVICE, OBJECTIVE / SERVICE, miss, MAX_NODES))
        .collect();
    let n_max = MAX_NODES as usize;
    let inf = f64::INFINITY;
    let b = f64::from(boot);
    let mut cost: Vec<f64> = (0..=n_max)
        .map(|n| b * n.saturating_sub(INITIAL_NODES as usize) as f64)
        .collect();
    let mut choice: Vec<Vec<u32>> = Vec::with_capacity(need.len());
    for &k in &need {
        // best[n] = min over m of cost[m] + b · max(0, n − m).
        let mut from = vec![0u32; n_max + 1];
        let mut next = vec![inf; n_max + 1];
        let mut suffix = (inf, 0u32);
        let mut suf = vec![(inf, 0u32); n_max + 2];
        for m in (0..=n_max).rev() {
            if cost[m] < suffix.0 {
                suffix = (cost[m], m as u32);
            }
            suf[m] = suffix;
        }
        let mut prefix = (inf, 0u32);
        for n in 0..=n_max {
            if n > 0 {
                let c = cost[n - 1] - b * ((n - 1) as f64);
                if c < prefix.0 {
                    prefix = (c, (n - 1) as u32);
                }
            }
            let (down, dm) = suf[n];
            let up = prefix.0 + b * n as f64;
            let (best, m) = if down <= up {
                (down, dm)
            } else {
                (up, prefix.1)
            };
            if n as u32 >= k {
                next[n] = best + n as f64;
                from[n] = m;
            }
        }
        choice.push(from);
        cost = next;
    }
    let mut n = cost
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i as u32);
    let mut plan = vec![0u32; need.len()];
    for t in (0..need.len()).rev() {
        plan[t] = n;
        n = choice[t][n as usize];
    }
    plan
}

/// Replays a schedule: at second t the pool (ready + booting) is the
/// largest size planned for [t, t + boot], so nodes are ready when due.
struct Oracle {
    plan: Vec<u32>,
    boot: usize,
}

impl ScaleHook for Oracle {
    fn on_tick(&mut self, s: &PoolSignals, now: Instant, _rng: &mut Rng) -> ScaleAction {
        let t = now.since_epoch().as_secs_f64().round() as usize;
        let want = self
            .plan
            .get(t..(t + self.boot + 1).min(self.plan.len()))
            .and_then(|w| w.iter().max().copied())
            .unwrap_or(1)
            .max(1);
        let current = s.ready + s.booting;
        match want.cmp(&current) {
            std::cmp::Ordering::Greater => ScaleAction::Add(want - current),
            std::cmp::Ordering::Less => ScaleAction::Remove(current - want),
            std::cmp::Ordering::Equal => ScaleAction::Hold,
        }
    }
}

fn hindsight() {
    let trace = BuiltinTrace::Diurnal;
    let seed = 1;
    let base = Job {
        timeline: true,
        ..job(trace, seed, "none:8")
    };
    let arrivals = run(&base).arrivals;
    println!("\n## Hindsight-optimal schedule ({trace}, seed {seed}, boot {BOOT} s)\n");
    println!(
        "| schedule | node-seconds | SLO misses | node-seconds over the optimum at about equal misses |"
    );
    println!("|---|---|---|---|");
    let mut optimum = Vec::new();
    for miss in [0.1, 0.01, 0.001] {
        let plan = optimal_schedule(&arrivals, miss, BOOT as u32);
        let mut oracle = Oracle {
            plan,
            boot: BOOT as usize,
        };
        let cfg = config(&base, INITIAL_NODES);
        let r = ebb_sim::Sim::new(
            cfg,
            vec![ebb_policy::balance::parse("jsq").expect("jsq parses")],
        )
        .and_then(|s| s.with_scale_hook(&mut oracle).run(&mut |_| {}))
        .unwrap_or_else(|e| panic!("oracle run: {e}"));
        let m = r.slo_miss_fraction.unwrap_or(1.0);
        println!(
            "| optimal, model misses ≤ {miss} per second | {:.0} | {} | — |",
            r.node_seconds,
            pct(m)
        );
        optimum.push((r.node_seconds, m));
    }
    // The optimum's front, interpolated in log(misses).
    let at = |miss: f64| -> Option<f64> {
        let mut pts = optimum.clone();
        pts.sort_by(|a, b| b.1.total_cmp(&a.1));
        let lm = miss.max(PLOT_FLOOR).ln();
        pts.windows(2).find_map(|w| {
            let (a, b) = (w[0], w[1]);
            let (la, lb) = (a.1.max(PLOT_FLOOR).ln(), b.1.max(PLOT_FLOOR).ln());
            (lm <= la && lm >= lb && la > lb).then(|| a.0 + (b.0 - a.0) * (la - lm) / (la - lb))
        })
    };
    let specs = [
        "hpa:util=0.7",
        "hpa:util=0.5",
        "kpa:target=0.7",
        "kpa:target=0.5",
        "queue:miss=0.01",
        "queue:miss=0.001",
    ];
    let jobs: Vec<Job> = specs.iter().map(|s| job(trace, seed, s)).collect();
    let out = run_all(&jobs);
    for (spec, o) in specs.iter().zip(&out) {
        let r = &o.report;
        let m = r.slo_miss_fraction.unwrap_or(1.0);
        let gap = at(m).map_or("outside the optimum's range".into(), |opt| {
            format!("{:+.0}%", 100.0 * (r.node_seconds - opt) / opt)
        });
        println!("| {spec} | {:.0} | {} | {gap} |", r.node_seconds, pct(m));
    }
}

/// Start → serving of each node kind, medians measured on this machine
/// (`docs/autoscaling.md`, "What faster boot buys", has the commands and
/// every run), and a 30 s boot for comparison (a container image pulled at
/// start).
const BOOTS: [(&str, f64); 6] = [
    ("thread", THREAD_BOOT),
    ("process", PROCESS_BOOT),
    ("container", CONTAINER_BOOT),
    ("vm restored", VM_RESTORED_BOOT),
    ("vm cold", VM_COLD_BOOT),
    ("30 s (pulled image)", 30.0),
];
const THREAD_BOOT: f64 = 0.00014;
const PROCESS_BOOT: f64 = 0.0067;
const CONTAINER_BOOT: f64 = 0.014;
const VM_RESTORED_BOOT: f64 = 0.545;
const VM_COLD_BOOT: f64 = 9.99;

fn boot_times(dir: &str) {
    let specs = ["hpa:util=0.7", "kpa:target=0.7", "queue:miss=0.01"];
    // (column label, spec, largest capacity per node, colour)
    let columns = [
        ("hpa util=0.7", specs[0], 1, 0),
        ("kpa 0.7", specs[1], 1, 1),
        ("queue miss=0.01", specs[2], 1, 2),
        ("queue, scale up to 4× first", specs[2], 4, 3),
    ];
    let mut jobs = Vec::new();
    for t in ALL_BUILTIN {
        for (_, b) in BOOTS {
            for (_, spec, cap, _) in columns {
                for seed in SEEDS {
                    jobs.push(Job {
                        boot: b,
                        max_capacity: cap,
                        ..job(t, seed, spec)
                    });
                }
            }
        }
    }
    let out = run_all(&jobs);
    println!(
        "\n## Boot time ({} runs; node-seconds / SLO misses, mean of 5 seeds)\n",
        jobs.len()
    );
    for t in ALL_BUILTIN {
        println!("\n{t}:\n");
        println!(
            "| node kind (boot) | hpa util=0.7 | kpa 0.7 | queue miss=0.01 | queue, scale up to 4× first (cost-seconds) |"
        );
        println!("|---|---|---|---|---|");
        let mut cost_series = Vec::new();
        let mut miss_series = Vec::new();
        let mut rows: Vec<String> = BOOTS
            .iter()
            .map(|(name, b)| format!("| {name} ({b} s) |"))
            .collect();
        for (label, spec, cap, color) in columns {
            let mut costs = Vec::new();
            let mut misses = Vec::new();
            for ((_, b), row) in BOOTS.iter().zip(rows.iter_mut()) {
                let rs: Vec<&Report> = jobs
                    .iter()
                    .zip(&out)
                    .filter(|(j, _)| {
                        j.trace == t && j.spec == spec && j.boot == *b && j.max_capacity == cap
                    })
                    .map(|(_, o)| &o.report)
                    .collect();
                let (ns, miss) = mean_point(&rs);
                // With scale-up a node may cost several node prices: its
                // cost in node-seconds at the base price.
                let cost = if cap > 1 {
                    rs.iter().map(|r| r.cost_micros).sum::<f64>()
                        / rs.len() as f64
                        / COST_PER_NODE_SEC as f64
                } else {
                    ns
                };
                row.push_str(&format!(" {cost:.0} / {} |", pct(miss)));
                // x: log10 of the boot time in milliseconds.
                let x = (b * 1_000.0).log10();
                costs.push((x, cost));
                misses.push((x, miss.max(PLOT_FLOOR)));
            }
            cost_series.push(Series {
                label: label.to_string(),
                points: costs,
                color,
                dashed: cap > 1,
            });
            miss_series.push(Series {
                label: label.to_string(),
                points: misses,
                color,
                dashed: cap > 1,
            });
        }
        for row in rows {
            println!("{row}");
        }
        let x_label = "boot time, log10 ms (0 = 1 ms, 3 = 1 s)".to_string();
        let panels = [
            Panel {
                title: format!("{t}: SLO misses by boot time"),
                x_label: x_label.clone(),
                y_label: "fraction over 200 ms or dropped".into(),
                log_y: true,
                series: miss_series,
            },
            Panel {
                title: format!("{t}: cost by boot time"),
                x_label,
                y_label: "node-seconds (cost-seconds with scale-up)".into(),
                log_y: false,
                series: cost_series,
            },
        ];
        let path = format!("{dir}/autoscaling-boot-{t}.svg");
        std::fs::write(&path, svg(&panels)).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        eprintln!("wrote {path}");
    }
}
