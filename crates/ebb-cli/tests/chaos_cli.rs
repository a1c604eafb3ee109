//! `ebb chaos` as a process: prints its address, forwards, rejects bad input.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;

#[test]
fn chaos_process_forwards_to_its_upstream() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap().to_string();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = upstream.accept().unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    let chaos = common::ebb(&[
        "chaos",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &up_addr,
        "--delay-ms",
        "1",
        "--seed",
        "3",
    ]);
    let mut c = TcpStream::connect(&chaos.addr).unwrap();
    c.write_all(b"through the proxy").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"through the proxy");
    echo.join().unwrap();
}

#[test]
fn chaos_rejects_a_probability_above_one_by_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args([
            "chaos",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:1",
        ])
        .args(["--reset", "1.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--reset") && err.contains("[0, 1]"), "{err}");
}

#[test]
fn chaos_says_when_its_upstream_cannot_be_reached() {
    use std::io::BufRead;
    // A port nothing listens on: bound, then closed.
    let gone = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut chaos = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["chaos", "--listen", "127.0.0.1:0", "--upstream"])
        .arg(gone.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(chaos.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
    let mut c = TcpStream::connect(&addr).unwrap();
    // The proxy closes the client once its upstream connect fails.
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    let mut err = std::io::BufReader::new(chaos.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said = String::new();
        let _ = err.read_line(&mut said);
        let _ = tx.send(said);
    });
    // A bound on a hang, not a timing assertion: the report is due within
    // a second.
    let said = rx.recv_timeout(std::time::Duration::from_secs(60));
    chaos.kill().unwrap();
    chaos.wait().unwrap();
    let said = said.expect("ebb chaos said nothing on stderr");
    assert!(
        said.contains(&format!("cannot connect to the upstream {gone}"))
            && said.contains("1 client connection(s)"),
        "{said}"
    );
}
