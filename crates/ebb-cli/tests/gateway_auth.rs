//! Who may reach what through `ebb up`: bearer tokens on the HTTP and RPC
//! ingress and on `POST /pool`, the admin endpoints on their own address,
//! and a bound on the requests one caller may have in flight (HTTP and
//! RPC).
#![allow(clippy::unwrap_used)]

mod gateway_common;

use std::net::SocketAddr;

use gateway_common::{MAX_POLLS, POLL_PAUSE, Up, http};
use serde_json::Value;

const ALICE: &str = "alice-7f3a9c";
const BOB: &str = "bob-21d0e4";

fn admin_addr(up: &Up) -> SocketAddr {
    for _ in 0..MAX_POLLS {
        let found = up
            .output()
            .iter()
            .find_map(|l| l.strip_prefix("admin listening on ")?.trim().parse().ok());
        if let Some(a) = found {
            return a;
        }
        std::thread::sleep(POLL_PAUSE);
    }
    panic!("no admin address printed: {:?}", up.output());
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn metric(admin: SocketAddr, name: &str) -> u64 {
    let (_, body, _) = http(admin, "GET", "/metrics", "", &[]);
    let text = body.as_str().unwrap().to_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn status(admin: SocketAddr) -> Value {
    let (code, body, _) = http(admin, "GET", "/status", "", &[]);
    assert_eq!(code, 200, "{body}");
    body
}

#[test]
fn tokens_admin_address_and_per_caller_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.txt");
    std::fs::write(&tokens, format!("# callers\n{ALICE}\n{BOB}\n")).unwrap();
    let up = Up::start(
        "auth",
        &format!(
            "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
             [service]\nname = \"demo\"\n\
             [pool]\nkind = \"process\"\ninitial = 1\nmin = 1\nmax = 2\n\
             [admission]\nmax_in_flight_per_caller = 1\n\
             [auth]\ntoken_file = {:?}\n",
            tokens.display().to_string()
        ),
    );
    let admin = admin_addr(&up);
    for _ in 0..MAX_POLLS {
        let s = status(admin);
        if s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["state"] == "ready")
        {
            break;
        }
        std::thread::sleep(POLL_PAUSE);
    }

    // Calls need a valid token.
    let echo = r#"{"msg":"hi"}"#;
    let (code, body, head) = up.post("/rpc/Demo/echo", echo, &[]);
    assert_eq!(
        (code, &body["error"]),
        (401, &"unauthenticated".into()),
        "{head}"
    );
    let (code, _, _) = up.post("/rpc/Demo/echo", echo, &[("Authorization", "Bearer alice")]);
    assert_eq!(code, 401, "a prefix of a token is no token");
    let (code, body, _) = up.post("/rpc/Demo/echo", echo, &[("Authorization", &bearer(ALICE))]);
    assert_eq!((code, body.as_str()), (200, Some("hi")), "{body}");

    // The admin endpoints moved to their own address; changing the pool
    // needs a token too.
    let (code, _, _) = http(up.http, "GET", "/status", "", &[]);
    assert_eq!(code, 404, "/status is on the admin address only");
    let s = status(admin);
    assert_eq!(s["policies"]["authentication"], "bearer", "{s}");
    let (code, _, _) = http(admin, "POST", "/pool", r#"{"target": 2}"#, &[]);
    assert_eq!(code, 401);
    let (code, body, _) = http(
        admin,
        "POST",
        "/pool",
        r#"{"target": 1}"#,
        &[("Authorization", &bearer(BOB))],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        metric(
            admin,
            r#"ebb_gateway_unauthenticated_total{ingress="http"} "#
        ),
        3
    );
    assert_eq!(
        metric(
            admin,
            r#"ebb_gateway_unauthenticated_total{ingress="rpc"} "#
        ),
        0
    );

    // One call in flight for alice is her bound; bob is not affected.
    let http_addr = up.http;
    let long = std::thread::spawn(move || {
        http(
            http_addr,
            "POST",
            "/rpc/Demo/sleep",
            r#"{"millis": 3000}"#,
            &[
                ("Authorization", &bearer(ALICE)),
                ("ebb-deadline-ms", "30000"),
            ],
        )
    });
    let mut busy = false;
    for _ in 0..MAX_POLLS {
        let s = status(admin);
        busy = s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["in_flight"] == 1);
        if busy {
            break;
        }
        std::thread::sleep(POLL_PAUSE);
    }
    assert!(busy, "alice's sleep never reached a node");
    let (code, body, _) = up.post("/rpc/Demo/echo", echo, &[("Authorization", &bearer(ALICE))]);
    assert_eq!(
        (code, &body["error"]),
        (503, &"overloaded".into()),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("in flight"),
        "{body}"
    );
    let (code, _, _) = up.post("/rpc/Demo/echo", echo, &[("Authorization", &bearer(BOB))]);
    assert_eq!(code, 200, "bob has his own bound");
    assert_eq!(long.join().unwrap().0, 200);
    assert_eq!(
        metric(
            admin,
            r#"ebb_gateway_caller_refusals_total{ingress="http"} "#
        ),
        1
    );
    let (code, _, _) = up.post("/rpc/Demo/echo", echo, &[("Authorization", &bearer(ALICE))]);
    assert_eq!(code, 200, "alice's slot came back");
    up.stop();
}

