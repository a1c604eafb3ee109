//! Uniform sampling of Ready nodes without allocating, shared by the
//! randomised policies.
//!
//! The fast path is rejection sampling over all indices: O(1) expected while a
//! good fraction of nodes is Ready, which is the common case. After
//! [`MAX_REJECTIONS`] misses it falls back to an O(n) scan, so a pool that is
//! almost entirely Booting or Draining still gets an exact, uniform answer.
//! The number of misses does not depend on *which* Ready nodes were drawn, so
//! the combined distribution stays uniform.

use super::NodeView;
use ebb_core::Rng;

/// Rejection-sampling attempts before falling back to a scan. With half the
/// pool Ready the fallback runs with probability 2^-16.
pub const MAX_REJECTIONS: u32 = 16;

/// Largest `d` for power-of-d sampling; bounds the stack buffer that keeps
/// sampling allocation-free. Beyond a handful of samples the policy is JSQ in
/// all but cost anyway.
pub const MAX_SAMPLES: usize = 32;

/// A uniformly random Ready index, or `None` if no node is Ready.
#[inline]
pub fn random_ready(nodes: &[NodeView], rng: &mut Rng) -> Option<usize> {
    let n = nodes.len() as u64;
    if n == 0 {
        return None;
    }
    for _ in 0..MAX_REJECTIONS {
        let i = rng.below(n) as usize;
        if nodes[i].is_ready() {
            return Some(i);
        }
    }
    let ready = nodes.iter().filter(|v| v.is_ready()).count() as u64;
    if ready == 0 {
        return None;
    }
    nth_ready(nodes, rng.below(ready) as usize)
}

/// The index of the `rank`-th Ready node (0-based), scanning in order.
fn nth_ready(nodes: &[NodeView], rank: usize) -> Option<usize> {
    nodes
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_ready())
        .nth(rank)
        .map(|(i, _)| i)
}

/// Fills `out` with `d` Ready indices drawn independently (duplicates
/// possible) and returns how many were written: `d`, or 0 if none is Ready.
pub fn with_replacement(
    nodes: &[NodeView],
    d: usize,
    rng: &mut Rng,
    out: &mut [usize; MAX_SAMPLES],
) -> usize {
    let d = d.min(MAX_SAMPLES);
    for slot in out.iter_mut().take(d) {
        match random_ready(nodes, rng) {
            Some(i) => *slot = i,
            None => return 0,
        }
    }
    d
}

/// Fills `out` with `min(d, ready)` distinct Ready indices, each `d`-subset of
/// the Ready nodes equally likely, and returns how many were written.
pub fn without_replacement(
    nodes: &[NodeView],
    d: usize,
    rng: &mut Rng,
    out: &mut [usize; MAX_SAMPLES],
) -> usize {
    let d = d.min(MAX_SAMPLES);
    let n = nodes.len() as u64;
    if n == 0 {
        return 0;
    }
    if nodes.len() <= d {
        return all_ready_shuffled(nodes, rng, out);
    }
    let mut got = 0;
    let mut misses = 0;
    while got < d && misses < MAX_REJECTIONS {
        let i = rng.below(n) as usize;
        if nodes[i].is_ready() && !out[..got].contains(&i) {
            out[got] = i;
            got += 1;
        } else {
            misses += 1;
        }
    }
    if got == d {
        return d;
    }
    scan_without_replacement(nodes, d, rng, out)
}

