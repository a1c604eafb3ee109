//! `ebb sim lease`: the origin's consistency load and the delay leases add,
//! simulated and from Gray and Cheriton's model, for one scenario or a grid
//! of terms × sharers (a table, JSON, or an SVG of the curves).

use anyhow::{Context, bail};
use ebb_core::Nanos;
use ebb_policy::lease::LeaseTerm;
use ebb_sim::lease::load::{
    DEFAULT_READS, LoadParams, LoadReport, ModelPoint, V_EPSILON_MS, V_PROC_MS, V_PROP_MS,
    V_READ_RATE, V_WRITE_RATE, model, simulate,
};
use ebb_sim::plot::{Panel, Series, svg};

/// Simulate lease-based caching of one shared file and compare with Gray and
/// Cheriton's analytic model (SOSP 1989).
///
/// Defaults are the paper's V-system measurements. Relative load is the
/// origin's consistency messages divided by those at term 0 (where every
/// read checks with the origin); added delay is the mean delay per
/// operation minus that at term 0 (negative: leases save time).
#[derive(clap::Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Lease term in seconds, or `inf` for callbacks; a comma-separated list
    /// gives a table. 0 is check-on-use.
    #[arg(long, default_value = "10", value_parser = parse_terms)]
    term_s: TermList,
    /// Caches sharing the file; a comma-separated list gives a table.
    #[arg(long, default_value = "1", value_delimiter = ',')]
    sharers: Vec<u32>,
    /// Reads per second per sharer.
    #[arg(long, default_value_t = V_READ_RATE)]
    read_rate: f64,
    /// Writes per second per sharer.
    #[arg(long, default_value_t = V_WRITE_RATE)]
    write_rate: f64,
    /// One-way propagation time of a message, in milliseconds (m_prop).
    #[arg(long, default_value_t = V_PROP_MS)]
    msg_ms: f64,
    /// Processing time of a message at either end, in milliseconds (m_proc).
    #[arg(long, default_value_t = V_PROC_MS)]
    proc_ms: f64,
    /// Clock drift allowance ε, in milliseconds.
    #[arg(long, default_value_t = V_EPSILON_MS)]
    epsilon_ms: f64,
    /// Reads to simulate per point.
    #[arg(long, default_value_t = DEFAULT_READS)]
    reads: u64,
    /// Seed: the same seed and flags give the same numbers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON instead of a table (one object for one point, else
    /// {"runs": [...]}).
    #[arg(long)]
    json: bool,
    /// Write an SVG of relative load against term, one line per sharer
    /// count, the model dashed.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
}

const AFTER_HELP: &str = "Examples:
  ebb sim lease --term-s 10 --sharers 10 --json
  ebb sim lease --term-s 0,1,5,10,30,inf --sharers 1,10,20,40
  ebb sim lease --term-s 0,0.5,1,2,5,10,15,20,30 --sharers 1,10,20,40 --plot leases.svg";

#[derive(Clone, Debug)]
struct TermList(Vec<LeaseTerm>);

fn parse_terms(list: &str) -> Result<TermList, String> {
    let mut out = Vec::new();
    for t in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if t == "inf" {
            out.push(LeaseTerm::CALLBACK);
            continue;
        }
        let secs: f64 = t
            .parse()
            .map_err(|_| format!("`{t}`: expected seconds (e.g. 10 or 0.5) or `inf`"))?;
        if !(0.0..=1e6).contains(&secs) {
            return Err(format!(
                "`{t}`: a term is between 0 and 1000000 seconds, or `inf`"
            ));
        }
        out.push(LeaseTerm::new(Nanos::from_secs_f64(secs)));
    }
    if out.is_empty() {
        return Err("empty; give a term in seconds such as 10".into());
    }
    Ok(TermList(out))
}

fn ms(v: f64, name: &str) -> anyhow::Result<Nanos> {
    if !(0.0..=60_000.0).contains(&v) {
        bail!("--{name} {v}: expected milliseconds between 0 and 60000");
    }
    Ok(Nanos::from_secs_f64(v / 1e3))
}

fn term_secs(t: LeaseTerm) -> Option<f64> {
    (!t.is_callback()).then(|| t.span().as_secs_f64())
}

