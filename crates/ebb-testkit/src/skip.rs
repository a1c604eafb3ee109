//! Skips that say why, by test name, and that fail where nothing may be
//! skipped.
//!
//! cargo hides a passing test's stderr, so a test that returns early looks
//! like one that ran. Outside CI the reason is printed (see it with
//! `cargo test -- --nocapture`); with `CI=true`, where `.ci/run` has
//! installed everything the tests need, a skip is a failure.

/// Whether this run is CI (`CI=true`), where no test may skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports that `test` cannot run here because of `reason`: prints
/// `SKIPPED test: reason` outside CI, panics in CI. The caller returns
/// right after.
///
/// # Panics
/// In CI, always: that is the point.
pub fn skip_or_fail(test: &str, reason: &str) {
    assert!(
        !in_ci(),
        "{test} did not run, and in CI every test must: {reason}"
    );
    eprintln!("SKIPPED {test}: {reason}");
}

/// Whether this process runs as root (containers and VM kernels need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Why containers cannot run here, if they cannot: they need root, PID
/// namespaces and busybox-static.
pub fn containers_unavailable() -> Option<String> {
    if !is_root() {
        return Some("containers need root".into());
    }
    if !std::path::Path::new("/proc/self/ns/pid").exists() {
        return Some("no namespace support in /proc".into());
    }
    if !std::path::Path::new("/bin/busybox").exists() {
        return Some("/bin/busybox missing (install busybox-static)".into());
    }
    None
}
