//! Closed forms the simulator is checked against.
//!
//! All results assume Poisson arrivals, exponential service with mean 1 (so
//! times are in units of the mean service time) and identical nodes; `rho` is
//! the per-node load λ / (k μ). Multiply by the mean service time for other
//! means.

/// Bisection steps: halves a unit interval to below f64 resolution.
const BISECT_STEPS: u32 = 200;

/// M/M/1 mean response time 1 / (1 − ρ): also random routing to k nodes,
/// which splits a Poisson stream into k independent M/M/1 queues.
pub fn mm1_mean_response(rho: f64) -> f64 {
    1.0 / (1.0 - rho)
}

/// M/M/1 mean wait ρ / (1 − ρ).
pub fn mm1_mean_wait(rho: f64) -> f64 {
    rho / (1.0 - rho)
}

/// M/M/1 response-time quantile: the response time is exponential with
/// rate 1 − ρ, so the q-quantile is −ln(1 − q) / (1 − ρ).
pub fn mm1_response_quantile(rho: f64, q: f64) -> f64 {
    -(1.0 - q).ln() / (1.0 - rho)
}

/// M/M/1 where a request whose wait would exceed `deadline` is dropped
/// without service (FIFO, so a dropped request delays nobody: "M/M/1+D").
/// Level crossing on the virtual waiting time gives
/// P(drop) = ρ a (1 − ρ) / (1 − ρ² a) with a = e^(−(1−ρ) D); D = 0 is the
/// M/M/1/1 loss ρ / (1 + ρ), D → ∞ is 0.
pub fn mm1_deadline_drop_probability(rho: f64, deadline: f64) -> f64 {
    let a = (-(1.0 - rho) * deadline).exp();
    rho * a * (1.0 - rho) / (1.0 - rho * rho * a)
}

/// Erlang B blocking probability for `k` servers and offered load `a = λ/μ`,
/// by the recursion B(j) = a B(j−1) / (j + a B(j−1)), which never forms the
/// huge powers and factorials of the textbook formula.
pub fn erlang_b(k: u32, a: f64) -> f64 {
    let mut b = 1.0;
    for j in 1..=k {
        b = a * b / (f64::from(j) + a * b);
    }
    b
}

/// Erlang C: probability that an arrival to M/M/k waits, from Erlang B as
/// C = B / (1 − ρ (1 − B)).
pub fn erlang_c(k: u32, rho: f64) -> f64 {
    let b = erlang_b(k, rho * f64::from(k));
    b / (1.0 - rho * (1.0 - b))
}

/// M/M/k mean wait: C / (k (1 − ρ)).
pub fn mmk_mean_wait(k: u32, rho: f64) -> f64 {
    erlang_c(k, rho) / (f64::from(k) * (1.0 - rho))
}

/// M/M/k mean response: mean wait plus one mean service.
pub fn mmk_mean_response(k: u32, rho: f64) -> f64 {
    mmk_mean_wait(k, rho) + 1.0
}

/// M/M/k response-time quantile. The wait is 0 with probability 1 − C, else
/// exponential with rate θ = k(1 − ρ); the response adds an exponential(1)
/// service, giving P(T > t) = (1−C) e^(−t) + C · P(Exp(θ) + Exp(1) > t).
pub fn mmk_response_quantile(k: u32, rho: f64, q: f64) -> f64 {
    let c = erlang_c(k, rho);
    let theta = f64::from(k) * (1.0 - rho);
    let survival = |t: f64| {
        let hypo = if (theta - 1.0).abs() < 1e-9 {
            (1.0 + t) * (-t).exp()
        } else {
            (theta * (-t).exp() - (-theta * t).exp()) / (theta - 1.0)
        };
        (1.0 - c) * (-t).exp() + c * hypo
    };
    invert_survival(survival, 1.0 - q)
}

/// Fraction of queues holding at least `i` requests in the supermarket model
/// (power of `d` choices, N → ∞): s_i = ρ^((dⁱ − 1)/(d − 1)).
pub fn supermarket_tail(rho: f64, d: u32, i: u32) -> f64 {
    if d == 1 {
        return rho.powi(i as i32);
    }
    let d = f64::from(d);
    rho.powf((d.powi(i as i32) - 1.0) / (d - 1.0))
}

/// Supermarket-model mean response (Mitzenmacher): Σ_{i≥1} ρ^((dⁱ − d)/(d − 1)).
pub fn supermarket_mean_response(rho: f64, d: u32) -> f64 {
    if d == 1 {
        return mm1_mean_response(rho);
    }
    let mut sum = 0.0;
    for i in 1..64 {
        let term = supermarket_tail(rho, d, i) / rho;
        sum += term;
        if term < 1e-17 {
            break;
        }
    }
    sum
}

