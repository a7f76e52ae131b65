//! Model tests: the subscription trie and the shard index against naive models
//! (a `BTreeMap` of subscriptions matched one by one with [`super::matches`]), over
//! random operation sequences on a small alphabet so filters collide often.
//!
//! The alphabet covers what the trie treats specially: empty levels, `$` first
//! levels, `+`, `#`, and two share groups.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{matches, Match, ShardIndex, ShardMask, SubscriptionTrie, TopicFilter, TopicName};

const LEVELS: &[&str] = &["a", "b", "", "$SYS", "+"];
const TOPIC_LEVELS: &[&str] = &["a", "b", "", "$SYS", "c"];
const GROUPS: &[Option<&str>] = &[None, None, Some("g1"), Some("g2")];

fn filter() -> impl Strategy<Value = TopicFilter> {
    (
        prop::sample::select(GROUPS),
        prop::collection::vec(prop::sample::select(LEVELS), 0..4),
        any::<bool>(),
    )
        .prop_filter_map("not a valid filter", |(group, mut levels, multi)| {
            if multi {
                levels.push("#");
            }
            let filter = levels.join("/");
            let full = match group {
                Some(g) => format!("$share/{g}/{filter}"),
                None => filter,
            };
            TopicFilter::new(full).ok()
        })
}

fn topic() -> impl Strategy<Value = TopicName> {
    prop::collection::vec(prop::sample::select(TOPIC_LEVELS), 1..5)
        .prop_filter_map("not a valid name", |levels| {
            TopicName::new(levels.join("/")).ok()
        })
}

#[derive(Debug, Clone)]
enum Op {
    Insert(TopicFilter, u8, u32),
    Remove(TopicFilter, u8),
    Match(TopicName),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (filter(), 0..4u8, any::<u32>()).prop_map(|(f, k, v)| Op::Insert(f, k, v)),
        2 => (filter(), 0..4u8).prop_map(|(f, k)| Op::Remove(f, k)),
        3 => topic().prop_map(Op::Match),
    ];
    prop::collection::vec(op, 1..150)
}

/// Subscriptions by (full filter, key), as the trie should hold them.
type Model = BTreeMap<(TopicFilter, u8), u32>;

/// What matching `topic` should report: direct (key, value) pairs, and per share
/// group the full filter with its (key, value) members; all sorted.
type Matched = (Vec<(u8, u32)>, Vec<(String, Vec<(u8, u32)>)>);

fn model_matches(model: &Model, topic: &TopicName) -> Matched {
    let mut direct = Vec::new();
    let mut groups: BTreeMap<String, Vec<(u8, u32)>> = BTreeMap::new();
    for ((filter, key), value) in model {
        if !matches(filter.filter(), topic) {
            continue;
        }
        match filter.share_group() {
            None => direct.push((*key, *value)),
            Some(_) => groups
                .entry(filter.as_str().to_owned())
                .or_default()
                .push((*key, *value)),
        }
    }
    direct.sort();
    let groups = groups
        .into_iter()
        .map(|(f, mut members)| {
            members.sort();
            (f, members)
        })
        .collect();
    (direct, groups)
}

fn trie_matches(trie: &SubscriptionTrie<u8, u32>, topic: &TopicName) -> Matched {
    let (mut direct, mut groups) = (Vec::new(), Vec::new());
    trie.for_each_match(topic, |m| match m {
        Match::Direct { key, value } => direct.push((*key, *value)),
        Match::Shared { filter, members } => {
            assert!(!members.is_empty(), "empty group {filter:?} reported");
            let mut members = members.to_vec();
            members.sort();
            groups.push((filter.as_str().to_owned(), members));
        }
    });
    direct.sort();
    groups.sort();
    (direct, groups)
}

/// Keys spread over the whole shard range, so bit 63 is exercised.
fn shard_of(key: u8) -> usize {
    [0, 1, 31, 63][usize::from(key)]
}

