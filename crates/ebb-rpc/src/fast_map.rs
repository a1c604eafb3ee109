//! The hash map of the per-call path. A call looks up its connection, its
//! client's session and its reply route about a dozen times between the
//! read and the write; with std's SipHash-1-3 that hashing was about an
//! eighth of a call's instructions. foldhash is several times cheaper on
//! the small integer keys used here (connection ids, client ids, sequence
//! numbers, addresses) and still draws a random seed per process and per
//! map, so a client that picks its own client ids cannot aim collisions at a
//! server's tables without knowing the seed.

/// A `HashMap` with foldhash's seeded hasher; create it with `default()`.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
