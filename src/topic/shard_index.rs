//! The shard index: which shards want a topic?
//!
//! A PUBLISH is matched against the local subscription trie, then sent once to
//! every other shard with a matching subscriber. Asking every shard would cost a
//! round trip per publish; instead each shard keeps a copy of the global
//! filter→shards table, updated by subscribe/unsubscribe messages, and answers
//! with a bitmask from it. The table stores, per filter, the mask of shards already
//! ORed together, so a lookup touches one word per matching filter however many
//! shards or subscribers there are.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

use super::filter_table::FilterTable;
use super::level_trie::Slot;
use super::{TopicFilter, TopicName};

/// Shards a [`ShardMask`] can name: one bit each in a `u64`.
pub const MAX_SHARDS: usize = 64;

/// A set of shards, one bit per shard index.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ShardMask(u64);

impl ShardMask {
    /// No shard.
    pub const EMPTY: ShardMask = ShardMask(0);

    pub const fn from_bits(bits: u64) -> Self {
        ShardMask(bits)
    }

    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The set holding only `shard`.
    ///
    /// # Panics
    /// If `shard` is not below [`MAX_SHARDS`]; the shard count is checked when the
    /// config is loaded, so this is a bug, not bad input.
    pub fn single(shard: usize) -> Self {
        assert!(
            shard < MAX_SHARDS,
            "shard {shard} out of range: at most {MAX_SHARDS} shards"
        );
        ShardMask(1 << shard)
    }

    pub fn contains(self, shard: usize) -> bool {
        shard < MAX_SHARDS && self.0 & (1 << shard) != 0
    }

    /// This set without `shard`: the shards to forward to, besides the local one.
    pub fn without(self, shard: usize) -> Self {
        if shard < MAX_SHARDS {
            ShardMask(self.0 & !(1 << shard))
        } else {
            self
        }
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The shard indices in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            let shard = bits.trailing_zeros() as usize;
            (bits != 0).then(|| {
                bits &= bits - 1;
                shard
            })
        })
    }
}

impl BitOr for ShardMask {
    type Output = ShardMask;
    fn bitor(self, rhs: ShardMask) -> ShardMask {
        ShardMask(self.0 | rhs.0)
    }
}

impl BitOrAssign for ShardMask {
    fn bitor_assign(&mut self, rhs: ShardMask) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for ShardMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Which shards have subscribers for which filters, counted per (filter, shard).
///
/// `$share/<group>/<filter>` counts separately per group, so removing a shared
/// filter never takes a reference that a plain one (or another group) added. A
/// lookup reports shards holding members of any matching share group too: the
/// member that gets the message may live on any of them.
#[derive(Default)]
pub struct ShardIndex {
    filters: FilterTable<ShardRefs>,
    /// (filter, shard) pairs with a reference.
    len: usize,
}

/// The shards referencing one filter (the part after any `$share/<group>/`).
#[derive(Default)]
struct ShardRefs {
    /// Every shard in `refs`, ORed: what a lookup reads.
    mask: ShardMask,
    /// Reference counts; at most a few entries per filter in practice, so a scan.
    refs: Vec<ShardRef>,
}

struct ShardRef {
    /// The share group of the filter, so plain and shared references stay apart.
    group: Option<Box<str>>,
    shard: u8,
    /// Never zero: an entry goes when its last reference does.
    count: u32,
}

impl Slot for ShardRefs {
    fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }
}

impl ShardRefs {
    fn position(&self, group: Option<&str>, shard: usize) -> Option<usize> {
        self.refs
            .iter()
            .position(|r| usize::from(r.shard) == shard && r.group.as_deref() == group)
    }
}

impl ShardIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// (filter, shard) pairs with at least one reference.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nodes of the wildcard trie in use, for memory metrics; zero once no
    /// wildcard filter is left.
    pub fn node_count(&self) -> usize {
        self.filters.node_count()
    }

    /// Adds a reference from `shard` to `filter`; gives the new count.
    ///
    /// # Panics
    /// If `shard` is not below [`MAX_SHARDS`] (see [`ShardMask::single`]).
    pub fn add(&mut self, filter: &TopicFilter, shard: usize) -> u32 {
        let bit = ShardMask::single(shard);
        let group = filter.share_group();
        let refs = self.filters.get_or_create(filter.filter());
        if let Some(at) = refs.position(group, shard) {
            let r = &mut refs.refs[at];
            // Four billion subscriptions to one filter on one shard cannot exist;
            // saturate rather than wrap to a count that would drop the shard.
            r.count = r.count.saturating_add(1);
            return r.count;
        }
        refs.refs.push(ShardRef {
            group: group.map(Box::from),
            // Cannot truncate: `single` checked `shard < 64`.
            shard: shard as u8,
            count: 1,
        });
        refs.mask |= bit;
        self.len += 1;
        1
    }

    /// Drops a reference from `shard` to `filter`; gives the count left, or `None`
    /// if there was none to drop (a repeated unsubscribe, say), changing nothing.
    pub fn remove(&mut self, filter: &TopicFilter, shard: usize) -> Option<u32> {
        let group = filter.share_group();
        let left = self.filters.update(filter.filter(), |refs| {
            let at = refs.position(group, shard)?;
            let r = &mut refs.refs[at];
            r.count -= 1;
            let left = r.count;
            if left == 0 {
                refs.refs.swap_remove(at);
                refs.refs.shrink_to_fit();
                refs.mask = refs.refs.iter().fold(ShardMask::EMPTY, |mask, r| {
                    mask | ShardMask::single(usize::from(r.shard))
                });
            }
            Some(left)
        });
        let left = left.flatten();
        if left == Some(0) {
            self.len -= 1;
        }
        left
    }

    /// References from `shard` to `filter`.
    pub fn count(&self, filter: &TopicFilter, shard: usize) -> u32 {
        self.filters
            .get(filter.filter())
            .and_then(|refs| {
                refs.position(filter.share_group(), shard)
                    .map(|at| refs.refs[at].count)
            })
            .unwrap_or(0)
    }

    /// The shards with a subscriber (plain, or member of a share group) whose
    /// filter matches `topic`. `$`-topics skip leading wildcards [MQTT-4.7.2-1];
    /// an alias-only name matches nothing.
    pub fn shards_for(&self, topic: &TopicName) -> ShardMask {
        let mut mask = ShardMask::EMPTY;
        if !topic.is_alias_only() {
            self.filters
                .for_each_match(topic.as_str(), |refs| mask |= refs.mask);
        }
        mask
    }

    /// Checks the node count and that no empty node or slot was left behind.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        self.filters.check_invariants();
    }
}