fn row_json(p: &LoadParams, sim: &LoadReport, m: &ModelPoint) -> serde_json::Value {
    serde_json::json!({
        "term_s": term_secs(p.term),
        "sharers": p.sharers,
        "relative_load": sim.relative_load,
        "added_delay_ms": sim.added_delay_ms,
        "model_relative_load": m.relative_load,
        "model_added_delay_ms": m.added_delay_ms,
        "t_c_s": m.t_c_secs.is_finite().then_some(m.t_c_secs),
        "hit_fraction": sim.hit_fraction,
        "mean_holders_at_write": sim.mean_holders_at_write,
        "origin_msgs_per_s": sim.origin_msgs_per_s,
        "origin_msgs_per_s_term0": sim.origin_msgs_per_s_term0,
        "reads": sim.reads,
        "writes": sim.writes,
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    for (name, v) in [
        ("read-rate", args.read_rate),
        ("write-rate", args.write_rate),
    ] {
        let ok = (v > 0.0 && v <= 1e6) || (name == "write-rate" && v == 0.0);
        if !ok {
            bail!(
                "--{name} {v}: expected operations per second per sharer, above 0 (writes may be 0) and at most 1000000"
            );
        }
    }
    if args.sharers.iter().any(|s| *s == 0 || *s > 10_000) {
        bail!("--sharers: each count is between 1 and 10000");
    }
    if args.reads == 0 || args.reads > 100_000_000 {
        bail!("--reads {}: expected between 1 and 100000000", args.reads);
    }
    let prop = ms(args.msg_ms, "msg-ms")?;
    let proc = ms(args.proc_ms, "proc-ms")?;
    let epsilon = ms(args.epsilon_ms, "epsilon-ms")?;
    let mut rows = Vec::new();
    for &sharers in &args.sharers {
        for &term in &args.term_s.0 {
            let p = LoadParams {
                term,
                sharers,
                read_rate: args.read_rate,
                write_rate: args.write_rate,
                prop,
                proc,
                epsilon,
                reads: args.reads,
                seed: args.seed,
            };
            let sim = simulate(&p);
            let m = model(&p);
            rows.push((p, sim, m));
        }
    }
    if let Some(path) = &args.plot {
        write_plot(path, &rows)?;
    }
    if args.json {
        let out = if rows.len() == 1 {
            let (p, s, m) = &rows[0];
            row_json(p, s, m)
        } else {
            let runs: Vec<_> = rows.iter().map(|(p, s, m)| row_json(p, s, m)).collect();
            serde_json::json!({ "runs": runs })
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{:>8} {:>7} {:>10} {:>10} {:>12} {:>12} {:>6}",
        "term_s", "sharers", "rel_load", "model", "delay_ms", "model_ms", "hits"
    );
    for (p, s, m) in &rows {
        let term = term_secs(p.term).map_or("inf".to_string(), |t| format!("{t}"));
        println!(
            "{term:>8} {:>7} {:>10.4} {:>10.4} {:>12.3} {:>12.3} {:>6.3}",
            p.sharers,
            s.relative_load,
            m.relative_load,
            s.added_delay_ms,
            m.added_delay_ms,
            s.hit_fraction
        );
    }
    Ok(())
}

fn write_plot(
    path: &std::path::Path,
    rows: &[(LoadParams, LoadReport, ModelPoint)],
) -> anyhow::Result<()> {
    let mut sharers: Vec<u32> = rows.iter().map(|(p, _, _)| p.sharers).collect();
    sharers.dedup();
    let mut series = Vec::new();
    for (i, s) in sharers.iter().enumerate() {
        let pts = |f: &dyn Fn(&LoadReport, &ModelPoint) -> f64| -> Vec<(f64, f64)> {
            rows.iter()
                .filter(|(p, _, _)| p.sharers == *s)
                .filter_map(|(p, r, m)| term_secs(p.term).map(|t| (t, f(r, m))))
                .collect()
        };
        series.push(Series {
            label: format!("S={s} simulated"),
            points: pts(&|r, _| r.relative_load),
            color: i,
            dashed: false,
        });
        series.push(Series {
            label: format!("S={s} model"),
            points: pts(&|_, m| m.relative_load),
            color: i,
            dashed: true,
        });
    }
    let panel = Panel {
        title: "Origin load relative to term 0 (V-system)".into(),
        x_label: "lease term (s)".into(),
        y_label: "relative consistency load".into(),
        log_y: false,
        series,
    };
    std::fs::write(path, svg(&[panel]))
        .with_context(|| format!("writing the plot to {}", path.display()))?;
    Ok(())
}
