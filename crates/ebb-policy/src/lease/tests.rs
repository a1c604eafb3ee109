use ebb_core::{Instant, Nanos};

use super::*;

const EPS: Nanos = Nanos::from_millis(100);

fn at(ms: u64) -> Instant {
    Instant::from_epoch(Nanos::from_millis(ms))
}

fn lease(sent_ms: u64, term_ms: u64) -> HeldLease {
    HeldLease {
        version: Version(3),
        request_sent: at(sent_ms),
        term: LeaseTerm::from_millis(term_ms),
        id: LeaseId(9),
    }
}

/// The lease id a grant carried.
fn granted(g: ReadGrant) -> LeaseId {
    match g {
        ReadGrant::Lease { id, .. } => id,
        other => panic!("expected a lease, got {other:?}"),
    }
}

fn is_lease(g: ReadGrant, t: LeaseTerm) -> bool {
    matches!(g, ReadGrant::Lease { term, .. } if term == t)
}

fn origin(term_ms: u64) -> OriginLeases<&'static str> {
    OriginLeases::new(OriginConfig::new(LeaseTerm::from_millis(term_ms), EPS))
}

const A: HolderId = HolderId(1);
const B: HolderId = HolderId(2);

#[test]
fn holder_serves_until_request_sent_plus_term_minus_epsilon() {
    let l = lease(1_000, 10_000);
    assert_eq!(l.serve_until(EPS), at(10_900));
    assert!(l.may_serve(at(10_899), EPS));
    assert!(!l.may_serve(at(10_900), EPS), "the bound is exclusive");
    assert_eq!(plan_read(Some(&l), at(5_000), EPS), ReadPlan::Serve);
    assert_eq!(
        plan_read(Some(&l), at(10_900), EPS),
        ReadPlan::Validate {
            version: Version(3)
        }
    );
    assert_eq!(plan_read(None, at(0), EPS), ReadPlan::Fetch);
}

#[test]
fn a_term_no_longer_than_epsilon_never_serves_and_zero_is_check_on_use() {
    assert!(!lease(1_000, 100).may_serve(at(1_000), EPS));
    let zero = HeldLease {
        term: LeaseTerm::CHECK_ON_USE,
        ..lease(1_000, 0)
    };
    assert!(zero.term.is_check_on_use());
    assert_eq!(
        plan_read(Some(&zero), at(1_000), EPS),
        ReadPlan::Validate {
            version: Version(3)
        }
    );
}

#[test]
fn a_callback_lease_serves_until_invalidated() {
    let cb = HeldLease {
        term: LeaseTerm::CALLBACK,
        ..lease(0, 0)
    };
    assert!(cb.term.is_callback());
    assert_eq!(cb.serve_until(EPS), Instant::FAR_FUTURE);
    assert!(cb.may_serve(at(u64::MAX / 2_000_000), EPS));
}

#[test]
fn newer_of_prefers_version_then_later_request() {
    let old = lease(0, 1_000);
    let later = lease(500, 1_000);
    let newer = HeldLease {
        version: Version(4),
        ..lease(0, 1_000)
    };
    assert_eq!(old.newer_of(later), later);
    assert_eq!(later.newer_of(old), later);
    assert_eq!(later.newer_of(newer), newer);
}

#[test]
fn a_reply_that_raced_an_invalidation_is_not_cached() {
    let mut t = FetchTracker::new(4);
    let a = t.begin("k", at(1));
    let b = t.begin("other", at(2));
    assert_eq!(t.invalidate(&"k"), 1);
    assert_eq!(t.finish(a), None, "raced the invalidation");
    assert_eq!(t.finish(b), Some(at(2)));
    let c = t.begin("k", at(3));
    assert_eq!(t.finish(c), Some(at(3)), "sent after the invalidation");
    assert!(t.is_empty());
}

#[test]
fn past_its_bound_the_fetch_tracker_refuses_to_vouch() {
    let mut t = FetchTracker::new(1);
    let a = t.begin("k", at(1));
    let b = t.begin("k", at(2));
    assert_eq!(t.len(), 1);
    assert_eq!(t.finish(b), None, "untracked, so it cannot be trusted");
    assert_eq!(t.finish(a), Some(at(1)));
}

