//! Topics: validated names and filters, the subscription trie, and the shard index.
//!
//! A [`TopicName`] is what a PUBLISH carries; a [`TopicFilter`] is what a SUBSCRIBE
//! carries, possibly wrapped as a shared subscription `$share/<group>/<filter>`.
//! Both are checked once, when they enter the broker, so the rest of the code can
//! rely on them without re-validating.

mod children;
mod error;
mod filter;
mod filter_table;
mod level_trie;
mod members;
#[cfg(test)]
mod model_tests;
mod name;
mod shard_index;
mod trie;

pub use error::TopicError;
pub use filter::TopicFilter;
pub use name::TopicName;
pub use shard_index::{ShardIndex, ShardMask, MAX_SHARDS};
pub use trie::{Match, SubscriptionTrie};

/// Longest topic name or filter MQTT can carry: a UTF-8 string has a 2-byte length.
pub const MAX_TOPIC_LEN: usize = u16::MAX as usize;

/// Does `filter` (without any `$share/<group>/` prefix) match `topic`?
///
/// The naive reference matcher: level by level, no index. The trie is tested
/// against it, and it is fast enough for one-off checks such as ACL rules.
/// `$`-topics are never matched by a leading wildcard [MQTT-4.7.2-1].
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some(fl), Some(tl)) => {
                if fl != "+" && fl != tl {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn naive_matcher_table() {
        let cases = [
            ("a/b/c", "a/b/c", true),
            ("a/+/c", "a/b/c", true),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true), // '#' also matches the parent level [MQTT-4.7.1-1]
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("+", "a", true),
            ("+", "", true),
            ("+/+", "/", true),
            ("/+", "/x", true),
            ("+", "a/b", false),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("$SYS/+", "$SYS/x", true),
            ("a/+/#", "a/b", true),
            ("a//b", "a//b", true),
            ("a/+/b", "a//b", true),
            ("A", "a", false),
        ];
        for (filter, topic, want) in cases {
            assert_eq!(matches(filter, topic), want, "{filter} vs {topic}");
        }
    }
}
