//! The subscribers of one filter (or of one share group on one filter).
//!
//! Kept as a contiguous slice because that is what a PUBLISH needs: walk every
//! direct subscriber, or pick the n-th member of a share group for round-robin.
//! Almost every filter has one or two subscribers, so lookups by key scan the slice;
//! a filter that many clients share (`broadcast/all`) gets a key→position index once
//! it outgrows [`SCAN_MAX`], so subscribing and unsubscribing stay O(1) there too.
//! A lone subscriber is stored inline, which saves a PUBLISH a cache miss.

use crate::hash::HashMap;
use std::hash::Hash;

/// Largest set looked up by scanning. Past it, a hash index is built.
const SCAN_MAX: usize = 16;

/// Subscribers keyed by `K` (a session, a shard), each with its own value.
pub(crate) struct Members<K, V> {
    /// The subscribers, in no particular order: removal swaps the last one in.
    entries: Entries<(K, V)>,
    /// Position of each key in `entries`, once there are more than [`SCAN_MAX`].
    /// Boxed so the usual index-less set costs one word for it.
    index: Option<Box<HashMap<K, usize>>>,
}

impl<K, V> Default for Members<K, V> {
    fn default() -> Self {
        Members {
            entries: Entries::default(),
            index: None,
        }
    }
}

impl<K: Eq + Hash + Clone, V> Members<K, V> {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.as_slice().is_empty()
    }

    pub(crate) fn as_slice(&self) -> &[(K, V)] {
        self.entries.as_slice()
    }

    fn position(&self, key: &K) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.as_slice().iter().position(|(k, _)| k == key),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.position(key).map(|at| &self.as_slice()[at].1)
    }

    /// Adds or replaces `key`'s value; gives back the value it replaced.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(at) = self.position(&key) {
            return Some(std::mem::replace(
                &mut self.entries.as_mut_slice()[at].1,
                value,
            ));
        }
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), self.entries.as_slice().len());
        }
        self.entries.push((key, value));
        if self.index.is_none() && self.as_slice().len() > SCAN_MAX {
            let index = self
                .as_slice()
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
            if let Some((moved, _)) = self.entries.as_slice().get(at) {
                index.insert(moved.clone(), at);
            }
            // Drop the index only well below the threshold, so a set that hovers
            // around it does not rebuild the index on every change.
            if self.entries.as_slice().len() <= SCAN_MAX / 2 {
                self.index = None;
            } else if index.len() <= index.capacity() / 4 {
                index.shrink_to_fit();
            }
        }
        Some(value)
    }
}

/// A sequence stored inline while it has one item, in a vector otherwise.
enum Entries<T> {
    One(T),
    /// Empty, or two items and more.
    Many(Vec<T>),
}

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Entries::Many(Vec::new())
    }
}

impl<T> Entries<T> {
    fn as_slice(&self) -> &[T] {
        match self {
            Entries::One(item) => std::slice::from_ref(item),
            Entries::Many(items) => items,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            Entries::One(item) => std::slice::from_mut(item),
            Entries::Many(items) => items,
        }
    }

    fn push(&mut self, item: T) {
        *self = match std::mem::take(self) {
            Entries::One(first) => Entries::Many(vec![first, item]),
            Entries::Many(items) if items.is_empty() => Entries::One(item),
            Entries::Many(mut items) => {
                items.push(item);
                Entries::Many(items)
            }
        };
    }

    /// Removes the item at `at` (which must exist), moving the last one into its
    /// place, and gives memory back as the sequence shrinks.
    fn swap_remove(&mut self, at: usize) -> T {
        let (removed, rest) = match std::mem::take(self) {
            Entries::One(item) => (item, Entries::default()),
            Entries::Many(mut items) => {
                let removed = items.swap_remove(at);
                let rest = if items.len() == 1 {
                    items.pop().map_or_else(Entries::default, Entries::One)
                } else {
                    if items.len() <= items.capacity() / 4 {
                        items.shrink_to_fit();
                    }
                    Entries::Many(items)
                };
                (removed, rest)
            }
        };
        *self = rest;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_is_inline() {
        let mut m: Members<u32, u32> = Members::default();
        m.insert(1, 10);
        assert!(matches!(m.entries, Entries::One(_)));
        m.insert(2, 20);
        assert!(matches!(m.entries, Entries::Many(_)));
        assert_eq!(m.as_slice(), [(1, 10), (2, 20)]);
        assert_eq!(m.remove(&1), Some(10));
        assert!(matches!(m.entries, Entries::One((2, 20))));
        assert_eq!(m.insert(2, 21), Some(20));
        assert_eq!(m.remove(&2), Some(21));
        assert!(m.is_empty());
        assert!(matches!(&m.entries, Entries::Many(v) if v.capacity() == 0));
    }

    /// The index exists past `SCAN_MAX` and goes only at half of it, so a set
    /// hovering around the threshold does not rebuild it on every change.
    #[test]
    fn index_is_built_past_scan_max_and_dropped_at_half() {
        let mut m: Members<usize, ()> = Members::default();
        for k in 0..SCAN_MAX {
            m.insert(k, ());
        }
        assert!(m.index.is_none(), "{SCAN_MAX} members are scanned");
        m.insert(SCAN_MAX, ());
        assert!(m.index.is_some());
        for k in (SCAN_MAX / 2..=SCAN_MAX).rev() {
            assert_eq!(m.remove(&k), Some(()));
            let left = m.as_slice().len();
            assert_eq!(m.index.is_some(), left > SCAN_MAX / 2, "{left} left");
        }
        for k in 0..SCAN_MAX / 2 {
            assert_eq!(m.get(&k), Some(&()), "key {k}");
        }
    }

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
        assert!(matches!(&m.entries, Entries::Many(v) if v.capacity() == 0));
    }
}