#[test]
fn a_write_with_no_holders_is_ready_at_once() {
    let mut o = origin(10_000);
    assert_eq!(o.begin_write(at(0), &"k"), WriteStart::Ready);
    o.finish_write(&"k");
    // An expired lease does not hold a write either.
    assert!(is_lease(
        o.read(at(0), &"k", A, LeaseTerm::from_millis(1_000)),
        LeaseTerm::from_millis(1_000)
    ));
    assert_eq!(o.begin_write(at(1_000), &"k"), WriteStart::Ready);
}

#[test]
fn a_write_being_applied_keeps_new_leases_off_its_key() {
    let mut o = origin(10_000);
    let t = LeaseTerm::from_millis(10_000);
    assert_eq!(o.begin_write(at(0), &"k"), WriteStart::Ready);
    assert_eq!(
        o.read(at(1), &"k", A, t),
        ReadGrant::NoLease(NoLease::WritePending)
    );
    assert_eq!(o.begin_write(at(1), &"k"), WriteStart::Busy);
    o.finish_write(&"k");
    assert!(is_lease(o.read(at(2), &"k", A, t), t));
    assert_eq!(o.begin_write(at(3), &"j"), WriteStart::Ready);
    o.abandon_write(&"j");
    assert_eq!(
        o.leased_keys(),
        1,
        "an abandoned write leaves nothing behind"
    );
}

#[test]
fn a_write_waits_for_every_holder_to_acknowledge() {
    let mut o = origin(10_000);
    let t = LeaseTerm::from_millis(10_000);
    let a = granted(o.read(at(0), &"k", A, t));
    let b = granted(o.read(at(5), &"k", B, t));
    assert_ne!(a, b, "every grant has its own id");
    assert_eq!(
        o.begin_write(at(10), &"k"),
        WriteStart::Invalidate {
            holders: vec![(A, a), (B, b)],
            until: at(10_005)
        }
    );
    assert_eq!(o.begin_write(at(11), &"k"), WriteStart::Busy);
    assert!(
        !o.release(&"k", A, b),
        "an ack naming another grant counts for nothing"
    );
    assert!(o.release(&"k", A, a));
    assert_eq!(
        o.write_status(at(12), &"k"),
        WriteStatus::Waiting {
            holders: 1,
            until: at(10_005)
        }
    );
    assert!(o.release(&"k", B, b));
    assert!(
        !o.release(&"k", B, b),
        "a duplicate acknowledgement is harmless"
    );
    assert_eq!(o.write_status(at(13), &"k"), WriteStatus::Ready);
    o.finish_write(&"k");
    assert_eq!(o.write_status(at(14), &"k"), WriteStatus::NotStarted);
}

#[test]
fn an_unresponsive_holder_delays_a_write_only_until_its_term_ends() {
    let mut o = origin(10_000);
    let t = LeaseTerm::from_millis(10_000);
    o.read(at(0), &"k", A, t);
    assert!(matches!(
        o.begin_write(at(1), &"k"),
        WriteStart::Invalidate { .. }
    ));
    assert_eq!(
        o.write_status(at(9_999), &"k"),
        WriteStatus::Waiting {
            holders: 1,
            until: at(10_000)
        }
    );
    assert_eq!(o.write_status(at(10_000), &"k"), WriteStatus::Ready);
}

#[test]
fn no_lease_is_granted_while_a_write_waits() {
    let mut o = origin(10_000);
    let t = LeaseTerm::from_millis(10_000);
    let a = granted(o.read(at(0), &"k", A, t));
    o.begin_write(at(1), &"k");
    assert_eq!(
        o.read(at(2), &"k", B, t),
        ReadGrant::NoLease(NoLease::WritePending)
    );
    assert_eq!(
        o.read(at(2), &"k", A, t),
        ReadGrant::NoLease(NoLease::WritePending)
    );
    // Other keys are unaffected.
    assert!(is_lease(o.read(at(2), &"j", B, t), t));
    o.release(&"k", A, a);
    assert_eq!(o.write_status(at(3), &"k"), WriteStatus::Ready);
    o.finish_write(&"k");
    assert!(is_lease(o.read(at(4), &"k", B, t), t));
}

