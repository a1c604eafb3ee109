//! `ebb up` with an `[origin]` section: it starts `ebb origin` on the data
//! directory, its process nodes serve the demo's data through their lease
//! caches from it, so a value put through one node is read through
//! another; Ctrl-C stops the origin with the nodes, and the data outlives
//! them. Container nodes (root) do the same through the host address the
//! origin listens on for them.
#![allow(clippy::unwrap_used)]

mod common;
mod gateway_common;

use ebb::rpc::service::CallOptions;
use ebb::rpc::transport::TcpClient;
use ebb_core::Nanos;
use ebb_demo::DemoClient;
use gateway_common::{Up, live_nodes};

fn config(kind: &str, data: &str, nodes: usize) -> String {
    format!(
        "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nseed = 3\n\
         [service]\nname = \"demo\"\n\
         [pool]\nkind = \"{kind}\"\ninitial = {nodes}\nmin = 1\nmax = 4\n\
         [origin]\ndata = \"{data}\"\nlease_term_ms = 1000\nepsilon_ms = 50\n"
    )
}

fn demo(rt: &tokio::runtime::Runtime, addr: &str) -> DemoClient<TcpClient> {
    let opts = CallOptions::default().with_timeout(Nanos::from_secs(10));
    let client = rt.block_on(TcpClient::connect(addr)).unwrap();
    DemoClient::new(client).with_options(opts)
}

#[test]
fn two_nodes_behind_ebb_up_share_data_through_the_origin() {
    two_nodes_share_data("process");
}

#[test]
fn two_container_nodes_share_data_through_the_origin_as_root() {
    if let Some(why) = ebb_testkit::containers_unavailable() {
        ebb_testkit::skip_or_fail(
            "two_container_nodes_share_data_through_the_origin_as_root",
            &why,
        );
        return;
    }
    two_nodes_share_data("container");
}

/// Two `kind` nodes behind `ebb up`: a put through either is read through
/// the other, the origin's address is announced, nothing is left behind.
fn two_nodes_share_data(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("origin");
    let up = Up::start(
        &format!("origin-share-{kind}"),
        &config(kind, data.to_str().unwrap(), 2),
    );
    let status = up.wait_ready(2);
    let nodes: Vec<String> = live_nodes(&status)
        .iter()
        .map(|n| n["address"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(nodes.len(), 2, "{status}");
    assert_ne!(nodes[0], nodes[1]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = (demo(&rt, &nodes[0]), demo(&rt, &nodes[1]));
    rt.block_on(async {
        // b caches the key's absence under a lease first, so the put through
        // a must invalidate b's copy, not merely fill an empty cache.
        assert_eq!(b.get("shared".into()).await.unwrap().unwrap(), None);
        let v1 = a
            .write("shared".into(), "one".into())
            .await
            .unwrap()
            .unwrap();
        let seen = b.read("shared".into()).await.unwrap().unwrap();
        assert_eq!((seen.version, seen.value.as_deref()), (v1, Some("one")));
        // And the other way round.
        let v2 = b
            .write("shared".into(), "two".into())
            .await
            .unwrap()
            .unwrap();
        assert!(v2 > v1);
        let seen = a.read("shared".into()).await.unwrap().unwrap();
        assert_eq!((seen.version, seen.value.as_deref()), (v2, Some("two")));
    });
    let lines = up.output();
    let origin = lines
        .iter()
        .find_map(|l| l.strip_prefix("origin listening on "))
        .unwrap_or_else(|| panic!("no origin address announced: {lines:?}"));
    // Containers cannot reach the host's loopback: theirs is a host
    // address from their private range.
    let expected_net = if kind == "container" {
        "10.213."
    } else {
        "127.0.0.1:"
    };
    assert!(
        origin.starts_with(expected_net),
        "{kind}: origin on {origin}"
    );
    let out = up.stop(); // asserts no child (origin or node) is left behind
    assert!(out.iter().any(|l| l == "stopped"), "{out:?}");
    // The data is durable in the directory the config named.
    assert!(
        data.join("origin.redb").exists(),
        "no data file in {data:?}"
    );
}

#[test]
fn thread_nodes_use_an_origin_that_is_already_running() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let origin = common::ebb(&[
        "origin",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data,
        "--max-term-ms",
        "inf",
    ]);
    let up = Up::start(
        "origin-existing",
        &format!(
            "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nseed = 4\n\
             [service]\nname = \"demo\"\n\
             [pool]\nkind = \"thread\"\ninitial = 2\nmin = 1\nmax = 2\n\
             [origin]\naddr = \"{}\"\nlease_term_ms = \"inf\"\n",
            origin.addr
        ),
    );
    let status = up.wait_ready(2);
    let node = live_nodes(&status)[0]["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let in_pool = demo(&rt, &node);
    let v = rt
        .block_on(in_pool.write("ext".into(), "kept".into()))
        .unwrap()
        .unwrap();
    // A node outside the pool, on the same origin, reads what the pool wrote
    // (and the pool's cache, holding a callback, is told of the next write).
    let outside = common::ebb(&["node", "--listen", "127.0.0.1:0", "--origin", &origin.addr]);
    let o = demo(&rt, &outside.addr);
    let pool = demo(&rt, &up.rpc.to_string());
    rt.block_on(async {
        let seen = o.read("ext".into()).await.unwrap().unwrap();
        assert_eq!((seen.version, seen.value.as_deref()), (v, Some("kept")));
        assert_eq!(
            pool.read("ext".into())
                .await
                .unwrap()
                .unwrap()
                .value
                .as_deref(),
            Some("kept")
        );
        let v2 = o
            .write("ext".into(), "changed".into())
            .await
            .unwrap()
            .unwrap();
        let seen = pool.read("ext".into()).await.unwrap().unwrap();
        assert_eq!((seen.version, seen.value.as_deref()), (v2, Some("changed")));
    });
    up.stop();
}

#[test]
fn a_bad_origin_key_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[service]\nname = \"demo\"\n[origin]\ndata = \"d\"\nlease_term_ms = \"forever\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .arg("up")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("origin.lease_term_ms") && err.contains("forever") && err.contains("\"inf\""),
        "{err}"
    );
    assert!(!dir.path().join("d").exists(), "nothing may start");
}
