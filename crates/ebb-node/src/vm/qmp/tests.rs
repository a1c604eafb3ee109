//! The QMP client against a scripted fake QEMU.
#![allow(clippy::unwrap_used)]

use super::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;

/// A scripted QMP server: for each expected command, the lines to send.
/// The socket's directory is removed when the returned guard drops.
fn fake_qemu(
    script: Vec<(&'static str, Vec<&'static str>)>,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("ebb-qmp-test-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("qmp.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
        for (expect, replies) in script {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["execute"], expect);
            for reply in replies {
                writeln!(w, "{reply}").unwrap();
            }
        }
    });
    (dir, path)
}

#[test]
fn negotiates_then_skips_events_and_types_replies_and_errors() {
    let (_dir, path) = fake_qemu(vec![
        ("qmp_capabilities", vec![r#"{"return": {}}"#]),
        (
            "query-status",
            vec![
                r#"{"event": "RESUME", "timestamp": {}}"#,
                r#"{"return": {"running": true, "status": "running"}}"#,
            ],
        ),
        (
            "stop",
            vec![r#"{"error": {"class": "GenericError", "desc": "nope"}}"#],
        ),
        (
            "query-migrate",
            vec![
                r#"{"return": {"status": "completed", "total-time": 397, "downtime": 17, "ram": {"transferred": 42}}}"#,
            ],
        ),
        ("migrate-incoming", vec![r#"{"return": {}}"#]),
        (
            "query-migrate",
            vec![
                r#"{"return": {"status": "setup", "socket-address": [{"type": "inet", "host": "127.0.0.1", "port": "41234"}]}}"#,
            ],
        ),
    ]);
    let mut c = QmpClient::connect(&path).unwrap();
    assert_eq!(
        c.query_status().unwrap(),
        RunState {
            running: true,
            status: "running".into()
        }
    );
    match c.stop() {
        Err(QmpError::Command {
            command,
            class,
            desc,
        }) => {
            assert_eq!(
                (command.as_str(), class.as_str(), desc.as_str()),
                ("stop", "GenericError", "nope")
            );
        }
        other => panic!("expected a command error, got {other:?}"),
    }
    let m = c.query_migrate().unwrap();
    assert!(m.is_finished());
    assert_eq!(
        (m.total_time_ms, m.downtime_ms, m.ram_transferred_bytes),
        (Some(397), Some(17), Some(42))
    );
    c.migrate_incoming("tcp:127.0.0.1:0").unwrap();
    assert_eq!(c.query_migrate().unwrap().listen_port, Some(41234));
    // The fake QEMU hangs up after its script: a typed error, not a hang.
    assert!(matches!(c.cont(), Err(QmpError::Closed | QmpError::Io(_))));
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn hmp_failures_given_as_text_become_errors_and_event_times_are_kept() {
    let (_dir, path) = fake_qemu(vec![
        ("qmp_capabilities", vec![r#"{"return": {}}"#]),
        (
            "human-monitor-command",
            vec![
                r#"{"timestamp": {"seconds": 100, "microseconds": 250000}, "event": "STOP"}"#,
                r#"{"return": "host forwarding rule for tcp:127.0.0.1:5 removed\r\n"}"#,
            ],
        ),
        (
            "human-monitor-command",
            vec![
                r#"{"return": "Could not set up host forwarding rule 'tcp:127.0.0.1:5-:7000'\r\n"}"#,
            ],
        ),
        ("human-monitor-command", vec![r#"{"return": ""}"#]),
    ]);
    let mut c = QmpClient::connect(&path).unwrap();
    assert_eq!(c.last_event("STOP"), None);
    c.hostfwd_remove("n0", "tcp:127.0.0.1:5").unwrap();
    assert_eq!(
        c.last_event("STOP"),
        Some(SystemTime::UNIX_EPOCH + Duration::from_millis(100_250))
    );
    match c.hostfwd_add("n0", "tcp:127.0.0.1:5-:7000") {
        Err(QmpError::Command { class, desc, .. }) => {
            assert_eq!(class, "HMP");
            assert!(desc.starts_with("Could not set up"), "{desc}");
        }
        other => panic!("a refused forward must be an error, got {other:?}"),
    }
    c.hostfwd_add("n0", "tcp:127.0.0.1:5-:7000").unwrap();
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}
