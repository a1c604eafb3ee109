//! The worker threads that run a server's blocking methods (those marked
//! `#[blocking]`), so that a method that keeps a CPU busy for seconds does
//! not stall the I/O loop: connection readers, heartbeats and every cheap
//! call keep being served while it runs.
//!
//! Each worker runs one call at a time to completion with
//! [`Handle::block_on`], on a handle of the server's runtime, so a blocking
//! method may still await timers and sockets; while it waits, its worker
//! waits with it (that is what "blocking" means). `threads` workers run at
//! most `threads` blocking calls at once: this is the node's CPU capacity,
//! the setting "scale up" raises, and [`Workers::resize`] changes it while
//! the server runs.
//!
//! The threads start with the first blocking call, so a server whose
//! service has no blocking method starts none, and end when the server and
//! every call it handed over are gone.
//!
//! A clone is another handle to the same threads: two fronts of one
//! service (the RPC server and the HTTP side of `ebb node --http`) that
//! share them run at most `threads` blocking calls at once between them,
//! and a resize through either is the other's.
//!
//! Invariant: jobs waiting here are calls the session admitted and has not
//! completed, so their number is bounded by the session's in-flight bounds
//! (`MAX_CONNECTIONS` × `MAX_IN_FLIGHT_PER_CONN`); this queue adds no bound
//! of its own and refuses nothing.
//!
//! Invariant: a worker takes a job only while the live workers are at most
//! the target, so after a shrink no more than the new target start jobs;
//! a worker over the target leaves only between jobs, so a shrink never
//! drops or re-runs a queued job and lets running ones finish.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::runtime::Handle;

use crate::service::BoxFuture;

/// The most worker threads one server starts; a larger request is cut to
/// this. Far above any core count a node is given, it only stops a typo
/// (or a resize asked over the wire) from asking for a million threads.
pub const MAX_WORKER_THREADS: usize = 1024;

/// One blocking call, already wrapped so that it records its own outcome.
pub type Job = BoxFuture<'static, ()>;

/// The number of worker threads a server gets when not told: one per core
/// this process may use, so `threads` blocking calls can each have a core.
pub fn default_threads() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// A lazily started pool of worker threads whose number may change while
/// it serves. Cloning shares the pool; it closes when the last handle goes.
#[derive(Clone, Debug)]
pub struct Workers {
    handles: Arc<Handles>,
}

/// What every handle to one pool shares.
#[derive(Debug)]
struct Handles {
    pool: Arc<Pool>,
    /// The runtime of the first job, known from then on: threads started
    /// by a later grow run their jobs on it too, so handles that share a
    /// pool must hand over jobs from one runtime.
    runtime: OnceLock<Handle>,
}

