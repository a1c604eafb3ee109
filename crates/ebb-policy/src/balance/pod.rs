//! Power-of-d choices: sample `d` Ready nodes, send to the least loaded.
//!
//! State: `d`, the sampling mode and the queue measure (as for JSQ:
//! `:reported`, `:speed`). Cost: O(d) expected
//! and allocation-free (samples live in a fixed stack buffer of
//! [`MAX_SAMPLES`]). `p2c` is d = 2. Sampling is without replacement by
//! default (d distinct nodes, so d = n is exactly JSQ); `:with` samples
//! independently as in the original analysis. Origin: Mitzenmacher 1996 /
//! Vvedenskaya et al. 1996 — with d = 2 the tail of the queue-length
//! distribution falls doubly exponentially instead of geometrically.

use super::sample::{self, MAX_SAMPLES};
use super::signal::QueueMeasure;
use super::{Balancer, Choice, NodeView, RequestInfo};
use ebb_core::{Instant, Rng};

/// How the `d` candidates are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sampling {
    /// `d` distinct nodes (or all Ready nodes when fewer than `d`).
    #[default]
    WithoutReplacement,
    /// `d` independent draws; the same node may come up twice.
    WithReplacement,
}

#[derive(Clone, Debug)]
pub struct PowerOfD {
    d: usize,
    sampling: Sampling,
    measure: QueueMeasure,
}

impl PowerOfD {
    /// `d` is clamped to `1..=MAX_SAMPLES`; [`super::parse`] rejects values
    /// outside that range instead.
    pub fn new(d: usize, sampling: Sampling, measure: impl Into<QueueMeasure>) -> PowerOfD {
        PowerOfD {
            d: d.clamp(1, MAX_SAMPLES),
            sampling,
            measure: measure.into(),
        }
    }

    /// Power-of-two choices without replacement on `in_flight`.
    pub fn p2c() -> PowerOfD {
        PowerOfD::new(2, Sampling::WithoutReplacement, QueueMeasure::default())
    }

    pub fn d(&self) -> usize {
        self.d
    }
}

impl Balancer for PowerOfD {
    fn name(&self) -> String {
        let base = if self.d == 2 {
            "p2c".to_string()
        } else {
            format!("pod:{}", self.d)
        };
        let with = match self.sampling {
            Sampling::WithoutReplacement => "",
            Sampling::WithReplacement => ":with",
        };
        format!("{base}{with}{}", self.measure.suffix())
    }

