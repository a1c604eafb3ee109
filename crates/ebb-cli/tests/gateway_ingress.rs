//! The gateway's two ingresses give the same answers: every demo method
//! through ebb RPC (the generated client pointed at the gateway as at one
//! node, and `ebb call`) and through HTTP/JSON; bad inputs get the
//! documented errors; a pool of thread nodes serves as a pool of process
//! nodes does; Ctrl-C leaves no node behind.
#![allow(clippy::unwrap_used)]

mod gateway_common;

use ebb::rpc::service::CallOptions;
use ebb::rpc::transport::TcpClient;
use ebb_core::Nanos;
use ebb_demo::DemoClient;
use gateway_common::{Up, up_check};
use serde_json::{Value, json};

fn config(kind: &str, nodes: usize) -> String {
    format!(
        "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nseed = 7\n\
         [service]\nname = \"demo\"\n\
         [pool]\nkind = \"{kind}\"\ninitial = {nodes}\nmin = 1\nmax = 4\n\
         [balance]\npolicy = \"rr\"\n\
         [admission]\nenabled = true\ndefault_deadline_ms = 10000\n"
    )
}

/// The same calls through both ingresses; returns (rpc, http) answers.
fn both_ways(up: &Up) -> Vec<(String, Value, Value)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = CallOptions::default().with_timeout(Nanos::from_secs(10));
    let rpc: Vec<Value> = rt.block_on(async {
        let client = TcpClient::connect(&up.rpc.to_string()).await.unwrap();
        let demo = DemoClient::new(client).with_options(opts);
        vec![
            json!(demo.echo("hi".into()).await.unwrap()),
            json!(demo.work(100).await.unwrap()),
            json!(demo.sleep(5).await.unwrap()),
            json!(demo.incr("rpc-1".into()).await.unwrap()),
            json!(demo.get("nothing-here".into()).await.unwrap()),
            json!(demo.put("k".into(), "v".into()).await.unwrap()),
        ]
    });
    let calls = [
        ("echo", json!({"msg": "hi"})),
        ("work", json!({"micros": 100})),
        ("sleep", json!({"millis": 5})),
        ("incr", json!({"key": "http-1"})),
        ("get", json!({"key": "nothing-here"})),
        ("put", json!({"key": "k", "value": "v"})),
    ];
    calls
        .iter()
        .zip(rpc)
        .map(|((m, args), r)| {
            let (code, body, _) = up.post(&format!("/rpc/Demo/{m}"), &args.to_string(), &[]);
            assert_eq!(code, 200, "Demo.{m}: {body}");
            ((*m).to_owned(), r, body)
        })
        .collect()
}