/// [`without_replacement`] with `d` = 2, returning the pair: the same draws
/// from `rng` and the same answer, without the stack buffer (zeroing 32
/// slots per call was a fifth of power-of-two's cost in a simulation).
/// `(a, None)` when only one node is Ready, `None` when none is.
#[inline]
pub fn two_without_replacement(
    nodes: &[NodeView],
    rng: &mut Rng,
) -> Option<(usize, Option<usize>)> {
    let n = nodes.len() as u64;
    match nodes {
        [] => return None,
        [only] => return only.is_ready().then_some((0, None)),
        [a, b] => {
            // What `all_ready_shuffled` gives for two nodes, with its draw.
            return match (a.is_ready(), b.is_ready()) {
                (true, true) if rng.below(2) == 0 => Some((1, Some(0))),
                (true, true) => Some((0, Some(1))),
                (true, false) => Some((0, None)),
                (false, true) => Some((1, None)),
                (false, false) => None,
            };
        }
        _ => {}
    }
    let mut first = None;
    let mut misses = 0;
    while misses < MAX_REJECTIONS {
        let i = rng.below(n) as usize;
        if nodes[i].is_ready() && first != Some(i) {
            match first {
                None => first = Some(i),
                Some(a) => return Some((a, Some(i))),
            }
        } else {
            misses += 1;
        }
    }
    let mut out = [0usize; MAX_SAMPLES];
    match scan_without_replacement(nodes, 2, rng, &mut out) {
        0 => None,
        1 => Some((out[0], None)),
        _ => Some((out[0], Some(out[1]))),
    }
}

/// With no more nodes than samples wanted, every Ready node is a sample:
/// no rejection loop (with one node it would miss until its budget ran out
/// on every pick), one scan, and a Fisher-Yates shuffle so the order (which
/// breaks ties) stays uniform. `nodes.len() <= MAX_SAMPLES` here.
fn all_ready_shuffled(nodes: &[NodeView], rng: &mut Rng, out: &mut [usize; MAX_SAMPLES]) -> usize {
    debug_assert!(nodes.len() <= MAX_SAMPLES);
    let mut k = 0;
    for (i, _) in nodes.iter().enumerate().filter(|(_, v)| v.is_ready()) {
        out[k] = i;
        k += 1;
    }
    for i in (1..k).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        out.swap(i, j);
    }
    k
}

