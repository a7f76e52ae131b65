//! Topic aliases the server sets for an MQTT 5 client (server to client).

use crate::hash::HashMap;

use crate::protocol::Publish;
use crate::topic::TopicName;

/// The aliases given to one client, up to the Topic Alias Maximum it announced
/// in CONNECT. Aliases are handed out first come, first served and never
/// reassigned: a fleet's subscriptions are few and stable, so the first topics
/// are the ones that repeat.
#[derive(Debug, Default)]
pub struct OutboundAliases {
    max: u16,
    by_topic: HashMap<TopicName, u16>,
}

/// What [`OutboundAliases::apply`] did to a PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Left as it was: no aliases, or none left.
    Unchanged,
    /// Sent with its topic and a new alias, which the client learns from it.
    Assigned,
    /// Sent with an empty topic and a known alias.
    Replaced,
}

impl OutboundAliases {
    /// `max` is the client's Topic Alias Maximum; 0 means it takes none.
    pub fn new(max: u16) -> Self {
        OutboundAliases {
            max,
            by_topic: HashMap::default(),
        }
    }

    /// Names `publish`'s topic by alias where possible.
    pub fn apply(&mut self, publish: &mut Publish) -> Applied {
        if self.max == 0 || publish.topic.is_alias_only() {
            return Applied::Unchanged;
        }
        if let Some(&alias) = self.by_topic.get(&publish.topic) {
            publish.properties.topic_alias = Some(alias);
            publish.topic = TopicName::alias_only();
            return Applied::Replaced;
        }
        let next = self.by_topic.len() + 1;
        match u16::try_from(next) {
            Ok(alias) if alias <= self.max => {
                self.by_topic.insert(publish.topic.detached(), alias);
                publish.properties.topic_alias = Some(alias);
                Applied::Assigned
            }
            _ => Applied::Unchanged,
        }
    }

    /// Takes back the alias just assigned to `topic`, for a PUBLISH that was
    /// not sent after all: the client must never see an alias it was not told.
    pub fn forget(&mut self, topic: &TopicName) {
        self.by_topic.remove(topic);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::{PublishProperties, QoS};

    fn publish(topic: &str) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: TopicName::new(topic.to_owned()).unwrap(),
            packet_id: None,
            payload: Bytes::new(),
            properties: PublishProperties::default(),
        }
    }

    #[test]
    fn assigns_then_replaces_up_to_the_maximum() {
        let mut a = OutboundAliases::new(2);
        let mut p = publish("a");
        assert_eq!(a.apply(&mut p), Applied::Assigned);
        assert_eq!((p.topic.as_str(), p.properties.topic_alias), ("a", Some(1)));
        let mut p = publish("a");
        assert_eq!(a.apply(&mut p), Applied::Replaced);
        assert_eq!((p.topic.as_str(), p.properties.topic_alias), ("", Some(1)));
        assert_eq!(a.apply(&mut publish("b")), Applied::Assigned);
        let mut c = publish("c");
        assert_eq!(a.apply(&mut c), Applied::Unchanged);
        assert_eq!(c.properties.topic_alias, None);
    }

    #[test]
    fn none_without_a_maximum_and_forget_takes_back() {
        let mut none = OutboundAliases::new(0);
        assert_eq!(none.apply(&mut publish("a")), Applied::Unchanged);
        let mut a = OutboundAliases::new(1);
        let mut p = publish("a");
        a.apply(&mut p);
        a.forget(&p.topic);
        assert_eq!(a.apply(&mut publish("a")), Applied::Assigned);
    }
}
