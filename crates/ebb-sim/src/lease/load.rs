//! The origin's consistency load and the delay leases add, simulated and
//! from Gray and Cheriton's analytic model (SOSP 1989, section 3).
//!
//! One file shared by `sharers` caches; each reads at `read_rate` and writes
//! at `write_rate` per second (Poisson). Counted as in the paper, in
//! messages the origin handles for consistency: a read the cache cannot
//! serve costs 2 (request and reply); a write whose file is leased by
//! others costs 1 (the multicast invalidation) plus 1 per other holder (its
//! approval). Relative load is that count divided by the term-0 count
//! (2 per read: every read checks with the origin).
//!
//! The analytic model assumes every other sharer holds a lease at every
//! write: `1/(1 + R·t_c) + S·W/(2R)` with `t_c = max(0, T − (m_prop +
//! 2·m_proc) − ε)`. The simulation keeps the leases themselves (through
//! `ebb_policy::lease`), so a write pays only for holders whose lease is
//! still running. That is where the two part: at short terms few sharers
//! hold a lease when a write comes, and at T = 0 none does (the model still
//! charges S·W/(2R) there); at long terms every write sends each other
//! sharer back to the origin for the new value, a miss the model's read
//! term `1/(1 + R·t_c)` does not count. As in the model, the writer's reply
//! carries a lease for the writer (it holds the new value already).

use ebb_core::{Instant, Nanos, Rng};
use ebb_policy::lease::{
    HeldLease, HolderId, LeaseTerm, OriginConfig, OriginLeases, ReadGrant, Version, WriteStart,
};

/// Gray and Cheriton's V-system measurements.
pub const V_READ_RATE: f64 = 0.864;
pub const V_WRITE_RATE: f64 = 0.039;
pub const V_PROP_MS: f64 = 1.0;
pub const V_PROC_MS: f64 = 0.25;
pub const V_EPSILON_MS: f64 = 100.0;

/// Reads simulated by default: enough for three significant digits.
pub const DEFAULT_READS: u64 = 400_000;

/// One scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadParams {
    pub term: LeaseTerm,
    pub sharers: u32,
    /// Reads per second per sharer.
    pub read_rate: f64,
    /// Writes per second per sharer.
    pub write_rate: f64,
    /// One-way propagation time of a message.
    pub prop: Nanos,
    /// Processing time of a message at either end.
    pub proc: Nanos,
    pub epsilon: Nanos,
    pub reads: u64,
    pub seed: u64,
}

impl LoadParams {
    /// The V-system parameters at term `term` with `sharers` caches.
    pub fn v_system(term: LeaseTerm, sharers: u32) -> LoadParams {
        LoadParams {
            term,
            sharers,
            read_rate: V_READ_RATE,
            write_rate: V_WRITE_RATE,
            prop: Nanos::from_secs_f64(V_PROP_MS / 1e3),
            proc: Nanos::from_secs_f64(V_PROC_MS / 1e3),
            epsilon: Nanos::from_secs_f64(V_EPSILON_MS / 1e3),
            reads: DEFAULT_READS,
            seed: 1,
        }
    }

    /// A round trip to the origin: two propagations, processing at both ends.
    pub fn round_trip(&self) -> Nanos {
        Nanos(2 * self.prop.as_nanos() + 2 * self.proc.as_nanos())
    }

    /// The model's effective term `t_c`, in seconds (infinite for callbacks).
    pub fn t_c_secs(&self) -> f64 {
        if self.term.is_callback() {
            return f64::INFINITY;
        }
        let overhead = self.prop.as_secs_f64() + 2.0 * self.proc.as_secs_f64();
        (self.term.span().as_secs_f64() - overhead - self.epsilon.as_secs_f64()).max(0.0)
    }
}

/// The analytic model's prediction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelPoint {
    pub t_c_secs: f64,
    pub relative_load: f64,
    /// Delay per operation relative to term 0, in milliseconds (negative:
    /// leases save time).
    pub added_delay_ms: f64,
}

