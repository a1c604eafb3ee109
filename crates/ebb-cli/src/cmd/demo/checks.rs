//! `ebb demo`'s input checked before anything starts: each refusal names
//! the flag and what would be accepted, and costs the user no minute of a
//! run that was bound to fail.

use anyhow::{Context, bail};
use ebb_replay::trace::{self, BUILTIN_TRACES, Shape, Trace};

use super::Args;
use super::providers::check_privileges;

/// Every check of `args`, in the order a user would fix them, and the
/// trace they describe.
pub(super) fn check(args: &Args) -> anyhow::Result<Trace> {
    if let (Some(ms), false) = (args.boot_timeout_ms, args.kind == "vm") {
        bail!(
            "--boot-timeout-ms {ms} is for --kind vm only: {} nodes have no boot to wait for",
            args.kind
        );
    }
    if args.min_nodes == 0 || args.min_nodes > args.max_nodes {
        bail!(
            "--min-nodes {} and --max-nodes {}: need 1 <= min <= max",
            args.min_nodes,
            args.max_nodes
        );
    }
    check_rates(&args.trace, args.base_rate, args.peak_rate)?;
    // First: without root a sandboxed kind cannot run wherever the report
    // would go.
    check_privileges(&args.kind)?;
    // Checked before the run, not after a minute of it.
    std::fs::create_dir_all(&args.out)
        .and_then(|()| tempfile::tempfile_in(&args.out))
        .with_context(|| {
            format!(
                "--out {}: cannot write a report there; give a directory that can be created and written",
                args.out.display()
            )
        })?;
    let shape = Shape {
        seconds: args.seconds,
        base_rate: args.base_rate,
        peak_rate: args.peak_rate,
    };
    if !BUILTIN_TRACES.contains(&args.trace.as_str()) && !std::path::Path::new(&args.trace).exists()
    {
        bail!(
            "--trace `{}`: no built-in trace has that name ({}) and no such file exists; give one of them, or a file of per-second counts (one number per line)",
            args.trace,
            BUILTIN_TRACES.join(", ")
        );
    }
    // Each of resolve's errors names the trace (and the file's line).
    let trace = trace::resolve(&args.trace, &shape, args.seed)
        .context("--trace")?
        .truncated(args.seconds as usize);
    if args.gets + args.puts > 1_000 {
        bail!(
            "--gets {} and --puts {}: together at most 1000 per thousand arrivals",
            args.gets,
            args.puts
        );
    }
    Ok(trace)
}

/// The built-in traces shaped by `--peak-rate` (`steady` keeps to the base rate).
const PEAKED_TRACES: [&str; 2] = ["bursty", "step"];

/// Refuses rates a built-in trace cannot be drawn from, and a peak below
/// the base: the burst would be a lull, which no one asking for a burst
/// means.
fn check_rates(trace: &str, base: f64, peak: f64) -> anyhow::Result<()> {
    for (flag, v) in [("--base-rate", base), ("--peak-rate", peak)] {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{flag} {v}: give calls per second, a number of 0 or more");
        }
    }
    if PEAKED_TRACES.contains(&trace) && peak < base {
        bail!(
            "--peak-rate {peak} is below --base-rate {base}: the `{trace}` trace rises from \
             the base rate to the peak, so give --peak-rate of at least {base} (or lower \
             --base-rate)"
        );
    }
    Ok(())
}
