use super::*;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::time::Duration;

/// Long enough for threads to leave on any machine; only a failing test
/// waits it out.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn n(threads: usize) -> NonZeroUsize {
    NonZeroUsize::new(threads).expect("not zero")
}

/// A job that meets the others (and the test) at `met`, then at `release`.
fn meeting(met: &Arc<Barrier>, release: &Arc<Barrier>) -> Job {
    let (met, release) = (Arc::clone(met), Arc::clone(release));
    Box::pin(async move {
        met.wait();
        release.wait();
    })
}

#[test]
fn runs_as_many_jobs_at_once_as_it_has_threads() {
    let rt = runtime();
    let workers = Workers::new(n(3));
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

#[test]
fn grows_while_serving() {
    let rt = runtime();
    let workers = Workers::new(n(1));
    let met = Arc::new(Barrier::new(4));
    let release = Arc::new(Barrier::new(4));
    // The first job runs on the only thread and waits there.
    assert!(workers.run(rt.handle(), meeting(&met, &release)).is_ok());
    assert_eq!(workers.live(), 1);
    assert_eq!(workers.resize(n(3)), n(3));
    assert_eq!(workers.live(), 3, "a grow starts its threads at once");
    for _ in 0..2 {
        assert!(workers.run(rt.handle(), meeting(&met, &release)).is_ok());
    }
    // The first job and two more meet this thread: three run at once.
    met.wait();
    release.wait();
    assert_eq!(workers.threads(), n(3));
}

#[test]
fn shrinks_while_serving_without_losing_or_rerunning_a_job() {
    let rt = runtime();
    let workers = Workers::new(n(3));
    let met = Arc::new(Barrier::new(4));
    let release = Arc::new(Barrier::new(4));
    let ran = Arc::new(AtomicUsize::new(0));
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (done, finished) = channel();
    for _ in 0..3 {
        assert!(workers.run(rt.handle(), meeting(&met, &release)).is_ok());
    }
    met.wait();
    // Three jobs run; the pool shrinks under them and more are queued.
    assert_eq!(workers.resize(n(1)), n(1));
    for i in 0..5 {
        let (ran, running, most, done) = (
            Arc::clone(&ran),
            Arc::clone(&running),
            Arc::clone(&most),
            done.clone(),
        );
        let job: Job = Box::pin(async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            ran.fetch_add(1, Ordering::SeqCst);
            running.fetch_sub(1, Ordering::SeqCst);
            let _ = done.send(i);
        });
        assert!(workers.run(rt.handle(), job).is_ok());
    }
    assert_eq!(workers.live(), 3, "running jobs keep their threads");
    release.wait();
    let mut seen: Vec<usize> = (0..5)
        .map(|_| finished.recv().expect("every queued job finishes"))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1, 2, 3, 4], "each queued job ran once");
    assert_eq!(ran.load(Ordering::SeqCst), 5);
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "after the shrink one ran at a time"
    );
    assert!(
        workers.wait_live(1, LEAVE_TIMEOUT),
        "the surplus threads left"
    );
    assert_eq!(workers.threads(), n(1));
}

#[test]
fn a_resize_is_cut_to_the_bound() {
    let workers = Workers::new(n(1));
    assert_eq!(
        workers.resize(n(MAX_WORKER_THREADS + 5)),
        n(MAX_WORKER_THREADS)
    );
    assert_eq!(workers.live(), 0, "no thread starts before the first job");
}

/// Two handles share one pool: a resize through one is the other's, jobs
/// from both count against the same threads, and dropping one closes
/// nothing while the other serves.
#[test]
fn clones_share_the_threads_and_a_resize() {
    let rt = runtime();
    let rpc = Workers::new(n(1));
    let http = rpc.clone();
    assert_eq!(rpc.resize(n(3)), n(3));
    assert_eq!(http.threads(), n(3), "the resize is seen through the clone");
    // Two jobs through one handle and one through the other meet this
    // thread: three at once on the three shared threads.
    let met = Arc::new(Barrier::new(4));
    let release = Arc::new(Barrier::new(4));
    for handle in [&rpc, &http, &http] {
        assert!(handle.run(rt.handle(), meeting(&met, &release)).is_ok());
    }
    met.wait();
    assert_eq!(rpc.live(), 3, "one pool of three threads, not two pools");
    release.wait();
    drop(rpc);
    let (done, finished) = channel();
    let job: Job = Box::pin(async move {
        let _ = done.send(());
    });
    assert!(http.run(rt.handle(), job).is_ok());
    finished
        .recv_timeout(LEAVE_TIMEOUT)
        .expect("the remaining handle's pool still runs jobs");
}
