//! Slots by topic filter: a hash table for filters without wildcards, a level trie
//! for the rest.
//!
//! Most subscriptions in a fleet name one exact topic (`devices/<id>/events`).
//! Walking the trie for them costs a lookup and a cache miss per level; one hash of
//! the whole topic costs one miss. So literal filters live in a single table keyed
//! by the full filter, and the trie holds only filters with `+` or `#`, which keeps
//! it small and its hot levels in cache. A topic is looked up in both.

use crate::hash::HashMap;

use super::level_trie::{LevelTrie, Slot};

/// A slot `S` per stored filter (the matched part, without `$share/<group>/`).
pub(crate) struct FilterTable<S> {
    /// Filters without wildcards, by their full text. The default, randomly keyed
    /// hasher: topics come from clients, who must not be able to pick collisions.
    literal: HashMap<Box<str>, S>,
    /// Filters with a `+` or `#` level.
    wild: LevelTrie<S>,
}

fn has_wildcards(filter: &str) -> bool {
    memchr::memchr2(b'+', b'#', filter.as_bytes()).is_some()
}

impl<S> Default for FilterTable<S> {
    fn default() -> Self {
        FilterTable {
            literal: HashMap::default(),
            wild: LevelTrie::default(),
        }
    }
}

impl<S> FilterTable<S> {
    /// Trie nodes in use, for memory metrics; zero once no wildcard filter is left.
    pub(crate) fn node_count(&self) -> usize {
        self.wild.node_count()
    }
}

impl<S: Slot> FilterTable<S> {
    /// The slot of `filter`, if it has one.
    pub(crate) fn get(&self, filter: &str) -> Option<&S> {
        if has_wildcards(filter) {
            self.wild.get(filter)
        } else {
            self.literal.get(filter)
        }
    }

    /// The slot of `filter`, created empty if needed. The caller must leave
    /// something in it: an empty slot is only removed by [`FilterTable::update`].
    pub(crate) fn get_or_create(&mut self, filter: &str) -> &mut S {
        if has_wildcards(filter) {
            return self.wild.get_or_create(filter);
        }
        self.literal.entry(filter.into()).or_default()
    }

    /// Applies `change` to the slot of `filter`, if it has one, and removes the
    /// slot if that leaves it empty.
    pub(crate) fn update<R>(
        &mut self,
        filter: &str,
        change: impl FnOnce(&mut S) -> R,
    ) -> Option<R> {
        if has_wildcards(filter) {
            return self.wild.update(filter, change);
        }
        let slot = self.literal.get_mut(filter)?;
        let result = change(slot);
        if slot.is_empty() {
            self.literal.remove(filter);
            // Give memory back after churn, but not on every removal.
            if self.literal.len() <= self.literal.capacity() / 4 {
                self.literal.shrink_to_fit();
            }
        }
        Some(result)
    }

    /// Calls `visit` with the slot of every stored filter that matches `topic`,
    /// following the same rules as [`LevelTrie::for_each_match`].
    pub(crate) fn for_each_match<'t>(&'t self, topic: &str, mut visit: impl FnMut(&'t S)) {
        if let Some(slot) = self.literal.get(topic) {
            visit(slot);
        }
        if !self.wild.is_empty() {
            self.wild.for_each_match(topic, visit);
        }
    }

    /// Checks the trie's invariants and that no empty literal slot was left behind.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        self.wild.check_invariants();
        for (filter, slot) in &self.literal {
            assert!(!has_wildcards(filter), "{filter:?} in the literal table");
            assert!(!slot.is_empty(), "empty slot left for {filter:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_filters_take_no_trie_nodes() {
        let mut table: FilterTable<u32> = FilterTable::default();
        *table.get_or_create("a/b/c") += 1;
        *table.get_or_create("$SYS/x") += 1;
        assert_eq!(table.node_count(), 0);
        *table.get_or_create("a/+/c") += 1;
        assert_eq!(table.node_count(), 3);
        let mut hits = Vec::new();
        table.for_each_match("a/b/c", |n| hits.push(*n));
        assert_eq!(hits, [1, 1]);
        assert_eq!(table.update("a/b/c", std::mem::take), Some(1));
        assert_eq!(table.get("a/b/c"), None);
        assert_eq!(table.update("a/b/c", |n| *n), None);
        assert_eq!(table.get("$SYS/x"), Some(&1));
        table.check_invariants();
    }
}
