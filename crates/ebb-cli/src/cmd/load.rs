//! `ebb load`: open-loop load against a node or a gateway, over ebb RPC or
//! HTTP/JSON. The logic lives in `ebb-load`; this is flags and display.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use ebb_core::Nanos;
use ebb_load::{
    ArrivalSpec, Connect, DEFAULT_MAX_OUTSTANDING, HttpTarget, LoadConfig, MAX_RATE_PER_SEC,
    MAX_THREADS, Progress, RpcTarget, RunInfo, Target,
};
use ebb_sim::trace::{Trace, TraceFormat};

/// Send requests at a fixed average rate (Poisson arrivals) or following a
/// trace, whether or not earlier ones have been answered, and report what
/// happened to them.
///
/// Latency is measured from each request's scheduled send time, so a server
/// (or client) stall shows up in the percentiles instead of silently slowing
/// the sending down. Percentiles are of successful calls; failures are
/// counted by class.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  ebb load --target 127.0.0.1:7000 --rate 2000 --duration 10 --method Demo.work --args '{\"micros\":100}'
  ebb load --target 127.0.0.1:8000 --http --rate 500 --duration 5 --method Demo.echo --args '{\"msg\":\"hi\"}' --json
  ebb load --target 127.0.0.1:7000 --trace counts.txt --duration 60 --method Demo.sleep --args '{\"millis\":5}'
  ebb load --target 127.0.0.1:7000 --rate 150000 --threads 2 --connections 8 --duration 5 --json

Arrivals come from --rate or from --trace (one of them).

--threads N splits the schedule over N sender threads, each with its own
runtime and its share of the connections; together they send the requested
arrival process. One thread is the cheapest per call; raise --threads when
one thread cannot keep up with --rate and the machine has idle cores.

The report's send lag (send_lag_p50_ms, send_lag_p99_ms, send_lag_max_ms) is
how late the generator itself sent, from each request's scheduled time. The
latencies run from that scheduled time too, so they include the lag. When
the lag's p99 passes 1 ms the report says so (generator_behind in --json):
if the lag stays at a lower --rate, the generator is waiting for a CPU on a
busy machine (more threads will not help; free or pin a core); if it grows
with --rate, one thread is saturated: raise --threads or lower --rate.

A trace file holds one number per line: per-second arrival counts, or arrival
timestamps in seconds (`#` comments allowed). With --json, one JSON object:
sent, ok, overloaded, deadline_exceeded, outcome_unknown, other_errors,
not_sent, achieved_rate, offered_rate (the arrivals drawn: a Poisson count
around requested_rate, not a shortfall), requested_rate, p50_ms, p90_ms,
p99_ms, p999_ms, max_ms, mean_ms, errors (by kind), send_lag_p50_ms,
send_lag_p99_ms, send_lag_max_ms, generator_behind, threads, connections
(opened at the start, over all threads), reconnects (connections opened
again after one closed or broke), retry_after_named, retry_after_p50_ms and
retry_after_max_ms (see below), and more.

