//! `ebb call` against a service this binary was not built with: the node
//! describes itself and decodes JSON arguments through its own adapter.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Output;

use common::call;

use ebb::rpc::transport::Server;

/// A service that exists only in this test.
#[ebb::service]
pub trait Tally {
    /// Adds `n` to the running total and returns it (at-most-once).
    async fn add(&self, n: u64) -> u64;
    #[idempotent]
    async fn greet(&self, name: String) -> String;
}

#[derive(Default)]
struct Total(std::sync::atomic::AtomicU64);

impl Tally for Total {
    async fn add(&self, n: u64) -> u64 {
        self.0.fetch_add(n, std::sync::atomic::Ordering::SeqCst) + n
    }
    async fn greet(&self, name: String) -> String {
        format!("hi {name}")
    }
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn ebb_call_reaches_a_service_it_was_not_built_with() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(async {
        let server = Server::bind("127.0.0.1:0", TallyServer::new(Total::default()))
            .await
            .unwrap();
        let addr = server.local_addr().unwrap().to_string();
        tokio::spawn(server.run());
        addr
    });
    assert_eq!(stdout(&call(&addr, &["Tally.add", r#"{"n":2}"#])), "2");
    assert_eq!(stdout(&call(&addr, &["Tally.add", r#"{"n":3}"#])), "5");
    assert_eq!(
        stdout(&call(&addr, &["Tally.greet", r#"{"name":"x"}"#])),
        r#""hi x""#
    );
    let o = call(&addr, &["Tally.add", r#"{"m":1}"#]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("unknown parameter `m`") && e.contains("it did not run"),
        "{e}"
    );
    let o = call(&addr, &["Tally.sub", "{}"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("add, greet"), "{e}");
}