/// Supermarket-model response-time quantile. An arrival joins a queue with at
/// least j requests with probability s_jᵈ and then waits for j + 1
/// exponential services, so P(T > t) = Σ_j e^(−t) tʲ/j! · s_jᵈ.
pub fn supermarket_response_quantile(rho: f64, d: u32, q: f64) -> f64 {
    let survival = |t: f64| {
        let mut sum = 0.0;
        let mut pois = (-t).exp(); // e^(−t) tʲ / j!
        for j in 0..10_000u32 {
            let s = supermarket_tail(rho, d, j).powi(d as i32);
            sum += pois * s;
            if s < 1e-18 || (pois < 1e-300 && f64::from(j) > t) {
                break;
            }
            pois *= t / f64::from(j + 1);
        }
        sum
    };
    invert_survival(survival, 1.0 - q)
}

/// Round robin over `k` nodes: each node sees every k-th Poisson arrival,
/// so Erlang-k gaps, an E_k/M/1 queue. Returns σ, the root in (0, 1) of
/// σ = A*(1 − σ) with A*(s) = (kρ / (kρ + s))ᵏ.
pub fn ekm1_sigma(k: u32, rho: f64) -> f64 {
    let kr = f64::from(k) * rho;
    // g(σ) − σ is positive at 0, negative just below 1 (g'(1) = 1/ρ > 1).
    let h = |s: f64| (-f64::from(k) * ((1.0 - s) / kr).ln_1p()).exp() - s;
    let (mut lo, mut hi) = (0.0, 1.0 - 1e-12);
    for _ in 0..BISECT_STEPS {
        let mid = 0.5 * (lo + hi);
        if h(mid) > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// E_k/M/1 mean response: the response time is exponential with rate 1 − σ.
pub fn ekm1_mean_response(k: u32, rho: f64) -> f64 {
    1.0 / (1.0 - ekm1_sigma(k, rho))
}

/// E_k/M/1 response-time quantile.
pub fn ekm1_response_quantile(k: u32, rho: f64, q: f64) -> f64 {
    -(1.0 - q).ln() / (1.0 - ekm1_sigma(k, rho))
}

/// Smallest t with survival(t) ≤ p, for a decreasing survival function.
fn invert_survival(survival: impl Fn(f64) -> f64, p: f64) -> f64 {
    let mut hi = 1.0;
    while survival(hi) > p && hi < 1e12 {
        hi *= 2.0;
    }
    let mut lo = 0.0;
    for _ in 0..BISECT_STEPS {
        let mid = 0.5 * (lo + hi);
        if survival(mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs()
    }

    #[test]
    fn erlang_c_matches_textbook_values() {
        // One server: C = ρ. Two servers at a = 1 (ρ = 0.5): C = 1/3.
        assert!(close(erlang_c(1, 0.7), 0.7, 1e-12));
        assert!(close(erlang_c(2, 0.5), 1.0 / 3.0, 1e-12));
        // k = 10, a = 8: C ≈ 0.409 (standard tables).
        assert!(close(erlang_c(10, 0.8), 0.4092, 1e-3));
        // Stable where factorials overflow: k = 5000 at ρ = 0.99.
        let c = erlang_c(5000, 0.99);
        assert!(c.is_finite() && c > 0.0 && c < 1.0, "{c}");
    }

    #[test]
    fn special_cases_reduce_to_mm1() {
        let rho = 0.8;
        assert!(close(mmk_mean_response(1, rho), 5.0, 1e-12));
        assert!(close(supermarket_mean_response(rho, 1), 5.0, 1e-12));
        assert!(close(ekm1_mean_response(1, rho), 5.0, 1e-9));
        let p99 = mm1_response_quantile(rho, 0.99);
        assert!(close(mmk_response_quantile(1, rho, 0.99), p99, 1e-9));
        assert!(close(
            supermarket_response_quantile(rho, 1, 0.99),
            p99,
            1e-9
        ));
        assert!(close(ekm1_response_quantile(1, rho, 0.99), p99, 1e-9));
    }

    #[test]
    fn deadline_drop_probability_has_the_right_limits() {
        assert!(close(
            mm1_deadline_drop_probability(0.5, 0.0),
            0.5 / 1.5,
            1e-12
        ));
        assert!(mm1_deadline_drop_probability(0.5, 100.0) < 1e-20);
    }

    #[test]
    fn supermarket_matches_the_series() {
        // d = 2, ρ = 0.9: 1 + ρ² + ρ⁶ + ρ¹⁴ + ρ³⁰ + …
        let r: f64 = 0.9;
        let series: f64 = (1..20).map(|i| r.powi((1 << i) - 2)).sum();
        assert!(close(supermarket_mean_response(r, 2), series, 1e-12));
        // The mean of the response distribution equals the series.
        let quantile_mean: f64 = (0..20_000)
            .map(|i| supermarket_response_quantile(r, 2, (f64::from(i) + 0.5) / 20_000.0))
            .sum::<f64>()
            / 20_000.0;
        assert!(
            close(quantile_mean, series, 5e-3),
            "{quantile_mean} vs {series}"
        );
    }

    #[test]
    fn round_robin_beats_random_and_loses_to_central() {
        for k in [2, 10, 100] {
            let rr = ekm1_mean_response(k, 0.9);
            assert!(rr < mm1_mean_response(0.9), "k={k}");
            assert!(rr > mmk_mean_response(k, 0.9), "k={k}");
        }
    }
}
