//! `ebb node --origin ADDR` started before its origin (a script, or the
//! README's lines pasted at once): the node says it is waiting, and serves
//! once the origin listens, instead of exiting.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Kills the node when the test ends, even on panic.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_node_waits_for_an_origin_that_starts_after_it() {
    // A port nothing listens on yet, for the origin to take later.
    let origin_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut node = Killed(
        Command::new(env!("CARGO_BIN_EXE_ebb"))
            .args(["node", "--listen", "127.0.0.1:0", "--origin", &origin_addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = node.0.stderr.take().unwrap();
    let first = BufReader::new(stderr).lines().next().unwrap().unwrap();
    assert!(
        first.contains("waiting") && first.contains(&origin_addr),
        "the node says what it waits for: {first}"
    );

    let data = tempfile::tempdir().unwrap();
    let _origin = common::ebb(&[
        "origin",
        "--listen",
        &origin_addr,
        "--data",
        data.path().to_str().unwrap(),
    ]);
    let stdout = node.0.stdout.take().unwrap();
    let line = BufReader::new(stdout).lines().next().unwrap().unwrap();
    let node_addr = line
        .rsplit_once("listening on ")
        .map(|(_, a)| a.trim().to_owned())
        .unwrap_or_else(|| panic!("the node serves once the origin is up: {line}"));

    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["call", "--addr", &node_addr, "Demo.write"])
        .arg(r#"{"key":"a","value":"x"}"#)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"Ok":1}"#,
        "the write reached the origin: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
