//! The floor no RPC system can beat on this machine: raw blocking TCP over
//! loopback, one server thread, no framing beyond fixed 64-byte messages.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Size of one floor message.
pub const MSG_BYTES: usize = 64;
/// Bytes the pipelined writer hands to one `write` call (256 messages).
const PIPELINE_WRITE_BYTES: usize = 16 * 1024;
/// Bytes the echo server and the pipelined reader read at once.
const READ_BUF_BYTES: usize = 64 * 1024;

/// Accepts one connection and echoes bytes back until the peer closes.
fn echo_server() -> anyhow::Result<(std::net::SocketAddr, thread::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("floor: bind")?;
    let addr = listener.local_addr()?;
    let h = thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let _ = s.set_nodelay(true);
        let mut buf = vec![0u8; READ_BUF_BYTES];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
    });
    Ok((addr, h))
}

/// Mean microseconds per blocking 64-byte round trip over `measure`.
pub fn ping_pong(warmup: Duration, measure: Duration) -> anyhow::Result<f64> {
    let (addr, server) = echo_server()?;
    let mut s = TcpStream::connect(addr).context("floor: connect")?;
    s.set_nodelay(true)?;
    let msg = [0x5au8; MSG_BYTES];
    let mut back = [0u8; MSG_BYTES];
    let warm_end = Instant::now() + warmup;
    while Instant::now() < warm_end {
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
    }
    let t0 = Instant::now();
    let end = t0 + measure;
    let mut n: u64 = 0;
    while Instant::now() < end {
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
        n += 1;
    }
    let us = t0.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64;
    drop(s);
    let _ = server.join();
    Ok(us)
}

/// 64-byte messages per second echoed when a writer thread streams them
/// without waiting for replies and a reader thread counts what comes back.
pub fn pipelined(warmup: Duration, measure: Duration) -> anyhow::Result<f64> {
    let (addr, server) = echo_server()?;
    let s = TcpStream::connect(addr).context("floor: connect")?;
    s.set_nodelay(true)?;
    let mut w = s.try_clone()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_w = Arc::clone(&stop);
    let writer = thread::spawn(move || {
        let chunk = vec![0x5au8; PIPELINE_WRITE_BYTES];
        while !stop_w.load(Ordering::Relaxed) {
            if w.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = w.shutdown(std::net::Shutdown::Write);
    });
    let mut r = s;
    let mut buf = vec![0u8; READ_BUF_BYTES];
    let from = Instant::now() + warmup;
    let to = from + measure;
    let mut bytes: u64 = 0;
    let mut t0 = None;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let now = Instant::now();
        if now >= to {
            break;
        }
        if now >= from {
            if t0.is_none() {
                t0 = Some(now);
            } else {
                bytes += n as u64;
            }
        }
    }
    let secs = t0.map_or(0.0, |t| t.elapsed().as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    // Drain until the server closes so both threads end.
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    let _ = writer.join();
    let _ = server.join();
    Ok(bytes as f64 / MSG_BYTES as f64 / secs.max(1e-9))
}
