//! `ebb sim lease`: the contract fields, the grid, bad input.

use std::process::Command;

fn ebb(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(args)
        .output()
        .expect("running the ebb binary")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = ebb(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn json_prints_relative_load_and_added_delay() {
    let v = json(&[
        "sim",
        "lease",
        "--term-s",
        "10",
        "--sharers",
        "10",
        "--read-rate",
        "0.864",
        "--write-rate",
        "0.039",
        "--msg-ms",
        "1",
        "--epsilon-ms",
        "100",
        "--reads",
        "20000",
        "--json",
    ]);
    let load = v["relative_load"].as_f64().expect("relative_load");
    let delay = v["added_delay_ms"].as_f64().expect("added_delay_ms");
    assert!(load > 0.0 && load < 1.0, "{v}");
    assert!(delay < 0.0, "a 10 s lease saves read round trips: {v}");
    assert!(v["model_relative_load"].as_f64().is_some(), "{v}");
}

#[test]
fn term_zero_is_the_baseline_and_inf_is_callbacks() {
    let v = json(&[
        "sim",
        "lease",
        "--term-s",
        "0,inf",
        "--sharers",
        "4",
        "--reads",
        "5000",
        "--json",
    ]);
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["relative_load"].as_f64(), Some(1.0));
    assert_eq!(runs[0]["added_delay_ms"].as_f64(), Some(0.0));
    assert!(
        runs[1]["term_s"].is_null(),
        "an infinite term has no seconds"
    );
    assert!(runs[1]["t_c_s"].is_null());
    assert!(runs[1]["relative_load"].as_f64().expect("load") < 1.0);
}

#[test]
fn bad_input_names_the_flag_and_what_is_accepted() {
    let out = ebb(&["sim", "lease", "--term-s", "soon"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--term-s") && err.contains("`inf`"), "{err}");
    let out = ebb(&["sim", "lease", "--sharers", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--sharers") && err.contains("between 1 and"),
        "{err}"
    );
    let out = ebb(&["sim", "lease", "--epsilon-ms=-5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--epsilon-ms") && err.contains("milliseconds"),
        "{err}"
    );
}
