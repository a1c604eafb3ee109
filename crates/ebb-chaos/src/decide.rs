//! The proxy's pure decision core: what happens to each forwarded chunk.
//!
//! No sockets and no clock here, only the configured probabilities and a
//! seeded [`Rng`], so a decision sequence is a function of the seed and the
//! order in which chunks arrive and can be unit-tested without I/O.

use ebb_core::{Nanos, Rng};

/// The faults to inject. Probabilities are per forwarded chunk (one `read`
/// from either side of a connection).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChaosConfig {
    /// Probability that a chunk turns the connection into a black hole: the
    /// chunk and everything after it, in both directions, is silently
    /// discarded while both sockets stay open. Dropping a single chunk of a
    /// framed byte stream would only desynchronise the framing; a black hole
    /// is what a partition or a dead host looks like to TCP, and it is what
    /// heartbeat-based failure detection must notice.
    pub drop_p: f64,
    /// Every chunk is held this long before it is written on (order is kept).
    pub delay: Nanos,
    /// Probability that a chunk makes the proxy reset the connection: both
    /// sides get a TCP RST (SO_LINGER 0) and the chunk is not forwarded.
    pub reset_p: f64,
}

impl ChaosConfig {
    /// A proxy that forwards faithfully.
    pub const TRANSPARENT: ChaosConfig = ChaosConfig {
        drop_p: 0.0,
        delay: Nanos::ZERO,
        reset_p: 0.0,
    };

    /// Checks the probabilities lie in `[0, 1]`; names the offending field.
    pub fn validate(&self) -> Result<(), crate::ChaosError> {
        for (name, p) in [("drop", self.drop_p), ("reset", self.reset_p)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(crate::ChaosError::BadProbability { name, value: p });
            }
        }
        Ok(())
    }
}

/// What to do with one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkAction {
    /// Forward it after `delay`.
    Forward { delay: Nanos },
    /// Discard it and everything after it on this connection, both ways.
    Blackhole,
    /// Reset both sides of the connection now.
    Reset,
}

/// Decides per chunk for one connection. Each connection gets its own forked
/// generator so that one connection's traffic does not shift another's draws.
#[derive(Debug)]
pub struct ConnDecider {
    cfg: ChaosConfig,
    rng: Rng,
    blackholed: bool,
}

impl ConnDecider {
    pub fn new(cfg: ChaosConfig, rng: Rng) -> ConnDecider {
        ConnDecider {
            cfg,
            rng,
            blackholed: false,
        }
    }

    /// The fate of the next chunk. Reset is drawn before drop so that raising
    /// the drop probability does not change which chunks reset. Once a
    /// connection is a black hole it stays one: later chunks are discarded
    /// without further draws.
    pub fn on_chunk(&mut self) -> ChunkAction {
        if self.blackholed {
            return ChunkAction::Blackhole;
        }
        let reset = self.rng.chance(self.cfg.reset_p);
        let drop = self.rng.chance(self.cfg.drop_p);
        if reset {
            ChunkAction::Reset
        } else if drop {
            self.blackholed = true;
            ChunkAction::Blackhole
        } else {
            ChunkAction::Forward {
                delay: self.cfg.delay,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(drop_p: f64, reset_p: f64) -> ChaosConfig {
        ChaosConfig {
            drop_p,
            delay: Nanos::from_millis(3),
            reset_p,
        }
    }

    #[test]
    fn transparent_config_always_forwards_without_delay() {
        let mut d = ConnDecider::new(ChaosConfig::TRANSPARENT, Rng::seeded(1));
        for _ in 0..1_000 {
            assert_eq!(d.on_chunk(), ChunkAction::Forward { delay: Nanos::ZERO });
        }
    }

    #[test]
    fn certain_reset_resets_the_first_chunk() {
        let mut d = ConnDecider::new(cfg(0.0, 1.0), Rng::seeded(2));
        assert_eq!(d.on_chunk(), ChunkAction::Reset);
    }

    #[test]
    fn blackhole_is_sticky() {
        let mut d = ConnDecider::new(cfg(1.0, 0.0), Rng::seeded(3));
        for _ in 0..10 {
            assert_eq!(d.on_chunk(), ChunkAction::Blackhole);
        }
    }

    #[test]
    fn forwarded_chunks_carry_the_configured_delay() {
        let mut d = ConnDecider::new(cfg(0.0, 0.0), Rng::seeded(4));
        assert_eq!(
            d.on_chunk(),
            ChunkAction::Forward {
                delay: Nanos::from_millis(3)
            }
        );
    }

    #[test]
    fn reset_rate_matches_probability_and_replays_from_seed() {
        let seed = 5;
        let run = || {
            let mut d = ConnDecider::new(cfg(0.0, 0.1), Rng::seeded(seed));
            (0..20_000)
                .map(|_| d.on_chunk())
                .filter(|a| *a == ChunkAction::Reset)
                .count()
        };
        let resets = run();
        assert_eq!(resets, run(), "seed {seed} must replay");
        // Binomial(20000, 0.1): sd ~ 42; allow 5 sd.
        assert!((1_790..=2_210).contains(&resets), "seed {seed}: {resets}");
    }

    #[test]
    fn out_of_range_probabilities_are_named() {
        let err = cfg(1.5, 0.0)
            .validate()
            .expect_err("1.5 is not a probability");
        assert!(err.to_string().contains("drop"), "{err}");
        let err = cfg(0.0, -0.1).validate().expect_err("negative");
        assert!(err.to_string().contains("reset"), "{err}");
        assert!(cfg(0.0, 1.0).validate().is_ok());
    }
}
