//! Generating arrival instants for a run, one at a time, from an
//! [`Arrivals`] process scaled to the run's average rate.

use crate::arrivals::Arrivals;
use crate::exp_sampler::exp;
use crate::trace::Trace;
use ebb_core::Rng;
use std::sync::Arc;

const NS_PER_SEC: f64 = 1e9;

/// Rate multiplier over time for the thinned processes.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Step { at_ns: f64, factor: f64 },
    Ramp { from: f64, to: f64, over_ns: f64 },
    Diurnal { omega_per_ns: f64, amplitude: f64 },
}

impl Shape {
    fn multiplier(&self, t_ns: f64) -> f64 {
        match *self {
            Shape::Step { at_ns, factor } => {
                if t_ns < at_ns {
                    1.0
                } else {
                    factor
                }
            }
            Shape::Ramp { from, to, over_ns } => {
                if t_ns >= over_ns {
                    to
                } else {
                    from + (to - from) * t_ns / over_ns
                }
            }
            Shape::Diurnal {
                omega_per_ns,
                amplitude,
            } => 1.0 + amplitude * (omega_per_ns * t_ns).sin(),
        }
    }

    fn peak(&self) -> f64 {
        match *self {
            Shape::Step { factor, .. } => factor.max(1.0),
            Shape::Ramp { from, to, .. } => from.max(to),
            Shape::Diurnal { amplitude, .. } => 1.0 + amplitude,
        }
    }
}

#[derive(Clone, Debug)]
enum Gen {
    Poisson {
        gap_ns: f64,
    },
    Mmpp {
        gap_ns: [f64; 2],
        stay_ns: [f64; 2],
        state: usize,
        switch_at: f64,
    },
    Thinned {
        shape: Shape,
        peak_gap_ns: f64,
    },
    /// Timestamps replayed at `scale` nanoseconds per trace second.
    TraceTs {
        ts: Arc<[f64]>,
        idx: usize,
        scale: f64,
    },
    /// A Poisson process whose rate is `1 / gap_ns × mult[s]` in second `s`;
    /// ends after the last second.
    Piecewise {
        mult: Arc<[f64]>,
        gap_ns: f64,
    },
    /// Per-interval counts, each interval `width_ns` long, its arrivals spread
    /// uniformly (sorted uniforms drawn one at a time, so no buffer).
    TraceCounts {
        counts: Arc<[u32]>,
        line: usize,
        left: u64,
        cursor_ns: f64,
        width_ns: f64,
    },
}

/// Generates arrival instants (nanoseconds, non-decreasing) one at a time.
#[derive(Clone, Debug)]
pub(crate) struct ArrivalGen {
    process: Gen,
    /// Time of the previous arrival, as a float to keep sub-nanosecond gaps.
    t_ns: f64,
    done: bool,
}

impl ArrivalGen {
    /// `rate_per_sec` is the average arrival rate the run asks for.
    pub(crate) fn new(arrivals: &Arrivals, rate_per_sec: f64, rng: &mut Rng) -> ArrivalGen {
        let gap_ns = NS_PER_SEC / rate_per_sec;
        let process = match arrivals {
            Arrivals::Poisson => Gen::Poisson { gap_ns },
            Arrivals::Mmpp { r1, r2, s12, s21 } => {
                let p1 = s21 / (s12 + s21);
                let mean_mult = p1 * r1 + (1.0 - p1) * r2;
                let state = usize::from(!rng.chance(p1));
                let stay_ns = [NS_PER_SEC / s12, NS_PER_SEC / s21];
                Gen::Mmpp {
                    gap_ns: [gap_ns * mean_mult / r1, gap_ns * mean_mult / r2],
                    stay_ns,
                    state,
                    switch_at: exp(rng, stay_ns[state]),
                }
            }
            Arrivals::Step { at, factor } => thinned(
                Shape::Step {
                    at_ns: at * NS_PER_SEC,
                    factor: *factor,
                },
                gap_ns,
            ),
            Arrivals::Ramp { from, to, over } => thinned(
                Shape::Ramp {
                    from: *from,
                    to: *to,
                    over_ns: over * NS_PER_SEC,
                },
                gap_ns,
            ),
            Arrivals::Diurnal { period, amplitude } => thinned(
                Shape::Diurnal {
                    omega_per_ns: std::f64::consts::TAU / (period * NS_PER_SEC),
                    amplitude: *amplitude,
                },
                gap_ns,
            ),
            Arrivals::Builtin { trace, seconds } => Gen::Piecewise {
                mult: trace.shape(*seconds, rng).into(),
                gap_ns,
            },
            Arrivals::Trace(trace) => {
                // Stretch so that the trace's mean rate becomes the asked rate.
                let scale = NS_PER_SEC * trace.mean_rate_per_unit() / rate_per_sec;
                match trace {
                    Trace::Timestamps(ts) => Gen::TraceTs {
                        ts: Arc::clone(ts),
                        idx: 0,
                        scale,
                    },
                    Trace::Counts(counts) => Gen::TraceCounts {
                        counts: Arc::clone(counts),
                        line: 0,
                        left: 0,
                        cursor_ns: 0.0,
                        width_ns: scale,
                    },
                }
            }
        };
        ArrivalGen {
            process,
            t_ns: 0.0,
            done: false,
        }
    }

