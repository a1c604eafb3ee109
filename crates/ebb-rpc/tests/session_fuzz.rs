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
