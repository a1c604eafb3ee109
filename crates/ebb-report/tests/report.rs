//! Reports written from synthetic series: every file is there, summary.json
//! is valid and complete, every SVG parses as XML, and the page needs
//! nothing from outside the folder.

use std::path::{Path, PathBuf};

use ebb_report::{Latency, Run, RunInfo, Sample, ScaleEvent, Summary, write_report};

/// A burst in the middle of `secs` seconds; the pool follows it with
/// `lag` seconds of delay. Seconds with no answers have no percentiles.
fn synthetic(label: &str, secs: u32, lag: u32) -> Run {
    let mut samples = Vec::new();
    let mut events = Vec::new();
    let mut nodes = 1u32;
    let mut wanted_since = 0;
    let mut last_want = 1;
    for t in 0..secs {
        let burst = t >= secs / 3 && t < 2 * secs / 3;
        let offered = if burst { 400 } else { 50 };
        let want = if burst { 6 } else { 1 };
        if want != last_want {
            wanted_since = t;
            last_want = want;
        }
        if t >= wanted_since + lag && want != nodes {
            events.push(ScaleEvent {
                t_secs: f64::from(t),
                from: nodes,
                to: want,
                reason: if want > nodes { "objective" } else { "down" }.into(),
                detail: format!("rate={offered}"),
            });
            nodes = want;
        }
        let short = nodes < want;
        samples.push(Sample {
            t_secs: f64::from(t),
            offered,
            ok: if short { offered / 2 } else { offered },
            slow: if short { 20 } else { 0 },
            overloaded: if short { offered / 2 } else { 0 },
            ready: nodes,
            booting: u32::from(short),
            p50_ms: (t % 7 != 0).then_some(12.0),
            p99_ms: (t % 7 != 0).then_some(if short { 240.0 } else { 40.0 }),
            ..Sample::default()
        });
    }
    let info = RunInfo {
        policy: label.into(),
        kind: "process".into(),
        trace: "bursty".into(),
        objective_ms: 200.0,
    };
    let latency = Latency {
        p50_ms: 12.0,
        p99_ms: 150.0,
        p999_ms: 240.0,
        max_ms: 300.0,
    };
    let summary = Summary::from_series(&info, &samples, &events, latency);
    Run {
        label: label.into(),
        samples,
        events,
        summary,
    }
}

/// A report directory not yet made, inside a temporary directory that is
/// removed when this drops, even when the test fails. With `EBB_KEEP_REPORT`
/// set the report is kept to be looked at, and its path printed.
struct Scratch {
    parent: Option<tempfile::TempDir>,
    dir: PathBuf,
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("EBB_KEEP_REPORT").is_some()
            && let Some(parent) = self.parent.take()
        {
            let kept = parent.keep();
            eprintln!("report kept in {}", kept.display());
        }
    }
}

fn scratch(name: &str) -> Scratch {
    let parent = tempfile::Builder::new()
        .prefix(&format!("ebb-report-test-{name}-"))
        .tempdir()
        .expect("temp dir");
    let dir = parent.path().join("report");
    Scratch {
        parent: Some(parent),
        dir,
    }
}

fn svgs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("report dir exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "svg"))
        .collect();
    v.sort();
    v
}

fn assert_svg_parses(text: &str, what: &str) {
    let doc = roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("{what}: not XML: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg", "{what}");
    // A chart with lines has at least one polyline or path.
    let drawn = doc
        .descendants()
        .filter(|n| matches!(n.tag_name().name(), "polyline" | "path" | "line"))
        .count();
    assert!(drawn > 0, "{what}: nothing drawn");
}

