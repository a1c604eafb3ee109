//! Who may reach what through `ebb up`: bearer tokens on the HTTP ingress
//! and on `POST /pool`, the admin endpoints on their own address, and a
//! bound on the requests one caller may have in flight.
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
    assert_eq!(metric(admin, "ebb_gateway_unauthenticated_total "), 3);

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
    assert_eq!(metric(admin, "ebb_gateway_caller_refusals_total "), 1);
    let (code, _, _) = up.post("/rpc/Demo/echo", echo, &[("Authorization", &bearer(ALICE))]);
    assert_eq!(code, 200, "alice's slot came back");
    up.stop();
}

/// Tokens with the RPC ingress open to the network would leave a way
/// around them: refused, naming the key.
#[test]
fn tokens_require_a_loopback_rpc_ingress() {
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
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("gateway.rpc") && err.contains("loopback"),
        "{err}"
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
