//! What the real-process tests share: `ebb` children (through
//! `ebb_testkit::Proc`), `ebb call` run to its end, and one blocking
//! `Demo.incr`.
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

/// `ebb call --addr ADDR ARGS...` run to its end. No backtrace, so a
/// failure's stderr is the message a user would see.
pub fn call(addr: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["call", "--addr", addr])
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the ebb binary cargo built for these tests runs")
}

/// The at-most-once ledger of `Demo.incr` calls on one counter that
/// `executions` increments reached: each answered value returned once and
/// produced by an execution, and no more executions than answered calls
/// plus the unanswered ones that may have run (`may_have_run`). `ctx`
/// names the seed and the counts, so a failure can be replayed.
pub fn assert_at_most_once(values: &[u64], executions: u64, may_have_run: usize, ctx: &str) {
    let answered = values.len() as u64;
    let distinct: std::collections::BTreeSet<u64> = values.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        values.len(),
        "a value was returned twice; {ctx}"
    );
    assert!(
        distinct.iter().all(|v| (1..=executions).contains(v)),
        "a value no execution produced; {ctx}"
    );
    assert!(
        executions >= answered,
        "fewer executions than answered calls; {ctx}"
    );
    assert!(
        executions <= answered + may_have_run as u64,
        "a call ran twice, or one reported as never sent ran; {ctx}"
    );
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

/// Whether `e` means VMs cannot run on this machine (a skip) rather than
/// that something broke (a failure). A kernel that could not be fetched is
/// a failure, except without root, which fetching needs.
pub fn vm_unavailable(e: &ebb_node::vm::VmError) -> bool {
    use ebb_node::vm::VmError;
    match e {
        VmError::NoQemu(_) | VmError::NoBusybox(_) => true,
        VmError::Kernel(_) => !ebb_testkit::is_root(),
        _ => false,
    }
}

/// Why the VM image cannot be prepared here (a skip), or `None`. Panics
/// when preparing it broke rather than being impossible on this machine.
pub fn vm_image_unavailable() -> Option<String> {
    match ebb_node::vm::image::VmImage::prepare(&[]) {
        Ok(_) => None,
        Err(e) if vm_unavailable(&e) => Some(e.to_string()),
        Err(e) => panic!("preparing the VM image failed: {e}"),
    }
}

/// Why VM nodes cannot run here (a skip), or `None`: they need root for
/// their network and QEMU, and a prepared image.
pub fn vm_nodes_unavailable() -> Option<String> {
    if !ebb_testkit::is_root() {
        return Some("VM nodes need root (their network and QEMU)".to_owned());
    }
    vm_image_unavailable()
}

/// Runs `test` on nodes of `kind`, or skips `name` (failing in CI) where
/// that kind cannot run: container nodes need what
/// [`ebb_testkit::containers_unavailable`] checks, VM nodes what
/// [`vm_nodes_unavailable`] does; thread and process nodes run anywhere.
pub fn on_kind(kind: &str, name: &str, test: fn(&str)) {
    let unavailable = match kind {
        "container" => ebb_testkit::containers_unavailable(),
        "vm" => vm_nodes_unavailable(),
        _ => None,
    };
    match unavailable {
        Some(why) => ebb_testkit::skip_or_fail(name, &why),
        None => test(kind),
    }
}

/// A client that gives up on a silent connection within a call's deadline
/// (heartbeats every 100 ms, silence after 400 ms), so tests through a
/// black-holing proxy stay quick.
pub fn quick_detection_client() -> ebb::rpc::transport::TcpClientConfig {
    let d = ebb::rpc::transport::TcpClientConfig::default();
    ebb::rpc::transport::TcpClientConfig {
        session: ebb::rpc::semantics::ClientConfig {
            heartbeat_interval: ebb_core::Nanos::from_millis(100),
            heartbeat_silence: ebb_core::Nanos::from_millis(400),
            ..d.session
        },
        ..d
    }
}

/// The `/proc/PID/task/*/stat` fields after the parenthesised name (state
/// first, utime and stime at 11 and 12) of each thread of `pid` whose name
/// starts with `ebb-worker`: what a node's worker threads are doing, read
/// from the kernel rather than timed.
pub fn worker_stat_fields(pid: u32) -> Vec<Vec<String>> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            if !comm.starts_with("ebb-worker") {
                return None;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(") ")?;
            Some(rest.split_whitespace().map(str::to_owned).collect())
        })
        .collect()
}