#[test]
fn terms_are_capped_at_the_configured_maximum() {
    let mut o = origin(1_000);
    assert!(is_lease(
        o.read(at(0), &"k", A, LeaseTerm::CALLBACK),
        LeaseTerm::from_millis(1_000)
    ));
    assert_eq!(o.holders(at(999), &"k"), vec![A]);
    assert_eq!(o.holders(at(1_000), &"k"), Vec::<HolderId>::new());
}

#[test]
fn check_on_use_grants_nothing_and_writes_never_wait() {
    let mut o = origin(0);
    assert_eq!(
        o.read(at(0), &"k", A, LeaseTerm::from_millis(5_000)),
        ReadGrant::NoLease(NoLease::CheckOnUse)
    );
    assert_eq!(o.leased_keys(), 0);
    assert_eq!(o.begin_write(at(0), &"k"), WriteStart::Ready);
}

#[test]
fn a_callback_holder_blocks_writes_until_declared_dead() {
    let mut o = OriginLeases::new(OriginConfig::new(LeaseTerm::CALLBACK, EPS));
    assert!(is_lease(
        o.read(at(0), &"k", A, LeaseTerm::CALLBACK),
        LeaseTerm::CALLBACK
    ));
    o.read(at(0), &"j", A, LeaseTerm::CALLBACK);
    assert!(matches!(
        o.begin_write(at(1), &"k"),
        WriteStart::Invalidate {
            until: Instant::FAR_FUTURE,
            ..
        }
    ));
    // A year later it still waits: nothing but the failure detector ends it.
    let year = at(365 * 24 * 3_600 * 1_000);
    assert!(matches!(
        o.write_status(year, &"k"),
        WriteStatus::Waiting { holders: 1, .. }
    ));
    assert_eq!(o.declare_dead(A), 2);
    assert_eq!(o.write_status(year, &"k"), WriteStatus::Ready);
    assert_eq!(o.holders(year, &"j"), Vec::<HolderId>::new());
}

#[test]
fn after_a_restart_writes_wait_for_the_persisted_bound_plus_epsilon() {
    let cfg = OriginConfig::new(LeaseTerm::from_millis(1_000), EPS);
    let mut o: OriginLeases<&str> =
        OriginLeases::restarted(cfg, at(50_000), Some(LeaseTerm::from_millis(10_000)), 1);
    assert_eq!(
        o.begin_write(at(50_000), &"k"),
        WriteStart::Recovering(Recovery::Until(at(60_100)))
    );
    assert_eq!(
        o.begin_write(at(60_099), &"k"),
        WriteStart::Recovering(Recovery::Until(at(60_100)))
    );
    // Reads are still served, and with leases.
    assert!(matches!(
        o.read(at(60_000), &"j", A, LeaseTerm::from_millis(1_000)),
        ReadGrant::Lease { .. }
    ));
    assert_eq!(o.begin_write(at(60_100), &"k"), WriteStart::Ready);
    assert_eq!(o.recovery(at(60_100)), Recovery::Done);
}

#[test]
fn after_a_restart_with_callbacks_writes_wait_until_cleared() {
    let cfg = OriginConfig::new(LeaseTerm::CALLBACK, EPS);
    let mut o: OriginLeases<&str> =
        OriginLeases::restarted(cfg, at(0), Some(LeaseTerm::CALLBACK), 1);
    assert_eq!(
        o.begin_write(at(u64::MAX / 2_000_000), &"k"),
        WriteStart::Recovering(Recovery::UntilCleared)
    );
    o.clear_recovery();
    assert_eq!(o.begin_write(at(1), &"k"), WriteStart::Ready);
}