/// Gray and Cheriton's relative load `1/(1 + R·t_c) + S·W/(2R)`, and the
/// delay it implies: reads that miss pay a round trip, writes to a shared
/// file pay one for the approvals.
pub fn model(p: &LoadParams) -> ModelPoint {
    let (r, w, s) = (p.read_rate, p.write_rate, f64::from(p.sharers));
    let t_c = p.t_c_secs();
    let miss = if t_c.is_infinite() {
        0.0
    } else {
        1.0 / (1.0 + r * t_c)
    };
    let rt_ms = p.round_trip().as_secs_f64() * 1e3;
    let approval = if p.sharers > 1 { rt_ms } else { 0.0 };
    let per_op = (r * miss * rt_ms + w * approval) / (r + w);
    let base = r * rt_ms / (r + w);
    ModelPoint {
        t_c_secs: t_c,
        relative_load: miss + s * w / (2.0 * r),
        added_delay_ms: per_op - base,
    }
}

/// What the simulation measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LoadReport {
    pub relative_load: f64,
    pub added_delay_ms: f64,
    /// Consistency messages per second at the origin, and at term 0.
    pub origin_msgs_per_s: f64,
    pub origin_msgs_per_s_term0: f64,
    /// Fraction of reads served from a cache.
    pub hit_fraction: f64,
    /// Mean other sharers holding a lease when a write arrived.
    pub mean_holders_at_write: f64,
    pub reads: u64,
    pub writes: u64,
    pub sim_secs: f64,
}

#[derive(Clone, Copy)]
struct Cached {
    lease: HeldLease,
    /// When the reply that brought the lease arrives.
    usable_from: Instant,
}

impl Cached {
    /// What a cache keeps of the origin's answer to a read sent at `sent`:
    /// the lease, usable once the reply is back a round trip `rt` later,
    /// or nothing when no lease was granted.
    fn from_grant(grant: ReadGrant, version: Version, sent: Instant, rt: Nanos) -> Option<Cached> {
        match grant {
            ReadGrant::Lease { term, id } => Some(Cached {
                lease: HeldLease {
                    version,
                    request_sent: sent,
                    term,
                    id,
                },
                usable_from: sent + rt,
            }),
            ReadGrant::NoLease(_) => None,
        }
    }
}

