//! Retained messages: the last retained PUBLISH of each topic, sent to new
//! subscribers of a matching filter.

use crate::hash::HashMap;

use crate::message::Message;
use crate::topic::{TopicFilter, TopicName};

/// The retained message of each topic, on one shard.
///
/// Exact filters are one lookup; wildcard filters scan every retained topic,
/// which is fine for the thousands a mobile fleet retains and is the place to
/// put a trie if that grows.
#[derive(Debug, Default)]
pub struct RetainedStore {
    messages: HashMap<TopicName, Message>,
}

impl RetainedStore {
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Stores `message` as its topic's retained message, or clears the topic when
    /// the payload is empty [MQTT-3.3.1-6, MQTT-3.3.1-7].
    pub fn set(&mut self, message: &Message) {
        if message.payload.is_empty() {
            self.messages.remove(&message.topic);
        } else {
            self.messages.insert(message.topic.clone(), message.clone());
        }
    }

    /// Calls `visit` with each retained message whose topic `filter` matches.
    pub fn for_each_match(&self, filter: &TopicFilter, mut visit: impl FnMut(&Message)) {
        if !filter.has_wildcards() {
            if let Ok(topic) = TopicName::new(filter.filter().to_owned()) {
                if let Some(m) = self.messages.get(&topic) {
                    visit(m);
                }
            }
            return;
        }
        for (topic, message) in &self.messages {
            if filter.matches(topic) {
                visit(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use bytestring::ByteString;

    use super::*;
    use crate::protocol::QoS;

    fn msg(topic: &str, payload: &'static [u8]) -> Message {
        Message {
            topic: TopicName::new(topic.to_owned()).unwrap(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: None,
            publisher: ByteString::from("p"),
            expires_at: None,
            id: None,
        }
    }

    fn matching(store: &RetainedStore, filter: &str) -> Vec<String> {
        let mut got = Vec::new();
        store.for_each_match(&TopicFilter::new(filter.to_owned()).unwrap(), |m| {
            got.push(m.topic.to_string())
        });
        got.sort();
        got
    }

    #[test]
    fn set_replace_clear_and_match() {
        let mut store = RetainedStore::default();
        store.set(&msg("a/b", b"1"));
        store.set(&msg("a/c", b"2"));
        store.set(&msg("$SYS/x", b"3"));
        store.set(&msg("a/b", b"4"));
        assert_eq!(store.len(), 3);
        assert_eq!(matching(&store, "a/b"), ["a/b"]);
        assert_eq!(matching(&store, "a/+"), ["a/b", "a/c"]);
        assert_eq!(matching(&store, "#"), ["a/b", "a/c"]);
        assert_eq!(matching(&store, "$SYS/#"), ["$SYS/x"]);
        assert_eq!(matching(&store, "$share/g/a/b"), ["a/b"]);
        store.set(&msg("a/b", b""));
        assert_eq!(matching(&store, "a/+"), ["a/c"]);
        // Clearing a topic that has nothing retained is a no-op.
        store.set(&msg("zz", b""));
        assert_eq!(store.len(), 2);
    }
}
