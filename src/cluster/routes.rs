//! The node-level route index: which other nodes have subscribers for a
//! topic. It is the shard index one level up: every node keeps it, built
//! from each node's route sets in Redis and kept current by the route feed
//! (a Redis stream every node appends its route changes to), so no PUBLISH
//! asks Redis where to go.
//!
//! Sans-IO: [`RouteUpdate`]s in, matches out. Shard 0 reads the feed
//! (`cluster::feed`) and hands each update to every shard's broker.

use bytestring::ByteString;

use crate::hash::HashMap;
use crate::topic::{Match, ShardMask, SubscriptionTrie, TopicFilter, TopicName, MAX_SHARDS};

/// A change to what another node subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteUpdate {
    /// A filter gained its first subscriber on one shard of `node`, or lost
    /// its last.
    Change {
        node: ByteString,
        shard: usize,
        filter: TopicFilter,
        added: bool,
    },
    /// Everything `node` subscribes to, as its route sets hold it: replaces
    /// what was known (start-up, or catching up after missing the feed).
    Replace {
        node: ByteString,
        routes: Vec<(usize, TopicFilter)>,
    },
    /// `node` is dead: its routes go.
    Gone { node: ByteString },
}

/// What [`NodeRoutes::targets`] found for a topic.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Targets {
    pub nodes: Vec<ByteString>,
    /// `(share filter, nodes with a member)`.
    pub groups: Vec<(ByteString, Vec<ByteString>)>,
}

/// Other nodes' routes, matched by topic.
#[derive(Debug, Default)]
pub struct NodeRoutes {
    trie: SubscriptionTrie<ByteString, ShardMask>,
    /// By node: its filters and on which of its shards, to drop or replace a
    /// node whole.
    by_node: HashMap<ByteString, HashMap<TopicFilter, ShardMask>>,
}

impl NodeRoutes {
    pub fn apply(&mut self, update: RouteUpdate) {
        match update {
            RouteUpdate::Change {
                node,
                shard,
                filter,
                added,
            } => self.change(node, shard, filter, added),
            RouteUpdate::Replace { node, routes } => {
                self.remove_node(&node);
                for (shard, filter) in routes {
                    self.change(node.clone(), shard, filter, true);
                }
            }
            RouteUpdate::Gone { node } => self.remove_node(&node),
        }
    }

    fn change(&mut self, node: ByteString, shard: usize, filter: TopicFilter, added: bool) {
        // A shard number past what a node can have is a bad feed entry.
        if shard >= MAX_SHARDS {
            return;
        }
        let filters = self.by_node.entry(node.clone()).or_default();
        let mask = filters.get(&filter).copied().unwrap_or_default();
        let mask = if added {
            mask | ShardMask::single(shard)
        } else {
            mask.without(shard)
        };
        if mask.is_empty() {
            filters.remove(&filter);
            self.trie.remove(&filter, &node);
            if filters.is_empty() {
                self.by_node.remove(&node);
            }
        } else {
            self.trie.insert(&filter, node, mask);
            filters.insert(filter.detached(), mask);
        }
    }

    fn remove_node(&mut self, node: &ByteString) {
        if let Some(filters) = self.by_node.remove(node) {
            for filter in filters.keys() {
                self.trie.remove(filter, node);
            }
        }
    }

    /// The nodes with a subscription that `topic` matches, each once, in no
    /// particular order. A share group counts every node with a member.
    pub fn nodes_for(&self, topic: &TopicName) -> Vec<ByteString> {
        let mut targets = self.targets(topic);
        for (_, members) in targets.groups {
            for node in members {
                if !targets.nodes.contains(&node) {
                    targets.nodes.push(node);
                }
            }
        }
        targets.nodes
    }

    /// Where `topic` goes: the nodes with a plain subscription to it, each
    /// once, and each matching share group with the nodes that have members
    /// in it (one of which, or this node, serves the group).
    pub fn targets(&self, topic: &TopicName) -> Targets {
        let mut targets = Targets::default();
        self.trie.for_each_match(topic, |m| match m {
            Match::Direct { key, .. } => {
                if !targets.nodes.contains(key) {
                    targets.nodes.push(key.clone());
                }
            }
            Match::Shared { filter, members } => targets.groups.push((
                filter.as_bytestring().clone(),
                members.iter().map(|(node, _)| node.clone()).collect(),
            )),
        });
        targets
    }

    /// Filters known of other nodes, a filter counting once per node.
    pub fn len(&self) -> usize {
        self.by_node.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_node.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> TopicFilter {
        TopicFilter::new(s.to_owned()).unwrap()
    }

    fn t(s: &str) -> TopicName {
        TopicName::new(s.to_owned()).unwrap()
    }

    fn change(node: &str, shard: usize, filter: &str, added: bool) -> RouteUpdate {
        RouteUpdate::Change {
            node: node.into(),
            shard,
            filter: f(filter),
            added,
        }
    }

    fn sorted(mut v: Vec<ByteString>) -> Vec<ByteString> {
        v.sort();
        v
    }

    #[test]
    fn a_filter_stays_until_its_last_shard_drops_it() {
        let mut r = NodeRoutes::default();
        r.apply(change("b", 0, "x/+", true));
        r.apply(change("b", 1, "x/+", true));
        r.apply(change("c", 0, "x/#", true));
        assert_eq!(sorted(r.nodes_for(&t("x/1"))), ["b", "c"]);
        assert_eq!(r.len(), 2);
        r.apply(change("b", 0, "x/+", false));
        assert_eq!(
            sorted(r.nodes_for(&t("x/1"))),
            ["b", "c"],
            "b's shard 1 has it"
        );
        r.apply(change("b", 1, "x/+", false));
        assert_eq!(r.nodes_for(&t("x/1")), ["c"]);
        // Removing what is not there changes nothing.
        r.apply(change("b", 1, "x/+", false));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn replace_and_gone_act_on_one_node_whole() {
        let mut r = NodeRoutes::default();
        r.apply(change("b", 0, "a", true));
        r.apply(change("c", 0, "a", true));
        r.apply(RouteUpdate::Replace {
            node: "b".into(),
            routes: vec![(0, f("z")), (1, f("$share/g/a"))],
        });
        assert_eq!(sorted(r.nodes_for(&t("a"))), ["b", "c"], "b via its group");
        assert_eq!(r.nodes_for(&t("z")), ["b"]);
        r.apply(RouteUpdate::Gone { node: "c".into() });
        assert_eq!(r.nodes_for(&t("a")), ["b"]);
        r.apply(RouteUpdate::Gone { node: "b".into() });
        assert!(r.is_empty());
        assert!(r.nodes_for(&t("z")).is_empty());
    }

    #[test]
    fn a_shard_out_of_range_is_ignored() {
        let mut r = NodeRoutes::default();
        r.apply(change("b", MAX_SHARDS, "a", true));
        assert!(r.is_empty());
    }
}