/// Simulates `p` (one file, `sharers` caches, no failures) with the lease
/// rules of `ebb_policy::lease`.
pub fn simulate(p: &LoadParams) -> LoadReport {
    let mut rng = Rng::seeded(p.seed);
    let s = p.sharers.max(1) as usize;
    let total_rate = (p.read_rate + p.write_rate) * s as f64;
    let read_p = p.read_rate / (p.read_rate + p.write_rate);
    let one_way = p.prop + p.proc;
    let rt = p.round_trip();
    let mut origin: OriginLeases<()> = OriginLeases::new(OriginConfig::new(p.term, p.epsilon));
    let mut caches: Vec<Option<Cached>> = vec![None; s];
    let mut version = Version::NONE;
    let mut now_ns: f64 = 0.0;
    let (mut reads, mut writes, mut misses) = (0u64, 0u64, 0u64);
    let (mut write_msgs, mut holders_seen, mut shared_writes) = (0u64, 0u64, 0u64);
    while reads < p.reads {
        now_ns += rng.exp(1e9 / total_rate);
        let now = Instant::from_epoch(Nanos(now_ns as u64));
        let node = rng.below(s as u64) as usize;
        if rng.chance(read_p) {
            reads += 1;
            let hit = caches[node]
                .is_some_and(|c| now >= c.usable_from && c.lease.may_serve(now, p.epsilon));
            if hit {
                continue;
            }
            misses += 1;
            let grant = origin.read(now + one_way, &(), HolderId(node as u64), p.term);
            caches[node] = Cached::from_grant(grant, version, now, rt);
        } else {
            writes += 1;
            let at_origin = now + one_way;
            // The writer drops its own copy and releases its lease with
            // the write itself: it approves its own write.
            if let Some(c) = caches[node].take() {
                origin.release(&(), HolderId(node as u64), c.lease.id);
            }
            if let WriteStart::Invalidate { holders, .. } = origin.begin_write(at_origin, &()) {
                shared_writes += 1;
                holders_seen += holders.len() as u64;
                write_msgs += 1 + holders.len() as u64;
                for (h, id) in holders {
                    caches[h.0 as usize] = None;
                    origin.release(&(), h, id);
                }
            }
            origin.finish_write(&());
            version = version.next();
            // The reply carries a lease for the writer, which holds the new
            // value already (write-through, as the paper's model assumes).
            // Its slot is empty since it dropped its copy above.
            let grant = origin.read(at_origin, &(), HolderId(node as u64), p.term);
            caches[node] = Cached::from_grant(grant, version, now, rt);
        }
    }
    let sim_secs = now_ns / 1e9;
    let msgs = 2 * misses + write_msgs;
    let msgs0 = 2 * reads;
    let rt_ms = rt.as_secs_f64() * 1e3;
    let ops = (reads + writes) as f64;
    let delay = (misses as f64 * rt_ms + shared_writes as f64 * rt_ms) / ops;
    let delay0 = reads as f64 * rt_ms / ops;
    LoadReport {
        relative_load: msgs as f64 / msgs0 as f64,
        added_delay_ms: delay - delay0,
        origin_msgs_per_s: msgs as f64 / sim_secs,
        origin_msgs_per_s_term0: msgs0 as f64 / sim_secs,
        hit_fraction: 1.0 - misses as f64 / reads as f64,
        mean_holders_at_write: if writes == 0 {
            0.0
        } else {
            holders_seen as f64 / writes as f64
        },
        reads,
        writes,
        sim_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(term_s: f64, s: u32) -> LoadParams {
        let mut p = LoadParams::v_system(LeaseTerm::new(Nanos::from_secs_f64(term_s)), s);
        p.reads = 100_000;
        p
    }

    #[test]
    fn the_model_matches_the_paper_at_its_landmarks() {
        // Term 0: every read checks, plus the write term S·W/(2R).
        let m = model(&v(0.0, 1));
        assert_eq!(m.t_c_secs, 0.0);
        assert!((m.relative_load - (1.0 + 0.039 / 1.728)).abs() < 1e-12);
        // A 10 s term: t_c = 10 − 0.0015 − 0.1.
        let m = model(&v(10.0, 1));
        assert!((m.t_c_secs - 9.8985).abs() < 1e-9);
        let expect = 1.0 / (1.0 + 0.864 * 9.8985) + 0.039 / 1.728;
        assert!((m.relative_load - expect).abs() < 1e-12);
    }

    #[test]
    fn a_lone_sharer_follows_the_model_closely() {
        for term in [1.0, 10.0, 30.0] {
            let sim = simulate(&v(term, 1));
            let m = model(&v(term, 1));
            // Alone, nobody else holds a lease at a write: the model's write
            // term is the one thing the simulation does not pay.
            let read_part = m.relative_load - 0.039 / (2.0 * 0.864);
            assert!(
                (sim.relative_load - read_part).abs() < 0.02,
                "term {term}: simulated {} vs model read part {read_part}",
                sim.relative_load
            );
            assert_eq!(sim.mean_holders_at_write, 0.0);
        }
    }

    #[test]
    fn term_zero_is_check_on_use_and_callbacks_approach_the_write_term() {
        let zero = simulate(&v(0.0, 10));
        assert_eq!(zero.relative_load, 1.0);
        assert_eq!(zero.hit_fraction, 0.0);
        assert_eq!(zero.added_delay_ms, 0.0);
        let mut cb = v(0.0, 10);
        cb.term = LeaseTerm::CALLBACK;
        let sim = simulate(&cb);
        let m = model(&cb);
        assert!(m.t_c_secs.is_infinite());
        // Every write sends each other sharer back to the origin once, a
        // cost the model (read term 0 at t_c = ∞) does not count: the
        // simulation lies above it.
        assert!(sim.hit_fraction > 0.5, "{sim:?}");
        assert!(sim.relative_load > m.relative_load, "{sim:?} vs {m:?}");
        assert!(sim.added_delay_ms < 0.0, "callbacks save read round trips");
    }

    #[test]
    fn longer_terms_lower_the_load_until_writes_dominate() {
        let a = simulate(&v(0.5, 10)).relative_load;
        let b = simulate(&v(5.0, 10)).relative_load;
        let c = simulate(&v(30.0, 10)).relative_load;
        assert!(a > b && b > c.min(b), "{a} {b} {c}");
        assert!(a < 1.0);
    }

    #[test]
    fn a_run_is_a_function_of_its_seed() {
        assert_eq!(simulate(&v(10.0, 10)), simulate(&v(10.0, 10)));
    }
}
