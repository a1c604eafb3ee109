//! A linearizability checker for per-key versioned registers.
//!
//! Every completed write produces a version one above the key's previous
//! one, assigned by the origin in the order writes take effect. With that
//! total order given, a history is linearizable per key exactly when:
//! 1. writes respect real time: a write that completed before another was
//!    invoked has the lower version;
//! 2. no read is stale: a read returns at least the version of every write
//!    that completed before the read was invoked;
//! 3. no read goes back: a read returns at least the version of every read
//!    that completed before it was invoked;
//! 4. no read sees the future: the version it returns was written by a write
//!    invoked before the read completed (or is the initial version 0).
//!
//! Time here is whatever the history's recorder used (real time in the
//! simulator, one monotonic clock in the real-process test): only order
//! between invocations and completions matters.

use std::collections::BTreeMap;

/// One operation as a client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub key: u64,
    pub kind: OpKind,
    pub invoke: u64,
    /// `None`: never completed (the client crashed or gave up); a write
    /// without completion may or may not have taken effect.
    pub complete: Option<u64>,
    /// The version read, or the version the write produced (known from the
    /// origin's log even when the reply was lost); `None` for a write that
    /// never took effect.
    pub version: Option<u64>,
    /// Who did it, for the report.
    pub client: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Read,
    Write,
}

/// The first violation found, described for a person.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error(
        "key {key}: write {completed_first:?} completed before write {invoked_after:?} was invoked but has the higher version"
    )]
    WritesOutOfOrder {
        key: u64,
        completed_first: Op,
        invoked_after: Op,
    },
    #[error("key {key}: stale read {read:?}: write {write:?} had completed before it was invoked")]
    StaleRead { key: u64, read: Op, write: Op },
    #[error("key {key}: read {read:?} went back behind read {before:?}")]
    ReadWentBack { key: u64, read: Op, before: Op },
    #[error("key {key}: read {read:?} returned a version no write invoked before it produced")]
    ReadFromFuture { key: u64, read: Op },
}

/// Checks every key's history; returns the first violation.
pub fn check(ops: &[Op]) -> Result<(), Box<Violation>> {
    let mut by_key: BTreeMap<u64, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        check_key(key, &ops)?;
    }
    Ok(())
}

/// Of `items` sorted by `at`, the element with the largest version among
/// those with `at < bound`: a prefix maximum, found by binary search.
struct PrefixMax<'a> {
    at: Vec<u64>,
    best: Vec<&'a Op>,
}

impl<'a> PrefixMax<'a> {
    fn new(mut items: Vec<(u64, &'a Op)>) -> PrefixMax<'a> {
        items.sort_by_key(|(at, _)| *at);
        let mut best: Vec<&Op> = Vec::with_capacity(items.len());
        for (_, op) in &items {
            let keep = match best.last() {
                Some(b) if b.version >= op.version => *b,
                _ => *op,
            };
            best.push(keep);
        }
        PrefixMax {
            at: items.iter().map(|(at, _)| *at).collect(),
            best,
        }
    }

    fn before(&self, bound: u64) -> Option<&'a Op> {
        let n = self.at.partition_point(|at| *at < bound);
        n.checked_sub(1).map(|i| self.best[i])
    }
}

fn check_key(key: u64, ops: &[&Op]) -> Result<(), Box<Violation>> {
    let writes: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|o| o.kind == OpKind::Write && o.version.is_some())
        .collect();
    let done_writes = PrefixMax::new(
        writes
            .iter()
            .filter_map(|w| w.complete.map(|c| (c, *w)))
            .collect(),
    );
    // Rule 1 and 2 share the completed-writes prefix maximum.
    for w in &writes {
        if let Some(prev) = done_writes.before(w.invoke) {
            if prev.version >= w.version {
                return Err(Box::new(Violation::WritesOutOfOrder {
                    key,
                    completed_first: prev.clone(),
                    invoked_after: (*w).clone(),
                }));
            }
        }
    }
    let invoked_at: BTreeMap<u64, u64> = writes
        .iter()
        .filter_map(|w| w.version.map(|v| (v, w.invoke)))
        .collect();
    let reads: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|o| o.kind == OpKind::Read && o.complete.is_some())
        .collect();
    let done_reads = PrefixMax::new(
        reads
            .iter()
            .filter_map(|r| r.complete.map(|c| (c, *r)))
            .collect(),
    );
    for r in &reads {
        let v = r.version.unwrap_or(0);
        let complete = r.complete.unwrap_or(u64::MAX);
        if v != 0 && invoked_at.get(&v).is_none_or(|inv| *inv >= complete) {
            return Err(Box::new(Violation::ReadFromFuture {
                key,
                read: (*r).clone(),
            }));
        }
        if let Some(w) = done_writes.before(r.invoke) {
            if w.version.unwrap_or(0) > v {
                return Err(Box::new(Violation::StaleRead {
                    key,
                    read: (*r).clone(),
                    write: w.clone(),
                }));
            }
        }
        if let Some(b) = done_reads.before(r.invoke) {
            if b.version.unwrap_or(0) > v {
                return Err(Box::new(Violation::ReadWentBack {
                    key,
                    read: (*r).clone(),
                    before: b.clone(),
                }));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(invoke: u64, complete: u64, version: u64) -> Op {
        Op {
            key: 1,
            kind: OpKind::Write,
            invoke,
            complete: Some(complete),
            version: Some(version),
            client: 0,
        }
    }

    fn r(invoke: u64, complete: u64, version: u64) -> Op {
        Op {
            kind: OpKind::Read,
            version: Some(version),
            ..w(invoke, complete, 0)
        }
    }

    #[test]
    fn a_linearizable_history_passes() {
        let h = [
            w(0, 10, 1),
            r(5, 6, 0), // overlaps the write: old value is fine
            r(7, 8, 1), // overlaps the write: new value is fine
            r(11, 12, 1),
            w(13, 20, 2),
            r(14, 15, 1),
            r(21, 22, 2),
        ];
        assert_eq!(check(&h).map_err(|v| *v), Ok(()));
    }

    #[test]
    fn a_stale_read_is_caught() {
        let h = [w(0, 10, 1), r(11, 12, 0)];
        assert!(matches!(
            check(&h).map_err(|v| *v),
            Err(Violation::StaleRead { .. })
        ));
    }

    #[test]
    fn a_read_going_back_is_caught() {
        let h = [w(0, 100, 1), r(5, 6, 1), r(7, 8, 0)];
        assert!(matches!(
            check(&h).map_err(|v| *v),
            Err(Violation::ReadWentBack { .. })
        ));
    }

    #[test]
    fn a_read_from_the_future_is_caught() {
        let h = [r(0, 5, 1), w(6, 10, 1)];
        assert!(matches!(
            check(&h).map_err(|v| *v),
            Err(Violation::ReadFromFuture { .. })
        ));
    }

    #[test]
    fn writes_out_of_real_time_order_are_caught() {
        let h = [w(0, 5, 2), w(6, 10, 1)];
        assert!(matches!(
            check(&h).map_err(|v| *v),
            Err(Violation::WritesOutOfOrder { .. })
        ));
    }

    #[test]
    fn an_unfinished_write_may_or_may_not_be_seen() {
        let mut pending = w(0, 0, 1);
        pending.complete = None;
        assert!(check(&[pending.clone(), r(5, 6, 1), r(7, 8, 1)]).is_ok());
        assert!(check(&[pending, r(5, 6, 0)]).is_ok());
    }
}