#[test]
fn a_fresh_store_or_a_check_on_use_bound_needs_no_recovery() {
    let cfg = OriginConfig::new(LeaseTerm::from_millis(1_000), EPS);
    let mut fresh: OriginLeases<&str> = OriginLeases::restarted(cfg, at(0), None, 1);
    assert_eq!(fresh.begin_write(at(0), &"k"), WriteStart::Ready);
    let mut cou: OriginLeases<&str> =
        OriginLeases::restarted(cfg, at(0), Some(LeaseTerm::CHECK_ON_USE), 1);
    assert_eq!(cou.begin_write(at(0), &"k"), WriteStart::Ready);
}

#[test]
fn the_persisted_bound_never_shrinks() {
    let ten = LeaseTerm::from_millis(10_000);
    let one = LeaseTerm::from_millis(1_000);
    assert_eq!(OriginLeases::<&str>::bound_to_persist(Some(ten), one), ten);
    assert_eq!(OriginLeases::<&str>::bound_to_persist(Some(one), ten), ten);
    assert_eq!(OriginLeases::<&str>::bound_to_persist(None, one), one);
}

#[test]
fn holder_and_key_tables_are_bounded() {
    let mut cfg = OriginConfig::new(LeaseTerm::from_millis(1_000), EPS);
    cfg.max_holders_per_key = 1;
    cfg.max_leased_keys = 1;
    let t = LeaseTerm::from_millis(1_000);
    let mut o = OriginLeases::new(cfg);
    assert!(is_lease(o.read(at(0), &"k", A, t), t));
    assert!(
        is_lease(o.read(at(0), &"k", A, t), t),
        "a renewal takes no new slot"
    );
    assert_eq!(
        o.read(at(0), &"k", B, t),
        ReadGrant::NoLease(NoLease::HoldersFull)
    );
    assert_eq!(
        o.read(at(0), &"j", A, t),
        ReadGrant::NoLease(NoLease::TableFull)
    );
    // Once A's lease has ended its slots free up.
    assert!(is_lease(o.read(at(1_000), &"k", B, t), t));
    assert!(is_lease(o.read(at(2_000), &"j", A, t), t));
    assert_eq!(o.leased_keys(), 1);
}

#[test]
fn an_evicted_entry_released_early_no_longer_holds_writes() {
    let mut o = origin(10_000);
    let a = granted(o.read(at(0), &"k", A, LeaseTerm::from_millis(10_000)));
    assert!(!o.release(&"k", A, a), "no write was waiting");
    assert_eq!(o.begin_write(at(1), &"k"), WriteStart::Ready);
}

#[test]
fn a_late_release_does_not_cancel_a_newer_lease() {
    let mut o = origin(10_000);
    let t = LeaseTerm::from_millis(10_000);
    let old = granted(o.read(at(0), &"k", A, t));
    let new = granted(o.read(at(5), &"k", A, t));
    assert!(!o.release(&"k", A, old));
    assert_eq!(o.holders(at(6), &"k"), vec![A], "the renewed lease stands");
    assert!(
        matches!(o.begin_write(at(7), &"k"), WriteStart::Invalidate { ref holders, .. } if holders == &vec![(A, new)])
    );
}

#[test]
fn lease_ids_of_two_incarnations_differ() {
    let cfg = OriginConfig::new(LeaseTerm::from_millis(1_000), EPS);
    let t = LeaseTerm::from_millis(1_000);
    let mut one: OriginLeases<&str> = OriginLeases::restarted(cfg, at(0), None, 1);
    let mut two: OriginLeases<&str> = OriginLeases::restarted(cfg, at(0), None, 2);
    assert_ne!(
        granted(one.read(at(0), &"k", A, t)),
        granted(two.read(at(0), &"k", A, t))
    );
}

#[test]
fn an_abandoned_write_keeps_unacknowledged_holders() {
    let mut o = origin(10_000);
    let t = LeaseTerm::from_millis(10_000);
    o.read(at(0), &"k", A, t);
    o.begin_write(at(1), &"k");
    o.abandon_write(&"k");
    assert_eq!(o.holders(at(2), &"k"), vec![A]);
    assert!(is_lease(o.read(at(2), &"k", B, t), t));
}
