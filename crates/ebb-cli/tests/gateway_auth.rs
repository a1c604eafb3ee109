//! Who may reach what through `ebb up`: bearer tokens on the HTTP and RPC
//! ingress and on `POST /pool`, the admin endpoints on their own address,
//! and a bound on the requests one caller may have in flight (HTTP and
//! RPC).
#![allow(clippy::unwrap_used)]

mod gateway_common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use gateway_common::{Up, any_node, http, metric, poll_status, status, up_check};

const ALICE: &str = "alice-7f3a9c";
const BOB: &str = "bob-21d0e4";
const UNAUTHENTICATED: &str = "ebb_gateway_unauthenticated_total";
const CALLER_REFUSALS: &str = "ebb_gateway_caller_refusals_total";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A gateway with its RPC ingress on `rpc`, HTTP on loopback, the admin
/// endpoints on their own address, one process node (two at most), one
/// call in flight per caller, and the callers' tokens in `token_file`.
fn auth_config(rpc: &str, token_file: &Path) -> String {
    format!(
        "[gateway]\nrpc = \"{rpc}\"\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [service]\nname = \"demo\"\n\
         [pool]\nkind = \"process\"\ninitial = 1\nmin = 1\nmax = 2\n\
         [admission]\nmax_in_flight_per_caller = 1\n\
         [auth]\ntoken_file = {:?}\n",
        token_file.display().to_string()
    )
}

/// Alice's and Bob's tokens, one a line, in `dir`.
fn write_token_file(dir: &Path) -> std::path::PathBuf {
    let tokens = dir.join("tokens.txt");
    std::fs::write(&tokens, format!("# callers\n{ALICE}\n{BOB}\n")).unwrap();
    tokens
}

/// The counter `name` for one ingress (`http` or `rpc`) in the admin
/// address's `/metrics`.
fn counter(admin: SocketAddr, name: &str, ingress: &str) -> u64 {
    metric(admin, &format!("{name}{{ingress=\"{ingress}\"}}"))
}

/// Waits until one of the gateway's nodes has a call in flight.
fn wait_for_a_call_on_a_node(up: &Up, admin: SocketAddr, whose: &str) {
    up.wait_until_at(admin, &format!("{whose} reach a node"), |s| {
        any_node(s, |n| n["in_flight"] == 1)
    });
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tokens_admin_address_and_per_caller_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write_token_file(dir.path());
    let up = Up::start("auth", &auth_config("127.0.0.1:0", &tokens));
    let admin = up.printed_addr("admin listening on ");
    // A node not ready by then is no failure: the gateway holds the first
    // calls until one is.
    let _ = poll_status(admin, |s| any_node(s, |n| n["state"] == "ready"));

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
    assert_eq!(counter(admin, UNAUTHENTICATED, "http"), 3);
    assert_eq!(counter(admin, UNAUTHENTICATED, "rpc"), 0);

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
    wait_for_a_call_on_a_node(&up, admin, "alice's sleep");
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
    assert_eq!(counter(admin, CALLER_REFUSALS, "http"), 1);
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
    assert_success(&up_check(&cfg));
    std::fs::write(&tokens, "# none\n").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[service]\nname = \"demo\"\n[auth]\ntoken_file = {:?}\n",
            tokens.display().to_string()
        ),
    )
    .unwrap();
    let out = up_check(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("auth.token_file") && err.contains("no token"),
        "{err}"
    );
}

/// `ebb call` against the gateway's RPC ingress at `rpc`, with the token
/// in `token_file` if given.
fn ebb_call(rpc: SocketAddr, token_file: Option<&Path>, method: &str, args: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ebb"));
    cmd.args(["call", "--addr", &rpc.to_string(), "--timeout-ms", "30000"]);
    if let Some(f) = token_file {
        cmd.arg("--token-file").arg(f);
    }
    cmd.arg(method).arg(args).output().unwrap()
}

fn failed_without_running(out: &Output, why: &str) -> String {
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
    let tokens = write_token_file(dir.path());
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
    let up = Up::start("rpc-auth", &auth_config("0.0.0.0:0", &tokens));
    let admin = up.printed_addr("admin listening on ");
    let echo = r#"{"msg":"hi"}"#;

    // No token, a wrong one (a prefix of alice's): refused, typed, did not run.
    let out = ebb_call(up.rpc, None, "Demo.echo", echo);
    let err = failed_without_running(&out, "bearer token");
    assert!(err.contains("--token-file"), "{err}");
    let out = ebb_call(up.rpc, Some(&wrong), "Demo.incr", r#"{"key":"k"}"#);
    let err = failed_without_running(&out, "bearer token");
    assert!(err.contains("does not accept the token"), "{err}");
    // Counted in /metrics under the RPC ingress (each call's handshake, and
    // any request it sent anyway), none under HTTP.
    assert!(counter(admin, UNAUTHENTICATED, "rpc") >= 2);
    assert_eq!(counter(admin, UNAUTHENTICATED, "http"), 0);

    // Alice's token: served.
    let out = ebb_call(up.rpc, Some(&alice), "Demo.echo", echo);
    assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "\"hi\"");

    // One call in flight is alice's bound over RPC too; bob is served.
    let sleeper = {
        let (rpc, alice) = (up.rpc, alice.clone());
        std::thread::spawn(move || ebb_call(rpc, Some(&alice), "Demo.sleep", r#"{"millis": 3000}"#))
    };
    wait_for_a_call_on_a_node(&up, admin, "alice's sleep");
    let out = ebb_call(up.rpc, Some(&alice), "Demo.incr", r#"{"key":"a"}"#);
    let err = failed_without_running(&out, "calls executing");
    assert!(err.contains("retry when some end"), "{err}");
    assert!(
        counter(admin, CALLER_REFUSALS, "rpc") >= 1,
        "the refusal is counted"
    );
    assert_eq!(counter(admin, CALLER_REFUSALS, "http"), 0);
    let out = ebb_call(up.rpc, Some(&bob), "Demo.echo", echo);
    assert!(
        out.status.success(),
        "bob has his own bound: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_success(&sleeper.join().unwrap());
    // A resend of the idempotent sleep may still run at the node (the
    // client ended with the first copy's reply); alice's slot comes back
    // once nothing of hers is in flight.
    up.wait_until_at(admin, "the nodes go idle", |s| {
        !any_node(s, |n| n["in_flight"] != 0)
    });
    // Alice's refused incr did not run: the first incr of "a" counts 1.
    let out = ebb_call(up.rpc, Some(&alice), "Demo.incr", r#"{"key":"a"}"#);
    assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"Ok":1}"#);
    up.stop();
}
