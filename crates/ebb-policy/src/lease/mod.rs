//! Leases: when a node may answer a read from its cache, and when the origin
//! may let a write complete (Gray and Cheriton, SOSP 1989).
//!
//! A lease is a promise from the origin: "for the term T after you asked, I
//! will not change this key without first telling you". The holder serves
//! from its cache only while `now < request_sent + T − ε`, counting from when
//! it *sent* the read (so a reply that sat in the network does not stretch
//! the promise) and giving up ε to clock drift. The origin lets a write
//! complete only once every holder acknowledged an invalidation or its lease
//! ran out, and grants no new lease on a key while a write on it waits, so
//! writers are not starved by a stream of readers.
//!
//! The two ends of the term are two classic protocols: T = 0 is
//! check-on-use (every read asks the origin whether its version is current;
//! nothing to invalidate), T = ∞ is callbacks (the origin must reach every
//! holder; a holder that is gone blocks writes on its keys until the failure
//! detector declares it dead).
//!
//! Terms are spans ([`Nanos`]) sent over the wire; instants never cross
//! machines, since two machines' clocks share no epoch.
//!
//! - [`holder`]: the node side: may this cached entry be served now? Which
//!   replies may be cached?
//! - [`origin`]: the origin side: grants, holders, waiting writes, the
//!   recovery gate after a restart.

pub mod holder;
pub mod origin;

pub use holder::{FetchId, FetchTracker, HeldLease, ReadPlan, plan_read};
pub use origin::{
    NoLease, OriginConfig, OriginLeases, ReadGrant, Recovery, WriteStart, WriteStatus,
};

use ebb_core::Nanos;

/// A key's version at the origin: bumped by one at every completed write, so
/// a cached copy is current exactly when its version equals the origin's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u64);

impl Version {
    /// The version a key has before its first write.
    pub const NONE: Version = Version(0);

    pub const fn next(self) -> Version {
        Version(self.0.saturating_add(1))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// Who holds a lease: one node's cache. A node that restarts comes back with
/// an empty cache, so reusing its id is harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HolderId(pub u64);

impl std::fmt::Display for HolderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "h{}", self.0)
    }
}

/// One grant, named by the origin, so an acknowledgement or a release that
/// arrives late cannot cancel a newer lease of the same holder on the same
/// key. Unique across an origin's incarnations (the incarnation is its high
/// bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(pub u64);

impl LeaseId {
    /// No grant: a check-on-use entry, or a reply that carried no lease.
    pub const NONE: LeaseId = LeaseId(0);
}

/// A lease's length, as a span: never a wall-clock time.
///
/// [`LeaseTerm::CHECK_ON_USE`] (zero) and [`LeaseTerm::CALLBACK`] (infinite)
/// are the two ends; every term between is a plain lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseTerm(Nanos);

impl LeaseTerm {
    /// No lease: every read validates its cached version with the origin.
    pub const CHECK_ON_USE: LeaseTerm = LeaseTerm(Nanos::ZERO);
    /// A lease that never runs out: only an invalidation (a callback) or the
    /// failure detector ends it.
    pub const CALLBACK: LeaseTerm = LeaseTerm(Nanos::MAX);

    pub const fn new(span: Nanos) -> LeaseTerm {
        LeaseTerm(span)
    }

    pub const fn from_millis(ms: u64) -> LeaseTerm {
        LeaseTerm(Nanos::from_millis(ms))
    }

    pub const fn span(self) -> Nanos {
        self.0
    }

    pub fn is_check_on_use(self) -> bool {
        self == LeaseTerm::CHECK_ON_USE
    }

    pub fn is_callback(self) -> bool {
        self == LeaseTerm::CALLBACK
    }
}

impl std::fmt::Display for LeaseTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_callback() {
            write!(f, "callback (infinite)")
        } else if self.is_check_on_use() {
            write!(f, "check-on-use (0)")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

#[cfg(test)]
mod tests;