    /// The next arrival instant, or `None` when a trace has run out.
    #[inline]
    pub(crate) fn next(&mut self, rng: &mut Rng) -> Option<u64> {
        if self.done {
            return None;
        }
        match &mut self.process {
            Gen::Poisson { gap_ns } => self.t_ns += exp(rng, *gap_ns),
            Gen::Mmpp {
                gap_ns,
                stay_ns,
                state,
                switch_at,
            } => loop {
                let t = self.t_ns + exp(rng, gap_ns[*state]);
                if t < *switch_at {
                    self.t_ns = t;
                    break;
                }
                // Memoryless: restart the clock from the switch instant.
                self.t_ns = *switch_at;
                *state = 1 - *state;
                *switch_at += exp(rng, stay_ns[*state]);
            },
            Gen::Thinned { shape, peak_gap_ns } => loop {
                self.t_ns += exp(rng, *peak_gap_ns);
                if rng.unit() * shape.peak() < shape.multiplier(self.t_ns) {
                    break;
                }
            },
            Gen::Piecewise { mult, gap_ns } => loop {
                // Memoryless: a candidate past the second's end restarts
                // at the boundary with the next second's rate.
                let sec = (self.t_ns / NS_PER_SEC) as usize;
                let Some(m) = mult.get(sec) else {
                    self.done = true;
                    return None;
                };
                let end = (sec + 1) as f64 * NS_PER_SEC;
                if *m > 0.0 {
                    let t = self.t_ns + exp(rng, *gap_ns / m);
                    if t < end {
                        self.t_ns = t;
                        break;
                    }
                }
                self.t_ns = end;
            },
            Gen::TraceTs { ts, idx, scale } => {
                let Some(t) = ts.get(*idx) else {
                    self.done = true;
                    return None;
                };
                *idx += 1;
                self.t_ns = (t - ts[0]) * *scale;
            }
            Gen::TraceCounts {
                counts,
                line,
                left,
                cursor_ns,
                width_ns,
            } => {
                while *left == 0 {
                    let Some(c) = counts.get(*line) else {
                        self.done = true;
                        return None;
                    };
                    *cursor_ns = *line as f64 * *width_ns;
                    *line += 1;
                    *left = u64::from(*c);
                }
                // The smallest of `left` uniforms on [cursor, end).
                let end = *line as f64 * *width_ns;
                let u = 1.0 - rng.unit();
                *cursor_ns += (end - *cursor_ns) * (1.0 - u.powf(1.0 / *left as f64));
                *left -= 1;
                self.t_ns = *cursor_ns;
            }
        }
        Some(round_nonneg(self.t_ns))
    }
}

fn thinned(shape: Shape, gap_ns: f64) -> Gen {
    Gen::Thinned {
        peak_gap_ns: gap_ns / shape.peak(),
        shape,
    }
}

