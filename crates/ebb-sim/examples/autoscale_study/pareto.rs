//! Pareto fronts: each policy's main knob swept on every trace, node-
//! seconds against SLO misses, and how many HPA and KPA points the queue
//! policy's front dominates.

use ebb_sim::builtin::ALL_BUILTIN;
use ebb_sim::plot::{Panel, Series, svg};

use crate::runs::{job, mean_point, pct, reports_where, run_all};
use crate::{PLOT_FLOOR, SEEDS};

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

pub(crate) fn pareto(dir: &str) {
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
                let rs = reports_where(&jobs, &out, |j| j.trace == t && &j.spec == spec);
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
