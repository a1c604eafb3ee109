//! Closed-loop load on the TCP runtimes over loopback: `CONCURRENCY` callers
//! share one client connection and echo 64-byte payloads for a few seconds.
//! Prints calls per second and the server thread's CPU time per call.
//!
//! `cargo run --release -p ebb-rpc --example tcp_load [concurrency] [seconds]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ebb_rpc::service::{
    BoxFuture, CallOptions, DispatchError, MethodInfo, ServiceDispatch, Transport,
};
use ebb_rpc::transport::{Server, TcpClient};

static ECHO: [MethodInfo; 1] = [MethodInfo {
    service: "Bench",
    id: 0,
    name: "echo",
    idempotent: true,
    blocking: false,
    params: &[],
    returns: "Vec<u8>",
}];

struct Echo;

impl ServiceDispatch for Echo {
    fn name(&self) -> &'static str {
        "Bench"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &ECHO
    }
    fn dispatch(&self, _id: u16, args: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async move { Ok(args) })
    }
}

/// CPU time (user + system) of the calling thread, from procfs.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of stat; index 11 and 12 after the command name.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let concurrency: usize = args.next().map_or(Ok(128), |s| s.parse())?;
    let seconds: u64 = args.next().map_or(Ok(5), |s| s.parse())?;

    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (cpu_tx, cpu_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let server = Server::bind("127.0.0.1:0", Echo)
                .await
                .map_err(std::io::Error::other)?;
            addr_tx
                .send(server.local_addr()?)
                .map_err(std::io::Error::other)?;
            let start = thread_cpu();
            tokio::select! {
                _ = server.run() => {}
                _ = stop_rx => {}
            }
            let _ = cpu_tx.send(thread_cpu() - start);
            Ok(())
        })
    });
    let addr = addr_rx.recv()?.to_string();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let done = Arc::new(AtomicU64::new(0));
    let elapsed = rt.block_on(async {
        let client = Arc::new(TcpClient::connect(&addr).await?);
        // A flag rather than a clock read per call, so the loop measures
        // the RPC path and not the clock.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                stop.store(true, Ordering::Relaxed);
            });
        }
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let client = Arc::clone(&client);
                let done = Arc::clone(&done);
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    let payload = Bytes::from(vec![7u8; 64]);
                    while !stop.load(Ordering::Relaxed) {
                        if client
                            .call(&ECHO[0], payload.clone(), CallOptions::default())
                            .await
                            .is_ok()
                        {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(start.elapsed())
    })?;
    let _ = stop_tx.send(());
    let server_cpu = cpu_rx.recv()?;
    server.join().map_err(|_| "server thread panicked")??;
    let n = done.load(Ordering::Relaxed);
    println!(
        "{{\"concurrency\":{concurrency},\"payload_bytes\":64,\"calls\":{n},\"seconds\":{:.3},\"calls_per_sec\":{:.0},\"server_cpu_us_per_call\":{:.3}}}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        server_cpu.as_secs_f64() * 1e6 / n.max(1) as f64
    );
    Ok(())
}