/// `x.round() as u64` for `x` ≥ 0 (or NaN), without the call into libm
/// that `f64::round` is on x86-64's baseline: the integer part by
/// truncation, then up if the fraction (exact: `x − trunc(x)` loses no
/// bits) is at least one half, the same half-away-from-zero rounding and
/// the same saturation at `u64::MAX`.
#[inline]
pub(crate) fn round_nonneg(x: f64) -> u64 {
    let t = x as u64;
    if x - t as f64 >= 0.5 {
        t.saturating_add(1)
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_nonneg_is_round_as_u64() {
        let mut xs = vec![
            0.0,
            0.49999999999999994,
            0.5,
            1.5,
            2.5,
            4503599627370495.5,
            9007199254740993.0,
            1.8446744073709552e19,
            1e30,
            f64::INFINITY,
            f64::NAN,
        ];
        let mut rng = Rng::seeded(3);
        for _ in 0..100_000 {
            let scale = 10f64.powi(rng.below(20) as i32);
            xs.push(rng.unit() * scale);
            xs.push((rng.below(1 << 20) as f64) + 0.5);
        }
        for x in xs {
            assert_eq!(round_nonneg(x), x.round() as u64, "x = {x:e}");
        }
    }

    fn mean_rate(a: &Arrivals, n: usize) -> f64 {
        let mut rng = Rng::seeded(11);
        let mut g = ArrivalGen::new(a, 2.0, &mut rng);
        let mut last = 0;
        for _ in 0..n {
            let t = g.next(&mut rng).unwrap();
            assert!(t >= last);
            last = t;
        }
        n as f64 / (last as f64 / NS_PER_SEC)
    }

    #[test]
    fn poisson_mmpp_and_diurnal_average_the_asked_rate() {
        let n = 200_000;
        // Poisson: relative sd of the rate estimate is 1/sqrt(n) = 0.0022.
        let r = mean_rate(&Arrivals::Poisson, n);
        assert!((r - 2.0).abs() < 2.0 * 5.0 * 0.0023, "poisson {r}");
        // Diurnal over many periods (period 100 s, run ~100,000 s).
        let d = Arrivals::Diurnal {
            period: 100.0,
            amplitude: 0.8,
        };
        let r = mean_rate(&d, n);
        assert!((r - 2.0).abs() < 0.05, "diurnal {r}");
        // MMPP with 10 s / 20 s sojourns: ~3,000 switches in the run.
        let m = Arrivals::Mmpp {
            r1: 4.0,
            r2: 1.0,
            s12: 0.1,
            s21: 0.05,
        };
        let r = mean_rate(&m, n);
        assert!((r - 2.0).abs() < 0.1, "mmpp {r}");
    }

    /// Arrivals of a rate-2 process in [from, to) seconds.
    fn count_between(a: &Arrivals, from: f64, to: f64) -> usize {
        let mut rng = Rng::seeded(12);
        let mut g = ArrivalGen::new(a, 2.0, &mut rng);
        let mut n = 0;
        while let Some(t) = g.next(&mut rng) {
            let t = t as f64 / NS_PER_SEC;
            if t >= to {
                break;
            }
            n += usize::from(t >= from);
        }
        n
    }

    #[test]
    fn a_builtin_shape_is_followed_second_by_second_and_ends() {
        use crate::builtin::BuiltinTrace;
        let a = Arrivals::Builtin {
            trace: BuiltinTrace::Step,
            seconds: 3000,
        };
        let shape = BuiltinTrace::Step.shape(3000, &mut Rng::seeded(12));
        let mut rng = Rng::seeded(12);
        let mut g = ArrivalGen::new(&a, 10.0, &mut rng);
        let mut per_sec = vec![0u32; 3000];
        let mut n = 0;
        while let Some(t) = g.next(&mut rng) {
            per_sec[(t / 1_000_000_000) as usize] += 1;
            n += 1;
        }
        // 30,000 expected over the trace; Poisson sd 173.
        assert!((n as f64 - 30_000.0).abs() < 5.0 * 173.0, "{n}");
        // Before the step 0.6/1.0 × 10 per second, after it 1.6 (normalised).
        let at = shape.iter().position(|m| *m > shape[0]).unwrap();
        let rate = |r: std::ops::Range<usize>| {
            per_sec[r.clone()].iter().sum::<u32>() as f64 / r.len() as f64
        };
        let (lo, hi) = (rate(0..at), rate(at..3000));
        assert!((lo / hi - 0.6 / 1.6).abs() < 0.03, "{lo} {hi}");
        assert!(
            (lo - 10.0 * shape[0]).abs() < 0.3,
            "{lo} vs {}",
            10.0 * shape[0]
        );
    }

    #[test]
    fn step_and_ramp_follow_their_multiplier() {
        // Expected counts are Poisson: sd = sqrt(mean); allow 5 sd.
        let within = |n: usize, mean: f64| (n as f64 - mean).abs() < 5.0 * mean.sqrt();
        let step = Arrivals::Step {
            at: 10_000.0,
            factor: 3.0,
        };
        assert!(within(count_between(&step, 0.0, 10_000.0), 20_000.0));
        assert!(within(count_between(&step, 10_000.0, 20_000.0), 60_000.0));
        let ramp = Arrivals::Ramp {
            from: 0.0,
            to: 2.0,
            over: 10_000.0,
        };
        // Multiplier averages 0.25 over the first quarter, 1.75 over the last.
        assert!(within(count_between(&ramp, 0.0, 2_500.0), 1_250.0));
        assert!(within(count_between(&ramp, 7_500.0, 10_000.0), 8_750.0));
        assert!(within(count_between(&ramp, 10_000.0, 12_500.0), 10_000.0));
    }
}
