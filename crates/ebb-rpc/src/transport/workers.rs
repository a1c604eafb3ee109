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
//! the setting "scale up" raises.
//!
//! The threads start with the first blocking call, so a server whose
//! service has no blocking method starts none, and end when the server and
//! every call it handed over are gone.
//!
//! Invariant: jobs waiting here are calls the session admitted and has not
//! completed, so their number is bounded by the session's in-flight bounds
//! (`MAX_CONNECTIONS` × `MAX_IN_FLIGHT_PER_CONN`); this queue adds no bound
//! of its own and refuses nothing.

use std::num::NonZeroUsize;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::runtime::Handle;

use crate::service::BoxFuture;

/// The most worker threads one server starts; a larger request is cut to
/// this. Far above any core count a node is given, it only stops a typo
/// from asking for a million threads.
pub const MAX_WORKER_THREADS: usize = 1024;

/// One blocking call, already wrapped so that it records its own outcome.
pub type Job = BoxFuture<'static, ()>;

/// The number of worker threads a server gets when not told: one per core
/// this process may use, so `threads` blocking calls can each have a core.
pub fn default_threads() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// A lazily started pool of `threads` worker threads.
#[derive(Debug)]
pub struct Workers {
    threads: NonZeroUsize,
    queue: OnceLock<Sender<Job>>,
}

impl Workers {
    /// A pool of `threads` workers, at most [`MAX_WORKER_THREADS`].
    pub fn new(threads: NonZeroUsize) -> Workers {
        let most = NonZeroUsize::new(MAX_WORKER_THREADS).expect("the constant is not zero");
        Workers {
            threads: threads.min(most),
            queue: OnceLock::new(),
        }
    }

    pub fn threads(&self) -> NonZeroUsize {
        self.threads
    }

    /// Hands `job` to a free worker, or queues it until one is free.
    /// `runtime` is the server's runtime, whose timers and sockets the job
    /// may use. Returns the job if no worker thread could be started, so
    /// the caller can run it itself rather than lose the call.
    pub fn run(&self, runtime: &Handle, job: Job) -> Result<(), Job> {
        let queue = self.queue.get_or_init(|| self.start(runtime));
        queue.send(job).map_err(|refused| refused.0)
    }

    /// Starts the threads. A thread that cannot be started is skipped; if
    /// none starts, the receiver is dropped with them and every send fails,
    /// which [`Workers::run`] reports to its caller.
    fn start(&self, runtime: &Handle) -> Sender<Job> {
        let (send, receive) = channel::<Job>();
        let receive = Arc::new(Mutex::new(receive));
        for i in 0..self.threads.get() {
            let receive = Arc::clone(&receive);
            let runtime = runtime.clone();
            let _ = std::thread::Builder::new()
                .name(format!("ebb-worker-{i}"))
                .spawn(move || work(&receive, &runtime));
        }
        send
    }
}

/// A worker's loop: take the next job, run it to completion, repeat until
/// the server is gone.
fn work(jobs: &Mutex<Receiver<Job>>, runtime: &Handle) {
    loop {
        let next = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else {
            return;
        };
        runtime.block_on(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[test]
    fn runs_as_many_jobs_at_once_as_it_has_threads() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let workers = Workers::new(NonZeroUsize::new(3).expect("3 > 0"));
        // Three jobs and this thread meet at the barrier: that can only
        // happen if the three jobs run at the same time on three threads.
        let met = Arc::new(Barrier::new(4));
        let (done, finished) = channel();
        for _ in 0..3 {
            let (met, done) = (Arc::clone(&met), done.clone());
            let job: Job = Box::pin(async move {
                met.wait();
                let _ = done.send(());
            });
            assert!(workers.run(rt.handle(), job).is_ok());
        }
        met.wait();
        for _ in 0..3 {
            finished.recv().expect("every job finishes");
        }
    }
}
