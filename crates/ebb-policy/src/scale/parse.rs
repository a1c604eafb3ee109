//! Autoscaling policy specs on the command line and in config files:
//! `hpa|kpa|queue|none[:OPTION]...`, options `key=value` or flags.

use super::ScalePolicy;
use super::fixed::Fixed;
use super::hpa::{DEFAULT_IN_FLIGHT_TARGET, DEFAULT_QUEUE_TARGET, Hpa, HpaConfig, Metric};
use super::kpa::{Kpa, KpaConfig};
use super::queue::{QueueConfig, QueueModel};
use crate::balance::parse::duration;

/// What a target, a rate or a concurrency accepts, in errors.
const POSITIVE: &str = "greater than 0";

/// The policy names [`parse`] accepts.
pub const SCALE_POLICY_NAMES: &[&str] = &["hpa", "kpa", "queue", "none"];

/// The full grammar, shown in errors and `--help`.
pub const SCALE_SYNTAX: &str = "none | \
     hpa[:util=F|:inflight=F|:queue=F|:p99=DUR][:tolerance=F][:sync=DUR][:down=DUR] \
     (Kubernetes HPA on one metric: utilisation (default, target 0.8), in flight or waiting per node, or p99 latency; \
     tolerance 0.1, sync 15s, down-scale window 300s) | \
     kpa[:target=F][:stable=DUR][:panic=DUR][:threshold=F] \
     (Knative KPA: concurrency per node 0.7, stable 60s, panic 6s, panic at 2× ready) | \
     queue[:miss=F][:objective=DUR][:smooth=DUR][:down=DUR][:value=F][:nolookahead] \
     (ebb's M/M/k model: at most fraction 0.01 over the objective, rate smoothed over max(2s, boot time), down-scale window 30s, \
     VALUE µ$ per miss to trade misses against node cost); \
     DUR like 500ms or 15s";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScaleParseError {
    #[error("unknown autoscaling policy `{input}`; accepted: {syntax}", syntax = SCALE_SYNTAX)]
    UnknownPolicy { input: String },
    #[error("bad autoscaling policy `{input}`: {reason}; accepted: {syntax}", syntax = SCALE_SYNTAX)]
    BadOption { input: String, reason: String },
}

