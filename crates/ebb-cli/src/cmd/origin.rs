//! `ebb origin`: the origin store served over ebb RPC.

use anyhow::{Context, bail};
use ebb::rpc::semantics::ServerConfig;
use ebb::rpc::transport::Server;
use ebb_core::Nanos;
use ebb_lease::api::OriginServer;
use ebb_lease::origin::{OriginService, OriginSettings};
use ebb_policy::lease::LeaseTerm;

/// Serve the origin store: a durable key-value store with per-key versions,
/// whose reads carry leases that nodes cache under.
///
/// A put is acknowledged only once it is on disk. Prints `origin listening
/// on ADDR` once it accepts connections.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Prints `origin listening on ADDR` once it accepts connections. Data lives in\nDIR/origin.redb; a damaged file is reported and the origin does not start.\nAfter a restart, writes wait out the longest lease term granted before (plus\nepsilon), so no cached copy elsewhere can go stale. Example:\n  ebb origin --listen 127.0.0.1:7100 --data /var/lib/ebb-origin --max-term-ms 10000"
)]
pub struct Args {
    /// Address to listen on, e.g. 127.0.0.1:7100 (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7100", value_parser = super::addr::listen)]
    pub listen: String,
    /// Directory holding the data file (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data: std::path::PathBuf,
    /// Longest lease term granted, in milliseconds, or `inf` for callbacks;
    /// 0 is check-on-use (no leases).
    #[arg(long, default_value = DEFAULT_MAX_TERM_MS, value_parser = parse_term)]
    pub max_term_ms: LeaseTerm,
    /// Clock drift allowance between origin and nodes over one term, in
    /// milliseconds.
    #[arg(long, default_value_t = ebb_lease::origin::DEFAULT_EPSILON_MS)]
    pub epsilon_ms: u64,
    /// With callbacks: a node silent this long (no poll) is declared dead,
    /// and a restarted origin accepts writes this long after starting.
    #[arg(long, default_value_t = ebb_lease::origin::DEFAULT_HOLDER_TIMEOUT_MS)]
    pub holder_timeout_ms: u64,
    /// Puts that may share one durable commit (one fsync), each
    /// acknowledged once that commit is on disk; 1 commits every put alone.
    #[arg(long, default_value_t = ebb_lease::origin::DEFAULT_MAX_BATCH_WRITES, value_parser = parse_batch)]
    pub max_batch_writes: usize,
}

/// The longest term granted by default, in milliseconds, as clap takes a
/// default: `ebb_lease::origin::DEFAULT_TERM_MS` (a test keeps them equal).
const DEFAULT_MAX_TERM_MS: &str = "10000";

/// The most puts one commit may carry.
const MAX_BATCH_WRITES_ACCEPTED: usize = ebb_lease::commit::MAX_QUEUED_WRITES;

fn parse_batch(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_BATCH_WRITES_ACCEPTED).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}`: expected a count from 1 (no group commit) to {MAX_BATCH_WRITES_ACCEPTED}"
        )),
    }
}

/// A lease term in milliseconds, or `inf`.
pub fn parse_term(s: &str) -> Result<LeaseTerm, String> {
    if s == "inf" {
        return Ok(LeaseTerm::CALLBACK);
    }
    let ms: u64 = s.parse().map_err(|_| {
        format!("`{s}`: expected whole milliseconds (e.g. 10000), or `inf` for callbacks")
    })?;
    if ms > 86_400_000 {
        return Err(format!(
            "`{s}`: at most 86400000 (one day); use `inf` for callbacks"
        ));
    }
    Ok(LeaseTerm::from_millis(ms))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.epsilon_ms > 60_000 {
        bail!(
            "--epsilon-ms {}: expected at most 60000 milliseconds",
            args.epsilon_ms
        );
    }
    if args.holder_timeout_ms == 0 || args.holder_timeout_ms > 3_600_000 {
        bail!(
            "--holder-timeout-ms {}: expected 1 to 3600000 milliseconds",
            args.holder_timeout_ms
        );
    }
    if args.data.exists() && !args.data.is_dir() {
        anyhow::bail!(
            "--data {}: not a directory; give a directory for the store's data file \
             (created if missing)",
            args.data.display()
        );
    }
    let settings = OriginSettings {
        max_term: args.max_term_ms,
        epsilon: Nanos::from_millis(args.epsilon_ms),
        holder_timeout: Nanos::from_millis(args.holder_timeout_ms),
        max_batch_writes: args.max_batch_writes,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Bound before the store opens: opening starts a new incarnation, whose
    // writes then wait out the previous one's leases, so a start that cannot
    // listen must not count as a run.
    let listener = ebb::rpc::transport::listen::bind_std(&args.listen)
        .with_context(|| format!("--listen {}: cannot listen there", args.listen))?;
    rt.block_on(async {
        let (origin, opened) = OriginService::open(&args.data, settings)
            .context("--data: opening the origin store")?;
        match opened.writes_wait {
            Some(w) if w == Nanos::MAX => eprintln!(
                "origin: incarnation {}; callbacks may be outstanding: writes wait {} ms for holders to reset",
                opened.incarnation, args.holder_timeout_ms
            ),
            Some(w) => eprintln!(
                "origin: incarnation {}; leases of the previous run may be held: writes wait {w}",
                opened.incarnation
            ),
            None => eprintln!("origin: incarnation {}", opened.incarnation),
        }
        let server = Server::from_std(
            listener,
            OriginServer::new(origin),
            ServerConfig::default(),
        )?;
        let addr = server.local_addr().context("reading the bound address")?;
        super::announce(&format!("origin listening on {addr}"));
        server.run().await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_term_is_the_origins() {
        assert_eq!(
            super::DEFAULT_MAX_TERM_MS.parse::<u64>(),
            Ok(ebb_lease::origin::DEFAULT_TERM_MS)
        );
    }
}
