//! The table's bounds and eviction order, checked on the table alone.
#![allow(clippy::unwrap_used)]
use super::*;
use crate::wire::{Outcome, Reply, Seq};

const EXP: Nanos = Nanos::from_secs(10);
const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn at_secs(s: u64) -> Instant {
    Instant::EPOCH + Nanos::from_secs(s)
}

#[test]
fn full_table_evicts_only_an_expired_session_longest_idle_first() {
    let mut t = ReplyTable::new(2, 4, EXP);
    t.open(ClientId(1), Seq(1), PEER, at_secs(0)).unwrap();
    t.open(ClientId(2), Seq(1), PEER, at_secs(1)).unwrap();
    assert_eq!(
        t.open(ClientId(3), Seq(1), PEER, at_secs(5)).err(),
        Some(TableFull::Total { max_clients: 2 })
    );
    t.touch(ClientId(1), at_secs(2));
    // Client 2 (idle since 1 s) is now the longest idle; expired at 11 s.
    t.open(ClientId(3), Seq(1), PEER, at_secs(11)).unwrap();
    assert!(t.get_mut(ClientId(2)).is_none());
    assert!(t.get_mut(ClientId(1)).is_some());
    assert_eq!(t.len(), 2);
}

/// A call within `IDLE_INDEX_STEP` of the last leaves the session's idle
/// key behind; a key that says expired while the session was active since
/// is moved up, not evicted, and the longest idle session still goes
/// first.
#[test]
fn a_lagging_idle_key_never_evicts_a_session_active_since() {
    let step = IDLE_INDEX_STEP;
    let mut t = ReplyTable::new(2, 4, EXP);
    t.open(ClientId(1), Seq(1), PEER, at_secs(0)).unwrap();
    t.open(ClientId(2), Seq(1), PEER, at_secs(1)).unwrap();
    // Client 1 active again just within the step: its key stays at 0 s.
    let active = at_secs(0) + Nanos(step.0 - 1);
    t.touch(ClientId(1), active);
    assert_eq!(
        t.get(ClientId(1)).unwrap().indexed_at,
        at_secs(0),
        "the key lags"
    );
    t.check().unwrap();
    // At 10 s + half a step client 1's key says expired, its activity
    // does not: the table is full and nobody is evicted.
    let now = at_secs(10) + Nanos(step.0 / 2);
    assert_eq!(
        t.open(ClientId(3), Seq(1), PEER, now).err(),
        Some(TableFull::Total { max_clients: 2 })
    );
    assert_eq!(
        t.get(ClientId(1)).unwrap().indexed_at,
        active,
        "the key was moved up"
    );
    t.check().unwrap();
    // At 11 s both have expired; client 1 (idle since just under 0.1 s)
    // is the longest idle, and goes first.
    t.open(ClientId(3), Seq(1), PEER, at_secs(11)).unwrap();
    assert!(t.get(ClientId(1)).is_none());
    assert!(t.get(ClientId(2)).is_some());
    t.check().unwrap();
}

#[test]
fn acknowledge_below_prunes_saved_entries() {
    let mut t = ReplyTable::new(4, 4, EXP);
    let mut s = t.open(ClientId(1), Seq(1), PEER, Instant::EPOCH).unwrap();
    for seq in 1..=5 {
        s.entries.insert(Seq(seq), Entry::Running);
    }
    s.acknowledge_below(Seq(4));
    assert_eq!(s.entries.keys().collect::<Vec<_>>(), vec![Seq(4), Seq(5)]);
    s.acknowledge_below(Seq(2));
    assert_eq!(s.ack_below, Seq(4), "ack_below never goes back");
}

fn reply(seq: u64, payload: &'static [u8]) -> Reply {
    Reply {
        client: ClientId(0),
        seq: Seq(seq),
        incarnation: crate::wire::Incarnation::at_least_one(1),
        method: 0,
        idempotent: false,
        json: false,
        outcome: Outcome::Ok,
        load: 0,
        service_time: ebb_core::Nanos::ZERO,
        payload: bytes::Bytes::from_static(payload),
    }
}

#[test]
fn saved_bytes_stay_within_the_total_over_all_sessions_and_come_back() {
    let mut t = ReplyTable::new(4, 4, EXP).with_max_saved_bytes_total(10);
    let per_session = 8;
    let mut a = t.open(ClientId(1), Seq(1), PEER, at_secs(0)).unwrap();
    assert_eq!(
        a.save(Seq(1), reply(1, b"123456"), per_session).kept(),
        Ok(())
    );
    let mut b = t.open(ClientId(2), Seq(1), PEER, at_secs(0)).unwrap();
    // Within its own session's 8 bytes, but 6 + 6 is over the 10 in total.
    assert_eq!(
        b.save(Seq(1), reply(1, b"abcdef"), per_session).kept(),
        Err(NotKept::Total)
    );
    assert!(matches!(
        b.entries.get(&Seq(1)),
        Some(Entry::Done(r)) if r.outcome == Outcome::OutcomeUnknown
    ));
    assert_eq!(
        b.save(Seq(2), reply(2, b"abcd"), per_session).kept(),
        Ok(())
    );
    assert_eq!(t.saved_bytes(), 10);
    t.check().unwrap();
    // Acknowledging frees bytes in the total too; so does expiry.
    t.touch(ClientId(1), at_secs(1))
        .unwrap()
        .acknowledge_below(Seq(2));
    assert_eq!(t.saved_bytes(), 4);
    assert_eq!(t.expire_idle(at_secs(20)), 2);
    assert_eq!(t.saved_bytes(), 0);
    t.check().unwrap();
}

#[test]
fn reopening_keeps_the_original_floor() {
    let mut t = ReplyTable::new(4, 4, EXP);
    t.open(ClientId(1), Seq(3), PEER, Instant::EPOCH).unwrap();
    assert_eq!(
        t.open(ClientId(1), Seq(9), PEER, Instant::EPOCH + Nanos(5))
            .unwrap()
            .floor,
        Seq(3)
    );
}

#[test]
fn one_peer_cannot_take_more_than_its_share_of_sessions() {
    let mut t = ReplyTable::new(4, 2, EXP);
    t.open(ClientId(1), Seq(1), PEER, at_secs(0)).unwrap();
    t.open(ClientId(2), Seq(1), PEER, at_secs(0)).unwrap();
    assert_eq!(
        t.open(ClientId(3), Seq(1), PEER, at_secs(0)).err(),
        Some(TableFull::Peer { max_per_peer: 2 })
    );
    let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
    t.open(ClientId(3), Seq(1), other, at_secs(0)).unwrap();
    assert_eq!(t.expire_idle(at_secs(20)), 3);
    assert_eq!(t.opened_by(PEER), 0);
    t.check().unwrap();
}

#[test]
fn expire_idle_drops_exactly_the_expired_sessions() {
    let mut t = ReplyTable::new(4, 4, EXP);
    t.open(ClientId(1), Seq(1), PEER, at_secs(0)).unwrap();
    t.open(ClientId(2), Seq(1), PEER, at_secs(5)).unwrap();
    assert_eq!(t.expire_idle(at_secs(12)), 1);
    assert!(t.get_mut(ClientId(2)).is_some());
}
