//! The subscribers of one filter (or of one share group on one filter).
//!
//! Kept as a contiguous slice because that is what a PUBLISH needs: walk every
//! direct subscriber, or pick the n-th member of a share group for round-robin.
//! Almost every filter has one or two subscribers, so lookups by key scan the slice;
//! a filter that many clients share (`broadcast/all`) gets a key→position index once
//! it outgrows [`SCAN_MAX`], so subscribing and unsubscribing stay O(1) there too.

use std::collections::HashMap;
use std::hash::Hash;

/// Largest set looked up by scanning. Past it, a hash index is built.
const SCAN_MAX: usize = 16;

/// Subscribers keyed by `K` (a session, a shard), each with its own value.
pub(crate) struct Members<K, V> {
    /// The subscribers, in no particular order: removal swaps the last one in.
    entries: Vec<(K, V)>,
    /// Position of each key in `entries`, once there are more than [`SCAN_MAX`].
    /// Boxed so the usual index-less set costs one word for it.
    #[expect(
        clippy::box_collection,
        reason = "keeps index-less sets one word smaller"
    )]
    index: Option<Box<HashMap<K, usize>>>,
}

impl<K, V> Default for Members<K, V> {
    fn default() -> Self {
        Members {
            entries: Vec::new(),
            index: None,
        }
    }
}

impl<K: Eq + Hash + Clone, V> Members<K, V> {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn as_slice(&self) -> &[(K, V)] {
        &self.entries
    }

    fn position(&self, key: &K) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| k == key),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.position(key).map(|at| &self.entries[at].1)
    }

    /// Adds or replaces `key`'s value; gives back the value it replaced.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(at) = self.position(&key) {
            return Some(std::mem::replace(&mut self.entries[at].1, value));
        }
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), self.entries.len());
        }
        self.entries.push((key, value));
        if self.index.is_none() && self.entries.len() > SCAN_MAX {
            let index = self
                .entries
                .iter()
                .enumerate()
                .map(|(at, (k, _))| (k.clone(), at));
            self.index = Some(Box::new(index.collect()));
        }
        None
    }

    /// Removes `key`, releasing memory as the set shrinks.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.position(key)?;
        let (_, value) = self.entries.swap_remove(at);
        if let Some(index) = &mut self.index {
            index.remove(key);
            if let Some((moved, _)) = self.entries.get(at) {
                index.insert(moved.clone(), at);
            }
            // Drop the index only well below the threshold, so a set that hovers
            // around it does not rebuild the index on every change.
            if self.entries.len() <= SCAN_MAX / 2 {
                self.index = None;
            } else if index.len() <= index.capacity() / 4 {
                index.shrink_to_fit();
            }
        }
        if self.entries.len() <= self.entries.capacity() / 4 {
            self.entries.shrink_to_fit();
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_stays_consistent_across_growth_and_removal() {
        let mut m: Members<u32, u32> = Members::default();
        for k in 0..100 {
            assert_eq!(m.insert(k, k), None);
        }
        assert!(m.index.is_some());
        assert_eq!(m.insert(7, 70), Some(7));
        for k in (0..100).step_by(3) {
            assert_eq!(m.remove(&k), Some(if k == 7 { 70 } else { k }));
            assert_eq!(m.remove(&k), None);
        }
        for k in 0..100 {
            let want = (k % 3 != 0).then_some(if k == 7 { 70 } else { k });
            assert_eq!(m.get(&k).copied(), want, "key {k}");
        }
        for k in 0..100 {
            m.remove(&k);
        }
        assert!(m.is_empty());
        assert!(m.index.is_none());
        assert_eq!(m.entries.capacity(), 0);
    }
}
