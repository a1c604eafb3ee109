//! `ebb chaos`: a fault-injecting TCP proxy for tests and demos.

use anyhow::Context;
use ebb_chaos::{ChaosConfig, Proxy};
use ebb_core::Nanos;

/// Forward TCP from --listen to --upstream, injecting faults.
///
/// Faults are decided per chunk (one read of up to 16 KiB from either side)
/// with a generator seeded by --seed; each connection draws from its own
/// stream, forked in accept order. At most 256 connections are proxied at
/// once; more are closed on accept. Prints the bound address on stdout.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Faults are decided per chunk (one read of up to 16 KiB from either side)\nwith a generator seeded by --seed; each connection draws from its own\nstream, forked in accept order. At most 256 connections are proxied at once.\nExample, in front of a node on port 7000:\n  ebb chaos --listen 127.0.0.1:7001 --upstream 127.0.0.1:7000 --reset 0.05 --drop 0.01 --seed 7"
)]
pub struct Args {
    /// Address to listen on, e.g. 127.0.0.1:7001 (port 0 picks a free port).
    #[arg(long, value_parser = super::addr::listen)]
    pub listen: String,
    /// Address to forward to, e.g. 127.0.0.1:7000; resolved per connection.
    #[arg(long, value_parser = super::addr::connect)]
    pub upstream: String,
    /// Probability per chunk that the connection becomes a black hole: that
    /// chunk and all later ones, both ways, are silently discarded while the
    /// sockets stay open, as in a partition. (Dropping one chunk of a framed
    /// stream would only garble it; a black hole is what failure detection
    /// by heartbeats must catch.)
    #[arg(long, default_value_t = 0.0)]
    pub drop: f64,
    /// Hold every chunk this many milliseconds before forwarding it (order
    /// within a direction is kept).
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Probability per chunk that the proxy resets the connection: both
    /// sides get a TCP RST (SO_LINGER 0) and the chunk is not forwarded.
    #[arg(long, default_value_t = 0.0)]
    pub reset: f64,
    /// Seed for the fault decisions; the same seed and the same traffic
    /// give the same faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = ChaosConfig {
        drop_p: args.drop,
        delay: Nanos::from_millis(args.delay_ms),
        reset_p: args.reset,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        // A busy port names the flag to change, as `ebb node` does.
        let proxy = Proxy::bind(&args.listen, &args.upstream, cfg, args.seed)
            .await
            .map_err(|e| match e {
                ebb_chaos::ChaosError::Bind { addr, source } => {
                    anyhow::anyhow!("--listen {addr}: cannot listen there: {source}")
                }
                other => other.into(),
            })?;
        let addr = proxy.local_addr().context("reading the bound address")?;
        super::announce(&format!("chaos listening on {addr}"));
        let stats = proxy.stats();
        tokio::select! {
            ran = proxy.run() => ran?,
            () = report_upstream_failures(stats, &args.upstream) => {}
        }
        Ok(())
    })
}

/// How often the count of clients closed for an unreachable upstream is
/// checked (and, when it grew, reported).
const UPSTREAM_REPORT_PERIOD_MS: u64 = 1_000;

/// Says on stderr, at most once a period, that clients are being closed
/// because the upstream cannot be reached: to a client the proxy then looks
/// like a server that hangs up, with nothing to say why.
async fn report_upstream_failures(stats: std::sync::Arc<ebb_chaos::ChaosStats>, upstream: &str) {
    use std::sync::atomic::Ordering;
    let mut reported = 0;
    let mut tick =
        tokio::time::interval(std::time::Duration::from_millis(UPSTREAM_REPORT_PERIOD_MS));
    loop {
        tick.tick().await;
        let failed = stats.upstream_failures.load(Ordering::Relaxed);
        if failed > reported {
            eprintln!(
                "ebb chaos: cannot connect to the upstream {upstream}: {} client connection(s) \
                 closed so far (is a node listening there?)",
                failed
            );
            reported = failed;
        }
    }
}
