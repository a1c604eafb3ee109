//! Arbitrary operation sequences against the sessions never panic and never
//! break the invariants the sessions claim (their `check()`s, and the
//! `debug_assert!`s inside them). The same driver backs the cargo-fuzz
//! target `sessions` in `fuzz/`.
#![allow(clippy::unwrap_used)]

mod drive;

use ebb_core::Rng;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_operations_keep_the_sessions_consistent(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        if let Err(why) = drive::run(&bytes) {
            prop_assert!(false, "{why}");
        }
    }
}

/// Seeded inputs the forgery test runs; each is `FORGERY_INPUT_BYTES` long.
const FORGERY_INPUTS: u64 = 256;
const FORGERY_INPUT_BYTES: usize = 1024;

/// What the driver saw in each seeded input, in seed order; an input whose
/// run broke an invariant fails the test, naming its seed.
fn seeded_runs() -> impl Iterator<Item = drive::Seen> {
    (0..FORGERY_INPUTS).map(|seed| {
        let mut rng = Rng::seeded(seed);
        let bytes: Vec<u8> = (0..FORGERY_INPUT_BYTES)
            .map(|_| rng.next_u64() as u8)
            .collect();
        drive::run(&bytes).unwrap_or_else(|why| panic!("input seed {seed}: {why}"))
    })
}

/// Peers forging other clients' ids (handshakes with a secret that does
/// not prove the id, at-most-once requests on connections that never
/// proved it) are refused `Unauthenticated`, and the session they name is
/// left exactly as it was (the driver checks both on every such message).
/// Counts them over seeded inputs, so the test fails if the paths never ran.
#[test]
fn forged_resumes_happen_and_are_refused_without_touching_the_session() {
    let mut total = drive::Forgeries::default();
    for drive::Seen { forgeries: f, .. } in seeded_runs() {
        total.handshakes_refused += f.handshakes_refused;
        total.resumes_refused += f.resumes_refused;
        total.requests_refused += f.requests_refused;
    }
    println!("{FORGERY_INPUTS} inputs: {total:?}");
    assert!(
        total.handshakes_refused > 0 && total.resumes_refused > 0 && total.requests_refused > 0,
        "forged handshakes, forged resumes of live sessions and unproven requests must all have been driven: {total:?}"
    );
}

/// Write progress (`handle_written` on the clients, `handle_progress` on
/// the server) is driven, and it is what puts resends off: a copy still
/// being written when its resend falls due is not sent again. Counts both
/// over seeded inputs, so the test fails if the paths never ran.
#[test]
fn write_progress_is_driven_and_puts_resends_off() {
    let (mut reported, mut postponed) = (0, 0);
    for seen in seeded_runs() {
        reported += seen.writes_reported;
        postponed += seen.retransmits_postponed;
    }
    println!("{FORGERY_INPUTS} inputs: {reported} progress reports, {postponed} resends put off");
    assert!(
        reported > 0 && postponed > 0,
        "progress reports and resends put off for a copy still leaving must both have been driven: {reported}, {postponed}"
    );
}

/// Resizes are driven on proven and unproven connections, within the
/// server's bound and past it, to a server that resizes and to one that
/// does not, and `Resized` frames are sent the wrong way: none runs a
/// method, touches the at-most-once table or leaves the workers outside
/// 1 ..= the bound (the driver checks each as it goes). Counts every kind
/// over seeded inputs, so the test fails if a path never ran.
#[test]
fn resizes_of_every_kind_happen_and_touch_no_call_or_session() {
    let mut total = drive::Resizes::default();
    for drive::Seen { resizes: r, .. } in seeded_runs() {
        total.applied += r.applied;
        total.cut_to_bound += r.cut_to_bound;
        total.not_resizable += r.not_resizable;
        total.unanswered += r.unanswered;
        total.resized_dropped += r.resized_dropped;
    }
    println!("{FORGERY_INPUTS} inputs: {total:?}");
    assert!(
        total.applied > 0
            && total.cut_to_bound > 0
            && total.not_resizable > 0
            && total.unanswered > 0
            && total.resized_dropped > 0,
        "every kind of resize must have been driven: {total:?}"
    );
}

/// Inputs the cargo-fuzz target `sessions` once crashed on, replayed on
/// every run. `sessions-91eeb28e.bin`: a forged ping reopened a forgotten
/// session with a lower floor while one of its calls still ran, so the call
/// ran again and the second completion found the first one's record.
#[test]
fn fuzz_regressions_keep_the_sessions_consistent() {
    let cases: [(&str, &[u8]); 1] = [(
        "sessions-91eeb28e.bin",
        include_bytes!("fuzz_regressions/sessions-91eeb28e.bin"),
    )];
    for (name, bytes) in cases {
        if let Err(why) = drive::run(bytes) {
            panic!("{name}: {why}");
        }
    }
}
