//! `relay --listen ADDR --upstream ADDR`: passes bytes both ways between
//! each accepted connection and a connection of its own to the upstream,
//! and does nothing else: no parsing, no decisions, no timers.
//!
//! The floor under any proxy hop on this machine: the wake-ups, reads and
//! writes a hop cannot avoid, on the same runtime the gateway runs with
//! `gateway.threads = 1` (one current-thread tokio runtime, the sockets in
//! epoll, `TCP_NODELAY`). What a proxy adds beyond this relay is its own
//! work; what this relay adds over going direct is the hop itself.
//! `bench/gateway_cost.py` runs it beside HAProxy and the gateway.

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;

use tokio::net::{TcpListener, TcpStream};

/// Connections relayed at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 1024;

const USAGE: &str = "usage: relay --listen ADDR --upstream ADDR\n  \
    --listen ADDR    where to accept, e.g. 127.0.0.1:0 (port 0 picks a free port; the chosen\n                   \
    one is printed as `relay listening on ADDR`)\n  \
    --upstream ADDR  where each accepted connection is relayed to, e.g. 127.0.0.1:7000";

fn main() -> ExitCode {
    let (listen, upstream) = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("relay: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("relay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&rt, serve(listen, upstream)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--listen` and `--upstream`, each required once.
fn parse(mut args: impl Iterator<Item = String>) -> Result<(String, String), String> {
    let (mut listen, mut upstream) = (None, None);
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--listen" => &mut listen,
            "--upstream" => &mut upstream,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; accepted: --listen, --upstream"
                ));
            }
        };
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs an address such as 127.0.0.1:7000"))?;
        *slot = Some(value);
    }
    Ok((
        listen.ok_or("--listen is required")?,
        upstream.ok_or("--upstream is required")?,
    ))
}

async fn serve(listen: String, upstream: String) -> Result<(), String> {
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    println!("relay listening on {addr}");
    let open = Rc::new(Cell::new(0usize));
    loop {
        let (client, _) = listener
            .accept()
            .await
            .map_err(|e| format!("accepting: {e}"))?;
        if open.get() >= MAX_CONNECTIONS {
            drop(client);
            continue;
        }
        open.set(open.get() + 1);
        let (open, upstream) = (Rc::clone(&open), upstream.clone());
        tokio::task::spawn_local(async move {
            if let Err(e) = relay(client, &upstream).await {
                eprintln!("relay: a connection to {upstream} ended: {e}");
            }
            open.set(open.get() - 1);
        });
    }
}

/// One connection: both directions in one task, each read written on at
/// once.
async fn relay(mut client: TcpStream, upstream: &str) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}
