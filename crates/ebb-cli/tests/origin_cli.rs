//! `ebb origin` as a real process: every acknowledged write survives
//! `kill -9` with its version, a restart waits out the persisted term, and a
//! damaged data file stops the origin with a message that says so.

mod common;

use common::Proc;
use ebb::rpc::transport::TcpClient;
use ebb_lease::api::{Body, OriginClient};
use std::process::Command;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime builds")
}

fn start(dir: &std::path::Path) -> Proc {
    let data = dir.to_str().expect("utf-8 temp path");
    common::ebb(&[
        "origin",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data,
        "--max-term-ms",
        "300",
        "--epsilon-ms",
        "20",
    ])
}

async fn client(addr: &str) -> OriginClient<TcpClient> {
    OriginClient::new(TcpClient::connect(addr).await.expect("the origin accepts"))
}

#[test]
fn every_acknowledged_write_survives_kill_9_with_its_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = runtime();
    let origin = start(dir.path());
    // Writers keep writing while the origin is killed: what they saw
    // acknowledged is the record to check against.
    let acked = rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, u64, Vec<u8>)>(1_024);
        let mut writers = Vec::new();
        for w in 0..4 {
            let c = client(&origin.addr).await;
            let tx = tx.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..10_000u32 {
                    let key = format!("k{}", i % 8);
                    let value = format!("w{w}-{i}").into_bytes();
                    match c.put(key.clone(), value.clone()).await {
                        Ok(Ok(version)) => {
                            if tx.send((key, version, value)).await.is_err() {
                                return;
                            }
                        }
                        _ => return, // the origin is gone
                    }
                }
            }));
        }
        drop(tx);
        let mut acked = Vec::new();
        while let Some(a) = rx.recv().await {
            acked.push(a);
            if acked.len() == 200 {
                break;
            }
        }
        (acked, writers)
    });
    let (mut acked, writers) = acked;
    drop(origin); // SIGKILL, with puts in flight
    rt.block_on(async {
        for w in writers {
            let _ = w.await;
        }
    });
    assert!(
        acked.len() >= 200,
        "only {} writes were acknowledged",
        acked.len()
    );
    let origin = start(dir.path());
    rt.block_on(async {
        let c = client(&origin.addr).await;
        // The latest acknowledged version of each key is there, and at that
        // version it holds the acknowledged value.
        acked.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut last: std::collections::BTreeMap<String, (u64, Vec<u8>)> = Default::default();
        for (k, v, val) in acked {
            last.insert(k, (v, val));
        }
        for (key, (version, value)) in last {
            let reply = c
                .get(key.clone(), 1, 0, 0)
                .await
                .expect("call")
                .expect("get");
            assert!(
                reply.version >= version,
                "{key}: acknowledged v{version}, found v{}",
                reply.version
            );
            if reply.version == version {
                assert_eq!(reply.body, Body::Value(value), "{key} at v{version}");
            }
        }
        // Writes still work after the recovery gate.
        let v = c
            .put("k0".into(), b"after".to_vec())
            .await
            .expect("call")
            .expect("put");
        assert!(v > 1);
    });
}

#[test]
fn a_damaged_data_file_is_reported_and_nothing_is_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("origin.redb"), vec![0xA5u8; 64 * 1024]).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["origin", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .output()
        .expect("running ebb");
    assert!(
        !out.status.success(),
        "the origin started on a damaged file"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("origin.redb") && err.contains("damaged"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}

#[test]
fn bad_flags_name_the_input_and_what_is_accepted() {
    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["origin", "--data", "/tmp/x", "--max-term-ms", "soon"])
        .output()
        .expect("running ebb");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--max-term-ms") && err.contains("`inf`"),
        "{err}"
    );
}

#[test]
fn a_data_path_that_is_a_file_is_named_as_not_a_directory() {
    let guard = tempfile::Builder::new()
        .prefix("ebb-origin-not-a-dir-")
        .tempfile()
        .expect("a scratch file");
    let file = guard.path();
    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["origin", "--listen", "127.0.0.1:0", "--data"])
        .arg(file)
        .output()
        .expect("running ebb");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("--data {}: not a directory", file.display())),
        "{err}"
    );
}
