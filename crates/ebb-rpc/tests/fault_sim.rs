//! Deterministic fault simulation of the call semantics: many seeds of
//! clients and servers over a network that drops, duplicates, delays and
//! reorders frames, resets connections and crashes servers.
//!
//! Asserts, per seed: no at-most-once call runs twice (across incarnations
//! too); every reply a call receives is its own; every call ends, with a
//! reply or a typed error, by its deadline; a call told `Rejected` did not
//! run. Some seeds squeeze the server's connections (clients turned away
//! unread) and the calls a connection may run at once (refusals, then late
//! copies of refused calls), and some methods panic; the totals show each
//! of those paths ran. Some seeds squeeze the saved reply bytes (replies
//! saved as `OutcomeUnknown`). Servers sweep for silent connections; most
//! seeds shorten the handshake and idle timeouts, and hostile peers open
//! connections that never speak or speak once: each sweep must close
//! exactly the connections silent past their timeout, and clients told
//! `Timeout` reconnect. Forging peers that know a client's id and its last
//! at-most-once request, but not its secret, try to resume its session:
//! every forged handshake and copied request must be refused
//! `Unauthenticated` and run nothing, and no client holding its secret is
//! ever refused so. Some seeds require bearer tokens: clients share two
//! tokens (callers), one client may present none or a wrong one (none of
//! its calls may run, and its at-most-once calls end `Unauthorized`),
//! forgers present a caller's token or a wrong one (refused, and not
//! described to), and most such seeds bound each caller's calls
//! executing over all its clients' connections: the world counts them and
//! fails the run past the bound, and the totals show callers refused
//! `CallerInFlight` while other callers were served. Half the seeds drive
//! the overdue paths: blocking methods queue for one or two worker threads
//! and are refused at their start once their due has passed, slow methods
//! are cancelled past their due plus a short grace; late copies of those
//! calls must be answered from the server's record and never run again,
//! and the totals show both paths and both kinds of late copy occurred.
//! Half the seeds send resizes through the same faulty network, as a
//! gateway does on its connections to nodes: within the servers' bound,
//! past it, to servers that do not resize, before the handshake, from a
//! client without an accepted token, and `Resized` frames the wrong way;
//! none may run a method or touch the at-most-once table, an answered one
//! sets the worker threads the blocking calls queue for, within 1 ..= the
//! bound, and the totals show each kind happened.
//! Planted-bug tests show the simulation catches a server that forgets its
//! refusals, one that applies the handshake timeout to connections past
//! their handshake, one that bounds a caller per connection, one that
//! checks tokens only at the handshake, and ones that forget a refusal at
//! a late start or an overdue cancellation.
//! `EBB_FAULT_SEEDS=N` runs N seeds (default 1000); `EBB_FAULT_SEED=S`
//! replays seed S alone.
#![allow(clippy::unwrap_used)]

mod sim;

use std::panic::{AssertUnwindSafe, catch_unwind};

use sim::Stats;
use sim::world::{Planted, World};

const DEFAULT_SEEDS: u64 = 1000;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a non-negative integer")),
    )
}

fn run_seed(seed: u64) -> Stats {
    let replay =
        format!("replay with: EBB_FAULT_SEED={seed} cargo test -p ebb-rpc --test fault_sim");
    match catch_unwind(AssertUnwindSafe(|| World::new(seed).run())) {
        Ok(Ok(stats)) => stats,
        Ok(Err(why)) => panic!("seed {seed}: {why}\n{replay}"),
        Err(_) => panic!("seed {seed}: the state machines panicked (message above)\n{replay}"),
    }
}