An overloaded answer may name how long to wait before a retry (ebb's
retry_after_ms, an HTTP Retry-After in seconds, an ebb RPC refusal's wait).
The report counts the answers that named one and gives the median and the
longest wait asked. The generator does not wait: it is open-loop, and a
schedule that slowed down when the target asked would offer less than
--rate and hide the very overload it measures.")]
#[command(group(clap::ArgGroup::new("arrivals").args(["rate", "trace"]).required(true)))]
pub struct Args {
    /// Address of a node or gateway: its RPC address, or with --http its HTTP address.
    #[arg(long, value_parser = super::addr::connect)]
    pub target: String,
    /// Speak HTTP/JSON (POST /rpc/SERVICE/METHOD) instead of ebb RPC.
    #[arg(long)]
    pub http: bool,
    /// Mean arrival rate, requests per second (Poisson arrivals).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Arrivals from a trace file (per-second counts or timestamps in seconds).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// How long to send, in seconds (a trace stops earlier if it ends).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// SERVICE.METHOD to call, e.g. Demo.work.
    #[arg(long, default_value = "Demo.echo")]
    pub method: String,
    /// Arguments as a JSON object keyed by parameter name.
    #[arg(long, default_value = "{\"msg\":\"hi\"}")]
    pub args: String,
    /// Each request's deadline in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub deadline_ms: u64,
    /// Connections to open in all, split over the threads, at least one
    /// each (RPC calls are multiplexed on each; an HTTP/1.1 connection
    /// carries one request at a time).
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Requests sent and not yet ended; arrivals past it are not sent and
    /// are counted as `not_sent`.
    #[arg(long, default_value_t = DEFAULT_MAX_OUTSTANDING)]
    pub max_outstanding: usize,
    /// Seed of the arrival schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Sender threads, each running its share of the schedule and its
    /// requests on its own connections. One sends up to some tens of
    /// thousands of calls per second on a quiet core and is the cheapest
    /// per call; raise it (up to 64) when the send lag grows with --rate and
    /// there are idle cores (see below).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Print one JSON object instead of the table (no progress bar).
    #[arg(long)]
    pub json: bool,
}

/// The most connections accepted.
const MAX_CONNECTIONS: usize = 4096;
/// The longest run accepted, in seconds (a day).
const MAX_DURATION_S: f64 = 86_400.0;

pub fn run(args: Args) -> anyhow::Result<()> {
    let (service, method) = args.method.split_once('.').with_context(|| {
        format!(
            "--method {:?} must be SERVICE.METHOD, e.g. Demo.work",
            args.method
        )
    })?;
    let json: serde_json::Value = serde_json::from_str(&args.args).with_context(|| {
        format!(
            "--args {:?} is not valid JSON; pass an object keyed by parameter name, e.g. '{{\"micros\":100}}'",
            args.args
        )
    })?;
    if !json.is_object() {
        bail!(
            "--args {:?} must be a JSON object keyed by parameter name, e.g. '{{\"micros\":100}}'",
            args.args
        );
    }
    if !(args.duration > 0.0 && args.duration <= MAX_DURATION_S) {
        bail!(
            "--duration {}: give seconds, more than 0 and at most {MAX_DURATION_S}",
            args.duration
        );
    }
    if args.deadline_ms == 0 || args.deadline_ms > ebb_http::MAX_DEADLINE_MS {
        bail!(
            "--deadline-ms {}: give 1 to {} ms",
            args.deadline_ms,
            ebb_http::MAX_DEADLINE_MS
        );
    }
    if args.connections == 0 || args.connections > MAX_CONNECTIONS {
        bail!(
            "--connections {}: give 1 to {MAX_CONNECTIONS}",
            args.connections
        );
    }
    if args.threads == 0 || args.threads > MAX_THREADS {
        bail!("--threads {}: give 1 to {MAX_THREADS}", args.threads);
    }
    if args.max_outstanding == 0 {
        bail!("--max-outstanding 0: give at least 1");
    }
    let arrivals = match (&args.rate, &args.trace) {
        (Some(rate), _) => {
            if !(*rate > 0.0 && *rate <= MAX_RATE_PER_SEC) {
                bail!(
                    "--rate {rate}: give requests per second, more than 0 and at most {MAX_RATE_PER_SEC}"
                );
            }
            ArrivalSpec::Poisson {
                rate_per_sec: *rate,
            }
        }
        (None, Some(path)) => ArrivalSpec::Trace(Trace::load(path, TraceFormat::Auto)?),
        (None, None) => bail!("give --rate R (requests per second) or --trace FILE"),
    };
    let config = LoadConfig {
        arrivals,
        duration: Nanos::from_secs_f64(args.duration),
        deadline: Nanos::from_millis(args.deadline_ms),
        seed: args.seed,
        max_outstanding: args.max_outstanding,
        threads: args.threads,
        // Each thread opens its own.
        connections: args.connections.max(args.threads),
    };
    let connect = connector(&args, service, method, json);
    let stopped = std::sync::atomic::AtomicBool::new(false);
    // This thread only waits, shows progress and hears Ctrl-C; the
    // requests run on the sender threads, each on a runtime of its own.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = rt.block_on(async {
        let info = RunInfo {
            target: args.target.clone(),
            protocol: if args.http { "http" } else { "rpc" },
            method: args.method.clone(),
            seed: args.seed,
            duration_s: args.duration,
            requested_rate: config.arrivals.requested_rate(),
        };
        let progress = Arc::new(Progress::default());
        let bar = (!args.json).then(|| progress_bar(Arc::clone(&progress), args.duration));
        // Installed now, before anything is sent, so a Ctrl-C from here on
        // ends the run with its report; before, it exits as usual.
        let sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("installing the Ctrl-C handler")?;
        let stop = interrupted(sigint, &stopped);
        let report = ebb_load::run_until(connect, &config, info, progress, stop).await;
        if let Some(bar) = bar {
            bar.abort();
        }
        anyhow::Ok(report?)
    })?;
    if args.json {
        super::print_out(&format!("{}\n", serde_json::to_string(&report)?))?;
    } else {
        eprintln!();
        super::print_out(&report.table())?;
    }
    if stopped.load(Ordering::Relaxed) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        eprintln!(
            "interrupted after {:.1} s of {} s: the report covers what was sent",
            report.duration_s, args.duration
        );
        std::process::exit(super::INTERRUPTED_EXIT);
    }
    Ok(())
}

