//! Policy names on the command line and in config files.

use super::Balancer;
use super::central::CentralQueue;
use super::cost::{CostAware, DEFAULT_TARGET_BACKLOG};
use super::ewma::{Candidates, DEFAULT_TAU, PeakEwmaBalancer};
use super::jiq::JoinIdleQueue;
use super::jsq::Jsq;
use super::pod::{PowerOfD, Sampling};
use super::random::Random;
use super::rr::RoundRobin;
use super::sample::MAX_SAMPLES;
use super::signal::{LoadSignal, QueueMeasure};
use ebb_core::Nanos;

/// The policy names [`parse`] accepts, for help text. `pod:D` stands for a
/// number; see [`POLICY_SYNTAX`] for the options each takes.
pub const POLICY_NAMES: &[&str] = &[
    "rr", "random", "jsq", "p2c", "pod:D", "jiq", "central", "ewma", "cost",
];

/// The full grammar, shown in errors and `--help`.
pub const POLICY_SYNTAX: &str = "rr | random | jsq[:reported][:speed] | p2c[:with][:reported][:speed] | \
     pod:D[:with|:without][:reported][:speed] (D in 1..=32) | jiq | central | \
     ewma[:TAU][:scan] (TAU a duration such as 500ms, default 10s) | \
     cost[:TARGET[:SERVICE]] (TARGET backlog per node in service times, default 2; \
     SERVICE the mean service time such as 1ms, learned if absent)";

/// A policy spec that names no policy, or a known policy with a bad option.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown balancing policy `{input}`; accepted: {syntax}", syntax = POLICY_SYNTAX)]
    UnknownPolicy { input: String },
    #[error("bad balancing policy `{input}`: {reason}; accepted: {syntax}", syntax = POLICY_SYNTAX)]
    BadOption { input: String, reason: String },
}

/// Builds a balancer from its name, e.g. `p2c`, `pod:3:with`, `jsq:reported`.
///
/// Names are case-insensitive; surrounding whitespace is ignored. Every
/// balancer's [`Balancer::name`] parses back to an equivalent balancer.
pub fn parse(spec: &str) -> Result<Box<dyn Balancer + Send>, ParseError> {
    let lower = spec.trim().to_ascii_lowercase();
    let mut parts = lower.split(':');
    let head = parts.next().unwrap_or_default();
    let opts: Vec<&str> = parts.collect();
    let bad = |reason: String| ParseError::BadOption {
        input: spec.to_string(),
        reason,
    };
    let no_opts = |b: Box<dyn Balancer + Send>| {
        if opts.is_empty() {
            Ok(b)
        } else {
            Err(bad(format!("`{head}` takes no options")))
        }
    };
    match head {
        "rr" => no_opts(Box::new(RoundRobin::new())),
        "random" => no_opts(Box::new(Random::new())),
        "jsq" => {
            let (_, signal) = queue_options(&opts, false).map_err(bad)?;
            Ok(Box::new(Jsq::new(signal)))
        }
        "p2c" => {
            let (sampling, signal) = queue_options(&opts, true).map_err(bad)?;
            Ok(Box::new(PowerOfD::new(2, sampling, signal)))
        }
        "pod" => {
            let Some((d, rest)) = opts.split_first() else {
                return Err(bad("missing D, the number of choices (e.g. `pod:3`)".into()));
            };
            let d: usize = d
                .parse()
                .ok()
                .filter(|d| (1..=MAX_SAMPLES).contains(d))
                .ok_or_else(|| {
                    bad(format!(
                        "D must be a whole number in 1..={MAX_SAMPLES}, got `{d}`"
                    ))
                })?;
            let (sampling, signal) = queue_options(rest, true).map_err(bad)?;
            Ok(Box::new(PowerOfD::new(d, sampling, signal)))
        }
        "jiq" => no_opts(Box::new(JoinIdleQueue::new())),
        "central" => no_opts(Box::new(CentralQueue::new())),
        "ewma" => {
            let mut tau = None;
            let mut candidates = None;
            for &o in &opts {
                if o == "scan" && candidates.is_none() {
                    candidates = Some(Candidates::Scan);
                } else if o != "scan" && tau.is_none() {
                    tau = Some(duration(o).map_err(bad)?);
                } else {
                    return Err(bad(format!("unexpected or repeated option `{o}`")));
                }
            }
            let tau = tau.unwrap_or(DEFAULT_TAU);
            Ok(Box::new(PeakEwmaBalancer::new(
                tau,
                candidates.unwrap_or_default(),
            )))
        }
        "cost" => {
            if opts.len() > 2 {
                return Err(bad("at most two options: TARGET and SERVICE".into()));
            }
            let target = match opts.first() {
                None => DEFAULT_TARGET_BACKLOG,
                Some(t) => t
                    .parse::<f64>()
                    .ok()
                    .filter(|t| t.is_finite() && *t > 0.0)
                    .ok_or_else(|| bad(format!("TARGET must be a positive number, got `{t}`")))?,
            };
            let service = opts.get(1).map(|s| duration(s)).transpose().map_err(bad)?;
            Ok(Box::new(CostAware::new(target, service)))
        }
        _ => Err(ParseError::UnknownPolicy {
            input: spec.to_string(),
        }),
    }
}

