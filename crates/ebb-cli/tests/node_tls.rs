//! `ebb node --tls-cert/--tls-key [--tls-client-ca]` with `ebb call
//! --tls-ca [--tls-cert --tls-key]`, certificates generated here.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// Writes a CA and two certificates it signs (the node's, for 127.0.0.1,
/// and a client's) as PEM files in `dir`.
fn certificates(dir: &Path) -> [PathBuf; 5] {
    let ca_key = KeyPair::generate().expect("a key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca = ca.self_signed(&ca_key).expect("a CA certificate");
    let issue = |names: Vec<String>| {
        let key = KeyPair::generate().expect("a key");
        let cert = CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &ca, &ca_key)
            .expect("a certificate");
        (cert.pem(), key.serialize_pem())
    };
    let (node_cert, node_key) = issue(vec!["127.0.0.1".into()]);
    let (client_cert, client_key) = issue(vec!["client.test".into()]);
    let files = [
        ("ca.pem", ca.pem()),
        ("node.pem", node_cert),
        ("node.key", node_key),
        ("client.pem", client_cert),
        ("client.key", client_key),
    ];
    files.map(|(name, pem)| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("a temporary file");
        path
    })
}

fn ebb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(args)
        .output()
        .expect("the ebb binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn calls_over_mutual_tls_work_only_with_a_client_certificate() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let [ca, cert, key, client_cert, client_key] = certificates(dir.path());
    let node = common::ebb(&[
        "node",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        s(&cert),
        "--tls-key",
        s(&key),
        "--tls-client-ca",
        s(&ca),
    ]);
    // An incr of "a" by a client that presents its certificate.
    let incr_with_cert = || {
        ebb(&[
            "call",
            "--addr",
            &node.addr,
            "--tls-ca",
            s(&ca),
            "--tls-cert",
            s(&client_cert),
            "--tls-key",
            s(&client_key),
            "Demo.incr",
            r#"{"key":"a"}"#,
        ])
    };
    let with_cert = incr_with_cert();
    assert!(with_cert.status.success(), "{with_cert:?}");
    assert_eq!(
        String::from_utf8_lossy(&with_cert.stdout).trim(),
        r#"{"Ok":1}"#
    );

    let without = ebb(&[
        "call",
        "--addr",
        &node.addr,
        "--tls-ca",
        s(&ca),
        "--timeout-ms",
        "1000",
        "Demo.incr",
        r#"{"key":"a"}"#,
    ]);
    assert!(
        !without.status.success(),
        "a client without a certificate was served"
    );
    // The error says what the node may be asking for.
    let told = String::from_utf8_lossy(&without.stderr);
    assert!(
        told.contains("it did not run") && told.contains("pass --tls-cert and --tls-key"),
        "{told}"
    );
    let plain = ebb(&[
        "call",
        "--addr",
        &node.addr,
        "--timeout-ms",
        "1000",
        "Demo.incr",
        r#"{"key":"a"}"#,
    ]);
    assert!(!plain.status.success(), "a plain client was served");
    let told = String::from_utf8_lossy(&plain.stderr);
    assert!(
        told.contains("it did not run") && told.contains("pass --tls-ca"),
        "{told}"
    );

    // Neither refused call ran: the counter moves from 1 to 2.
    let again = incr_with_cert();
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), r#"{"Ok":2}"#);
}

#[test]
fn a_bad_certificate_file_is_named_before_the_node_listens() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let [_, cert, _, _, _] = certificates(dir.path());
    let missing = dir.path().join("no-such.key");
    let out = ebb(&[
        "node",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        s(&cert),
        "--tls-key",
        s(&missing),
    ]);
    assert!(!out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening on"),
        "{out:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such.key") && err.contains("private key"),
        "{err}"
    );

    let out = ebb(&[
        "call",
        "--addr",
        "127.0.0.1:1",
        "--tls-ca",
        s(&missing),
        "Demo.echo",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no-such.key"),
        "{err}"
    );
}