/// With tokens the RPC ingress checks them too, so it may listen on any
/// address; a token file without a token is refused, naming the key.
#[test]
fn tokens_let_the_rpc_ingress_face_the_network_and_an_empty_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.txt");
    std::fs::write(&tokens, format!("{ALICE}\n")).unwrap();
    let cfg = dir.path().join("up.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nrpc = \"0.0.0.0:7000\"\n[service]\nname = \"demo\"\n[auth]\ntoken_file = {:?}\n",
            tokens.display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["up", "--check"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&tokens, "# none\n").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[service]\nname = \"demo\"\n[auth]\ntoken_file = {:?}\n",
            tokens.display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["up", "--check"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("auth.token_file") && err.contains("no token"),
        "{err}"
    );
}

/// `ebb call` against the gateway's RPC ingress, with the token in
/// `token_file` if given.
fn ebb_call(
    up: &Up,
    token_file: Option<&std::path::Path>,
    method: &str,
    args: &str,
) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"));
    cmd.args([
        "call",
        "--addr",
        &up.rpc.to_string(),
        "--timeout-ms",
        "30000",
    ]);
    if let Some(f) = token_file {
        cmd.arg("--token-file").arg(f);
    }
    cmd.arg(method).arg(args).output().unwrap()
}

fn failed_without_running(out: &std::process::Output, why: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("did not run") && err.contains(why), "{err}");
    err
}

/// The RPC ingress takes the same tokens as HTTP, in the handshake, and
/// bounds each caller's calls in flight: `ebb up` + `ebb call`, real
/// processes.
#[test]
fn the_rpc_ingress_takes_bearer_tokens_and_bounds_each_caller() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.txt");
    std::fs::write(&tokens, format!("# callers\n{ALICE}\n{BOB}\n")).unwrap();
    let token_of = |name: &str, token: &str| {
        let f = dir.path().join(name);
        std::fs::write(&f, format!("{token}\n")).unwrap();
        f
    };
    let (alice, bob, wrong) = (
        token_of("alice", ALICE),
        token_of("bob", BOB),
        token_of("wrong", "alice"),
    );
    // Not loopback: with tokens, the RPC ingress may face the network.
    let up = Up::start(
        "rpc-auth",
        &format!(
            "[gateway]\nrpc = \"0.0.0.0:0\"\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
             [service]\nname = \"demo\"\n\
             [pool]\nkind = \"process\"\ninitial = 1\nmin = 1\nmax = 2\n\
             [admission]\nmax_in_flight_per_caller = 1\n\
             [auth]\ntoken_file = {:?}\n",
            tokens.display().to_string()
        ),
    );
    let admin = admin_addr(&up);
    let echo = r#"{"msg":"hi"}"#;

    // No token, a wrong one (a prefix of alice's): refused, typed, did not run.
    let out = ebb_call(&up, None, "Demo.echo", echo);
    let err = failed_without_running(&out, "bearer token");
    assert!(err.contains("--token-file"), "{err}");
    let out = ebb_call(&up, Some(&wrong), "Demo.incr", r#"{"key":"k"}"#);
    let err = failed_without_running(&out, "bearer token");
    assert!(err.contains("does not accept the token"), "{err}");
    // Counted in /metrics under the RPC ingress (each call's handshake, and
    // any request it sent anyway), none under HTTP.
    let rpc_unauthenticated = r#"ebb_gateway_unauthenticated_total{ingress="rpc"} "#;
    assert!(metric(admin, rpc_unauthenticated) >= 2);
    assert_eq!(
        metric(
            admin,
            r#"ebb_gateway_unauthenticated_total{ingress="http"} "#
        ),
        0
    );

    // Alice's token: served.
    let out = ebb_call(&up, Some(&alice), "Demo.echo", echo);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "\"hi\"");

    // One call in flight is alice's bound over RPC too; bob is served.
    let sleeper = {
        let (up_rpc, alice) = (up.rpc, alice.clone());
        std::thread::spawn(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
                .args([
                    "call",
                    "--addr",
                    &up_rpc.to_string(),
                    "--timeout-ms",
                    "30000",
                ])
                .arg("--token-file")
                .arg(&alice)
                .args(["Demo.sleep", r#"{"millis": 3000}"#])
                .output()
                .unwrap()
        })
    };
    let mut busy = false;
    for _ in 0..MAX_POLLS {
        busy = status(admin)["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["in_flight"] == 1);
        if busy {
            break;
        }
        std::thread::sleep(POLL_PAUSE);
    }
    assert!(busy, "alice's sleep never reached a node");
    let out = ebb_call(&up, Some(&alice), "Demo.incr", r#"{"key":"a"}"#);
    let err = failed_without_running(&out, "calls executing");
    assert!(err.contains("retry when some end"), "{err}");
    let rpc_caller = r#"ebb_gateway_caller_refusals_total{ingress="rpc"} "#;
    assert!(metric(admin, rpc_caller) >= 1, "the refusal is counted");
    assert_eq!(
        metric(
            admin,
            r#"ebb_gateway_caller_refusals_total{ingress="http"} "#
        ),
        0
    );
    let out = ebb_call(&up, Some(&bob), "Demo.echo", echo);
    assert!(
        out.status.success(),
        "bob has his own bound: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let slept = sleeper.join().unwrap();
    assert!(
        slept.status.success(),
        "{}",
        String::from_utf8_lossy(&slept.stderr)
    );
    // A resend of the idempotent sleep may still run at the node (the
    // client ended with the first copy's reply); alice's slot comes back
    // once nothing of hers is in flight.
    let mut idle = false;
    for _ in 0..MAX_POLLS {
        idle = status(admin)["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["in_flight"] == 0);
        if idle {
            break;
        }
        std::thread::sleep(POLL_PAUSE);
    }
    assert!(idle, "the nodes never went idle");
    // Alice's refused incr did not run: the first incr of "a" counts 1.
    let out = ebb_call(&up, Some(&alice), "Demo.incr", r#"{"key":"a"}"#);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"Ok":1}"#);
    up.stop();
}
