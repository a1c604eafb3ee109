//! The ingress's bounds and defaults.

/// Deadline of a request that sends no `ebb-deadline-ms` header.
pub const DEFAULT_DEADLINE_MS: u64 = 1_000;
/// The longest deadline a request may ask for.
pub const MAX_DEADLINE_MS: u64 = 60_000;
/// Largest request body accepted; larger ones get 413 before being read.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Requests handled at once; past it, 503 `overloaded` without reading the
/// body.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;
/// Connections served at once; further ones wait in the kernel's backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Wait suggested to a request refused because the ingress was full.
pub const FULL_RETRY_AFTER_MS: u64 = 100;

/// The header a caller sets to bound how long it will wait, in milliseconds.
pub const DEADLINE_HEADER: &str = "ebb-deadline-ms";

/// Bounds and defaults of one HTTP ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    pub default_deadline_ms: u64,
    pub max_deadline_ms: u64,
    pub max_body_bytes: usize,
    pub max_in_flight: usize,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            default_deadline_ms: DEFAULT_DEADLINE_MS,
            max_deadline_ms: MAX_DEADLINE_MS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}