/// A positive duration with a unit: `250ns`, `100us`, `5ms`, `10s`.
pub(crate) fn duration(s: &str) -> Result<Nanos, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms or 10s"))?;
    let d = match unit {
        "ns" => Nanos(n),
        "us" => Nanos::from_micros(n),
        "ms" => Nanos::from_millis(n),
        "s" => Nanos::from_secs(n),
        _ => return Err(format!("`{s}`: duration unit must be ns, us, ms or s")),
    };
    if d == Nanos::ZERO {
        return Err(format!("`{s}`: duration must be positive"));
    }
    Ok(d)
}

/// Formats a duration in the largest unit that keeps it exact, in the
/// syntax [`duration`] reads back (`10s`, `500ms`, `1500us`).
pub(crate) fn format_duration(d: Nanos) -> String {
    let n = d.as_nanos();
    match n {
        0 => "0ns".into(),
        _ if n % 1_000_000_000 == 0 => format!("{}s", n / 1_000_000_000),
        _ if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
        _ if n % 1_000 == 0 => format!("{}us", n / 1_000),
        _ => format!("{n}ns"),
    }
}

/// Options of the queue-comparing policies: `with`/`without` (sampling, if
/// `sampled`), `reported` (load signal) and `speed` (expected delay), each at
/// most once, in any order.
fn queue_options(opts: &[&str], sampled: bool) -> Result<(Sampling, QueueMeasure), String> {
    let mut sampling = None;
    let mut signal = None;
    let mut per_speed = false;
    for &o in opts {
        match o {
            "with" | "without" if sampled && sampling.is_none() => {
                sampling = Some(if o == "with" {
                    Sampling::WithReplacement
                } else {
                    Sampling::WithoutReplacement
                });
            }
            "reported" if signal.is_none() => signal = Some(LoadSignal::InFlightPlusReported),
            "speed" if !per_speed => per_speed = true,
            _ => return Err(format!("unexpected or repeated option `{o}`")),
        }
    }
    let measure = QueueMeasure {
        signal: signal.unwrap_or_default(),
        per_speed,
    };
    Ok((sampling.unwrap_or_default(), measure))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &[&str] = &[
        "rr",
        "random",
        "jsq",
        "jsq:reported",
        "p2c",
        "p2c:with",
        "p2c:without:reported",
        "jsq:speed",
        "p2c:speed:reported",
        "pod:4:with:reported:speed",
        "pod:1",
        "pod:3",
        "pod:3:with",
        "pod:32:without",
        " RR ",
    ];

    #[test]
    fn accepts_every_name_and_names_round_trip() {
        for spec in VALID {
            let b = parse(spec).unwrap_or_else(|e| panic!("`{spec}` rejected: {e}"));
            let again =
                parse(&b.name()).unwrap_or_else(|e| panic!("name `{}` rejected: {e}", b.name()));
            assert_eq!(again.name(), b.name());
        }
        for name in POLICY_NAMES {
            let spec = name.replace(":D", ":3");
            assert!(parse(&spec).is_ok(), "{spec}");
        }
    }

    #[test]
    fn unknown_names_and_bad_options_are_told_apart() {
        assert!(matches!(
            parse("leastconn"),
            Err(ParseError::UnknownPolicy { .. })
        ));
        assert!(matches!(parse("pod:0"), Err(ParseError::BadOption { .. })));
    }

    #[test]
    fn durations_print_in_the_largest_exact_unit_and_read_back() {
        for (ns, text) in [
            (10_000_000_000, "10s"),
            (500_000_000, "500ms"),
            (1_500_000, "1500us"),
            (7, "7ns"),
        ] {
            assert_eq!(format_duration(Nanos(ns)), text);
            assert_eq!(duration(text), Ok(Nanos(ns)));
        }
    }

    #[test]
    fn rejects_bad_specs_listing_what_is_accepted() {
        for spec in [
            "",
            "rrr",
            "pod",
            "pod:0",
            "pod:33",
            "pod:x",
            "rr:1",
            "p2c:with:with",
            "jsq:with",
        ] {
            let err = parse(spec)
                .err()
                .unwrap_or_else(|| panic!("`{spec}` accepted"));
            let msg = err.to_string();
            assert!(msg.contains(&format!("`{spec}`")), "{msg}");
            for name in POLICY_NAMES {
                assert!(msg.contains(name), "`{spec}`: {msg} lacks {name}");
            }
        }
    }
}
