//! The subscription trie: which subscriptions does a PUBLISH reach?
//!
//! Each shard owns one for the sessions it hosts, so it is plain `!Sync` data with
//! no locks. It is keyed by subscriber (`K`, a session id, say) and stores one
//! value per subscription (`V`, the subscription options), so a SUBSCRIBE that
//! names a filter again replaces its options as MQTT requires [MQTT-3.8.4-3].
//!
//! Shared subscriptions (`$share/<group>/<filter>`) are stored with their group:
//! a PUBLISH goes to one member of each matching group, and which one is the
//! broker's choice (round-robin, skipping offline sessions), so matching hands it
//! the whole group as a slice.
//!
//! Filters without wildcards, the bulk of a fleet's subscriptions, are found with
//! one hash of the topic; only filters with `+` or `#` are walked level by level
//! (see `filter_table`).

use std::fmt;
use std::hash::Hash;

use super::filter_table::FilterTable;
use super::level_trie::Slot;
use super::members::Members;
use super::{TopicFilter, TopicName};

/// Subscriptions by topic filter, matched against topic names.
///
/// ```
/// use shardmq::topic::{Match, SubscriptionTrie, TopicFilter, TopicName};
///
/// let mut trie = SubscriptionTrie::new();
/// trie.insert(&TopicFilter::new("devices/+/events").unwrap(), "backend", 1u8);
/// trie.insert(&TopicFilter::new("$share/workers/devices/#").unwrap(), "worker-1", 0u8);
/// trie.insert(&TopicFilter::new("$share/workers/devices/#").unwrap(), "worker-2", 0u8);
///
/// let topic = TopicName::new("devices/7/events").unwrap();
/// let (mut direct, mut groups) = (Vec::new(), Vec::new());
/// trie.for_each_match(&topic, |m| match m {
///     Match::Direct { key, value } => direct.push((*key, *value)),
///     Match::Shared { filter, members } => groups.push((filter.as_str(), members.len())),
/// });
/// assert_eq!(direct, [("backend", 1)]);
/// assert_eq!(groups, [("$share/workers/devices/#", 2)]);
/// ```
pub struct SubscriptionTrie<K, V> {
    filters: FilterTable<Subscribers<K, V>>,
    /// Subscriptions stored, a shared one counting once per member.
    len: usize,
}

/// One subscription, or one share group, that a topic matches.
#[derive(Debug)]
pub enum Match<'a, K, V> {
    /// A non-shared subscription: deliver to `key` with these options.
    Direct { key: &'a K, value: &'a V },
    /// A share group whose filter matches: deliver to one of `members`.
    ///
    /// `filter` is the whole `$share/<group>/<filter>` as first subscribed; with
    /// its group it identifies the group, for example to keep a round-robin
    /// cursor. `members` is never empty; its order changes as members leave.
    Shared {
        filter: &'a TopicFilter,
        members: &'a [(K, V)],
    },
}

/// Everything subscribed with one filter (the part after any `$share/<group>/`).
struct Subscribers<K, V> {
    /// Non-shared subscriptions.
    direct: Members<K, V>,
    /// Share groups using this filter; rarely more than one or two.
    groups: Vec<ShareGroup<K, V>>,
}

/// The members of one share group on one filter.
struct ShareGroup<K, V> {
    /// The full `$share/<group>/<filter>`, copied out of the packet so it does not
    /// pin the read buffer.
    filter: TopicFilter,
    members: Members<K, V>,
}

impl<K, V> Default for Subscribers<K, V> {
    fn default() -> Self {
        Subscribers {
            direct: Members::default(),
            groups: Vec::new(),
        }
    }
}

impl<K: Eq + Hash + Clone, V> Slot for Subscribers<K, V> {
    fn is_empty(&self) -> bool {
        self.direct.is_empty() && self.groups.is_empty()
    }
}

impl<K: Eq + Hash + Clone, V> Subscribers<K, V> {
    fn group(&self, name: &str) -> Option<&ShareGroup<K, V>> {
        self.groups
            .iter()
            .find(|g| g.filter.share_group() == Some(name))
    }

    fn group_position(&self, name: &str) -> Option<usize> {
        self.groups
            .iter()
            .position(|g| g.filter.share_group() == Some(name))
    }
}

impl<K, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        SubscriptionTrie {
            filters: FilterTable::default(),
            len: 0,
        }
    }
}

