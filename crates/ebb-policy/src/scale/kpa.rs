//! KPA-like: Knative's concurrency autoscaler.
//!
//! Each tick it records the observed concurrency (mean requests in the
//! system over the tick) and averages it over a stable window (60 s) and a
//! panic window (6 s, 10% of stable). Desired nodes are
//! `ceil(average / target)` for each window. When the panic window's demand
//! reaches `threshold` (200%) of the ready nodes, the policy panics: for at
//! least one stable window it follows the panic window and never scales
//! down. Rate limits: up to 1000× the ready nodes at once, down to half.
//!
//! The target default, 0.7 requests per node, is Knative's for a container
//! concurrency of 1 (ebb's simulated nodes serve one request at a time)
//! times its 70% target utilisation. State: one window of samples.

use super::window::Window;
use super::{Decision, Reason, ScalePolicy, Signals};
use crate::balance::parse::format_duration;
use ebb_core::{Instant, Nanos, Rng};

pub const DEFAULT_TARGET: f64 = 0.7;
pub const DEFAULT_STABLE_WINDOW: Nanos = Nanos::from_secs(60);
pub const DEFAULT_PANIC_WINDOW: Nanos = Nanos::from_secs(6);
pub const DEFAULT_PANIC_THRESHOLD: f64 = 2.0;
pub const MAX_SCALE_UP_RATE: f64 = 1000.0;
pub const MAX_SCALE_DOWN_RATE: f64 = 2.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KpaConfig {
    /// Concurrency each node should carry.
    pub target: f64,
    pub stable_window: Nanos,
    pub panic_window: Nanos,
    /// Panic when panic-window demand / ready nodes reaches this.
    pub panic_threshold: f64,
}

impl Default for KpaConfig {
    fn default() -> Self {
        KpaConfig {
            target: DEFAULT_TARGET,
            stable_window: DEFAULT_STABLE_WINDOW,
            panic_window: DEFAULT_PANIC_WINDOW,
            panic_threshold: DEFAULT_PANIC_THRESHOLD,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Kpa {
    cfg: KpaConfig,
    samples: Window,
    panic_since: Option<Instant>,
    /// Highest target while panicking; the pool does not shrink below it.
    max_panic_nodes: u32,
}

impl Kpa {
    pub fn new(cfg: KpaConfig) -> Kpa {
        Kpa {
            cfg,
            samples: Window::new(),
            panic_since: None,
            max_panic_nodes: 0,
        }
    }

    pub fn is_panicking(&self) -> bool {
        self.panic_since.is_some()
    }
}

impl ScalePolicy for Kpa {
    fn name(&self) -> String {
        let c = &self.cfg;
        format!(
            "kpa:target={}:stable={}:panic={}:threshold={}",
            c.target,
            format_duration(c.stable_window),
            format_duration(c.panic_window),
            c.panic_threshold
        )
    }

    fn decide(&mut self, s: &Signals, now: Instant, _rng: &mut Rng) -> Decision {
        let c = self.cfg;
        self.samples.push(now, s.concurrency(), c.stable_window);
        let (Some(stable), Some(panic)) = (
            self.samples.mean(now, c.stable_window),
            self.samples.mean(now, c.panic_window),
        ) else {
            return Decision::hold(s, Reason::NoSignal);
        };
        let ready = f64::from(s.nodes.ready.max(1));
        let clamp = |n: f64| {
            n.clamp(
                (ready / MAX_SCALE_DOWN_RATE).floor(),
                (ready * MAX_SCALE_UP_RATE).ceil(),
            )
        };
        let want_stable = clamp((stable / c.target).ceil());
        let want_panic = clamp((panic / c.target).ceil());
        let over = panic / c.target / ready >= c.panic_threshold;
        match self.panic_since {
            None if over => self.panic_since = Some(now),
            Some(since) if !over && now.saturating_since(since) >= c.stable_window => {
                self.panic_since = None;
                self.max_panic_nodes = 0;
            }
            _ => {}
        }
        let (target, reason) = if self.panic_since.is_some() {
            let t = (want_panic as u32).max(self.max_panic_nodes);
            self.max_panic_nodes = t;
            (t, Reason::Panic)
        } else {
            let t = want_stable as u32;
            let current = s.nodes.current();
            let reason = match t.cmp(&current) {
                std::cmp::Ordering::Greater => Reason::Up,
                std::cmp::Ordering::Less => Reason::Down,
                std::cmp::Ordering::Equal => Reason::WithinTolerance,
            };
            (t, reason)
        };
        Decision {
            target_nodes: target,
            capacity_per_node: None,
            reason,
            inputs: Vec::new(),
        }
        .with("stable_concurrency", stable)
        .with("panic_concurrency", panic)
        .with("target", c.target)
        .limited(&s.limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::testutil::{at_secs, signals};

    /// `ready` nodes with mean concurrency `c` over a 1 s tick.
    fn conc(ready: u32, c: f64) -> Signals {
        let mut s = signals(ready, 0.5);
        s.response_sum = Nanos::from_secs_f64(c);
        s
    }

    fn kpa() -> Kpa {
        Kpa::new(KpaConfig {
            target: 1.0,
            ..KpaConfig::default()
        })
    }

    #[test]
    fn follows_the_stable_average() {
        let mut rng = Rng::seeded(1);
        let mut k = kpa();
        for t in 0..60 {
            k.decide(&conc(10, 10.0), at_secs(t), &mut rng);
        }
        // Concurrency 12 for one second: stable mean (59·10 + 12)/60 = 10.03
        // → 11 nodes; the panic window (6 s, 7 samples) sees (6·10+12)/7 =
        // 10.3, ratio 1.03 < 2: no panic.
        let d = k.decide(&conc(10, 12.0), at_secs(60), &mut rng);
        assert_eq!((d.target_nodes, d.reason), (11, Reason::Up));
        assert!(!k.is_panicking());
    }

    #[test]
    fn panics_on_a_burst_and_does_not_scale_down_while_panicking() {
        let mut rng = Rng::seeded(1);
        let mut k = kpa();
        for t in 0..60 {
            k.decide(&conc(10, 10.0), at_secs(t), &mut rng);
        }
        // A burst of 80: the panic window (7 samples at 1 s ticks) averages
        // (6·10 + 80)/7 = 20, 2× the 10 ready nodes: panic, target 20.
        let d = k.decide(&conc(10, 80.0), at_secs(60), &mut rng);
        assert_eq!((d.target_nodes, d.reason), (20, Reason::Panic));
        // Demand drops back: panic continues and holds the 20 nodes.
        let d = k.decide(&conc(20, 10.0), at_secs(61), &mut rng);
        assert_eq!((d.target_nodes, d.reason), (20, Reason::Panic));
        // A stable window after the panic began with no new panic: it ends.
        let mut last = d;
        for t in 62..=120 {
            last = k.decide(&conc(20, 10.0), at_secs(t), &mut rng);
        }
        assert!(!k.is_panicking());
        assert_eq!(last.reason, Reason::Down);
        // The stable window (60 s back to the burst) averages (80 + 60·10)/61.
        assert_eq!(last.target_nodes, 12);
    }

    #[test]
    fn scale_down_is_limited_to_half() {
        let mut rng = Rng::seeded(1);
        let mut k = kpa();
        let d = k.decide(&conc(10, 1.0), at_secs(0), &mut rng);
        assert_eq!(d.target_nodes, 5);
    }
}
