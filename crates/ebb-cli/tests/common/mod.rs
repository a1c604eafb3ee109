//! Child processes for real-process tests: start `ebb`, read the address it
//! prints, kill it when the test ends (even on panic).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Lines of output read while looking for the bound address.
const MAX_STARTUP_LINES: usize = 50;
/// A bound on startup, so a child that hangs fails the test instead of
/// hanging it. Generous: a loaded CI machine may be slow to start processes.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `ebb` subcommand, killed on drop.
pub struct Proc {
    child: Child,
    pub addr: String,
    /// Every address printed, in order, when started with `start_listening`.
    pub addrs: Vec<String>,
}

impl Proc {
    /// Runs `ebb ARGS` and waits for the line ending in `listening on ADDR`.
    pub fn start(args: &[&str]) -> Proc {
        Proc::start_listening(args, 1)
    }

    /// Runs `ebb ARGS` and waits for `count` lines ending in `listening on
    /// ADDR` (a node with `--http` prints two).
    pub fn start_listening(args: &[&str], count: usize) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ebb"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the ebb binary was built by cargo for this test");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // Reads the address, then keeps draining stdout so the child never
        // blocks on a full pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut found = 0;
            for _ in 0..MAX_STARTUP_LINES {
                match lines.next() {
                    Some(Ok(line)) => {
                        if let Some((_, a)) = line.rsplit_once("listening on ") {
                            let _ = tx.send(a.trim().to_owned());
                            found += 1;
                            if found == count {
                                break;
                            }
                        }
                    }
                    _ => break,
                }
            }
            drop(tx);
            for _ in lines {}
        });
        let mut proc = Proc {
            child,
            addr: String::new(),
            addrs: Vec::new(),
        };
        for _ in 0..count {
            match rx.recv_timeout(STARTUP_TIMEOUT) {
                Ok(a) => proc.addrs.push(a),
                Err(_) => panic!(
                    "ebb {args:?} exited or printed fewer than {count} 'listening on ADDR' lines"
                ),
            }
        }
        proc.addr = proc.addrs[0].clone();
        proc
    }
}

impl Proc {
    /// The child's process id, to read its threads under `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `Demo.incr` of `key` on a fresh connection to `addr`, from blocking
/// test code; returns the counter's new value.
pub fn incr(addr: std::net::SocketAddr, key: &str) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    rt.block_on(async {
        let client = ebb::rpc::transport::TcpClient::connect(&addr.to_string())
            .await
            .expect("the node accepts a connection");
        ebb_demo::DemoClient::new(client)
            .incr(key.to_owned())
            .await
            .expect("the call completes")
            .expect("one key cannot fill the store")
    })
}
