//! Which closed form, if any, predicts a given run.
//!
//! Theory applies only to the textbook setting: Poisson arrivals, exponential
//! service, identical nodes, one gateway (so its view is exact), no deadlines
//! and a stable load. Outside it, there is no prediction and none is shown.

use crate::config::SimConfig;
use crate::theory;
use serde::Serialize;

/// A theoretical prediction for a run, in the run's time unit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expected {
    /// The model the numbers come from, e.g. "M/M/1" or "supermarket d=2 (N→∞)".
    pub model: String,
    pub mean_response: f64,
    pub p99: f64,
    /// Probability an arrival waits, where the model gives it (Erlang C).
    pub wait_probability: Option<f64>,
}

/// The prediction for `cfg` run with the balancer named `policy` (as its
/// `Balancer::name` prints it), or `None` outside the textbook setting.
pub fn expected(cfg: &SimConfig, policy: &str) -> Option<Expected> {
    let textbook = cfg.arrivals.is_poisson()
        && cfg.service.is_exponential()
        && cfg.speeds.is_homogeneous()
        && cfg.gateways == 1
        && cfg.deadline_secs.is_none()
        && cfg.load < 1.0;
    if !textbook {
        return None;
    }
    let m = cfg.service.mean();
    let rho = cfg.load;
    let k = cfg.nodes;
    let known = matches!(policy, "random" | "rr" | "central") || choices(policy).is_some();
    let (model, mean, p99, wait_probability) = match policy {
        // One node: every policy sends everything to it (or holds it until
        // the node asks, the same FIFO order), so every one is M/M/1.
        _ if k == 1 && (known || is_work_conserving(policy)) => (
            "M/M/1".to_string(),
            theory::mm1_mean_response(rho),
            theory::mm1_response_quantile(rho, 0.99),
            Some(rho),
        ),
        "random" => (
            "M/M/1".to_string(),
            theory::mm1_mean_response(rho),
            theory::mm1_response_quantile(rho, 0.99),
            Some(rho),
        ),
        "rr" => (
            format!("E{k}/M/1"),
            theory::ekm1_mean_response(k, rho),
            theory::ekm1_response_quantile(k, rho, 0.99),
            Some(theory::ekm1_sigma(k, rho)),
        ),
        "central" => (
            format!("M/M/{k}"),
            theory::mmk_mean_response(k, rho),
            theory::mmk_response_quantile(k, rho, 0.99),
            Some(theory::erlang_c(k, rho)),
        ),
        _ => {
            let d = choices(policy)?;
            (
                format!("supermarket d={d} (N→∞)"),
                theory::supermarket_mean_response(rho, d),
                theory::supermarket_response_quantile(rho, d, 0.99),
                Some(theory::supermarket_tail(rho, d, 1).powi(d as i32)),
            )
        }
    };
    Some(Expected {
        model,
        mean_response: mean * m,
        p99: p99 * m,
        wait_probability,
    })
}

/// Policies that never leave the one node idle while work waits.
fn is_work_conserving(policy: &str) -> bool {
    let head = policy.split(':').next().unwrap_or_default();
    matches!(head, "jsq" | "jiq" | "ewma" | "cost" | "pod" | "p2c")
}

/// `d` for power-of-d policies that compare exact in-flight counts.
fn choices(policy: &str) -> Option<u32> {
    let mut parts = policy.split(':');
    let d = match parts.next()? {
        "p2c" => 2,
        "pod" => parts.next()?.parse().ok()?,
        _ => return None,
    };
    // `:with`/`:without` only change sampling; `:reported` changes the signal.
    if parts.any(|o| o == "reported") {
        return None;
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_textbook_runs_get_a_prediction() {
        let cfg = SimConfig::new(10, 0.9, 1, 1);
        assert_eq!(
            expected(&cfg, "random").map(|e| e.model),
            Some("M/M/1".into())
        );
        assert!(expected(&cfg, "pod:3:with").is_some());
        assert!(expected(&cfg, "p2c:reported").is_none());
        assert!(expected(&cfg, "jsq").is_none());
        // One node: p2c, JSQ and the central queue are all M/M/1, not the
        // supermarket model's N → ∞ limit.
        let one = SimConfig::new(1, 0.5, 1, 1);
        for p in ["p2c", "jsq", "central", "rr", "pod:3:with", "jiq"] {
            let e = expected(&one, p).map(|e| (e.model, e.mean_response));
            assert_eq!(e, Some(("M/M/1".into(), 2.0)), "{p}");
        }
        let mut two = cfg.clone();
        two.gateways = 2;
        assert!(expected(&two, "random").is_none());
    }
}
