//! A user's own node binary (examples/greeter) behind `ebb up`, whose
//! `ebb` was not built with it: the gateway learns the methods, their ids
//! and which are idempotent from the first node's `Describe`, and serves
//! them over HTTP/JSON (forwarded to the nodes as JSON), over `ebb call`
//! and to the user's own typed client.
#![allow(clippy::unwrap_used)]

mod gateway_common;

use std::path::PathBuf;

use ebb::rpc::transport::TcpClient;
use ebb_core::Nanos;
use gateway_common::{Up, gone_nodes};
use greeter::GreeterClient;

/// The greeter's node binary, built beside `ebb` (`cargo test --workspace`
/// builds every binary of the workspace before running tests).
fn greeter_node(test: &str) -> Option<PathBuf> {
    let p = std::path::Path::new(env!("CARGO_BIN_EXE_ebb")).with_file_name("greeter-node");
    if p.exists() {
        return Some(p);
    }
    ebb_testkit::skip_or_fail(
        test,
        &format!(
            "{} is not built: run `cargo build -p greeter` first (`cargo test --workspace` builds it)",
            p.display()
        ),
    );
    None
}

fn config(service: &str, nodes: usize) -> String {
    format!(
        "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nseed = 5\n\
         [service]\n{service}\n\
         [pool]\nkind = \"process\"\ninitial = {nodes}\nmin = 1\nmax = {nodes}\n\
         [balance]\npolicy = \"rr\"\n"
    )
}

fn ebb_call(up: &Up, method: &str, args: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["call", "--addr", &up.rpc.to_string(), method, args])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

#[test]
fn a_user_node_binary_is_served_over_http_rpc_and_its_own_client() {
    let test = "a_user_node_binary_is_served_over_http_rpc_and_its_own_client";
    let Some(node) = greeter_node(test) else {
        return;
    };
    let up = Up::start(
        "greeter",
        &config(&format!("command = [{:?}]", node.display().to_string()), 2),
    );
    let status = up.wait_ready(2);
    assert_eq!(status["service"], "Greeter", "{status}");

    // HTTP/JSON, translated without the greeter's types.
    let (code, body, _) = up.post("/rpc/Greeter/hello", r#"{"name":"ann"}"#, &[]);
    assert_eq!((code, body.as_str()), (200, Some("hello, ann")), "{body}");
    let (code, body, _) = up.post("/rpc/Greeter/sign", r#"{"name":"ann"}"#, &[]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["Ok"], 1, "the first signature on its node: {body}");
    let (code, body, _) = up.post("/rpc/Greeter/hello", r#"{"name": 5}"#, &[]);
    assert_eq!(
        (code, &body["error"]),
        (400, &"bad_arguments".into()),
        "{body}"
    );
    let (code, body, _) = up.post("/rpc/Greeter/bye", "{}", &[]);
    assert_eq!(code, 404, "{body}");
    assert!(body.to_string().contains("hello, sign"), "{body}");
    let (code, body, _) = up.post("/rpc/Demo/echo", r#"{"msg":"x"}"#, &[]);
    assert_eq!(
        (code, &body["error"]),
        (404, &"unknown_service".into()),
        "{body}"
    );

    // `ebb call` through the gateway: it describes the greeter and takes
    // JSON calls, which go on to the nodes as JSON.
    let out = ebb_call(&up, "Greeter.hello", r#"{"name":"bo"}"#);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#""hello, bo""#
    );
    let out = ebb_call(&up, "Greeter.sign", r#"{"name":"bo"}"#);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Ok"));

    // The user's typed client, postcard forwarded as it is; and the
    // gateway describes what it learned, idempotence included.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = TcpClient::connect(&up.rpc.to_string()).await.unwrap();
        let d = client.describe(Nanos::from_secs(10)).await.unwrap();
        assert_eq!(d.service, "Greeter");
        let hello = d.method("hello").unwrap();
        let sign = d.method("sign").unwrap();
        assert!(hello.idempotent && !sign.idempotent, "{d:?}");
        let g = GreeterClient::new(client);
        assert_eq!(g.hello("cy".into()).await.unwrap(), "hello, cy");
        let n = g.sign("cy".into()).await.unwrap().unwrap();
        assert!((1..=3).contains(&n), "three signatures over two nodes: {n}");
    });
    up.stop();
}

/// A node program that serves another service than the one named is
/// stopped at its handshake, with the reason, and never gets a call.
#[test]
fn a_node_that_describes_another_service_is_refused_at_the_handshake() {
    let test = "a_node_that_describes_another_service_is_refused_at_the_handshake";
    let Some(node) = greeter_node(test) else {
        return;
    };
    let up = Up::start(
        "greeter-misnamed",
        &config(
            &format!(
                "name = \"Tally\"\ncommand = [{:?}]",
                node.display().to_string()
            ),
            1,
        ),
    );
    let status = up.wait_until("a node refused at its handshake", |s| {
        gone_nodes(s).iter().any(|n| {
            n["reason"]
                .as_str()
                .is_some_and(|r| r.contains("refused at the handshake") && r.contains("Greeter"))
        })
    });
    assert!(status["service"].is_null(), "nothing was learned: {status}");
    let (code, body, _) = up.post("/rpc/Tally/add", r#"{"n":1}"#, &[("ebb-deadline-ms", "50")]);
    assert_eq!(
        (code, &body["may_have_run"]),
        (504, &false.into()),
        "{body}"
    );
    up.stop();
}
