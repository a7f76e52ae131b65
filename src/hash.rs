//! The hash maps of the broker's hot path.
//!
//! std's maps with aHash: like std's SipHash it is keyed at random per process,
//! so peers who choose client ids and topics cannot flood a table with
//! collisions, but it is several times faster on the short keys routing hashes
//! a few times per message (topics, client ids, connection ids).

pub type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
pub type HashSet<K> = std::collections::HashSet<K, ahash::RandomState>;
