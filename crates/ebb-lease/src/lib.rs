//! The origin store and the lease caches in front of it.
//!
//! Nodes are stateless; the data they share lives in one origin. The origin
//! ([`origin::OriginService`]) keeps every value with a per-key version in
//! an embedded, durable store ([`store::Store`], redb) and serves it over
//! ebb RPC ([`api::Origin`]). A node's [`cache::LeaseCache`] keeps copies
//! under leases; the lease rules are `ebb_policy::lease`'s, the code the
//! simulator checks.
//!
//! Invalidations reach nodes by long-poll: every node keeps one call to
//! [`api::Origin::poll_invalidations`] open, which returns as soon as the
//! origin has an invalidation for it and carries the node's
//! acknowledgements (and eviction notices) on the next call. Nodes need no
//! listening socket of their own for it, and an unreachable node simply
//! stops acknowledging, which a finite term turns into a bounded delay.

pub mod api;
pub mod cache;
pub mod commit;
pub mod origin;
pub mod planted;
pub mod store;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1_024;
/// Largest value accepted, in bytes. Below the RPC layer's frame bound.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