#[test]
fn no_call_runs_twice_replies_reach_their_own_call_and_every_call_ends_by_its_deadline() {
    if let Some(seed) = env_u64("EBB_FAULT_SEED") {
        let stats = run_seed(seed);
        println!("seed {seed}: {stats:?}");
        return;
    }
    let seeds = env_u64("EBB_FAULT_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let mut total = Stats::default();
    for seed in 0..seeds {
        total.add(&run_seed(seed));
    }
    println!("{seeds} seeds: {total:?}");
    // The faults must actually bite, or the run proves nothing.
    if seeds >= 50 {
        assert!(
            total.ok * 2 > total.calls,
            "most calls should succeed: {total:?}"
        );
        assert!(
            total.crashes > 0 && total.resets > 0 && total.moves > 0,
            "{total:?}"
        );
        assert!(
            total.outcome_unknown > 0,
            "crashes should orphan some calls: {total:?}"
        );
        assert!(
            total.deadline + total.connection_lost + total.unresponsive > 0,
            "{total:?}"
        );
        assert!(
            total.saved_replies > 0 && total.waits > 0,
            "duplicates must have met saved replies and running calls: {total:?}"
        );
        assert!(
            total.refusals > 0 && total.refusals_repeated > 0,
            "refused calls must have been resent and refused again: {total:?}"
        );
        assert!(
            total.panicked > 0 && total.conns_refused > 0,
            "panics and refused connections must have occurred: {total:?}"
        );
        assert!(
            total.replies_not_kept > 0,
            "the saved-reply byte bounds must have been met: {total:?}"
        );
        assert!(
            total.closed_handshake > 0 && total.closed_idle > 0,
            "handshake and idle timeouts must have closed connections: {total:?}"
        );
        assert!(
            total.clients_timed_out > 0 && total.timeout_notices > 0,
            "clients' connections must have timed out and been told so: {total:?}"
        );
        assert!(
            total.forged_resumes_refused > 0 && total.forged_requests_refused > 0,
            "peers forging client ids must have tried to resume live sessions and been refused: {total:?}"
        );
        assert!(
            total.unauthorized_handshakes > 0
                && total.unauthorized_requests > 0
                && total.outsider_calls_refused > 0
                && total.describes_refused > 0,
            "clients and forgers without an accepted token must have been refused: {total:?}"
        );
        assert!(
            total.caller_refusals > 0 && total.served_beside_full_caller > 0,
            "callers must have met their bound while other callers were served: {total:?}"
        );
        assert!(
            total.refused_before_start > 0 && total.cancelled_overdue > 0,
            "queued calls must have been refused at their start and running ones cancelled past their due: {total:?}"
        );
        assert!(
            total.refused_copies_answered > 0 && total.cancelled_copies_answered > 0,
            "late copies of calls ended overdue must have been answered from the record: {total:?}"
        );
        assert!(
            total.resizes_applied > 0
                && total.resizes_cut_to_bound > 0
                && total.resizes_not_resizable > 0
                && total.resizes_unanswered > 0
                && total.resized_dropped > 0,
            "resizes of every kind must have reached servers: {total:?}"
        );
    }
}

/// Seeds the planted-bug run tries before it must have caught the bug.
const PLANTED_SEEDS: u64 = 400;

/// Runs seeds with `bug` planted until one fails with a message containing
/// `caught_by`; any other failure, or none, fails the test.
fn catches(bug: Planted, caught_by: &str) {
    for seed in 0..PLANTED_SEEDS {
        let run = catch_unwind(AssertUnwindSafe(|| {
            World::with_planted_bug(seed, bug).run()
        }));
        match run {
            Ok(Err(why)) if why.contains(caught_by) => {
                println!("seed {seed} caught {bug:?}: {why}");
                return;
            }
            Ok(Err(why)) => panic!("seed {seed} ({bug:?}) failed for another reason: {why}"),
            Ok(Ok(_)) => {}
            Err(_) => panic!("seed {seed} ({bug:?}): the state machines panicked"),
        }
    }
    panic!("{PLANTED_SEEDS} seeds never caught {bug:?}");
}

#[test]
fn a_server_that_forgets_its_refusals_is_caught() {
    catches(Planted::UnrecordedRefusal, "was rejected");
}

#[test]
fn a_server_that_bounds_a_caller_per_connection_is_caught() {
    catches(Planted::CallerBoundPerConnection, "over its bound");
}

#[test]
fn a_server_that_checks_tokens_only_at_the_handshake_is_caught() {
    catches(
        Planted::RequestsUncheckedForToken,
        "without an accepted token ran",
    );
}

#[test]
fn a_server_that_times_out_live_connections_as_unhandshaken_is_caught() {
    catches(
        Planted::HandshakeTimeoutWhenIdle,
        "silent past their timeouts",
    );
}

#[test]
fn a_server_that_forgets_a_refusal_at_a_late_start_is_caught() {
    catches(
        Planted::UnrecordedStartRefusal,
        "refused at its start past its due and recorded, yet a late copy was admitted",
    );
}

#[test]
fn a_server_that_forgets_an_overdue_cancellation_is_caught() {
    catches(
        Planted::UnrecordedCancellation,
        "cancelled past its due and recorded, yet a late copy was admitted",
    );
}
