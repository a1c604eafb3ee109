//! Parameter sweeps: many runs over a grid of loads, one line per policy.

use crate::dist::SpecError;
use crate::expected::Expected;
use crate::plot::{Panel, Series, svg};
use crate::report::Report;
use serde::Serialize;
use std::str::FromStr;

/// The forms [`SweepSpec::from_str`] accepts.
pub const SWEEP_FORMS: &str = "load=FROM:TO:STEP (e.g. load=0.5:0.99:0.01)";
/// Most points one sweep may have.
pub const MAX_SWEEP_POINTS: usize = 1000;

/// The loads to run.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepSpec {
    pub loads: Vec<f64>,
}

impl FromStr for SweepSpec {
    type Err = SpecError;

    fn from_str(input: &str) -> Result<SweepSpec, SpecError> {
        let err = |reason: &str| SpecError {
            what: "sweep",
            input: input.to_string(),
            reason: reason.to_string(),
            accepted: SWEEP_FORMS,
        };
        let Some(range) = input.trim().strip_prefix("load=") else {
            return Err(err("only `load` can be swept"));
        };
        let nums: Vec<f64> = range
            .split(':')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| err("FROM, TO and STEP must be numbers"))?;
        let [from, to, step] = nums[..] else {
            return Err(err("expected three numbers FROM:TO:STEP"));
        };
        if !(from > 0.0 && to >= from && step > 0.0 && to.is_finite()) {
            return Err(err("need 0 < FROM <= TO and STEP > 0"));
        }
        let n = ((to - from) / step + 1e-9).floor() as usize + 1;
        if n > MAX_SWEEP_POINTS {
            return Err(err("more than 1000 points"));
        }
        // Multiply rather than accumulate, so 0.5 + 40 × 0.01 is 0.9, not 0.9000000001.
        let loads = (0..n)
            .map(|i| ((from + i as f64 * step) * 1e9).round() / 1e9)
            .collect();
        Ok(SweepSpec { loads })
    }
}

/// One run of a sweep with its theoretical prediction.
#[derive(Clone, Debug, Serialize)]
pub struct SweepPoint {
    #[serde(flatten)]
    pub report: Report,
    pub theory: Option<Expected>,
}

/// Mean and p99 response time against load, one solid line per policy (in
/// `policies` order) and a dashed line of the same colour for its theory.
pub fn plot(points: &[SweepPoint], policies: &[String], subtitle: &str) -> String {
    let mut mean = Vec::new();
    let mut p99 = Vec::new();
    for (c, policy) in policies.iter().enumerate() {
        let runs: Vec<&SweepPoint> = points
            .iter()
            .filter(|p| &p.report.balance == policy)
            .collect();
        let line = |label: String, f: &dyn Fn(&SweepPoint) -> Option<f64>, dashed| Series {
            label,
            points: runs
                .iter()
                .filter_map(|p| f(p).map(|y| (p.report.load, y)))
                .collect(),
            color: c,
            dashed,
        };
        mean.push(line(
            policy.clone(),
            &|p| Some(p.report.mean_response),
            false,
        ));
        p99.push(line(policy.clone(), &|p| Some(p.report.p99), false));
        if let Some(model) = runs
            .iter()
            .find_map(|p| p.theory.as_ref().map(|t| &t.model))
        {
            let label = format!("{policy}: {model}");
            mean.push(line(
                label.clone(),
                &|p| p.theory.as_ref().map(|t| t.mean_response),
                true,
            ));
            p99.push(line(label, &|p| p.theory.as_ref().map(|t| t.p99), true));
        }
    }
    let panel = |title: String, series| Panel {
        title,
        x_label: "load ρ (arrival rate / capacity)".into(),
        y_label: "response time (mean service = 1)".into(),
        log_y: true,
        series,
    };
    svg(&[
        panel(format!("Mean response — {subtitle}"), mean),
        panel(format!("p99 response — {subtitle}"), p99),
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_grid_exactly() {
        let s: SweepSpec = "load=0.5:0.99:0.01".parse().unwrap();
        assert_eq!(s.loads.len(), 50);
        assert_eq!(s.loads[40], 0.9);
        assert_eq!(*s.loads.last().unwrap(), 0.99);
        for bad in [
            "nodes=1:2:1",
            "load=0.5:0.4:0.1",
            "load=1:2",
            "load=0:1:0.0001",
        ] {
            let e = bad.parse::<SweepSpec>().unwrap_err().to_string();
            assert!(e.contains(SWEEP_FORMS), "{e}");
        }
    }
}
