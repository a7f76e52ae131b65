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
}

impl Message {
    /// Builds a message from a received PUBLISH whose topic alias has been
    /// resolved, copying topic and payload out of the read buffer so that keeping
    /// the message does not pin it (rumqttd #1001).
    pub fn from_publish(publish: &Publish, publisher: &ByteString, now: Instant) -> Message {
        let mut properties = publish.properties.clone();
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        Message {
            topic: publish.topic.detached(),
            payload: Bytes::copy_from_slice(&publish.payload),
            qos: publish.qos,
            retain: publish.retain,
            properties: (!properties.is_empty()).then(|| Arc::new(properties)),
            publisher: publisher.clone(),
            expires_at: publish
                .properties
                .message_expiry_interval
                .map(|secs| now + Duration::from_secs(u64::from(secs))),
        }
    }

    /// Whether the message's expiry interval has run out at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}
