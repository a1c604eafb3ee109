//! Identifiers shared across crates.

use std::fmt;

/// A client process's identity for at-most-once bookkeeping: 128 random bits,
/// so two clients never collide without coordination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u128);

impl ClientId {
    pub fn random(rng: &mut crate::Rng) -> ClientId {
        let hi = u128::from(rng.next_u64());
        let lo = u128::from(rng.next_u64());
        ClientId((hi << 64) | lo)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A worker node in a pool. Dense small integers so views can be slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}
