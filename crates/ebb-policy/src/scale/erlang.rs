//! M/M/k arithmetic for the queue-model policy: Erlang B and C, the tail of
//! the response time, the smallest pool that meets an objective, and
//! square-root staffing.
//!
//! `a` is the offered load in erlangs (arrival rate × mean service time);
//! times are in units of the mean service time.

/// Loads above this many erlangs start the Erlang B recursion near the load
/// rather than at one server.
const FAST_START_ERLANGS: f64 = 100.0;
/// How many standard deviations (√a) below the load the recursion starts.
const FAST_START_SDS: f64 = 12.0;

/// Erlang B for `k` servers, by the recursion B(j) = a B(j−1) / (j + a B(j−1)),
/// which never forms factorials.
///
/// Below the load the recursion contracts (each step multiplies an error by
/// about j/a), so for large loads it starts 12√a servers below the load
/// (or below `k`, if smaller) from the fluid value 1 − j/a: the start's error shrinks by about
/// e^(−72) before it matters, and a 10,000-erlang pool costs 1,200 steps,
/// not 10,000.
pub fn erlang_b(k: u32, a: f64) -> f64 {
    let (start, mut b) = if a > FAST_START_ERLANGS {
        let top = a.min(f64::from(k));
        let j = (top - FAST_START_SDS * a.sqrt()).floor().max(0.0) as u32;
        (j, 1.0 - f64::from(j) / a)
    } else {
        (0, 1.0)
    };
    for j in start + 1..=k {
        b = a * b / (f64::from(j) + a * b);
    }
    b
}

/// Erlang C from Erlang B: the probability an arrival waits; 1 when the
/// pool cannot keep up (k ≤ a).
pub fn erlang_c_from_b(k: u32, a: f64, b: f64) -> f64 {
    let k = f64::from(k);
    if k <= a {
        return 1.0;
    }
    let rho = a / k;
    b / (1.0 - rho * (1.0 - b))
}

/// P(response > t) in M/M/k with waiting probability `c`: the wait is 0 with
/// probability 1 − C, else exponential with rate θ = k − a; service is
/// exponential(1).
pub fn response_exceeds(k: u32, a: f64, c: f64, t: f64) -> f64 {
    let theta = f64::from(k) - a;
    if theta <= 0.0 {
        return 1.0;
    }
    let hypo = if (theta - 1.0).abs() < 1e-9 {
        (1.0 + t) * (-t).exp()
    } else {
        (theta * (-t).exp() - (-theta * t).exp()) / (theta - 1.0)
    };
    ((1.0 - c) * (-t).exp() + c * hypo).clamp(0.0, 1.0)
}

/// Servers the square-root staffing rule gives: a + β√a, rounded up.
pub fn sqrt_staffing(a: f64, beta: f64) -> u32 {
    (a + beta * a.max(0.0).sqrt()).ceil().max(1.0) as u32
}

/// The Halfin–Whitt β for a waiting probability `p`: solves
/// p = 1 / (1 + β Φ(β) / φ(β)) by bisection. The staffing guess starts
/// there; the exact Erlang C check follows.
pub fn halfin_whitt_beta(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let wait = |beta: f64| 1.0 / (1.0 + beta * normal_cdf(beta) / normal_pdf(beta));
    let (mut lo, mut hi) = (0.0f64, 10.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if wait(mid) > p { lo = mid } else { hi = mid }
    }
    hi
}

/// z with P(N(0,1) > z) = p, by bisection on Φ; clamped to [0, 8].
pub fn normal_upper_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 8.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if 1.0 - normal_cdf(mid) > p {
            lo = mid
        } else {
            hi = mid
        }
    }
    hi
}

fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Φ by the Abramowitz–Stegun 7.1.26 erf approximation (error < 1.5e-7).
fn normal_cdf(x: f64) -> f64 {
    let z = x / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    0.5 * (1.0 + if z >= 0.0 { erf } else { -erf })
}