/// How each sender thread connects: over HTTP, or over RPC typed for a
/// service this build knows and through the target's description of
/// itself for any other.
fn connector(args: &Args, service: &str, method: &str, json: serde_json::Value) -> Connect {
    let (addr, http) = (args.target.clone(), args.http);
    let (service, method) = (service.to_owned(), method.to_owned());
    let deadline = Nanos::from_millis(args.deadline_ms);
    Arc::new(move |connections| {
        let (addr, service, method, json) =
            (addr.clone(), service.clone(), method.clone(), json.clone());
        Box::pin(async move {
            let target: Arc<dyn Target> = if http {
                Arc::new(
                    HttpTarget::connect(&addr, connections, &service, &method, &json, deadline)
                        .await?,
                )
            } else {
                match ebb_demo::service_codec(&service) {
                    Some(codec) => Arc::new(
                        RpcTarget::connect(&addr, connections, codec, &method, json, deadline)
                            .await?,
                    ),
                    None => Arc::new(
                        RpcTarget::connect_described(
                            &addr,
                            connections,
                            &service,
                            &method,
                            json,
                            deadline,
                        )
                        .await?,
                    ),
                }
            };
            Ok(target)
        })
    })
}

/// Resolves on the first Ctrl-C (and sets `stopped`): sending stops, the
/// requests in flight end or reach their deadline, and the report still
/// prints. A second Ctrl-C exits at once.
async fn interrupted(
    mut sigint: tokio::signal::unix::Signal,
    stopped: &std::sync::atomic::AtomicBool,
) {
    if sigint.recv().await.is_none() {
        return std::future::pending().await;
    }
    stopped.store(true, Ordering::Relaxed);
    eprintln!(
        "\ninterrupted: sending stopped; waiting for the requests in flight (Ctrl-C again quits at once)"
    );
    tokio::spawn(async move {
        if sigint.recv().await.is_some() {
            std::process::exit(super::INTERRUPTED_EXIT);
        }
    });
}

/// A progress bar over the send window, refreshed from the run's counters.
fn progress_bar(progress: Arc<Progress>, duration_s: f64) -> tokio::task::JoinHandle<()> {
    let millis = (duration_s * 1_000.0) as u64;
    let bar = indicatif::ProgressBar::new(millis);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {elapsed}/{duration} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    tokio::spawn(async move {
        loop {
            let p = &progress;
            bar.set_position((started.elapsed().as_millis() as u64).min(millis));
            bar.set_message(format!(
                "sent {} ok {} failed {} outstanding {} not sent {}",
                p.sent.load(Ordering::Relaxed),
                p.ok.load(Ordering::Relaxed),
                p.failed.load(Ordering::Relaxed),
                p.outstanding.load(Ordering::Relaxed),
                p.not_sent.load(Ordering::Relaxed),
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
