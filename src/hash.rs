//! The hash maps of the broker's hot path.
//!
//! std's maps with aHash: like std's SipHash it is keyed at random per process,
//! so peers who choose client ids and topics cannot flood a table with
//! collisions, but it is several times faster on the short keys routing hashes
//! a few times per message (topics, client ids, connection ids).

use std::hash::BuildHasher;
use std::sync::OnceLock;

pub type HashMap<K, V> = std::collections::HashMap<K, V, Keyed>;
pub type HashSet<K> = std::collections::HashSet<K, Keyed>;

/// aHash with keys drawn at random once per process. Zero-sized: with
/// `ahash::RandomState` every map carries its own 32 bytes of keys, and each
/// session and connection holds a few maps, most of them empty (issue 15,
/// memory per idle connection).
#[derive(Debug, Clone, Copy, Default)]
pub struct Keyed;

impl BuildHasher for Keyed {
    type Hasher = ahash::AHasher;

    fn build_hasher(&self) -> ahash::AHasher {
        static KEYS: OnceLock<ahash::RandomState> = OnceLock::new();
        KEYS.get_or_init(ahash::RandomState::new).build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_carry_no_keys_and_hash_alike_within_a_process() {
        // An empty table is its control pointer, bucket mask, items and
        // growth left: nothing more.
        assert_eq!(
            std::mem::size_of::<HashMap<u64, u64>>(),
            4 * std::mem::size_of::<usize>()
        );
        assert_eq!(Keyed.hash_one("client-1"), Keyed.hash_one("client-1"));
        assert_ne!(Keyed.hash_one("client-1"), Keyed.hash_one("client-2"));
    }
}
