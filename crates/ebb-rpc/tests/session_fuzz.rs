//! Arbitrary operation sequences against the sessions never panic and never
//! break the invariants the sessions claim (their `check()`s, and the
//! `debug_assert!`s inside them). The same driver backs the cargo-fuzz
//! target `sessions` in `fuzz/`.
#![allow(clippy::unwrap_used)]

mod drive;

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
