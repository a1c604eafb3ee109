//! What faster boot buys: the policies on every trace with each node
//! kind's measured boot time.

use ebb_sim::builtin::ALL_BUILTIN;
use ebb_sim::plot::{Panel, Series, svg};

use crate::runs::{Job, job, mean_point, pct, reports_where, run_all};
use crate::{COST_PER_NODE_SEC, PLOT_FLOOR, SEEDS};

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

pub(crate) fn boot_times(dir: &str) {
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
                let rs = reports_where(&jobs, &out, |j| {
                    j.trace == t && j.spec == spec && j.boot == *b && j.max_capacity == cap
                });
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
