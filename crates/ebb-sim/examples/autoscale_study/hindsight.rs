//! The hindsight-optimal schedule for one trace, knowing its arrivals in
//! advance, and how far each policy's node-seconds are from it at about
//! equal misses.

use ebb_core::{Instant, Rng};
use ebb_policy::scale::erlang::servers_for;
use ebb_sim::builtin::BuiltinTrace;
use ebb_sim::{PoolSignals, ScaleAction, ScaleHook};

use crate::runs::{Job, config, job, pct, run, run_all};
use crate::{BOOT, INITIAL_NODES, MAX_NODES, OBJECTIVE, PLOT_FLOOR, SERVICE};

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

pub(crate) fn hindsight() {
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