impl fmt::Debug for ShardIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardIndex")
            .field("len", &self.len)
            .field("nodes", &self.filters.node_count())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s.to_owned()).unwrap()
    }

    fn shards(index: &ShardIndex, topic: &str) -> Vec<usize> {
        index
            .shards_for(&TopicName::new(topic.to_owned()).unwrap())
            .iter()
            .collect()
    }

    #[test]
    fn mask_operations() {
        let m = ShardMask::single(0) | ShardMask::single(5) | ShardMask::single(63);
        assert_eq!(m.iter().collect::<Vec<_>>(), [0, 5, 63]);
        assert_eq!(m.len(), 3);
        assert!(!m.is_empty());
        assert!(m.contains(63) && !m.contains(64) && !m.contains(1));
        assert_eq!(m.without(5).bits(), 1 | 1 << 63);
        assert_eq!(m.without(64), m);
        assert_eq!(format!("{m:?}"), "{0, 5, 63}");
        assert!(ShardMask::EMPTY.is_empty());
        assert_eq!(ShardMask::EMPTY.iter().count(), 0);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn shard_out_of_range_is_a_bug() {
        ShardIndex::new().add(&filter("a"), MAX_SHARDS);
    }

    #[test]
    fn counts_references_per_filter_and_shard() {
        let mut index = ShardIndex::new();
        let f = filter("a/+");
        assert_eq!(index.add(&f, 1), 1);
        assert_eq!(index.add(&f, 1), 2);
        assert_eq!(index.add(&f, 3), 1);
        assert_eq!(index.len(), 2);
        assert_eq!(shards(&index, "a/b"), [1, 3]);
        assert_eq!(index.remove(&f, 1), Some(1));
        assert_eq!(shards(&index, "a/b"), [1, 3]);
        assert_eq!(index.remove(&f, 1), Some(0));
        assert_eq!(index.remove(&f, 1), None);
        assert_eq!(index.count(&f, 1), 0);
        assert_eq!(shards(&index, "a/b"), [3]);
        assert_eq!(index.remove(&f, 3), Some(0));
        assert!(index.is_empty());
        assert_eq!(index.node_count(), 0);
        index.check_invariants();
    }

    #[test]
    fn share_groups_count_apart_and_report_their_shards() {
        let mut index = ShardIndex::new();
        index.add(&filter("$share/g1/a/#"), 2);
        index.add(&filter("$share/g2/a/#"), 4);
        index.add(&filter("a/#"), 6);
        assert_eq!(shards(&index, "a"), [2, 4, 6]);
        assert_eq!(index.remove(&filter("$share/g3/a/#"), 2), None);
        assert_eq!(index.remove(&filter("a/#"), 2), None);
        assert_eq!(index.remove(&filter("$share/g1/a/#"), 2), Some(0));
        assert_eq!(shards(&index, "a/b"), [4, 6]);
        assert_eq!(index.count(&filter("$share/g2/a/#"), 4), 1);
    }

    /// A shard keeps its bit while any reference to the filter from it is left,
    /// however many plain and shared references name the same shard.
    #[test]
    fn a_shard_referenced_twice_keeps_its_bit() {
        let mut index = ShardIndex::new();
        index.add(&filter("a/#"), 2);
        index.add(&filter("$share/g/a/#"), 2);
        index.add(&filter("$share/g/a/#"), 4);
        assert_eq!(index.remove(&filter("$share/g/a/#"), 4), Some(0));
        assert_eq!(shards(&index, "a/b"), [2]);
        assert_eq!(index.remove(&filter("a/#"), 2), Some(0));
        assert_eq!(shards(&index, "a/b"), [2], "the share group is left on 2");
        assert_eq!(index.len(), 1);
        assert_eq!(format!("{index:?}"), "ShardIndex { len: 1, nodes: 1, .. }");
    }

    #[test]
    fn system_topics_skip_leading_wildcards() {
        let mut index = ShardIndex::new();
        index.add(&filter("#"), 0);
        index.add(&filter("+/x"), 1);
        index.add(&filter("$SYS/+"), 2);
        assert_eq!(shards(&index, "$SYS/x"), [2]);
        assert_eq!(shards(&index, "a/x"), [0, 1]);
        assert!(index.shards_for(&TopicName::alias_only()).is_empty());
    }
}
