//! The application message as the broker routes, queues and retains it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use crate::protocol::{Publish, PublishProperties, QoS};
use crate::topic::TopicName;

/// One PUBLISH as received, detached from the read buffer.
///
/// Cheap to clone: the payload is a reference-counted `Bytes` and the MQTT 5
/// properties sit behind an `Arc`, so fanning out to many subscribers, or to
/// other shards, copies no message bytes. It is `Send`, so it crosses shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: TopicName,
    pub payload: Bytes,
    /// The QoS it was published with; each delivery uses the lower of this and
    /// the subscription's.
    pub qos: QoS,
    /// The RETAIN flag as published, for retain-as-published subscriptions.
    pub retain: bool,
    /// MQTT 5 properties that travel with the message (never a topic alias or a
    /// subscription identifier: those are per hop). `None` when there are none.
    pub properties: Option<Arc<PublishProperties>>,
    /// The publisher's client id, for no-local subscriptions.
    pub publisher: ByteString,
    /// When an MQTT 5 message expiry interval runs out; undelivered by then, the
    /// message is dropped [MQTT-3.3.2-5].
    pub expires_at: Option<Instant>,
    /// Which message this is across a cluster, once it goes to another node
    /// ([`MessageId`]); `None` for a message that stays on its node.
    pub id: Option<MessageId>,
}

/// Names one message across a cluster, so that a session that moves between
/// nodes does not get it twice while the old and the new owner both receive
/// it ([`crate::broker`]'s owners): the shard that routed it to other nodes,
/// by a number drawn at random when the shard starts, and the shard's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId {
    pub shard: u64,
    pub seq: u64,
}

impl Message {
    /// Builds a message from a received PUBLISH whose topic alias has been
    /// resolved.
    ///
    /// A message that may be kept (QoS 1/2: queued and inflight; retained) gets
    /// its topic and payload copied out of the read buffer, so that keeping it
    /// does not pin the buffer (rumqttd #1001). A QoS 0 message without retain
    /// is never queued or retained, only written out soon, so it stays a view
    /// of the read buffer: no allocation or copy per message on the hot path.
    /// (An output that backs up detaches what it holds; see `Sessions::deliver`.)
    pub fn from_publish(publish: &Publish, publisher: &ByteString, now: Instant) -> Message {
        let properties = if publish.properties.is_empty() {
            None
        } else {
            let mut properties = publish.properties.clone();
            properties.topic_alias = None;
            properties.subscription_identifiers.clear();
            (!properties.is_empty()).then(|| Arc::new(properties))
        };
        let kept = publish.qos != QoS::AtMostOnce || publish.retain;
        Message {
            topic: if kept {
                publish.topic.detached()
            } else {
                publish.topic.clone()
            },
            payload: if kept {
                Bytes::copy_from_slice(&publish.payload)
            } else {
                publish.payload.clone()
            },
            qos: publish.qos,
            retain: publish.retain,
            properties,
            publisher: publisher.clone(),
            expires_at: publish
                .properties
                .message_expiry_interval
                .map(|secs| now + Duration::from_secs(u64::from(secs))),
            id: None,
        }
    }

    /// The MQTT 5 message expiry interval left at `now`, rounded up so it
    /// never reads 0 while the message is still valid [MQTT-3.3.2-6].
    pub fn expiry_left(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }

    /// Whether the message's expiry interval has run out at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PacketId;

    fn publish(qos: QoS, retain: bool, read_buffer: &Bytes) -> Publish {
        Publish {
            dup: false,
            qos,
            retain,
            topic: TopicName::new("a/b".to_owned()).unwrap(),
            packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(1).unwrap()),
            payload: read_buffer.slice(2..6),
            properties: PublishProperties::default(),
        }
    }

    /// Whether `payload` points into `buffer`.
    fn shares(payload: &Bytes, buffer: &Bytes) -> bool {
        buffer.as_ptr_range().contains(&payload.as_ptr())
    }

    #[test]
    fn only_messages_that_may_be_kept_are_copied_out_of_the_read_buffer() {
        let buffer = Bytes::from(vec![7u8; 64]);
        let now = Instant::now();
        let who = ByteString::from("c");
        let live = Message::from_publish(&publish(QoS::AtMostOnce, false, &buffer), &who, now);
        assert!(shares(&live.payload, &buffer), "QoS 0 stays a view");
        for (qos, retain) in [
            (QoS::AtLeastOnce, false),
            (QoS::ExactlyOnce, false),
            (QoS::AtMostOnce, true),
        ] {
            let kept = Message::from_publish(&publish(qos, retain, &buffer), &who, now);
            assert!(
                !shares(&kept.payload, &buffer),
                "{qos:?} retain {retain} is copied"
            );
            assert_eq!(kept.payload, live.payload);
        }
    }
}
