//! What the real-process tests share: `ebb` children (through
//! `ebb_testkit::Proc`) and one blocking `Demo.incr`.
#![allow(dead_code)]

/// A running `ebb` subcommand, killed on drop.
pub use ebb_testkit::Proc;

/// Runs `ebb ARGS` and waits for the line ending in `listening on ADDR`.
pub fn ebb(args: &[&str]) -> Proc {
    Proc::start(env!("CARGO_BIN_EXE_ebb"), args)
}

/// Runs `ebb ARGS` and waits for `count` lines ending in `listening on
/// ADDR` (a node with `--http` prints two).
pub fn ebb_listening(args: &[&str], count: usize) -> Proc {
    Proc::start_listening(env!("CARGO_BIN_EXE_ebb"), args, count)
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
