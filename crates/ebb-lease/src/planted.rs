//! Bugs planted on purpose, so tests on the real system can show that the
//! history checker catches each of them, and a clock drift for one of them
//! to show.
//!
//! Test-only: the switches are read only when the crate is built with the
//! cargo feature `planted-bugs`, which no release build enables (the CLI's
//! tests turn it on through a dev-dependency). Without it [`bug`] is always
//! `None` and [`node_clock`] the identity, and the environment is never
//! read. With it, a process reads once:
//! - `EBB_PLANTED_BUG`: one of `ignore-epsilon`, `serve-past-expiry` (the
//!   node's cache), `write-skips-holders`, `forget-term-bound` (the origin);
//! - `EBB_PLANTED_CLOCK_SLOW_PPM`: the node cache's clock runs slower than
//!   real time by this many parts per million (a drift the lease rules
//!   allow for, as long as it stays within ε over a term).

use ebb_core::Instant;

/// A bug the checker must catch, named as in the simulation's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// The cache serves until `request_sent + T`, not `+ T − ε`.
    IgnoreEpsilon,
    /// The cache serves a leased entry whatever its expiry.
    ServePastExpiry,
    /// The origin commits a write without waiting for holders.
    WriteSkipsHolders,
    /// A restarted origin ignores the persisted term bound.
    ForgetTermBound,
}

impl PlantedBug {
    /// Names as `EBB_PLANTED_BUG` takes them.
    pub const NAMES: [(&'static str, PlantedBug); 4] = [
        ("ignore-epsilon", PlantedBug::IgnoreEpsilon),
        ("serve-past-expiry", PlantedBug::ServePastExpiry),
        ("write-skips-holders", PlantedBug::WriteSkipsHolders),
        ("forget-term-bound", PlantedBug::ForgetTermBound),
    ];
}

#[cfg(feature = "planted-bugs")]
mod switch {
    use std::sync::OnceLock;

    use ebb_core::{Instant, Nanos};

    use super::PlantedBug;

    /// The largest slowdown accepted: a clock at least half as fast as time.
    const MAX_SLOW_PPM: u64 = 500_000;

    pub fn bug() -> Option<PlantedBug> {
        static BUG: OnceLock<Option<PlantedBug>> = OnceLock::new();
        *BUG.get_or_init(|| {
            let name = std::env::var("EBB_PLANTED_BUG").ok()?;
            let found = PlantedBug::NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| *b);
            match found {
                Some(b) => eprintln!("ebb-lease: planted bug {b:?} is ACTIVE (test build)"),
                None => eprintln!("ebb-lease: EBB_PLANTED_BUG={name:?} names no planted bug"),
            }
            found
        })
    }

    pub fn node_clock(now: Instant) -> Instant {
        static SLOW: OnceLock<Option<(u64, Instant)>> = OnceLock::new();
        let slow = SLOW.get_or_init(|| {
            let ppm: u64 = std::env::var("EBB_PLANTED_CLOCK_SLOW_PPM")
                .ok()?
                .parse()
                .ok()?;
            eprintln!("ebb-lease: the cache's clock runs {ppm} ppm slow (test build)");
            Some((ppm.min(MAX_SLOW_PPM), now))
        });
        match slow {
            None => now,
            Some((ppm, base)) => {
                let real = now.saturating_since(*base).as_nanos();
                let kept = u128::from(real) * u128::from(1_000_000 - ppm) / 1_000_000;
                *base + Nanos(u64::try_from(kept).unwrap_or(u64::MAX))
            }
        }
    }
}

/// The bug planted in this process, if any (always `None` without the
/// `planted-bugs` feature).
pub fn bug() -> Option<PlantedBug> {
    #[cfg(feature = "planted-bugs")]
    {
        switch::bug()
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        None
    }
}

/// The node cache's reading of `now`, drifted when a test asks for it.
pub fn node_clock(now: Instant) -> Instant {
    #[cfg(feature = "planted-bugs")]
    {
        switch::node_clock(now)
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        now
    }
}
