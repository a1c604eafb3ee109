//! `ebb load` over RPC against a service the binary was not built with: the
//! target describes itself and each call goes through its JSON adapter.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ebb::rpc::transport::Server;
use serde_json::Value;

/// A service that exists only in this test.
#[ebb::service]
pub trait Tally {
    /// Adds `n` to the running total and returns it (at-most-once).
    async fn add(&self, n: u64) -> u64;
}

#[derive(Clone, Default)]
struct Total(Arc<AtomicU64>);

impl Tally for Total {
    async fn add(&self, n: u64) -> u64 {
        self.0.fetch_add(n, Ordering::SeqCst) + n
    }
}

fn load(addr: &str, args: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args([
            "load",
            "--target",
            addr,
            "--rate",
            "100",
            "--duration",
            "0.5",
        ])
        .args([
            "--method",
            "Tally.add",
            "--args",
            args,
            "--deadline-ms",
            "30000",
            "--json",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn ebb_load_drives_a_service_it_was_not_built_with() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let total = Total::default();
    let addr = rt.block_on(async {
        let server = Server::bind("127.0.0.1:0", TallyServer::new(total.clone()))
            .await
            .unwrap();
        let addr = server.local_addr().unwrap().to_string();
        tokio::spawn(server.run());
        addr
    });
    let r = load(&addr, r#"{"n":1}"#);
    let sent = r["sent"].as_u64().unwrap();
    assert!(sent > 0, "{r}");
    assert_eq!(r["ok"].as_u64(), Some(sent), "{r}");
    // Each at-most-once call that succeeded ran exactly once.
    assert_eq!(total.0.load(Ordering::SeqCst), sent, "{r}");

    // Arguments the node's adapter refuses: counted under their kind, never run.
    let before = total.0.load(Ordering::SeqCst);
    let r = load(&addr, r#"{"m":1}"#);
    let sent = r["sent"].as_u64().unwrap();
    assert!(sent > 0, "{r}");
    assert_eq!(r["errors"]["bad_arguments"].as_u64(), Some(sent), "{r}");
    assert_eq!(total.0.load(Ordering::SeqCst), before, "a refused call ran");
}
