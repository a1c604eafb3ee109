//! CPU time of one thread, read from procfs by thread id, so the client
//! thread can sample the server thread's CPU before and after a run.

use std::time::Duration;

/// The kernel thread id of the calling thread.
pub fn current_tid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// Total CPU time (user + system) thread `tid` of this process has used.
///
/// `schedstat` gives nanoseconds; `stat` (10 ms ticks) is the fallback for
/// kernels built without scheduler statistics.
pub fn thread_cpu(tid: i32) -> Duration {
    let sched = format!("/proc/self/task/{tid}/schedstat");
    if let Some(ns) = std::fs::read_to_string(sched)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
    {
        return Duration::from_nanos(ns);
    }
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 of stat, i.e. indices 11 and 12 here.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}
