//! The scaling signals compared on every trace, and nodes needed against
//! load: Erlang C, square-root staffing and a linear rule beside what the
//! simulated policies ran.

use ebb_policy::scale::erlang::{halfin_whitt_beta, servers_for, sqrt_staffing};
use ebb_sim::builtin::{ALL_BUILTIN, BuiltinTrace};

use crate::runs::{Job, job, mean_point, pct, reports_where, run_all};
use crate::{OBJECTIVE, SEEDS, SERVICE};

pub(crate) fn signals() {
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
            let rs = reports_where(&jobs, &out, |j| j.trace == t && j.spec == spec);
            let (ns, miss) = mean_point(&rs);
            print!(" {ns:.0} / {} |", pct(miss));
        }
        println!();
    }
}

pub(crate) fn sub_linear() {
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