    #[inline]
    fn pick(
        &mut self,
        nodes: &[NodeView],
        _req: RequestInfo,
        _now: Instant,
        rng: &mut Rng,
    ) -> Choice {
        if self.d == 2 && self.sampling == Sampling::WithoutReplacement {
            // Samples arrive in random order: the first wins ties.
            return match sample::two_without_replacement(nodes, rng) {
                None => Choice::Hold,
                Some((a, None)) => Choice::Node(a),
                Some((a, Some(b))) => {
                    let b_less = self.measure.key(&nodes[b]) < self.measure.key(&nodes[a]);
                    Choice::Node(if b_less { b } else { a })
                }
            };
        }
        let mut buf = [0usize; MAX_SAMPLES];
        let k = match self.sampling {
            Sampling::WithoutReplacement => {
                sample::without_replacement(nodes, self.d, rng, &mut buf)
            }
            Sampling::WithReplacement => sample::with_replacement(nodes, self.d, rng, &mut buf),
        };
        // Samples arrive in random order, so keeping the first of equals is
        // a uniform tie-break.
        let mut best: Option<(usize, f64)> = None;
        for &i in &buf[..k] {
            let load = self.measure.key(&nodes[i]);
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((i, load));
            }
        }
        match best {
            Some((i, _)) => Choice::Node(i),
            None => Choice::Hold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::signal::LoadSignal;
    use crate::balance::testutil::{NO_DEADLINE, pool};

    /// Every sample pair drawn with the same seed, to see what p2c chose
    /// between.
    fn samples(seed: u64, nodes: &[NodeView], d: usize, s: Sampling) -> Vec<usize> {
        let mut rng = Rng::seeded(seed);
        let mut buf = [0usize; MAX_SAMPLES];
        let k = match s {
            Sampling::WithoutReplacement => {
                sample::without_replacement(nodes, d, &mut rng, &mut buf)
            }
            Sampling::WithReplacement => sample::with_replacement(nodes, d, &mut rng, &mut buf),
        };
        buf[..k].to_vec()
    }

    #[test]
    fn never_picks_the_worse_of_its_two_samples() {
        let mut nodes = pool(8);
        for (i, v) in nodes.iter_mut().enumerate() {
            v.in_flight = (i as u32 * 7) % 5;
        }
        for seed in 0..500 {
            let pair = samples(seed, &nodes, 2, Sampling::WithoutReplacement);
            let mut p = PowerOfD::p2c();
            let mut rng = Rng::seeded(seed);
            let Choice::Node(i) = p.pick(&nodes, NO_DEADLINE, Instant::EPOCH, &mut rng) else {
                panic!("seed {seed}: held");
            };
            assert!(pair.contains(&i), "seed {seed}: {i} not in {pair:?}");
            let worst = pair.iter().map(|&j| nodes[j].in_flight).max().unwrap_or(0);
            let best = pair.iter().map(|&j| nodes[j].in_flight).min().unwrap_or(0);
            assert_eq!(nodes[i].in_flight, best, "seed {seed}: pair {pair:?}");
            assert!(best == worst || nodes[i].in_flight < worst);
        }
    }

    #[test]
    fn without_replacement_gives_d_distinct_nodes() {
        let nodes = pool(6);
        for seed in 0..300 {
            for d in 1..=6 {
                let mut s = samples(seed, &nodes, d, Sampling::WithoutReplacement);
                assert_eq!(s.len(), d);
                s.sort_unstable();
                s.dedup();
                assert_eq!(s.len(), d, "seed {seed} d {d}");
            }
        }
    }

    #[test]
    fn with_replacement_can_repeat() {
        let nodes = pool(2);
        let repeated = (0..100).any(|seed| {
            let s = samples(seed, &nodes, 2, Sampling::WithReplacement);
            s[0] == s[1]
        });
        assert!(repeated, "100 pairs from 2 nodes never repeated");
    }

    /// Throws `n` requests at `n` idle nodes with nothing completing and
    /// returns the largest pile.
    fn max_pile(b: &mut dyn Balancer, n: u32, seed: u64) -> u32 {
        let mut nodes = pool(n);
        let mut rng = Rng::seeded(seed);
        for _ in 0..n {
            if let Choice::Node(i) = b.pick(&nodes, NO_DEADLINE, Instant::EPOCH, &mut rng) {
                nodes[i].in_flight += 1;
            }
        }
        nodes.iter().map(|v| v.in_flight).max().unwrap_or(0)
    }

    #[test]
    fn two_choices_flatten_the_worst_pile() {
        // Balls into bins, n = 10^4: one random choice leaves a worst pile
        // near ln n / ln ln n ~ 7; two choices, ln ln n / ln 2 + O(1) ~ 3.
        let n = 10_000;
        for seed in [1, 2, 3] {
            let random = max_pile(&mut crate::balance::random::Random::new(), n, seed);
            let two = max_pile(&mut PowerOfD::p2c(), n, seed);
            let two_with = max_pile(
                &mut PowerOfD::new(2, Sampling::WithReplacement, LoadSignal::InFlight),
                n,
                seed,
            );
            assert!(
                random >= two.max(two_with) + 2,
                "seed {seed}: random {random}, p2c {two}, {two_with}"
            );
            assert!(
                two <= 4 && two_with <= 4,
                "seed {seed}: p2c worst piles {two}, {two_with}"
            );
        }
    }

    #[test]
    fn d_equal_n_is_jsq() {
        let mut nodes = pool(5);
        for (v, q) in nodes.iter_mut().zip([3, 1, 4, 0, 5]) {
            v.in_flight = q;
        }
        let mut p = PowerOfD::new(5, Sampling::WithoutReplacement, LoadSignal::InFlight);
        let mut rng = Rng::seeded(2);
        for _ in 0..50 {
            assert_eq!(
                p.pick(&nodes, NO_DEADLINE, Instant::EPOCH, &mut rng),
                Choice::Node(3)
            );
        }
    }
}