/// What the workers and the server share.
#[derive(Debug, Default)]
struct Pool {
    state: Mutex<State>,
    /// A job was queued, the target fell, or the server is gone.
    work: Condvar,
    /// A worker left (for [`Workers::wait_live`]).
    left: Condvar,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Workers wanted, at most [`MAX_WORKER_THREADS`].
    target: usize,
    /// Worker threads running (busy or idle).
    live: usize,
    /// Threads started over the pool's life, to name them.
    started: usize,
    /// The server is gone: workers finish the queue and leave.
    closed: bool,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("jobs", &self.jobs.len())
            .field("target", &self.target)
            .field("live", &self.live)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Workers {
    /// A pool of `threads` workers, at most [`MAX_WORKER_THREADS`].
    pub fn new(threads: NonZeroUsize) -> Workers {
        let pool = Pool::default();
        pool.lock().target = bounded(threads).get();
        Workers {
            handles: Arc::new(Handles {
                pool: Arc::new(pool),
                runtime: OnceLock::new(),
            }),
        }
    }

    fn pool(&self) -> &Arc<Pool> {
        &self.handles.pool
    }

    /// The target: how many blocking calls may run at once.
    pub fn threads(&self) -> NonZeroUsize {
        NonZeroUsize::new(self.pool().lock().target).expect("the target is never zero")
    }

    /// Worker threads running now: after a shrink, more than the target
    /// until the surplus finishes its jobs; fewer before the first job.
    pub fn live(&self) -> usize {
        self.pool().lock().live
    }

    /// Sets the number of workers to `threads` (cut to
    /// [`MAX_WORKER_THREADS`]) and returns the number now in force. A grow
    /// starts the new threads at once if the pool has started; a shrink
    /// lets running jobs finish and idle workers leave.
    pub fn resize(&self, threads: NonZeroUsize) -> NonZeroUsize {
        let threads = bounded(threads);
        let mut state = self.pool().lock();
        state.target = threads.get();
        if let Some(runtime) = self.handles.runtime.get() {
            self.pool().spawn_missing(&mut state, runtime);
        }
        drop(state);
        // Idle workers over the target see it and leave.
        self.pool().work.notify_all();
        threads
    }

    /// Hands `job` to a free worker, or queues it until one is free.
    /// `runtime` is the server's runtime, whose timers and sockets the job
    /// may use. Returns the job if no worker thread could be started, so
    /// the caller can run it itself rather than lose the call.
    pub fn run(&self, runtime: &Handle, job: Job) -> Result<(), Job> {
        let runtime = self.handles.runtime.get_or_init(|| runtime.clone());
        let mut state = self.pool().lock();
        self.pool().spawn_missing(&mut state, runtime);
        if state.live == 0 {
            return Err(job);
        }
        state.jobs.push_back(job);
        drop(state);
        self.pool().work.notify_one();
        Ok(())
    }

    /// Waits until exactly `live` workers run (a shrink has taken effect),
    /// or `timeout` passed; returns whether it happened. For tests and
    /// benchmarks that must see the threads really went.
    pub fn wait_live(&self, live: usize, timeout: std::time::Duration) -> bool {
        let state = self.pool().lock();
        let (state, _) = self
            .pool()
            .left
            .wait_timeout_while(state, timeout, |s| s.live != live)
            .unwrap_or_else(PoisonError::into_inner);
        state.live == live
    }
}

impl Drop for Handles {
    /// The last handle went: workers finish what is queued, then leave.
    fn drop(&mut self) {
        self.pool.lock().closed = true;
        self.pool.work.notify_all();
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts threads until `target` run. A thread that cannot be started
    /// is skipped (the next job tries again); with none running,
    /// [`Workers::run`] hands the job back.
    fn spawn_missing(self: &Arc<Self>, state: &mut State, runtime: &Handle) {
        while state.live < state.target {
            let pool = Arc::clone(self);
            let runtime = runtime.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ebb-worker-{}", state.started))
                .spawn(move || pool.work(&runtime));
            if spawned.is_err() {
                return;
            }
            state.live += 1;
            state.started += 1;
        }
    }

    /// A worker's loop: take the next job, run it to completion, repeat
    /// until the pool has more workers than it wants or the server is gone
    /// with nothing queued.
    fn work(&self, runtime: &Handle) {
        let mut state = self.lock();
        loop {
            if state.live > state.target {
                break;
            }
            if let Some(job) = state.jobs.pop_front() {
                drop(state);
                runtime.block_on(job);
                state = self.lock();
                continue;
            }
            if state.closed {
                break;
            }
            state = self
                .work
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.live -= 1;
        let more = !state.jobs.is_empty();
        drop(state);
        // A job's wake-up may have reached this worker as it left.
        if more {
            self.work.notify_one();
        }
        self.left.notify_all();
    }
}

fn bounded(threads: NonZeroUsize) -> NonZeroUsize {
    let most = NonZeroUsize::new(MAX_WORKER_THREADS).expect("the constant is not zero");
    threads.min(most)
}

#[cfg(test)]
mod tests;
