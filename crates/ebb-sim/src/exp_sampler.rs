//! Exponential draws for the hot loop: the ziggurat of Marsaglia and Tsang
//! (2000) with 256 layers.
//!
//! A run draws two exponentials per request (the gap to the next arrival
//! and the service time); by inversion, `−ln(u)`, each costs a call into
//! libm's `ln`, 6% of a 10,000-node run's instructions. The ziggurat covers
//! the density with 256 rectangles of equal area: one 64-bit draw picks a
//! rectangle (its low 8 bits) and a point in it (its top 53 bits), and in
//! 98.9% of draws the point lies under the next rectangle's edge, so the
//! answer is one multiply and one compare. The rest fall in a wedge (an
//! `exp` and a second draw decide) or in the tail beyond `R`, where the
//! exponential's lack of memory makes the answer `R` plus a fresh draw.
//!
//! The draws are exact in distribution (no approximation of the density),
//! but not the same numbers inversion gives from the same stream: a seed's
//! run differs from one that used inversion, and is still the same on every
//! run and machine (the tables are computed from two constants with
//! IEEE-754 arithmetic; `ln` and `exp` are called only while building
//! them and in the rare wedge test).

use ebb_core::Rng;
use std::sync::LazyLock;

/// Layers of the ziggurat; the low bits of a draw pick one.
const LAYERS: usize = 256;
/// Where the tail starts, for 256 layers (Marsaglia and Tsang 2000).
const R: f64 = 7.697_117_470_131_05;
/// The area of every layer, the tail included in the base layer's.
const V: f64 = 0.003_949_659_822_581_557;
/// 2^-53: the spacing of the uniforms built from a draw's top 53 bits.
const UNIT: f64 = 1.0 / (1u64 << 53) as f64;

/// Layer `i` is the rectangle `[0, x[i]] × [f[i], f[i+1]]` with
/// `f = exp(−x)`; `x` falls from `V / exp(−R)` (the base layer's width if
/// its tail were a rectangle) through `x[1] = R` to `x[256] = 0`.
struct Tables {
    x: [f64; LAYERS + 1],
    f: [f64; LAYERS + 1],
}

static TABLES: LazyLock<Tables> = LazyLock::new(build);

fn build() -> Tables {
    let mut x = [0.0; LAYERS + 1];
    let mut f = [0.0; LAYERS + 1];
    let f_r = (-R).exp();
    x[0] = V / f_r;
    x[1] = R;
    f[1] = f_r;
    for i in 1..LAYERS - 1 {
        // Equal areas: x[i] × (f[i+1] − f[i]) = V.
        f[i + 1] = f[i] + V / x[i];
        x[i + 1] = -f[i + 1].ln();
    }
    x[LAYERS] = 0.0;
    f[LAYERS] = 1.0;
    Tables { x, f }
}

/// Exponentially distributed with mean 1.
#[inline]
pub fn exp1(rng: &mut Rng) -> f64 {
    let t = &*TABLES;
    loop {
        let bits = rng.next_u64();
        let i = (bits as usize) & (LAYERS - 1);
        let x = (bits >> 11) as f64 * UNIT * t.x[i];
        if x < t.x[i + 1] {
            return x;
        }
        if let Some(v) = outside_core(t, i, x, rng) {
            return v;
        }
    }
}

/// The rare cases, kept out of line so the common path stays small: the
/// tail (layer 0 beyond `R`) and the wedge of layer `i` above the next
/// layer's edge. `None` rejects the point.
#[cold]
#[inline(never)]
fn outside_core(t: &Tables, i: usize, x: f64, rng: &mut Rng) -> Option<f64> {
    if i == 0 {
        return Some(R + exp1(rng));
    }
    let y = t.f[i] + (t.f[i + 1] - t.f[i]) * rng.unit();
    (y < (-x).exp()).then_some(x)
}

/// Exponentially distributed with the given mean.
#[inline]
pub fn exp(rng: &mut Rng, mean: f64) -> f64 {
    mean * exp1(rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_have_equal_areas_and_meet_the_density() {
        let t = build();
        for i in 1..LAYERS - 1 {
            let area = t.x[i] * (t.f[i + 1] - t.f[i]);
            assert!((area - V).abs() < 1e-15, "layer {i}: {area}");
            assert!((t.f[i] - (-t.x[i]).exp()).abs() < 1e-15, "layer {i}");
        }
        // The base layer: a rectangle up to R plus the tail, area V.
        let base = R * (-R).exp() + (-R).exp();
        assert!((base - V).abs() < 1e-12, "base {base}");
        // The constants close the ziggurat: the top layer reaches f = 1
        // with the same area as the others.
        let top = t.x[LAYERS - 1] * (1.0 - t.f[LAYERS - 1]);
        assert!((top - V).abs() < 1e-9, "top {top}");
    }

    /// Counts in bins of equal probability match the exponential, and the
    /// tail beyond `R` (the rare path) is drawn at its rate.
    #[test]
    fn draws_follow_the_exponential_distribution() {
        let seed = 11;
        let mut rng = Rng::seeded(seed);
        let n = 2_000_000usize;
        const BINS: usize = 50;
        let mut counts = [0u64; BINS];
        let (mut sum, mut sum_sq, mut tail) = (0.0, 0.0, 0u64);
        for _ in 0..n {
            let x = exp1(&mut rng);
            assert!(x >= 0.0 && x.is_finite(), "seed {seed}: {x}");
            sum += x;
            sum_sq += x * x;
            tail += u64::from(x > R);
            // CDF 1 − e^−x is uniform; bin by it.
            let bin = ((1.0 - (-x).exp()) * BINS as f64) as usize;
            counts[bin.min(BINS - 1)] += 1;
        }
        let mean = sum / n as f64;
        let var = sum_sq / n as f64 - mean * mean;
        // Standard errors: 1/sqrt(n) = 0.0007 for the mean, about
        // sqrt(8/n) = 0.002 for the variance; allow 5 of them.
        assert!((mean - 1.0).abs() < 0.0035, "seed {seed}: mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "seed {seed}: variance {var}");
        let expected = n as f64 / BINS as f64;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        // 49 degrees of freedom: the 99.9% point is 85.4.
        assert!(chi2 < 85.4, "seed {seed}: chi-square {chi2}, {counts:?}");
        // P(X > R) = e^−R = 4.5e-4: about 908 of 2e6 (sd 30).
        let want = n as f64 * (-R).exp();
        assert!(
            (tail as f64 - want).abs() < 5.0 * want.sqrt(),
            "seed {seed}: {tail} beyond R, expected {want}"
        );
    }

    #[test]
    fn same_seed_same_draws() {
        let mut a = Rng::seeded(3);
        let mut b = Rng::seeded(3);
        for _ in 0..10_000 {
            assert_eq!(exp(&mut a, 2.5).to_bits(), exp(&mut b, 2.5).to_bits());
        }
    }
}