impl<K: Eq + Hash + Clone, V> SubscriptionTrie<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscriptions stored; each member of a share group counts once.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nodes of the wildcard trie in use, for memory metrics (filters without
    /// wildcards sit in a flat table and take none). Zero once no wildcard
    /// subscription is left: removal prunes every node that no longer leads to one.
    pub fn node_count(&self) -> usize {
        self.filters.node_count()
    }

    /// Subscribes `key` to `filter` with `value`. Gives back the previous value if
    /// `key` was already subscribed to this exact filter (same share group, if
    /// any), which the new one replaces.
    pub fn insert(&mut self, filter: &TopicFilter, key: K, value: V) -> Option<V> {
        let subscribers = self.filters.get_or_create(filter.filter());
        let old = match filter.share_group() {
            None => subscribers.direct.insert(key, value),
            Some(name) => match subscribers.group_position(name) {
                Some(at) => subscribers.groups[at].members.insert(key, value),
                None => {
                    let mut members = Members::default();
                    members.insert(key, value);
                    subscribers.groups.push(ShareGroup {
                        filter: filter.detached(),
                        members,
                    });
                    None
                }
            },
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Unsubscribes `key` from `filter` (same share group, if any), giving back
    /// its value. Nodes left without subscriptions are freed.
    pub fn remove(&mut self, filter: &TopicFilter, key: &K) -> Option<V> {
        let removed =
            self.filters
                .update(filter.filter(), |subscribers| match filter.share_group() {
                    None => subscribers.direct.remove(key),
                    Some(name) => {
                        let at = subscribers.group_position(name)?;
                        let members = &mut subscribers.groups[at].members;
                        let removed = members.remove(key);
                        if members.is_empty() {
                            subscribers.groups.swap_remove(at);
                            subscribers.groups.shrink_to_fit();
                        }
                        removed
                    }
                });
        let removed = removed.flatten();
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// The value `key` subscribed to `filter` with.
    pub fn get(&self, filter: &TopicFilter, key: &K) -> Option<&V> {
        let subscribers = self.filters.get(filter.filter())?;
        match filter.share_group() {
            None => subscribers.direct.get(key),
            Some(name) => subscribers.group(name)?.members.get(key),
        }
    }

    /// Calls `visit` once per non-shared subscription matching `topic`, and once
    /// per share group with a matching filter. A session subscribed with several
    /// matching filters is visited once for each.
    ///
    /// `$`-topics are never matched by a `+` or `#` first level [MQTT-4.7.2-1].
    /// An alias-only name (empty, from an MQTT 5 PUBLISH not yet resolved) matches
    /// nothing. Matching allocates nothing for tries with few `+` branches.
    pub fn for_each_match<'a>(&'a self, topic: &TopicName, mut visit: impl FnMut(Match<'a, K, V>)) {
        if topic.is_alias_only() {
            return;
        }
        self.filters.for_each_match(topic.as_str(), |subscribers| {
            for (key, value) in subscribers.direct.as_slice() {
                visit(Match::Direct { key, value });
            }
            for group in &subscribers.groups {
                visit(Match::Shared {
                    filter: &group.filter,
                    members: group.members.as_slice(),
                });
            }
        });
    }

    /// Checks the node count and that no empty node or slot was left behind.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        self.filters.check_invariants();
    }
}

impl<K, V> fmt::Debug for SubscriptionTrie<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionTrie")
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

    type Trie = SubscriptionTrie<&'static str, u32>;

    /// Direct matches as sorted (key, value), shared ones as sorted
    /// (full filter, sorted member keys).
    type Matched = (Vec<(&'static str, u32)>, Vec<(String, Vec<&'static str>)>);

    fn matched(trie: &Trie, topic: &str) -> Matched {
        let topic = TopicName::new(topic.to_owned()).unwrap();
        let (mut direct, mut shared) = (Vec::new(), Vec::new());
        trie.for_each_match(&topic, |m| match m {
            Match::Direct { key, value } => direct.push((*key, *value)),
            Match::Shared { filter, members } => {
                let mut keys: Vec<_> = members.iter().map(|(k, _)| *k).collect();
                keys.sort();
                shared.push((filter.as_str().to_owned(), keys));
            }
        });
        direct.sort();
        shared.sort();
        (direct, shared)
    }

    fn direct(trie: &Trie, topic: &str) -> Vec<(&'static str, u32)> {
        matched(trie, topic).0
    }

    #[test]
    fn matching_table() {
        let mut trie = SubscriptionTrie::new();
        let subs = [
            ("a/#", "multi"),
            ("a/+", "plus"),
            ("+", "root-plus"),
            ("#", "all"),
            ("a//b", "empty-mid"),
            ("a/+/b", "plus-mid"),
            ("/+", "lead-empty"),
            ("$SYS/#", "sys"),
            ("+/uptime", "plus-uptime"),
        ];
        for (i, (f, k)) in subs.iter().enumerate() {
            assert_eq!(trie.insert(&filter(f), *k, i as u32), None);
        }
        trie.check_invariants();
        let cases: &[(&str, &[&str])] = &[
            // '#' also matches the parent level [MQTT-4.7.1-1].
            ("a", &["all", "multi", "root-plus"]),
            ("a/", &["all", "multi", "plus"]),
            ("a/x", &["all", "multi", "plus"]),
            // '+' matches an empty level.
            ("a//b", &["all", "empty-mid", "multi", "plus-mid"]),
            ("/", &["all", "lead-empty"]),
            ("/x/y", &["all"]),
            ("b/uptime", &["all", "plus-uptime"]),
            // Leading wildcards skip `$` topics [MQTT-4.7.2-1].
            ("$SYS/uptime", &["sys"]),
            ("$SYS", &["sys"]),
            ("$other", &[]),
            ("A", &["all", "root-plus"]),
        ];
        for (topic, want) in cases {
            let mut got: Vec<_> = direct(&trie, topic).into_iter().map(|(k, _)| k).collect();
            got.sort();
            assert_eq!(got, *want, "topic {topic:?}");
        }
    }

    #[test]
    fn reinsert_replaces_the_value() {
        let mut trie = SubscriptionTrie::new();
        let f = filter("a/+");
        assert_eq!(trie.insert(&f, "c1", 1), None);
        assert_eq!(trie.insert(&f, "c1", 2), Some(1));
        assert_eq!(trie.insert(&f, "c2", 3), None);
        assert_eq!(trie.len(), 2);
        assert_eq!(trie.get(&f, &"c1"), Some(&2));
        assert_eq!(direct(&trie, "a/b"), [("c1", 2), ("c2", 3)]);
        // The same key through a share group is a different subscription.
        assert_eq!(trie.insert(&filter("$share/g/a/+"), "c1", 4), None);
        assert_eq!(trie.insert(&filter("$share/g/a/+"), "c1", 5), Some(4));
        assert_eq!(trie.len(), 3);
        assert_eq!(trie.get(&filter("$share/g/a/+"), &"c1"), Some(&5));
        assert_eq!(trie.get(&filter("$share/h/a/+"), &"c1"), None);
    }

    #[test]
    fn share_groups_are_reported_whole() {
        let mut trie = SubscriptionTrie::new();
        trie.insert(&filter("$share/g1/a/+"), "c1", 0);
        trie.insert(&filter("$share/g1/a/+"), "c2", 0);
        trie.insert(&filter("$share/g2/a/+"), "c3", 0);
        trie.insert(&filter("$share/g1/a/#"), "c4", 0);
        trie.insert(&filter("a/+"), "c5", 0);
        let (direct, shared) = matched(&trie, "a/b");
        assert_eq!(direct, [("c5", 0)]);
        assert_eq!(
            shared,
            [
                ("$share/g1/a/#".to_owned(), vec!["c4"]),
                ("$share/g1/a/+".to_owned(), vec!["c1", "c2"]),
                ("$share/g2/a/+".to_owned(), vec!["c3"]),
            ]
        );
        assert_eq!(trie.remove(&filter("$share/g1/a/+"), &"c1"), Some(0));
        assert_eq!(trie.remove(&filter("$share/g1/a/+"), &"c1"), None);
        assert_eq!(trie.remove(&filter("$share/g3/a/+"), &"c2"), None);
        assert_eq!(trie.remove(&filter("a/+"), &"c2"), None);
        assert_eq!(trie.remove(&filter("$share/g1/a/+"), &"c2"), Some(0));
        let (_, shared) = matched(&trie, "a/b");
        assert_eq!(shared.len(), 2, "the emptied group is gone: {shared:?}");
        // A shared `$`-topic filter with a leading wildcard still skips `$` topics.
        trie.insert(&filter("$share/g1/#"), "c6", 0);
        assert_eq!(matched(&trie, "$SYS/x"), (vec![], vec![]));
    }

    #[test]
    fn churn_leaves_nothing_behind() {
        let mut trie = SubscriptionTrie::new();
        let filters: Vec<TopicFilter> = (0..500)
            .flat_map(|i| {
                [
                    format!("devices/{i}/events"),
                    format!("devices/+/x/{i}"),
                    format!("$share/g{}/devices/{i}/#", i % 3),
                    format!("{i}//+/#"),
                ]
            })
            .map(|f| filter(&f))
            .collect();
        let keys = ["c1", "c2", "c3"];
        for f in &filters {
            for k in keys {
                trie.insert(f, k, 7);
            }
        }
        assert_eq!(trie.len(), filters.len() * keys.len());
        trie.check_invariants();
        for f in filters.iter().rev() {
            for k in keys {
                assert_eq!(trie.remove(f, &k), Some(7), "{f:?} {k}");
            }
        }
        trie.check_invariants();
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 0);
    }

    #[test]
    fn alias_only_name_matches_nothing() {
        let mut trie = SubscriptionTrie::new();
        trie.insert(&filter("#"), "c1", 0);
        let mut hits = 0;
        trie.for_each_match(&TopicName::alias_only(), |_| hits += 1);
        assert_eq!(hits, 0);
    }
}
