//! The dashboard (`GET /`) in a real headless Chromium against a running
//! gateway: the page fetches `/status` and `/metrics` and shows the nodes,
//! their states and the requests answered.
#![allow(clippy::unwrap_used)]

mod gateway_common;

use std::process::Command;

use gateway_common::Up;

const CALLS: usize = 5;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn the_dashboard_shows_nodes_and_requests_in_a_browser() {
    const NAME: &str = "the_dashboard_shows_nodes_and_requests_in_a_browser";
    let Some(browser) = chromium() else {
        let why = "needs Debian's chromium";
        ebb_testkit::skip_or_fail(NAME, why);
        return;
    };
    let up = Up::start(
        "dashboard",
        "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
         [service]\nname = \"demo\"\n[pool]\nkind = \"process\"\ninitial = 2\nmin = 2\nmax = 2\n\
         max_capacity_per_node = 4\n\
         [balance]\npolicy = \"rr\"\n[autoscale]\npolicy = \"kpa\"\ntick_ms = 100\n",
    );
    up.wait_ready(2);
    // The autoscaler has decided at least once: the page shows its last
    // decision (held at 2 by min = max = 2).
    up.wait_until("an autoscaler decision", |s| {
        s["scaling"]["recent"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    });
    // Both nodes scaled up by hand: the page shows each one's capacity.
    let (code, body, _) = up.post("/pool", r#"{"target": 2, "capacity": 3}"#, &[]);
    assert_eq!(code, 200, "{body}");
    up.wait_until("both nodes at capacity 3", |s| {
        s["nodes"].as_array().is_some_and(|nodes| {
            nodes
                .iter()
                .filter(|n| n["state"] == "ready" && n["capacity"] == 3)
                .count()
                == 2
        })
    });
    for i in 0..CALLS {
        let (code, body, _) = up.post("/rpc/Demo/echo", &format!(r#"{{"msg":"{i}"}}"#), &[]);
        assert_eq!(code, 200, "{body}");
    }
    let guard = tempfile::Builder::new()
        .prefix("ebb-dashboard-")
        .tempdir()
        .unwrap();
    let profile = guard.path();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("http://{}/", up.http))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready_rows = dom.matches(r#"data-state="ready""#).count();
    assert_eq!(ready_rows, 2, "two ready nodes listed: {dom}");
    for id in [1, 2] {
        assert!(dom.contains(&format!(r#"data-node-id="{id}""#)), "{dom}");
    }
    let scaled_up = dom.matches(r#"data-capacity="3""#).count();
    assert_eq!(scaled_up, 2, "both nodes shown at capacity 3: {dom}");
    assert!(dom.contains(&format!(r#"id="requests">{CALLS}<"#)), "{dom}");
    assert!(dom.contains("balance rr"), "{dom}");
    assert!(dom.contains(r#"id="desired">2<"#), "{dom}");
    assert!(dom.contains(r#"id="decision">hold 2 → 2 ("#), "{dom}");
    assert!(
        dom.contains(r#"<p id="error"></p>"#),
        "no fetch failed: {dom}"
    );
    up.stop();
}
