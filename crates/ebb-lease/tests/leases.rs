//! The origin and node caches in one process (RPC through `LocalTransport`):
//! leases served locally, invalidation by long-poll, silent holders, the
//! recovery gate, evictions, check-on-use, errors.

use ebb_core::Nanos;
use ebb_lease::api::{OriginClient, OriginError, OriginServer};
use ebb_lease::cache::{CacheError, CacheSettings, LeaseCache};
use ebb_lease::origin::{OriginService, OriginSettings};
use ebb_policy::lease::LeaseTerm;
use ebb_rpc::service::LocalTransport;
use std::sync::atomic::Ordering;

type Cache = LeaseCache<LocalTransport<OriginServer<OriginService>>>;

fn settings(term_ms: u64) -> OriginSettings {
    OriginSettings {
        max_term: LeaseTerm::from_millis(term_ms),
        epsilon: Nanos::from_millis(20),
        holder_timeout: Nanos::from_secs(3),
        ..OriginSettings::default()
    }
}

fn cache(origin: &OriginService, holder: u64, term_ms: u64) -> Cache {
    let client = OriginClient::new(LocalTransport::new(OriginServer::new(origin.clone())));
    LeaseCache::new(
        client,
        holder,
        CacheSettings {
            term: LeaseTerm::from_millis(term_ms),
            epsilon: Nanos::from_millis(20),
            max_bytes: 1 << 20,
            poll_wait_ms: 200,
        },
    )
}

#[tokio::test]
async fn a_leased_read_is_served_locally_until_another_node_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (origin, opened) = OriginService::open(dir.path(), settings(60_000)).expect("open");
    assert_eq!(
        opened.writes_wait, None,
        "a fresh store has nothing to wait out"
    );
    let a = cache(&origin, 1, 60_000);
    let b = cache(&origin, 2, 60_000);
    let poller = tokio::spawn(a.clone().run_poller());
    assert_eq!(b.put("k", b"one".to_vec()).await.expect("put"), 1);
    assert_eq!(a.get("k").await.expect("get"), Some(b"one".to_vec()));
    assert_eq!(a.get("k").await.expect("get"), Some(b"one".to_vec()));
    assert_eq!(a.stats().served_locally.load(Ordering::Relaxed), 1);
    assert_eq!(origin.lease_holders("k"), 1);
    // The write completes only after `a` obeyed the invalidation.
    assert_eq!(b.put("k", b"two".to_vec()).await.expect("put"), 2);
    assert_eq!(a.stats().invalidations.load(Ordering::Relaxed), 1);
    assert_eq!(a.get("k").await.expect("get"), Some(b"two".to_vec()));
    poller.abort();
}

#[tokio::test]
async fn a_silent_holder_delays_a_write_only_until_its_term_ends() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (origin, _) = OriginService::open(dir.path(), settings(300)).expect("open");
    let silent = cache(&origin, 1, 300); // no poller: never acknowledges
    let writer = cache(&origin, 2, 300);
    writer.put("k", b"one".to_vec()).await.expect("put");
    silent.get("k").await.expect("get");
    assert_eq!(origin.lease_holders("k"), 1);
    assert_eq!(writer.put("k", b"two".to_vec()).await.expect("put"), 2);
    assert_eq!(
        silent.stats().invalidations.load(Ordering::Relaxed),
        0,
        "it never heard"
    );
    assert_eq!(origin.lease_holders("k"), 0, "the lease ran out instead");
}

#[tokio::test]
async fn check_on_use_validates_every_read_by_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (origin, _) = OriginService::open(dir.path(), settings(0)).expect("open");
    let a = cache(&origin, 1, 10_000);
    a.put("k", vec![7; 100]).await.expect("put");
    for _ in 0..3 {
        assert_eq!(a.get("k").await.expect("get"), Some(vec![7; 100]));
    }
    let s = a.stats();
    assert_eq!(s.served_locally.load(Ordering::Relaxed), 0);
    assert_eq!(s.fetched.load(Ordering::Relaxed), 1);
    assert_eq!(s.validated_unchanged.load(Ordering::Relaxed), 2);
    assert_eq!(origin.lease_holders("k"), 0);
}

#[tokio::test]
async fn a_restarted_origin_waits_out_its_persisted_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let (origin, _) = OriginService::open(dir.path(), settings(400)).expect("open");
        let a = cache(&origin, 1, 400);
        a.put("k", b"one".to_vec()).await.expect("put");
        a.get("k").await.expect("get");
    }
    // Restarted with a shorter term: the old, longer bound still governs.
    let (origin, opened) = OriginService::open(dir.path(), settings(50)).expect("reopen");
    assert_eq!(opened.previous_bound, Some(LeaseTerm::from_millis(400)));
    let wait = opened.writes_wait.expect("writes wait after a restart");
    assert!(
        wait > Nanos::from_millis(400) && wait <= Nanos::from_millis(420),
        "{wait}"
    );
    assert_eq!(opened.incarnation, 2);
    let b = cache(&origin, 2, 50);
    assert_eq!(
        b.get("k").await.expect("get"),
        Some(b"one".to_vec()),
        "reads go on"
    );
    assert_eq!(b.put("k", b"two".to_vec()).await.expect("put"), 2);
}

#[tokio::test]
async fn evicting_a_leased_entry_tells_the_origin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (origin, _) = OriginService::open(dir.path(), settings(60_000)).expect("open");
    let client = OriginClient::new(LocalTransport::new(OriginServer::new(origin.clone())));
    let small = LeaseCache::new(
        client,
        1,
        CacheSettings {
            term: LeaseTerm::from_millis(60_000),
            epsilon: Nanos::from_millis(20),
            max_bytes: 16 * 1024,
            poll_wait_ms: 10,
        },
    );
    for i in 0..40 {
        small
            .put(&format!("k{i}"), vec![1; 1_000])
            .await
            .expect("put");
        small.get(&format!("k{i}")).await.expect("get");
    }
    assert!(
        small.len() < 40,
        "the byte bound holds: {} entries",
        small.len()
    );
    let reported = small.stats().evictions_reported.load(Ordering::Relaxed);
    assert!(reported > 0, "no eviction was reported");
    let leased_before: usize = (0..40)
        .map(|i| origin.lease_holders(&format!("k{i}")))
        .sum();
    small.poll_once().await.expect("poll");
    let leased_after: usize = (0..40)
        .map(|i| origin.lease_holders(&format!("k{i}")))
        .sum();
    assert_eq!(leased_before - leased_after, reported as usize);
}

#[tokio::test]
async fn conditional_writes_and_bounds_fail_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (origin, _) = OriginService::open(dir.path(), settings(1_000)).expect("open");
    let a = cache(&origin, 1, 1_000);
    assert_eq!(
        a.put_if_version("k", b"x".to_vec(), 0).await.expect("at 0"),
        1
    );
    match a.put_if_version("k", b"y".to_vec(), 0).await {
        Err(CacheError::Origin(OriginError::VersionMismatch {
            expected: 0,
            current: 1,
        })) => {}
        other => panic!("expected a version mismatch, got {other:?}"),
    }
    let long = "k".repeat(ebb_lease::MAX_KEY_BYTES + 1);
    match a.get(&long).await {
        Err(CacheError::Origin(OriginError::KeyTooLong { .. })) => {}
        other => panic!("expected KeyTooLong, got {other:?}"),
    }
    let big = vec![0; ebb_lease::MAX_VALUE_BYTES + 1];
    let err = a.put("k", big).await.expect_err("too large");
    assert!(err.to_string().contains("at most 1048576"), "{err}");
}