#[test]
fn one_run_writes_a_complete_report() {
    let dir = scratch("one");
    let run = synthetic("queue", 60, 3);
    let w = write_report(&dir, "ebb demo", std::slice::from_ref(&run)).expect("report written");
    assert!(w.index.is_file() && w.summary.is_file());
    let svgs = svgs(&dir);
    let names: Vec<String> = svgs
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "1-queue-latency.svg",
            "1-queue-load.svg",
            "1-queue-misses.svg",
            "1-queue-nodes.svg"
        ]
    );
    for p in &svgs {
        assert_svg_parses(
            &std::fs::read_to_string(p).expect("svg readable"),
            &p.display().to_string(),
        );
    }
    // The scaling events are drawn: the nodes chart has the legend entries.
    let nodes = std::fs::read_to_string(dir.join("1-queue-nodes.svg")).expect("nodes.svg");
    assert!(nodes.contains("scaled out") && nodes.contains("scaled in"));

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&w.summary).expect("summary"))
            .expect("valid JSON");
    for key in [
        "requests",
        "ok",
        "overloaded",
        "slo_miss_fraction",
        "p50_ms",
        "p99_ms",
        "node_seconds",
        "min_nodes",
        "max_nodes",
        "scale_actions",
        "policy",
    ] {
        assert!(v.get(key).is_some(), "summary.json lacks {key}: {v}");
    }
    assert_eq!(v["requests"], run.summary.requests);
    assert_eq!(v["scale_actions"], 2);
    assert_eq!(v["min_nodes"], 1);
    assert_eq!(v["max_nodes"], 6);
    assert!(v["slo_miss_fraction"].as_f64().expect("number") > 0.0);
    assert_eq!(v["runs"].as_array().expect("runs").len(), 1);
    assert_eq!(v["runs"][0]["scale_events"][0]["reason"], "objective");

    let csv = std::fs::read_to_string(dir.join("1-queue-timeline.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 61, "header + one line per second");
    // Seconds without percentiles leave the cells empty rather than 0.
    assert!(csv.lines().nth(1).expect("first second").ends_with(",,"));
}

/// Failures other than overload and deadlines are broken down by kind in
/// summary.json (top level and per run) and in the page's table, beside
/// the total they add up to.
#[test]
fn other_errors_are_broken_down_by_kind() {
    let dir = scratch("kinds");
    let mut run = synthetic("queue", 10, 2);
    run.summary.other_errors = 5;
    run.summary.other_errors_by_kind.extend([
        ("connect_failed".to_owned(), 3),
        ("outcome_unknown".to_owned(), 2),
    ]);
    let w = write_report(&dir, "kinds", std::slice::from_ref(&run)).expect("report written");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&w.summary).expect("summary")).expect("JSON");
    assert_eq!(v["other_errors"], 5, "{v}");
    assert_eq!(v["other_errors_by_kind"]["connect_failed"], 3, "{v}");
    assert_eq!(
        v["runs"][0]["other_errors_by_kind"]["outcome_unknown"], 2,
        "{v}"
    );
    let html = std::fs::read_to_string(&w.index).expect("index");
    assert!(
        html.contains("<td>other errors by kind</td><td>connect_failed 3, outcome_unknown 2</td>"),
        "{html}"
    );
    // A summary written before the breakdown existed still reads.
    let mut old = v.clone();
    if let serde_json::Value::Object(m) = &mut old {
        m.remove("other_errors_by_kind");
        m.remove("runs");
    }
    let read: Summary = serde_json::from_value(old).expect("an older summary reads");
    assert!(read.other_errors_by_kind.is_empty());
}

#[test]
fn the_page_opens_offline() {
    let dir = scratch("offline");
    let w = write_report(&dir, "t <&> t", &[synthetic("queue", 20, 1)]).expect("report written");
    let html = std::fs::read_to_string(&w.index).expect("index");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("t &lt;&amp;&gt; t"), "title escaped");
    for external in ["<script", "<link", "<img", "src=", "url(", "@import"] {
        assert!(!html.contains(external), "index.html references {external}");
    }
    // Charts are inline: four, each a complete svg element.
    assert_eq!(html.matches("<svg").count(), 4);
    assert_eq!(html.matches("</svg>").count(), 4);
}

#[test]
fn a_comparison_puts_both_runs_side_by_side() {
    let dir = scratch("compare");
    let runs = [synthetic("queue", 40, 1), synthetic("hpa", 40, 8)];
    let w = write_report(&dir, "compare", &runs).expect("report written");
    let svgs = svgs(&dir);
    assert_eq!(
        svgs.len(),
        4 + 4 + 3,
        "per-run charts for both, plus overlays"
    );
    for p in &svgs {
        assert_svg_parses(
            &std::fs::read_to_string(p).expect("svg"),
            &p.display().to_string(),
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&w.summary).expect("summary")).expect("JSON");
    assert_eq!(v["policy"], "queue", "the first run is the headline");
    let labels: Vec<&str> = v["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["label"].as_str().expect("label"))
        .collect();
    assert_eq!(labels, ["queue", "hpa"]);
    // The lagging policy misses more: the comparison carries the difference.
    assert!(
        v["runs"][1]["slo_miss_fraction"].as_f64() > v["runs"][0]["slo_miss_fraction"].as_f64()
    );
    let html = std::fs::read_to_string(&w.index).expect("index");
    assert!(html.contains("Side by side"));
    assert_eq!(html.matches("<svg").count(), 11);
}

#[test]
fn no_runs_is_an_error_and_writes_nothing() {
    let dir = scratch("none");
    assert!(matches!(
        write_report(&dir, "x", &[]),
        Err(ebb_report::ReportError::NoRuns)
    ));
    assert!(!dir.exists());
}

#[test]
fn an_empty_run_still_draws() {
    let dir = scratch("empty");
    let info = RunInfo::default();
    let run = Run {
        label: "none".into(),
        samples: Vec::new(),
        events: Vec::new(),
        summary: Summary::from_series(&info, &[], &[], Latency::default()),
    };
    write_report(&dir, "empty", &[run]).expect("an interrupted run still gets a report");
    for p in svgs(&dir) {
        let text = std::fs::read_to_string(&p).expect("svg");
        roxmltree::Document::parse(&text).expect("XML");
    }
}
