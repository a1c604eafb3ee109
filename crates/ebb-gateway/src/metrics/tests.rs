//! The request path's counting, read back from the rendered text.

use std::sync::PoisonError;

use ebb_rpc::service::MethodInfo;

use super::*;

const fn method(service: &'static str, id: u16, name: &'static str) -> MethodInfo {
    MethodInfo {
        service,
        id,
        name,
        idempotent: false,
        blocking: false,
        params: &[],
        returns: "()",
    }
}
static ECHO: MethodInfo = method("A", 0, "echo");
static OTHER: MethodInfo = method("B", 0, "other");

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix} in\n{text}"))
}

/// The kept metrics are the families' own: counts made through the
/// cache show in the exposition, per method and outcome, and a method
/// of another service with the same id is counted under its own name.
#[test]
fn answers_counted_through_the_cache_show_per_method_and_outcome() {
    let m = Metrics::new();
    for _ in 0..3 {
        m.answered(&ECHO, "ok", 0.001);
    }
    m.answered(&ECHO, "overloaded", 0.0);
    m.answered(&OTHER, "ok", 0.002);
    m.answered(&OTHER, "ok", 0.002);
    assert!(
        m.by_method.read().unwrap_or_else(PoisonError::into_inner)[0]
            .as_ref()
            .is_some_and(|c| std::ptr::eq(c.method, &ECHO) && c.outcomes.len() == 2),
        "the first method's metrics were not kept"
    );
    let text = m.render(&[], (0, 0), 0).unwrap_or_default();
    let ok = r#"ebb_gateway_requests_total{method="A.echo",outcome="ok"}"#;
    assert!(line(&text, ok).ends_with(" 3"), "{text}");
    let refused = r#"ebb_gateway_requests_total{method="A.echo",outcome="overloaded"}"#;
    assert!(line(&text, refused).ends_with(" 1"), "{text}");
    let other = r#"ebb_gateway_requests_total{method="B.other",outcome="ok"}"#;
    assert!(line(&text, other).ends_with(" 2"), "{text}");
    let count = r#"ebb_gateway_request_duration_seconds_count{method="A.echo"}"#;
    assert!(line(&text, count).ends_with(" 4"), "{text}");
}

/// A refusal is counted under the rule that refused it; every rule is
/// in the exposition from the start, at zero until it refuses.
#[test]
fn refusals_are_counted_by_the_rule_that_refused() {
    let m = Metrics::new();
    let text = m.render(&[], (0, 0), 0).unwrap_or_default();
    for rule in Refusal::RULES {
        let zero = format!("ebb_gateway_admission_refusals_total{{rule=\"{rule}\"}}");
        assert!(line(&text, &zero).ends_with(" 0"), "{text}");
    }
    m.refused(&Refusal::QueueBytesFull { limit: 10 });
    m.refused(&Refusal::QueueBytesFull { limit: 10 });
    m.refused(&Refusal::NoCapacity);
    let text = m.render(&[], (0, 0), 0).unwrap_or_default();
    let bytes = r#"ebb_gateway_admission_refusals_total{rule="held_bytes"}"#;
    assert!(line(&text, bytes).ends_with(" 2"), "{text}");
    let none = r#"ebb_gateway_admission_refusals_total{rule="no_capacity"}"#;
    assert!(line(&text, none).ends_with(" 1"), "{text}");
    let deadline = r#"ebb_gateway_admission_refusals_total{rule="deadline"}"#;
    assert!(line(&text, deadline).ends_with(" 0"), "{text}");
}

/// The duplicates the RPC session absorbed show under their three stable
/// outcome labels, zeros included, as the session's running totals.
#[test]
fn duplicates_show_by_outcome_from_the_sessions_counts() {
    let m = Metrics::new();
    let zero = m.render(&[], (0, 0), 0).unwrap_or_default();
    for outcome in ["saved_reply", "joined", "too_old"] {
        let series = format!("ebb_gateway_duplicates_total{{outcome=\"{outcome}\"}} 0");
        assert!(zero.lines().any(|l| l == series), "{series} in\n{zero}");
    }
    let stats = ebb_rpc::semantics::ServerStats {
        saved_replies: 3,
        waits: 2,
        too_old: 1,
        ..Default::default()
    };
    m.rpc_refusals(&stats);
    let text = m.render(&[], (0, 0), 0).unwrap_or_default();
    for (outcome, n) in [("saved_reply", 3), ("joined", 2), ("too_old", 1)] {
        let series = format!("ebb_gateway_duplicates_total{{outcome=\"{outcome}\"}} {n}");
        assert!(text.lines().any(|l| l == series), "{series} in\n{text}");
    }
}
