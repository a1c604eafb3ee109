//! `ebb sim` keeps its command-line contract.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn ebb(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(args)
        .output()
        .unwrap()
}

/// The JSON object a successful `ebb sim ... --json` printed.
fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn json_prints_one_object_with_the_contract_fields() {
    let out = ebb(&[
        "sim",
        "--balance",
        "p2c",
        "--nodes",
        "4",
        "--load",
        "0.5",
        "--service",
        "exp:1",
        "--requests",
        "20000",
        "--seed",
        "3",
        "--gateways",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in [
        "mean_response",
        "mean_wait",
        "p50",
        "p99",
        "p999",
        "throughput",
        "dropped_fraction",
        "utilization",
        "node_seconds",
        "events",
        "events_per_sec",
    ] {
        assert!(
            v[key].is_number(),
            "{key} missing or not a number in {text}"
        );
    }
}

#[test]
fn bad_input_names_the_flag_and_the_accepted_forms() {
    for (flag, value, accepted) in [
        ("--service", "gamma:2", "lognormal:MEAN,CV"),
        ("--arrivals", "bursty", "mmpp:R1,R2,S12,S21"),
        ("--balance", "fastest", "central"),
        ("--sweep", "nodes=1:2:1", "load=FROM:TO:STEP"),
        ("--speeds", "0,1", "uniform:LO,HI"),
    ] {
        let out = ebb(&["sim", flag, value]);
        assert!(!out.status.success(), "{flag} {value} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(flag) && err.contains(value) && err.contains(accepted),
            "{err}"
        );
    }
}

#[test]
fn sweep_writes_an_svg_with_a_line_per_policy_and_theory() {
    let guard = tempfile::Builder::new()
        .prefix("ebb-sim-cli-")
        .tempdir()
        .unwrap();
    let dir = guard.path();
    let svg = dir.join("load.svg");
    let out = ebb(&[
        "sim",
        "--sweep",
        "load=0.5:0.7:0.1",
        "--balance",
        "random,central",
        "--nodes",
        "4",
        "--requests",
        "5000",
        "--jobs",
        "1",
        "--plot",
        svg.to_str().unwrap(),
        "--json",
    ]);
    let v = json_of(&out);
    assert_eq!(v["runs"].as_array().unwrap().len(), 6);
    let text = std::fs::read_to_string(&svg).unwrap();
    // Two panels × (2 policies + 2 theory curves).
    assert_eq!(text.matches("<polyline").count(), 8);
    assert!(text.contains("M/M/4") && text.contains("M/M/1"));
}

#[test]
fn scale_adds_the_scaling_fields_and_writes_a_timeline() {
    let guard = tempfile::Builder::new()
        .prefix("ebb-sim-scale-")
        .tempdir()
        .unwrap();
    let dir = guard.path();
    let counts = dir.join("counts.txt");
    let text: String = [(20, 100), (40, 600), (40, 100)]
        .iter()
        .flat_map(|(n, r)| (0..*n).map(move |_| format!("{r}\n")))
        .collect();
    std::fs::write(&counts, text).unwrap();
    let timeline = dir.join("t.csv");
    let out = ebb(&[
        "sim",
        "--scale",
        "queue",
        "--arrivals",
        &format!("trace:{},counts", counts.display()),
        "--service",
        "exp:0.02",
        "--objective",
        "0.2",
        "--boot-time",
        "2",
        "--nodes",
        "2",
        "--timeline",
        timeline.to_str().unwrap(),
        "--json",
    ]);
    let v = json_of(&out);
    for key in [
        "node_seconds",
        "slo_miss_fraction",
        "dropped_fraction",
        "p99",
        "scale_actions",
        "min_nodes",
        "max_nodes",
        "mean_nodes",
    ] {
        assert!(v[key].is_number(), "{key} missing in {v}");
    }
    // The trace is replayed in its own time: 100 s, 30,000 arrivals.
    assert_eq!(v["requests"], 30_000);
    assert!(v["max_nodes"].as_u64().unwrap() > 10, "{v}");
    let csv = std::fs::read_to_string(&timeline).unwrap();
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("t,arrivals,completions,drops,booting,ready,draining,queued")
    );
    assert!(lines.count() >= 99, "one row per 1 s tick");
}

#[test]
fn a_bad_scale_policy_names_the_input_and_the_accepted_forms() {
    let out = ebb(&["sim", "--scale", "hpa:util=x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hpa:util=x"), "{err}");
    for name in ["hpa", "kpa", "queue", "none"] {
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn offered_load_at_or_above_one_warns_that_there_is_no_steady_state() {
    let out = ebb(&[
        "sim",
        "--nodes",
        "2",
        "--load",
        "1.1",
        "--requests",
        "2000",
        "--json",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no steady state"), "{err}");
    let ok = ebb(&[
        "sim",
        "--nodes",
        "2",
        "--load",
        "0.5",
        "--requests",
        "2000",
        "--json",
    ]);
    assert!(!String::from_utf8_lossy(&ok.stderr).contains("steady state"));
}

#[test]
fn a_one_request_run_prints_no_nan() {
    let out = ebb(&["sim", "--requests", "1", "--nodes", "1"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("NaN"), "{text}");
    let out = ebb(&["sim", "--requests", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["throughput"].is_number() && v["utilization"].is_number(),
        "{v}"
    );
}

/// Runs `ebb ARGS` with a terminal (a pseudo-terminal from util-linux's
/// `script`) as its stdout and stderr, and returns what the terminal
/// showed; `None` when `script` is missing.
fn on_a_terminal(args: &[&str]) -> Option<String> {
    if !std::path::Path::new("/usr/bin/script").exists() {
        return None;
    }
    let line = std::iter::once(env!("CARGO_BIN_EXE_ebb"))
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("/usr/bin/script")
        .args(["-qec", &line, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{line}: {text}");
    Some(text)
}

#[test]
fn a_long_run_shows_progress_on_a_terminal_and_never_with_json_or_a_pipe() {
    // Long enough for the engine to report progress (every 2^20 events).
    let run = [
        "sim",
        "--nodes",
        "10",
        "--load",
        "0.5",
        "--requests",
        "600000",
    ];
    let Some(shown) = on_a_terminal(&run) else {
        ebb_testkit::skip_or_fail(
            "a_long_run_shows_progress_on_a_terminal_and_never_with_json_or_a_pipe",
            "/usr/bin/script (util-linux) is missing to give the run a terminal",
        );
        return;
    };
    assert!(shown.contains("/600000 requests ("), "a bar: {shown}");
    let scaled = [&run[..], &["--scale", "queue", "--max-nodes", "20"]].concat();
    let shown = on_a_terminal(&scaled).unwrap();
    assert!(shown.contains("/600000 requests ("), "--scale too: {shown}");
    let json = [&run[..], &["--json"]].concat();
    let shown = on_a_terminal(&json).unwrap();
    assert!(!shown.contains("requests ("), "no bar with --json: {shown}");
    assert!(shown.trim_start().starts_with('{'), "{shown}");
    let piped = ebb(&run);
    assert!(piped.status.success());
    assert!(
        piped.stderr.is_empty(),
        "nothing on stderr that is not a terminal: {}",
        String::from_utf8_lossy(&piped.stderr)
    );
}
