//! Feeds arbitrary operation sequences into a `ServerSession` and two
//! `ClientSession`s (the driver is the one the proptest in
//! `crates/ebb-rpc/tests/session_fuzz.rs` uses): no panic, no broken
//! invariant after any step.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/ebb-rpc/tests/drive/mod.rs"]
mod drive;

fuzz_target!(|data: &[u8]| {
    if let Err(why) = drive::run(data) {
        panic!("{why}");
    }
});