proptest! {
    #[test]
    fn trie_agrees_with_the_model(ops in ops()) {
        let mut trie = SubscriptionTrie::new();
        let mut model = Model::new();
        for op in ops {
            match op {
                Op::Insert(f, k, v) => {
                    prop_assert_eq!(trie.insert(&f, k, v), model.insert((f.clone(), k), v));
                    prop_assert_eq!(trie.get(&f, &k), Some(&v));
                }
                Op::Remove(f, k) => {
                    prop_assert_eq!(trie.remove(&f, &k), model.remove(&(f.clone(), k)));
                    prop_assert_eq!(trie.get(&f, &k), None);
                }
                Op::Match(t) => {
                    prop_assert_eq!(trie_matches(&trie, &t), model_matches(&model, &t), "topic {:?}", t);
                }
            }
            prop_assert_eq!(trie.len(), model.len());
            trie.check_invariants();
        }
        for (f, k) in model.keys() {
            prop_assert!(trie.remove(f, k).is_some());
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(trie.node_count(), 0);
        trie.check_invariants();
    }

    #[test]
    fn shard_index_agrees_with_the_model(ops in ops()) {
        let mut index = ShardIndex::new();
        // References by (full filter, shard).
        let mut model: BTreeMap<(TopicFilter, usize), u32> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(f, k, _) => {
                    let shard = shard_of(k);
                    let count = model.entry((f.clone(), shard)).or_default();
                    *count += 1;
                    prop_assert_eq!(index.add(&f, shard), *count);
                }
                Op::Remove(f, k) => {
                    let shard = shard_of(k);
                    let key = (f.clone(), shard);
                    let want = model.get_mut(&key).map(|count| {
                        *count -= 1;
                        *count
                    });
                    if want == Some(0) {
                        model.remove(&key);
                    }
                    prop_assert_eq!(index.remove(&f, shard), want);
                    prop_assert_eq!(index.count(&f, shard), want.unwrap_or(0));
                }
                Op::Match(t) => {
                    let want = model
                        .keys()
                        .filter(|(f, _)| matches(f.filter(), &t))
                        .fold(ShardMask::EMPTY, |mask, (_, shard)| mask | ShardMask::single(*shard));
                    prop_assert_eq!(index.shards_for(&t), want, "topic {:?}", t);
                }
            }
            prop_assert_eq!(index.len(), model.len());
            index.check_invariants();
        }
        for ((f, shard), count) in &model {
            for _ in 0..*count {
                prop_assert!(index.remove(f, *shard).is_some());
            }
        }
        prop_assert!(index.is_empty());
        prop_assert_eq!(index.node_count(), 0);
    }

    /// The shard index agrees with a trie of the same subscriptions keyed by shard:
    /// the shards it names are exactly those of the trie's matches.
    #[test]
    fn shard_index_agrees_with_the_trie(ops in ops()) {
        let mut index = ShardIndex::new();
        let mut trie: SubscriptionTrie<u8, u32> = SubscriptionTrie::new();
        for op in ops {
            match op {
                Op::Insert(f, k, v) => {
                    if trie.insert(&f, k, v).is_none() {
                        index.add(&f, shard_of(k));
                    }
                }
                Op::Remove(f, k) => {
                    if trie.remove(&f, &k).is_some() {
                        prop_assert!(index.remove(&f, shard_of(k)).is_some());
                    }
                }
                Op::Match(t) => {
                    let mut want = ShardMask::EMPTY;
                    trie.for_each_match(&t, |m| match m {
                        Match::Direct { key, .. } => want |= ShardMask::single(shard_of(*key)),
                        Match::Shared { members, .. } => {
                            for (key, _) in members {
                                want |= ShardMask::single(shard_of(*key));
                            }
                        }
                    });
                    prop_assert_eq!(index.shards_for(&t), want);
                }
            }
        }
    }
}
