//! `ebb up` with `pool.node_token_file`: the pool's nodes require a bearer
//! token and the gateway presents it, so calls through the gateway are
//! served while a caller reaching a node directly without the token is
//! refused (and its call does not run). Real `ebb up` and node processes;
//! as root, container and VM nodes too, which get a copy of the file
//! inside.
#![allow(clippy::unwrap_used)]

mod common;
mod gateway_common;

use std::path::Path;
use std::process::Output;

use gateway_common::{Up, pool_extra, up_check};

const NODE_TOKEN: &str = "node-5e1c04b7";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One pool of `kind` behind `ebb up` with node tokens: through the
/// gateway (HTTP and RPC ingress) calls are served; directly, the node
/// refuses a caller without the token, and serves one with it.
fn nodes_require_the_token(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("node.token");
    std::fs::write(&token, format!("# the pool's nodes\n{NODE_TOKEN}\n")).unwrap();
    let up = Up::start(
        &format!("node-tokens-{kind}"),
        &format!(
            "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
             [service]\nname = \"demo\"\n\
             [pool]\nkind = \"{kind}\"\ninitial = 1\nmin = 1\nmax = 1\nnode_token_file = {:?}\n{}\
             [admission]\ndefault_deadline_ms = 60000\n",
            token.display().to_string(),
            pool_extra(kind),
        ),
    );
    // Through the gateway, which presents the token: served.
    let node = up.first_node_serving_the_gateway(kind);

    // Straight to the node without the token: refused, did not run.
    let direct = common::call(
        &node,
        &["--timeout-ms", "10000", "Demo.incr", r#"{"key":"k"}"#],
    );
    assert!(
        !direct.status.success(),
        "{kind}: the node served a caller without its token"
    );
    let e = stderr(&direct);
    assert!(
        e.contains("pass --token-file FILE") && e.contains("did not run"),
        "{kind}: {e}"
    );

    // With the token, directly: served, and the refused call left no trace.
    let with = common::call(
        &node,
        &[
            "--timeout-ms",
            "10000",
            "--token-file",
            token.to_str().unwrap(),
            "Demo.incr",
            r#"{"key":"k"}"#,
        ],
    );
    assert!(with.status.success(), "{kind}: {}", stderr(&with));
    assert_eq!(
        String::from_utf8_lossy(&with.stdout).trim(),
        r#"{"Ok":3}"#,
        "{kind}"
    );
    up.stop();
}

#[test]
fn process_nodes_require_the_token_the_gateway_presents() {
    nodes_require_the_token("process");
}

#[test]
fn thread_nodes_require_the_token_the_gateway_presents() {
    nodes_require_the_token("thread");
}

#[test]
fn container_nodes_require_the_token_copied_in_as_root() {
    common::on_kind(
        "container",
        "container_nodes_require_the_token_copied_in_as_root",
        nodes_require_the_token,
    );
}

#[test]
fn vm_nodes_require_the_token_copied_in_as_root() {
    common::on_kind(
        "vm",
        "vm_nodes_require_the_token_copied_in_as_root",
        nodes_require_the_token,
    );
}

/// `ebb up --check` names the key and the file: a missing file and a file
/// of two tokens (the gateway presents one). Container and VM nodes take
/// it too, and the check says where they find their copy.
#[test]
fn a_bad_node_token_file_is_named_by_up_check() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("up.toml");
    let one = dir.path().join("one.token");
    std::fs::write(&one, format!("{NODE_TOKEN}\n")).unwrap();
    let two = dir.path().join("two.token");
    std::fs::write(&two, "a-1\nb-2\n").unwrap();
    let missing = dir.path().join("missing.token");
    let write = |kind: &str, file: &Path| {
        std::fs::write(
            &cfg,
            format!(
                "[service]\nname = \"demo\"\n[pool]\nkind = \"{kind}\"\nnode_token_file = {:?}\n",
                file.display().to_string()
            ),
        )
        .unwrap();
    };

    write("process", &one);
    let out = up_check(&cfg);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("nodes require the token in"), "{said}");

    for kind in ["container", "vm"] {
        write(kind, &one);
        let out = up_check(&cfg);
        assert!(out.status.success(), "{kind}: {}", stderr(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("/etc/ebb/node.token"), "{kind}: {said}");
    }

    for (kind, file, why) in [
        ("process", &missing, "cannot read"),
        ("process", &two, "exactly one"),
        ("container", &missing, "cannot read"),
    ] {
        write(kind, file);
        let out = up_check(&cfg);
        assert!(!out.status.success(), "{kind} {file:?} passed the check");
        let e = stderr(&out);
        assert!(
            e.contains("pool.node_token_file")
                && e.contains(file.to_str().unwrap())
                && e.contains(why),
            "{e}"
        );
    }
}