fn same_answers_and_errors(kind: &str) {
    let up = Up::start(&format!("ingress-{kind}"), &config(kind, 2));
    up.wait_ready(2);
    for (method, rpc, http) in both_ways(&up) {
        assert_eq!(
            rpc, http,
            "Demo.{method} answers differ between RPC and HTTP"
        );
    }
    // `ebb call` against the gateway, as against one node.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args([
            "call",
            "--addr",
            &up.rpc.to_string(),
            "Demo.incr",
            r#"{"key":"cli"}"#,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"Ok":1}"#);

    // Documented errors: (path, body, headers) and the status and kind.
    let no_headers: &[(&str, &str)] = &[];
    let cases = [
        ("/rpc/Demo/nope", "{}", no_headers, 404, "unknown_method"),
        ("/rpc/Nope/echo", "{}", no_headers, 404, "unknown_service"),
        (
            "/rpc/Demo/echo",
            r#"{"msg": 5}"#,
            no_headers,
            400,
            "bad_arguments",
        ),
        ("/rpc/Demo/echo", "{", no_headers, 400, "bad_request"),
        (
            "/rpc/Demo/echo",
            "{}",
            &[("ebb-deadline-ms", "soon")],
            400,
            "bad_request",
        ),
    ];
    for (path, request, headers, want_code, want_kind) in cases {
        let (code, body, _) = up.post(path, request, headers);
        assert_eq!(
            (code, body["error"].as_str()),
            (want_code, Some(want_kind)),
            "POST {path} {request}: {body}"
        );
    }
    let (code, body, _) = up.post("/pool", r#"{"target": 99}"#, &[]);
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("max = 4"),
        "{body}"
    );
    let (code, body, _) = up.post("/pool", r#"{"target": 2, "extra": 1}"#, &[]);
    assert_eq!(
        (code, body["error"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `extra`"),
        "{body}"
    );

    // Errors no handler of the gateway writes are JSON too, with a
    // stable kind (and `Allow` on a 405).
    for (method, path, allow) in [
        ("GET", "/pool", "POST"),
        ("POST", "/status", "GET"),
        ("DELETE", "/metrics", "GET"),
        ("GET", "/rpc/Demo/echo", "POST"),
    ] {
        let (code, body, head) = gateway_common::http(up.http, method, path, "", &[]);
        assert_eq!(
            (code, body["error"].as_str()),
            (405, Some("method_not_allowed")),
            "{method} {path}: {head}\n{body}"
        );
        let allowed = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("allow: ")
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header in {head}"));
        assert!(
            allowed.to_ascii_uppercase().contains(allow),
            "{method} {path}: Allow {allowed}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let (code, body, _) = gateway_common::http(up.http, "GET", "/nothing", "", &[]);
    assert_eq!(
        (code, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let huge = format!(r#"{{"target": 1, "pad": "{}"}}"#, "x".repeat(8_192));
    let (code, body, _) = up.post("/pool", &huge, &[]);
    assert_eq!(
        (code, body["error"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );

    // Status names every node with what the docs promise.
    let status = up.status();
    assert_eq!(status["policies"]["balance"], "rr");
    for n in status["nodes"].as_array().unwrap() {
        for key in [
            "id",
            "kind",
            "address",
            "state",
            "in_flight",
            "reported_queue",
            "ewma_latency_ms",
            "cost_per_sec_micros",
            "started_at_unix_ms",
        ] {
            assert!(n.get(key).is_some(), "node without {key}: {n}");
        }
        assert_eq!(n["kind"], kind);
    }
    let (code, metrics, _) = gateway_common::http(up.http, "GET", "/metrics", "", &[]);
    assert_eq!(code, 200);
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains(r#"ebb_gateway_requests_total{method="Demo.echo",outcome="ok"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"ebb_gateway_nodes{{state="ready",kind="{kind}"}} 2"#
        )),
        "{text}"
    );

    let out = up.stop();
    let gone = out.iter().filter(|l| l.contains("-> gone")).count();
    assert_eq!(gone, 2, "every node reported gone at shutdown: {out:?}");
    // A script reads the addresses off stdout: a node's own `node listening
    // on 0.0.0.0:PORT` (a container's, say) must not be among them.
    let listening: Vec<_> = out.iter().filter(|l| l.contains("listening on")).collect();
    assert_eq!(
        listening.len(),
        2,
        "ebb up's stdout announces its own addresses only: {out:?}"
    );
}

#[test]
fn process_pool_answers_rpc_and_http_alike() {
    same_answers_and_errors("process");
}

#[test]
fn thread_pool_answers_rpc_and_http_alike() {
    same_answers_and_errors("thread");
}

#[test]
fn check_validates_without_starting_and_names_bad_keys() {
    let guard = tempfile::Builder::new()
        .prefix("ebb-up-check-")
        .suffix(".toml")
        .tempfile()
        .unwrap();
    let good = guard.path();
    std::fs::write(good, config("process", 2)).unwrap();
    let out = up_check(good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    std::fs::write(good, config("pod", 2)).unwrap();
    let out = up_check(good);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("pool.kind")
            && err.contains("\"pod\"")
            && err.contains("thread, process, container, vm"),
        "{err}"
    );
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/ebb-up.toml");
    let out = up_check(std::path::Path::new(example));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Container nodes need root (namespaces, cgroups) and busybox-static for
/// their root file system; without them the test says so, and fails in CI.
#[test]
fn container_pool_answers_rpc_and_http_alike() {
    const NAME: &str = "container_pool_answers_rpc_and_http_alike";
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let busybox = std::path::Path::new("/bin/busybox").exists();
    if !(root && busybox) {
        let why = "needs root and busybox-static";
        ebb_testkit::skip_or_fail(NAME, why);
        return;
    }
    same_answers_and_errors("container");
}
