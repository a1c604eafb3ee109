//! The origin's RPC interface and the types that cross it.
//!
//! Method ids follow the trait's order; do not reorder.

use serde::{Deserialize, Serialize};

/// A lease granted with a read: cache the value for `term_ns`, counted from
/// when the read was sent, minus ε. A span, never a wall-clock time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `u64::MAX`: a callback (no end but an invalidation).
    pub term_ns: u64,
    /// Named in the acknowledgement of an invalidation or an eviction notice.
    pub id: u64,
}

/// What a read carries back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// The key was never written.
    Absent,
    /// The caller's `known_version` is current: keep the cached value.
    Unchanged,
    Value(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetReply {
    /// 0 for a key never written.
    pub version: u64,
    pub body: Body,
    /// `None`: use the value for this read only (term 0 asked, a write
    /// waiting on the key, or the lease tables full).
    pub lease: Option<Grant>,
}

/// "Drop your copy of `key` held under grant `lease_id`, then acknowledge."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidation {
    pub key: String,
    pub lease_id: u64,
}

/// A holder's word that it no longer holds grant `lease_id` on `key`
/// (it obeyed an invalidation, or evicted the entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub key: String,
    pub lease_id: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollReply {
    /// The origin's incarnation: a holder that sees it change after a
    /// callback-mode restart drops its whole cache.
    pub incarnation: u64,
    /// Every invalidation for this holder not yet acknowledged.
    pub invalidations: Vec<Invalidation>,
}

/// An origin method's own failure, sent back as its reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum OriginError {
    #[error("key is {len} bytes; at most {max} are accepted")]
    KeyTooLong { len: usize, max: usize },
    #[error("value is {len} bytes; at most {max} are accepted")]
    ValueTooLarge { len: usize, max: usize },
    #[error("version mismatch: expected {expected}, the key is at {current}")]
    VersionMismatch { expected: u64, current: u64 },
    #[error(
        "the origin restarted with callbacks outstanding and accepts no writes until its holders are known gone; retry later"
    )]
    Recovering,
    #[error("the origin's data file is damaged: {0}")]
    Corrupt(String),
    #[error("the origin's storage failed: {0}")]
    Storage(String),
    #[error("more than {max} holders are polling; this one is refused")]
    TooManyHolders { max: usize },
}

impl From<crate::store::StoreError> for OriginError {
    fn from(e: crate::store::StoreError) -> OriginError {
        use crate::store::StoreError as S;
        match e {
            S::KeyTooLong { len, max } => OriginError::KeyTooLong { len, max },
            S::ValueTooLarge { len, max } => OriginError::ValueTooLarge { len, max },
            S::VersionMismatch { expected, current } => {
                OriginError::VersionMismatch { expected, current }
            }
            S::Corrupt { .. } => OriginError::Corrupt(e.to_string()),
            S::Io { .. } | S::InUse { .. } | S::CreateDir { .. } => {
                OriginError::Storage(e.to_string())
            }
        }
    }
}

/// The origin store.
#[ebb_rpc_macros::service(crate = ::ebb_rpc)]
pub trait Origin {
    /// Reads `key` for `holder`, asking for a lease of `term_ns` (0:
    /// check-on-use). With `known_version` equal to the current version the
    /// value is not sent again (`Body::Unchanged`).
    #[idempotent]
    async fn get(
        &self,
        key: String,
        holder: u64,
        term_ns: u64,
        known_version: u64,
    ) -> Result<GetReply, OriginError>;

    /// Stores `value` as the key's next version and returns that version,
    /// once every lease holder acknowledged or expired and the write is
    /// durable. At-most-once: a retry is answered from the RPC session, and
    /// after an origin restart ends as `OutcomeUnknown`, never applies twice.
    async fn put(&self, key: String, value: Vec<u8>) -> Result<u64, OriginError>;

    /// `put`, only if the key is at `expected` now (0: never written).
    async fn put_if_version(
        &self,
        key: String,
        value: Vec<u8>,
        expected: u64,
    ) -> Result<u64, OriginError>;

    /// Hands in `releases` (acknowledged invalidations, evictions) and waits
    /// up to `wait_ms` for invalidations for `holder`. A node keeps one of
    /// these open at all times.
    #[idempotent]
    async fn poll_invalidations(
        &self,
        holder: u64,
        releases: Vec<Release>,
        wait_ms: u64,
    ) -> Result<PollReply, OriginError>;
}