/// Exact fallback: Floyd's algorithm picks `d` distinct ranks among the Ready
/// nodes, then one ordered scan maps ranks to indices.
fn scan_without_replacement(
    nodes: &[NodeView],
    d: usize,
    rng: &mut Rng,
    out: &mut [usize; MAX_SAMPLES],
) -> usize {
    let ready = nodes.iter().filter(|v| v.is_ready()).count();
    if ready <= d {
        let mut k = 0;
        for (i, _) in nodes.iter().enumerate().filter(|(_, v)| v.is_ready()) {
            out[k] = i;
            k += 1;
        }
        return k;
    }
    // Floyd: for j in ready-d..ready, draw t in 0..=j; take t unless taken,
    // else take j. Yields a uniform d-subset of 0..ready.
    let mut ranks = [0usize; MAX_SAMPLES];
    for (k, j) in (ready - d..ready).enumerate() {
        let t = rng.below(j as u64 + 1) as usize;
        ranks[k] = if ranks[..k].contains(&t) { j } else { t };
    }
    let ranks = &mut ranks[..d];
    ranks.sort_unstable();
    let mut k = 0;
    for (rank, (i, _)) in nodes
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_ready())
        .enumerate()
    {
        if k < d && ranks[k] == rank {
            out[k] = i;
            k += 1;
        }
    }
    k
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::balance::NodeState;

    fn pool(n: u32, ready_every: u32) -> Vec<NodeView> {
        (0..n)
            .map(|i| {
                let mut v = NodeView::ready(i);
                if i % ready_every != 0 {
                    v.state = NodeState::Booting;
                }
                v
            })
            .collect()
    }

    #[test]
    fn sparse_ready_pool_falls_back_and_stays_ready() {
        // 1 in 500 Ready: rejection sampling mostly fails, the scan answers.
        let nodes = pool(5_000, 500);
        let mut rng = Rng::seeded(3);
        for _ in 0..200 {
            let i = random_ready(&nodes, &mut rng).unwrap();
            assert!(nodes[i].is_ready());
        }
    }

    #[test]
    fn without_replacement_is_distinct_even_in_fallback() {
        let nodes = pool(2_000, 100); // 20 Ready
        let mut rng = Rng::seeded(4);
        let mut out = [0; MAX_SAMPLES];
        for d in [1, 2, 5, 20, 25] {
            let k = without_replacement(&nodes, d, &mut rng, &mut out);
            assert_eq!(k, d.min(20), "d={d}");
            let mut s = out[..k].to_vec();
            s.sort_unstable();
            s.dedup();
            assert_eq!(s.len(), k, "d={d} duplicates in {:?}", &out[..k]);
            assert!(s.iter().all(|&i| nodes[i].is_ready()));
        }
    }

    #[test]
    fn two_without_replacement_is_the_general_sampler_at_d_2() {
        // Dense (rejection path) and sparse (scan fallback) pools.
        let mut fallbacks = 0;
        for (n, every) in [
            (10, 1),
            (1_000, 3),
            (2_000, 400),
            (5, 5),
            (2, 1),
            (2, 2),
            (1, 1),
            (0, 1),
        ] {
            let nodes = pool(n, every);
            for seed in 0..300 {
                let mut a = Rng::seeded(seed);
                let mut b = Rng::seeded(seed);
                let mut out = [0; MAX_SAMPLES];
                let k = without_replacement(&nodes, 2, &mut a, &mut out);
                let want = match k {
                    0 => None,
                    1 => Some((out[0], None)),
                    _ => Some((out[0], Some(out[1]))),
                };
                assert_eq!(
                    two_without_replacement(&nodes, &mut b),
                    want,
                    "n {n} seed {seed}"
                );
                let next = b.next_u64();
                assert_eq!(a.next_u64(), next, "n {n} seed {seed}: streams diverged");
                // Draws used: more than the rejection budget means the
                // scan fallback ran.
                let mut probe = Rng::seeded(seed);
                let used = (0..64).position(|_| probe.next_u64() == next);
                fallbacks += usize::from(used > Some(MAX_REJECTIONS as usize));
            }
        }
        assert!(fallbacks > 100, "the scan fallback ran {fallbacks} times");
    }

    /// How many draws `rng` made since it was seeded with `seed`.
    fn draws_used(seed: u64, rng: &mut Rng) -> usize {
        let next = rng.next_u64();
        let mut probe = Rng::seeded(seed);
        (0..64)
            .position(|_| probe.next_u64() == next)
            .expect("fewer than 64 draws")
    }

    #[test]
    fn fewer_than_two_nodes_take_no_rejection_loop() {
        // One node: no draw at all (the rejection loop used to miss 16
        // times on every pick before the scan answered).
        let one = pool(1, 1);
        for seed in 0..50 {
            let mut rng = Rng::seeded(seed);
            assert_eq!(two_without_replacement(&one, &mut rng), Some((0, None)));
            let mut out = [0; MAX_SAMPLES];
            assert_eq!(without_replacement(&one, 2, &mut rng, &mut out), 1);
            assert_eq!(out[0], 0);
            assert_eq!(draws_used(seed, &mut rng), 0, "seed {seed}");
        }
        // Two nodes, one of them booting: the ready one, no draw.
        let mut half = pool(2, 1);
        half[0].state = NodeState::Booting;
        let mut rng = Rng::seeded(9);
        assert_eq!(two_without_replacement(&half, &mut rng), Some((1, None)));
        assert_eq!(draws_used(9, &mut rng), 0);
        // Two ready nodes: one draw, and both orders come up (the first
        // sample wins ties, so a fixed order would favour one node).
        let two = pool(2, 1);
        let mut firsts = [0; 2];
        for seed in 0..200 {
            let mut rng = Rng::seeded(seed);
            let (a, b) = two_without_replacement(&two, &mut rng).expect("two ready");
            assert_eq!(b, Some(1 - a));
            firsts[a] += 1;
            assert_eq!(draws_used(seed, &mut rng), 1, "seed {seed}");
        }
        assert!(firsts[0] > 50 && firsts[1] > 50, "orders {firsts:?}");
    }

    #[test]
    fn empty_or_all_booting_gives_nothing() {
        let mut rng = Rng::seeded(5);
        let mut out = [0; MAX_SAMPLES];
        assert_eq!(random_ready(&[], &mut rng), None);
        let nodes = pool(10, 100); // only node 0 Ready
        let mut none = nodes.clone();
        none[0].state = NodeState::Draining;
        assert_eq!(random_ready(&none, &mut rng), None);
        assert_eq!(without_replacement(&none, 2, &mut rng, &mut out), 0);
        assert_eq!(with_replacement(&none, 2, &mut rng, &mut out), 0);
    }
}