/// Builds an autoscaling policy from its spec, e.g. `hpa:util=0.6`,
/// `kpa:target=2`, `queue:miss=0.001`. Every policy's
/// [`ScalePolicy::name`] parses back to an equal policy.
pub fn parse(spec: &str) -> Result<Box<dyn ScalePolicy + Send>, ScaleParseError> {
    let lower = spec.trim().to_ascii_lowercase();
    let mut parts = lower.split(':');
    let head = parts.next().unwrap_or_default();
    let bad = |reason: String| ScaleParseError::BadOption {
        input: spec.to_string(),
        reason,
    };
    let mut opts = Vec::new();
    for p in parts {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        if opts.iter().any(|(seen, _)| *seen == k) {
            return Err(bad(format!("option `{k}` given twice")));
        }
        opts.push((k, v));
    }
    // `range` says what `ok` accepts, so the error names it.
    let number = |k: &str, v: &str, range: &str, ok: fn(f64) -> bool| {
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && ok(*x))
            .ok_or_else(|| bad(format!("`{k}` needs a number {range}, got `{v}`")))
    };
    let dur = |v: &str| duration(v).map_err(|e| bad(e.clone()));
    let unknown = |k: &str| bad(format!("`{head}` has no option `{k}`"));
    match head {
        "none" => match opts.first() {
            None => Ok(Box::new(Fixed)),
            Some((k, _)) => Err(unknown(k)),
        },
        "hpa" => {
            let mut c = HpaConfig::default();
            let mut metric_set = false;
            for (k, v) in opts {
                match k {
                    "util" | "inflight" | "queue" | "p99" if !metric_set => {
                        metric_set = true;
                        c.metric = match k {
                            "util" => Metric::Utilisation,
                            "inflight" => Metric::InFlight,
                            "queue" => Metric::Queue,
                            _ => Metric::Latency,
                        };
                        c.target = match (k, v.is_empty()) {
                            ("util", true) => c.target,
                            ("inflight", true) => DEFAULT_IN_FLIGHT_TARGET,
                            ("queue", true) => DEFAULT_QUEUE_TARGET,
                            ("p99", true) => {
                                return Err(bad("`p99` needs a target such as p99=100ms".into()));
                            }
                            ("p99", false) => dur(v)?.as_secs_f64(),
                            _ => number(k, v, POSITIVE, |x| x > 0.0)?,
                        };
                    }
                    "util" | "inflight" | "queue" | "p99" => {
                        return Err(bad("give one metric: util, inflight, queue or p99".into()));
                    }
                    "tolerance" => {
                        c.tolerance =
                            number(k, v, "from 0 to below 1", |x| (0.0..1.0).contains(&x))?
                    }
                    "sync" => c.sync = dur(v)?,
                    "down" => c.down_window = dur(v)?,
                    _ => return Err(unknown(k)),
                }
            }
            Ok(Box::new(Hpa::new(c)))
        }
        "kpa" => {
            let mut c = KpaConfig::default();
            for (k, v) in opts {
                match k {
                    "target" => c.target = number(k, v, POSITIVE, |x| x > 0.0)?,
                    "stable" => c.stable_window = dur(v)?,
                    "panic" => c.panic_window = dur(v)?,
                    "threshold" => c.panic_threshold = number(k, v, "of 1 or more", |x| x >= 1.0)?,
                    _ => return Err(unknown(k)),
                }
            }
            if c.panic_window > c.stable_window {
                return Err(bad(
                    "the panic window must not be longer than the stable one".into(),
                ));
            }
            Ok(Box::new(Kpa::new(c)))
        }
        "queue" => {
            let mut c = QueueConfig::default();
            for (k, v) in opts {
                match k {
                    "miss" => {
                        c.miss = number(k, v, "between 0 and 1 (neither included)", |x| {
                            x > 0.0 && x < 1.0
                        })?
                    }
                    "objective" => c.objective = Some(dur(v)?),
                    "smooth" => c.smooth = dur(v)?,
                    "down" => c.down_window = dur(v)?,
                    "value" => {
                        c.miss_value_micros = Some(number(k, v, "of 0 or more", |x| x >= 0.0)?)
                    }
                    "nolookahead" if v.is_empty() => c.lookahead = false,
                    _ => return Err(unknown(k)),
                }
            }
            Ok(Box::new(QueueModel::new(c)))
        }
        _ => Err(ScaleParseError::UnknownPolicy {
            input: spec.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_form_and_names_round_trip() {
        for spec in [
            "none",
            "hpa",
            "hpa:util=0.6",
            "hpa:inflight=3:sync=5s:down=60s:tolerance=0.05",
            "hpa:inflight",
            "hpa:queue=2",
            "hpa:p99=150ms",
            "kpa",
            "kpa:target=2:stable=30s:panic=3s:threshold=3",
            "queue",
            "queue:miss=0.001:objective=200ms:value=5:nolookahead",
            " QUEUE:smooth=10s ",
        ] {
            let p = parse(spec).unwrap_or_else(|e| panic!("`{spec}` rejected: {e}"));
            let again = parse(&p.name()).unwrap_or_else(|e| panic!("`{}` rejected: {e}", p.name()));
            assert_eq!(again.name(), p.name());
        }
        for name in SCALE_POLICY_NAMES {
            assert!(parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejects_bad_specs_naming_the_input_and_the_grammar() {
        assert!(matches!(
            parse("vpa"),
            Err(ScaleParseError::UnknownPolicy { .. })
        ));
        for spec in [
            "none:x",
            "hpa:util=2x",
            "hpa:util=0.5:inflight=2",
            "hpa:sync=0s",
            "kpa:panic=90s",
            "kpa:threshold=0.5",
            "queue:miss=1",
            "queue:miss=0.1:miss=0.2",
            "queue:lookahead=3",
        ] {
            let e = parse(spec)
                .err()
                .unwrap_or_else(|| panic!("`{spec}` accepted"))
                .to_string();
            assert!(e.contains(&format!("`{spec}`")), "{e}");
            for name in SCALE_POLICY_NAMES {
                assert!(e.contains(name), "{e}");
            }
        }
    }

    /// A number out of range is refused with the range it must be in, not
    /// only the word "range".
    #[test]
    fn an_out_of_range_number_names_the_range_it_must_be_in() {
        for (spec, range) in [
            (
                "hpa:util=0",
                "`util` needs a number greater than 0, got `0`",
            ),
            (
                "hpa:inflight=-2",
                "`inflight` needs a number greater than 0",
            ),
            (
                "hpa:tolerance=5",
                "`tolerance` needs a number from 0 to below 1",
            ),
            ("kpa:target=0", "`target` needs a number greater than 0"),
            (
                "kpa:threshold=0.5",
                "`threshold` needs a number of 1 or more",
            ),
            (
                "queue:miss=2",
                "`miss` needs a number between 0 and 1 (neither included)",
            ),
            ("queue:value=-1", "`value` needs a number of 0 or more"),
        ] {
            let e = parse(spec)
                .err()
                .unwrap_or_else(|| panic!("`{spec}` accepted"))
                .to_string();
            assert!(e.contains(range), "{spec}: {e}");
        }
    }
}
