//! Compile-time behaviour of `#[service]`: valid services compile and run;
//! each kind of bad trait fails with the messages pinned in the `.stderr`
//! files next to it (regenerate with `TRYBUILD=overwrite` and review).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
    t.compile_fail("tests/compile_fail/*.rs");
}
