/// The shard that owns `key` (a client id, say) among `shards` shards.
///
/// FNV-1a: stable across processes and releases, so every node and every shard
/// agrees on the owner without talking to each other.
pub fn shard_for(key: &[u8], shards: usize) -> usize {
    assert!(shards > 0, "shard_for needs at least one shard");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % shards as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::shard_for;

    #[test]
    fn stable_and_in_range() {
        assert_eq!(shard_for(b"client-1", 1), 0);
        assert_eq!(shard_for(b"client-1", 4), shard_for(b"client-1", 4));
        let mut seen = [0usize; 4];
        for i in 0..1000 {
            seen[shard_for(format!("c{i}").as_bytes(), 4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 150), "skewed: {seen:?}");
    }
}
