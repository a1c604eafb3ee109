//! `ebb up` with `[pool.node_tls]`: the gateway talks mutual TLS to the
//! nodes it starts, which serve only callers holding a certificate from
//! the configured CA. Through the gateway calls are served; straight to a
//! node, a plain client and a TLS client without a certificate are refused
//! and their calls do not run; one with a certificate is served. Thread
//! and process nodes here; as root container nodes (checked against
//! `server_name`, since each has an address of its own) and VM nodes, which
//! get copies of the files inside. Certificates are generated here.
#![allow(clippy::unwrap_used)]

mod common;
mod gateway_common;

use std::path::{Path, PathBuf};
use std::process::Output;

use gateway_common::{Up, pool_extra, up_check};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// The DNS name the node certificate carries besides 127.0.0.1.
const NODE_NAME: &str = "node.ebb.test";
/// The PEM files of one test: a CA, the node's certificate and key, and
/// the gateway's (a client certificate from the same CA).
struct Pems {
    ca: PathBuf,
    node_cert: PathBuf,
    node_key: PathBuf,
    gateway_cert: PathBuf,
    gateway_key: PathBuf,
    /// A key that goes with no certificate here.
    stray_key: PathBuf,
}

fn certificates(dir: &Path) -> Pems {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let issue = |who: &str, names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        (
            write(&format!("{who}.pem"), cert.pem()),
            write(&format!("{who}.key"), key.serialize_pem()),
        )
    };
    let (node_cert, node_key) = issue("node", vec!["127.0.0.1".into(), NODE_NAME.into()]);
    let (gateway_cert, gateway_key) = issue("gateway", vec!["gateway.ebb.test".into()]);
    let stray_key = write("stray.key", KeyPair::generate().unwrap().serialize_pem());
    Pems {
        ca: write("ca.pem", ca.pem()),
        node_cert,
        node_key,
        gateway_cert,
        gateway_key,
        stray_key,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `[pool.node_tls]` for mutual TLS, as an inline table.
fn tls_table(p: &Pems, server_name: bool) -> String {
    format!(
        "node_tls = {{ ca = {:?}, cert = {:?}, key = {:?}, client_ca = {:?}, gateway_cert = {:?}, gateway_key = {:?}{} }}\n",
        s(&p.ca),
        s(&p.node_cert),
        s(&p.node_key),
        s(&p.ca),
        s(&p.gateway_cert),
        s(&p.gateway_key),
        if server_name {
            format!(", server_name = {NODE_NAME:?}")
        } else {
            String::new()
        }
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn nodes_serve_only_the_gateway_over_mutual_tls(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = certificates(dir.path());
    let up = Up::start(
        &format!("node-tls-{kind}"),
        &format!(
            "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
             [service]\nname = \"demo\"\n\
             [pool]\nkind = \"{kind}\"\ninitial = 1\nmin = 1\nmax = 1\n{}{}\
             [admission]\ndefault_deadline_ms = 60000\n",
            pool_extra(kind),
            tls_table(&p, kind == "container"),
        ),
    );
    // Through the gateway, which holds a certificate: served.
    let node = up.first_node_serving_the_gateway(kind);

    // Straight to the node: a plain client, and a TLS client without a
    // certificate, are refused.
    let incr = ["--timeout-ms", "5000", "Demo.incr", r#"{"key":"k"}"#];
    let plain = common::call(&node, &incr);
    assert!(!plain.status.success(), "{kind}: a plain client was served");
    let name_args = |mut v: Vec<String>| {
        if kind == "container" {
            // The certificate names NODE_NAME, not the container's address.
            v.extend(["--tls-server-name".to_owned(), NODE_NAME.to_owned()]);
        }
        v
    };
    let no_cert = name_args(vec!["--tls-ca".into(), s(&p.ca).into()]);
    let no_cert: Vec<&str> = no_cert.iter().map(String::as_str).chain(incr).collect();
    let without = common::call(&node, &no_cert);
    assert!(
        !without.status.success(),
        "{kind}: a client without a certificate was served"
    );

    // With the gateway's certificate: served, and the refused calls did
    // not run (the counter moves from 2 to 3).
    let with = name_args(vec![
        "--tls-ca".into(),
        s(&p.ca).into(),
        "--tls-cert".into(),
        s(&p.gateway_cert).into(),
        "--tls-key".into(),
        s(&p.gateway_key).into(),
    ]);
    let with: Vec<&str> = with.iter().map(String::as_str).chain(incr).collect();
    let served = common::call(&node, &with);
    assert!(served.status.success(), "{kind}: {served:?}");
    assert_eq!(stdout(&served), r#"{"Ok":3}"#, "{kind}");
    up.stop();
}

#[test]
fn process_nodes_serve_only_the_gateway_over_mutual_tls() {
    nodes_serve_only_the_gateway_over_mutual_tls("process");
}

#[test]
fn thread_nodes_serve_only_the_gateway_over_mutual_tls() {
    nodes_serve_only_the_gateway_over_mutual_tls("thread");
}

#[test]
fn container_nodes_serve_only_the_gateway_over_mutual_tls_as_root() {
    common::on_kind(
        "container",
        "container_nodes_serve_only_the_gateway_over_mutual_tls_as_root",
        nodes_serve_only_the_gateway_over_mutual_tls,
    );
}

#[test]
fn vm_nodes_serve_only_the_gateway_over_mutual_tls_as_root() {
    common::on_kind(
        "vm",
        "vm_nodes_serve_only_the_gateway_over_mutual_tls_as_root",
        nodes_serve_only_the_gateway_over_mutual_tls,
    );
}

/// `ebb up --check` on `config`, written to a file of its own.
fn check_config(config: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("up.toml");
    std::fs::write(&path, config).unwrap();
    up_check(&path)
}

/// `ebb up --check` loads every file and names the key of the one at
/// fault: a missing file, a key that does not go with its certificate,
/// half of the mutual keys, a container pool without a server name, and
/// a server name no certificate can carry.
#[test]
fn up_check_names_the_node_tls_key_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let p = certificates(dir.path());
    let config = |kind: &str, tls: String| {
        format!("[service]\nname = \"demo\"\n[pool]\nkind = \"{kind}\"\n{tls}")
    };
    let ok = check_config(&config("process", tls_table(&p, false)));
    assert!(ok.status.success(), "{ok:?}");
    let said = stdout(&ok);
    assert!(
        said.contains("nodes serve TLS with") && said.contains("mutual"),
        "{said}"
    );
    let ok = check_config(&config("container", tls_table(&p, true)));
    assert!(ok.status.success(), "{ok:?}");
    assert!(stdout(&ok).contains("/etc/ebb"), "{}", stdout(&ok));

    let missing = dir.path().join("missing.pem");
    let plain = |ca: &Path, cert: &Path, key: &Path| {
        format!(
            "node_tls = {{ ca = {:?}, cert = {:?}, key = {:?} }}\n",
            s(ca),
            s(cert),
            s(key)
        )
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "process",
            plain(&p.ca, &missing, &p.node_key),
            "pool.node_tls.cert",
            "cannot read",
        ),
        (
            "process",
            plain(&p.ca, &p.node_cert, &p.stray_key),
            "pool.node_tls.key",
            "do not go together",
        ),
        (
            "process",
            plain(&p.node_key, &p.node_cert, &p.node_key),
            "pool.node_tls.ca",
            "no PEM certificate",
        ),
        (
            "process",
            format!(
                "node_tls = {{ ca = {:?}, cert = {:?}, key = {:?}, client_ca = {:?} }}\n",
                s(&p.ca),
                s(&p.node_cert),
                s(&p.node_key),
                s(&p.ca)
            ),
            "pool.node_tls.gateway_cert",
            "together",
        ),
        (
            "process",
            format!(
                "node_tls = {{ cert = {:?}, key = {:?} }}\n",
                s(&p.node_cert),
                s(&p.node_key)
            ),
            "pool.node_tls.ca",
            "needs ca, cert and key",
        ),
        (
            "container",
            tls_table(&p, false),
            "pool.node_tls.server_name",
            "10.213",
        ),
        (
            "process",
            format!(
                "node_tls = {{ ca = {:?}, cert = {:?}, key = {:?}, server_name = \"bad name\" }}\n",
                s(&p.ca),
                s(&p.node_cert),
                s(&p.node_key)
            ),
            "pool.node_tls.server_name",
            "bad name",
        ),
    ];
    for (kind, tls, key, why) in cases {
        let out = check_config(&config(kind, tls.clone()));
        assert!(!out.status.success(), "{tls} passed the check");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(key) && e.contains(why), "{tls}: {e}");
    }
}
