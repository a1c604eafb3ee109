//! `ebb sim` keeps its command-line contract.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn ebb(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(args)
        .output()
        .unwrap()
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
    let dir = std::env::temp_dir().join(format!("ebb-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 6);
    let text = std::fs::read_to_string(&svg).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    // Two panels × (2 policies + 2 theory curves).
    assert_eq!(text.matches("<polyline").count(), 8);
    assert!(text.contains("M/M/4") && text.contains("M/M/1"));
}
