//! Benchmarks of the lease cache and the origin's durable writes (not a
//! test; see docs/benchmarks.md for the command and the figures):
//!
//! 1. reads: a get served from a node's lease cache against a get that goes
//!    to the origin over TCP on loopback (check-on-use), p50/p99 and calls/s;
//! 2. durable writes: puts through the origin (RPC, leases, redb with
//!    immediate durability; with group commit, and with one put per
//!    commit) against redb used directly (one durable transaction per
//!    write) and against Redis with `appendfsync always`, with the same
//!    number of concurrent writers.
//!
//! Every measurement runs `--reps` times in turn (systems interleaved) and
//! the medians are printed.

use std::time::{Duration, Instant};

use ebb_lease::api::{OriginClient, OriginServer};
use ebb_lease::cache::{CacheSettings, LeaseCache};
use ebb_lease::origin::{DEFAULT_MAX_BATCH_WRITES, OriginService, OriginSettings};
use ebb_policy::lease::LeaseTerm;
use ebb_rpc::transport::{Server, TcpClient};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READ_SECS: f64 = 1.0;
const WRITES_PER_WRITER: usize = 200;
const WRITERS: usize = 16;
const VALUE_BYTES: usize = 100;

#[derive(Clone, Copy, Debug)]
struct Reads {
    calls_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn start_origin(dir: &std::path::Path, term: LeaseTerm, max_batch_writes: usize) -> String {
    let settings = OriginSettings {
        max_term: term,
        max_batch_writes,
        ..OriginSettings::default()
    };
    let (origin, _) = OriginService::open(dir, settings).expect("open origin");
    let server = Server::bind("127.0.0.1:0", OriginServer::new(origin))
        .await
        .expect("bind");
    let addr = server.local_addr().expect("addr").to_string();
    tokio::spawn(server.run());
    addr
}

async fn reads(addr: &str, term: LeaseTerm) -> Reads {
    let client = OriginClient::new(TcpClient::connect(addr).await.expect("connect"));
    let cache = LeaseCache::new(
        client,
        ebb_lease::cache::random_holder_id(),
        CacheSettings {
            term,
            ..CacheSettings::default()
        },
    );
    tokio::spawn(cache.clone().run_poller());
    cache.put("k", vec![1; VALUE_BYTES]).await.expect("put");
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < READ_SECS {
        let t = Instant::now();
        cache.get("k").await.expect("get");
        hist.record(t.elapsed().as_nanos() as u64).expect("record");
        n += 1;
    }
    Reads {
        calls_per_s: n as f64 / start.elapsed().as_secs_f64(),
        p50_us: hist.value_at_quantile(0.5) as f64 / 1e3,
        p99_us: hist.value_at_quantile(0.99) as f64 / 1e3,
    }
}

/// Puts per second through the origin, `WRITERS` clients at once.
async fn origin_puts(addr: &str) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let addr = addr.to_owned();
        tasks.push(tokio::spawn(async move {
            let c = OriginClient::new(TcpClient::connect(&addr).await.expect("connect"));
            for i in 0..WRITES_PER_WRITER {
                c.put(format!("w{w}-{i}"), vec![2; VALUE_BYTES])
                    .await
                    .expect("call")
                    .expect("put");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    (WRITERS * WRITES_PER_WRITER) as f64 / start.elapsed().as_secs_f64()
}

/// Durable transactions per second on redb directly, `WRITERS` threads.
fn redb_puts(dir: &std::path::Path) -> f64 {
    let db = std::sync::Arc::new(redb::Database::create(dir.join("direct.redb")).expect("redb"));
    const T: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("t");
    let start = Instant::now();
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..WRITES_PER_WRITER {
                    let tx = db.begin_write().expect("tx");
                    {
                        let mut t = tx.open_table(T).expect("table");
                        t.insert(format!("w{w}-{i}").as_str(), [2u8; VALUE_BYTES].as_slice())
                            .expect("insert");
                    }
                    tx.commit().expect("commit");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    (WRITERS * WRITES_PER_WRITER) as f64 / start.elapsed().as_secs_f64()
}

/// SETs per second on Redis (`appendfsync always`), `WRITERS` connections.
async fn redis_puts(port: u16) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("redis");
            s.set_nodelay(true).expect("nodelay");
            let value = "2".repeat(VALUE_BYTES);
            let mut buf = [0u8; 64];
            for i in 0..WRITES_PER_WRITER {
                let key = format!("w{w}-{i}");
                let cmd = format!(
                    "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                    key.len(),
                    value.len()
                );
                s.write_all(cmd.as_bytes()).await.expect("write");
                let n = s.read(&mut buf).await.expect("read");
                assert!(buf[..n].starts_with(b"+OK"), "redis said {:?}", &buf[..n]);
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    (WRITERS * WRITES_PER_WRITER) as f64 / start.elapsed().as_secs_f64()
}

struct Redis(std::process::Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_redis(dir: &std::path::Path) -> (Redis, u16) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        l.local_addr().expect("addr").port()
    };
    let redis = std::process::Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map(Redis)
        .expect("redis-server is installed (Debian's redis-server)");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (redis, port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server did not start on port {port}");
}

fn main() {
    let reps: usize = std::env::args()
        .skip_while(|a| a != "--reps")
        .nth(1)
        .map_or(5, |r| r.parse().expect("--reps N"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (mut cached, mut remote) = (Vec::new(), Vec::new());
        let (mut origin_w, mut redb_w, mut redis_w) = (Vec::new(), Vec::new(), Vec::new());
        let mut origin_single_w = Vec::new();
        for rep in 0..reps {
            let d1 = tempfile::tempdir().expect("dir");
            let leased = start_origin(d1.path(), LeaseTerm::from_millis(10_000), DEFAULT_MAX_BATCH_WRITES).await;
            cached.push(reads(&leased, LeaseTerm::from_millis(10_000)).await);
            let d2 = tempfile::tempdir().expect("dir");
            let cou = start_origin(d2.path(), LeaseTerm::CHECK_ON_USE, DEFAULT_MAX_BATCH_WRITES).await;
            remote.push(reads(&cou, LeaseTerm::CHECK_ON_USE).await);
            let d3 = tempfile::tempdir().expect("dir");
            let w = start_origin(
                d3.path(),
                LeaseTerm::from_millis(10_000),
                DEFAULT_MAX_BATCH_WRITES,
            )
            .await;
            origin_w.push(origin_puts(&w).await);
            let d6 = tempfile::tempdir().expect("dir");
            let w1 = start_origin(d6.path(), LeaseTerm::from_millis(10_000), 1).await;
            origin_single_w.push(origin_puts(&w1).await);
            let d4 = tempfile::tempdir().expect("dir");
            let p = d4.path().to_owned();
            redb_w.push(
                tokio::task::spawn_blocking(move || redb_puts(&p))
                    .await
                    .expect("redb"),
            );
            let d5 = tempfile::tempdir().expect("dir");
            let (redis, port) = start_redis(d5.path()).await;
            redis_w.push(redis_puts(port).await);
            drop(redis);
            eprintln!("rep {rep} done");
        }
        let pick = |v: &[Reads], f: fn(&Reads) -> f64| median(v.iter().map(f).collect());
        println!("reads (median of {reps}):");
        for (name, v) in [
            ("cached get (lease 10 s)", &cached),
            ("origin get (term 0)", &remote),
        ] {
            println!(
                "  {name:<24} p50 {:>8.1} us  p99 {:>8.1} us  {:>10.0} calls/s",
                pick(v, |r| r.p50_us),
                pick(v, |r| r.p99_us),
                pick(v, |r| r.calls_per_s)
            );
        }
        let ratio = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(x, y)| x / y).collect());
        let (o_redb, o_redis, o_single) = (
            ratio(&origin_w, &redb_w),
            ratio(&origin_w, &redis_w),
            ratio(&origin_w, &origin_single_w),
        );
        let (o, d, r) = (median(origin_w), median(redb_w), median(redis_w));
        let o1 = median(origin_single_w);
        println!(
            "durable writes, {WRITERS} writers, {VALUE_BYTES}-byte values (median of {reps}):"
        );
        println!(
            "  ebb origin, group commit   {o:>8.0} puts/s  (per-rep ratios, median: origin/one-per-commit {o_single:.2}, origin/redb {o_redb:.2}, origin/redis {o_redis:.2})"
        );
        println!("  ebb origin, one per commit {o1:>8.0} puts/s");
        println!("  redb directly              {d:>8.0} puts/s");
        println!("  redis appendfsync always   {r:>8.0} puts/s");
    });
}
