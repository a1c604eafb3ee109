//! Group commit: puts that arrive while a commit is under way wait for the
//! next one and share its fsync, each acknowledged only once that commit is
//! durable.
//!
//! One thread owns the committing: it takes the first waiting write, then
//! every write already queued behind it (up to `max_batch_writes` and
//! [`MAX_BATCH_BYTES`]), applies them in order in one redb transaction, and
//! answers each. Nothing waits on a timer to fill a batch: a lone put
//! commits at once, and batches grow only as commits fall behind arrivals.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{Store, StoreError, Write};

/// Writes waiting for the committer; a put beyond it waits for room.
pub const MAX_QUEUED_WRITES: usize = 1_024;
/// Value and key bytes of one commit at most (a batch stops growing at the
/// first write that would pass it, and a single larger write commits alone).
pub const MAX_BATCH_BYTES: usize = 8 << 20;

type Reply = oneshot::Sender<Result<u64, StoreError>>;

/// The queue in front of the committing thread. Dropping it drains the
/// queue and waits for the thread to end, so the store is closed (and can
/// be opened again) once the committer is gone.
#[derive(Debug)]
pub struct Committer {
    /// `None` only while dropping.
    queue: Option<mpsc::Sender<(Write, Reply)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Committer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why a write got no answer from the committer.
#[derive(Debug, thiserror::Error)]
#[error("the commit thread is gone")]
pub struct CommitterGone;

impl Committer {
    /// Starts the committing thread over `store`, committing up to
    /// `max_batch_writes` writes at once (1: each its own transaction).
    pub fn start(store: Arc<Store>, max_batch_writes: usize) -> std::io::Result<Committer> {
        let (queue, rx) = mpsc::channel(MAX_QUEUED_WRITES);
        let max = max_batch_writes.max(1);
        let thread = std::thread::Builder::new()
            .name("origin-commit".into())
            .spawn(move || {
                run(&store, rx, max);
            })?;
        Ok(Committer {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queues `write` and waits until it is durable (or refused).
    pub async fn commit(&self, write: Write) -> Result<Result<u64, StoreError>, CommitterGone> {
        let (tx, rx) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or(CommitterGone)?;
        queue.send((write, tx)).await.map_err(|_| CommitterGone)?;
        rx.await.map_err(|_| CommitterGone)
    }
}

fn bytes(w: &Write) -> usize {
    w.key.len() + w.value.len()
}

/// Commits until the queue is closed and drained; returns how many
/// transactions it committed (or tried to).
fn run(store: &Store, mut rx: mpsc::Receiver<(Write, Reply)>, max: usize) -> u64 {
    let mut commits = 0;
    let mut writes = Vec::with_capacity(max);
    let mut replies = Vec::with_capacity(max);
    // A write taken off the queue that did not fit the previous batch.
    let mut carried: Option<(Write, Reply)> = None;
    loop {
        let first = match carried.take() {
            Some(w) => w,
            None => match rx.blocking_recv() {
                Some(w) => w,
                None => return commits,
            },
        };
        let mut batch_bytes = bytes(&first.0);
        writes.push(first.0);
        replies.push(first.1);
        while writes.len() < max {
            let Ok((w, r)) = rx.try_recv() else { break };
            if batch_bytes + bytes(&w) > MAX_BATCH_BYTES {
                carried = Some((w, r));
                break;
            }
            batch_bytes += bytes(&w);
            writes.push(w);
            replies.push(r);
        }
        commits += 1;
        match store.put_batch(&writes) {
            Ok(results) => {
                for (reply, result) in replies.drain(..).zip(results) {
                    // The caller may be gone (its deadline passed); the
                    // write is durable either way.
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                // The transaction failed: none of the batch was applied.
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        writes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: &str, expected: Option<u64>) -> Write {
        Write {
            key: key.to_owned(),
            value: key.as_bytes().to_vec(),
            expected,
        }
    }

    /// Queues `writes` before the committer runs, so batching is certain.
    fn commit_queued(
        store: &Store,
        writes: Vec<Write>,
        max: usize,
    ) -> (u64, Vec<Result<u64, StoreError>>) {
        let (tx, rx) = mpsc::channel(MAX_QUEUED_WRITES);
        let mut replies = Vec::new();
        for w in writes {
            let (rtx, rrx) = oneshot::channel();
            tx.try_send((w, rtx)).expect("room in the queue");
            replies.push(rrx);
        }
        drop(tx);
        let commits = run(store, rx, max);
        let results = replies
            .into_iter()
            .map(|mut r| r.try_recv().expect("every write is answered"))
            .collect();
        (commits, results)
    }

    #[test]
    fn queued_writes_share_commits_and_each_gets_its_own_answer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let mut writes: Vec<Write> = (0..10)
            .map(|i| write(&format!("k{}", i % 3), None))
            .collect();
        // A conditional write that sees the batch's earlier writes to k0
        // (versions 1 and 2 by then): refused on its own, the rest go on.
        writes.insert(7, write("k0", Some(1)));
        let (commits, results) = commit_queued(&store, writes, 4);
        assert_eq!(commits, 3, "11 writes, at most 4 per commit");
        let versions: Vec<Option<u64>> = results.iter().map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(
            versions,
            [1, 1, 1, 2, 2, 2, 3]
                .map(Some)
                .into_iter()
                .chain([None])
                .chain([3, 3, 4].map(Some))
                .collect::<Vec<_>>()
        );
        assert!(matches!(
            results[7],
            Err(StoreError::VersionMismatch {
                expected: 1,
                current: 3
            })
        ));
        assert_eq!(
            store.versions().expect("versions"),
            vec![("k0".into(), 4), ("k1".into(), 3), ("k2".into(), 3)]
        );
    }

    #[test]
    fn a_batch_stops_growing_at_its_byte_bound() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let big = |k: &str| Write {
            key: k.to_owned(),
            value: vec![7; crate::MAX_VALUE_BYTES],
            expected: None,
        };
        let n = MAX_BATCH_BYTES / crate::MAX_VALUE_BYTES + 1;
        let writes: Vec<Write> = (0..n).map(|i| big(&format!("b{i}"))).collect();
        let (commits, results) = commit_queued(&store, writes, 1_000);
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(
            commits, 2,
            "{n} values of 1 MiB do not fit one 8 MiB commit"
        );
    }

    #[test]
    fn one_per_commit_when_asked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        let writes: Vec<Write> = (0..5).map(|i| write(&format!("k{i}"), None)).collect();
        let (commits, _) = commit_queued(&store, writes, 1);
        assert_eq!(commits, 5);
    }
}