/// The smallest pool whose response time exceeds `t` (in mean service
/// times) with probability at most `miss`, for offered load `a`, up to
/// `max` servers (returned if even that misses).
///
/// The fast path: start at the square-root staffing guess, compute Erlang B
/// there once (O(k)), then step up or down with the O(1) recursions
/// B(k+1) = a B / (k+1 + a B) and B(k−1) = k B / (a (1 − B)).
pub fn servers_for(a: f64, t: f64, miss: f64, max: u32) -> u32 {
    if a.is_nan() || a <= 0.0 {
        return 1;
    }
    let fits = |k: u32, b: f64| response_exceeds(k, a, erlang_c_from_b(k, a, b), t) <= miss;
    let floor = (a.floor() as u32).saturating_add(1).min(max.max(1));
    let guess = sqrt_staffing(a, halfin_whitt_beta(miss)).clamp(floor, max.max(1));
    let mut k = guess;
    let mut b = erlang_b(k, a);
    while !fits(k, b) && k < max {
        k += 1;
        b = a * b / (f64::from(k) + a * b);
    }
    while k > floor {
        let prev = f64::from(k) * b / (a * (1.0 - b));
        if !fits(k - 1, prev) {
            break;
        }
        k -= 1;
        b = prev;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_c_matches_hand_computed_values() {
        // k = 2, a = 1: B = (1/2)/(1 + 1 + 1/2) = 0.2; C = 0.2 / (1 − 0.5·0.8) = 1/3.
        let b = erlang_b(2, 1.0);
        assert!((b - 0.2).abs() < 1e-12);
        assert!((erlang_c_from_b(2, 1.0, b) - 1.0 / 3.0).abs() < 1e-12);
        // One server: C = ρ.
        let b1 = erlang_b(1, 0.7);
        assert!((erlang_c_from_b(1, 0.7, b1) - 0.7).abs() < 1e-12);
        assert_eq!(erlang_c_from_b(3, 3.0, erlang_b(3, 3.0)), 1.0);
    }

    #[test]
    fn the_fast_start_agrees_with_the_full_recursion() {
        let full = |k: u32, a: f64| {
            let mut b = 1.0;
            for j in 1..=k {
                b = a * b / (f64::from(j) + a * b);
            }
            b
        };
        for a in [101.0, 500.0, 9_000.0, 50_000.0] {
            for k in [
                (a * 0.5) as u32,
                a as u32,
                (a * 1.02) as u32,
                (a * 1.1) as u32,
            ] {
                let (x, y) = (erlang_b(k, a), full(k, a));
                assert!(
                    (x - y).abs() <= 1e-12 * y.max(1e-300),
                    "a={a} k={k}: {x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn one_server_response_tail_is_exponential() {
        // M/M/1: response ~ Exp(1 − ρ); at ρ = 0.5, P(T > 4) = e^(−2).
        let c = erlang_c_from_b(1, 0.5, erlang_b(1, 0.5));
        let p = response_exceeds(1, 0.5, c, 4.0);
        assert!((p - (-2.0f64).exp()).abs() < 1e-12, "{p}");
    }

    #[test]
    fn servers_for_is_the_smallest_pool_that_fits() {
        for (a, t, miss) in [
            (0.5, 6.0, 0.01),
            (10.0, 6.0, 0.01),
            (95.0, 8.0, 0.001),
            (1000.0, 6.0, 0.01),
        ] {
            let k = servers_for(a, t, miss, 1 << 20);
            let tail = |k: u32| response_exceeds(k, a, erlang_c_from_b(k, a, erlang_b(k, a)), t);
            assert!(tail(k) <= miss, "a={a} k={k}");
            assert!(
                f64::from(k - 1) <= a || tail(k - 1) > miss,
                "a={a} k={k} not smallest"
            );
        }
        // Exp(1) service alone exceeds 3 with e^-3 ≈ 0.0498 > 0.01: even an
        // idle pool misses, so the answer is the bound.
        assert_eq!(servers_for(0.5, 3.0, 0.01, 50), 50);
        assert_eq!(servers_for(0.0, 1.0, 0.01, 10), 1);
    }

    #[test]
    fn normal_quantiles_match_tables() {
        assert!((normal_upper_quantile(0.01) - 2.326).abs() < 1e-3);
        assert!((normal_upper_quantile(0.1) - 1.2816).abs() < 1e-3);
        assert!(normal_upper_quantile(0.9) < 1e-9);
    }

    #[test]
    fn square_root_staffing_is_sub_linear() {
        let beta = halfin_whitt_beta(0.2);
        // Hand-checked: α(β) = 0.2 near β ≈ 1.06 (Halfin–Whitt table).
        assert!((beta - 1.06).abs() < 0.03, "{beta}");
        let extra = |a: f64| f64::from(sqrt_staffing(a, beta)) - a;
        // Spare capacity grows like √a: 100× the load, about 10× the spare.
        let ratio = extra(10_000.0) / extra(100.0);
        assert!((9.0..11.5).contains(&ratio), "{ratio}");
    }
}
